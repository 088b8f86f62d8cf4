//! The machine commands' rendering: status, ports, disks, logs, ssh,
//! ssh-config, destroy's question, init, validate, doctor.

use crate::boxes::Store;
use crate::envfile::triggers::TriggerAction;
use crate::machine::Status;
use crate::machine::project::Project;
use crate::ops::logs::LogChoice;
use crate::ops::{self, Ctx};
use crate::util::ui;
use anyhow::{Context, Result, bail};
use std::path::Path;

/// `env validate`.
pub fn validate(envfile: Option<&Path>, print: bool) -> Result<i32> {
    let project = Project::load(envfile)?;
    if print {
        let path = &project.envfile.path;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        print!("{}", crate::envfile::read::expand(path, &text)?);
    }
    let problems = ops::verify::spec_problems(&project);
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("error: {problem:#}");
        }
        eprintln!(
            "{} problem(s) in the spec files of {}",
            problems.len(),
            project.envfile.path.display()
        );
        return Ok(2);
    }
    let names: Vec<&str> = project
        .envfile
        .machines
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    let summary = format!(
        "{} is valid: {} machine(s): {}",
        project.envfile.path.display(),
        names.len(),
        names.join(", ")
    );
    // With --print, stdout is the Envfile alone (a file a tool can read).
    match print {
        true => eprintln!("{summary}"),
        false => println!("{summary}"),
    }
    Ok(0)
}

/// `env global-status [--json] [--prune]`.
pub fn global_status(ctx: &Ctx, json: bool, prune: bool) -> Result<i32> {
    let store = crate::boxes::Store::open()?;
    if prune {
        for gone in ops::status::prune_global(&store)? {
            ui::line(&format!("forgot {} (its folder is gone)", gone.display()));
        }
    }
    let all = ops::status::global(ctx, &store);
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(0);
    }
    if all.is_empty() {
        println!("no machines: env creates them with `env up` in a project");
        return Ok(0);
    }
    let mut rows = vec![vec![
        "NAME".to_string(),
        "STATE".into(),
        "BOX".into(),
        "PORTS".into(),
        "PROJECT".into(),
    ]];
    for m in &all {
        let mut ports: Vec<String> = m.ssh.iter().map(|s| format!("ssh {s}")).collect();
        ports.extend(m.forwards.iter().map(|f| {
            format!(
                "{}:{}->{}/{}",
                f.host_ip, f.host_port, f.guest_port, f.protocol
            )
        }));
        let state = match m.state.as_str() {
            "running" => ui::paint("running", "32"),
            "gone" => ui::paint("gone (forget it with --prune)", "33"),
            other => other.replace('_', " "),
        };
        rows.push(vec![
            m.name.clone(),
            state,
            m.box_label.clone(),
            if ports.is_empty() {
                "-".into()
            } else {
                ports.join(", ")
            },
            m.project.display().to_string(),
        ]);
    }
    print!("{}", ui::table(&rows));
    Ok(0)
}

/// `NAME:PATH` when NAME is a machine of the project, else the one machine
/// and the whole text as its path.
fn machine_and_path<'p>(
    project: &'p Project,
    spec: &str,
) -> Result<(&'p crate::envfile::Machine, String)> {
    if let Some((name, path)) = spec.split_once(':')
        && let Some(machine) = project.envfile.machine(name)
    {
        return Ok((machine, path.to_string()));
    }
    Ok((project.one(None)?, spec.to_string()))
}

/// `env upload SRC [NAME:]DEST`.
pub fn upload(ctx: &Ctx, envfile: Option<&Path>, src: &Path, dest: &str) -> Result<i32> {
    let project = Project::load(envfile)?;
    let (machine, path) = machine_and_path(&project, dest)?;
    let dir = project.machine_dir(&machine.name);
    let bytes = ops::transfer::upload(ctx, &dir, src, &path)?;
    ui::step(
        &machine.name,
        &format!(
            "uploaded {} to {path} ({})",
            src.display(),
            ui::human_bytes(bytes)
        ),
    );
    Ok(0)
}

