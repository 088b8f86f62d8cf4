//! The guest side: everything env does inside a machine, over SSH. The
//! operations reach it through the [`Guest`] trait (a communicator, in
//! Vagrant's words); [`SshGuest`] is the real one.

pub mod ansible;
pub mod cloudinit;
pub mod docker;
#[cfg(test)]
pub mod fake;
pub mod journal;
pub mod ports_auto;
pub mod provisioner;
pub mod proxy;
pub mod readiness;
pub mod rsync;
pub mod scripts;
pub mod ssh;

use crate::envfile::Machine;
use crate::envfile::provisioners::Provisioner;
use crate::machine::state::SshEndpoint;
use crate::machine::{MachineDir, MachineState};
use anyhow::Result;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

/// What operations do inside a guest.
pub trait Guest: Send + Sync {
    /// Waits until the guest's SSH server greets at `endpoint`, calling
    /// `still_running` between tries (a dead machine fails at once), until
    /// `deadline`.
    fn wait_ready(
        &self,
        endpoint: &SshEndpoint,
        deadline: Instant,
        still_running: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()>;
    /// Sets SSH up after the banner: first contact (pin the host key,
    /// replace the well-known key) or the pinned key; writes the machine's
    /// ssh_config and opens its master connection.
    fn connect(
        &self,
        dir: &MachineDir,
        machine: &Machine,
        state: &mut MachineState,
        endpoint: &SshEndpoint,
        deadline: Instant,
    ) -> Result<()>;
    /// Runs `remote` with `input` on its stdin, capturing its output; with
    /// a `limit`, cut off when it runs longer.
    fn run(
        &self,
        dir: &MachineDir,
        remote: &str,
        input: &[u8],
        limit: Option<Duration>,
    ) -> Result<Output>;
    /// Runs `remote` with its stdin read from `input` and its stdout written
    /// to `output` (files: a transfer of any size streams, never held in
    /// memory); returns its exit status and stderr.
    fn stream(
        &self,
        dir: &MachineDir,
        remote: &str,
        input: std::fs::File,
        output: std::fs::File,
    ) -> Result<(std::process::ExitStatus, String)>;
    /// Copies the machine's rsync folders into the guest.
    fn sync_folders(&self, dir: &MachineDir, machine: &Machine, user: &str) -> Result<()>;
    /// Runs provisioning steps, in order, stopping at the first failure.
    fn provision(
        &self,
        dir: &MachineDir,
        steps: &[&Provisioner],
        inventory: Option<&Path>,
    ) -> Result<Vec<provisioner::StepReport>>;
    /// Starts streaming the guest's journal to the machine's folder.
    fn start_journal(&self, dir: &MachineDir, since_unix_secs: Option<u64>) -> Result<()>;
    /// Stops the journal stream, if one runs.
    fn stop_journal(&self, dir: &MachineDir);
    /// Starts the automatic port forwarding watcher (any earlier one
    /// stopped).
    fn start_port_watch(
        &self,
        dir: &MachineDir,
        settings: &ports_auto::WatchSettings,
    ) -> Result<()>;
    /// Stops the port watcher and its forwards, if it runs.
    fn stop_port_watch(&self, dir: &MachineDir);
    /// Closes the master connection (before the machine goes away or is
    /// rewound).
    fn disconnect(&self, dir: &MachineDir);
}

/// The time limit of the root scripts env runs for itself (naming a guest,
/// mounting, cleaning before packaging): generous, but a guest that hangs
/// does not hang env.
pub const ROOT_SCRIPT_LIMIT: Duration = Duration::from_secs(300);

/// Runs `script` as root (`sudo -n sh -s`) within [`ROOT_SCRIPT_LIMIT`]; a
/// failure becomes an error starting with `what` and quoting its stderr.
pub fn run_root_script(
    guest: &dyn Guest,
    dir: &MachineDir,
    script: &str,
    what: &str,
) -> Result<()> {
    let out = guest.run(
        dir,
        "sudo -n sh -s",
        script.as_bytes(),
        Some(ROOT_SCRIPT_LIMIT),
    )?;
    if !out.status.success() {
        anyhow::bail!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The guest side over OpenSSH.
pub struct SshGuest;

impl Guest for SshGuest {
    fn wait_ready(
        &self,
        endpoint: &SshEndpoint,
        deadline: Instant,
        still_running: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        ssh::connect::wait_for_banner(endpoint, deadline, still_running).map(drop)
    }

    fn connect(
        &self,
        dir: &MachineDir,
        machine: &Machine,
        state: &mut MachineState,
        endpoint: &SshEndpoint,
        deadline: Instant,
    ) -> Result<()> {
        ssh::connect::set_up(dir, machine, state, endpoint, deadline)
    }

    fn run(
        &self,
        dir: &MachineDir,
        remote: &str,
        input: &[u8],
        limit: Option<Duration>,
    ) -> Result<Output> {
        let _slot = ssh::exec::session_slot(dir);
        ssh::exec::run_with_input(&dir.ssh_config(), &dir.name, remote, input, limit)
    }

    fn stream(
        &self,
        dir: &MachineDir,
        remote: &str,
        input: std::fs::File,
        output: std::fs::File,
    ) -> Result<(std::process::ExitStatus, String)> {
        let _slot = ssh::exec::session_slot(dir);
        ssh::exec::stream(&dir.ssh_config(), &dir.name, remote, input, output)
    }

    fn sync_folders(&self, dir: &MachineDir, machine: &Machine, user: &str) -> Result<()> {
        rsync::sync_folders(dir, machine, user)
    }

    fn provision(
        &self,
        dir: &MachineDir,
        steps: &[&Provisioner],
        inventory: Option<&Path>,
    ) -> Result<Vec<provisioner::StepReport>> {
        provisioner::run(dir, steps, inventory)
    }

    fn start_journal(&self, dir: &MachineDir, since_unix_secs: Option<u64>) -> Result<()> {
        journal::start_forward(dir, since_unix_secs)
    }

    fn stop_journal(&self, dir: &MachineDir) {
        journal::stop_forward(dir)
    }

    fn start_port_watch(
        &self,
        dir: &MachineDir,
        settings: &ports_auto::WatchSettings,
    ) -> Result<()> {
        ports_auto::start(dir, settings)
    }

    fn stop_port_watch(&self, dir: &MachineDir) {
        ports_auto::stop(dir)
    }

    fn disconnect(&self, dir: &MachineDir) {
        if let Ok(control) = dir.control_path() {
            ssh::exec::close_master(&control);
        }
    }
}
