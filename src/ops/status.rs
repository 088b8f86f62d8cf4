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
    Ok(forwards)
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
