//! Operations: what each command does to a project's machines. They reach
//! the hypervisor only through a [`Backend`] and the guest only through a
//! [`Guest`], both carried by a [`Ctx`], so they can be tested against
//! fakes (`ops/tests.rs`).

pub mod cache;
pub mod coverage;
pub mod doctor;
pub mod doctor_libvirt;
pub mod down;
pub mod logs;
pub mod package;
pub mod parallel;
pub mod provision;
pub mod snapshot;
pub mod status;
pub mod suspend;
pub mod test;
pub mod transfer;
pub mod triggers;
pub mod up;
pub mod verify;
pub mod watch;

#[cfg(test)]
mod tests;

use crate::backend::Backend;
use crate::backend::route::Routed;
use crate::guest::{Guest, SshGuest};
use crate::machine::{MachineDir, MachineState, Status};
use anyhow::{Context, Result};

/// `machine` with its `type = "auto"` folders chosen for the box in
/// `box_dir` (what its metadata says the kernel shares), and one line per
/// choice saying which and why.
pub fn with_chosen_folders(
    machine: &crate::envfile::Machine,
    box_dir: &std::path::Path,
) -> (crate::envfile::Machine, Vec<String>) {
    let meta = crate::boxes::metadata::Metadata::load(box_dir).ok();
    let env = meta.as_ref().and_then(|m| m.env.as_ref());
    let known = env.and_then(|e| e.folders.as_deref());
    let env_kernel = env.is_some_and(|e| e.kernel.is_some());
    let (folders, notes) =
        crate::envfile::folders::resolve_auto(&machine.folders, known, env_kernel);
    let chosen = crate::envfile::Machine {
        folders,
        ..machine.clone()
    };
    (chosen, notes)
}

/// `machine` with its `auto` folders chosen for the box it was created
/// from (unchanged when it was never created).
pub fn created_machine(
    machine: &crate::envfile::Machine,
    dir: &MachineDir,
) -> crate::envfile::Machine {
    match dir.load_state() {
        Ok(Some(state)) => with_chosen_folders(machine, &state.box_dir).0,
        _ => machine.clone(),
    }
}

/// What operations act through: the machine backend and the guest side.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// Runs the machines.
    pub backend: &'a dyn Backend,
    /// Works inside them.
    pub guest: &'a dyn Guest,
}

impl Ctx<'static> {
    /// The local QEMU and OpenSSH: what the command line uses.
    pub fn local() -> Ctx<'static> {
        Ctx {
            backend: &Routed,
            guest: &SshGuest,
        }
    }
}

impl Ctx<'_> {
    /// A machine's status.
    pub fn status(&self, dir: &MachineDir) -> Result<Status> {
        let status = self.backend.status(dir)?;
        // Only env knows a stopped machine's memory is saved on its disks.
        // (A corrupt state file is the backend's to report, or not.)
        if status == Status::Halted && dir.load_state().ok().flatten().is_some_and(|s| s.suspended)
        {
            return Ok(Status::Suspended);
        }
        Ok(status)
    }

    /// The state of a running machine whose SSH is set up; otherwise an
    /// error that says how to start it (what every command needing the
    /// guest asks).
    pub fn running_state(&self, dir: &MachineDir) -> Result<MachineState> {
        match (self.status(dir)?, dir.load_state()?) {
            (Status::Running, Some(state)) if dir.ssh_config().exists() => {
                if let Some(why) = self
                    .backend
                    .may_be_paused(dir)
                    .then(|| self.backend.paused(dir))
                    .flatten()
                {
                    anyhow::bail!("{}", paused_message(&dir.name, &why));
                }
                Ok(state)
            }
            (Status::Suspended, _) => anyhow::bail!(
                "machine `{}` is suspended: `env resume {}` first",
                dir.name,
                dir.name
            ),
            _ => anyhow::bail!(
                "machine `{}` is not running: `env up {}` first",
                dir.name,
                dir.name
            ),
        }
    }
}

/// What to tell a user whose machine the hypervisor holds stopped.
pub fn paused_message(name: &str, why: &str) -> String {
    format!(
        "machine `{name}` is paused by {why}: make room, then `env up {name}` lets it run again"
    )
}

/// Runs `action` on the machine's state and saves the state with the action's
/// name and outcome, whether it failed or not.
pub fn record(
    dir: &MachineDir,
    action: &str,
    f: impl FnOnce(&mut MachineState) -> Result<()>,
) -> Result<()> {
    let mut state = dir.load_state()?.context("machine state vanished")?;
    let result = f(&mut state);
    state.last_action = action.into();
    state.last_error = result.as_ref().err().map(|e| format!("{e:#}"));
    dir.save_state(&state)?;
    result
}
