//! Backends: what runs a machine. Operations reach a hypervisor only
//! through the [`Backend`] trait; today's one implementation is the local
//! QEMU ([`qemu::QemuBackend`]). The interface hands back where SSH reaches
//! a machine ([`SshEndpoint`]), never a local path, a pid or an address it
//! assumes, so a backend for machines on another host fits it unchanged.

#[cfg(test)]
pub mod fake;
pub mod libvirt;
pub mod network;
pub mod qemu;
pub mod route;

use crate::boxes::StoredBox;
use crate::envfile::disks::Disk;
use crate::envfile::{Accel, Machine};
pub use crate::machine::state::SshEndpoint;
use crate::machine::state::{Accelerator, Forward};
use crate::machine::{MachineDir, MachineState, Status};
use anyhow::Result;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// Files of a cloud-init seed, by name (`meta-data`, `user-data`...).
pub type SeedFiles = Vec<(String, Vec<u8>)>;

/// What a boot asks of the backend.
#[derive(Debug, Clone)]
pub struct BootRequest<'a> {
    /// The machine's state folder.
    pub dir: &'a MachineDir,
    /// The machine as the Envfile describes it.
    pub machine: &'a Machine,
    /// Its persisted state (box, user).
    pub state: &'a MachineState,
    /// The accelerator asked for (`--accel`, `ENV_ACCEL`, the Envfile).
    pub accel: Accel,
    /// Its link on the project's private network, if there is one.
    pub private_link: Option<network::PrivateLink>,
    /// The cloud-init seed's files (cloud-image boxes): the backend
    /// attaches them as a NoCloud data source.
    pub seed: Option<SeedFiles>,
    /// Start from this snapshot's VM state (on the root disk) instead of
    /// booting: the guest runs on where it was saved.
    pub resume_snapshot: Option<&'a str>,
}

/// A started machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booted {
    /// Where its SSH server will answer.
    pub ssh: SshEndpoint,
    /// The Envfile's forwarded ports as the backend bound them.
    pub forwards: Vec<Forward>,
    /// The accelerator it runs under.
    pub accel: Accelerator,
}

/// Live facts about a running machine, for `env status --json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Details {
    /// The hypervisor process, where there is a local one.
    pub pid: Option<i32>,
    /// The hypervisor's own word for the VM's state (`running`, `paused`).
    pub vm_state: Option<String>,
}

/// One disk of a machine, as a snapshot or an export names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskRef<'a> {
    /// The `index`-th disk of the box (0: the root disk).
    Box(usize),
    /// A data disk of the Envfile.
    Data(&'a Disk),
}

impl DiskRef<'_> {
    /// What the user calls it (`root`, `box disk 1`, `data disk db`).
    pub fn label(&self) -> String {
        match self {
            DiskRef::Box(0) => "root".into(),
            DiskRef::Box(i) => format!("box disk {i}"),
            DiskRef::Data(d) => format!("data disk {}", d.name),
        }
    }
}

/// What a snapshot operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotOp {
    /// Take it.
    Save,
    /// Go back to it.
    Load,
    /// Remove it.
    Delete,
}

/// A snapshot of one disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    /// Its name (tag).
    pub name: String,
    /// Bytes of saved VM state (0: disks only).
    pub vm_state_bytes: u64,
    /// When it was taken (seconds since the epoch).
    pub created: u64,
    /// How long the guest had run when it was taken (seconds).
    pub guest_uptime_secs: u64,
}

