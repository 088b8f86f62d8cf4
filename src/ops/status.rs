//! What `env status`, `env port` and `env disks` report, gathered here and
//! rendered by the command line.

use crate::backend::{Details, SshEndpoint};
use crate::envfile::{Machine, Protocol};
use crate::machine::Status;
use crate::machine::project::Project;
use crate::machine::state::{Accelerator, Forward};
use crate::ops::Ctx;
use anyhow::{Result, bail};
use serde::Serialize;
use std::path::PathBuf;

/// One machine's status.
#[derive(Debug, Clone)]
pub struct MachineStatus {
    /// Machine name.
    pub name: String,
    /// Its status.
    pub status: Status,
    /// `box@version` once created, else the Envfile's box name.
    pub box_label: String,
    /// Where SSH answers, while it runs.
    pub ssh: Option<SshEndpoint>,
    /// Accelerator of the last boot.
    pub accel: Option<Accelerator>,
    /// Live facts from the backend, while it runs.
    pub details: Details,
    /// Last action and its error.
    pub last_action: Option<String>,
    /// The last action's error, if it failed.
    pub last_error: Option<String>,
    /// Why the hypervisor holds a running machine stopped.
    pub paused: Option<String>,
    /// What changed in the Envfile since it booted or was provisioned.
    pub drift: Drift,
}

/// What changed in the Envfile since a running machine booted (fields a
/// reload applies) or was provisioned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// Envfile fields that differ from what it booted with.
    pub reload: Vec<String>,
    /// Its provisioners, or what they read, changed since they last ran.
    pub provision: bool,
}

