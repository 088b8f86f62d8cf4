//! `env provision` and `env rsync`: provisioners run again on running
//! machines (the outcome recorded in their state), with an Ansible
//! inventory of the project's running machines when a step needs one; then
//! the machine's readiness probes are waited for.

use crate::envfile::Machine;
use crate::envfile::provisioners::Action;
use crate::guest::provisioner::{self, Selection, StepReport};
use crate::guest::{ansible, readiness};
use crate::machine::project::Project;
use crate::machine::{MachineDir, Status};
use crate::ops::{Ctx, record};
use crate::util::ui;
use anyhow::Result;
use std::path::PathBuf;

/// Runs a machine's provisioners (`env provision`, and `up`), recording the
/// outcome in its state.
pub fn provision_machine(
    ctx: &Ctx,
    project: &Project,
    machine: &Machine,
    selection: &Selection,
) -> Result<Vec<StepReport>> {
    let dir = project.machine_dir(&machine.name);
    ctx.running_state(&dir)?;
    let chosen = provisioner::select(&machine.provisioners, selection)?;
    let inventory = if chosen.iter().any(|p| p.action_kind() == "ansible") {
        Some(write_inventory(ctx, project, machine)?)
    } else {
        None
    };
    let mut steps = Vec::new();
    // What the provisioners read, as they are now (a file gone: unknown).
    let digest =
        crate::machine::cache::key::provisioners_digest(machine, &project.envfile.dir).ok();
    record(&dir, "provision", |state| {
        steps = ctx.guest.provision(&dir, &chosen, inventory.as_deref())?;
        if *selection == Selection::Normal {
            state.provisioned = true;
            state.provisioned_with = digest.clone();
        }
        Ok(())
    })?;
    wait_ready(ctx, &dir, machine)?;
    Ok(steps)
}

/// Waits until the machine's readiness probes pass (none declared: at
/// once), up to its `ready_timeout`; the error names the probe that did
/// not pass.
pub fn wait_ready(ctx: &Ctx, dir: &MachineDir, machine: &Machine) -> Result<()> {
    if machine.ready.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = machine.ready.iter().map(|p| p.describe()).collect();
    let bar = ui::spinner(
        &machine.name,
        &format!("waiting until ready: {}", names.join(", ")),
    );
    let started = std::time::Instant::now();
    let script = readiness::wait_script(&machine.ready, machine.ready_timeout.as_secs());
    // The script stops itself at the timeout; the limit only catches a
    // guest that stops answering.
    let limit = machine.ready_timeout + std::time::Duration::from_secs(30);
    let out = ctx
        .guest
        .run(dir, "sudo -n sh -s", script.as_bytes(), Some(limit));
    bar.finish_and_clear();
    let out = out?;
    if !out.status.success() {
        anyhow::bail!(
            "machine `{}` is not ready: {}",
            machine.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    ui::step(
        &machine.name,
        &format!(
            "ready in {:.1} s ({})",
            started.elapsed().as_secs_f64(),
            names.join(", ")
        ),
    );
    Ok(())
}

/// Copies the rsync folders of `machines` again (`env rsync`); without
/// names, machines that are not running are skipped.
pub fn rsync(ctx: &Ctx, project: &Project, machines: &[&Machine], named: bool) -> Result<()> {
    for machine in machines {
        let dir = project.machine_dir(&machine.name);
        match ctx.running_state(&dir) {
            Ok(state) => {
                let machine = crate::ops::with_chosen_folders(machine, &state.box_dir).0;
                ctx.guest.sync_folders(&dir, &machine, &state.ssh_user)?
            }
            Err(_) if !named => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes the Ansible inventory of the project's running machines (with the
/// groups of `machine`'s ansible provisioners) to `.envstate/ansible/`.
fn write_inventory(ctx: &Ctx, project: &Project, machine: &Machine) -> Result<PathBuf> {
    let mut hosts = Vec::new();
    for m in &project.envfile.machines {
        let dir = project.machine_dir(&m.name);
        if let (Status::Running, Some(state)) = (ctx.status(&dir)?, dir.load_state()?)
            && dir.ssh_config().exists()
        {
            hosts.push(ansible::Host {
                name: m.name.clone(),
                user: state.ssh_user,
                ssh_config: dir.ssh_config(),
            });
        }
    }
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for p in &machine.provisioners {
        if let Action::Ansible { groups: g, .. } = &p.action {
            for (name, members) in g {
                if !groups.iter().any(|(n, _)| n == name) {
                    groups.push((name.clone(), members.clone()));
                }
            }
        }
    }
    let folder = project.state_dir.join("ansible");
    std::fs::create_dir_all(&folder)?;
    // One file per machine: machines provisioning in parallel do not race.
    let path = folder.join(format!("{}.ini", machine.name));
    crate::util::fs::write_atomic(&path, ansible::render_inventory(&hosts, &groups).as_bytes())?;
    Ok(path)
}