/// `env download [NAME:]SRC DEST`.
pub fn download(ctx: &Ctx, envfile: Option<&Path>, src: &str, dest: &Path) -> Result<i32> {
    let project = Project::load(envfile)?;
    let (machine, path) = machine_and_path(&project, src)?;
    let dir = project.machine_dir(&machine.name);
    let written = ops::transfer::download(ctx, &dir, &path, dest)?;
    ui::step(
        &machine.name,
        &format!("downloaded {path} to {}", written.display()),
    );
    Ok(0)
}

/// `env ssh-config`: the ssh_config of running machines.
pub fn ssh_config(ctx: &Ctx, envfile: Option<&Path>, names: &[String]) -> Result<i32> {
    let project = Project::load(envfile)?;
    let mut printed = 0;
    for machine in project.select(names)? {
        let dir = project.machine_dir(&machine.name);
        match ctx.running_state(&dir) {
            Ok(_) => {
                print!("{}", std::fs::read_to_string(dir.ssh_config())?);
                printed += 1;
            }
            Err(_) if names.is_empty() => {}
            Err(e) => return Err(e),
        }
    }
    if printed == 0 {
        bail!("no machine is running: `env up` first");
    }
    Ok(0)
}

/// The named machines, or (none named) those in status `wanted`.
fn named_or_in<'a>(
    ctx: &Ctx,
    project: &'a Project,
    names: &[String],
    wanted: Status,
) -> Result<Vec<&'a crate::envfile::Machine>> {
    let mut machines = project.select(names)?;
    if names.is_empty() {
        machines.retain(|m| ctx.status(&project.machine_dir(&m.name)).ok() == Some(wanted));
    }
    Ok(machines)
}

/// `env suspend`: the named machines, or every running one.
pub fn suspend(ctx: &Ctx, envfile: Option<&Path>, names: &[String]) -> Result<i32> {
    let project = Project::load(envfile)?;
    let _lock = project.lock()?;
    let machines = named_or_in(ctx, &project, names, Status::Running)?;
    if machines.is_empty() {
        ui::line("no machine is running: nothing to suspend");
    }
    for machine in machines {
        ops::triggers::around(ctx, &project, &[machine], TriggerAction::Suspend, || {
            ops::suspend::suspend(ctx, &project, machine)
        })?;
    }
    Ok(0)
}

/// `env resume`: the named machines, or every suspended one, started where
/// they were (provisioned after when asked).
pub fn resume(ctx: &Ctx, envfile: Option<&Path>, names: &[String], provision: bool) -> Result<i32> {
    let project = Project::load(envfile)?;
    let _lock = project.lock()?;
    let machines = named_or_in(ctx, &project, names, Status::Suspended)?;
    if machines.is_empty() {
        ui::line("no machine is suspended: nothing to resume");
    }
    for machine in &machines {
        let status = ctx.status(&project.machine_dir(&machine.name))?;
        if !matches!(status, Status::Suspended | Status::Running) {
            bail!(
                "machine `{0}` is not suspended ({1}): `env up {0}` boots it",
                machine.name,
                status.word().replace('_', " ")
            );
        }
    }
    let options = ops::up::UpOptions {
        accel: None,
        provision: provision.then_some(true),
        cache: ops::up::CacheMode::Off,
    };
    let store = Store::open()?;
    for machine in machines {
        ops::triggers::around(ctx, &project, &[machine], TriggerAction::Resume, || {
            ops::up::up(ctx, &project, machine, &store, &options)
        })?;
    }
    Ok(0)
}

/// `env destroy`, asking first unless `force`.
pub fn destroy(
    ctx: &Ctx,
    envfile: Option<&Path>,
    names: &[String],
    force: bool,
    purge_disks: bool,
) -> Result<i32> {
    let project = Project::load(envfile)?;
    let machines = project.select(names)?;
    if !force
        && !confirm(&format!(
            "Destroy {}? Their disks are deleted{}. [y/N] ",
            machines
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if purge_disks {
                ", kept data disks too"
            } else {
                ""
            },
        ))?
    {
        bail!("not destroyed (pass -f to skip the question)");
    }
    let _lock = project.lock()?;
    let store = Store::open()?;
    for machine in machines {
        ops::triggers::around(ctx, &project, &[machine], TriggerAction::Destroy, || {
            ops::down::destroy(ctx, &project, &machine.name, &store, purge_disks)
        })?;
    }
    Ok(0)
}

