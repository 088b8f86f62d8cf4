//! `env halt` and `env destroy`: a machine stopped (the guest asked first,
//! then the backend made to), or removed with its disks and state, logs
//! archived. Both succeed on a machine that is already gone.

use crate::boxes::Store;
use crate::machine::Status;
use crate::machine::project::Project;
use crate::ops::Ctx;
use crate::util::ui;
use anyhow::{Context, Result};
use std::time::{Duration, Instant};

/// How long a guest gets to power off after the ACPI button.
pub const POWERDOWN_GRACE: Duration = Duration::from_secs(30);

/// Halts a machine: ACPI power-down (unless `force`), then the backend stops
/// it (QEMU: QMP `quit`, then SIGKILL).
pub fn halt(ctx: &Ctx, project: &Project, name: &str, force: bool) -> Result<()> {
    let dir = project.machine_dir(name);
    let status = ctx.status(&dir)?;
    let Some(mut state) = dir.load_state()? else {
        ui::step(name, "not created");
        return Ok(());
    };
    ctx.guest.stop_journal(&dir);
    ctx.guest.stop_port_watch(&dir);
    if status == Status::Running {
        let started = Instant::now();
        ctx.guest.disconnect(&dir);
        let graceful = !force && ctx.backend.power_off(&dir, POWERDOWN_GRACE);
        if !graceful {
            if !force {
                ui::step(name, "the guest did not power off: stopping it");
            }
            ctx.backend.stop(&dir);
        }
        ui::step(
            name,
            &format!("halted in {:.1} s", started.elapsed().as_secs_f64()),
        );
    } else if status == Status::Suspended {
        let machine = crate::ops::created_machine(project.one(Some(name))?, &dir);
        crate::ops::suspend::discard(ctx, &dir, &machine)?;
        state = dir.load_state()?.context("machine state vanished")?;
        ui::step(
            name,
            "saved state discarded: halted (its next `env up` boots)",
        );
    } else {
        ui::step(name, "already halted");
    }
    state.running = false;
    state.last_action = "halt".into();
    state.last_error = None;
    dir.save_state(&state)
}

/// Destroys a machine: stopped at once, disks and state removed, logs
/// archived. Succeeds when the machine is already gone or was killed by
/// hand.
pub fn destroy(
    ctx: &Ctx,
    project: &Project,
    name: &str,
    store: &Store,
    purge_disks: bool,
) -> Result<()> {
    let dir = project.machine_dir(name);
    let kept = dir.kept_disks_dir();
    if purge_disks && kept.exists() {
        std::fs::remove_dir_all(&kept)
            .with_context(|| format!("cannot remove {}", kept.display()))?;
        ui::step(name, &format!("kept disks removed ({})", kept.display()));
    } else if kept.exists() {
        ui::step(
            name,
            &format!(
                "kept disks stay in {} (`env destroy --purge-disks` removes them)",
                kept.display()
            ),
        );
    }
    if !dir.root.exists() {
        ui::step(name, "not created");
        return Ok(());
    }
    ctx.guest.stop_journal(&dir);
    ctx.guest.stop_port_watch(&dir);
    ctx.guest.disconnect(&dir);
    ctx.backend.remove(&dir);
    if matches!(ctx.status(&dir), Ok(Status::Suspended))
        && let Ok(machine) = project.one(Some(name))
    {
        // Kept disks outlive the machine: not with its saved state in them.
        let machine = crate::ops::created_machine(machine, &dir);
        if let Err(e) = crate::ops::suspend::discard(ctx, &dir, &machine) {
            ui::step(name, &format!("{e:#}"));
        }
    }
    let state = dir.load_state().ok().flatten();
    if let Some(run) =
        crate::ops::logs::archive(&project.state_dir, &dir, project.envfile.logs_keep)?
    {
        ui::step(name, &format!("logs kept in {}", run.display()));
    }
    // Rename first: a destroy cut short never leaves a half-removed machine
    // that looks created.
    let trash = tempfile::Builder::new()
        .prefix(&format!(".destroying-{name}-"))
        .tempdir_in(dir.root.parent().context("state folder has no parent")?)?;
    std::fs::rename(&dir.root, trash.path().join("m"))
        .with_context(|| format!("cannot remove {}", dir.root.display()))?;
    if let Some(state) = state {
        store.remove_user(&state.box_name, &state.box_version, &dir.root);
    }
    drop(trash);
    ui::step(name, "destroyed");
    Ok(())
}
