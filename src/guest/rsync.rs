//! rsync folders: the host's copy pushed into the guest over the
//! machine's SSH connection (host to guest; files gone from the host go
//! from the guest too).

use crate::envfile::Machine;
use crate::envfile::folders::FolderKind;
use crate::machine::MachineDir;
use crate::util::shell::shell_quote;
use crate::util::ui;
use anyhow::Result;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long one folder's rsync may take.
const RSYNC_LIMIT: Duration = Duration::from_secs(30 * 60);

/// Copies the machine's rsync folders into the guest (host to guest; files
/// gone from the host go from the guest too), owned by the SSH user.
pub fn sync_folders(dir: &MachineDir, machine: &Machine, user: &str) -> Result<()> {
    for f in machine
        .folders
        .iter()
        .filter(|f| f.kind == FolderKind::Rsync)
    {
        let started = Instant::now();
        let _slot = crate::guest::ssh::exec::session_slot(dir);
        let mut cmd = Command::new("rsync");
        cmd.args(["-a", "--delete", "--exclude", "/.envstate/"])
            .arg(format!("--chown={user}:{user}"))
            .arg("-e")
            .arg(format!(
                "ssh -F {}",
                shell_quote(&dir.ssh_config().to_string_lossy())
            ))
            .arg(format!(
                "--rsync-path=sudo mkdir -p {} && sudo rsync",
                shell_quote(&f.guest)
            ));
        for pattern in &f.exclude {
            cmd.arg("--exclude").arg(pattern);
        }
        cmd.arg(format!("{}/", f.host.display()))
            .arg(format!("{}:{}/", dir.name, f.guest));
        crate::util::process::run_limited(
            &mut cmd,
            RSYNC_LIMIT,
            "cannot run rsync (install rsync)",
            &format!(
                "rsync of {} to {}:{} failed",
                f.host.display(),
                dir.name,
                f.guest
            ),
        )?;
        ui::step(
            &machine.name,
            &format!(
                "rsynced {} to {} in {:.1} s",
                f.host.display(),
                f.guest,
                started.elapsed().as_secs_f64()
            ),
        );
    }
    Ok(())
}
