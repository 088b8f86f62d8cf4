//! Running provisioners over the machine's SSH connection: one round trip
//! per step, output streamed live (prefixed with the machine's name) and
//! logged with timestamps to the machine's `provision.log`.

use crate::envfile::provisioners::{Action, Provisioner, RunWhen, Script};
use crate::machine::MachineDir;
use crate::util::shell::shell_quote;
use anyhow::{Context, Result, bail};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// How many lines of a failed step's output the error shows.
const TAIL_LINES: usize = 15;

/// Which provisioners a run includes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// `once` and `always` (first `up`, `up --provision`, `env provision`).
    Normal,
    /// Only `always` (a later boot).
    AlwaysOnly,
    /// Exactly these names, whatever their `run` (`env provision --with`).
    Named(Vec<String>),
}

/// The provisioners `selection` picks, in order. Unknown names are errors.
pub fn select<'a>(all: &'a [Provisioner], selection: &Selection) -> Result<Vec<&'a Provisioner>> {
    match selection {
        Selection::Normal => Ok(all.iter().filter(|p| p.run != RunWhen::Never).collect()),
        Selection::AlwaysOnly => Ok(all.iter().filter(|p| p.run == RunWhen::Always).collect()),
        Selection::Named(names) => {
            if let Some(unknown) = names.iter().find(|n| !all.iter().any(|p| &&p.name == n)) {
                let known: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
                bail!(
                    "no provisioner named `{unknown}`: there are {}",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                );
            }
            Ok(all.iter().filter(|p| names.contains(&p.name)).collect())
        }
    }
}

/// The guest command of a shell step: the script arrives on stdin, is saved
/// to a temporary file (so its `#!` line is honoured) and run with its
/// arguments and environment, as root when `privileged`.
pub fn shell_step_command(args: &[String], env: &[(String, String)], privileged: bool) -> String {
    let mut run = String::new();
    if privileged {
        run.push_str("sudo -n ");
    }
    run.push_str("env");
    for (k, v) in env {
        run.push(' ');
        run.push_str(&shell_quote(&format!("{k}={v}")));
    }
    run.push_str(" \"$f\"");
    for a in args {
        run.push(' ');
        run.push_str(&shell_quote(a));
    }
    format!(
        "f=$(mktemp /tmp/env-provision.XXXXXX) || exit 1; cat > \"$f\" && chmod 0755 \"$f\" && {run}; rc=$?; rm -f \"$f\"; exit $rc"
    )
}

/// The guest command of a file step: a tar stream arrives on stdin holding
/// one entry, `payload`, unpacked to `destination` (a folder's contents go
/// into it; a file becomes it).
pub fn file_step_command(destination: &str, is_dir: bool, privileged: bool) -> String {
    let dest = if let Some(rest) = destination.strip_prefix("~/") {
        format!("\"$HOME\"/{}", shell_quote(rest))
    } else {
        shell_quote(destination)
    };
    let body = if is_dir {
        format!("mkdir -p {dest} && tar --no-same-owner -xf - -C {dest} --strip-components=1")
    } else {
        format!(
            "t=$(mktemp -d) && tar --no-same-owner -xf - -C \"$t\" && mkdir -p \"$(dirname {dest})\" && mv -f \"$t/payload\" {dest}; rc=$?; rm -rf \"$t\"; exit $rc"
        )
    };
    if privileged {
        format!("sudo -n sh -c {}", shell_quote(&body))
    } else {
        body
    }
}

/// A provision log, shared by the threads that stream a step's output.
#[derive(Clone)]
pub struct Log {
    file: Arc<Mutex<std::fs::File>>,
}

impl Log {
    /// Opens (appends to) the machine's provision log.
    pub fn open(dir: &MachineDir) -> Result<Log> {
        Log::open_at(&dir.provision_log())
    }