/// Errors callers branch on (carried inside `anyhow::Error`; find them
/// with `downcast_ref`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// A host port the Envfile asks for is taken (and may not move).
    PortTaken {
        /// The forwarding rule, as the Envfile names it (`ports[0]`).
        rule: String,
        /// What to tell the user.
        message: String,
    },
    /// The hypervisor could not start the machine under hardware
    /// acceleration (software emulation may work).
    AccelFailed(String),
    /// The machine stopped while it booted.
    Stopped(String),
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendError::PortTaken { message, .. } => f.write_str(message),
            BackendError::AccelFailed(m) | BackendError::Stopped(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for BackendError {}

/// Refuses a root disk smaller than the box's: disks can grow, not shrink.
pub fn check_disk_fits(machine: &Machine, box_gib: u64) -> Result<()> {
    if let Some(size) = machine.disk
        && size.bytes() < box_gib * 1024 * 1024 * 1024
    {
        anyhow::bail!(
            "machine `{}`: disk {} is smaller than the box's {} GiB: disks can grow, not shrink",
            machine.name,
            size,
            box_gib
        );
    }
    Ok(())
}

/// The last `lines` lines of a text file ("" when it cannot be read).
pub fn tail_file(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What runs machines. Every method takes the machine's state folder, where
/// a backend keeps what it needs to find the machine again.
pub trait Backend: Send + Sync {
    /// What runs the machines, as messages name it (`QEMU`).
    fn hypervisor(&self) -> &'static str;
    /// The address at which a guest reaches the host it runs on (a proxy
    /// on the host's loopback is there for it).
    fn host_from_guest(&self) -> &'static str;
    /// Creates the machine's disks in `dir` (a staging folder that becomes
    /// the machine's folder): one copy-on-write overlay per box disk, the
    /// root one grown to the Envfile's size.
    fn create_disks(&self, dir: &MachineDir, stored: &StoredBox, machine: &Machine) -> Result<()>;
    /// Creates the machine's data disks that do not exist yet (kept ones
    /// are found again after a destroy).
    fn create_data_disks(&self, dir: &MachineDir, machine: &Machine) -> Result<()>;
    /// Starts the machine; returns at once, before its guest boots.
    fn start(&self, request: &BootRequest<'_>) -> Result<Booted>;
    /// The machine's status.
    fn status(&self, dir: &MachineDir) -> Result<Status>;
    /// During a boot: an error ([`BackendError::Stopped`]) when the machine
    /// is gone, naming what its console said last.
    fn still_running(&self, dir: &MachineDir) -> Result<()>;
    /// Asks the guest to power off (ACPI) and waits up to `grace`; whether it
    /// stopped.
    fn power_off(&self, dir: &MachineDir, grace: Duration) -> bool;
    /// Stops the machine now: the hypervisor is asked to quit, then killed.
    fn stop(&self, dir: &MachineDir);
    /// Ends the machine at once and frees what the backend holds for it
    /// (its disks are about to be deleted: nothing needs flushing).
    fn remove(&self, dir: &MachineDir);
    /// Live facts for `env status --json`.
    fn details(&self, dir: &MachineDir) -> Details;
    /// Why the hypervisor holds a running machine stopped (a disk write
    /// failed: its filesystem is full), or `None` when it runs.
    fn paused(&self, dir: &MachineDir) -> Option<String>;
    /// Whether [`Backend::paused`] is worth asking before each command: a
    /// cheap look (the disks' filesystem is nearly full) that spares the
    /// hypervisor a control round trip per command otherwise.
    fn may_be_paused(&self, dir: &MachineDir) -> bool;
    /// Lets a machine [`Backend::paused`] names run again (the failed write
    /// is retried), or one [`Backend::pause`] stopped.
    fn resume(&self, dir: &MachineDir) -> Result<()>;
    /// Stops a running guest's CPUs with its disks flushed, so its disk
    /// files can be copied whole; [`Backend::resume`] lets it run on.
    fn pause(&self, dir: &MachineDir) -> Result<()>;
    /// The last `lines` lines of the machine's console.
    fn console_tail(&self, dir: &MachineDir, lines: usize) -> String;
    /// How many box disks the machine has (the root disk first).
    fn box_disk_count(&self, dir: &MachineDir) -> usize;
    /// The snapshots of one disk.
    fn snapshots(&self, dir: &MachineDir, disk: DiskRef<'_>) -> Result<Vec<SnapshotInfo>>;
    /// A snapshot operation on `disks`. `live`: the machine runs, and the
    /// snapshot holds its VM state too (kept with the first disk).
    fn snapshot(
        &self,
        dir: &MachineDir,
        op: SnapshotOp,
        tag: &str,
        disks: &[DiskRef<'_>],
        live: bool,
    ) -> Result<()>;
    /// Sets a running guest's clock to the host's (after a restore).
    fn set_guest_clock(&self, dir: &MachineDir) -> Result<()>;
    /// Writes box disk `index` as a standalone compressed qcow2 at `out`;
    /// returns its virtual size in bytes.
    fn export_disk(&self, dir: &MachineDir, index: usize, out: &Path) -> Result<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_disk_may_grow_but_not_shrink() {
        let envfile = |disk: &str| {
            crate::envfile::read::parse(
                Path::new("/p/Envfile"),
                &format!("[machines.web]\nbox = \"b\"\ndisk = \"{disk}\"\n"),
            )
            .unwrap()
        };
        let small = envfile("4G");
        let e = check_disk_fits(&small.machines[0], 8).unwrap_err();
        assert!(
            e.to_string().contains("smaller than the box's 8 GiB"),
            "{e}"
        );
        assert!(check_disk_fits(&small.machines[0], 4).is_ok());
        assert!(check_disk_fits(&envfile("10G").machines[0], 8).is_ok());
    }
}
