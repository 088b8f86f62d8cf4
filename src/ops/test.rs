//! `env test`: the CI lifecycle of Test Kitchen and Molecule in one command:
//! destroy leftovers, up (with provisioning), optionally provision again to
//! prove idempotence, verify, then destroy as `--destroy` says. Each
//! machine's last action and error are kept in `.envstate/test/NAME.json`,
//! which outlives the machine.

use crate::boxes::Store;
use crate::envfile::Machine;
use crate::guest::provisioner as provision;
use crate::machine::Status;
use crate::machine::project::Project;
use crate::ops::provision::provision_machine;
use crate::ops::up::{CacheMode, UpOptions};
use crate::ops::verify::{self, VerifyOptions};
use crate::ops::{Ctx, down};
use crate::spec::Check;
use crate::spec::judge::{Assertion, Outcome, Verdict};
use crate::spec::report::MachineReport;
use crate::util::ui;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

/// When `env test` destroys the machines at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DestroyWhen {
    /// Only machines that passed (failed ones stay for debugging).
    Passing,
    /// Whatever happened.
    Always,
    /// Never (keep them all).
    Never,
}

/// How `env test` runs.
#[derive(Debug, Clone, Copy)]
pub struct TestOptions {
    /// When to destroy.
    pub destroy: DestroyWhen,
    /// Provision twice and fail on changes.
    pub idempotent: bool,
    /// Machines booting at once.
    pub parallel: usize,
    /// Restore from and keep in the provisioning cache.
    pub cache: bool,
    /// Verification settings.
    pub verify: VerifyOptions,
}

/// One action of a test run, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// `destroy`, `up`, `idempotence`, `verify`.
    pub action: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// How long it took.
    pub seconds: f64,
}

/// What `.envstate/test/NAME.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRecord {
    /// Machine name.
    pub machine: String,
    /// The last action begun.
    pub last_action: String,
    /// Its error, if it failed.
    pub last_error: Option<String>,
    /// `passed` or `failed` once the run ends.
    pub verdict: Option<String>,
    /// When the run began (RFC 3339).
    pub started: String,
    /// Actions so far.
    pub actions: Vec<ActionRecord>,
    /// The matrix suite, when the machine is a combination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// The matrix platform, when the machine is a combination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

impl TestRecord {
    fn new(machine: &Machine) -> TestRecord {
        let combination = machine.combination.as_ref();
        TestRecord {
            machine: machine.name.clone(),
            suite: combination.map(|c| c.suite.clone()),
            platform: combination.map(|c| c.platform.clone()),
            last_action: "start".into(),
            last_error: None,
            verdict: None,
            started: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            actions: Vec::new(),
        }
    }
}

/// The record file of a machine.
pub fn record_path(project: &Project, machine: &str) -> PathBuf {
    project
        .state_dir
        .join("test")
        .join(format!("{machine}.json"))
}

/// One machine's progress through the run.
struct Run<'a> {
    machine: &'a Machine,
    checks: Vec<Check>,
    record: TestRecord,
    failure: Option<String>,
    report: Option<MachineReport>,
    extra: Vec<Outcome>,
}

impl Run<'_> {
    fn begin(&mut self, project: &Project, action: &str) {
        self.record.last_action = action.into();
        self.record.last_error = None;
        self.save(project);
    }

    fn end(&mut self, project: &Project, action: &str, started: Instant, error: Option<String>) {
        self.record.actions.push(ActionRecord {
            action: action.into(),
            ok: error.is_none(),
            seconds: started.elapsed().as_secs_f64(),
        });
        if let Some(e) = &error {
            self.record.last_error = Some(e.clone());
            self.failure.get_or_insert_with(|| format!("{action}: {e}"));
        }
        self.save(project);
    }

    fn save(&self, project: &Project) {
        let path = record_path(project, &self.machine.name);
        let write = std::fs::create_dir_all(path.parent().unwrap_or(&project.state_dir))
            .map_err(anyhow::Error::from)
            .and_then(|_| {
                let text = serde_json::to_string_pretty(&self.record)?;
                crate::util::fs::write_atomic(&path, text.as_bytes())
            });
        if let Err(e) = write {
            ui::step(
                &self.machine.name,
                &format!("cannot record the test state: {e:#}"),
            );
        }
    }
}

