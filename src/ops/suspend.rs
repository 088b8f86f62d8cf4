//! `env suspend` and `env resume`: a running machine's memory saved to its
//! disks and its hypervisor stopped, then started again where it was,
//! without a boot. The saved state is a live snapshot named
//! [`SUSPEND_TAG`] on every disk (the same kind `env snapshot save` takes,
//! so the same limits hold: no 9p or virtiofs folder attached, no raw data
//! disk); resuming starts the hypervisor from it, sets the guest's clock
//! and deletes it. `env halt` of a suspended machine discards it.

use crate::backend::{DiskRef, SnapshotOp};
use crate::envfile::Machine;
use crate::machine::project::Project;
use crate::machine::{MachineDir, Status};
use crate::ops::coverage::plan;
use crate::ops::{Ctx, record};
use crate::util::ui;
use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};

/// The snapshot holding a suspended machine's state.
pub const SUSPEND_TAG: &str = "env-suspend";

/// How long the guest's `sync` before suspending may take.
const SYNC_LIMIT: Duration = Duration::from_secs(60);

/// Why a machine cannot be suspended, if it cannot.
pub fn not_suspendable(machine: &Machine) -> Option<String> {
    if machine.folders.iter().any(|f| f.kind.is_live()) {
        return Some(
            "it shares 9p or virtiofs folders, and QEMU cannot save a VM state while one \
             is attached: `env halt` it instead, or use type = \"rsync\" folders"
                .into(),
        );
    }
    let coverage = plan(1, &machine.disks, true);
    coverage.left_out.first().map(|l| {
        format!(
            "its data disk `{}` is a raw image, which cannot hold the saved state: \
             `env halt` it instead, or use format = \"qcow2\"",
            l.disk
        )
    })
}

/// The disks that hold (or will hold) the saved state: every one the
/// machine has.
fn disks<'a>(ctx: &Ctx, dir: &MachineDir, machine: &'a Machine) -> Vec<DiskRef<'a>> {
    plan(ctx.backend.box_disk_count(dir), &machine.disks, true).disks
}

/// Suspends a running machine: its disks synced, its memory saved, its
/// hypervisor stopped. A machine already suspended is left as it is.
pub fn suspend(ctx: &Ctx, project: &Project, machine: &Machine) -> Result<()> {
    let dir = &project.machine_dir(&machine.name);
    match ctx.status(dir)? {
        Status::Running => {}
        Status::Suspended => {
            ui::step(&machine.name, "already suspended");
            return Ok(());
        }
        Status::NotCreated => bail!(
            "machine `{}` is not created: `env up {}` first",
            machine.name,
            machine.name
        ),
        Status::Halted | Status::Died => bail!(
            "machine `{}` is not running: there is nothing to suspend",
            machine.name
        ),
    }
    let machine = crate::ops::created_machine(machine, dir);
    if let Some(why) = not_suspendable(&machine) {
        bail!("machine `{}` cannot be suspended: {why}", machine.name);
    }
    let started = Instant::now();
    // The disks should hold what the guest wrote even if the saved state is
    // discarded later (`env halt` of a suspended machine).
    if let Err(e) = ctx.guest.run(dir, "sync", &[], Some(SYNC_LIMIT)) {
        ui::step(
            &machine.name,
            &format!("could not sync the guest's disks: {e:#}"),
        );
    }
    let disks = disks(ctx, dir, &machine);
    record(dir, "suspend", |state| {
        ctx.backend
            .snapshot(dir, SnapshotOp::Save, SUSPEND_TAG, &disks, true)
            .with_context(|| format!("cannot save the state of `{}`", machine.name))?;
        ctx.guest.stop_journal(dir);
        ctx.guest.stop_port_watch(dir);
        ctx.guest.disconnect(dir);
        ctx.backend.stop(dir);
        state.running = false;
        state.suspended = true;
        Ok(())
    })?;
    ui::step(
        &machine.name,
        &format!(
            "suspended in {:.1} s (`env resume` or `env up` starts it where it was)",
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

/// After the hypervisor started from the saved state: the guest's clock
/// set, the saved state deleted (the running machine has it in memory),
/// the machine no longer suspended.
pub fn resumed(ctx: &Ctx, dir: &MachineDir, machine: &Machine) -> Result<()> {
    ctx.backend.set_guest_clock(dir).with_context(|| {
        format!(
            "machine `{}` resumed, but setting its clock failed",
            machine.name
        )
    })?;
    let disks = disks(ctx, dir, machine);
    record(dir, "resume", |state| {
        ctx.backend
            .snapshot(dir, SnapshotOp::Delete, SUSPEND_TAG, &disks, true)
            .with_context(|| format!("cannot delete the saved state of `{}`", machine.name))?;
        state.suspended = false;
        Ok(())
    })
}

/// Throws a suspended machine's saved state away: its disks keep what was
/// synced when it was suspended, and its next `env up` boots. Disks that
/// do not hold the state (it was never saved there) are left alone.
pub fn discard(ctx: &Ctx, dir: &MachineDir, machine: &Machine) -> Result<()> {
    let mut holders = Vec::new();
    for disk in disks(ctx, dir, machine) {
        if ctx
            .backend
            .snapshots(dir, disk)
            .is_ok_and(|list| list.iter().any(|s| s.name == SUSPEND_TAG))
        {
            holders.push(disk);
        }
    }
    if !holders.is_empty() {
        ctx.backend
            .snapshot(dir, SnapshotOp::Delete, SUSPEND_TAG, &holders, false)
            .with_context(|| format!("cannot discard the saved state of `{}`", machine.name))?;
    }
    record(dir, "halt", |state| {
        state.suspended = false;
        Ok(())
    })
}
