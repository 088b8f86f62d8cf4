//! `env verify`, `env spec add` and `env test`: the command line of
//! [`crate::ops::verify`], [`crate::spec`] and [`crate::ops::test`].

use crate::boxes::Store;
use crate::envfile::targets::{Address, Target, parse_address};
use crate::machine::project::Project;
use crate::ops::Ctx;
use crate::ops::test::{self as citest, DestroyWhen, TestOptions};
use crate::ops::verify::{self, Subject, VerifyOptions};
use crate::spec::add;
use crate::spec::check::Kind;
use crate::spec::report::{self, MachineReport, ReportFormat, Totals};
use crate::util::ui;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Exit status when every check passed.
pub const EXIT_PASSED: i32 = 0;
/// Exit status when checks failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit status when machines could not be verified (not running, bad spec).
pub const EXIT_ERROR: i32 = 2;

/// Report options shared by `verify` and `test`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Report format, to stdout or to a file: text, json, tap, junit
    /// (`--format junit=report.xml`); repeat for several.
    #[arg(long = "format", value_name = "FORMAT[=FILE]")]
    formats: Vec<String>,
    /// Write a JUnit XML report (same as `--format junit=FILE`).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Re-run failing checks until they pass or this time is up (slow services).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    retry_timeout: Option<Duration>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::util::duration::parse_duration(text)
}

/// `env verify`'s form for a host env does not manage.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// Check a host env does not manage, reached over SSH.
    #[arg(long, value_name = "[USER@]HOST[:PORT]", conflicts_with = "ssh_config")]
    ssh: Option<String>,
    /// An OpenSSH config file (an existing one, or an inventory's) that
    /// knows the host named by --host.
    #[arg(long, value_name = "FILE", requires = "host")]
    ssh_config: Option<PathBuf>,
    /// The `Host` of --ssh-config to check.
    #[arg(long, value_name = "NAME", requires = "ssh_config")]
    host: Option<String>,
    /// A spec file to check the host against (repeat for several).
    #[arg(long = "spec", value_name = "FILE")]
    specs: Vec<PathBuf>,
    /// Private key to log in with (only this key is offered).
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Jump host(s), as `ssh -J` takes them.
    #[arg(long, value_name = "[USER@]HOST[:PORT]")]
    proxy_jump: Option<String>,
    /// A known_hosts file to check the host key against instead of
    /// ~/.ssh/known_hosts (the check itself is never skipped).
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<PathBuf>,
    /// Run the checks as root through `sudo -n`.
    #[arg(long)]
    sudo: bool,
}

impl RemoteArgs {
    /// The host the command line names, if it names one.
    fn target(&self) -> Result<Option<Target>> {
        let address = match (&self.ssh, &self.ssh_config, &self.host) {
            (Some(ssh), _, _) => parse_address(ssh).map_err(anyhow::Error::msg)?,
            (None, Some(file), Some(host)) => {
                if host.starts_with('-') || host.is_empty() {
                    bail!("--host `{host}` is not a host name");
                }
                Address::Config {
                    file: std::path::absolute(file)?,
                    host: host.clone(),
                }
            }
            _ => {
                let stray = [
                    (!self.specs.is_empty(), "--spec"),
                    (self.identity.is_some(), "--identity"),
                    (self.proxy_jump.is_some(), "--proxy-jump"),
                    (self.known_hosts.is_some(), "--known-hosts"),
                    (self.sudo, "--sudo"),
                ];
                if let Some((_, option)) = stray.iter().find(|(given, _)| *given) {
                    bail!(
                        "{option} goes with --ssh USER@HOST or --ssh-config FILE --host NAME (a target in the Envfile sets it in [targets.NAME])"
                    );
                }
                return Ok(None);
            }
        };
        if self.specs.is_empty() {
            bail!(
                "name the spec files to check {address} against: --spec FILE (repeat for several)"
            );
        }
        if let Some(jump) = &self.proxy_jump
            && jump.starts_with('-')
        {
            bail!("--proxy-jump `{jump}` is not a host");
        }
        let existing = |path: &Option<PathBuf>, option: &str| -> Result<Option<PathBuf>> {
            match path {
                Some(p) if !p.is_file() => bail!("{option}: no file at {}", p.display()),
                Some(p) => Ok(Some(std::path::absolute(p)?)),
                None => Ok(None),
            }
        };
        Ok(Some(Target {
            name: match &address {
                Address::Config { host, .. } => host.clone(),
                direct => direct.to_string(),
            },
            address,
            identity_file: existing(&self.identity, "--identity")?,
            proxy_jump: self.proxy_jump.clone(),
            known_hosts: existing(&self.known_hosts, "--known-hosts")?,
            specs: Vec::new(),
            sudo: self.sudo,
        }))
    }
}

