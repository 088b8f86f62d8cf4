//! Automatic port forwarding (`ports_auto`): a watcher env starts with the
//! machine and stops with it (halt, destroy, suspend, a live restore). It is
//! `env` itself run in the background (`env internal-watch-ports`, its own
//! process group, pid in `ports-auto.pid`, messages in `ports-auto.log`),
//! holding an SSH connection of its own to the guest: one session reads
//! `/proc/net/tcp{,6}` every second (nothing installed in the guest), and
//! each new listening port gets a forward on that connection (`ssh -O
//! forward -L`) from the same port on the host's 127.0.0.1 when free (the
//! next free one otherwise; a privileged guest port from port+8000, so 80
//! becomes 8080), cancelled when the guest closes it. The forwards in use
//! are in `ports-auto.json`, which `env port` reads. The watcher ends when
//! its connection does (the machine stopped) or when stopped.

use crate::machine::MachineDir;
use crate::util::fs::write_atomic;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The hidden subcommand that runs the watcher.
pub const SUBCOMMAND: &str = "internal-watch-ports";

/// The guest loop: a snapshot of the listening sockets every second, each
/// after a line `@`.
const POLL_SCRIPT: &str =
    "while :; do echo @; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; sleep 1; done";

/// One automatic forward, as `env port` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoForward {
    /// The guest's port.
    pub guest_port: u16,
    /// Host address bound.
    pub host_ip: IpAddr,
    /// Host port.
    pub host_port: u16,
}

/// What the watcher is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSettings {
    /// Host address the forwards bind.
    pub host_ip: IpAddr,
    /// Guest port ranges never forwarded (the user's, SSH's, the Envfile's
    /// own forwards).
    pub skip: Vec<(u16, u16)>,
}

impl WatchSettings {
    /// The watcher's command line after the subcommand.
    pub fn to_args(&self, dir: &MachineDir) -> Vec<String> {
        let mut args = vec![
            dir.root.display().to_string(),
            dir.name.clone(),
            self.host_ip.to_string(),
        ];
        args.extend(self.skip.iter().map(|(a, b)| format!("{a}-{b}")));
        args
    }

    /// Reads [`WatchSettings::to_args`] back: the machine folder and the
    /// settings.
    pub fn from_args(args: &[String]) -> Result<(MachineDir, WatchSettings)> {
        let [root, name, host_ip, skip @ ..] = args else {
            anyhow::bail!("usage: env {SUBCOMMAND} MACHINE_DIR NAME HOST_IP [FROM-TO...]");
        };
        let skip = skip
            .iter()
            .map(|r| {
                let (a, b) = r.split_once('-').context("a range FROM-TO")?;
                Ok((a.parse()?, b.parse()?))
            })
            .collect::<Result<Vec<(u16, u16)>>>()?;
        let dir = MachineDir {
            name: name.clone(),
            root: root.into(),
        };
        Ok((
            dir,
            WatchSettings {
                host_ip: host_ip.parse()?,
                skip,
            },
        ))
    }

    fn skips(&self, port: u16) -> bool {
        self.skip.iter().any(|(a, b)| (*a..=*b).contains(&port))
    }
}

/// The listening TCP ports of `/proc/net/tcp` and `tcp6` text, with the
/// address to reach each from inside the guest: loopback for a socket on
/// every address or on loopback, else its own (IPv4) address.
pub fn listening(proc_net: &str) -> BTreeMap<u16, String> {
    let mut out = BTreeMap::new();
    for line in proc_net.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st ...; 0A is LISTEN.
        let (Some(local), Some("0A")) = (fields.get(1), fields.get(3).copied()) else {
            continue;
        };
        let Some((addr, port)) = local.split_once(':') else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(port, 16) else {
            continue;
        };
        let reach = match addr.len() {
            // IPv4, little-endian hex.
            8 => match u32::from_str_radix(addr, 16).map(|n| n.to_le_bytes()) {
                Ok([0, 0, 0, 0]) => "127.0.0.1".to_string(),
                Ok([127, ..]) => "127.0.0.1".to_string(),
                Ok(b) => format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]),
                Err(_) => continue,
            },
            // IPv6: every address or loopback are reached at localhost.
            32 if addr.chars().all(|c| c == '0') || addr == "00000000000000000000000001000000" => {
                "localhost".to_string()
            }
            _ => continue,
        };
        out.entry(port).or_insert(reach);
    }
    out
}

