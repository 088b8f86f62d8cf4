//! The command line: clap definitions and the dispatch to operations.

use crate::boxes::{self, Store};
use crate::envfile::Accel;
use crate::machine::Status;
use crate::machine::project::Project;
use crate::ops::up::{self as lifecycle, UpOptions};
use crate::util::ui;
use anyhow::{Context, Result, bail};
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::path::{Path, PathBuf};

pub mod passthrough;
mod snapshots;
mod verify;

/// Local environments of QEMU/KVM machines, built from code, tested, thrown away.
#[derive(Debug, Parser)]
#[command(name = "env", version, about)]
pub struct Cli {
    /// The Envfile to use (default: the nearest `Envfile` up from here).
    #[arg(long, global = true, value_name = "FILE", env = "ENV_ENVFILE")]
    pub envfile: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Commands,
}

/// env's subcommands.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Write a commented starter Envfile here.
    Init {
        /// Box for the machine.
        #[arg(default_value = "debian-12")]
        r#box: String,
        /// Overwrite an existing Envfile.
        #[arg(short, long)]
        force: bool,
    },
    /// Check the Envfile and report every problem with file, line and field.
    Validate,
    /// Create and boot machines, wait until SSH works, and provision them.
    Up {
        /// Machines (default: all).
        names: Vec<String>,
        /// Accelerator for this boot (overrides ENV_ACCEL and the Envfile).
        #[arg(long, value_parser = parse_accel)]
        accel: Option<Accel>,
        #[command(flatten)]
        provision: ProvisionFlags,
        /// Machines booting at once (default: all of them).
        #[arg(long, value_name = "N", conflicts_with = "no_parallel")]
        parallel: Option<usize>,
        /// One machine after another.
        #[arg(long)]
        no_parallel: bool,
    },
    /// Run the provisioners of running machines again.
    Provision {
        /// Machines (default: all).
        names: Vec<String>,
        /// Only these provisioners (by name, comma-separated), even `run = "never"` ones.
        #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
        with: Vec<String>,
    },
    /// Copy the rsync folders to running machines again.
    Rsync {
        /// Machines (default: all running).
        names: Vec<String>,
    },
    /// Open a shell on a machine, or run a command there (exit status kept).
    Ssh {
        /// Machine (may be left out when there is one).
        name: Option<String>,
        /// Command to run instead of a shell.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Print an OpenSSH config for the machines (for `ssh -F`, Ansible, testinfra).
    SshConfig {
        /// Machines (default: all running).
        names: Vec<String>,
    },
    /// Show the state of each machine.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List a machine's forwarded ports.
    Port {
        /// Machine (may be left out when there is one).
        name: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Shut machines down (ACPI, then QEMU quit, then kill).
    Halt {
        /// Machines (default: all).
        names: Vec<String>,
        /// Stop QEMU at once, without asking the guest.
        #[arg(short, long)]
        force: bool,
    },
    /// Halt and boot machines again.
    Reload {
        /// Machines (default: all).
        names: Vec<String>,
        /// Accelerator for the new boot.
        #[arg(long, value_parser = parse_accel)]
        accel: Option<Accel>,
        #[command(flatten)]
        provision: ProvisionFlags,
    },
    /// Stop machines and delete their disks and state.
    Destroy {
        /// Machines (default: all).
        names: Vec<String>,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
        /// Also delete the machines' kept data disks.
        #[arg(long)]
        purge_disks: bool,
    },
    /// List the machines' data disks.
    Disks {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show a machine's console, provisioning and journal logs (the newest
    /// archived run when the machine was destroyed).
    Logs {
        /// Machine (may be left out when there is one).
        name: Option<String>,
        /// Only the serial console.
        #[arg(long, group = "only")]
        console: bool,
        /// Only the provisioning log.
        #[arg(long, group = "only")]
        provision: bool,
        /// Only the guest's journal (streamed when `[logs] forward = true`).
        #[arg(long, group = "only")]
        journal: bool,
        /// Keep printing what is appended.
        #[arg(short, long)]
        follow: bool,
    },
    /// Check the host: QEMU, KVM, SSH, disk space, 9p, optional tools.
    Doctor {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run the machines' spec checks (one SSH round trip per machine).
    Verify {
        /// Machines (default: all with specs).
        names: Vec<String>,
        #[command(flatten)]
        report: verify::ReportArgs,
    },
    /// The CI lifecycle: destroy leftovers, up, provision, verify, destroy.
    Test {
        /// Machines (default: all).
        names: Vec<String>,
        /// When to destroy at the end.
        #[arg(long, value_enum, default_value = "passing")]
        destroy: crate::ops::test::DestroyWhen,
        /// Provision a second time and fail if a step changed something.
        #[arg(long)]
        idempotent: bool,
        /// Machines booting at once (default: all).
        #[arg(long, value_name = "N")]
        parallel: Option<usize>,
        #[command(flatten)]
        report: verify::ReportArgs,
    },
    /// Spec files: `env spec add RESOURCE NAME...` writes checks from a running machine.
    #[command(subcommand)]
    Spec(verify::SpecCommand),
    /// Bake a machine into a box: cleaned of machine-specific state, flattened, compressed.
    Package {
        /// Machine (may be left out when there is one).
        name: Option<String>,
        /// The .box file to write.
        #[arg(short, long, value_name = "FILE.box")]
        output: PathBuf,
    },
    /// Save, restore, list and delete machine snapshots (`push`/`pop` for a stack).
    #[command(subcommand)]
    Snapshot(snapshots::SnapshotCommand),
    /// Manage base boxes.
    #[command(name = "box", subcommand)]
    Box(BoxCommand),
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// `env box ...`.
#[derive(Debug, Subcommand)]
pub enum BoxCommand {
    /// Build a box from a recipe in boxes/NAME (needs root and mmdebstrap).
    Build(BuildArgs),
    /// Add a box from a .box file or URL, a catalog (Vagrant's box metadata JSON),
    /// or an unpacked box folder (such as one in Vagrant's own store).
    Add {
        /// A .box or catalog (path, file:// or http(s):// URL), or a box folder.
        source: String,
        /// Name in the store (default: the catalog's, the one in Vagrant's store,
        /// or the file name without .box).
        #[arg(long)]
        name: Option<String>,
        /// Catalogs: a version constraint (`1.2.0`, `>= 1.0, < 2`, `~> 1.2`);
        /// a .box: the version to record (default: its info.json, else 0).
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
        /// Expected digest, TYPE:HEX (sha1, sha256, sha384, sha512); a catalog's is used otherwise.
        #[arg(long, value_name = "TYPE:HEX")]
        checksum: Option<String>,
        /// Replace the same name and version.
        #[arg(short, long)]
        force: bool,
    },
    /// List the boxes in the store.
    List {
        /// Show each box's info and package manifest size.
        #[arg(short = 'i', long)]
        info: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Check each box against its catalog for newer versions.
    Outdated {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Add the newer versions the catalogs offer (within each box's constraint).
    Update {
        /// Only this box.
        name: Option<String>,
    },
    /// Remove old versions: keeps the newest of each box and any a machine uses.
    Prune {
        /// Only say what would be removed.
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Write catalogs (NAME.json) for the .box files of a folder, to serve it.
    Catalog {
        /// The folder of .box files.
        dir: PathBuf,
        /// Where the folder is served (https://host/boxes/): box URLs are
        /// written absolute, as Vagrant needs them (it takes a relative URL
        /// for a local path). Without it URLs are relative to the catalog.
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
    },
    /// Remove a box from the store.
    Remove {
        /// Box name.
        name: String,
        /// Only this version.
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
        /// Remove even if machines use it.
        #[arg(short, long)]
        force: bool,
    },
}

/// `--provision` / `--no-provision` of `up` and `reload`.
#[derive(Debug, Args)]
pub struct ProvisionFlags {
    /// Run the provisioners even if they ran before.
    #[arg(long, conflicts_with = "no_provision")]
    pub provision: bool,
    /// Do not run any provisioner.
    #[arg(long)]
    pub no_provision: bool,
}

impl ProvisionFlags {
    /// As [`UpOptions::provision`].
    fn choice(&self) -> Option<bool> {
        if self.provision {
            Some(true)
        } else if self.no_provision {
            Some(false)
        } else {
            None
        }
    }
}

/// `env box build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Recipe name (boxes/NAME).
    pub name: String,
    /// Write the box here instead of adding it to the store.
    #[arg(short, long, value_name = "FILE.box")]
    pub output: Option<PathBuf>,
}

fn parse_accel(text: &str) -> Result<Accel, String> {
    Accel::parse(text)
}

/// Names of our subcommands and global flags, for the `/usr/bin/env` pass-through.
pub fn known_words() -> (Vec<String>, Vec<String>) {
    let cmd = Cli::command();
    let mut subcommands: Vec<String> = Vec::new();
    for sub in cmd.get_subcommands() {
        subcommands.push(sub.get_name().to_string());
        subcommands.extend(sub.get_all_aliases().map(String::from));
    }
    subcommands.push("help".into());
    let mut flags = vec![
        "-h".into(),
        "--help".into(),
        "-V".into(),
        "--version".into(),
    ];
    for arg in cmd.get_arguments() {
        if let Some(long) = arg.get_long() {
            flags.push(format!("--{long}"));
        }
        if let Some(short) = arg.get_short() {
            flags.push(format!("-{short}"));
        }
    }
    (subcommands, flags)
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let envfile = cli.envfile.as_deref();
    match cli.command {
        Commands::Init { r#box, force } => init(&r#box, force),
        Commands::Validate => {
            let project = Project::load(envfile)?;
            let names: Vec<&str> = project
                .envfile
                .machines
                .iter()
                .map(|m| m.name.as_str())
                .collect();
            println!(
                "{} is valid: {} machine(s): {}",
                project.envfile.path.display(),
                names.len(),
                names.join(", ")
            );
            Ok(0)
        }
        Commands::Up {
            names,
            accel,
            provision,
            parallel,
            no_parallel,
        } => {
            let project = Project::load(envfile)?;
            let _lock = project.lock()?;
            let store = Store::open()?;
            let machines = project.select(&names)?;
            let parallel = if no_parallel {
                1
            } else {
                parallel.unwrap_or(machines.len())
            };
            let options = UpOptions {
                accel,
                provision: provision.choice(),
            };
            crate::ops::parallel::up_all(&project, &machines, &store, &options, parallel)?;
            Ok(0)
        }
        Commands::Provision { names, with } => {
            let project = Project::load(envfile)?;
            let _lock = project.lock()?;
            let selection = if with.is_empty() {
                crate::guest::provisioner::Selection::Normal
            } else {
                crate::guest::provisioner::Selection::Named(with)
            };
            for machine in project.select(&names)? {
                lifecycle::provision_machine(&project, machine, &selection)?;
            }
            Ok(0)
        }
        Commands::Rsync { names } => {
            let project = Project::load(envfile)?;
            let _lock = project.lock()?;
            for machine in project.select(&names)? {
                let dir = project.machine_dir(&machine.name);
                match dir.running_state() {
                    Ok(state) => lifecycle::sync_folders(&dir, machine, &state.ssh_user)?,
                    // Without names, machines that are not running are skipped.
                    Err(_) if names.is_empty() => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(0)
        }
        Commands::Ssh { name, command } => ssh(envfile, name.as_deref(), &command),
        Commands::SshConfig { names } => {
            let project = Project::load(envfile)?;
            let mut printed = 0;
            for machine in project.select(&names)? {
                let dir = project.machine_dir(&machine.name);
                match dir.running_state() {
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
        Commands::Status { json } => status(envfile, json),
        Commands::Port { name, json } => port(envfile, name.as_deref(), json),
        Commands::Halt { names, force } => {
            let project = Project::load(envfile)?;
            let _lock = project.lock()?;
            for machine in project.select(&names)? {
                lifecycle::halt(&project, &machine.name, force)?;
            }
            Ok(0)
        }
        Commands::Reload {
            names,
            accel,
            provision,
        } => {
            let project = Project::load(envfile)?;
            let _lock = project.lock()?;
            let store = Store::open()?;
            for machine in project.select(&names)? {
                lifecycle::halt(&project, &machine.name, false)?;
                lifecycle::up(
                    &project,
                    machine,
                    &store,
                    &UpOptions {
                        accel,
                        provision: provision.choice(),
                    },
                )?;
            }
            Ok(0)
        }
        Commands::Destroy {
            names,
            force,
            purge_disks,
        } => {
            let project = Project::load(envfile)?;
            let machines = project.select(&names)?;
            if !force
                && !confirm(&format!(
                    "Destroy {}? Their disks are deleted{}. [y/N] ",
                    if purge_disks {
                        ", kept data disks too"
                    } else {
                        ""
                    },
                    machines
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))?
            {
                bail!("not destroyed (pass -f to skip the question)");
            }
            let _lock = project.lock()?;
            let store = Store::open()?;
            for machine in machines {
                lifecycle::destroy(&project, &machine.name, &store, purge_disks)?;
            }
            Ok(0)
        }
        Commands::Disks { json } => {
            let project = Project::load(envfile)?;
            let mut rows = vec![vec![
                "MACHINE".to_string(),
                "DISK".into(),
                "KEPT".into(),
                "SIZE".into(),
                "USED".into(),
                "MOUNT".into(),
                "FILE".into(),
            ]];
            let mut items = Vec::new();
            for m in &project.envfile.machines {
                let dir = project.machine_dir(&m.name);
                for d in &m.disks {
                    let path = dir.data_disk(d);
                    let used = std::fs::metadata(&path).ok().map(|meta| {
                        use std::os::unix::fs::MetadataExt;
                        meta.blocks() * 512
                    });
                    items.push(serde_json::json!({
                        "machine": m.name, "name": d.name, "keep": d.keep, "size_mib": d.size.mib,
                        "used_bytes": used, "mount": d.mount, "file": path, "exists": used.is_some(),
                    }));
                    rows.push(vec![
                        m.name.clone(),
                        d.name.clone(),
                        if d.keep { "yes".into() } else { "no".into() },
                        d.size.to_string(),
                        used.map(ui::human_bytes)
                            .unwrap_or_else(|| "not created".into()),
                        d.mount.clone().unwrap_or_else(|| "-".into()),
                        path.display().to_string(),
                    ]);
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                print!("{}", ui::table(&rows));
            }
            Ok(0)
        }
        Commands::Logs {
            name,
            console,
            provision,
            journal,
            follow,
        } => {
            let project = Project::load(envfile)?;
            let machine = project.one(name.as_deref())?;
            let dir = project.machine_dir(&machine.name);
            let folder = if dir.root.exists() {
                dir.root.clone()
            } else {
                let runs = crate::ops::logs::runs(&crate::ops::logs::archive_dir(
                    &project.state_dir,
                    &machine.name,
                ));
                let newest = runs
                    .last()
                    .with_context(|| format!("machine `{}` has no logs yet", machine.name))?;
                eprintln!(
                    "machine `{}` is destroyed: showing its newest archived run, {}",
                    machine.name,
                    newest.display()
                );
                newest.clone()
            };
            let all = !(console || provision || journal);
            let mut paths: Vec<PathBuf> = [
                (console, "console.log"),
                (provision, "provision.log"),
                (journal, "journal.log"),
            ]
            .into_iter()
            .filter(|(chosen, _)| all || *chosen)
            .map(|(_, file)| folder.join(file))
            .collect();
            paths.retain(|p| p.exists());
            if paths.is_empty() {
                bail!("machine `{}` has no such log yet", machine.name);
            }
            crate::ops::logs::show(&paths, follow)?;
            Ok(0)
        }
        Commands::Doctor { json } => {
            let probe_kernel = Store::open()?.list()?.into_iter().find_map(|b| {
                b.metadata
                    .env
                    .as_ref()
                    .and_then(|e| e.kernel.as_ref())
                    .map(|k| b.dir.join(k))
            });
            let checks = crate::ops::doctor::run(probe_kernel.as_deref());
            if json {
                println!("{}", serde_json::to_string_pretty(&checks)?);
            } else {
                print!("{}", crate::ops::doctor::render(&checks));
            }
            Ok(
                if checks
                    .iter()
                    .any(|c| c.level == crate::ops::doctor::Level::Fail)
                {
                    1
                } else {
                    0
                },
            )
        }
        Commands::Snapshot(command) => snapshots::run(envfile, command),
        Commands::Package { name, output } => {
            let project = Project::load(envfile)?;
            let machine = project.one(name.as_deref())?;
            let _lock = project.lock()?;
            let store = Store::open()?;
            let file = crate::ops::package::package(&project, machine, &store, &output)?;
            println!(
                "packaged `{}` into {}: add it with `env box add {} --name NAME`",
                machine.name,
                file.display(),
                file.display()
            );
            Ok(0)
        }
        Commands::Verify { names, report } => {
            verify::verify_command(envfile, &names, &report).or_else(verify_error)
        }
        Commands::Test {
            names,
            destroy,
            idempotent,
            parallel,
            report,
        } => verify::test_command(envfile, &names, destroy, idempotent, parallel, &report)
            .or_else(verify_error),
        Commands::Spec(command) => verify::spec_command(envfile, command),
        Commands::Box(command) => box_command(command),
        Commands::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "env", &mut std::io::stdout());
            Ok(0)
        }
    }
}

/// Asks a yes/no question on the terminal; without a terminal the answer is no.
/// `verify` and `test` keep 1 for failed checks: their other errors (a bad
/// spec, a machine not running) exit with 2.
fn verify_error(err: anyhow::Error) -> Result<i32> {
    eprintln!("error: {err:#}");
    Ok(verify::EXIT_ERROR)
}

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

fn init(box_name: &str, force: bool) -> Result<i32> {
    boxes::check_name(box_name)?;
    let path = std::env::current_dir()?.join(crate::envfile::ENVFILE_NAME);
    if path.exists() && !force {
        bail!("{} exists: pass --force to overwrite it", path.display());
    }
    let text = include_str!("../../docs/Envfile.starter").replace("{{BOX}}", box_name);
    crate::util::fs::write_atomic(&path, text.as_bytes())?;
    println!("wrote {}: edit it, then `env up`", path.display());
    Ok(0)
}

fn ssh(envfile: Option<&Path>, name: Option<&str>, command: &[String]) -> Result<i32> {
    use std::os::unix::process::CommandExt;
    let project = Project::load(envfile)?;
    let machine = project.one(name)?;
    let dir = project.machine_dir(&machine.name);
    dir.running_state()?;
    let mut cmd = crate::guest::ssh::command(&dir.ssh_config(), &machine.name);
    if command.is_empty() {
        cmd.arg("-t");
    } else {
        cmd.arg("--").args(command);
    }
    Err(cmd.exec()).context("cannot run ssh")
}

fn status(envfile: Option<&Path>, json: bool) -> Result<i32> {
    let project = Project::load(envfile)?;
    let mut rows = vec![vec![
        "NAME".to_string(),
        "STATE".into(),
        "BOX".into(),
        "SSH".into(),
        "ACCEL".into(),
    ]];
    let mut items = Vec::new();
    for machine in &project.envfile.machines {
        let dir = project.machine_dir(&machine.name);
        let status = dir.status()?;
        let state = dir.load_state()?;
        let ssh = match (&status, state.as_ref().and_then(|s| s.ssh_port)) {
            (Status::Running { .. }, Some(p)) => format!("127.0.0.1:{p}"),
            _ => "-".into(),
        };
        let accel = state
            .as_ref()
            .and_then(|s| s.accel)
            .map(|a| format!("{a:?}").to_lowercase())
            .unwrap_or_else(|| "-".into());
        let box_label = state
            .as_ref()
            .map(|s| format!("{}@{}", s.box_name, s.box_version))
            .unwrap_or_else(|| machine.boxref.name.clone());
        let word = match status {
            Status::Died => "died (QEMU exited without env halt)".to_string(),
            other => other.word().replace('_', " "),
        };
        items.push(serde_json::json!({
            "name": machine.name,
            "state": status.word(),
            "pid": match status { Status::Running { pid } => Some(pid), _ => None },
            "box": box_label,
            "ssh_port": if matches!(status, Status::Running { .. }) { state.as_ref().and_then(|s| s.ssh_port) } else { None },
            "accel": state.as_ref().and_then(|s| s.accel),
            "vm_state": match status {
                Status::Running { .. } => dir.qmp_socket().ok().and_then(|s| crate::backend::qemu::qmp::query_status(&s).ok()),
                _ => None,
            },
            "last_action": state.as_ref().map(|s| s.last_action.clone()),
            "last_error": state.as_ref().and_then(|s| s.last_error.clone()),
        }));
        let colored = match status {
            Status::Running { .. } => ui::paint(&word, "32"),
            Status::Died => ui::paint(&word, "31"),
            _ => word,
        };
        rows.push(vec![machine.name.clone(), colored, box_label, ssh, accel]);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&items)?);
    } else {
        print!("{}", ui::table(&rows));
    }
    Ok(0)
}

fn port(envfile: Option<&Path>, name: Option<&str>, json: bool) -> Result<i32> {
    let project = Project::load(envfile)?;
    let machine = project.one(name)?;
    let dir = project.machine_dir(&machine.name);
    let state = dir.load_state()?;
    let (Status::Running { .. }, Some(state)) = (dir.status()?, state) else {
        bail!(
            "machine `{}` is not running: ports are assigned at boot",
            machine.name
        );
    };
    let mut forwards = Vec::new();
    if let Some(p) = state.ssh_port {
        forwards.push(crate::backend::qemu::args::Forward {
            protocol: crate::envfile::Protocol::Tcp,
            host_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            host_port: p,
            guest_port: machine.ssh_guest_port,
        });
    }
    forwards.extend(state.forwards.iter().cloned());
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

fn box_command(command: BoxCommand) -> Result<i32> {
    match command {
        BoxCommand::Build(args) => {
            let recipe = boxes::build::find_recipe(&args.name, &std::env::current_dir()?)?;
            match args.output {
                Some(output) => {
                    boxes::build::run_recipe(&recipe, &output)?;
                    println!("built {}", output.display());
                }
                None => {
                    let store = Store::open()?;
                    let dir = crate::util::paths::data_home()?;
                    std::fs::create_dir_all(&dir)?;
                    let tmp = tempfile::Builder::new()
                        .prefix(".build-")
                        .tempdir_in(&dir)?;
                    let output = tmp.path().join(format!("{}.box", args.name));
                    boxes::build::run_recipe(&recipe, &output)?;
                    let b = add_with_progress(&store, &output, &args.name, None, true)?;
                    println!("built and added {} version {}", b.name, b.version);
                }
            }
            Ok(0)
        }
        BoxCommand::Add {
            source,
            name,
            version,
            checksum,
            force,
        } => {
            let store = Store::open()?;
            let request = boxes::fetch::AddRequest {
                source,
                name,
                version,
                checksum: checksum
                    .as_deref()
                    .map(boxes::fetch::Checksum::parse)
                    .transpose()?,
                force,
            };
            let b = boxes::fetch::add(&store, &request)?;
            println!(
                "added {} version {} ({})",
                b.name,
                b.version,
                ui::human_bytes(b.size)
            );
            Ok(0)
        }
        BoxCommand::Outdated { json } => {
            let checks = boxes::maintain::outdated(&Store::open()?, None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&checks)?);
                return Ok(0);
            }
            let mut rows = vec![vec![
                "NAME".to_string(),
                "CURRENT".into(),
                "LATEST".into(),
                "STATUS".into(),
            ]];
            for f in &checks {
                rows.push(vec![
                    f.name.clone(),
                    f.current.clone(),
                    f.latest.clone().unwrap_or_else(|| "-".into()),
                    match (&f.note, f.outdated()) {
                        (Some(note), _) => note.clone(),
                        (None, true) => "newer version available: `env box update`".into(),
                        (None, false) => "up to date".into(),
                    },
                ]);
            }
            print!("{}", ui::table(&rows));
            Ok(0)
        }
        BoxCommand::Update { name } => {
            let added = boxes::maintain::update(&Store::open()?, name.as_deref())?;
            if added.is_empty() {
                println!("every box is up to date");
            }
            for b in added {
                println!("added {} version {}", b.name, b.version);
            }
            Ok(0)
        }
        BoxCommand::Prune { dry_run } => {
            let plan = boxes::maintain::prune(&Store::open()?, dry_run)?;
            for item in &plan {
                let verb = match (item.remove, dry_run) {
                    (true, true) => "would remove",
                    (true, false) => "removed",
                    (false, _) => "kept",
                };
                println!("{verb} {} {} ({})", item.name, item.version, item.reason);
            }
            Ok(0)
        }
        BoxCommand::Catalog { dir, base_url } => {
            for path in boxes::maintain::write_catalogs(&dir, base_url.as_deref())? {
                println!("wrote {}", path.display());
            }
            Ok(0)
        }
        BoxCommand::List { info, json } => {
            let boxes = Store::open()?.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&boxes)?);
                return Ok(0);
            }
            if boxes.is_empty() {
                println!("no boxes: `env box add FILE --name NAME` or `env box build debian-12`");
                return Ok(0);
            }
            let mut rows = vec![vec![
                "NAME".to_string(),
                "VERSION".into(),
                "PROVIDER".into(),
                "ARCH".into(),
                "SIZE".into(),
            ]];
            for b in &boxes {
                rows.push(vec![
                    b.name.clone(),
                    b.version.clone(),
                    b.metadata.provider.clone(),
                    b.info
                        .as_ref()
                        .and_then(|i| i.get("architecture"))
                        .and_then(|a| a.as_str())
                        .unwrap_or("amd64")
                        .to_string(),
                    ui::human_bytes(b.size),
                ]);
            }
            print!("{}", ui::table(&rows));
            if info {
                for b in &boxes {
                    println!("\n{} {}:", b.name, b.version);
                    if let Some(serde_json::Value::Object(map)) = &b.info {
                        for (k, v) in map {
                            println!(
                                "  {k}: {}",
                                v.as_str()
                                    .map(String::from)
                                    .unwrap_or_else(|| v.to_string())
                            );
                        }
                    }
                    if let Some(packages) = b.packages() {
                        println!(
                            "  manifest: {} packages ({}/packages.txt)",
                            packages.lines().count(),
                            b.dir.display()
                        );
                    }
                }
            }
            Ok(0)
        }
        BoxCommand::Remove {
            name,
            version,
            force,
        } => {
            for b in Store::open()?.remove(&name, version.as_deref(), force)? {
                println!("removed {} version {}", b.name, b.version);
            }
            Ok(0)
        }
    }
}

fn add_with_progress(
    store: &Store,
    file: &Path,
    name: &str,
    version: Option<&str>,
    force: bool,
) -> Result<boxes::StoredBox> {
    let total = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let bar = ui::bytes_bar(total, &format!("adding {name} from {}", file.display()));
    let result = store.add_archive(file, name, version, force, &mut |n| bar.set_position(n));
    bar.finish_and_clear();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn known_words_cover_subcommands_and_global_flags() {
        let (subcommands, flags) = known_words();
        for sub in ["up", "ssh", "ssh-config", "box", "completions", "help"] {
            assert!(subcommands.contains(&sub.to_string()), "{sub}");
        }
        for flag in ["--envfile", "--help", "-h", "--version", "-V"] {
            assert!(flags.contains(&flag.to_string()), "{flag}");
        }
        assert!(
            !flags.contains(&"-i".to_string()),
            "-i belongs to the system's env"
        );
    }

    #[test]
    fn ssh_takes_a_command_after_the_double_dash() {
        let cli = Cli::try_parse_from(["env", "ssh", "web", "--", "ls", "-la"]).unwrap();
        match cli.command {
            Commands::Ssh { name, command } => {
                assert_eq!(name.as_deref(), Some("web"));
                assert_eq!(command, ["ls", "-la"]);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["env", "ssh", "--", "true"]).unwrap();
        assert!(matches!(cli.command, Commands::Ssh { name: None, .. }));
    }

    #[test]
    fn accel_flag_is_checked() {
        assert!(Cli::try_parse_from(["env", "up", "--accel", "tcg"]).is_ok());
        assert!(Cli::try_parse_from(["env", "up", "--accel", "hvf"]).is_err());
    }
}