/// Runs the lifecycle on `machines`; returns one report per machine (for
/// the reporters) and whether all passed. Spec files are read before
/// anything starts: a bad one stops the run at once.
pub fn run(
    ctx: &Ctx,
    project: &Project,
    machines: &[&Machine],
    store: &Store,
    options: &TestOptions,
) -> Result<(Vec<MachineReport>, bool)> {
    let mut runs = Vec::new();
    for &machine in machines {
        runs.push(Run {
            machine,
            checks: verify::load_checks(project, machine)?,
            record: TestRecord::new(machine),
            failure: None,
            report: None,
            extra: Vec::new(),
        });
    }

    for r in &mut runs {
        r.begin(project, "destroy");
        let started = Instant::now();
        let result = down::destroy(ctx, project, &r.machine.name, store, false);
        r.end(
            project,
            "destroy",
            started,
            result.err().map(|e| format!("{e:#}")),
        );
    }

    for r in &mut runs {
        r.begin(project, "up");
    }
    let started = Instant::now();
    let up_options = UpOptions {
        accel: None,
        provision: Some(true),
        // Under --idempotent a machine is kept once its second provisioning
        // proved nothing changes.
        cache: match (options.cache, options.idempotent) {
            (false, _) => CacheMode::Off,
            (true, false) => CacheMode::RestoreAndKeep,
            (true, true) => CacheMode::RestoreOnly,
        },
    };
    let startable: Vec<&Machine> = runs
        .iter()
        .filter(|r| r.failure.is_none())
        .map(|r| r.machine)
        .collect();
    let up_error = crate::ops::parallel::up_all(
        ctx,
        project,
        &startable,
        store,
        &up_options,
        options.parallel,
    )
    .err()
    .map(|e| format!("{e:#}"));
    for r in &mut runs {
        if r.failure.is_some() {
            continue;
        }
        let error = machine_up_error(ctx, project, r.machine, up_error.as_deref());
        r.end(project, "up", started, error);
    }

    if options.idempotent {
        for r in runs.iter_mut().filter(|r| r.failure.is_none()) {
            let dir = project.machine_dir(&r.machine.name);
            let origin = dir.load_state().ok().flatten().and_then(|s| s.from_cache);
            if origin.as_ref().is_some_and(|o| o.idempotent) {
                ui::step(
                    &r.machine.name,
                    "idempotence: proven when its cache entry was kept (a second provisioning changed nothing)",
                );
                continue;
            }
            r.begin(project, "idempotence");
            let started = Instant::now();
            ui::step(&r.machine.name, "provisioning again to prove idempotence");
            let error =
                match provision_machine(ctx, project, r.machine, &provision::Selection::Normal) {
                    Err(e) => Some(format!("the second provisioning failed: {e:#}")),
                    Ok(steps) => idempotence_failure(&r.machine.name, &steps, &mut r.extra),
                };
            // Every step said whether it changed something, and none did.
            let proven = r.extra.iter().all(|o| o.verdict == Verdict::Pass);
            let passed = error.is_none();
            r.end(project, "idempotence", started, error);
            if options.cache && origin.is_none() && passed {
                let accel = crate::ops::up::requested_accel(None, r.machine.accel)?;
                crate::ops::cache::keep(ctx, project, r.machine, store, accel, proven);
            }
        }
    }

    for r in runs.iter_mut().filter(|r| r.failure.is_none()) {
        r.begin(project, "verify");
        let started = Instant::now();
        let dir = project.machine_dir(&r.machine.name);
        let report = verify::verify(
            ctx,
            &verify::Subject::Machine(dir.clone()),
            &r.checks,
            options.verify,
        );
        if let Err(e) = verify::save_results(&dir, &report) {
            ui::step(&r.machine.name, &format!("cannot keep the results: {e:#}"));
        }
        let error = report.error.clone().or_else(|| {
            let bad = report
                .checks
                .iter()
                .filter(|c| matches!(c.verdict, Verdict::Fail | Verdict::Error))
                .count();
            (bad > 0).then(|| format!("{bad} of {} checks failed", report.checks.len()))
        });
        r.report = Some(report);
        r.end(project, "verify", started, error);
    }

    let mut reports = Vec::new();
    let mut all_passed = true;
    for r in &mut runs {
        let passed = r.failure.is_none();
        all_passed &= passed;
        let destroy = match options.destroy {
            DestroyWhen::Always => true,
            DestroyWhen::Passing => passed,
            DestroyWhen::Never => false,
        };
        if destroy {
            r.begin(project, "destroy");
            let started = Instant::now();
            let result = down::destroy(ctx, project, &r.machine.name, store, false);
            let error = result.err().map(|e| format!("{e:#}"));
            // A failed final destroy is recorded, not a test failure.
            r.record.actions.push(ActionRecord {
                action: "destroy".into(),
                ok: error.is_none(),
                seconds: started.elapsed().as_secs_f64(),
            });
            r.record.last_error = error;
        } else if !passed {
            ui::step(
                &r.machine.name,
                &format!(
                    "kept for inspection: `env ssh {}`, `env logs {}`",
                    r.machine.name, r.machine.name
                ),
            );
        }
        r.record.verdict = Some(if passed { "passed" } else { "failed" }.into());
        if !passed && r.record.last_error.is_none() {
            r.record.last_error = r.failure.clone();
        }
        r.save(project);
        let mut report = r.report.take().unwrap_or_else(|| MachineReport {
            machine: r.machine.name.clone(),
            checks: Vec::new(),
            seconds: 0.0,
            error: r.failure.clone(),
        });
        report.checks.splice(0..0, r.extra.drain(..));
        reports.push(report);
    }
    Ok((reports, all_passed))
}