impl Drift {
    /// One line for people, or `None` when nothing changed.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.reload.is_empty() {
            parts.push(format!(
                "{} changed since it booted: `env reload`",
                self.reload.join(", ")
            ));
        }
        if self.provision {
            parts.push("provisioning changed since it ran: `env provision`".into());
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// What changed for a running machine: its recorded boot settings and
/// provisioning digest against the Envfile now.
fn drift_of(
    project: &Project,
    machine: &Machine,
    dir: &crate::machine::MachineDir,
    state: &crate::machine::MachineState,
) -> Drift {
    let now = crate::machine::drift::boot_settings(&crate::ops::created_machine(machine, dir));
    let provision = match (&state.provisioned_with, state.provisioned) {
        (Some(then), true) => {
            crate::machine::cache::key::provisioners_digest(machine, &project.envfile.dir)
                .map_or(true, |d| &d != then)
        }
        _ => false,
    };
    Drift {
        reload: crate::machine::drift::changed(&state.booted_with, &now),
        provision,
    }
}

/// The status of every machine of the project, in Envfile order.
pub fn statuses(ctx: &Ctx, project: &Project) -> Result<Vec<MachineStatus>> {
    let mut all = Vec::new();
    for machine in &project.envfile.machines {
        let dir = project.machine_dir(&machine.name);
        let status = ctx.status(&dir)?;
        let state = dir.load_state()?;
        let running = status == Status::Running;
        all.push(MachineStatus {
            name: machine.name.clone(),
            status,
            box_label: state
                .as_ref()
                .map(|s| format!("{}@{}", s.box_name, s.box_version))
                .unwrap_or_else(|| machine.boxref.name.clone()),
            ssh: state
                .as_ref()
                .and_then(|s| s.ssh_endpoint())
                .filter(|_| running),
            accel: state.as_ref().and_then(|s| s.accel),
            paused: if running {
                ctx.backend.paused(&dir)
            } else {
                None
            },
            details: if running {
                ctx.backend.details(&dir)
            } else {
                Details::default()
            },
            last_action: state.as_ref().map(|s| s.last_action.clone()),
            last_error: state.as_ref().and_then(|s| s.last_error.clone()),
            drift: match (&state, running) {
                (Some(s), true) => drift_of(project, machine, &dir, s),
                _ => Drift::default(),
            },
        });
    }
    Ok(all)
}

/// A running machine's forwarded ports, SSH first.
pub fn ports(ctx: &Ctx, project: &Project, machine: &Machine) -> Result<Vec<Forward>> {
    let dir = project.machine_dir(&machine.name);
    let state = dir.load_state()?;
    let (Status::Running, Some(state)) = (ctx.status(&dir)?, state) else {
        bail!(
            "machine `{}` is not running: ports are assigned at boot",
            machine.name
        );
    };
    let mut forwards = Vec::new();
    if let Some(ssh) = state.ssh_endpoint()
        && let Ok(host_ip) = ssh.host.parse()
    {
        forwards.push(Forward {
            protocol: Protocol::Tcp,
            host_ip,
            host_port: ssh.port,
            guest_port: machine.ssh_guest_port,
        });
    }
    forwards.extend(state.forwards.iter().cloned());
    // Those the port watcher made (`ports_auto`), while it runs.
    forwards.extend(
        crate::guest::ports_auto::current(&dir)
            .into_iter()
            .map(|f| Forward {
                protocol: Protocol::Tcp,
                host_ip: f.host_ip,
                host_port: f.host_port,
                guest_port: f.guest_port,
            }),
    );
    Ok(forwards)
}

/// One machine of any project, for `env global-status`.
#[derive(Debug, Clone, Serialize)]
pub struct GlobalEntry {
    /// The project folder.
    pub project: PathBuf,
    /// Machine name.
    pub name: String,
    /// `running`, `halted`, `died`, `paused`, or `gone` (its folder was
    /// deleted without `env destroy`: `--prune` forgets it).
    pub state: String,
    /// `box@version`.
    #[serde(rename = "box")]
    pub box_label: String,
    /// Where SSH answers, while it runs.
    pub ssh: Option<SshEndpoint>,
    /// The forwarded ports, while it runs.
    pub forwards: Vec<Forward>,
}

/// Every machine env created with this box store, any project, from the
/// store's record of which machines use which box (kept true by `up` and
/// `destroy`).
pub fn global(ctx: &Ctx, store: &crate::boxes::Store) -> Vec<GlobalEntry> {
    let mut out = Vec::new();
    for record in store.all_users() {
        let name = record
            .state_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = crate::machine::MachineDir {
            name: name.clone(),
            root: record.state_dir.clone(),
        };
        let status = match record.present() {
            false => None,
            true => ctx.status(&dir).ok(),
        };
        let state = match status {
            None => "gone".to_string(),
            Some(Status::Running) if ctx.backend.paused(&dir).is_some() => "paused".into(),
            Some(s) => s.word().to_string(),
        };
        let saved = match status {
            Some(Status::Running) => dir.load_state().ok().flatten(),
            _ => None,
        };
        out.push(GlobalEntry {
            project: record.project().map(PathBuf::from).unwrap_or_default(),
            name,
            state,
            box_label: format!("{}@{}", record.box_name, record.box_version),
            ssh: saved.as_ref().and_then(|s| s.ssh_endpoint()),
            forwards: saved.map(|s| s.forwards).unwrap_or_default(),
        });
    }
    out
}

/// Forgets the records of machines whose folder is gone (a project
/// deleted without `env destroy`); returns their state folders.
pub fn prune_global(store: &crate::boxes::Store) -> Result<Vec<PathBuf>> {
    let mut gone = Vec::new();
    for record in store.all_users().into_iter().filter(|r| !r.present()) {
        store.forget(&record)?;
        gone.push(record.state_dir);
    }
    Ok(gone)
}

/// One data disk, for `env disks`.
#[derive(Debug, Clone, Serialize)]
pub struct DiskInfo {
    /// Machine name.
    pub machine: String,
    /// Disk name.
    pub name: String,
    /// Kept across destroy.
    pub keep: bool,
    /// Size in MiB.
    pub size_mib: u64,
    /// Blocks used on the host, when the image exists.
    pub used_bytes: Option<u64>,
    /// Mount point in the guest.
    pub mount: Option<String>,
    /// The image file.
    pub file: PathBuf,
    /// Whether the image exists yet.
    pub exists: bool,
}

/// Every data disk of the project.
pub fn disks(project: &Project) -> Vec<DiskInfo> {
    use std::os::unix::fs::MetadataExt;
    let mut items = Vec::new();
    for m in &project.envfile.machines {
        let dir = project.machine_dir(&m.name);
        for d in &m.disks {
            let path = dir.data_disk(d);
            let used = std::fs::metadata(&path)
                .ok()
                .map(|meta| meta.blocks() * 512);
            items.push(DiskInfo {
                machine: m.name.clone(),
                name: d.name.clone(),
                keep: d.keep,
                size_mib: d.size.mib,
                used_bytes: used,
                mount: d.mount.clone(),
                file: path,
                exists: used.is_some(),
            });
        }
    }
    items
}