/// `env spec ...`.
#[derive(Debug, Subcommand)]
pub enum SpecCommand {
    /// Write checks from a running machine's current state into a spec file.
    Add {
        /// Resource type: package, service, port, file, command, user, group,
        /// process, kernel_param, kernel_module, mount, http, dns, addr, interface.
        resource: String,
        /// Resource names (several at once).
        #[arg(required = true)]
        names: Vec<String>,
        /// Machine (may be left out when there is one).
        #[arg(short, long)]
        machine: Option<String>,
        /// Spec file (default: the machine's first spec file, else specs/MACHINE.toml).
        #[arg(short, long)]
        file: Option<PathBuf>,
    },
}

/// Where each report goes.
fn outputs(args: &ReportArgs) -> Result<Vec<(ReportFormat, Option<PathBuf>)>> {
    let mut out = Vec::new();
    for f in &args.formats {
        let (name, file) = match f.split_once('=') {
            Some((n, file)) => (n, Some(PathBuf::from(file))),
            None => (f.as_str(), None),
        };
        out.push((ReportFormat::parse(name).map_err(anyhow::Error::msg)?, file));
    }
    if let Some(file) = &args.junit {
        out.push((ReportFormat::Junit, Some(file.clone())));
    }
    if out.iter().filter(|(_, file)| file.is_none()).count() > 1 {
        bail!(
            "only one report can go to stdout: give the others a file (`--format json=out.json`)"
        );
    }
    if !out.iter().any(|(_, file)| file.is_none()) {
        out.push((ReportFormat::Text, None));
    }
    Ok(out)
}

/// Writes the reports and returns the exit status they call for.
fn deliver(reports: &[MachineReport], outputs: &[(ReportFormat, Option<PathBuf>)]) -> Result<i32> {
    for (format, file) in outputs {
        match file {
            Some(path) => {
                let text = report::render(*format, reports, false);
                crate::util::fs::write_atomic(&std::path::absolute(path)?, text.as_bytes())
                    .with_context(|| format!("cannot write the report {}", path.display()))?;
                ui::line(&format!("report written to {}", path.display()));
            }
            None => print!("{}", report::render(*format, reports, ui::color())),
        }
    }
    let totals = Totals::of(reports);
    Ok(if totals.errors > 0 {
        EXIT_ERROR
    } else if totals.failed > 0 {
        EXIT_FAILED
    } else {
        EXIT_PASSED
    })
}

