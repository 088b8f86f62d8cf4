//! The project's private network and names: a second NIC on every machine,
//! joined through a QEMU multicast socket segment bound to loopback (no root
//! needed, one segment per project, never leaving the host), static addresses
//! from a per-project /24, host names and an `/etc/hosts` block.

use crate::envfile::Envfile;
use crate::util::paths::short_hash;
use anyhow::{Result, bail};
use std::net::Ipv4Addr;
use std::path::Path;

/// The multicast segment of a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Administratively scoped group (239.255.x.y).
    pub group: Ipv4Addr,
    /// UDP port.
    pub port: u16,
}

/// A project's network plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPlan {
    /// The segment, when the project has a private network.
    pub segment: Option<Segment>,
    /// The /24 of the private network.
    pub subnet: Ipv4Addr,
    /// Each machine's name, private address (when there is a network) and MAC.
    pub machines: Vec<MachineNet>,
}

/// A machine's link on the project's private network: what a backend
/// needs to attach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateLink {
    /// The project's segment.
    pub segment: Segment,
    /// The machine's MAC on it.
    pub mac: String,
}

impl NetworkPlan {
    /// The link of machine `name`, when the project has a private network.
    pub fn link_of(&self, name: &str) -> Option<PrivateLink> {
        let me = self.machines.iter().find(|m| m.name == name)?;
        Some(PrivateLink {
            segment: self.segment?,
            mac: me.mac.clone(),
        })
    }
}

/// One machine in the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineNet {
    /// Machine name (its host name).
    pub name: String,
    /// Address on the private network.
    pub ip: Option<Ipv4Addr>,
    /// MAC of its private NIC.
    pub mac: String,
}

fn hash_bytes(key: &str) -> [u8; 8] {
    let hex = short_hash(Path::new(key));
    let mut out = [0u8; 8];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    out
}

/// The segment of the project whose state lives in `state_dir`.
pub fn segment_for(state_dir: &Path) -> Segment {
    let h = hash_bytes(&state_dir.to_string_lossy());
    Segment {
        group: Ipv4Addr::new(239, 255, h[0], h[1].max(1)),
        port: 20000 + (u16::from_be_bytes([h[2], h[3]]) % 30000),
    }
}

/// The default /24 of a project: 10.251.x.0 with x from the project's hash
/// (rarely used ranges; guests' first NIC is QEMU's 10.0.2.0/24).
pub fn default_subnet(state_dir: &Path) -> Ipv4Addr {
    let h = hash_bytes(&state_dir.to_string_lossy());
    Ipv4Addr::new(10, 251, h[4], 0)
}

/// A stable, locally administered MAC for a machine's private NIC.
pub fn mac_for(state_dir: &Path, machine: &str) -> String {
    let h = hash_bytes(&format!("{}/{machine}", state_dir.to_string_lossy()));
    format!("52:54:00:{:02x}:{:02x}:{:02x}", h[0], h[1], h[2])
}

/// Plans the network of a project: explicit `ip`s kept, the others numbered
/// from .11 in Envfile order. A private network exists when the project has
/// several machines or any machine sets `ip`.
pub fn plan(envfile: &Envfile, state_dir: &Path) -> Result<NetworkPlan> {
    let wanted = envfile.machines.len() > 1 || envfile.machines.iter().any(|m| m.ip.is_some());
    let subnet = envfile
        .private_subnet
        .unwrap_or_else(|| default_subnet(state_dir));
    let mut taken: Vec<Ipv4Addr> = envfile.machines.iter().filter_map(|m| m.ip).collect();
    let mut next = 11u8;
    let mut machines = Vec::new();
    for m in &envfile.machines {
        let ip = if !wanted {
            None
        } else if let Some(ip) = m.ip {
            Some(ip)
        } else {
            loop {
                if next == 255 {
                    bail!("the private network {subnet}/24 has no free address left");
                }
                let o = subnet.octets();
                let candidate = Ipv4Addr::new(o[0], o[1], o[2], next);
                next += 1;
                if !taken.contains(&candidate) {
                    taken.push(candidate);
                    break Some(candidate);
                }
            }
        };
        machines.push(MachineNet {
            name: m.name.clone(),
            ip,
            mac: mac_for(state_dir, &m.name),
        });
    }
    Ok(NetworkPlan {
        segment: wanted.then(|| segment_for(state_dir)),
        subnet,
        machines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envfile(text: &str) -> Envfile {
        crate::envfile::read::parse(Path::new("/p/Envfile"), text).unwrap()
    }

    #[test]
    fn one_machine_has_no_private_network() {
        let plan = plan(
            &envfile("[defaults]\nbox = \"b\"\n"),
            Path::new("/p/.envstate"),
        )
        .unwrap();
        assert_eq!(plan.segment, None);
        assert_eq!(plan.machines[0].ip, None);
    }

    #[test]
    fn addresses_are_numbered_around_explicit_ones() {
        let e = envfile(
            "[defaults]\nbox = \"b\"\nprivate_subnet = \"192.168.56.0\"\n[machines.a]\n[machines.b]\nip = \"192.168.56.11\"\n[machines.c]\n",
        );
        let plan = plan(&e, Path::new("/p/.envstate")).unwrap();
        let ips: Vec<String> = plan
            .machines
            .iter()
            .map(|m| m.ip.unwrap().to_string())
            .collect();
        assert_eq!(ips, ["192.168.56.12", "192.168.56.11", "192.168.56.13"]);
        assert!(plan.segment.is_some());
    }

    #[test]
    fn projects_get_their_own_segment_subnet_and_macs() {
        let (a, b) = (Path::new("/one/.envstate"), Path::new("/two/.envstate"));
        assert_ne!(segment_for(a), segment_for(b));
        assert_eq!(segment_for(a), segment_for(a));
        assert_eq!(segment_for(a).group.octets()[..2], [239, 255]);
        assert_eq!(default_subnet(a).octets()[..2], [10, 251]);
        assert_ne!(mac_for(a, "web"), mac_for(a, "db"));
        assert!(mac_for(a, "web").starts_with("52:54:00:"));
        let s = segment_for(a);
        let args = crate::backend::qemu::args::private_network_args(
            &crate::backend::qemu::args::PrivateNic {
                group: s.group,
                port: s.port,
                mac: "52:54:00:01:02:03".into(),
            },
        );
        assert!(
            args[1].starts_with("socket,id=net1,mcast=239.255."),
            "{}",
            args[1]
        );
        assert!(args[1].ends_with(",localaddr=127.0.0.1"));
        assert_eq!(
            args[3],
            "virtio-net-pci,netdev=net1,mac=52:54:00:01:02:03,romfile="
        );
    }
}
