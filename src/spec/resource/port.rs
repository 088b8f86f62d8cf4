//! `[port."tcp:80"]`: a listening port, from `/proc/net/{tcp,udp}{,6}`
//! (read with the other shared files: no `ss` or `netstat` needed).

use super::common::{AttrType, Resource};
use crate::spec::check::Check;
use crate::spec::facts::{Facts, Fields, Found, Observed};
use std::net::IpAddr;

/// Ports.
pub struct Port;

/// The kernel's socket tables, with their protocol and IP version.
const TABLES: [(&str, bool, bool); 4] = [
    ("/proc/net/tcp", false, false),
    ("/proc/net/tcp6", false, true),
    ("/proc/net/udp", true, false),
    ("/proc/net/udp6", true, true),
];

impl Resource for Port {
    fn attributes(&self) -> &'static [(&'static str, AttrType)] {
        &[
            ("listening", AttrType::Bool),
            ("addresses", AttrType::Includes),
        ]
    }

    fn recorded(&self) -> &'static [&'static str] {
        &["listening", "addresses"]
    }

    fn check_name(&self, name: &str) -> Result<(), String> {
        parse_port(name).map(drop)
    }

    fn shared_files(&self, _: &Check) -> Vec<String> {
        TABLES.iter().map(|(f, _, _)| f.to_string()).collect()
    }

    fn gather(&self, id: usize, _: &Check) -> String {
        // Judged from the shared tables.
        format!("val {id} seen 1\n")
    }

    fn observe(&self, check: &Check, _: &Fields, facts: &Facts) -> Observed {
        let mut seen = Observed::new();
        if let Ok((proto, port)) = parse_port(&check.name) {
            let addresses: Vec<String> = listeners(facts)
                .iter()
                .filter(|l| l.port == port && serves(proto, l))
                .map(|l| l.address.to_string())
                .collect();
            seen.insert("listening", Found::Bool(!addresses.is_empty()));
            seen.insert("addresses", Found::List(addresses));
        }
        seen
    }

    fn includes(&self, want: &str, have: &str) -> bool {
        // A dual-stack `::` listener serves IPv4 too.
        let (w, h) = (want.parse::<IpAddr>().ok(), have.parse::<IpAddr>().ok());
        w.is_some() && (w == h || (want == "0.0.0.0" && have == "::"))
    }
}

/// Transport protocols of port checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortProtocol {
    /// TCP (a tcp6 dual-stack listener counts).
    Tcp,
    /// UDP (likewise udp6).
    Udp,
    /// TCP over IPv6 only.
    Tcp6,
    /// UDP over IPv6 only.
    Udp6,
}

/// `tcp:80`, `udp:53`, `tcp6:22` or `80`.
pub fn parse_port(name: &str) -> Result<(PortProtocol, u16), String> {
    let (proto, port) = match name.split_once(':') {
        Some((p, n)) => (p, n),
        None => ("tcp", name),
    };
    let proto = match proto {
        "tcp" => PortProtocol::Tcp,
        "udp" => PortProtocol::Udp,
        "tcp6" => PortProtocol::Tcp6,
        "udp6" => PortProtocol::Udp6,
        _ => return Err(format!("`{name}`: the protocol is tcp, udp, tcp6 or udp6")),
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("`{name}` is not a port: write `tcp:80`, `udp:53` or `80`"))?;
    Ok((proto, port))
}

/// A listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `tcp` or `udp`.
    pub udp: bool,
    /// Over IPv6.
    pub v6: bool,
    /// Local address.
    pub address: IpAddr,
    /// Local port.
    pub port: u16,
}

fn serves(proto: PortProtocol, l: &Listener) -> bool {
    match proto {
        PortProtocol::Tcp => !l.udp,
        PortProtocol::Udp => l.udp,
        PortProtocol::Tcp6 => !l.udp && l.v6,
        PortProtocol::Udp6 => l.udp && l.v6,
    }
}

/// Listening sockets from `/proc/net/{tcp,tcp6,udp,udp6}`: TCP in state
/// LISTEN (0A), UDP bound (state 07).
pub fn listeners(facts: &Facts) -> Vec<Listener> {
    let mut out = Vec::new();
    for (key, udp, v6) in TABLES {
        let Some(table) = facts.shared.get(key) else {
            continue;
        };
        for line in String::from_utf8_lossy(table).lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 4 || cols[3] != if udp { "07" } else { "0A" } {
                continue;
            }
            if let Some((address, port)) = parse_socket(cols[1], v6) {
                out.push(Listener {
                    udp,
                    v6,
                    address,
                    port,
                });
            }
        }
    }
    out
}

/// `0100007F:0050` (little-endian words, as the kernel prints them).
fn parse_socket(text: &str, v6: bool) -> Option<(IpAddr, u16)> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).map(u32::swap_bytes))
        .collect::<Result<_, _>>()
        .ok()?;
    let ip = if v6 {
        if words.len() != 4 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, w) in words.iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        IpAddr::from(bytes)
    } else {
        IpAddr::from(words.first()?.to_be_bytes())
    };
    Some((ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_decode() {
        assert_eq!(
            parse_socket("0100007F:0050", false),
            Some(("127.0.0.1".parse().unwrap(), 80))
        );
        assert_eq!(
            parse_socket("00000000000000000000000001000000:0016", true),
            Some(("::1".parse().unwrap(), 22))
        );
    }
}
