//! The SSH connection to a remote hypervisor host that carries a machine's
//! traffic: one OpenSSH master per machine, holding the Envfile's forwarded
//! ports (`-L` from the developer's loopback to the hypervisor's loopback,
//! where QEMU's user network listens) and every SSH session to the guest
//! (`ProxyCommand ssh -W` through the same master). Nothing listens on the
//! hypervisor host's public interfaces.

use crate::envfile::libvirt::SshHop;
use crate::machine::state::Forward;
use crate::util::shell::shell_quote;
use anyhow::{Context, Result, bail};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long opening the master may take.
const OPEN_LIMIT: Duration = Duration::from_secs(40);

/// Options every use of the master shares.
fn common(hop: &SshHop, control: &Path) -> Vec<String> {
    let mut args = vec![
        "-o".to_string(),
        format!("ControlPath={}", control.display()),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "ConnectTimeout=20".into(),
        "-o".into(),
        "ServerAliveInterval=15".into(),
        "-o".into(),
        "ServerAliveCountMax=4".into(),
    ];
    args.extend(hop.args());
    args
}

/// A `-L` rule: the developer's `host_ip:host_port` to the hypervisor's
/// loopback port.
pub fn local_forward(local: &Forward, hypervisor_port: u16) -> String {
    let ip = match local.host_ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    format!("{ip}:{}:127.0.0.1:{hypervisor_port}", local.host_port)
}

/// The arguments that open the master with its forwards.
pub fn open_args(hop: &SshHop, control: &Path, forwards: &[String]) -> Vec<String> {
    let mut args = vec![
        "-f".to_string(),
        "-N".into(),
        "-o".into(),
        "ControlMaster=yes".into(),
        "-o".into(),
        "ControlPersist=yes".into(),
        "-o".into(),
        "ExitOnForwardFailure=yes".into(),
    ];
    args.extend(common(hop, control));
    for f in forwards {
        args.extend(["-L".into(), f.clone()]);
    }
    args.push(hop.destination());
    args
}

/// ssh_config's `ProxyCommand` for the guest: a stdio channel through the
/// master (which it opens if it is gone).
pub fn proxy_command(hop: &SshHop, control: &Path) -> String {
    let mut args = vec![
        "ssh".to_string(),
        "-o".into(),
        "ControlMaster=auto".into(),
        "-o".into(),
        "ControlPersist=yes".into(),
    ];
    args.extend(common(hop, control));
    let mut line: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    line.extend(["-W".into(), "%h:%p".into(), shell_quote(&hop.destination())]);
    line.join(" ")
}

/// Opens the master (closing an earlier one first). `log` gets ssh's
/// complaints.
pub fn open(hop: &SshHop, control: &Path, forwards: &[String], log: &Path) -> Result<()> {
    close(hop, control);
    let stderr = std::fs::File::create(log)?;
    let mut child = Command::new("ssh")
        .args(open_args(hop, control, forwards))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .context("cannot run ssh (install the OpenSSH client)")?;
    // `-f`: the first process exits once the connection and its forwards
    // are up; the master goes on in the background.
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            let said = std::fs::read_to_string(log).unwrap_or_default();
            bail!(
                "cannot open the SSH connection to the libvirt host {}: {}",
                hop.destination(),
                said.trim()
            );
        }
        if started.elapsed() > OPEN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the SSH connection to the libvirt host {} did not open within {} s",
                hop.destination(),
                OPEN_LIMIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ends the master and its forwards (no error when there is none).
pub fn close(hop: &SshHop, control: &Path) {
    if !control.exists() {
        return;
    }
    let _ = Command::new("ssh")
        .args(common(hop, control))
        .args(["-O", "exit", &hop.destination()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_file(control);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envfile::Protocol;
    use crate::envfile::libvirt::parse_uri;

    fn hop() -> SshHop {
        parse_uri("qemu+ssh://ops@kvm1:2222/system?keyfile=/k/id")
            .unwrap()
            .ssh
            .unwrap()
    }

    #[test]
    fn the_master_carries_forwards_to_the_hypervisor_loopback() {
        let local = Forward {
            protocol: Protocol::Tcp,
            host_ip: "127.0.0.1".parse().unwrap(),
            host_port: 8080,
            guest_port: 80,
        };
        let rule = local_forward(&local, 41000);
        assert_eq!(rule, "127.0.0.1:8080:127.0.0.1:41000");
        let args = open_args(
            &hop(),
            Path::new("/run/x.sock"),
            std::slice::from_ref(&rule),
        );
        assert_eq!(args.last().unwrap(), "ops@kvm1");
        assert!(args.windows(2).any(|w| w == ["-L", rule.as_str()]));
        assert!(args.windows(2).any(|w| w == ["-p", "2222"]));
        assert!(args.contains(&"ExitOnForwardFailure=yes".to_string()));
        let v6 = Forward {
            host_ip: "::1".parse().unwrap(),
            ..local
        };
        assert_eq!(local_forward(&v6, 1), "[::1]:8080:127.0.0.1:1");
    }

    #[test]
    fn guests_are_reached_through_the_same_master() {
        let p = proxy_command(&hop(), Path::new("/run/my dir/x.sock"));
        assert!(p.starts_with("ssh "));
        assert!(p.contains("'ControlPath=/run/my dir/x.sock'"));
        assert!(p.ends_with("-W %h:%p ops@kvm1"));
        assert!(p.contains("-i /k/id"));
    }
}
