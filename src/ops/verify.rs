//! `env verify`: a machine's spec files compiled into one script, run over
//! its SSH connection in one round trip (again only for failing checks that
//! may be retried), judged, and kept in the machine's logs.

use crate::envfile::Machine;
use crate::envfile::targets::Target;
use crate::guest::ssh::remote;
use crate::machine::MachineDir;
use crate::machine::project::Project;
use crate::ops::Ctx;
use crate::spec::facts::Facts;
use crate::spec::judge::{self, Outcome, Verdict};
use crate::spec::report::MachineReport;
use crate::spec::script;
use crate::spec::{Check, parse as model};
use crate::util::ui;
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How `verify` runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// Keep re-running failing checks until they pass or this time is up.
    pub retry_timeout: Option<Duration>,
}

/// What checks run on: a machine env manages, or a host it does not.
#[derive(Debug, Clone)]
pub enum Subject<'a> {
    /// An env machine, over its SSH connection.
    Machine(MachineDir),
    /// A host reached with the user's own SSH setup.
    Target(&'a Target),
}

impl Subject<'_> {
    /// Its name in reports.
    pub fn name(&self) -> &str {
        match self {
            Subject::Machine(dir) => &dir.name,
            Subject::Target(t) => &t.name,
        }
    }
}

/// The spec files of a machine: its `specs` paths and globs, in order.
/// A pattern that matches nothing is an error (a typo must not pass).
pub fn spec_files(project: &Project, machine: &Machine) -> Result<Vec<PathBuf>> {
    let table = format!("machines.{}", machine.name);
    first_problem(matched_spec_files(project, &table, &machine.specs))
}

/// The spec files of a target of the Envfile.
pub fn target_spec_files(project: &Project, target: &Target) -> Result<Vec<PathBuf>> {
    let table = format!("targets.{}", target.name);
    first_problem(matched_spec_files(project, &table, &target.specs))
}

fn first_problem(
    (files, mut problems): (Vec<PathBuf>, Vec<anyhow::Error>),
) -> Result<Vec<PathBuf>> {
    match problems.is_empty() {
        true => Ok(files),
        false => Err(problems.remove(0)),
    }
}

/// The files `specs` patterns (of the table at `table`) match, and a
/// problem for each pattern that is bad or matches nothing.
fn matched_spec_files(
    project: &Project,
    table: &str,
    specs: &[String],
) -> (Vec<PathBuf>, Vec<anyhow::Error>) {
    let (mut files, mut problems) = (Vec::new(), Vec::new());
    for pattern in specs {
        let full = project.envfile.dir.join(pattern);
        let text = full.to_string_lossy().to_string();
        let paths = match glob::glob(&text) {
            Ok(paths) => paths,
            Err(e) => {
                problems.push(anyhow::anyhow!(
                    "{}: {table}.specs: bad pattern `{pattern}`: {e}",
                    project.envfile.path.display(),
                ));
                continue;
            }
        };
        let mut matched: Vec<PathBuf> = paths
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        matched.sort();
        if matched.is_empty() {
            problems.push(anyhow::anyhow!(
                "{}: {table}.specs: `{pattern}` matches no file",
                project.envfile.path.display(),
            ));
        }
        for m in matched {
            if !files.contains(&m) {
                files.push(m);
            }
        }
    }
    (files, problems)
}

/// Every problem in the spec files the project's machines name (a pattern
/// matching nothing, a file that does not parse), each file read once: what
/// `env validate` reports besides the Envfile's own.
pub fn spec_problems(project: &Project) -> Vec<anyhow::Error> {
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    let tables = project
        .envfile
        .machines
        .iter()
        .map(|m| (format!("machines.{}", m.name), &m.specs))
        .chain(
            project
                .envfile
                .targets
                .iter()
                .map(|t| (format!("targets.{}", t.name), &t.specs)),
        );
    for (table, specs) in tables {
        let (files, bad_patterns) = matched_spec_files(project, &table, specs);
        problems.extend(bad_patterns);
        for file in files {
            if seen.contains(&file) {
                continue;
            }
            if let Err(e) = model::load(&file) {
                problems.push(e);
            }
            seen.push(file);
        }
    }
    problems
}

/// Reads and checks all spec files of a machine.
pub fn load_checks(project: &Project, machine: &Machine) -> Result<Vec<Check>> {
    checks_of(&spec_files(project, machine)?)
}

/// Reads and checks spec files, in order.
pub fn checks_of(files: &[PathBuf]) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    for file in files {
        checks.extend(model::load(file)?.checks);
    }
    Ok(checks)
}