/// The host port for guest port `wanted`: the same one when `free`, else
/// the next free one (from `wanted + 8000` for a privileged port when
/// `privileged` binds are not allowed).
pub fn pick_host_port(wanted: u16, privileged: bool, free: &dyn Fn(u16) -> bool) -> Option<u16> {
    let start = if wanted < 1024 && !privileged {
        wanted.checked_add(8000)?
    } else {
        wanted
    };
    (start..=start.saturating_add(100))
        .filter(|p| *p >= 1024 || privileged)
        .find(|p| free(*p))
}

/// Whether `port` can be bound on `ip` now.
fn port_free(ip: IpAddr, port: u16) -> bool {
    std::net::TcpListener::bind((ip, port)).is_ok()
}

/// The forwards in use, for `env port`.
pub fn current(dir: &MachineDir) -> Vec<AutoForward> {
    std::fs::read_to_string(dir.root.join("ports-auto.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

fn pidfile(dir: &MachineDir) -> std::path::PathBuf {
    dir.root.join("ports-auto.pid")
}

/// Starts the watcher in the background (any earlier one stopped).
pub fn start(dir: &MachineDir, settings: &WatchSettings) -> Result<()> {
    use std::os::unix::process::CommandExt;
    stop(dir);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.root.join("ports-auto.log"))
        .context("cannot open ports-auto.log")?;
    let exe = std::env::current_exe().context("cannot find env's own program")?;
    let child = Command::new(exe)
        .arg(SUBCOMMAND)
        .args(settings.to_args(dir))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("cannot start the port watcher")?;
    write_atomic(&pidfile(dir), child.id().to_string().as_bytes())
}

/// Stops the watcher, its connection and its forwards, if it runs.
pub fn stop(dir: &MachineDir) {
    let pid = std::fs::read_to_string(pidfile(dir))
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok());
    if let Some(pid) = pid {
        // Only this machine's watcher: the pid may have been reused.
        let ours = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            args.get(1) == Some(&SUBCOMMAND.as_bytes())
                && args.get(2) == Some(&dir.root.as_os_str().as_encoded_bytes())
        });
        if ours {
            // SAFETY: kill(2) of the watcher's own process group.
            unsafe { libc::kill(-pid, libc::SIGTERM) };
        }
    }
    let _ = std::fs::remove_file(pidfile(dir));
    let _ = std::fs::remove_file(dir.root.join("ports-auto.json"));
}