/// `env disks`.
pub fn disks(envfile: Option<&Path>, json: bool) -> Result<i32> {
    let project = Project::load(envfile)?;
    let items = ops::status::disks(&project);
    if json {
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(0);
    }
    let mut rows = vec![vec![
        "MACHINE".to_string(),
        "DISK".into(),
        "KEPT".into(),
        "SIZE".into(),
        "USED".into(),
        "MOUNT".into(),
        "FILE".into(),
    ]];
    for d in &items {
        rows.push(vec![
            d.machine.clone(),
            d.name.clone(),
            if d.keep { "yes".into() } else { "no".into() },
            crate::util::size::Size { mib: d.size_mib }.to_string(),
            d.used_bytes
                .map(ui::human_bytes)
                .unwrap_or_else(|| "not created".into()),
            d.mount.clone().unwrap_or_else(|| "-".into()),
            d.file.display().to_string(),
        ]);
    }
    print!("{}", ui::table(&rows));
    Ok(0)
}

/// `env logs`.
pub fn logs(
    envfile: Option<&Path>,
    name: Option<&str>,
    choice: LogChoice,
    follow: bool,
) -> Result<i32> {
    let project = Project::load(envfile)?;
    let machine = project.one(name)?;
    let dir = project.machine_dir(&machine.name);
    if dir.root.exists() {
        // A machine on a libvirt host: its console log is fetched from there.
        ops::Ctx::local().backend.console_tail(&dir, 0);
    }
    let (paths, archived) = ops::logs::chosen(&project, &machine.name, choice)?;
    if let Some(run) = archived {
        eprintln!(
            "machine `{}` is destroyed: showing its newest archived run, {}",
            machine.name,
            run.display()
        );
    }
    ops::logs::show(&paths, follow)?;
    Ok(0)
}

/// `env doctor`: exit 1 when a check fails.
pub fn doctor(
    envfile: Option<&Path>,
    json: bool,
    libvirt: Option<&str>,
    pool: &str,
) -> Result<i32> {
    let probe_kernel = Store::open()?.list()?.into_iter().find_map(|b| {
        b.metadata
            .env
            .as_ref()
            .and_then(|e| e.kernel.as_ref())
            .map(|k| b.dir.join(k))
    });
    let mut checks = ops::doctor::run(probe_kernel.as_deref());
    // The libvirt hosts: the one asked for, and those of the project here.
    let mut hosts: Vec<(String, String)> = libvirt
        .map(|uri| (uri.to_string(), pool.to_string()))
        .into_iter()
        .collect();
    if let Ok(project) = Project::load(envfile) {
        for m in &project.envfile.machines {
            if let crate::envfile::libvirt::MachineBackend::Libvirt(t) = &m.backend {
                hosts.push((t.uri.clone(), t.pool.clone()));
            }
        }
    }
    hosts.sort();
    hosts.dedup();
    for (uri, pool) in &hosts {
        if let Err(e) = crate::envfile::libvirt::parse_uri(uri) {
            anyhow::bail!("--libvirt: {e}");
        }
        checks.extend(ops::doctor_libvirt::run(uri, pool));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print!("{}", ops::doctor::render(&checks));
    }
    let failed = checks.iter().any(|c| c.level == ops::doctor::Level::Fail);
    Ok(if failed { 1 } else { 0 })
}

/// Asks a yes/no question on the terminal; without a terminal the answer is no.
fn confirm(question: &str) -> Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// `env init`: a starter Envfile here.
pub fn init(box_name: &str, force: bool) -> Result<i32> {
    crate::boxes::check_name(box_name)?;
    let path = std::env::current_dir()?.join(crate::envfile::ENVFILE_NAME);
    if path.exists() && !force {
        bail!("{} exists: pass --force to overwrite it", path.display());
    }
    let text = include_str!("../../docs/Envfile.starter").replace("{{BOX}}", box_name);
    crate::util::fs::write_atomic(&path, text.as_bytes())?;
    println!("wrote {}: edit it, then `env up`", path.display());
    Ok(0)
}

