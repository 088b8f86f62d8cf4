//! A guest side that reaches no guest: it writes down every call (in the
//! fake backend's list, so the order across both shows) and answers as a
//! healthy guest would (tests only).

use super::Guest;
use super::provisioner::StepReport;
use crate::backend::fake::{Calls, note};
use crate::envfile::Machine;
use crate::envfile::provisioners::Provisioner;
use crate::machine::state::SshEndpoint;
use crate::machine::{MachineDir, MachineState};
use anyhow::{Result, bail};
use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A guest side that only takes notes.
pub struct FakeGuest {
    /// Every call, shared with the fake backend.
    pub calls: Calls,
    /// Machines whose provisioning fails.
    pub fail_provision: Mutex<BTreeSet<String>>,
}

impl FakeGuest {
    /// A guest side writing to `calls`.
    pub fn new(calls: Calls) -> FakeGuest {
        FakeGuest {
            calls,
            fail_provision: Mutex::default(),
        }
    }
}

impl Guest for FakeGuest {
    fn wait_ready(
        &self,
        endpoint: &SshEndpoint,
        _: Instant,
        still_running: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        note(&self.calls, format!("wait_ready {endpoint}"));
        still_running()
    }

    fn connect(
        &self,
        dir: &MachineDir,
        _: &Machine,
        state: &mut MachineState,
        endpoint: &SshEndpoint,
        _: Instant,
    ) -> Result<()> {
        note(&self.calls, format!("connect {} {endpoint}", dir.name));
        state.key_inserted = true;
        std::fs::write(dir.ssh_config(), format!("Host {}\n", dir.name))?;
        Ok(())
    }

    fn run(&self, dir: &MachineDir, remote: &str, _: &[u8], _: Option<Duration>) -> Result<Output> {
        note(&self.calls, format!("run {} {remote}", dir.name));
        Ok(Output {
            status: ExitStatus::from_raw(0),
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
    }

    fn stream(
        &self,
        dir: &MachineDir,
        remote: &str,
        _: std::fs::File,
        _: std::fs::File,
    ) -> Result<(ExitStatus, String)> {
        note(&self.calls, format!("stream {} {remote}", dir.name));
        Ok((ExitStatus::from_raw(0), String::new()))
    }

    fn sync_folders(&self, dir: &MachineDir, _: &Machine, user: &str) -> Result<()> {
        note(&self.calls, format!("sync_folders {} as {user}", dir.name));
        Ok(())
    }

    fn provision(
        &self,
        dir: &MachineDir,
        steps: &[&Provisioner],
        _: Option<&Path>,
    ) -> Result<Vec<StepReport>> {
        let names: Vec<&str> = steps.iter().map(|p| p.name.as_str()).collect();
        note(
            &self.calls,
            format!("provision {} {}", dir.name, names.join(",")),
        );
        if self
            .fail_provision
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&dir.name)
        {
            bail!("provisioner `{}` failed in the fake", names.join(","));
        }
        Ok(Vec::new())
    }

    fn start_journal(&self, dir: &MachineDir, _: Option<u64>) -> Result<()> {
        note(&self.calls, format!("start_journal {}", dir.name));
        Ok(())
    }

    fn stop_journal(&self, dir: &MachineDir) {
        note(&self.calls, format!("stop_journal {}", dir.name));
    }

    fn start_port_watch(
        &self,
        dir: &MachineDir,
        _: &crate::guest::ports_auto::WatchSettings,
    ) -> Result<()> {
        note(&self.calls, format!("start_port_watch {}", dir.name));
        Ok(())
    }

    fn stop_port_watch(&self, _: &MachineDir) {}

    fn disconnect(&self, dir: &MachineDir) {
        note(&self.calls, format!("disconnect {}", dir.name));
    }
}
