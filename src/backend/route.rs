//! The backend the command line uses: each machine goes to the backend it
//! was created on (a libvirt machine's folder holds its libvirt record),
//! a new one to the backend its Envfile names. A project may mix them.

use super::libvirt::LibvirtBackend;
use super::libvirt::record::Record;
use super::qemu::QemuBackend;
use super::{Backend, BootRequest, Booted, Details, DiskRef, SnapshotInfo, SnapshotOp};
use crate::boxes::StoredBox;
use crate::envfile::Machine;
use crate::envfile::libvirt::MachineBackend;
use crate::machine::{MachineDir, Status};
use anyhow::{Result, bail};
use std::path::Path;
use std::time::Duration;

/// Every backend, each machine routed to its own.
pub struct Routed;

static QEMU: QemuBackend = QemuBackend;
static LIBVIRT: LibvirtBackend = LibvirtBackend;

impl Routed {
    /// The backend of an existing machine.
    fn of(dir: &MachineDir) -> &'static dyn Backend {
        if Record::path(dir).exists() {
            &LIBVIRT
        } else {
            &QEMU
        }
    }

    /// The backend the Envfile names for a machine.
    fn named(machine: &Machine) -> &'static dyn Backend {
        match machine.backend {
            MachineBackend::Local => &QEMU,
            MachineBackend::Libvirt(_) => &LIBVIRT,
        }
    }
}

/// Where a machine lives, as messages say it.
fn place(machine: &Machine) -> String {
    match &machine.backend {
        MachineBackend::Local => "this host's QEMU".into(),
        MachineBackend::Libvirt(t) => format!("libvirt at {}", t.uri),
    }
}

impl Backend for Routed {
    fn hypervisor(&self) -> &'static str {
        QEMU.hypervisor()
    }
    fn host_from_guest(&self) -> &'static str {
        QEMU.host_from_guest()
    }
    fn create_disks(&self, dir: &MachineDir, stored: &StoredBox, machine: &Machine) -> Result<()> {
        Self::named(machine).create_disks(dir, stored, machine)
    }
    fn create_data_disks(&self, dir: &MachineDir, machine: &Machine) -> Result<()> {
        Self::of(dir).create_data_disks(dir, machine)
    }
    fn start(&self, request: &BootRequest<'_>) -> Result<Booted> {
        let on_libvirt = Record::load(request.dir)?;
        let wants_libvirt = matches!(request.machine.backend, MachineBackend::Libvirt(_));
        let moved = match (&on_libvirt, &request.machine.backend) {
            (Some(rec), MachineBackend::Libvirt(t)) => rec.uri != t.uri || rec.pool != t.pool,
            (on, _) => on.is_some() != wants_libvirt,
        };
        if moved {
            let was = match &on_libvirt {
                Some(rec) => format!("libvirt at {} (pool {})", rec.uri, rec.pool),
                None => "this host's QEMU".into(),
            };
            bail!(
                "machine `{}` was created on {was}; the Envfile now puts it on {}: \
                 `env destroy {}` first to move it",
                request.machine.name,
                place(request.machine),
                request.machine.name
            );
        }
        Self::of(request.dir).start(request)
    }
    fn status(&self, dir: &MachineDir) -> Result<Status> {
        Self::of(dir).status(dir)
    }
    fn still_running(&self, dir: &MachineDir) -> Result<()> {
        Self::of(dir).still_running(dir)
    }
    fn power_off(&self, dir: &MachineDir, grace: Duration) -> bool {
        Self::of(dir).power_off(dir, grace)
    }
    fn stop(&self, dir: &MachineDir) {
        Self::of(dir).stop(dir)
    }
    fn remove(&self, dir: &MachineDir) {
        Self::of(dir).remove(dir)
    }
    fn details(&self, dir: &MachineDir) -> Details {
        Self::of(dir).details(dir)
    }
    fn paused(&self, dir: &MachineDir) -> Option<String> {
        Self::of(dir).paused(dir)
    }
    fn may_be_paused(&self, dir: &MachineDir) -> bool {
        Self::of(dir).may_be_paused(dir)
    }
    fn resume(&self, dir: &MachineDir) -> Result<()> {
        Self::of(dir).resume(dir)
    }
    fn pause(&self, dir: &MachineDir) -> Result<()> {
        Self::of(dir).pause(dir)
    }
    fn console_tail(&self, dir: &MachineDir, lines: usize) -> String {
        Self::of(dir).console_tail(dir, lines)
    }
    fn box_disk_count(&self, dir: &MachineDir) -> usize {
        Self::of(dir).box_disk_count(dir)
    }
    fn snapshots(&self, dir: &MachineDir, disk: DiskRef<'_>) -> Result<Vec<SnapshotInfo>> {
        Self::of(dir).snapshots(dir, disk)
    }
    fn snapshot(
        &self,
        dir: &MachineDir,
        op: SnapshotOp,
        tag: &str,
        disks: &[DiskRef<'_>],
        live: bool,
    ) -> Result<()> {
        Self::of(dir).snapshot(dir, op, tag, disks, live)
    }
    fn set_guest_clock(&self, dir: &MachineDir) -> Result<()> {
        Self::of(dir).set_guest_clock(dir)
    }
    fn export_disk(&self, dir: &MachineDir, index: usize, out: &Path) -> Result<u64> {
        Self::of(dir).export_disk(dir, index, out)
    }
}