/// `env ssh`: replaces this process with ssh (exit status kept).
pub fn ssh(
    ctx: &Ctx,
    envfile: Option<&Path>,
    name: Option<&str>,
    command: &[String],
) -> Result<i32> {
    use std::os::unix::process::CommandExt;
    let project = Project::load(envfile)?;
    let machine = project.one(name)?;
    let dir = project.machine_dir(&machine.name);
    ctx.running_state(&dir)?;
    // The slot stays taken by the ssh this process becomes.
    if let Some(slot) = crate::guest::ssh::exec::session_slot(&dir) {
        slot.keep_across_exec()?;
        std::mem::forget(slot);
    }
    let mut options: &[&str] = &[];
    if machine.ssh_forward_agent {
        // A session of its own, so the agent forwarded is this shell's (a
        // multiplexed session would forward the master's).
        match std::env::var_os("SSH_AUTH_SOCK") {
            Some(_) => options = &["ForwardAgent=yes", "ControlPath=none"],
            None => ui::step(
                &machine.name,
                "forward_agent is set but no SSH agent runs here (SSH_AUTH_SOCK is not set)",
            ),
        }
    }
    let mut cmd = crate::guest::ssh::exec::command_with(&dir.ssh_config(), options, &machine.name);
    if command.is_empty() {
        cmd.arg("-t");
    } else {
        cmd.arg("--").args(command);
    }
    Err(cmd.exec()).context("cannot run ssh")
}

/// `env status`.
pub fn status(ctx: &Ctx, envfile: Option<&Path>, json: bool) -> Result<i32> {
    let project = Project::load(envfile)?;
    let all = ops::status::statuses(ctx, &project)?;
    if json {
        let items: Vec<serde_json::Value> = all
            .iter()
            .map(|m| {
                serde_json::json!({
                    "name": m.name,
                    "state": if m.paused.is_some() { "paused" } else { m.status.word() },
                    "paused": m.paused,
                    "pid": m.details.pid,
                    "box": m.box_label,
                    "ssh_port": m.ssh.as_ref().map(|e| e.port),
                    "ssh": m.ssh,
                    "accel": m.accel,
                    "vm_state": m.details.vm_state,
                    "last_action": m.last_action,
                    "last_error": m.last_error,
                    "drift": m.drift,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(0);
    }
    let mut rows = vec![vec![
        "NAME".to_string(),
        "STATE".into(),
        "BOX".into(),
        "SSH".into(),
        "ACCEL".into(),
    ]];
    for m in &all {
        let word = match m.status {
            Status::Running if m.paused.is_some() => {
                format!("paused ({})", m.paused.as_deref().unwrap_or_default())
            }
            Status::Died => format!(
                "died ({} exited without env halt)",
                ctx.backend.hypervisor()
            ),
            Status::Running => match m.drift.describe() {
                Some(drift) => format!("running ({drift})"),
                None => "running".into(),
            },
            other => other.word().replace('_', " "),
        };
        let colored = match m.status {
            Status::Running if m.paused.is_some() => ui::paint(&word, "31"),
            Status::Running if m.drift.describe().is_some() => ui::paint(&word, "33"),
            Status::Running => ui::paint(&word, "32"),
            Status::Died => ui::paint(&word, "31"),
            _ => word,
        };
        rows.push(vec![
            m.name.clone(),
            colored,
            m.box_label.clone(),
            m.ssh
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "-".into()),
            m.accel
                .map(|a| format!("{a:?}").to_lowercase())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    print!("{}", ui::table(&rows));
    Ok(0)
}

/// `env port`.
pub fn port(ctx: &Ctx, envfile: Option<&Path>, name: Option<&str>, json: bool) -> Result<i32> {
    let project = Project::load(envfile)?;
    let machine = project.one(name)?;
    let forwards = ops::status::ports(ctx, &project, machine)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&forwards)?);
    } else {
        for f in forwards {
            println!(
                "{:>6}/{} (guest) => {}:{} (host)",
                f.guest_port, f.protocol, f.host_ip, f.host_port
            );
        }
    }
    Ok(0)
}
