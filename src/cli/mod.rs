//! The command line: clap definitions and the dispatch to operations. It
//! parses, calls one operation, and renders; no business logic lives here.

use crate::boxes::Store;
use crate::envfile::Accel;
use crate::envfile::triggers::TriggerAction;
use crate::guest::provisioner::Selection;
use crate::machine::project::Project;
use crate::ops::logs::LogChoice;
use crate::ops::up::UpOptions;
use crate::ops::{self, Ctx};
use anyhow::Result;
use boxes::BoxCommand;
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::path::PathBuf;

mod boxes;
mod cache;
mod machines;
pub mod passthrough;
mod snapshots;
mod verify;

/// What the Envfile does beyond the commands, listed under `env --help`.
const ENVFILE_FEATURES: &str = "Envfile features (docs/envfile.md): machines, ports and `ports_auto` (ports the guest opens, \
forwarded as they open), shared folders (9p, virtiofs, rsync), private network, provisioners (shell, \
file, ansible, docker), `[[triggers]]` (host commands or guest scripts around commands), \
`proxy = \"inherit\"`, `ssh.forward_agent`, `${VARIABLES}`, specs, data disks, a platform x suite matrix, \
`backend = \"libvirt\"` (machines on a libvirt host, docs/backends.md).";

/// Local environments of QEMU/KVM machines, built from code, tested, thrown away.
#[derive(Debug, Parser)]
#[command(name = "env", version, about, after_help = ENVFILE_FEATURES)]
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
    /// Check the Envfile and the spec files it names; report every problem with file, line and field.
    Validate {
        /// Print the Envfile as env reads it: `${NAME}` variables expanded.
        #[arg(long)]
        print: bool,
    },
    /// Create and boot machines, wait until SSH works, and provision them.
    Up {
        /// Machines (default: all).
        names: Vec<String>,
        /// Accelerator for this boot (overrides ENV_ACCEL and the Envfile).
        #[arg(long, value_parser = parse_accel)]
        accel: Option<Accel>,
        #[command(flatten)]
        provision: ProvisionFlags,
        #[command(flatten)]
        cache: cache::CacheFlags,
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
    /// Every machine env created on this host with this box store, any
    /// project: its project folder, state, box and ports.
    GlobalStatus {
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
        /// Forget machines whose project folder was deleted without
        /// `env destroy`.
        #[arg(long)]
        prune: bool,
    },
    /// Copy a file or folder of the host into a running machine (over its
    /// SSH connection, modes kept).
    Upload {
        /// The host file or folder.
        src: PathBuf,
        /// Where in the machine: a folder to copy into, or the new name;
        /// `NAME:PATH` picks the machine when there are several.
        #[arg(value_name = "[NAME:]DEST")]
        dest: String,
    },
    /// Copy a file or folder out of a running machine to the host.
    Download {
        /// The file or folder in the machine; `NAME:PATH` picks the machine
        /// when there are several.
        #[arg(value_name = "[NAME:]SRC")]
        src: String,
        /// Where on the host: a folder to copy into, or the new name.
        dest: PathBuf,
    },
    /// Copy the rsync folders to running machines again (`--watch`: at every change).
    Rsync {
        /// Machines (default: all running).
        names: Vec<String>,
        /// Keep watching the host folders and copy each change within a
        /// second (excludes honoured) until stopped.
        #[arg(long)]
        watch: bool,
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
    /// The automatic port forwarding watcher of one machine (started by
    /// env itself, in the background).
    #[command(name = "internal-watch-ports", hide = true)]
    InternalWatchPorts {
        /// Machine folder, name, host address, skipped port ranges.
        args: Vec<String>,
    },
    /// Save running machines' memory to their disks and stop them
    /// (`env resume` or `env up` starts them where they were).
    Suspend {
        /// Machines (default: all running).
        names: Vec<String>,
    },
    /// Start suspended machines where they were suspended.
    Resume {
        /// Machines (default: all suspended).
        names: Vec<String>,
        /// Run the provisioners after resuming.
        #[arg(long)]
        provision: bool,
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
    /// Check the host: QEMU, KVM, SSH, disk space, 9p, optional tools; and
    /// the libvirt hosts of the project's machines (or `--libvirt URI`).
    Doctor {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Also check this libvirt URI (its pool: `--pool`).
        #[arg(long, value_name = "URI")]
        libvirt: Option<String>,
        /// The storage pool checked with `--libvirt`.
        #[arg(long, default_value = "default", requires = "libvirt")]
        pool: String,
    },
    /// Run spec checks on machines, on `[targets.*]` hosts, or on any SSH
    /// host (`--ssh USER@HOST --spec FILE`): one SSH round trip each.
    Verify {
        /// Machines or targets (default: all machines with specs).
        names: Vec<String>,
        #[command(flatten)]
        remote: verify::RemoteArgs,
        #[command(flatten)]
        report: verify::ReportArgs,
    },
    /// The CI lifecycle: destroy leftovers, up, provision, verify, destroy.
    Test(verify::TestArgs),
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
        /// The box name written into the box (default: the source box's).
        #[arg(long = "name", value_name = "BOX")]
        box_name: Option<String>,
        /// The box version written into the box (default: the source box's
        /// version and the time, `1.0.0-TIME`).
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
    },
    /// Save, restore, list and delete machine snapshots (`push`/`pop` for a stack).
    #[command(subcommand)]
    Snapshot(snapshots::SnapshotCommand),
    /// Manage base boxes.
    #[command(name = "box", subcommand)]
    Box(BoxCommand),
    /// The provisioning cache: `env cache list`, `env cache prune`.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
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
    let ctx = &Ctx::local();
    match cli.command {
        Commands::Init { r#box, force } => machines::init(&r#box, force),
        Commands::Validate { print } => machines::validate(envfile, print),
        Commands::Up {
            names,
            accel,
            provision,
            cache,
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
                cache: match cache.enabled(project.envfile.cache.enabled) {
                    true => ops::up::CacheMode::RestoreAndKeep,
                    false => ops::up::CacheMode::Off,
                },
            };
            ops::triggers::around(ctx, &project, &machines, TriggerAction::Up, || {
                ops::parallel::up_all(ctx, &project, &machines, &store, &options, parallel)
            })?;
            Ok(0)
        }
        Commands::Provision { names, with } => {
            let project = Project::load(envfile)?;
            let _lock = project.lock()?;
            let selection = if with.is_empty() {
                Selection::Normal
            } else {
                Selection::Named(with)
            };
            for machine in project.select(&names)? {
                ops::triggers::around(ctx, &project, &[machine], TriggerAction::Provision, || {
                    ops::provision::provision_machine(ctx, &project, machine, &selection)
                })?;
            }
            Ok(0)
        }
        Commands::Rsync { names, watch } => {
            let project = Project::load(envfile)?;
            let machines = project.select(&names)?;
            if watch {
                ops::watch::watch(ctx, &project, &machines)?;
                return Ok(0);
            }
            let _lock = project.lock()?;
            ops::provision::rsync(ctx, &project, &machines, !names.is_empty())?;
            Ok(0)
        }
        Commands::GlobalStatus { json, prune } => machines::global_status(ctx, json, prune),
        Commands::Upload { src, dest } => machines::upload(ctx, envfile, &src, &dest),
        Commands::Download { src, dest } => machines::download(ctx, envfile, &src, &dest),
        Commands::Ssh { name, command } => machines::ssh(ctx, envfile, name.as_deref(), &command),
        Commands::SshConfig { names } => machines::ssh_config(ctx, envfile, &names),
        Commands::Status { json } => machines::status(ctx, envfile, json),
        Commands::Port { name, json } => machines::port(ctx, envfile, name.as_deref(), json),
        Commands::InternalWatchPorts { args } => {
            let (dir, settings) = crate::guest::ports_auto::WatchSettings::from_args(&args)?;
            crate::guest::ports_auto::run(&dir, &settings)?;
            Ok(0)
        }
        Commands::Suspend { names } => machines::suspend(ctx, envfile, &names),
        Commands::Resume { names, provision } => machines::resume(ctx, envfile, &names, provision),
        Commands::Halt { names, force } => {
            let project = Project::load(envfile)?;
            let _lock = project.lock()?;
            for machine in project.select(&names)? {
                ops::triggers::around(ctx, &project, &[machine], TriggerAction::Halt, || {
                    ops::down::halt(ctx, &project, &machine.name, force)
                })?;
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
            let options = UpOptions {
                accel,
                provision: provision.choice(),
                cache: ops::up::CacheMode::Off,
            };
            for machine in project.select(&names)? {
                ops::triggers::around(ctx, &project, &[machine], TriggerAction::Reload, || {
                    ops::down::halt(ctx, &project, &machine.name, false)?;
                    ops::up::up(ctx, &project, machine, &store, &options)
                })?;
            }
            Ok(0)
        }
        Commands::Destroy {
            names,
            force,
            purge_disks,
        } => machines::destroy(ctx, envfile, &names, force, purge_disks),
        Commands::Disks { json } => machines::disks(envfile, json),
        Commands::Logs {
            name,
            console,
            provision,
            journal,
            follow,
        } => {
            let choice = LogChoice {
                console,
                provision,
                journal,
            };
            machines::logs(envfile, name.as_deref(), choice, follow)
        }
        Commands::Doctor {
            json,
            libvirt,
            pool,
        } => machines::doctor(envfile, json, libvirt.as_deref(), &pool),
        Commands::Snapshot(command) => snapshots::run(envfile, command),
        Commands::Package {
            name,
            output,
            box_name,
            version,
        } => {
            let project = Project::load(envfile)?;
            let machine = project.one(name.as_deref())?;
            let _lock = project.lock()?;
            let store = Store::open()?;
            let identity = ops::package::BoxIdentity {
                name: box_name,
                version,
            };
            let file = ops::package::package(ctx, &project, machine, &store, &output, &identity)?;
            println!(
                "packaged `{}` into {}: add it with `env box add {} --name {}`",
                machine.name,
                file.display(),
                file.display(),
                identity.name.as_deref().unwrap_or("NAME")
            );
            Ok(0)
        }
        Commands::Verify {
            names,
            remote,
            report,
        } => verify::verify_command(envfile, &names, &remote, &report).or_else(verify_error),
        Commands::Test(args) => verify::test_command(envfile, &args).or_else(verify_error),
        Commands::Spec(command) => verify::spec_command(envfile, command),
        Commands::Box(command) => boxes::run(command),
        Commands::Cache(command) => cache::run(envfile, command),
        Commands::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "env", &mut std::io::stdout());
            Ok(0)
        }
    }
}

/// `verify` and `test` keep 1 for failed checks: their other errors (a bad
/// spec, a machine not running) exit with 2.
fn verify_error(err: anyhow::Error) -> Result<i32> {
    eprintln!("error: {err:#}");
    Ok(verify::EXIT_ERROR)
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
