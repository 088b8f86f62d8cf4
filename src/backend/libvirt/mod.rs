//! The libvirt backend: machines on a libvirt host, local (`qemu:///system`)
//! or remote (`qemu+ssh://`), driven through `virsh`. The box's files are
//! volumes of a storage pool (uploaded once per host), each machine's disks
//! are overlay volumes on them, its domain is defined from a pure plan
//! (`xml.rs`), and its guest is reached over SSH: on a remote host through
//! one SSH master to that host (`tunnel.rs`) to QEMU's user-mode port
//! forward on the host's loopback.

mod boot;
pub mod copies;
mod create;
pub mod domain_ports;
pub mod record;
mod snapshots;
pub mod tunnel;
pub mod virsh;
pub mod volumes;
pub mod xml;

use super::qemu::{img, seed};
use super::{
    Backend, BackendError, BootRequest, Booted, Details, DiskRef, SnapshotInfo, SnapshotOp,
};
use crate::boxes::StoredBox;
use crate::boxes::metadata::Metadata;
use crate::envfile::Machine;
use crate::envfile::libvirt::{LibvirtTarget, MachineBackend, SshHop, parse_uri};
use crate::machine::{MachineDir, Status};
use anyhow::{Context, Result, bail};
use record::Record;
use std::path::Path;
use std::time::{Duration, Instant};
use virsh::{Virsh, state_word};

/// How often a boot picks other hypervisor ports when one is taken there.
const PORT_RETRIES: usize = 3;

/// Machines on libvirt hosts.
pub struct LibvirtBackend;

/// The machine's record, or an error saying it is not a libvirt machine.
fn record(dir: &MachineDir) -> Result<Record> {
    Record::load(dir)?.with_context(|| format!("machine `{}` has no libvirt record", dir.name))
}

/// Owned words of one virsh command.
fn words(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// The SSH hop of a record's URI (None: libvirt on this host).
fn hop(rec: &Record) -> Result<Option<SshHop>> {
    Ok(parse_uri(&rec.uri).map_err(anyhow::Error::msg)?.ssh)
}

/// The developer's host name and user, for the project identity.
fn owner() -> (String, String) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let user = std::env::var("USER").unwrap_or_else(|_| {
        // SAFETY: getuid has no preconditions and cannot fail.
        unsafe { libc::getuid() }.to_string()
    });
    (host, user)
}

/// The project state folder of a machine folder (`.envstate/`).
fn state_dir(dir: &MachineDir) -> &Path {
    dir.root
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."))
}

/// A port on the hypervisor host's loopback, not chosen by anyone else
/// likely: random in 20000-59999 (env cannot look there; a taken one makes
/// QEMU fail, and the boot picks again).
fn hypervisor_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    20000 + (h.finish() % 40000) as u16
}

/// The target of a machine that runs on libvirt.
fn target(machine: &Machine) -> Result<&LibvirtTarget> {
    match &machine.backend {
        MachineBackend::Libvirt(t) => Ok(t),
        MachineBackend::Local => bail!("machine `{}` is not a libvirt machine", machine.name),
    }
}

/// The host's state of the domain, mapped to env's status.
fn status_of(domstate: Option<&str>, env_thinks_running: bool) -> Status {
    match domstate.map(state_word) {
        Some("running" | "paused" | "blocked" | "in shutdown" | "pmsuspended") => Status::Running,
        _ if env_thinks_running => Status::Died,
        _ => Status::Halted,
    }
}

impl LibvirtBackend {
    /// The commands that make `dir`'s hypervisor-side files before a start
    /// (host key, console log, cloud-init seed), run in one batch with the
    /// start.
    fn prepare_volumes(
        &self,
        virsh: &Virsh,
        rec: &Record,
        dir: &MachineDir,
        meta: &Metadata,
        seed_files: Option<&super::SeedFiles>,
    ) -> Result<Vec<Vec<String>>> {
        let present = virsh.volumes(&rec.pool)?;
        let pool = rec.pool.as_str();
        let mut commands: Vec<Vec<String>> = Vec::new();
        let mut replace = |name: &str, file: &Path| -> Result<()> {
            if present.iter().any(|p| p == name) {
                commands.push(words(&["vol-delete", "--pool", pool, name]));
            }
            let size = format!("{}b", std::fs::metadata(file)?.len());
            commands.push(words(&[
                "vol-create-as",
                "--pool",
                pool,
                name,
                &size,
                "--format",
                "raw",
            ]));
            commands.push(words(&[
                "vol-upload",
                "--pool",
                pool,
                name,
                &file.display().to_string(),
            ]));
            Ok(())
        };
        let fw_cfg_key = meta.env.as_ref().is_some_and(|e| e.ssh_host_key_fw_cfg);
        if fw_cfg_key && dir.host_key().exists() && !present.contains(&rec.host_key_volume()) {
            replace(&rec.host_key_volume(), &dir.host_key())?;
        }
        if let Some(files) = seed_files {
            seed::write_seed(&dir.seed_image(), files)?;
            replace(&rec.seed_volume(), &dir.seed_image())?;
        }
        if !present.contains(&rec.console_volume()) {
            commands.push(words(&[
                "vol-create-as",
                "--pool",
                pool,
                &rec.console_volume(),
                "0b",
                "--format",
                "raw",
            ]));
        }
        Ok(commands)
    }

