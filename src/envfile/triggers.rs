//! `[[triggers]]`: host commands or guest scripts run before or after a
//! command acts on a machine (Vagrant's triggers): `up`, `provision`,
//! `halt`, `destroy`, `reload`, `suspend`, `resume`, `snapshot`.

use super::EnvfileError;
use super::error::{Step, entry_field_error, error_at};
use serde::Deserialize;
use std::path::Path;

/// Before or after the command's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum When {
    /// Before it (a failure stops the command unless `on_error = "continue"`).
    Before,
    /// After it succeeded.
    After,
}

/// The commands a trigger can follow or precede.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerAction {
    /// `env up`.
    Up,
    /// `env provision`.
    Provision,
    /// `env halt`.
    Halt,
    /// `env destroy`.
    Destroy,
    /// `env reload`.
    Reload,
    /// `env suspend`.
    Suspend,
    /// `env resume`.
    Resume,
    /// `env snapshot save|restore|delete|push|pop`.
    Snapshot,
}

impl TriggerAction {
    /// The command's word, as messages and `ENV_TRIGGER_ACTION` say it.
    pub fn word(self) -> &'static str {
        match self {
            TriggerAction::Up => "up",
            TriggerAction::Provision => "provision",
            TriggerAction::Halt => "halt",
            TriggerAction::Destroy => "destroy",
            TriggerAction::Reload => "reload",
            TriggerAction::Suspend => "suspend",
            TriggerAction::Resume => "resume",
            TriggerAction::Snapshot => "snapshot",
        }
    }
}

/// What a failing trigger does to its command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// The command stops with the trigger's error (Vagrant's `:halt`).
    #[default]
    Halt,
    /// The failure is said and the command goes on.
    Continue,
}

/// A trigger as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    /// Its name in messages and logs (default `trigger N`).
    pub name: Option<String>,
    /// `before` or `after`.
    pub when: When,
    /// The commands it goes with.
    pub on: Vec<TriggerAction>,
    /// The machines it runs for (default: every machine the command acts on).
    pub machines: Option<Vec<String>>,
    /// A message printed when it fires.
    pub info: Option<String>,
    /// A host command (`sh -c`, in the project folder).
    pub run: Option<String>,
    /// A script run in the guest as root, like a shell provisioner.
    pub run_remote: Option<String>,
    /// `halt` (default) or `continue`.
    #[serde(default)]
    pub on_error: OnError,
}

/// A trigger, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// Its name.
    pub name: String,
    /// Before or after.
    pub when: When,
    /// The commands it goes with.
    pub on: Vec<TriggerAction>,
    /// The machines it runs for (`None`: all).
    pub machines: Option<Vec<String>>,
    /// Message printed when it fires.
    pub info: Option<String>,
    /// Host command.
    pub run: Option<String>,
    /// Guest script.
    pub run_remote: Option<String>,
    /// What a failure does.
    pub on_error: OnError,
}

impl Trigger {
    /// Whether it fires for `machine` at this point of `action`.
    pub fn fires(&self, action: TriggerAction, when: When, machine: &str) -> bool {
        self.when == when
            && self.on.contains(&action)
            && self
                .machines
                .as_ref()
                .is_none_or(|m| m.iter().any(|n| n == machine))
    }
}

/// Checks `[[triggers]]` against the machines the Envfile defines.
pub fn resolve(
    file: &Path,
    text: &str,
    raw: &[RawTrigger],
    machine_names: &[&str],
) -> (Vec<Trigger>, Vec<EnvfileError>) {
    let at = [Step::Key("triggers".into())];
    let (mut triggers, mut problems) = (Vec::new(), Vec::new());
    for (i, t) in raw.iter().enumerate() {
        let fail =
            |field: &str, message: String| entry_field_error(file, text, &at, i, field, message);
        if t.run.is_none() && t.run_remote.is_none() {
            problems.push(error_at(
                file,
                text,
                &[Step::Key("triggers".into()), Step::Index(i)],
                "a trigger needs something to run: `run = \"host command\"` or `run_remote = \"guest script\"`".into(),
            ));
            continue;
        }
        if t.on.is_empty() {
            problems.push(fail(
                "on",
                "name the commands it goes with (`on = [\"up\", \"provision\"]`)".into(),
            ));
            continue;
        }
        if let Some(unknown) = t
            .machines
            .iter()
            .flatten()
            .find(|m| !machine_names.contains(&m.as_str()))
        {
            problems.push(fail(
                "machines",
                format!(
                    "no machine `{unknown}` in this Envfile (there are: {})",
                    machine_names.join(", ")
                ),
            ));
            continue;
        }
        // After these the machine no longer runs: no guest to run in.
        let gone = [
            TriggerAction::Halt,
            TriggerAction::Destroy,
            TriggerAction::Suspend,
        ];
        if let (Some(_), When::After, Some(action)) = (
            &t.run_remote,
            t.when,
            t.on.iter().find(|a| gone.contains(a)),
        ) {
            problems.push(fail(
                "run_remote",
                format!(
                    "after `{}` the machine is not running: a guest script cannot run then (use `when = \"before\"`, or a host command in `run`)",
                    action.word()
                ),
            ));
            continue;
        }
        triggers.push(Trigger {
            name: t
                .name
                .clone()
                .unwrap_or_else(|| format!("trigger {}", i + 1)),
            when: t.when,
            on: t.on.clone(),
            machines: t.machines.clone(),
            info: t.info.clone(),
            run: t.run.clone(),
            run_remote: t.run_remote.clone(),
            on_error: t.on_error,
        });
    }
    (triggers, problems)
}
