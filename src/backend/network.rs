//! The project's private network and names: a second NIC on every machine,
//! joined through a QEMU multicast socket segment bound to loopback (no root
//! needed, one segment per project, never leaving the host), static addresses
//! from a per-project /24, host names and an `/etc/hosts` block.

use crate::envfile::Envfile;
use crate::util::paths::short_hash;
use crate::util::shell::shell_quote;
use anyhow::{Result, bail};
use std::net::Ipv4Addr;
use std::path::Path;

/// Marks env's block in a guest's `/etc/hosts` (other lines are never touched).
pub const HOSTS_BEGIN: &str = "# BEGIN env hosts (managed by env: edits here are replaced)";
/// End of env's block.
pub const HOSTS_END: &str = "# END env hosts";

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
pub struct Plan {
    /// The segment, when the project has a private network.
    pub segment: Option<Segment>,
    /// The /24 of the private network.
    pub subnet: Ipv4Addr,
    /// Each machine's name, private address (when there is a network) and MAC.
    pub machines: Vec<MachineNet>,
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
pub fn plan(envfile: &Envfile, state_dir: &Path) -> Result<Plan> {
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
    Ok(Plan {
        segment: wanted.then(|| segment_for(state_dir)),
        subnet,
        machines,
    })
}

/// env's `/etc/hosts` block: the machine's own name on 127.0.1.1, then every
/// machine of the project with a private address.
pub fn hosts_block(own_name: &str, plan: &Plan) -> String {
    let mut block = format!("{HOSTS_BEGIN}\n127.0.1.1\t{own_name}\n");
    for m in &plan.machines {
        if let Some(ip) = m.ip {
            block.push_str(&format!("{ip}\t{}\n", m.name));
        }
    }
    block.push_str(HOSTS_END);
    block.push('\n');
    block
}

/// The root script that names a guest, sets its private address and writes
/// the hosts block. It carries the whole hosts file logic (awk) so that it
/// runs in one SSH round trip on any guest with a POSIX shell.
pub fn guest_script(me: &MachineNet, plan: &Plan) -> String {
    let mut s = String::from("set -e\n");
    s.push_str(&format!(
        "echo {name} > /etc/hostname\nhostname {name}\n",
        name = shell_quote(&me.name)
    ));
    if let Some(ip) = me.ip {
        s.push_str(&format!(
            "mkdir -p /etc/systemd/network\ncat > /etc/systemd/network/20-env-private.network <<'ENVEOF'\n# written by env: the project's private network\n[Match]\nMACAddress={mac}\n[Network]\nAddress={ip}/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\nENVEOF\n\
             dev=$(for d in /sys/class/net/*; do if [ \"$(cat $d/address)\" = {mac} ]; then basename $d; fi; done)\n\
             if [ -n \"$dev\" ]; then ip link set dev \"$dev\" up; ip addr replace {ip}/24 dev \"$dev\"; fi\n",
            mac = me.mac
        ));
    }
    let block = hosts_block(&me.name, plan);
    s.push_str(&format!(
        "awk -v block={block} 'BEGIN {{ placed = 0 }} /^# BEGIN env hosts/ {{ printf \"%s\", block; placed = 1; skip = 1; next }} skip && $0 == \"{end}\" {{ skip = 0; next }} skip {{ next }} {{ print }} END {{ if (!placed) printf \"%s\", block }}' /etc/hosts > /etc/hosts.env-new\n\
         cat /etc/hosts.env-new > /etc/hosts\nrm -f /etc/hosts.env-new\n",
        block = shell_quote(&block.replace('\\', "\\\\").replace('\n', "\\n")),
        end = HOSTS_END,
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replaces env's block in an `/etc/hosts` text (appending it when absent),
    /// keeping every other line as it was.
    fn replace_hosts_block(hosts: &str, block: &str) -> String {
        let mut out = String::new();
        let mut inside = false;
        let mut placed = false;
        for line in hosts.lines() {
            if line.starts_with("# BEGIN env hosts") {
                inside = true;
                out.push_str(block);
                placed = true;
                continue;
            }
            if inside {
                if line == HOSTS_END {
                    inside = false;
                }
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        if !placed {
            out.push_str(block);
        }
        out
    }

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

    #[test]
    fn hosts_block_is_replaced_and_nothing_else() {
        let plan = Plan {
            segment: None,
            subnet: Ipv4Addr::new(10, 1, 1, 0),
            machines: vec![
                MachineNet {
                    name: "web".into(),
                    ip: Some(Ipv4Addr::new(10, 1, 1, 11)),
                    mac: "m".into(),
                },
                MachineNet {
                    name: "db".into(),
                    ip: Some(Ipv4Addr::new(10, 1, 1, 12)),
                    mac: "n".into(),
                },
            ],
        };
        let block = hosts_block("web", &plan);
        assert_eq!(
            block,
            format!("{HOSTS_BEGIN}\n127.0.1.1\tweb\n10.1.1.11\tweb\n10.1.1.12\tdb\n{HOSTS_END}\n")
        );
        let original = "127.0.0.1\tlocalhost\n# mine\n10.9.9.9 other\n";
        let once = replace_hosts_block(original, &block);
        assert!(once.starts_with(original));
        let twice = replace_hosts_block(&once, &hosts_block("db", &plan));
        assert!(twice.starts_with(original));
        assert_eq!(twice.matches(HOSTS_BEGIN).count(), 1);
        assert!(twice.contains("127.0.1.1\tdb\n"));
    }

    #[test]
    fn the_guest_script_matches_the_pure_hosts_logic() {
        // Run the generated awk against a sample hosts file with the host's sh.
        let plan = Plan {
            segment: None,
            subnet: Ipv4Addr::new(10, 1, 1, 0),
            machines: vec![MachineNet {
                name: "web".into(),
                ip: None,
                mac: "m".into(),
            }],
        };
        let script = guest_script(&plan.machines[0], &plan);
        let awk_line = script
            .lines()
            .find(|l| l.starts_with("awk"))
            .unwrap()
            .replace(" /etc/hosts > /etc/hosts.env-new", " \"$1\"");
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        let original = format!(
            "127.0.0.1 localhost\n{HOSTS_BEGIN}\n127.0.1.1\tdebian\n{HOSTS_END}\n::1 ip6-localhost\n"
        );
        std::fs::write(&hosts, &original).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&awk_line)
            .arg("sh")
            .arg(&hosts)
            .output()
            .unwrap();
        let got = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            got,
            replace_hosts_block(&original, &hosts_block("web", &plan))
        );
    }
}
