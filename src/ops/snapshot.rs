//! Snapshots: rewinding a machine instead of rebuilding it. A running
//! machine is snapshotted with its VM state, so a restore resumes in about
//! a second without a boot; a halted one disks only. Which disks a snapshot
//! covers is decided here; how is the backend's (QEMU: internal qcow2
//! snapshots, through QMP jobs while it runs, `qemu-img` while it does not).

use crate::backend::{DiskRef, SnapshotInfo, SnapshotOp};
use crate::boxes::Store;
use crate::envfile::Machine;
use crate::machine::project::Project;
use crate::machine::{MachineDir, Status};
use crate::ops::coverage::{Coverage, plan};
use crate::ops::{Ctx, down, up};
use crate::util::ui;
use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant, SystemTime};

/// Names `env snapshot push` gives, so `pop` finds them again.
const PUSH_PREFIX: &str = "push-";

/// How long the guest's `sync` before a live snapshot may take.
const SYNC_LIMIT: Duration = Duration::from_secs(60);

/// Checks a snapshot name: QEMU looks snapshots up by name or by numeric
/// id, so an all-digit name could mean another snapshot.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 100 {
        bail!("a snapshot name needs 1 to 100 characters");
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        bail!("snapshot name `{name}` is all digits: QEMU would take it for a snapshot id");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '@')))
    {
        bail!("snapshot name `{name}` has `{c}`: use letters, digits and - _ . + @");
    }
    Ok(())
}

/// The name `push` gives a snapshot taken at `time`: sortable, unique per second.
pub fn push_name(time: SystemTime) -> String {
    format!("{PUSH_PREFIX}{}", crate::ops::logs::run_name(time))
}

/// The snapshot `pop` returns to: the newest pushed one.
pub fn newest_pushed(list: &[SnapshotInfo]) -> Option<&SnapshotInfo> {
    list.iter()
        .filter(|s| s.name.starts_with(PUSH_PREFIX))
        .max_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)))
}

/// The snapshots of a machine (those of its root disk).
pub fn list(ctx: &Ctx, dir: &MachineDir) -> Result<Vec<SnapshotInfo>> {
    if ctx.status(dir)? == Status::NotCreated {
        bail!(
            "machine `{}` is not created: `env up {}` first",
            dir.name,
            dir.name
        );
    }
    ctx.backend.snapshots(dir, DiskRef::Box(0))
}

/// What a snapshot of `machine` covers.
fn coverage<'a>(
    ctx: &Ctx,
    dir: &MachineDir,
    machine: &'a Machine,
    include_kept: bool,
) -> Coverage<'a> {
    plan(
        ctx.backend.box_disk_count(dir),
        &machine.disks,
        include_kept,
    )
}

/// Whether the machine runs (a live snapshot) or not (disks only); an
/// error when it was never created.
fn is_running(ctx: &Ctx, dir: &MachineDir) -> Result<bool> {
    match ctx.status(dir)? {
        Status::Running => Ok(true),
        Status::Halted | Status::Died => Ok(false),
        Status::Suspended => bail!(
            "machine `{}` is suspended: `env resume {}` it, or `env halt {}` to discard its saved state, first",
            dir.name,
            dir.name,
            dir.name
        ),
        Status::NotCreated => bail!(
            "machine `{}` is not created: `env up {}` first",
            dir.name,
            dir.name
        ),
    }
}

