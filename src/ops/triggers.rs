//! Firing `[[triggers]]` around the commands that act on machines: host
//! commands run by `sh -c` in the project folder (output logged to
//! `.envstate/triggers.log`), guest scripts run as root like a shell
//! provisioner (logged to the machine's provision log). A failure stops the
//! command unless the trigger says `on_error = "continue"`.

use crate::envfile::Machine;
use crate::envfile::provisioners::{Action, Provisioner, RunWhen, Script};
use crate::envfile::triggers::{OnError, Trigger, TriggerAction, When};
use crate::guest::provisioner::{Log, run_host};
use crate::machine::Status;
use crate::machine::project::Project;
use crate::ops::Ctx;
use crate::util::ui;
use anyhow::{Context, Result};
use std::process::Command;

/// The host log of the project's triggers.
pub fn log_path(project: &Project) -> std::path::PathBuf {
    project.state_dir.join("triggers.log")
}

/// Runs `body` between the `before` and `after` triggers of `action` for
/// `machines` (the after ones only when it succeeded).
pub fn around<T>(
    ctx: &Ctx,
    project: &Project,
    machines: &[&Machine],
    action: TriggerAction,
    body: impl FnOnce() -> Result<T>,
) -> Result<T> {
    fire(ctx, project, machines, action, When::Before)?;
    let done = body()?;
    fire(ctx, project, machines, action, When::After)?;
    Ok(done)
}

/// Runs the triggers of `action` at `when` for each of `machines`, in the
/// Envfile's order.
pub fn fire(
    ctx: &Ctx,
    project: &Project,
    machines: &[&Machine],
    action: TriggerAction,
    when: When,
) -> Result<()> {
    for machine in machines {
        for trigger in project
            .envfile
            .triggers
            .iter()
            .filter(|t| t.fires(action, when, &machine.name))
        {
            let moment = format!("{} {}", when_word(when), action.word());
            let result = run_one(ctx, project, machine, trigger, action, when, &moment)
                .with_context(|| {
                    format!(
                        "trigger `{}` ({moment}) failed on `{}`",
                        trigger.name, machine.name
                    )
                });
            match (result, trigger.on_error) {
                (Ok(()), _) => {}
                (Err(e), OnError::Halt) => return Err(e),
                (Err(e), OnError::Continue) => ui::step(
                    &machine.name,
                    &format!("{e:#} (on_error = \"continue\": going on)"),
                ),
            }
        }
    }
    Ok(())
}

fn when_word(when: When) -> &'static str {
    match when {
        When::Before => "before",
        When::After => "after",
    }
}

/// What a trigger's commands are told: the machine, the command, when.
fn variables(machine: &str, action: TriggerAction, when: When) -> Vec<(String, String)> {
    vec![
        ("ENV_MACHINE".into(), machine.into()),
        ("ENV_TRIGGER_ACTION".into(), action.word().into()),
        ("ENV_TRIGGER_WHEN".into(), when_word(when).into()),
    ]
}

fn run_one(
    ctx: &Ctx,
    project: &Project,
    machine: &Machine,
    trigger: &Trigger,
    action: TriggerAction,
    when: When,
    moment: &str,
) -> Result<()> {
    ui::step(
        &machine.name,
        &format!(
            "trigger `{}` ({moment}){}",
            trigger.name,
            trigger
                .info
                .as_deref()
                .map(|i| format!(": {i}"))
                .unwrap_or_default()
        ),
    );
    let vars = variables(&machine.name, action, when);
    if let Some(command) = &trigger.run {
        std::fs::create_dir_all(&project.state_dir)
            .with_context(|| format!("cannot create {}", project.state_dir.display()))?;
        let log = Log::open_at(&log_path(project))?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .current_dir(&project.envfile.dir)
            .env("ENV_PROJECT_DIR", &project.envfile.dir)
            .envs(vars.iter().map(|(k, v)| (k, v)));
        run_host(
            cmd,
            &machine.name,
            &format!("trigger `{}` (host command)", trigger.name),
            &log,
        )?;
    }
    if let Some(script) = &trigger.run_remote {
        let dir = project.machine_dir(&machine.name);
        if ctx.status(&dir)? != Status::Running {
            ui::step(
                &machine.name,
                &format!(
                    "trigger `{}`: the machine is not running, its guest script is skipped",
                    trigger.name
                ),
            );
            return Ok(());
        }
        ctx.running_state(&dir)?;
        let step = Provisioner {
            name: format!("trigger:{}", trigger.name),
            run: RunWhen::Never,
            action: Action::Shell {
                script: Script::Inline(script.clone()),
                args: Vec::new(),
                env: vars,
                privileged: true,
                changed_exit_code: None,
            },
        };
        ctx.guest.provision(&dir, &[&step], None)?;
    }
    Ok(())
}