    /// Opens (appends to) the log at `path`.
    pub fn open_at(path: &Path) -> Result<Log> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Log {
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Appends a timestamped line.
    pub fn line(&self, text: &str) {
        let stamp = humantime::format_rfc3339_millis(SystemTime::now());
        if let Ok(mut f) = self.file.lock() {
            let _ = writeln!(f, "{stamp} {text}");
        }
    }
}

/// Runs a host command on behalf of `machine` (a trigger's): its output
/// streamed prefixed with the machine's name and logged to `log`; a
/// non-zero exit is an error naming `what` with the last lines.
pub fn run_host(cmd: Command, machine: &str, what: &str, log: &Log) -> Result<()> {
    log.line(&format!("==> {what} for {machine}"));
    let result = stream(cmd, machine, what, log, None, |_| Ok(()));
    match &result {
        Ok(_) => log.line(&format!("<== {what} done")),
        Err(e) => log.line(&format!("<== {what} FAILED: {e:#}")),
    }
    result.map(drop)
}

/// What a step did, for `env test --idempotent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// Provisioner name.
    pub name: String,
    /// Whether it changed something: `None` when the step cannot tell (a
    /// file upload, a shell step without `changed_exit_code`).
    pub changed: Option<bool>,
    /// Its output, for the idempotence report.
    pub output: Vec<String>,
}

/// Runs the selected provisioners of a running machine, in order; stops at
/// the first failure with the step's name, exit status and last lines.
pub fn run(
    dir: &MachineDir,
    provisioners: &[&Provisioner],
    inventory: Option<&Path>,
) -> Result<Vec<StepReport>> {
    let mut reports = Vec::new();
    if provisioners.is_empty() {
        return Ok(reports);
    }
    let log = Log::open(dir)?;
    for p in provisioners {
        let started = Instant::now();
        crate::util::ui::step(&dir.name, &format!("provisioning: {}", p.name));
        log.line(&format!("==> {} ({:?})", p.name, p.action_kind()));
        let result = run_one(dir, p, &log, inventory);
        match &result {
            Ok(step) => log.line(&format!(
                "<== {} done in {:.1} s{}",
                p.name,
                started.elapsed().as_secs_f64(),
                match step.changed {
                    Some(true) => ", changed",
                    Some(false) => ", unchanged",
                    None => "",
                }
            )),
            Err(e) => log.line(&format!("<== {} FAILED: {e:#}", p.name)),
        }
        reports.push(result?);
    }
    Ok(reports)
}

