//! `[addr."tcp://host:port"]`: a TCP address reached from the guest.

use super::common::{AttrType, Resource};
use crate::spec::check::Check;
use crate::spec::facts::{Facts, Fields, Found, Observed, get};
use crate::util::shell::shell_quote;

/// TCP addresses.
pub struct Addr;

impl Resource for Addr {
    fn attributes(&self) -> &'static [(&'static str, AttrType)] {
        &[("reachable", AttrType::Bool)]
    }

    fn recorded(&self) -> &'static [&'static str] {
        &["reachable"]
    }

    fn check_name(&self, name: &str) -> Result<(), String> {
        parse_addr(name).map(drop)
    }

    fn timed(&self) -> bool {
        true
    }

    fn gather(&self, id: usize, check: &Check) -> String {
        let t = check.time_limit().as_secs().max(1);
        let (host, port) = parse_addr(&check.name).unwrap_or_default();
        let (h, p) = (shell_quote(&host), port);
        format!(
            "if has timeout && has bash; then timeout {t} bash -c 'exec 3<>\"/dev/tcp/$0/$1\"' {h} {p} 2>/dev/null; val {id} rc $?\n\
             elif has python3; then python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), float(sys.argv[3]))' {h} {p} {t} 2>/dev/null; val {id} rc $?\n\
             elif has nc; then nc -z -w {t} {h} {p} 2>/dev/null; val {id} rc $?\n\
             else val {id} error 'no bash, python3 or nc in the guest to open a connection'; fi\n"
        )
    }

    fn observe(&self, _: &Check, f: &Fields, _: &Facts) -> Observed {
        Observed::from([(
            "reachable",
            Found::Bool(get(f, "rc").as_deref() == Some("0")),
        )])
    }
}

/// `tcp://host:port`.
pub fn parse_addr(name: &str) -> Result<(String, u16), String> {
    let bad = || format!("`{name}` is not an address: write `tcp://HOST:PORT`");
    let rest = name.strip_prefix("tcp://").ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:_".contains(c))
    {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}