    /// The project's isolated network (made when missing), or the one the
    /// Envfile names.
    fn private_network(virsh: &Virsh, rec: &Record, named: Option<&str>) -> Result<String> {
        let name = named
            .map(String::from)
            .unwrap_or_else(|| record::network_name(&rec.project_id));
        // Two machines of the project booting at once make it once.
        let key = crate::util::paths::short_hash(Path::new(&format!("{}\n{name}", virsh.uri)));
        let _lock = crate::util::lock::exclusive(
            &crate::util::paths::runtime_dir()?.join(format!("libvirt-net-{key}.lock")),
            "the project's network on the libvirt host",
        )?;
        let info = virsh.try_run(&["net-info", &name])?;
        if !info.status.success() {
            if named.is_some() {
                bail!("libvirt host {} has no network `{name}`", virsh.uri);
            }
            // No <forward> and no <ip>: a bridge the machines share and
            // nothing else, not even the hypervisor host.
            let xml = format!(
                "<network>\n  <name>{}</name>\n  <bridge stp='off'/>\n</network>\n",
                xml::escape(&name)
            );
            virsh.run_with_file(&["net-define"], &xml)?;
        }
        let info = virsh.run(&["net-info", &name])?;
        if info
            .lines()
            .any(|l| l.starts_with("Active:") && l.contains("no"))
        {
            virsh
                .run(&["net-start", &name])
                .with_context(|| format!("cannot start network `{name}`"))?;
        }
        Ok(name)
    }

    /// The UEFI firmware code the host offers (from its domain
    /// capabilities).
    fn uefi_code(virsh: &Virsh) -> Result<String> {
        let caps = virsh.run(&["domcapabilities", "--arch", "x86_64", "--machine", "q35"])?;
        caps.lines()
            .map(str::trim)
            .filter_map(|l| l.strip_prefix("<value>")?.strip_suffix("</value>"))
            .find(|v| v.contains("OVMF_CODE") && !v.contains("secboot") && !v.contains(".ms."))
            .map(String::from)
            .with_context(|| {
                format!(
                    "libvirt host {} offers no UEFI firmware (install ovmf there)",
                    virsh.uri
                )
            })
    }

    /// The pool's folder on the host (volumes are files in it); the error
    /// says how to make a pool that is missing.
    fn pool_path(virsh: &Virsh, pool: &str) -> Result<String> {
        let Ok(xml) = virsh.run(&["pool-dumpxml", pool]) else {
            bail!(
                "libvirt host {} has no storage pool `{pool}`: create it with `{}` \
                 (docs/backends.md), or name another with `libvirt.pool`",
                virsh.uri,
                virsh::pool_setup_hint(&virsh.uri, pool)
            );
        };
        xml.split_once("<path>")
            .and_then(|(_, rest)| rest.split_once("</path>"))
            .map(|(p, _)| p.to_string())
            .with_context(|| {
                format!("storage pool `{pool}` has no folder (env needs a `dir` pool)")
            })
    }

    /// Ends the SSH master to a remote host, with its forwards.
    fn close_tunnel(dir: &MachineDir, rec: &Record) {
        if let (Ok(Some(hop)), Ok(control)) = (hop(rec), dir.socket_path("lv")) {
            tunnel::close(&hop, &control);
        }
    }

    /// Stops the domain at once.
    fn destroy_domain(virsh: &Virsh, domain: &str) {
        let _ = virsh.try_run(&["destroy", domain]);
    }

    /// The volume of one of the machine's disks.
    fn volume_of(rec: &Record, disk: DiskRef<'_>) -> Result<String> {
        match disk {
            DiskRef::Box(i) => rec.box_disks.get(i).cloned(),
            DiskRef::Data(d) => rec
                .data_position(&d.name)
                .map(|i| rec.data_disks[i].0.clone()),
        }
        .with_context(|| format!("no volume for {}", disk.label()))
    }