/// Why a machine is not up after `up_all`, if it is not.
fn machine_up_error(
    ctx: &Ctx,
    project: &Project,
    machine: &Machine,
    up_error: Option<&str>,
) -> Option<String> {
    let dir = project.machine_dir(&machine.name);
    let state = dir.load_state().ok().flatten();
    if let Some(e) = state.as_ref().and_then(|s| s.last_error.clone()) {
        return Some(e);
    }
    match ctx.status(&dir) {
        Ok(Status::Running) if state.is_some_and(|s| s.provisioned || up_error.is_none()) => None,
        _ => Some(
            up_error
                .map(|e| format!("not brought up: {e}"))
                .unwrap_or_else(|| "not brought up".into()),
        ),
    }
}

/// The idempotence verdict of a second provisioning: the steps that changed
/// something, with their output. Steps that cannot tell are noted.
fn idempotence_failure(
    machine: &str,
    steps: &[provision::StepReport],
    outcomes: &mut Vec<Outcome>,
) -> Option<String> {
    let unknown: Vec<&str> = steps
        .iter()
        .filter(|s| s.changed.is_none())
        .map(|s| s.name.as_str())
        .collect();
    if !unknown.is_empty() {
        ui::step(
            machine,
            &format!(
                "idempotence not checked for {} (file steps, and shell steps without `changed_exit_code`)",
                unknown.join(", ")
            ),
        );
    }
    let changed: Vec<&provision::StepReport> =
        steps.iter().filter(|s| s.changed == Some(true)).collect();
    outcomes.push(Outcome {
        resource: "idempotence",
        name: "provisioners".into(),
        title: "provisioning again changes nothing".into(),
        verdict: if changed.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        },
        assertions: vec![Assertion {
            attribute: "changed".into(),
            expected: "no step".into(),
            found: if changed.is_empty() {
                "no step".into()
            } else {
                changed
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            passed: changed.is_empty(),
        }],
        error: None,
        attempts: 1,
        spec: String::new(),
    });
    if changed.is_empty() {
        return None;
    }
    let mut text = String::from("not idempotent: provisioning again changed something");
    for step in changed {
        text.push_str(&format!(
            "\n  step `{}` changed something; its output:",
            step.name
        ));
        let tail = &step.output[step.output.len().saturating_sub(20)..];
        for line in tail {
            text.push_str(&format!("\n    {line}"));
        }
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, changed: Option<bool>) -> provision::StepReport {
        provision::StepReport {
            name: name.into(),
            changed,
            output: vec![format!("{name} output")],
        }
    }

    #[test]
    fn idempotence_names_the_steps_that_changed() {
        let mut outcomes = Vec::new();
        let failure = idempotence_failure(
            "web",
            &[
                step("a", Some(false)),
                step("b", Some(true)),
                step("c", None),
            ],
            &mut outcomes,
        )
        .unwrap();
        assert!(failure.contains("step `b` changed something"), "{failure}");
        assert!(failure.contains("b output"));
        assert!(!failure.contains("step `a`"));
        assert_eq!(outcomes[0].verdict, Verdict::Fail);
        let mut outcomes = Vec::new();
        assert!(idempotence_failure("web", &[step("a", Some(false))], &mut outcomes).is_none());
        assert_eq!(outcomes[0].verdict, Verdict::Pass);
    }

    #[test]
    fn ansible_recaps_tell_changes() {
        let recap = |s: &str| vec!["PLAY RECAP ****".to_string(), s.to_string()];
        assert_eq!(
            provision::ansible_changed(&recap("web : ok=3 changed=0 unreachable=0 failed=0")),
            Some(false)
        );
        assert_eq!(
            provision::ansible_changed(&recap("web : ok=3 changed=2 unreachable=0 failed=0")),
            Some(true)
        );
        assert_eq!(provision::ansible_changed(&["no recap".to_string()]), None);
    }
}
