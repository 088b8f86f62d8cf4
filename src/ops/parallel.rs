//! `env up` of several machines at once: boots bounded by `--parallel`,
//! provisioning ordered by `depends_on`, a failure stopping the others' later
//! steps, and every failure reported.

use crate::boxes::Store;
use crate::envfile::Machine;
use crate::machine::Status;
use crate::machine::project::Project;
use crate::ops::Ctx;
use crate::ops::up::{self as lifecycle, UpOptions};
use anyhow::{Result, bail};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

/// How a machine's `up` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineOutcome {
    /// Up and provisioned.
    Up,
    /// It failed, with this error.
    Failed(String),
    /// Not done because another machine failed.
    Skipped(String),
}

/// A counting semaphore for boots.
struct Slots {
    free: Mutex<usize>,
    changed: Condvar,
}

impl Slots {
    fn take(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.changed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.changed.notify_all();
    }
}

/// Checks that machines outside the selection that selected ones depend on
/// are running (they will not be brought up by this command).
pub fn check_outside_dependencies(
    ctx: &Ctx,
    project: &Project,
    machines: &[&Machine],
) -> Result<()> {
    for m in machines {
        for dep in &m.depends_on {
            if machines.iter().any(|o| &o.name == dep) {
                continue;
            }
            if ctx.status(&project.machine_dir(dep))? != Status::Running {
                bail!(
                    "machine `{}` depends on `{dep}`, which is not running: `env up {dep} {}`",
                    m.name,
                    m.name
                );
            }
        }
    }
    Ok(())
}

/// Brings `machines` up, at most `parallel` booting at once.
pub fn up_all(
    ctx: &Ctx,
    project: &Project,
    machines: &[&Machine],
    store: &Store,
    options: &UpOptions,
    parallel: usize,
) -> Result<()> {
    check_outside_dependencies(ctx, project, machines)?;
    if machines.len() == 1 || parallel <= 1 && machines.iter().all(|m| m.depends_on.is_empty()) {
        for m in machines {
            lifecycle::up(ctx, project, m, store, options)?;
        }
        return Ok(());
    }
    let slots = Slots {
        free: Mutex::new(parallel.max(1)),
        changed: Condvar::new(),
    };
    let outcomes: Mutex<HashMap<String, MachineOutcome>> = Mutex::new(HashMap::new());
    let settled = Condvar::new();
    let failed = AtomicBool::new(false);

    std::thread::scope(|scope| {
        for &m in machines {
            let (slots, outcomes, settled, failed) = (&slots, &outcomes, &settled, &failed);
            scope.spawn(move || {
                let outcome = run_machine(
                    ctx, project, m, store, options, machines, slots, outcomes, settled, failed,
                );
                if matches!(outcome, MachineOutcome::Failed(_)) {
                    failed.store(true, Ordering::SeqCst);
                }
                outcomes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(m.name.clone(), outcome);
                settled.notify_all();
            });
        }
    });

    let outcomes = outcomes.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut problems = Vec::new();
    for m in machines {
        match outcomes.get(&m.name) {
            Some(MachineOutcome::Failed(e)) => problems.push(format!("{}: {e}", m.name)),
            Some(MachineOutcome::Skipped(why)) => {
                problems.push(format!("{}: not finished: {why}", m.name))
            }
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!(
            "{} of {} machines did not come up:\n{}",
            problems.len(),
            machines.len(),
            problems.join("\n")
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn run_machine(
    ctx: &Ctx,
    project: &Project,
    m: &Machine,
    store: &Store,
    options: &UpOptions,
    selected: &[&Machine],
    slots: &Slots,
    outcomes: &Mutex<HashMap<String, MachineOutcome>>,
    settled: &Condvar,
    failed: &AtomicBool,
) -> MachineOutcome {
    let booted = {
        let _slot = slots.take();
        if failed.load(Ordering::SeqCst) {
            return MachineOutcome::Skipped("another machine failed".into());
        }
        match lifecycle::up_boot(ctx, project, m, store, options) {
            Ok(b) => b,
            Err(e) => return MachineOutcome::Failed(format!("{e:#}")),
        }
    };
    // Wait for the machines this one depends on (within this command).
    let deps: Vec<&String> = m
        .depends_on
        .iter()
        .filter(|d| selected.iter().any(|s| &&s.name == d))
        .collect();
    let mut done = outcomes.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(dep) = deps.iter().find(|d| {
            matches!(
                done.get(d.as_str()),
                Some(MachineOutcome::Failed(_) | MachineOutcome::Skipped(_))
            )
        }) {
            return MachineOutcome::Skipped(format!(
                "machine `{dep}` it depends on did not come up"
            ));
        }
        if deps
            .iter()
            .all(|d| done.get(d.as_str()) == Some(&MachineOutcome::Up))
        {
            break;
        }
        done = settled.wait(done).unwrap_or_else(|e| e.into_inner());
    }
    drop(done);
    if failed.load(Ordering::SeqCst) {
        return MachineOutcome::Skipped("another machine failed".into());
    }
    match lifecycle::up_provision(ctx, project, m, store, options, booted) {
        Ok(()) => MachineOutcome::Up,
        Err(e) => MachineOutcome::Failed(format!("{e:#}")),
    }
}
