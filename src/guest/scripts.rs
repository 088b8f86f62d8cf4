//! Every shell script env runs in a guest, built by pure functions: the
//! name, private address and `/etc/hosts` block, mounts, the per-machine
//! key, the clean-up before packaging, the journal stream. The file names
//! and markers they share are constants here, so a script that writes a
//! file and one that removes it cannot drift apart.

use crate::backend::network::{MachineNet, NetworkPlan};
use crate::envfile::disks::Disk;
use crate::envfile::folders::{Folder, FolderKind};
use crate::util::shell::shell_quote;

/// The systemd-networkd unit env writes for the private network.
pub const PRIVATE_NETWORK_FILE: &str = "/etc/systemd/network/20-env-private.network";

/// The start of the marker line of env's block in `/etc/hosts`, as awk
/// finds it.
const HOSTS_BEGIN_PREFIX: &str = "# BEGIN env hosts";

/// Marks env's block in a guest's `/etc/hosts` (other lines are never touched).
pub const HOSTS_BEGIN: &str = "# BEGIN env hosts (managed by env: edits here are replaced)";
/// End of env's block.
pub const HOSTS_END: &str = "# END env hosts";

/// env's `/etc/hosts` block: the machine's own name on 127.0.1.1, then every
/// machine of the project with a private address.
pub fn hosts_block(own_name: &str, plan: &NetworkPlan) -> String {
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
pub fn name_and_network(me: &MachineNet, plan: &NetworkPlan) -> String {
    let mut s = String::from("set -e\n");
    // Minimal images may lack `hostname`, `ip` or even /etc/hosts: each
    // step has a way that needs none of them, or makes what is missing.
    s.push_str(&format!(
        "echo {name} > /etc/hostname\n\
         hostname {name} 2>/dev/null || echo {name} > /proc/sys/kernel/hostname\n\
         [ -e /etc/hosts ] || printf '127.0.0.1\\tlocalhost\\n' > /etc/hosts\n",
        name = shell_quote(&me.name)
    ));
    if let Some(ip) = me.ip {
        s.push_str(&format!(
            "mkdir -p /etc/systemd/network\ncat > {file} <<'ENVEOF'\n# written by env: the project's private network\n[Match]\nMACAddress={mac}\n[Network]\nAddress={ip}/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\nENVEOF\n\
             dev=$(for d in /sys/class/net/*; do if [ \"$(cat $d/address)\" = {mac} ]; then basename $d; fi; done)\n\
             if [ -n \"$dev\" ] && command -v ip >/dev/null; then ip link set dev \"$dev\" up; ip addr replace {ip}/24 dev \"$dev\"; fi\n",
            mac = me.mac,
            file = PRIVATE_NETWORK_FILE
        ));
    }
    let block = hosts_block(&me.name, plan);
    s.push_str(&format!(
        "awk -v block={block} 'BEGIN {{ placed = 0 }} /^{begin}/ {{ printf \"%s\", block; placed = 1; skip = 1; next }} skip && $0 == \"{end}\" {{ skip = 0; next }} skip {{ next }} {{ print }} END {{ if (!placed) printf \"%s\", block }}' /etc/hosts > /etc/hosts.env-new\n\
         cat /etc/hosts.env-new > /etc/hosts\nrm -f /etc/hosts.env-new\n",
        block = shell_quote(&block.replace('\\', "\\\\").replace('\n', "\\n")),
        end = HOSTS_END,
        begin = HOSTS_BEGIN_PREFIX,
    ));
    s
}

/// Guest commands formatting (on first use only) and mounting data disks.
pub fn disk_mount_script(disks: &[Disk]) -> String {
    let mut s = String::new();
    for d in disks {
        let Some(mount) = &d.mount else { continue };
        let mount = crate::util::shell::shell_quote(mount);
        s.push_str(&format!(
            "dev=/dev/disk/by-id/virtio-env-{name}\ni=0; while [ ! -b \"$dev\" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done\n\
             [ -b \"$dev\" ] || {{ echo \"disk {name} did not appear at $dev\" >&2; exit 1; }}\n\
             blkid \"$dev\" >/dev/null 2>&1 || mkfs.ext4 -q -L {name} \"$dev\"\n\
             mkdir -p {mount}\nmountpoint -q {mount} || mount \"$dev\" {mount}\n",
            name = d.name
        ));
    }
    s
}

/// msize of 9p mounts: large requests make reads and writes fast.
const NINEP_MSIZE: u32 = 512 * 1024;

/// Guest commands mounting the 9p folders (tags by position, as in `vm_spec`).
pub fn mount_script(folders: &[Folder]) -> String {
    let mut s = String::new();
    for (i, f) in folders.iter().enumerate() {
        let guest = crate::util::shell::shell_quote(&f.guest);
        let tag = crate::backend::qemu::args::share_tag(i);
        match f.kind {
            FolderKind::NineP => s.push_str(&format!(
                "modprobe -a 9pnet_virtio 9p 2>/dev/null || true\nmkdir -p {guest}\nmountpoint -q {guest} || mount -t 9p -o trans=virtio,version=9p2000.L,msize={NINEP_MSIZE},cache=none{ro} {tag} {guest}\n",
                ro = if f.readonly { ",ro" } else { "" },
            )),
            FolderKind::Virtiofs => s.push_str(&format!(
                "modprobe virtiofs 2>/dev/null || true\nmkdir -p {guest}\nmountpoint -q {guest} || mount -t virtiofs{ro} {tag} {guest}\n",
                ro = if f.readonly { " -o ro" } else { "" },
            )),
            // `auto` is chosen before anything mounts.
            FolderKind::Rsync | FolderKind::Auto => {}
        }
    }
    s
}

/// The guest-side script that makes `public_key` the only authorized key.
pub fn replace_key_script(public_key: &str) -> String {
    let key = public_key.trim().replace('\'', "");
    format!(
        "set -e; umask 077; mkdir -p ~/.ssh; printf '%s\\n' '{key}' > ~/.ssh/authorized_keys.env-new; mv -f ~/.ssh/authorized_keys.env-new ~/.ssh/authorized_keys"
    )
}

/// A systemd unit that makes SSH host keys at the first boot of a machine
/// whose box has none, before sshd starts (as cloud images do).
const HOST_KEYS_UNIT: &str = "[Unit]
Description=Make this machine's own SSH host keys (its box carries none)
DefaultDependencies=no
After=local-fs.target
Before=ssh.service sshd.service
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key
[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
[Install]
WantedBy=multi-user.target ssh.service sshd.service
";

/// The guest script that removes machine-specific state and authorizes the
/// first-contact public keys again (none: the user's authorized keys are
/// emptied, as cloud-init authorizes each machine's own; cloud-init's state
/// is cleaned too, so it runs its first-boot steps again in a machine of the
/// baked box). `env_host_keys`: the box gets its SSH
/// host key from env (or makes one) at each boot, so the baked one just
/// goes; otherwise a first-boot unit making new ones is installed with it,
/// where systemd and ssh-keygen are there to run it (else the keys stay).
pub fn clean_script(user: &str, first_contact_keys: &[String], env_host_keys: bool) -> String {
    let home = format!("$(getent passwd {} | cut -d: -f6)", shell_quote(user));
    let mut s = String::from("set -e\n");
    if env_host_keys {
        s.push_str("rm -f /etc/ssh/ssh_host_*\n");
    } else {
        s.push_str(&format!(
            "# every machine its own host keys: made at first boot\n\
             if [ -d /etc/systemd/system ] && [ -x /usr/bin/ssh-keygen ] && command -v systemctl >/dev/null; then\n\
             cat > /etc/systemd/system/env-ssh-host-keys.service <<'ENVEOF'\n{HOST_KEYS_UNIT}ENVEOF\n\
             systemctl enable env-ssh-host-keys.service >/dev/null 2>&1\n\
             rm -f /etc/ssh/ssh_host_*\n\
             fi\n"
        ));
    }
    s.push_str(&format!(
        "# the well-known first-contact keys again, instead of this machine's\n\
         h={home}\n\
         mkdir -p \"$h/.ssh\"\n\
         printf '%s\\n' {key} | grep . > \"$h/.ssh/authorized_keys\" || true\n\
         chmod 700 \"$h/.ssh\"; chmod 600 \"$h/.ssh/authorized_keys\"\n\
         chown -R {owner}: \"$h/.ssh\"\n\
         # cloud-init runs again, as on a new instance\n\
         if command -v cloud-init >/dev/null 2>&1; then cloud-init clean --logs 2>/dev/null || rm -rf /var/lib/cloud/instance /var/lib/cloud/instances; fi\n\
         # a new machine-id at the next boot\n\
         : > /etc/machine-id\n\
         rm -f /var/lib/dbus/machine-id\n\
         # leases, env's network and name settings, logs, temporary files\n\
         rm -f /var/lib/dhcp/* /var/lib/systemd/network/* {network_file}\n\
         awk '/^{begin}/ {{ skip = 1; next }} skip && /^{end}/ {{ skip = 0; next }} !skip' /etc/hosts > /etc/hosts.env-new && cat /etc/hosts.env-new > /etc/hosts && rm -f /etc/hosts.env-new\n\
         echo localhost > /etc/hostname\n\
         rm -rf /var/log/journal/* /tmp/* /var/tmp/* /root/.bash_history \"$h/.bash_history\"\n\
         find /var/log -type f -exec truncate -s 0 {{}} + 2>/dev/null || true\n\
         apt-get clean 2>/dev/null || true\n\
         # free blocks read as zeros: the flattened image shrinks\n\
         fstrim -a 2>/dev/null || true\n\
         sync\n",
        key = first_contact_keys
            .iter()
            .map(|k| shell_quote(k.trim()))
            .collect::<Vec<_>>()
            .join(" "),
        owner = shell_quote(user),
        network_file = PRIVATE_NETWORK_FILE,
        begin = HOSTS_BEGIN_PREFIX,
        end = HOSTS_END,
    ));
    s
}

/// The guest command that streams its journal: the whole boot's entries at
/// the first start, only new ones after a restart (a snapshot restore).
pub fn journal_command(since_unix_secs: Option<u64>) -> String {
    let from = match since_unix_secs {
        Some(secs) => format!("--since=@{secs}"),
        None => "--boot".to_string(),
    };
    format!("exec sudo -n journalctl --follow --no-pager --output=short-iso {from}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

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

    #[test]
    fn hosts_block_is_replaced_and_nothing_else() {
        let plan = NetworkPlan {
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

    /// A plan with one machine, `web`, without a private address.
    fn web_alone() -> NetworkPlan {
        NetworkPlan {
            segment: None,
            subnet: Ipv4Addr::new(10, 1, 1, 0),
            machines: vec![MachineNet {
                name: "web".into(),
                ip: None,
                mac: "m".into(),
            }],
        }
    }

    #[test]
    fn the_guest_script_matches_the_pure_hosts_logic() {
        // Run the generated awk against a sample hosts file with the host's sh.
        let plan = web_alone();
        let script = name_and_network(&plan.machines[0], &plan);
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

    #[test]
    fn the_clean_script_resets_what_makes_a_machine() {
        let keys = [
            "ssh-ed25519 AAAA well-known".to_string(),
            "ssh-rsa BBBB vagrant\n".to_string(),
        ];
        let s = clean_script("vagrant", &keys, true);
        assert!(s.contains("rm -f /etc/ssh/ssh_host_*"));
        assert!(s.contains(
            "printf '%s\\n' 'ssh-ed25519 AAAA well-known' 'ssh-rsa BBBB vagrant' | grep . > \"$h/.ssh/authorized_keys\""
        ), "{s}");
        assert!(s.contains("cloud-init clean --logs"), "{s}");
        // No first-contact key (a cloud-init box): the keys file is emptied.
        let none = clean_script("debian", &[], true);
        let dir = tempfile::tempdir().unwrap();
        let line = none
            .lines()
            .find(|l| l.contains("grep . >"))
            .unwrap()
            .replace("$h", &dir.path().display().to_string());
        std::fs::create_dir_all(dir.path().join(".ssh")).unwrap();
        std::fs::write(
            dir.path().join(".ssh/authorized_keys"),
            "ssh-ed25519 OLD machine\n",
        )
        .unwrap();
        let ran = std::process::Command::new("sh")
            .args(["-e", "-c", &line])
            .status()
            .unwrap();
        assert!(ran.success());
        assert_eq!(
            std::fs::read_to_string(dir.path().join(".ssh/authorized_keys")).unwrap(),
            ""
        );
        assert!(s.contains(": > /etc/machine-id"));
        assert!(s.contains("/var/lib/dhcp/*"));
        assert!(s.contains("20-env-private.network"));
        assert!(s.contains("fstrim"));
        let other = clean_script("vagrant", &keys[..1], false);
        let (unit_at, remove_at) = (
            other.find("env-ssh-host-keys.service <<").unwrap(),
            other.find("rm -f /etc/ssh/ssh_host_*").unwrap(),
        );
        assert!(
            unit_at < remove_at && other.contains("ExecStart=/usr/bin/ssh-keygen -A"),
            "a box that does not make its own keys gets a first-boot unit before they go: {other}"
        );
        // The unit runs in the guest's shell: the whole script parses.
        let status = std::process::Command::new("sh")
            .args(["-n", "-c", &other])
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn replacement_script_overwrites_authorized_keys() {
        let s = replace_key_script("ssh-ed25519 AAAA env machine key\n");
        assert!(s.contains("'ssh-ed25519 AAAA env machine key'"));
        assert!(s.contains("mv -f ~/.ssh/authorized_keys.env-new ~/.ssh/authorized_keys"));
        assert!(s.contains("umask 077"));
        assert!(!replace_key_script("a'b").contains("a'b"));
    }

    #[test]
    fn journal_stream_starts_at_boot_then_at_the_restart() {
        assert_eq!(
            journal_command(None),
            "exec sudo -n journalctl --follow --no-pager --output=short-iso --boot"
        );
        assert!(journal_command(Some(1_795_731_000)).ends_with(" --since=@1795731000"));
    }

    #[test]
    fn naming_a_guest_makes_what_a_minimal_image_lacks() {
        // Run against a fake root: the script's paths under a temporary
        // folder, with no `hostname` program and no /etc/hosts.
        let plan = web_alone();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("proc/sys/kernel")).unwrap();
        let script = name_and_network(&plan.machines[0], &plan)
            .replace("/etc/", &format!("{}/etc/", root.display()))
            .replace("/proc/", &format!("{}/proc/", root.display()))
            .replace("hostname web", "no-such-hostname-program web");
        crate::util::shell::sh_ok(&["-c", &script]);
        let hosts = std::fs::read_to_string(root.join("etc/hosts")).unwrap();
        assert!(
            hosts.starts_with("127.0.0.1\tlocalhost\n") && hosts.contains("127.0.1.1\tweb"),
            "{hosts}"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("proc/sys/kernel/hostname")).unwrap(),
            "web\n"
        );
    }
}