/// The watcher itself (`env internal-watch-ports`): runs until its
/// connection to the guest ends.
pub fn run(dir: &MachineDir, settings: &WatchSettings) -> Result<()> {
    let socket = dir.socket_path("ports")?;
    let config = dir.ssh_config();
    let control = format!("ControlPath={}", socket.display());
    let ssh = |extra: &[&str]| {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg(&config)
            .args(["-o", &control])
            .args(extra);
        cmd
    };
    let mut master = ssh(&[
        "-o",
        "ControlMaster=yes",
        "-o",
        "ControlPersist=no",
        "-o",
        "ServerAliveInterval=5",
        "-o",
        "ServerAliveCountMax=3",
        "-N",
        &dir.name,
    ])
    .stdin(Stdio::null())
    .spawn()
    .context("cannot start ssh")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ssh(&["-O", "check", &dir.name])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        anyhow::ensure!(Instant::now() < deadline, "no SSH connection to the guest");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut poll = ssh(&[&dir.name, POLL_SCRIPT])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start ssh")?;
    let out = poll.stdout.take().context("no output")?;
    // Root may bind ports below 1024 on the host.
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let privileged = unsafe { libc::geteuid() } == 0;
    let mut forwards: BTreeMap<u16, (AutoForward, String)> = BTreeMap::new();
    let mut snapshot = String::new();
    let forward_arg = |f: &AutoForward, reach: &str| {
        format!("{}:{}:{reach}:{}", f.host_ip, f.host_port, f.guest_port)
    };
    for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
        if line != "@" {
            snapshot.push_str(&line);
            snapshot.push('\n');
            continue;
        }
        let open: BTreeMap<u16, String> = listening(&snapshot)
            .into_iter()
            .filter(|(p, _)| !settings.skips(*p))
            .collect();
        snapshot.clear();
        let closed: Vec<u16> = forwards
            .keys()
            .filter(|p| !open.contains_key(p))
            .copied()
            .collect();
        let mut changed = !closed.is_empty();
        for port in closed {
            if let Some((f, reach)) = forwards.remove(&port) {
                let _ = ssh(&["-O", "cancel", "-L", &forward_arg(&f, &reach), &dir.name])
                    .stderr(Stdio::null())
                    .status();
                eprintln!(
                    "guest port {port} closed: {}:{} released",
                    f.host_ip, f.host_port
                );
            }
        }
        let new: BTreeSet<u16> = open
            .keys()
            .filter(|p| !forwards.contains_key(p))
            .copied()
            .collect();
        for port in new {
            let ip = settings.host_ip;
            let Some(host_port) = pick_host_port(port, privileged, &|p| port_free(ip, p)) else {
                eprintln!("guest port {port}: no free host port near it");
                continue;
            };
            let f = AutoForward {
                guest_port: port,
                host_ip: ip,
                host_port,
            };
            let reach = open[&port].clone();
            let done = ssh(&["-O", "forward", "-L", &forward_arg(&f, &reach), &dir.name])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if done {
                eprintln!("guest port {port} forwarded from {ip}:{host_port}");
                forwards.insert(port, (f, reach));
                changed = true;
            }
        }
        if changed {
            let list: Vec<&AutoForward> = forwards.values().map(|(f, _)| f).collect();
            write_atomic(
                &dir.root.join("ports-auto.json"),
                serde_json::to_string_pretty(&list)?.as_bytes(),
            )?;
        }
    }
    let _ = poll.wait();
    let _ = master.kill();
    let _ = master.wait();
    let _ = std::fs::remove_file(dir.root.join("ports-auto.json"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_are_read_from_proc_net() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0F02000A:0016 0202000A:C350 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
   3: 0F02000A:1389 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 0
   1: 00000000000000000000000001000000:2382 00000000000000000000000000000000:0000 0A 0
";
        let got = listening(text);
        assert_eq!(got.get(&8080).map(String::as_str), Some("127.0.0.1"));
        assert_eq!(got.get(&3306).map(String::as_str), Some("127.0.0.1"));
        assert_eq!(got.get(&5001).map(String::as_str), Some("10.0.2.15"));
        assert_eq!(got.get(&22).map(String::as_str), Some("localhost"));
        assert_eq!(got.get(&9090).map(String::as_str), Some("localhost"));
        assert_eq!(
            got.len(),
            5,
            "an established connection is no listener: {got:?}"
        );
    }

    #[test]
    fn host_ports_are_the_same_or_the_next_free() {
        let all = |_: u16| true;
        assert_eq!(pick_host_port(8080, false, &all), Some(8080));
        assert_eq!(pick_host_port(8080, false, &|p| p != 8080), Some(8081));
        assert_eq!(pick_host_port(80, false, &all), Some(8080));
        assert_eq!(pick_host_port(80, true, &all), Some(80));
        assert_eq!(pick_host_port(3000, false, &|_| false), None);
    }

    #[test]
    fn settings_pass_through_the_command_line() {
        let dir = MachineDir {
            name: "web".into(),
            root: "/p/.envstate/machines/web".into(),
        };
        let settings = WatchSettings {
            host_ip: "127.0.0.1".parse().unwrap(),
            skip: vec![(22, 22), (6000, 6100)],
        };
        let (back, read) = WatchSettings::from_args(&settings.to_args(&dir)).unwrap();
        assert_eq!((back.name, back.root), (dir.name, dir.root));
        assert_eq!(read, settings);
        assert!(read.skips(6050) && !read.skips(6101));
    }
}
