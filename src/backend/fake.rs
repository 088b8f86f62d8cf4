//! A backend that runs nothing: it keeps machines in memory and writes down
//! every call, so operations can be tested for what they ask and in which
//! order (tests only).

use super::{
    Backend, BackendError, BootRequest, Booted, Details, DiskRef, SnapshotInfo, SnapshotOp,
};
use crate::boxes::StoredBox;
use crate::envfile::Machine;
use crate::machine::state::{Accelerator, SshEndpoint};
use crate::machine::{MachineDir, Status};
use anyhow::{Result, bail};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The calls made to the fakes, in order (`"start web"`), shared by the
/// fake backend and the fake guest.
pub type Calls = Arc<Mutex<Vec<String>>>;

/// Writes a call down.
pub fn note(calls: &Calls, call: String) {
    calls.lock().unwrap_or_else(|e| e.into_inner()).push(call);
}

/// A backend whose machines live in memory.
#[derive(Default)]
pub struct FakeBackend {
    /// Every call, shared with the fake guest.
    pub calls: Calls,
    /// Machines that run.
    pub running: Mutex<BTreeSet<String>>,
    /// Machines whose start fails.
    pub fail_start: Mutex<BTreeSet<String>>,
    /// Machines that stop while they boot.
    pub die_in_boot: Mutex<BTreeSet<String>>,
    /// Whether guests power off when asked (ACPI).
    pub guests_power_off: bool,
}

impl FakeBackend {
    /// A backend writing to `calls`, whose guests power off when asked.
    pub fn new(calls: Calls) -> FakeBackend {
        FakeBackend {
            calls,
            guests_power_off: true,
            ..FakeBackend::default()
        }
    }

    fn note(&self, call: &str, dir: &MachineDir) {
        note(&self.calls, format!("{call} {}", dir.name));
    }

    fn set_running(&self, name: &str, on: bool) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if on {
            running.insert(name.into());
        } else {
            running.remove(name);
        }
    }

    fn is_running(&self, name: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
    }

    /// The machine vanishes as if its hypervisor was killed by hand.
    pub fn vanish(&self, name: &str) {
        self.set_running(name, false);
    }
}

impl Backend for FakeBackend {
    fn host_from_guest(&self) -> &'static str {
        "10.0.2.2"
    }

    fn hypervisor(&self) -> &'static str {
        "the fake"
    }

    fn create_disks(&self, dir: &MachineDir, _: &StoredBox, _: &Machine) -> Result<()> {
        self.note("create_disks", dir);
        std::fs::write(dir.disk(), "fake disk")?;
        Ok(())
    }

    fn create_data_disks(&self, dir: &MachineDir, _: &Machine) -> Result<()> {
        self.note("create_data_disks", dir);
        Ok(())
    }

    fn start(&self, request: &BootRequest<'_>) -> Result<Booted> {
        let dir = request.dir;
        match request.resume_snapshot {
            Some(tag) => self.note(&format!("start from {tag}"), dir),
            None => self.note("start", dir),
        }
        if self
            .fail_start
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&dir.name)
        {
            bail!("the fake refuses to start `{}`", dir.name);
        }
        let dies = self
            .die_in_boot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&dir.name);
        self.set_running(&dir.name, !dies);
        Ok(Booted {
            // Somewhere else: operations must not assume the loopback.
            ssh: SshEndpoint {
                host: "kvm1.example".into(),
                port: 40022,
                jump: Some("ops@kvm1.example".into()),
                proxy_command: None,
            },
            forwards: Vec::new(),
            accel: Accelerator::Tcg,
        })
    }

    fn status(&self, dir: &MachineDir) -> Result<Status> {
        let Some(state) = dir.load_state()? else {
            return Ok(Status::NotCreated);
        };
        if !dir.disk().exists() {
            return Ok(Status::NotCreated);
        }
        Ok(match (self.is_running(&dir.name), state.running) {
            (true, _) => Status::Running,
            (false, true) => Status::Died,
            (false, false) => Status::Halted,
        })
    }

    fn still_running(&self, dir: &MachineDir) -> Result<()> {
        if self.is_running(&dir.name) {
            Ok(())
        } else {
            Err(BackendError::Stopped(format!("`{}` stopped in the fake", dir.name)).into())
        }
    }

    fn power_off(&self, dir: &MachineDir, _: Duration) -> bool {
        self.note("power_off", dir);
        if self.guests_power_off {
            self.set_running(&dir.name, false);
        }
        self.guests_power_off
    }

    fn stop(&self, dir: &MachineDir) {
        self.note("stop", dir);
        self.set_running(&dir.name, false);
    }

    fn remove(&self, dir: &MachineDir) {
        self.note("remove", dir);
        self.set_running(&dir.name, false);
    }

    fn details(&self, _: &MachineDir) -> Details {
        Details::default()
    }

    fn paused(&self, _: &MachineDir) -> Option<String> {
        None
    }

    fn may_be_paused(&self, _: &MachineDir) -> bool {
        true
    }

    fn resume(&self, _: &MachineDir) -> Result<()> {
        Ok(())
    }

    fn pause(&self, _: &MachineDir) -> Result<()> {
        Ok(())
    }

    fn console_tail(&self, _: &MachineDir, _: usize) -> String {
        String::new()
    }

    fn box_disk_count(&self, _: &MachineDir) -> usize {
        1
    }

    fn snapshots(&self, _: &MachineDir, _: DiskRef<'_>) -> Result<Vec<SnapshotInfo>> {
        Ok(Vec::new())
    }

    fn snapshot(
        &self,
        dir: &MachineDir,
        op: SnapshotOp,
        tag: &str,
        disks: &[DiskRef<'_>],
        live: bool,
    ) -> Result<()> {
        self.note(
            &format!("snapshot {op:?} {tag} {} live={live}", disks.len()),
            dir,
        );
        Ok(())
    }

    fn set_guest_clock(&self, dir: &MachineDir) -> Result<()> {
        self.note("set_guest_clock", dir);
        Ok(())
    }

    fn export_disk(&self, dir: &MachineDir, index: usize, out: &Path) -> Result<u64> {
        self.note(&format!("export_disk {index}"), dir);
        std::fs::write(out, "flat")?;
        Ok(1 << 30)
    }
}