/// Runs a compiled script on what is checked (root on a machine; on a
/// target, root only through the sudo it allows); returns its output.
pub fn run_script(
    ctx: &Ctx,
    subject: &Subject,
    script_text: &str,
    limit: Duration,
) -> Result<Vec<u8>> {
    let dir = match subject {
        Subject::Machine(dir) => dir,
        Subject::Target(target) => return remote::run_script(target, script_text, limit),
    };
    let out = ctx
        .guest
        .run(dir, script::RUNNER, script_text.as_bytes(), Some(limit))
        .with_context(|| format!("the checks of `{}` did not run to the end", dir.name))?;
    if !out.status.success() {
        bail!(
            "running the checks on `{}` failed (exit status {}): {}",
            dir.name,
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// The facts of checks `ids` of `checks`, gathered on the machine in one
/// round trip: the script compiled, run, its output parsed and handed out.
pub fn gather(
    ctx: &Ctx,
    subject: &Subject,
    checks: &[&Check],
    ids: &[usize],
    limit: Duration,
) -> Result<Facts> {
    let token = script::new_token();
    let output = run_script(ctx, subject, &script::compile(checks, ids, &token), limit)?;
    let mut facts = script::parse_output(&output, &token);
    script::distribute(checks, ids, &mut facts);
    Ok(facts)
}

/// Verifies several machines and targets at once, one thread each (the
/// checks run on them, the host only waits); a machine's results kept with
/// its logs.
pub fn verify_all(
    ctx: &Ctx,
    planned: &[(Subject, Vec<Check>)],
    options: VerifyOptions,
) -> Vec<MachineReport> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = planned
            .iter()
            .map(|(subject, checks)| {
                scope.spawn(move || {
                    let report = verify(ctx, subject, checks, options);
                    if let Subject::Machine(dir) = subject
                        && let Err(e) = save_results(dir, &report)
                    {
                        ui::step(&dir.name, &format!("cannot keep the results: {e:#}"));
                    }
                    report
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(planned)
            .map(|(h, (subject, _))| {
                h.join().unwrap_or_else(|_| MachineReport {
                    machine: subject.name().to_string(),
                    checks: Vec::new(),
                    seconds: 0.0,
                    error: Some("verifying this machine failed unexpectedly".into()),
                })
            })
            .collect()
    })
}

/// Verifies one running machine, or a target, against `checks`.
pub fn verify(
    ctx: &Ctx,
    subject: &Subject,
    checks: &[Check],
    options: VerifyOptions,
) -> MachineReport {
    let started = Instant::now();
    let mut report = MachineReport {
        machine: subject.name().to_string(),
        checks: Vec::new(),
        seconds: 0.0,
        error: None,
    };
    let running = match subject {
        Subject::Machine(dir) => ctx.running_state(dir).map(drop),
        Subject::Target(_) => Ok(()),
    };
    match running.and_then(|_| judge_all(ctx, subject, checks, options, started)) {
        Ok(outcomes) => report.checks = outcomes,
        Err(e) => report.error = Some(format!("{e:#}")),
    }
    report.seconds = started.elapsed().as_secs_f64();
    report
}

fn judge_all(
    ctx: &Ctx,
    subject: &Subject,
    checks: &[Check],
    options: VerifyOptions,
    started: Instant,
) -> Result<Vec<Outcome>> {
    let refs: Vec<&Check> = checks.iter().collect();
    let mut outcomes: Vec<Outcome> = checks.iter().map(Outcome::skipped).collect();
    let mut pending: Vec<usize> = (0..checks.len()).filter(|i| !checks[*i].skip).collect();
    let deadline = options.retry_timeout.map(|t| started + t);
    let limit = checks
        .iter()
        .map(|c| c.time_limit())
        .max()
        .unwrap_or_default()
        + Duration::from_secs(60);
    let mut attempt = 0;
    while !pending.is_empty() {
        attempt += 1;
        let facts = gather(ctx, subject, &refs, &pending, limit)?;
        for &id in &pending {
            outcomes[id] = judge::judge(id, &checks[id], &facts);
            outcomes[id].attempts = attempt;
        }
        let failing: Vec<usize> = pending
            .iter()
            .copied()
            .filter(|id| outcomes[*id].verdict != Verdict::Pass)
            .collect();
        let delay = failing
            .iter()
            .map(|id| checks[*id].retry_delay)
            .max()
            .unwrap_or(Duration::from_secs(1));
        let in_time = deadline.is_some_and(|d| Instant::now() + delay < d);
        pending = failing
            .into_iter()
            .filter(|id| in_time || checks[*id].retries >= attempt)
            .collect();
        if !pending.is_empty() {
            std::thread::sleep(delay);
        }
    }
    Ok(outcomes)
}

/// The current values of `probes` on a running machine, one list per
/// probe (what `env spec add` writes as expectations).
pub fn current_values(
    ctx: &Ctx,
    dir: &MachineDir,
    probes: &[Check],
) -> Result<Vec<Vec<(&'static str, toml::Value)>>> {
    ctx.running_state(dir)?;
    let refs: Vec<&Check> = probes.iter().collect();
    let ids: Vec<usize> = (0..probes.len()).collect();
    let subject = Subject::Machine(dir.clone());
    let facts = gather(ctx, &subject, &refs, &ids, Duration::from_secs(120))?;
    Ok(probes
        .iter()
        .enumerate()
        .map(|(id, probe)| judge::current_values(id, probe, &facts))
        .collect())
}

/// Keeps a run's results with the machine's logs: `verify.log` (appended,
/// plain text) and `verify.json` (the latest run), archived on destroy.
pub fn save_results(dir: &MachineDir, report: &MachineReport) -> Result<()> {
    if !dir.root.exists() {
        return Ok(());
    }
    let reports = std::slice::from_ref(report);
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.verify_log())
        .with_context(|| format!("cannot open {}", dir.verify_log().display()))?;
    writeln!(log, "==> verify at {stamp}")?;
    log.write_all(crate::spec::report::text(reports, false).as_bytes())?;
    crate::util::fs::write_atomic(
        &dir.root.join("verify.json"),
        crate::spec::report::json(reports).as_bytes(),
    )
}
