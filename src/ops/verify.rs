//! `env verify`: a machine's spec files compiled into one script, run over
//! its SSH connection in one round trip (again only for failing checks that
//! may be retried), judged, and kept in the machine's logs.

use crate::envfile::Machine;
use crate::machine::MachineDir;
use crate::machine::project::Project;
use crate::spec::judge::{self, Outcome, Verdict};
use crate::spec::report::MachineReport;
use crate::spec::script::{self, Facts};
use crate::spec::{Check, model};
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

/// The spec files of a machine: its `specs` paths and globs, in order.
/// A pattern that matches nothing is an error (a typo must not pass).
pub fn spec_files(project: &Project, machine: &Machine) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for pattern in &machine.specs {
        let full = project.envfile.dir.join(pattern);
        let text = full.to_string_lossy().to_string();
        let mut matched: Vec<PathBuf> = glob::glob(&text)
            .with_context(|| {
                format!(
                    "bad spec pattern `{pattern}` in {}",
                    project.envfile.path.display()
                )
            })?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        matched.sort();
        if matched.is_empty() {
            bail!(
                "{}: machines.{}.specs: `{pattern}` matches no file",
                project.envfile.path.display(),
                machine.name
            );
        }
        for m in matched {
            if !files.contains(&m) {
                files.push(m);
            }
        }
    }
    Ok(files)
}

/// Reads and checks all spec files of a machine.
pub fn load_checks(project: &Project, machine: &Machine) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    for file in spec_files(project, machine)? {
        checks.extend(model::load(&file)?.checks);
    }
    Ok(checks)
}

/// Runs a compiled script on the machine as root; returns its output.
pub fn run_script(dir: &MachineDir, script_text: &str, limit: Duration) -> Result<Vec<u8>> {
    let out = crate::guest::ssh::run_with_input(
        &dir.ssh_config(),
        &dir.name,
        script::RUNNER,
        script_text.as_bytes(),
        Some(limit),
    )
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

/// Verifies one running machine against `checks`.
pub fn verify(dir: &MachineDir, checks: &[Check], options: VerifyOptions) -> MachineReport {
    let started = Instant::now();
    let mut report = MachineReport {
        machine: dir.name.clone(),
        checks: Vec::new(),
        seconds: 0.0,
        error: None,
    };
    match dir
        .running_state()
        .and_then(|_| judge_all(dir, checks, options, started))
    {
        Ok(outcomes) => report.checks = outcomes,
        Err(e) => report.error = Some(format!("{e:#}")),
    }
    report.seconds = started.elapsed().as_secs_f64();
    report
}

fn judge_all(
    dir: &MachineDir,
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
        let token = script::new_token();
        let output = run_script(dir, &script::compile(&refs, &pending, &token), limit)?;
        let mut facts: Facts = script::parse_output(&output, &token);
        script::distribute(&refs, &pending, &mut facts);
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