/// `env verify [NAME...]`, or `env verify --ssh HOST --spec FILE...`.
pub fn verify_command(
    envfile: Option<&Path>,
    names: &[String],
    remote: &RemoteArgs,
    args: &ReportArgs,
) -> Result<i32> {
    let outputs = outputs(args)?;
    let options = VerifyOptions {
        retry_timeout: args.retry_timeout,
    };
    if let Some(target) = remote.target()? {
        if !names.is_empty() {
            bail!(
                "--ssh/--ssh-config check one host: leave out the names ({})",
                names.join(", ")
            );
        }
        let checks = verify::checks_of(&remote.specs)?;
        let planned = [(Subject::Target(&target), checks)];
        let reports = verify::verify_all(&Ctx::local(), &planned, options);
        return deliver(&reports, &outputs);
    }
    let project = Project::load(envfile)?;
    let (target_names, machine_names): (Vec<String>, Vec<String>) = names
        .iter()
        .cloned()
        .partition(|n| project.envfile.target(n).is_some());
    let mut planned = Vec::new();
    for name in &target_names {
        let target = project
            .envfile
            .target(name)
            .expect("partitioned as a target");
        let checks = verify::checks_of(&verify::target_spec_files(&project, target)?)?;
        planned.push((Subject::Target(target), checks));
    }
    let machines = match (machine_names.is_empty(), target_names.is_empty()) {
        (true, false) => Vec::new(),
        _ => project.select(&machine_names)?,
    };
    for machine in machines {
        if machine.specs.is_empty() {
            if !names.is_empty() {
                bail!(
                    "machine `{}` has no specs: add `specs = [\"specs/{}.toml\"]` to it in {}",
                    machine.name,
                    machine.name,
                    project.envfile.path.display()
                );
            }
            continue;
        }
        let checks = verify::load_checks(&project, machine)?;
        planned.push((Subject::Machine(project.machine_dir(&machine.name)), checks));
    }
    if planned.is_empty() {
        bail!(
            "no machine has specs: add `specs = [\"specs/NAME.toml\"]` to machines in {}",
            project.envfile.path.display()
        );
    }
    let reports = verify::verify_all(&Ctx::local(), &planned, options);
    deliver(&reports, &outputs)
}

/// `env test`'s arguments.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Machines or matrix combinations (default: all).
    names: Vec<String>,
    /// Only the machines whose names match this glob (`web-*`, `*-debian-12`);
    /// repeat for several.
    #[arg(long, value_name = "PATTERN")]
    only: Vec<String>,
    /// List the machines (combinations) it would test, and test nothing.
    #[arg(long)]
    list: bool,
    /// With --list: a JSON matrix for CI (`{"include": [{"name", "suite", "platform"}]}`).
    #[arg(long, requires = "list")]
    json: bool,
    /// When to destroy at the end.
    #[arg(long, value_enum, default_value = "passing")]
    destroy: DestroyWhen,
    /// Provision a second time and fail if a step changed something.
    #[arg(long)]
    idempotent: bool,
    /// Machines booting at once (default: all).
    #[arg(long, value_name = "N")]
    parallel: Option<usize>,
    #[command(flatten)]
    cache: super::cache::CacheFlags,
    #[command(flatten)]
    report: ReportArgs,
}

/// The machines `env test` takes: those named (all when none), narrowed
/// by `--only` globs; a glob that matches nothing is an error (a typo in a
/// CI job must not pass by testing nothing).
pub fn test_selection<'p>(
    project: &'p Project,
    names: &[String],
    only: &[String],
) -> Result<Vec<&'p crate::envfile::Machine>> {
    let machines = project.select(names)?;
    if only.is_empty() {
        return Ok(machines);
    }
    let mut patterns = Vec::new();
    for text in only {
        let pattern = glob::Pattern::new(text)
            .map_err(|e| anyhow::anyhow!("--only `{text}` is not a glob: {e}"))?;
        if !machines.iter().any(|m| pattern.matches(&m.name)) {
            let all: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
            bail!(
                "--only `{text}` matches no machine: they are {}",
                all.join(", ")
            );
        }
        patterns.push(pattern);
    }
    Ok(machines
        .into_iter()
        .filter(|m| patterns.iter().any(|p| p.matches(&m.name)))
        .collect())
}

/// `env test --list [--json]`: the names one per line, or a matrix a CI
/// system reads (GitHub Actions: `strategy.matrix: ${{ fromJSON(...) }}`).
fn list(machines: &[&crate::envfile::Machine], json: bool) -> String {
    if !json {
        return machines.iter().map(|m| format!("{}\n", m.name)).collect();
    }
    let include: Vec<serde_json::Value> = machines
        .iter()
        .map(|m| {
            let (suite, platform) = match &m.combination {
                Some(c) => (Some(c.suite.as_str()), Some(c.platform.as_str())),
                None => (None, None),
            };
            serde_json::json!({ "name": m.name, "suite": suite, "platform": platform })
        })
        .collect();
    format!("{}\n", serde_json::json!({ "include": include }))
}

