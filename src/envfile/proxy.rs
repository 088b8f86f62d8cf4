//! `proxy`: the HTTP proxy a guest uses (vagrant-proxyconf's job):
//! `proxy = "inherit"` takes the host's `http_proxy`/`https_proxy`/
//! `no_proxy` when env boots the machine, a table gives them outright.

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use std::fmt;

/// A proxy table as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyTable {
    /// Proxy for `http://` URLs (`http://proxy.corp:3128`).
    pub http: Option<String>,
    /// Proxy for `https://` URLs.
    pub https: Option<String>,
    /// Hosts reached directly (`localhost,.corp.example`).
    pub no_proxy: Option<String>,
}

/// `proxy`, as written: a word or a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawProxy {
    /// `proxy = "..."` (only `inherit` is meant).
    Word(String),
    /// `proxy = { http = ..., https = ..., no_proxy = ... }`.
    Table(ProxyTable),
}

impl<'de> Deserialize<'de> for RawProxy {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Words;
        impl<'de> Visitor<'de> for Words {
            type Value = RawProxy;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"inherit\" or a table { http, https, no_proxy }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawProxy, E> {
                Ok(RawProxy::Word(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawProxy, A::Error> {
                ProxyTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawProxy::Table)
            }
        }
        d.deserialize_any(Words)
    }
}

/// The proxy a machine's guest is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxySetting {
    /// The host's variables when the machine boots.
    Inherit,
    /// These values.
    Explicit(ProxyTable),
}

/// Checks a written `proxy`: the word `inherit`, or URLs and a host list
/// that can go into shell, apt and dnf configuration as they are.
pub fn resolve(raw: &RawProxy) -> Result<ProxySetting, String> {
    match raw {
        RawProxy::Word(w) if w == "inherit" => Ok(ProxySetting::Inherit),
        RawProxy::Word(w) => Err(format!(
            "`{w}` is not a proxy setting: write \"inherit\" (the host's http_proxy, https_proxy and no_proxy) or a table {{ http = \"http://proxy:3128\", https = ..., no_proxy = ... }}"
        )),
        RawProxy::Table(t) => {
            if t.http.is_none() && t.https.is_none() {
                return Err("give `http` or `https` (or both)".into());
            }
            for url in t.http.iter().chain(&t.https) {
                check_url(url)?;
            }
            if let Some(list) = &t.no_proxy {
                check_plain("no_proxy", list)?;
            }
            Ok(ProxySetting::Explicit(t.clone()))
        }
    }
}

/// No whitespace, quotes, backslashes or control characters: the value
/// goes into configuration files of several syntaxes unquoted.
fn check_plain(what: &str, value: &str) -> Result<(), String> {
    match value
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "\"'\\`$;".contains(*c))
    {
        Some(c) => Err(format!("the {what} `{}` holds {c:?}", value.escape_debug())),
        None => Ok(()),
    }
}

/// A proxy URL: `http://` or `https://`, a host, maybe a port and a user.
pub fn check_url(url: &str) -> Result<(), String> {
    check_plain("proxy URL", url)?;
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "`{url}` is not an http:// or https:// proxy URL with a host"
        ));
    }
    Ok(())
}

/// The values a guest gets for `setting`: explicit ones as written; the
/// host's (`lookup` reads its environment, lower-case names first) with a
/// loopback proxy host rewritten to `host_from_guest`, the address at which
/// the guest reaches the host (a proxy on the host's 127.0.0.1 is not on
/// the guest's). `None` when the host has no proxy to inherit.
pub fn effective(
    setting: &ProxySetting,
    lookup: &dyn Fn(&str) -> Option<String>,
    host_from_guest: &str,
) -> Option<ProxyTable> {
    match setting {
        ProxySetting::Explicit(t) => Some(t.clone()),
        ProxySetting::Inherit => {
            let var = |name: &str| {
                lookup(name)
                    .or_else(|| lookup(&name.to_uppercase()))
                    .filter(|v| !v.is_empty())
            };
            let url = |name: &str| {
                var(name)
                    .filter(|v| check_url(v).is_ok())
                    .map(|v| rewrite_loopback(&v, host_from_guest))
            };
            let table = ProxyTable {
                http: url("http_proxy"),
                https: url("https_proxy"),
                no_proxy: var("no_proxy").filter(|v| check_plain("no_proxy", v).is_ok()),
            };
            (table.http.is_some() || table.https.is_some()).then_some(table)
        }
    }
}

/// `url` with a loopback host (`localhost`, `127.x`, `::1`) replaced.
fn rewrite_loopback(url: &str, host: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return url.to_string();
    };
    let loopback = parsed.host_str().is_some_and(|h| {
        h.eq_ignore_ascii_case("localhost")
            || h.trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|a| a.is_loopback())
    });
    if loopback && parsed.set_host(Some(host)).is_ok() {
        let text = parsed.to_string();
        // Url adds a `/` path to a bare origin; proxies are written without.
        match url.ends_with('/') {
            true => text,
            false => text.trim_end_matches('/').to_string(),
        }
    } else {
        url.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(http: Option<&str>, https: Option<&str>, no: Option<&str>) -> ProxyTable {
        ProxyTable {
            http: http.map(String::from),
            https: https.map(String::from),
            no_proxy: no.map(String::from),
        }
    }

    #[test]
    fn words_and_tables_are_checked() {
        assert_eq!(
            resolve(&RawProxy::Word("inherit".into())),
            Ok(ProxySetting::Inherit)
        );
        assert!(
            resolve(&RawProxy::Word("auto".into()))
                .unwrap_err()
                .contains("inherit")
        );
        let ok = table(
            Some("http://proxy.corp:3128"),
            None,
            Some("localhost,.corp"),
        );
        assert_eq!(
            resolve(&RawProxy::Table(ok.clone())),
            Ok(ProxySetting::Explicit(ok))
        );
        for (bad, says) in [
            (table(None, None, Some("x")), "give `http`"),
            (
                table(Some("proxy.corp:3128"), None, None),
                "http:// or https://",
            ),
            (table(Some("ftp://p:21"), None, None), "http:// or https://"),
            (table(Some("http://p:3128\"; rm"), None, None), "holds"),
            (table(Some("http://p:3128"), None, Some("a b")), "holds ' '"),
        ] {
            let e = resolve(&RawProxy::Table(bad)).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn inherit_reads_the_host_and_points_loopback_at_the_host() {
        let host = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let got = effective(
            &ProxySetting::Inherit,
            &host(&[
                ("http_proxy", "http://127.0.0.1:3128"),
                ("HTTPS_PROXY", "http://user@localhost:8080/"),
                ("no_proxy", "localhost,.corp"),
            ]),
            "10.0.2.2",
        )
        .unwrap();
        assert_eq!(got.http.as_deref(), Some("http://10.0.2.2:3128"));
        assert_eq!(got.https.as_deref(), Some("http://user@10.0.2.2:8080/"));
        assert_eq!(got.no_proxy.as_deref(), Some("localhost,.corp"));
        let remote = effective(
            &ProxySetting::Inherit,
            &host(&[("http_proxy", "http://proxy.corp:3128")]),
            "10.0.2.2",
        )
        .unwrap();
        assert_eq!(remote.http.as_deref(), Some("http://proxy.corp:3128"));
        assert_eq!(
            effective(&ProxySetting::Inherit, &host(&[]), "10.0.2.2"),
            None
        );
        let bad = host(&[("http_proxy", "http://p:1\"x")]);
        assert_eq!(effective(&ProxySetting::Inherit, &bad, "10.0.2.2"), None);
    }
}
