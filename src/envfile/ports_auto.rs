//! `ports_auto`: the guest's listening TCP ports forwarded to the host as
//! they open (Lima's behaviour). `ports_auto = true`, or a table with
//! ports or ranges to leave alone and the host address to bind.

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use std::fmt;
use std::net::IpAddr;

/// The table form as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoPortsTable {
    /// Guest ports or ranges never forwarded (`"5432"`, `"6000-6100"`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Host address the forwards bind (default 127.0.0.1).
    pub host_ip: Option<IpAddr>,
}

/// `ports_auto`, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawAutoPorts {
    /// `true` or `false`.
    Switch(bool),
    /// A table: on, with these settings.
    Table(AutoPortsTable),
}

impl<'de> Deserialize<'de> for RawAutoPorts {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = RawAutoPorts;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false, or a table { exclude, host_ip }")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawAutoPorts, E> {
                Ok(RawAutoPorts::Switch(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawAutoPorts, A::Error> {
                AutoPortsTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawAutoPorts::Table)
            }
        }
        d.deserialize_any(Either)
    }
}

/// Automatic forwarding, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoPorts {
    /// Guest port ranges (inclusive) never forwarded.
    pub exclude: Vec<(u16, u16)>,
    /// Host address the forwards bind.
    pub host_ip: IpAddr,
}

/// Checks a written `ports_auto`; `None` when it is off.
pub fn resolve(raw: &RawAutoPorts) -> Result<Option<AutoPorts>, String> {
    let table = match raw {
        RawAutoPorts::Switch(false) => return Ok(None),
        RawAutoPorts::Switch(true) => AutoPortsTable::default(),
        RawAutoPorts::Table(t) => t.clone(),
    };
    let mut exclude = Vec::new();
    for item in &table.exclude {
        let range = match item.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u16>(), b.trim().parse::<u16>()),
            None => (item.trim().parse::<u16>(), item.trim().parse::<u16>()),
        };
        match range {
            (Ok(a), Ok(b)) if a >= 1 && a <= b => exclude.push((a, b)),
            _ => {
                return Err(format!(
                    "exclude: `{item}` is not a port or a range like \"6000-6100\""
                ));
            }
        }
    }
    Ok(Some(AutoPorts {
        exclude,
        host_ip: table.host_ip.unwrap_or(IpAddr::from([127, 0, 0, 1])),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_and_tables_resolve() {
        assert_eq!(resolve(&RawAutoPorts::Switch(false)), Ok(None));
        let on = resolve(&RawAutoPorts::Switch(true)).unwrap().unwrap();
        assert_eq!(on.host_ip.to_string(), "127.0.0.1");
        assert!(on.exclude.is_empty());
        let t = resolve(&RawAutoPorts::Table(AutoPortsTable {
            exclude: vec!["5432".into(), "6000-6100".into()],
            host_ip: Some("0.0.0.0".parse().unwrap()),
        }))
        .unwrap()
        .unwrap();
        assert_eq!(t.exclude, [(5432, 5432), (6000, 6100)]);
        assert_eq!(t.host_ip.to_string(), "0.0.0.0");
        for bad in ["x", "10-5", "0", "70000", "1-2-3"] {
            let e = resolve(&RawAutoPorts::Table(AutoPortsTable {
                exclude: vec![bad.into()],
                host_ip: None,
            }))
            .unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