fn labels(disks: &[DiskRef<'_>]) -> String {
    disks
        .iter()
        .map(|d| d.label())
        .collect::<Vec<_>>()
        .join(", ")
}

fn report_left_out(name: &str, plan: &Coverage<'_>) {
    for l in &plan.left_out {
        ui::step(
            name,
            &format!("left out data disk `{}`: {}", l.disk, l.reason),
        );
    }
}

/// A snapshot operation on a running machine, named in its error.
fn live(
    ctx: &Ctx,
    dir: &MachineDir,
    op: SnapshotOp,
    tag: &str,
    disks: &[DiskRef<'_>],
) -> Result<()> {
    let verb = match op {
        SnapshotOp::Save => "save",
        SnapshotOp::Load => "restore",
        SnapshotOp::Delete => "delete",
    };
    ctx.backend
        .snapshot(dir, op, tag, disks, true)
        .with_context(|| format!("cannot {verb} snapshot `{tag}` of `{}`", dir.name))
}

/// Saves snapshot `tag` of a machine. Refuses a name in use. On a halted
/// machine a failure part way removes what was made, so no disk is left
/// with a snapshot the others lack.
pub fn save(
    ctx: &Ctx,
    project: &Project,
    machine: &Machine,
    tag: &str,
    include_kept: bool,
) -> Result<()> {
    let dir = &project.machine_dir(&machine.name);
    check_name(tag)?;
    let running = is_running(ctx, dir)?;
    let plan = coverage(ctx, dir, machine, include_kept);
    for disk in &plan.disks {
        if ctx
            .backend
            .snapshots(dir, *disk)?
            .iter()
            .any(|s| s.name == tag)
        {
            bail!(
                "machine `{}` already has a snapshot `{tag}` (on its {}): delete it first \
                 (`env snapshot delete {} {tag}`)",
                dir.name,
                disk.label(),
                dir.name
            );
        }
    }
    let started = Instant::now();
    if running {
        let machine = crate::ops::created_machine(machine, dir);
        if machine.folders.iter().any(|f| f.kind.is_live()) {
            bail!(
                "machine `{}` shares 9p or virtiofs folders, and QEMU cannot save a VM state \
                 while one is attached: halt it for a disk-only snapshot, or use type = \"rsync\" folders",
                dir.name
            );
        }
        // The disks alone must hold what the guest wrote: a restore that
        // boots (left-out disks) sees the disks, not the saved memory.
        let synced = ctx.guest.run(dir, "sync", &[], Some(SYNC_LIMIT));
        if let Some(problem) = match synced {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_string()),
            Err(e) => Some(format!("{e:#}")),
        } {
            ui::step(
                &dir.name,
                &format!("could not sync the guest's disks: {problem}"),
            );
        }
        live(ctx, dir, SnapshotOp::Save, tag, &plan.disks)?;
    } else {
        // One call for every disk: a backend whose snapshots are the
        // machine's (libvirt) takes it at once; a failure part way is the
        // backend's to undo.
        ctx.backend
            .snapshot(dir, SnapshotOp::Save, tag, &plan.disks, false)?;
    }
    let what = if running {
        " and VM state"
    } else {
        "; disks only"
    };
    step_done(
        dir,
        "saved",
        tag,
        &format!("{}{what}", labels(&plan.disks)),
        started,
        "",
    );
    report_left_out(&dir.name, &plan);
    Ok(())
}

/// Returns a machine to snapshot `tag`. A running machine resumes from the
/// snapshot's VM state (or, for a disk-only snapshot, stops: it must boot
/// from the rewound disks); a halted machine's disks are rewound and its
/// next `env up` boots from them.
pub fn restore(
    ctx: &Ctx,
    project: &Project,
    machine: &Machine,
    tag: &str,
    include_kept: bool,
) -> Result<()> {
    let dir = &project.machine_dir(&machine.name);
    let running = is_running(ctx, dir)?;
    let plan = coverage(ctx, dir, machine, include_kept);
    let mut with_state = false;
    for disk in &plan.disks {
        let found = ctx
            .backend
            .snapshots(dir, *disk)?
            .into_iter()
            .find(|s| s.name == tag);
        match found {
            Some(s) => with_state |= s.vm_state_bytes > 0,
            None => bail!(
                "machine `{}` has no snapshot `{tag}` on its {} (`env snapshot list {}`)",
                dir.name,
                disk.label(),
                dir.name
            ),
        }
    }
    if running && !with_state {
        bail!(
            "snapshot `{tag}` of `{}` holds disks only (taken while halted): \
             `env halt {}` first, then restore it",
            dir.name,
            dir.name
        );
    }
    let started = Instant::now();
    if running && !plan.left_out.is_empty() {
        // The guest's memory would go back in time but the left-out disks
        // would not: its page cache and mounted filesystems would disagree
        // with them. Rewind the disks and boot instead.
        ui::step(
            &dir.name,
            "data disks are left out, and resuming a VM state without them would leave \
             their filesystems inconsistent: halting, rewinding the disks and booting instead",
        );
        report_left_out(&dir.name, &plan);
        down::halt(ctx, project, &machine.name, false)?;
        ctx.backend
            .snapshot(dir, SnapshotOp::Load, tag, &plan.disks, false)?;
        let options = up::UpOptions {
            accel: None,
            provision: Some(false),
            cache: up::CacheMode::Off,
        };
        up::up(ctx, project, machine, &Store::open()?, &options)?;
        step_done(
            dir,
            "restored",
            tag,
            &labels(&plan.disks),
            started,
            ", booted",
        );
        return Ok(());
    }
    if running {
        // The guest's TCP state goes back in time: the master connection
        // cannot survive it, nor can the journal stream's (it restarts
        // from now).
        ctx.guest.disconnect(dir);
        ctx.guest.stop_journal(dir);
        ctx.guest.stop_port_watch(dir);
        live(ctx, dir, SnapshotOp::Load, tag, &plan.disks)?;
        ctx.backend.set_guest_clock(dir).with_context(|| {
            format!(
                "machine `{}` was restored, but setting its clock failed",
                dir.name
            )
        })?;
        if project.envfile.logs_forward {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            up::start_journal(ctx, dir, Some(now.as_secs()));
        }
        up::start_port_watch(ctx, dir, &crate::ops::created_machine(machine, dir));
        step_done(
            dir,
            "restored",
            tag,
            &labels(&plan.disks),
            started,
            ": resumed where it was saved",
        );
    } else {
        ctx.backend
            .snapshot(dir, SnapshotOp::Load, tag, &plan.disks, false)?;
        step_done(
            dir,
            "restored",
            tag,
            &labels(&plan.disks),
            started,
            ": the next `env up` boots from it",
        );
        report_left_out(&dir.name, &plan);
    }
    Ok(())
}

/// Deletes snapshot `tag` from every disk of the machine that holds it
/// (kept disks included when `include_kept`).
pub fn delete(
    ctx: &Ctx,
    project: &Project,
    machine: &Machine,
    tag: &str,
    include_kept: bool,
) -> Result<()> {
    let dir = &project.machine_dir(&machine.name);
    let running = is_running(ctx, dir)?;
    let plan = coverage(ctx, dir, machine, include_kept);
    let mut holders = Vec::new();
    for disk in plan.disks {
        if ctx
            .backend
            .snapshots(dir, disk)?
            .iter()
            .any(|s| s.name == tag)
        {
            holders.push(disk);
        }
    }
    if holders.is_empty() {
        bail!(
            "machine `{}` has no snapshot `{tag}` (`env snapshot list {}`)",
            dir.name,
            dir.name
        );
    }
    if running {
        live(ctx, dir, SnapshotOp::Delete, tag, &holders)?;
    } else {
        ctx.backend
            .snapshot(dir, SnapshotOp::Delete, tag, &holders, false)?;
    }
    ui::step(
        &dir.name,
        &format!("deleted snapshot `{tag}` ({})", labels(&holders)),
    );
    Ok(())
}

/// Saves a snapshot under a fresh `push-TIME` name; returns it.
pub fn push(ctx: &Ctx, project: &Project, machine: &Machine, include_kept: bool) -> Result<String> {
    let dir = &project.machine_dir(&machine.name);
    let existing = list(ctx, dir)?;
    let base = push_name(SystemTime::now());
    let mut tag = base.clone();
    // Two pushes within a second.
    for n in 2.. {
        if !existing.iter().any(|s| s.name == tag) {
            break;
        }
        tag = format!("{base}-{n}");
    }
    save(ctx, project, machine, &tag, include_kept)?;
    Ok(tag)
}

/// Restores the newest pushed snapshot and, unless `keep`, deletes it.
pub fn pop(
    ctx: &Ctx,
    project: &Project,
    machine: &Machine,
    include_kept: bool,
    keep: bool,
) -> Result<()> {
    let dir = &project.machine_dir(&machine.name);
    let list = list(ctx, dir)?;
    let Some(newest) = newest_pushed(&list) else {
        bail!(
            "machine `{}` has no pushed snapshot (`env snapshot push` makes one)",
            dir.name
        );
    };
    let tag = newest.name.clone();
    restore(ctx, project, machine, &tag, include_kept)?;
    if !keep {
        delete(ctx, project, machine, &tag, include_kept)?;
    }
    Ok(())
}

/// Says a snapshot step is done: `VERB snapshot `TAG` (DISKS) in N s`, then
/// `after`.
fn step_done(dir: &MachineDir, verb: &str, tag: &str, disks: &str, started: Instant, after: &str) {
    ui::step(
        &dir.name,
        &format!(
            "{verb} snapshot `{tag}` ({disks}) in {:.1} s{after}",
            started.elapsed().as_secs_f64()
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn names_are_checked() {
        for good in [
            "clean",
            "before-upgrade",
            "v1.2_ok",
            "push-20261126T220000Z",
        ] {
            check_name(good).unwrap();
        }
        for bad in ["", "12", "has space", "a/b", "x;y", &"n".repeat(101)] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_name("12").unwrap_err().to_string().contains("id"));
    }

    #[test]
    fn pop_takes_the_newest_pushed_snapshot() {
        let snap = |name: &str, created| SnapshotInfo {
            name: name.into(),
            vm_state_bytes: 1,
            created,
            guest_uptime_secs: 0,
        };
        let list = [
            snap("push-20261126T100000Z", 10),
            snap("clean", 30),
            snap("push-20261126T100005Z", 15),
        ];
        assert_eq!(newest_pushed(&list).unwrap().name, "push-20261126T100005Z");
        assert!(newest_pushed(&list[1..2]).is_none());
        let name = push_name(UNIX_EPOCH + Duration::from_secs(1_795_730_854));
        assert!(name.starts_with("push-2026"), "{name}");
        check_name(&name).unwrap();
    }
}