    /// The disks of the domain in target order: box overlays, data disks.
    fn disk_targets(rec: &Record) -> usize {
        rec.box_disks.len() + rec.data_disks.len()
    }
}

impl Backend for LibvirtBackend {
    fn hypervisor(&self) -> &'static str {
        "libvirt"
    }

    fn host_from_guest(&self) -> &'static str {
        // QEMU's user network: the hypervisor host's loopback.
        "10.0.2.2"
    }

    fn create_disks(&self, dir: &MachineDir, stored: &StoredBox, machine: &Machine) -> Result<()> {
        self.make_disks(dir, stored, machine)
    }

    fn create_data_disks(&self, dir: &MachineDir, machine: &Machine) -> Result<()> {
        let mut rec = record(dir)?;
        if machine.disks.is_empty() && rec.data_disks.is_empty() {
            return Ok(());
        }
        let virsh = Virsh::new(&rec.uri);
        let present = virsh.volumes(&rec.pool)?;
        let mut data = Vec::new();
        for disk in &machine.disks {
            let name = record::data_volume(
                &rec.project_id,
                &machine.name,
                &disk.name,
                disk.format.name(),
            );
            if !present.contains(&name) {
                virsh.vol_create(&rec.pool, &name, disk.size.bytes(), disk.format.name(), &[])?;
            }
            data.push((name, disk.keep));
        }
        rec.data_disks = data;
        rec.save(dir)
    }

    fn start(&self, request: &BootRequest<'_>) -> Result<Booted> {
        self.boot(request)
    }

    fn status(&self, dir: &MachineDir) -> Result<Status> {
        let Some(state) = dir.load_state()? else {
            return Ok(Status::NotCreated);
        };
        let rec = record(dir)?;
        let domstate = Virsh::new(&rec.uri).domstate(&rec.domain)?;
        Ok(status_of(domstate.as_deref(), state.running))
    }

    fn still_running(&self, dir: &MachineDir) -> Result<()> {
        let rec = record(dir)?;
        let domstate = Virsh::new(&rec.uri).domstate(&rec.domain)?;
        if status_of(domstate.as_deref(), true) != Status::Running {
            return Err(BackendError::Stopped(format!(
                "the domain `{}` stopped during boot on {} (last console lines: {})",
                rec.domain,
                rec.uri,
                self.console_tail(dir, 5).replace('\n', " | ")
            ))
            .into());
        }
        Ok(())
    }

    fn power_off(&self, dir: &MachineDir, grace: Duration) -> bool {
        let Ok(rec) = record(dir) else { return true };
        let virsh = Virsh::new(&rec.uri);
        if virsh
            .try_run(&["shutdown", &rec.domain, "--mode", "acpi"])
            .is_err()
        {
            return false;
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            match virsh.domstate(&rec.domain) {
                Ok(s) if status_of(s.as_deref(), false) != Status::Running => {
                    Self::close_tunnel(dir, &rec);
                    return true;
                }
                Err(_) => return false,
                _ => std::thread::sleep(Duration::from_millis(250)),
            }
        }
        false
    }

    fn stop(&self, dir: &MachineDir) {
        let Ok(rec) = record(dir) else { return };
        Self::destroy_domain(&Virsh::new(&rec.uri), &rec.domain);
        Self::close_tunnel(dir, &rec);
    }

    fn remove(&self, dir: &MachineDir) {
        let Ok(rec) = record(dir) else { return };
        let virsh = Virsh::new(&rec.uri);
        Self::destroy_domain(&virsh, &rec.domain);
        // The console log outlives the machine in its archive.
        let _ = self.console_tail(dir, 0);
        let _ = virsh.try_run(&[
            "undefine",
            &rec.domain,
            "--nvram",
            "--snapshots-metadata",
            "--managed-save",
        ]);
        let mut volumes = rec.own_volumes();
        if let Ok(present) = virsh.volumes_refreshed(&rec.pool) {
            volumes.extend(copies::all_copies(&rec, &present));
        }
        for volume in volumes {
            let _ = virsh.vol_delete(&rec.pool, &volume);
        }
        Self::close_tunnel(dir, &rec);
        if let Some(network) = &rec.own_network {
            // The project's network goes with its last machine on the host.
            let prefix = format!("env-{}-", rec.project_id);
            let others = virsh
                .run(&["list", "--all", "--name"])
                .map(|out| out.lines().any(|l| l.trim().starts_with(&prefix)))
                .unwrap_or(true);
            if !others {
                let _ = virsh.try_run(&["net-destroy", network]);
                let _ = virsh.try_run(&["net-undefine", network]);
            }
        }
    }

    fn details(&self, dir: &MachineDir) -> Details {
        let vm_state = record(dir).ok().and_then(|rec| {
            Virsh::new(&rec.uri)
                .domstate(&rec.domain)
                .ok()
                .flatten()
                .map(|s| state_word(&s).to_string())
        });
        Details {
            pid: None,
            vm_state,
        }
    }

    fn paused(&self, dir: &MachineDir) -> Option<String> {
        let rec = record(dir).ok()?;
        let state = Virsh::new(&rec.uri).domstate(&rec.domain).ok()??;
        (state.contains("I/O error")).then(|| {
            format!(
                "a write to its disk failed on the libvirt host {} (is storage pool `{}` full?)",
                rec.uri, rec.pool
            )
        })
    }

    fn may_be_paused(&self, _dir: &MachineDir) -> bool {
        // No cheap look at a remote pool's free space: `env status` asks.
        false
    }

    fn resume(&self, dir: &MachineDir) -> Result<()> {
        let rec = record(dir)?;
        Virsh::new(&rec.uri).run(&["resume", &rec.domain]).map(drop)
    }

    fn pause(&self, dir: &MachineDir) -> Result<()> {
        let rec = record(dir)?;
        Virsh::new(&rec.uri)
            .run(&["suspend", &rec.domain])
            .map(drop)
    }

    fn console_tail(&self, dir: &MachineDir, lines: usize) -> String {
        // The console log is a volume: fetched through libvirt into the
        // machine's folder, where `env logs` and the archive find it.
        if let Ok(rec) = record(dir) {
            let _ =
                Virsh::new(&rec.uri).download(&rec.pool, &rec.console_volume(), &dir.console_log());
        }
        super::tail_file(&dir.console_log(), lines)
    }

    fn box_disk_count(&self, dir: &MachineDir) -> usize {
        record(dir).map_or(0, |r| r.box_disks.len())
    }

    fn snapshots(&self, dir: &MachineDir, disk: DiskRef<'_>) -> Result<Vec<SnapshotInfo>> {
        self.list_snapshots(dir, disk)
    }

    fn snapshot(
        &self,
        dir: &MachineDir,
        op: SnapshotOp,
        tag: &str,
        disks: &[DiskRef<'_>],
        live: bool,
    ) -> Result<()> {
        self.snapshot_op(dir, op, tag, disks, live)
    }

    fn set_guest_clock(&self, dir: &MachineDir) -> Result<()> {
        let rec = record(dir)?;
        Virsh::new(&rec.uri)
            .run(&["domtime", &rec.domain, "--now"])
            .map(drop)
    }

    fn export_disk(&self, dir: &MachineDir, index: usize, out: &Path) -> Result<u64> {
        let rec = record(dir)?;
        let state = dir
            .load_state()?
            .with_context(|| format!("machine `{}` is not created", dir.name))?;
        let volume = rec
            .box_disks
            .get(index)
            .with_context(|| format!("machine `{}` has no box disk {index}", dir.name))?;
        let meta = Metadata::load(&state.box_dir)?;
        let base = state.box_dir.join(
            meta.disk_files()
                .get(index)
                .context("the box has fewer disks than the machine")?,
        );
        let tmp = tempfile::Builder::new()
            .prefix(".export-")
            .tempfile_in(out.parent().unwrap_or(Path::new(".")))?;
        Virsh::new(&rec.uri).download(&rec.pool, volume, tmp.path())?;
        // The overlay names its base by the host's path: the same box file
        // is in the local store.
        img::rebase_unsafe(tmp.path(), &base, meta.disk_format())?;
        img::flatten(tmp.path(), out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_states_map_to_statuses() {
        assert_eq!(status_of(Some("running (booted)"), false), Status::Running);
        assert_eq!(status_of(Some("paused (I/O error)"), true), Status::Running);
        assert_eq!(
            status_of(Some("shut off (destroyed)"), false),
            Status::Halted
        );
        assert_eq!(status_of(Some("shut off (crashed)"), true), Status::Died);
        assert_eq!(status_of(None, false), Status::Halted);
        assert_eq!(status_of(None, true), Status::Died);
    }

    #[test]
    fn hypervisor_ports_stay_in_their_range() {
        for _ in 0..100 {
            assert!((20000..60000).contains(&hypervisor_port()));
        }
    }
}
