//! `virtiofsd` daemons: one per virtio-fs share of a machine, started just
//! before QEMU, listening on a socket in the private runtime folder. Each
//! serves one host folder and exits when QEMU lets go of its socket (the
//! machine halts or is killed); `stop` ends any left behind. The Rust
//! `virtiofsd` is used (Debian 12's C one cannot run unprivileged): as
//! root it sandboxes itself in namespaces, as an ordinary user it runs
//! with `--sandbox none` and can do only what the user can.

use super::args::FsShare;
use crate::envfile::folders::{Folder, FolderKind};
use crate::machine::MachineDir;
use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable naming the `virtiofsd` binary.
pub const BINARY_VAR: &str = "ENV_VIRTIOFSD";

/// How long a daemon may take to listen.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// The Rust `virtiofsd`: `ENV_VIRTIOFSD`, else `virtiofsd` on the PATH,
/// else where scripts/install-host-deps.sh puts it (`/usr/local/bin` as
/// root, `~/.local/bin` otherwise).
pub fn binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(BINARY_VAR).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("virtiofsd"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/local/bin/virtiofsd")])
        .chain(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/bin/virtiofsd")))
        .find(|p| p.is_file())
        .context(
            "virtio-fs folders need the Rust virtiofsd: `cargo install --locked virtiofsd` (with libseccomp-dev and libcap-ng-dev; scripts/install-host-deps.sh does it), or set ENV_VIRTIOFSD",
        )
}

/// The arguments of one daemon: serve `folder` on `socket`; what the
/// guest writes belongs to `owner` (the host user: uid, gid), whoever
/// wrote it in the guest, as with 9p.
pub fn daemon_args(socket: &Path, folder: &Path, readonly: bool, owner: (u32, u32)) -> Vec<String> {
    let as_root = owner.0 == 0;
    let mut args = vec![
        format!("--socket-path={}", socket.display()),
        format!("--shared-dir={}", folder.display()),
        // Guests see host changes at once (shared folders are edited on
        // both sides), as 9p with cache=none does.
        "--cache=never".into(),
        "--log-level=error".into(),
        format!("--sandbox={}", if as_root { "namespace" } else { "none" }),
        format!("--translate-uid=squash-guest:0:{}:4294967295", owner.0),
        format!("--translate-gid=squash-guest:0:{}:4294967295", owner.1),
    ];
    if readonly {
        args.push("--readonly".into());
    }
    args
}

fn pidfile(dir: &MachineDir, index: usize) -> PathBuf {
    dir.root.join(format!("virtiofsd-{index}.pid"))
}

fn logfile(dir: &MachineDir, index: usize) -> PathBuf {
    dir.root.join(format!("virtiofsd-{index}.log"))
}

/// Starts a daemon for each virtio-fs folder of the machine (indexes as
/// in the Envfile, which the mount tags use) and waits until each
/// listens.
pub fn start(dir: &MachineDir, folders: &[Folder]) -> Result<Vec<FsShare>> {
    let wanted: Vec<(usize, &Folder)> = folders
        .iter()
        .enumerate()
        .filter(|(_, f)| f.kind == FolderKind::Virtiofs)
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    stop(dir);
    let binary = binary()?;
    let owner = user_ids();
    let mut shares = Vec::new();
    for (index, folder) in wanted {
        let socket = dir.virtiofs_socket(index)?;
        let _ = std::fs::remove_file(&socket);
        let log = std::fs::File::create(logfile(dir, index))?;
        let child = Command::new(&binary)
            .args(daemon_args(&socket, &folder.host, folder.readonly, owner))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C of env does not end it.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        std::fs::write(pidfile(dir, index), child.id().to_string())?;
        let deadline = Instant::now() + LISTEN_WAIT;
        while !socket.exists() {
            let exited = std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true);
            if exited || Instant::now() > deadline {
                stop(dir);
                let said = std::fs::read_to_string(logfile(dir, index)).unwrap_or_default();
                bail!(
                    "virtiofsd for {} did not start: {}",
                    folder.host.display(),
                    said.trim()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        shares.push(FsShare {
            tag: super::args::share_tag(index),
            socket,
        });
    }
    Ok(shares)
}

/// Ends the machine's daemons that are still there (their pid files
/// checked against what runs: a pid reused by another program is left
/// alone) and removes their sockets.
pub fn stop(dir: &MachineDir) {
    for index in 0..64 {
        let file = pidfile(dir, index);
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        if let Ok(pid) = text.trim().parse::<i32>() {
            let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("virtiofsd"))
                .unwrap_or(false);
            if ours {
                // SIGTERM; it exits at once, holding nothing to flush.
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
        let _ = std::fs::remove_file(&file);
        if let Ok(socket) = dir.virtiofs_socket(index) {
            let _ = std::fs::remove_file(socket);
        }
    }
}

/// The effective user and group ids env runs with.
fn user_ids() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    // What this process creates is owned by its effective ids.
    match std::fs::metadata("/proc/self") {
        Ok(m) => (m.uid(), m.gid()),
        Err(_) => (u32::MAX, u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_serves_one_folder_sandboxed_when_it_can() {
        let args = daemon_args(
            Path::new("/run/env/x.vfs0"),
            Path::new("/p/src"),
            false,
            (0, 0),
        );
        assert_eq!(
            args,
            [
                "--socket-path=/run/env/x.vfs0",
                "--shared-dir=/p/src",
                "--cache=never",
                "--log-level=error",
                "--sandbox=namespace",
                "--translate-uid=squash-guest:0:0:4294967295",
                "--translate-gid=squash-guest:0:0:4294967295"
            ]
        );
        let args = daemon_args(Path::new("/s"), Path::new("/p"), true, (1000, 1000));
        assert!(args.contains(&"--sandbox=none".to_string()));
        assert!(args.contains(&"--readonly".to_string()));
        assert!(args.contains(&"--translate-uid=squash-guest:0:1000:4294967295".to_string()));
    }
}