/// `env test [NAME...]`.
pub fn test_command(envfile: Option<&Path>, args: &TestArgs) -> Result<i32> {
    let outputs = outputs(&args.report)?;
    let project = Project::load(envfile)?;
    let machines = test_selection(&project, &args.names, &args.only)?;
    if args.list {
        print!("{}", list(&machines, args.json));
        return Ok(0);
    }
    let _lock = project.lock()?;
    let store = Store::open()?;
    let options = TestOptions {
        destroy: args.destroy,
        idempotent: args.idempotent,
        parallel: args.parallel.unwrap_or(machines.len()).max(1),
        cache: args.cache.enabled(project.envfile.cache.enabled),
        verify: VerifyOptions {
            retry_timeout: args.report.retry_timeout,
        },
    };
    let started = std::time::Instant::now();
    let (reports, passed) = citest::run(&Ctx::local(), &project, &machines, &store, &options)?;
    deliver(&reports, &outputs)?;
    ui::line(&format!(
        "env test: {} in {:.1} s ({} machine(s); state in {})",
        if passed { "PASSED" } else { "FAILED" },
        started.elapsed().as_secs_f64(),
        machines.len(),
        project.state_dir.join("test").display()
    ));
    // The verdict: a machine that could not even come up failed too.
    Ok(if passed { EXIT_PASSED } else { EXIT_FAILED })
}

/// `env spec add RESOURCE NAME...`.
pub fn spec_command(envfile: Option<&Path>, command: SpecCommand) -> Result<i32> {
    let SpecCommand::Add {
        resource,
        names,
        machine,
        file,
    } = command;
    let Some(kind) = Kind::from_name(&resource) else {
        bail!(
            "unknown resource type `{resource}`: one of {}",
            Kind::names().join(", ")
        );
    };
    let project = Project::load(envfile)?;
    let machine = project.one(machine.as_deref())?;
    let dir = project.machine_dir(&machine.name);
    let ctx = Ctx::local();
    ctx.running_state(&dir)?;
    let target = match file {
        Some(f) => std::path::absolute(&f)?,
        None => default_spec_file(&project, machine),
    };
    let probes = names
        .iter()
        .map(|n| add::probe(kind, n))
        .collect::<Result<Vec<_>>>()?;
    let found = verify::current_values(&ctx, &dir, &probes)?;
    let mut additions = Vec::new();
    for (probe, values) in probes.iter().zip(found) {
        if values.is_empty() {
            bail!(
                "could not read {} `{}` on `{}`",
                kind.name(),
                probe.name,
                machine.name
            );
        }
        let text = add::render(kind, &probe.name, &values)?;
        additions.push((kind, probe.name.clone(), text));
    }
    add::append(&target, &additions)?;
    for (_, _, text) in &additions {
        print!("{text}");
    }
    ui::line(&format!(
        "added {} check(s) to {}",
        additions.len(),
        target.display()
    ));
    let listed = verify::spec_files(&project, machine).unwrap_or_default();
    if !listed.iter().any(|f| f == &target) {
        ui::line(&format!(
            "note: {} is not among `{}`'s specs: add it to `specs` in {}",
            target.display(),
            machine.name,
            project.envfile.path.display()
        ));
    }
    Ok(0)
}

/// The machine's first spec entry that is a plain path, else `specs/NAME.toml`.
fn default_spec_file(project: &Project, machine: &crate::envfile::Machine) -> PathBuf {
    let plain = machine.specs.iter().find(|s| !s.contains(['*', '?', '[']));
    project.envfile.dir.join(match plain {
        Some(p) => p.clone(),
        None => format!("specs/{}.toml", machine.name),
    })
}