/// Whether an Ansible run changed anything, from its PLAY RECAP lines.
pub fn ansible_changed(output: &[String]) -> Option<bool> {
    let counts: Vec<u64> = output
        .iter()
        .filter_map(|line| {
            let at = line.find("changed=")?;
            line[at + 8..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect();
    (!counts.is_empty()).then(|| counts.iter().any(|c| *c > 0))
}

impl Provisioner {
    /// How errors name it: provisioner `NAME` (KIND).
    pub fn label(&self) -> String {
        format!("provisioner `{}` ({})", self.name, self.action_kind())
    }

    /// `shell`, `file` or `ansible`.
    pub fn action_kind(&self) -> &'static str {
        match self.action {
            Action::Shell { .. } => "shell",
            Action::File { .. } => "file",
            Action::Ansible { .. } => "ansible",
            Action::Docker { .. } => "docker",
        }
    }
}

/// Runs one provisioner: a docker one as its context uploads and its
/// script, any other as itself.
fn run_one(
    dir: &MachineDir,
    p: &Provisioner,
    log: &Log,
    inventory: Option<&Path>,
) -> Result<StepReport> {
    let Action::Docker {
        engine,
        images,
        containers,
    } = &p.action
    else {
        return run_simple(dir, p, log, inventory);
    };
    // Each build context goes up as a folder upload, then one root script
    // installs the engine, builds and runs.
    let contexts: Vec<String> = (0..images.len())
        .map(|i| format!("{}/{i}", crate::guest::docker::CONTEXTS))
        .collect();
    for (image, destination) in images.iter().zip(&contexts) {
        let upload = Provisioner {
            name: format!("{} (context of {})", p.name, image.tag),
            run: p.run,
            action: Action::File {
                source: image.context.clone(),
                destination: destination.clone(),
                privileged: true,
            },
        };
        run_simple(dir, &upload, log, inventory)?;
    }
    let script = crate::guest::docker::script(*engine, images, &contexts, containers);
    let step = Provisioner {
        name: p.name.clone(),
        run: p.run,
        action: Action::Shell {
            script: Script::Inline(script),
            args: Vec::new(),
            env: Vec::new(),
            privileged: true,
            changed_exit_code: Some(crate::guest::docker::CHANGED),
        },
    };
    run_simple(dir, &step, log, inventory)
        .with_context(|| format!("the docker provisioner `{}` failed", p.name))
}

fn run_simple(
    dir: &MachineDir,
    p: &Provisioner,
    log: &Log,
    inventory: Option<&Path>,
) -> Result<StepReport> {
    let what = p.label();
    let report = |changed: Option<bool>, output: Vec<String>| StepReport {
        name: p.name.clone(),
        changed,
        output,
    };
    // Ansible's and the shell's sessions go through the master connection.
    let _slot = crate::guest::ssh::exec::session_slot(dir);
    let mut cmd = crate::guest::ssh::exec::command(&dir.ssh_config(), &dir.name);
    match &p.action {
        Action::Ansible {
            playbook,
            extra_vars,
            tags,
            skip_tags,
            limit,
            ..
        } => {
            let inventory = inventory.context("no inventory for the ansible provisioner")?;
            if crate::util::process::which("ansible-playbook").is_none() {
                bail!(
                    "provisioner `{}` needs ansible-playbook on this host: install it (`apt-get install ansible-core`, or `pipx install ansible-core`)",
                    p.name
                );
            }
            let mut cmd = Command::new("ansible-playbook");
            cmd.args(crate::guest::ansible::playbook_args(
                inventory,
                playbook,
                &dir.name,
                extra_vars.as_deref(),
                tags,
                skip_tags,
                limit.as_deref(),
            ))
            .envs(crate::guest::ansible::ANSIBLE_ENV.iter().copied());
            if let Some(folder) = playbook.parent() {
                cmd.current_dir(folder);
            }
            let (_, output) = stream(cmd, &dir.name, &what, log, None, |_| Ok(()))?;
            Ok(report(ansible_changed(&output), output))
        }
        Action::Shell {
            script,
            args,
            env,
            privileged,
            changed_exit_code,
        } => {
            let body = match script {
                Script::Inline(text) => text.clone().into_bytes(),
                Script::File(path) => std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            };
            cmd.arg(shell_step_command(args, env, *privileged));
            let (code, output) = stream(
                cmd,
                &dir.name,
                &what,
                log,
                *changed_exit_code,
                move |stdin| stdin.write_all(&body),
            )?;
            let changed = changed_exit_code.map(|c| code == c);
            Ok(report(changed, output))
        }
        // Expanded into uploads and a script by `run_one` first.
        Action::Docker { .. } => bail!("a docker step cannot run as one step"),
        Action::File {
            source,
            destination,
            privileged,
        } => {
            let is_dir = source.is_dir();
            cmd.arg(file_step_command(destination, is_dir, *privileged));
            let source = source.clone();
            let (_, output) = stream(cmd, &dir.name, &what, log, None, move |stdin| {
                write_tar(&source, is_dir, stdin)
            })?;
            Ok(report(None, output))
        }
    }
}

/// Packs `source` as the single tar entry `payload` (modes kept).
fn write_tar(source: &Path, is_dir: bool, out: &mut dyn Write) -> std::io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    if is_dir {
        builder.append_dir_all("payload", source)?;
    } else {
        builder.append_path_with_name(source, "payload")?;
    }
    builder.finish()
}

/// How many lines of a step's output are kept for reports.
const KEPT_LINES: usize = 200;

/// Runs `cmd`, feeding its stdin from `feed`, printing and logging its output
/// line by line; a non-zero exit (other than `also_ok`) becomes an error
/// with the last lines. Returns the exit status and the output's last lines.
fn stream(
    mut cmd: Command,
    machine: &str,
    what: &str,
    log: &Log,
    also_ok: Option<i32>,
    feed: impl FnOnce(&mut dyn Write) -> std::io::Result<()> + Send + 'static,
) -> Result<(i32, Vec<String>)> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", cmd.get_program().to_string_lossy()))?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    let feeder = std::thread::spawn(move || feed(&mut stdin));
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(KEPT_LINES)));
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|source| {
        let (tail, log, machine) = (tail.clone(), log.clone(), machine.to_string());
        std::thread::spawn(move || {
            for line in BufReader::new(source).lines().map_while(Result::ok) {
                crate::util::ui::line(&format!("    {machine}: {line}"));
                log.line(&format!("    {line}"));
                if let Ok(mut t) = tail.lock() {
                    if t.len() == KEPT_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
        })
    })
    .collect();
    let fed = feeder
        .join()
        .map_err(|_| anyhow::anyhow!("the input thread panicked"))?;
    for r in readers {
        let _ = r.join();
    }
    let status = child.wait()?;
    let kept: Vec<String> = tail
        .lock()
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    let code = status.code().unwrap_or(-1);
    if !status.success() && (also_ok.is_none() || status.code() != also_ok) {
        let last = &kept[kept.len().saturating_sub(TAIL_LINES)..];
        let code = status
            .code()
            .map_or_else(|| "a signal".to_string(), |c| c.to_string());
        bail!(
            "{what} failed on `{machine}` with exit status {code}; last lines of its output:\n{}",
            if last.is_empty() {
                "    (no output)".into()
            } else {
                last.iter()
                    .map(|l| format!("    {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        );
    }
    fed.context("cannot send the step's input")?;
    Ok((code, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(name: &str, run: RunWhen) -> Provisioner {
        Provisioner {
            name: name.into(),
            run,
            action: Action::Shell {
                script: Script::Inline("true".into()),
                args: vec![],
                env: vec![],
                privileged: true,
                changed_exit_code: None,
            },
        }
    }

    #[test]
    fn selection() {
        let all = [
            shell("a", RunWhen::Once),
            shell("b", RunWhen::Always),
            shell("c", RunWhen::Never),
        ];
        let names = |s: Selection| {
            select(&all, &s)
                .unwrap()
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(Selection::Normal), ["a", "b"]);
        assert_eq!(names(Selection::AlwaysOnly), ["b"]);
        assert_eq!(
            names(Selection::Named(vec!["c".into(), "a".into()])),
            ["a", "c"]
        );
        let err = select(&all, &Selection::Named(vec!["z".into()])).unwrap_err();
        assert!(
            err.to_string()
                .contains("no provisioner named `z`: there are a, b, c"),
            "{err}"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn shell_steps() {
        let c = shell_step_command(&["x y".into()], &[("A".into(), "1 2".into())], true);
        assert!(c.contains("sudo -n env 'A=1 2' \"$f\" 'x y'"), "{c}");
        assert!(c.contains("cat > \"$f\""));
        assert!(c.ends_with("exit $rc"));
        let c = shell_step_command(&[], &[], false);
        assert!(!c.contains("sudo"));
    }

    #[test]
    fn file_steps() {
        let c = file_step_command("/etc/app.conf", false, true);
        assert!(c.starts_with("sudo -n sh -c '"), "{c}");
        assert!(c.contains("mv -f"));
        let c = file_step_command("~/site", true, false);
        assert!(c.starts_with("mkdir -p \"$HOME\"/site && tar"), "{c}");
    }

    #[test]
    fn tar_payload_keeps_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("run.sh");
        std::fs::write(&f, "echo").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o750)).unwrap();
        let mut buf = Vec::new();
        write_tar(&f, false, &mut buf).unwrap();
        let mut archive = tar::Archive::new(&buf[..]);
        let entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("payload"));
        assert_eq!(entry.header().mode().unwrap() & 0o777, 0o750);
    }
}
