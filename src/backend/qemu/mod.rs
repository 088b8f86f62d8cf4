//! The local QEMU backend: one daemonized `qemu-system-x86_64` per machine,
//! its disks qcow2 overlays in the machine's folder, SSH and the Envfile's
//! ports forwarded by QEMU's user networking on the host, QMP and the guest
//! agent on sockets in the runtime folder.

pub mod accel;
pub mod args;
pub mod img;
pub mod pid;
pub mod plan;
pub mod ports;
pub mod qga;
pub mod qmp;
pub mod seed;
pub mod virtiofs;

use super::{
    Backend, BackendError, BootRequest, Booted, Details, DiskRef, SnapshotInfo, SnapshotOp,
};
use crate::boxes::StoredBox;
use crate::boxes::metadata::{Firmware, Metadata};
use crate::envfile::{Accel, Machine};
use crate::machine::state::{Accelerator, SshEndpoint};
use crate::machine::{MachineDir, Status};
use crate::util::fs::make_private;
use crate::util::process::{HELPER_LIMIT, run_limited};
use crate::util::ui;
use anyhow::{Context, Result};
use args::{PrivateNic, QEMU_BINARY, VmSpec};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long QEMU gets to exit after `quit` before it is killed.
const QUIT_GRACE: Duration = Duration::from_secs(3);

/// How long a snapshot job may take (it writes the guest's RAM).
const JOB_TIMEOUT: Duration = Duration::from_secs(600);

/// How often a boot plans its ports again when another process takes one
/// between the plan and QEMU's bind.
const PORT_RACE_RETRIES: usize = 3;

/// The local QEMU.
pub struct QemuBackend;

/// Below this much free space where a machine's disks are, a command asks
/// QEMU whether it paused the guest (see [`Backend::may_be_paused`]).
const LOW_SPACE: u64 = 1 << 30;

impl QemuBackend {
    /// The image file of a disk of the machine.
    fn image(dir: &MachineDir, disk: DiskRef<'_>) -> PathBuf {
        match disk {
            DiskRef::Box(i) => dir.box_disk(i),
            DiskRef::Data(d) => dir.data_disk(d),
        }
    }

    /// QEMU's block node name of a disk (what QMP jobs name).
    fn node(disk: DiskRef<'_>) -> String {
        match disk {
            DiskRef::Box(i) => args::box_disk_node(i),
            DiskRef::Data(d) => args::data_node(&d.name),
        }
    }
}

