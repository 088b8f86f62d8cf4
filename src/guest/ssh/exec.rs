//! Commands over a machine's SSH connection: through its ssh_config and
//! master connection, with input on stdin and an optional time limit, on a
//! connection of their own, and closing the master.

use crate::machine::MachineDir;
use crate::util::lock::Lock;
use crate::util::process::{Finished, finish, output_within};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Output;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Sessions env runs at once over one machine's master connection: sshd
/// lets a connection carry 10 (MaxSessions); past that the master refuses,
/// and the fallback connections trip sshd's MaxStartups when many start at
/// once. Over half are left: closing sessions take a moment to be counted
/// out (longer when the host is busy: 50 commands at once on 2 cores saw a
/// refusal with 5), the journal stream holds one, and the user may run
/// `ssh -F` beside env.
const SESSION_SLOTS: usize = 4;

/// How long a command waits for a session slot before it goes ahead anyway.
const SLOT_WAIT: Duration = Duration::from_secs(120);

/// One of the machine's session slots (a lock file beside its control
/// socket), taken for as long as the returned lock lives: commands past
/// [`SESSION_SLOTS`] queue here instead of being refused by the guest.
/// None when none came free in time (the command then tries anyway).
pub fn session_slot(dir: &MachineDir) -> Option<Lock> {
    let control = dir.control_path().ok()?;
    let deadline = std::time::Instant::now() + SLOT_WAIT;
    let mut pause = 20;
    loop {
        for i in 0..SESSION_SLOTS {
            let slot = control.with_extension(format!("slot{i}"));
            if let Some(lock) = crate::util::lock::try_exclusive(&slot) {
                return Some(lock);
            }
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        // Spread the waiters out (pid-based jitter), up to 200 ms apart.
        std::thread::sleep(Duration::from_millis(
            pause + u64::from(std::process::id() % 17),
        ));
        pause = (pause * 2).min(200);
    }
}

/// An `ssh` command for a machine, through its generated ssh_config.
pub fn command(config: &Path, alias: &str) -> Command {
    command_with(config, &[], alias)
}

/// [`command`] with `-o` options (`ForwardAgent=yes`) before the alias.
pub fn command_with(config: &Path, options: &[&str], alias: &str) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.arg("-F").arg(config);
    for option in options {
        cmd.arg("-o").arg(option);
    }
    cmd.arg(alias);
    cmd
}

/// Runs `remote` on the machine (e.g. `sudo -n sh -s`) with `input` on its
/// stdin, capturing its output. With a `limit`, ssh is killed when it runs
/// longer.
pub fn run_with_input(
    config: &Path,
    alias: &str,
    remote: &str,
    input: &[u8],
    limit: Option<Duration>,
) -> Result<Output> {
    let child = command(config, alias)
        .arg(remote)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run ssh (install the OpenSSH client)")?;
    match finish(child, input.to_vec(), limit)? {
        Finished::Exited(out) => Ok(out),
        Finished::TimedOut => bail!(
            "`{remote}` on `{alias}` did not finish within {} s",
            limit.unwrap_or_default().as_secs()
        ),
    }
}

/// Runs `remote` on the machine with stdin from `input` and stdout into
/// `output`, no time limit (a transfer takes as long as its size): the exit
/// status and what it said on stderr.
pub fn stream(
    config: &Path,
    alias: &str,
    remote: &str,
    input: std::fs::File,
    output: std::fs::File,
) -> Result<(std::process::ExitStatus, String)> {
    let out = command(config, alias)
        .arg(remote)
        .stdin(Stdio::from(input))
        .stdout(Stdio::from(output))
        .stderr(Stdio::piped())
        .output()
        .context("cannot run ssh (install the OpenSSH client)")?;
    Ok((
        out.status,
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

/// An `ssh` command on its own connection, not the master's: for a
/// long-lived stream that must not die with the master, and whose dead peer
/// (a halted or rewound guest) is noticed within 15 s.
pub fn own_connection_command(config: &Path, alias: &str) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.arg("-F").arg(config);
    cmd.args([
        "-o",
        "ControlMaster=no",
        "-o",
        "ControlPath=none",
        "-o",
        "ServerAliveInterval=5",
        "-o",
        "ServerAliveCountMax=3",
    ]);
    cmd.arg(alias);
    cmd
}

/// Closes the master connection (before the machine goes away).
pub fn close_master(control_path: &Path) {
    if control_path.exists() {
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-o"])
            .arg(format!("ControlPath={}", control_path.display()))
            .args(["-O", "exit", "env-master"]);
        // A master that does not answer is gone for our purposes.
        let _ = output_within(&mut cmd, Duration::from_secs(10));
        let _ = std::fs::remove_file(control_path);
    }
}
