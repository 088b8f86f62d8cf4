//! Host ports: which are free, and the forwarding plan of a boot.

use crate::backend::BackendError;
use crate::envfile::{PortForward, Protocol};
use crate::machine::state::Forward;
use anyhow::Result;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

/// Whether `port` can be bound on `ip` right now.
pub fn is_free(protocol: Protocol, ip: IpAddr, port: u16) -> bool {
    let addr = SocketAddr::new(ip, port);
    match protocol {
        Protocol::Tcp => TcpListener::bind(addr).is_ok(),
        Protocol::Udp => UdpSocket::bind(addr).is_ok(),
    }
}

/// A port the OS reports free on `ip` (it may be taken again before QEMU
/// binds it: callers retry on a bind failure).
pub fn pick_free(protocol: Protocol, ip: IpAddr) -> Result<u16> {
    let addr = SocketAddr::new(ip, 0);
    let port = match protocol {
        Protocol::Tcp => TcpListener::bind(addr)?.local_addr()?.port(),
        Protocol::Udp => UdpSocket::bind(addr)?.local_addr()?.port(),
    };
    Ok(port)
}

/// The SSH forward: always a free port on the loopback address.
pub fn ssh_forward(guest_port: u16) -> Result<Forward> {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    Ok(Forward {
        protocol: Protocol::Tcp,
        host_ip: ip,
        host_port: pick_free(Protocol::Tcp, ip)?,
        guest_port,
    })
}

/// Plans the forwards of a machine's ports, given a test of which host ports
/// are free. A taken port fails with a clear message, or moves to a free
/// port when it allows `auto_correct`.
pub fn plan_forwards(
    machine: &str,
    ports: &[PortForward],
    mut free: impl FnMut(Protocol, IpAddr, u16) -> bool,
    mut pick: impl FnMut(Protocol, IpAddr) -> Result<u16>,
) -> Result<Vec<Forward>> {
    let mut planned: Vec<Forward> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let taken_here = |port: u16, planned: &[Forward]| {
            planned
                .iter()
                .any(|f| f.host_port == port && f.protocol == p.protocol && f.host_ip == p.host_ip)
        };
        let host_port = if free(p.protocol, p.host_ip, p.host) && !taken_here(p.host, &planned) {
            p.host
        } else if p.auto_correct {
            let mut port = pick(p.protocol, p.host_ip)?;
            while taken_here(port, &planned) {
                port = pick(p.protocol, p.host_ip)?;
            }
            crate::util::ui::line(&format!(
                "{machine}: host port {}/{} on {} is in use; forwarding guest port {} from {port} instead (auto_correct)",
                p.host, p.protocol, p.host_ip, p.guest
            ));
            port
        } else {
            return Err(BackendError::PortTaken {
                rule: format!("ports[{i}]"),
                message: format!(
                    "machine `{machine}`: host port {}/{} on {} (ports[{i}], guest port {}) is in use by another program or machine: free it, change `host`, or set `auto_correct = true`",
                    p.host, p.protocol, p.host_ip, p.guest
                ),
            }
            .into());
        };
        planned.push(Forward {
            protocol: p.protocol,
            host_ip: p.host_ip,
            host_port,
            guest_port: p.guest,
        });
    }
    Ok(planned)
}

/// A forwarding rule QEMU could not set up (its host side), read from
/// QEMU's error text: QEMU 7.2 reports a failed `hostfwd` bind only as
/// `Could not set up host forwarding rule 'tcp:127.0.0.1:8080-:80'`. This is
/// the one place that reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenRule {
    /// The host port of the rule.
    pub host_port: u16,
}

/// The rule QEMU's error `message` names as failed, if it names one.
pub fn taken_forward(message: &str) -> Option<TakenRule> {
    let rule = message.split("host forwarding rule '").nth(1)?;
    let rule = rule.split('\'').next()?;
    // `tcp:127.0.0.1:8080-:80` or `tcp:[::1]:8080-:80`: the port before `-`.
    let host_side = rule.split('-').next()?;
    let port = host_side.rsplit(':').next()?.parse().ok()?;
    Some(TakenRule { host_port: port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(guest: u16, host: u16, auto_correct: bool) -> PortForward {
        PortForward {
            guest,
            host,
            protocol: Protocol::Tcp,
            host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            auto_correct,
        }
    }

    #[test]
    fn free_ports_are_kept() {
        let plan = plan_forwards(
            "web",
            &[port(80, 8080, false)],
            |_, _, _| true,
            |_, _| unreachable!(),
        )
        .unwrap();
        assert_eq!(plan[0].host_port, 8080);
        assert_eq!(plan[0].guest_port, 80);
    }

    #[test]
    fn taken_ports_fail_or_move() {
        let err = plan_forwards(
            "web",
            &[port(80, 8080, false)],
            |_, _, _| false,
            |_, _| Ok(1),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("8080/tcp") && msg.contains("in use") && msg.contains("auto_correct"),
            "{msg}"
        );
        assert!(
            matches!(err.downcast_ref(), Some(BackendError::PortTaken { rule, .. }) if rule == "ports[0]"),
            "typed, naming the Envfile's rule"
        );
        let plan = plan_forwards(
            "web",
            &[port(80, 8080, true)],
            |_, _, _| false,
            |_, _| Ok(40000),
        )
        .unwrap();
        assert_eq!(plan[0].host_port, 40000);
    }

    #[test]
    fn real_sockets() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = listener.local_addr().unwrap().port();
        assert!(!is_free(
            Protocol::Tcp,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            taken
        ));
        let free = pick_free(Protocol::Tcp, IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        assert!(is_free(
            Protocol::Tcp,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            free
        ));
        assert_eq!(ssh_forward(22).unwrap().guest_port, 22);
    }

    #[test]
    fn qemus_port_error_names_the_rule() {
        let message = "QEMU failed to start: qemu-system-x86_64: -netdev user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80: Could not set up host forwarding rule 'tcp:127.0.0.1:8080-:80'";
        assert_eq!(taken_forward(message), Some(TakenRule { host_port: 8080 }));
        assert_eq!(
            taken_forward("Could not set up host forwarding rule 'udp:[::1]:5353-:53'"),
            Some(TakenRule { host_port: 5353 })
        );
        assert_eq!(taken_forward("QEMU failed to start: no such file"), None);
    }
}