impl Backend for QemuBackend {
    fn host_from_guest(&self) -> &'static str {
        // QEMU's user-mode network: the host's loopback, seen from the guest.
        "10.0.2.2"
    }

    fn hypervisor(&self) -> &'static str {
        "QEMU"
    }

    fn create_disks(&self, dir: &MachineDir, stored: &StoredBox, machine: &Machine) -> Result<()> {
        super::check_disk_fits(machine, stored.metadata.virtual_size.unwrap_or(0))?;
        for (index, file) in stored.metadata.disk_files().iter().enumerate() {
            let grow = if index == 0 {
                machine.disk.map(|s| s.mib)
            } else {
                None
            };
            img::create_overlay(
                &stored.dir.join(file),
                stored.metadata.disk_format(),
                &dir.box_disk(index),
                grow,
            )?;
            make_private(&dir.box_disk(index))?;
        }
        Ok(())
    }

    fn create_data_disks(&self, dir: &MachineDir, machine: &Machine) -> Result<()> {
        for disk in &machine.disks {
            let path = dir.data_disk(disk);
            if path.exists() {
                continue;
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
                make_private(parent)?;
            }
            img::create_disk(
                &path,
                disk.format.name(),
                disk.size.mib,
                &format!("cannot create disk `{}` of `{}`", disk.name, machine.name),
            )?;
            make_private(&path)?;
        }
        Ok(())
    }

    fn start(&self, request: &BootRequest<'_>) -> Result<Booted> {
        let (dir, machine, state) = (request.dir, request.machine, request.state);
        let meta = Metadata::load(&state.box_dir).with_context(|| {
            format!(
                "the box of machine `{}` is gone from the store",
                machine.name
            )
        })?;
        // What a KVM probe boots: the box's kernel, else its root disk
        // through its own firmware.
        let probe_kernel = meta
            .env
            .as_ref()
            .and_then(|e| e.kernel.as_ref())
            .map(|k| state.box_dir.join(k));
        let probe_disk = meta.disk_files().first().map(|f| state.box_dir.join(f));
        let probe = match (&probe_kernel, &probe_disk) {
            (Some(kernel), _) => Some(accel::ProbeGuest::Kernel(kernel)),
            (None, Some(disk)) => Some(accel::ProbeGuest::Disk(disk)),
            (None, None) => None,
        };
        let host = accel::this_host();
        let decision = accel::resolve(host.as_ref(), request.accel, probe)?;
        if let Some(note) = &decision.note {
            ui::step(&machine.name, note);
        }
        let mut accel = decision.accel;
        self.create_data_disks(dir, machine)?;
        let nic = request.private_link.as_ref().map(|link| PrivateNic {
            group: link.segment.group,
            port: link.segment.port,
            mac: link.mac.clone(),
        });
        let plan = || {
            ports::plan_forwards(
                &machine.name,
                &machine.ports,
                ports::is_free,
                ports::pick_free,
            )
        };
        let mut forwards = plan()?;
        let seed = match &request.seed {
            Some(files) => {
                seed::write_seed(&dir.seed_image(), files)?;
                Some(dir.seed_image())
            }
            None => None,
        };
        let uefi = match plan::firmware(machine, &meta) {
            Firmware::Bios => None,
            Firmware::Uefi => {
                let (code, template) = plan::ovmf()?;
                if !dir.uefi_vars().exists() {
                    std::fs::copy(&template, dir.uefi_vars()).with_context(|| {
                        format!("cannot copy the UEFI variables {}", template.display())
                    })?;
                    make_private(&dir.uefi_vars())?;
                }
                Some(args::Uefi {
                    code,
                    vars: dir.uefi_vars(),
                })
            }
        };
        let _ = std::fs::remove_file(dir.pidfile());
        let fs_shares = virtiofs::start(dir, &machine.folders)?;
        // A QEMU that does not start leaves no daemon waiting for it.
        let mut started = || -> Result<Booted> {
            let mut ssh_forward = ports::ssh_forward(machine.ssh_guest_port)?;
            let mut attempt = 0;
            loop {
                let mut all = vec![ssh_forward.clone()];
                all.extend(forwards.iter().cloned());
                let attached = plan::Attached {
                    private_nic: nic.clone(),
                    seed: seed.clone(),
                    uefi: uefi.clone(),
                    loadvm: request.resume_snapshot.map(String::from),
                    fs_shares: fs_shares.clone(),
                };
                let spec = plan::vm_spec(dir, machine, state, &meta, accel, all, attached)?;
                let err = match start_qemu(&spec) {
                    Ok(()) => break,
                    Err(e) => e,
                };
                match ports::taken_forward(&format!("{err:#}")) {
                    // Another process (another project's `up`, say) took a port
                    // between our check and QEMU's bind: plan again. A fixed
                    // port without auto_correct then fails with the planner's
                    // message.
                    Some(rule) if attempt < PORT_RACE_RETRIES => {
                        attempt += 1;
                        if rule.host_port == ssh_forward.host_port {
                            ssh_forward = ports::ssh_forward(machine.ssh_guest_port)?;
                        } else {
                            forwards = plan()?;
                        }
                    }
                    // `auto` on a host where QEMU cannot start under KVM (it
                    // refuses a CPU feature, say): TCG, and the host remembers.
                    _ if accel == Accelerator::Kvm && request.accel == Accel::Auto => {
                        ui::step(&machine.name, &accel::fallback_note(&format!("{err:#}")));
                        host.remember(false)?;
                        accel = Accelerator::Tcg;
                    }
                    _ if accel == Accelerator::Kvm => {
                        return Err(err.context(BackendError::AccelFailed(
                            "QEMU could not start under KVM: use --accel tcg (or ENV_ACCEL=tcg)"
                                .into(),
                        )));
                    }
                    _ => return Err(err),
                }
            }
            Ok(Booted {
                ssh: SshEndpoint {
                    host: ssh_forward.host_ip.to_string(),
                    port: ssh_forward.host_port,
                    jump: None,
                    proxy_command: None,
                },
                forwards: forwards.clone(),
                accel,
            })
        };
        let result = started();
        if result.is_err() {
            virtiofs::stop(dir);
        }
        result
    }

    fn status(&self, dir: &MachineDir) -> Result<Status> {
        let Some(state) = dir.load_state()? else {
            return Ok(Status::NotCreated);
        };
        if !dir.disk().exists() {
            return Ok(Status::NotCreated);
        }
        Ok(match pid::qemu_pid(dir) {
            Some(_) => Status::Running,
            None if state.running => Status::Died,
            None => Status::Halted,
        })
    }

    fn still_running(&self, dir: &MachineDir) -> Result<()> {
        if pid::qemu_pid(dir).is_none() {
            return Err(BackendError::Stopped(format!(
                "QEMU exited during boot: see {} (last lines: {})",
                dir.console_log().display(),
                self.console_tail(dir, 5).replace('\n', " | ")
            ))
            .into());
        }
        Ok(())
    }

    fn power_off(&self, dir: &MachineDir, grace: Duration) -> bool {
        let Some(pid) = pid::qemu_pid(dir) else {
            return true;
        };
        dir.qmp_socket()
            .is_ok_and(|socket| qmp::system_powerdown(&socket).is_ok())
            && pid::wait_exit(pid, grace)
    }

    fn stop(&self, dir: &MachineDir) {
        if let Some(pid) = pid::qemu_pid(dir) {
            let quit_sent = dir
                .qmp_socket()
                .map(|s| qmp::quit(&s).is_ok())
                .unwrap_or(false);
            if !(quit_sent && pid::wait_exit(pid, QUIT_GRACE)) {
                pid::kill(dir, QUIT_GRACE);
            }
        }
        let _ = std::fs::remove_file(dir.pidfile());
        virtiofs::stop(dir);
    }

    fn remove(&self, dir: &MachineDir) {
        // The disk is about to be deleted: no need for QEMU to flush it, and
        // SIGKILL ends it at once (a QMP quit tears a 1 GiB guest down in ~1 s).
        pid::kill(dir, QUIT_GRACE);
        for socket in [dir.qmp_socket(), dir.qga_socket()].into_iter().flatten() {
            let _ = std::fs::remove_file(socket);
        }
        let _ = std::fs::remove_file(dir.pidfile());
        virtiofs::stop(dir);
    }

    fn details(&self, dir: &MachineDir) -> Details {
        let pid = pid::qemu_pid(dir);
        Details {
            pid,
            vm_state: pid
                .and_then(|_| dir.qmp_socket().ok())
                .and_then(|s| qmp::query_status(&s).ok()),
        }
    }

    fn paused(&self, dir: &MachineDir) -> Option<String> {
        pid::qemu_pid(dir)?;
        let pause = qmp::io_pause(&dir.qmp_socket().ok()?).ok()??;
        Some(if pause.no_space {
            let folder = dir
                .disk()
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            format!(
                "a write to its disk `{}` found no space left on the host ({} free where {} is)",
                pause.drive,
                ui::human_bytes(crate::util::fs::free_space(&folder).unwrap_or(0)),
                folder.display()
            )
        } else {
            format!("a write to its disk `{}` failed on the host", pause.drive)
        })
    }

    fn may_be_paused(&self, dir: &MachineDir) -> bool {
        // QEMU pauses a guest when a write finds the host filesystem full;
        // with room there, no write failed for want of it.
        crate::util::fs::free_space(&dir.root).is_none_or(|free| free < LOW_SPACE)
    }

    fn resume(&self, dir: &MachineDir) -> Result<()> {
        qmp::cont(&dir.qmp_socket()?)
    }

    fn pause(&self, dir: &MachineDir) -> Result<()> {
        qmp::stop(&dir.qmp_socket()?)
    }

    fn console_tail(&self, dir: &MachineDir, lines: usize) -> String {
        super::tail_file(&dir.console_log(), lines)
    }

    fn box_disk_count(&self, dir: &MachineDir) -> usize {
        dir.box_disks().len()
    }

    fn snapshots(&self, dir: &MachineDir, disk: DiskRef<'_>) -> Result<Vec<SnapshotInfo>> {
        img::list_snapshots(&Self::image(dir, disk))
    }

    fn snapshot(
        &self,
        dir: &MachineDir,
        op: SnapshotOp,
        tag: &str,
        disks: &[DiskRef<'_>],
        live: bool,
    ) -> Result<()> {
        if live {
            let nodes: Vec<String> = disks.iter().map(|d| Self::node(*d)).collect();
            return qmp::snapshot_job(&dir.qmp_socket()?, op, tag, &nodes, JOB_TIMEOUT);
        }
        let flag = match op {
            SnapshotOp::Save => "-c",
            SnapshotOp::Load => "-a",
            SnapshotOp::Delete => "-d",
        };
        for (done, disk) in disks.iter().enumerate() {
            if let Err(e) = img::snapshot(flag, tag, &Self::image(dir, *disk), &disk.label()) {
                if op == SnapshotOp::Save {
                    // No disk is left with half a snapshot.
                    for made in &disks[..done] {
                        let _ = img::snapshot("-d", tag, &Self::image(dir, *made), &made.label());
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn set_guest_clock(&self, dir: &MachineDir) -> Result<()> {
        qga::set_time_now(&dir.qga_socket()?, Duration::from_secs(10))
    }

    fn export_disk(&self, dir: &MachineDir, index: usize, out: &std::path::Path) -> Result<u64> {
        img::flatten(&dir.box_disk(index), out)
    }
}

/// Runs QEMU daemonized; its errors (before it detaches) become ours.
fn start_qemu(spec: &VmSpec) -> Result<()> {
    run_limited(
        Command::new(QEMU_BINARY).args(args::qemu_args(spec)),
        HELPER_LIMIT,
        &format!("cannot run {QEMU_BINARY} (install qemu-system-x86)"),
        "QEMU failed to start",
    )
    .map(drop)
}
