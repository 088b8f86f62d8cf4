//! The guest's journal streamed into the machine's `journal.log` while it
//! runs (`[logs] forward`): one `ssh ... journalctl --follow` on a
//! connection of its own, started with the machine and stopped by halt,
//! destroy and snapshot restore.

use crate::guest::scripts::journal_command;
use crate::machine::MachineDir;
use anyhow::{Context, Result};

/// Starts streaming the guest's journal into `journal.log` (appending), in
/// the background: the stream outlives this command and is stopped by
/// [`stop_forward`] (halt, destroy, restore). Any earlier stream is stopped.
pub fn start_forward(dir: &MachineDir, since_unix_secs: Option<u64>) -> Result<()> {
    use std::os::unix::process::CommandExt;
    stop_forward(dir);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.journal_log())
        .with_context(|| format!("cannot open {}", dir.journal_log().display()))?;
    let child = crate::guest::ssh::exec::own_connection_command(&dir.ssh_config(), &dir.name)
        .arg(journal_command(since_unix_secs))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C meant for env does not end it.
        .process_group(0)
        .spawn()
        .context("cannot start ssh to stream the guest's journal")?;
    crate::util::fs::write_atomic(&dir.journal_pidfile(), child.id().to_string().as_bytes())
}

/// Stops the journal stream, if one runs.
pub fn stop_forward(dir: &MachineDir) {
    let pidfile = dir.journal_pidfile();
    let pid = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok());
    if let Some(pid) = pid {
        // Only this machine's stream: the pid may have been reused since,
        // by anything, another machine's stream included.
        let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmdline| is_stream_of(&cmdline, dir));
        if ours {
            // SAFETY: kill(2) on a pid checked to be our journal stream.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
    let _ = std::fs::remove_file(pidfile);
}

/// Whether a process command line (NUL-separated, as in /proc) is the
/// journal stream of `dir`'s machine: ssh, through this machine's
/// ssh_config, running journalctl.
fn is_stream_of(cmdline: &[u8], dir: &MachineDir) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let config = dir.ssh_config();
    let program_is_ssh = args
        .first()
        .is_some_and(|p| p.rsplit(|b| *b == b'/').next() == Some(b"ssh"));
    let through_config = args
        .windows(2)
        .any(|w| w[0] == b"-F" && w[1] == config.as_os_str().as_encoded_bytes());
    let runs_journalctl = args
        .last()
        .is_some_and(|a| a.windows(10).any(|w| w == b"journalctl"));
    program_is_ssh && through_config && runs_journalctl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machines_stream_counts_as_ours() {
        let dir = MachineDir::new(std::path::Path::new("/p/.envstate"), "web");
        let other = MachineDir::new(std::path::Path::new("/p/.envstate"), "db");
        let line = |d: &MachineDir, remote: &str| {
            let mut v = Vec::new();
            for a in [
                "ssh",
                "-F",
                d.ssh_config().to_str().unwrap(),
                "-o",
                "ControlMaster=no",
                "web",
                remote,
            ] {
                v.extend_from_slice(a.as_bytes());
                v.push(0);
            }
            v.pop();
            v
        };
        let journal = journal_command(None);
        assert!(is_stream_of(&line(&dir, &journal), &dir));
        assert!(
            !is_stream_of(&line(&other, &journal), &dir),
            "another machine's"
        );
        assert!(
            !is_stream_of(&line(&dir, "sleep 100"), &dir),
            "not journalctl"
        );
        assert!(!is_stream_of(b"vim\0journalctl.txt", &dir), "not ssh");
    }
}
