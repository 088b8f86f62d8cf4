//! The ports a machine's domain forwards, chosen once and kept across
//! boots: a libvirt snapshot holds the domain's definition, ports included,
//! so a revert (a restore, a resume) must find the same ones in place.

use crate::machine::state::Forward;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

/// What QEMU's user network on the libvirt host forwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainPorts {
    /// The guest's SSH, on the hypervisor host's loopback.
    pub ssh: u16,
    /// The Envfile's ports as QEMU binds them on the hypervisor host.
    pub forwards: Vec<Forward>,
}

/// How ports are picked.
pub struct Pickers<'a> {
    /// Whether a port on this host is free (local libvirt: QEMU binds the
    /// developer's ports itself).
    pub free: &'a dyn Fn(&Forward) -> bool,
    /// A free loopback port on this host.
    pub local_port: &'a mut dyn FnMut() -> Result<u16>,
    /// A port on the remote host's loopback (which env cannot look at).
    pub remote_port: &'a mut dyn FnMut() -> u16,
}

fn loopback(port: u16, guest: u16) -> Forward {
    Forward {
        protocol: crate::envfile::Protocol::Tcp,
        host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        host_port: port,
        guest_port: guest,
    }
}

/// The domain's ports: the kept ones while they still fit (same forwarded
/// guest ports; on this host, still free and the same as planned), else
/// new ones. `local`: the Envfile's ports as the developer's side binds
/// them. `fresh`: a boot failed on a taken port, pick new ones.
pub fn plan(
    remote: bool,
    guest_ssh: u16,
    local: &[Forward],
    kept: Option<&DomainPorts>,
    fresh: bool,
    pick: Pickers<'_>,
) -> Result<DomainPorts> {
    if let Some(k) = kept.filter(|_| !fresh) {
        let fits = if remote {
            k.forwards.len() == local.len()
                && k.forwards
                    .iter()
                    .zip(local)
                    .all(|(a, b)| a.guest_port == b.guest_port && a.protocol == b.protocol)
        } else {
            k.forwards == local
                && (pick.free)(&loopback(k.ssh, guest_ssh))
                && k.forwards.iter().all(|f| (pick.free)(f))
        };
        if fits {
            return Ok(k.clone());
        }
    }
    if remote {
        Ok(DomainPorts {
            ssh: (pick.remote_port)(),
            forwards: local
                .iter()
                .map(|f| Forward {
                    host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    host_port: (pick.remote_port)(),
                    ..f.clone()
                })
                .collect(),
        })
    } else {
        Ok(DomainPorts {
            ssh: (pick.local_port)()?,
            forwards: local.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(host: u16, guest: u16) -> Forward {
        loopback(host, guest)
    }

    fn run(
        remote: bool,
        local: &[Forward],
        kept: Option<&DomainPorts>,
        fresh: bool,
        free: bool,
    ) -> DomainPorts {
        let mut next_local = 40000;
        let mut next_remote = 50000;
        let is_free = move |_: &Forward| free;
        let mut local_port = || {
            next_local += 1;
            Ok(next_local)
        };
        let mut remote_port = || {
            next_remote += 1;
            next_remote
        };
        plan(
            remote,
            22,
            local,
            kept,
            fresh,
            Pickers {
                free: &is_free,
                local_port: &mut local_port,
                remote_port: &mut remote_port,
            },
        )
        .unwrap()
    }

    #[test]
    fn remote_ports_are_kept_while_the_guest_ports_stay() {
        let local = [fwd(8080, 80)];
        let first = run(true, &local, None, false, true);
        assert_eq!(first.ssh, 50001);
        assert_eq!(first.forwards, [fwd(50002, 80)]);
        let kept = DomainPorts {
            ssh: 1,
            forwards: vec![fwd(2, 80)],
        };
        assert_eq!(run(true, &local, Some(&kept), false, true), kept);
        // Another developer port for the same guest port: kept too.
        assert_eq!(run(true, &[fwd(9090, 80)], Some(&kept), false, true), kept);
        // Another guest port, or a taken port: new ones.
        assert_eq!(
            run(true, &[fwd(8080, 81)], Some(&kept), false, true).ssh,
            50001
        );
        assert_eq!(run(true, &local, Some(&kept), true, true), first);
    }

    #[test]
    fn local_ports_are_kept_while_free_and_planned_the_same() {
        let local = [fwd(8080, 80)];
        let first = run(false, &local, None, false, true);
        assert_eq!((first.ssh, first.forwards.as_slice()), (40001, &local[..]));
        let kept = DomainPorts {
            ssh: 1,
            forwards: local.to_vec(),
        };
        assert_eq!(run(false, &local, Some(&kept), false, true), kept);
        // Taken since (not free any more): a new SSH port.
        assert_eq!(run(false, &local, Some(&kept), false, false).ssh, 40001);
        // The Envfile moved a port: planned again.
        assert_eq!(
            run(false, &[fwd(8081, 80)], Some(&kept), false, true).ssh,
            40001
        );
    }
}
