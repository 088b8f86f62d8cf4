//! The libvirt backend: machines on a libvirt host, local (`qemu:///system`)
//! or remote (`qemu+ssh://`), driven through `virsh`. The box's files are
//! volumes of a storage pool (uploaded once per host), each machine's disks
//! are overlay volumes on them, its domain is defined from a pure plan
//! (`xml.rs`), and its guest is reached over SSH: on a remote host through
//! one SSH master to that host (`tunnel.rs`) to QEMU's user-mode port
//! forward on the host's loopback.

pub mod record;
pub mod tunnel;
pub mod virsh;
pub mod volumes;
pub mod xml;

use super::qemu::{img, plan as qemu_plan, ports, seed};
use super::{
    Backend, BackendError, BootRequest, Booted, Details, DiskRef, SnapshotInfo, SnapshotOp,
};
use crate::boxes::StoredBox;
use crate::boxes::metadata::{Firmware, Metadata};
use crate::envfile::libvirt::{LibvirtTarget, MachineBackend, SshHop, parse_uri};
use crate::envfile::{Accel, Machine, Protocol};
use crate::machine::state::{Accelerator, Forward, SshEndpoint};
use crate::machine::{MachineDir, Status};
use anyhow::{Context, Result, bail};
use record::Record;
use std::net::{IpAddr, Ipv4Addr};
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
    /// Checks that the pool exists and is active; the error says how to
    /// make it.
    fn check_pool(virsh: &Virsh, pool: &str) -> Result<()> {
        let out = virsh.try_run(&["pool-info", pool])?;
        if !out.status.success() {
            bail!(
                "libvirt host {} has no storage pool `{pool}`: create it there with \
                 `virsh pool-define-as {pool} dir --target /var/lib/libvirt/images && virsh pool-start {pool} && virsh pool-autostart {pool}` \
                 (docs/backends.md), or name another with `libvirt.pool`",
                virsh.uri
            );
        }
        let info = String::from_utf8_lossy(&out.stdout);
        if info
            .lines()
            .any(|l| l.starts_with("State:") && !l.contains("running"))
        {
            virsh
                .run(&["pool-start", pool])
                .with_context(|| format!("storage pool `{pool}` is not active"))?;
        }
        Ok(())
    }

    /// Makes `dir`'s hypervisor-side files that must exist before a start:
    /// host key, console log, cloud-init seed.
    fn prepare_volumes(
        &self,
        virsh: &Virsh,
        rec: &Record,
        dir: &MachineDir,
        meta: &Metadata,
        seed_files: Option<&super::SeedFiles>,
    ) -> Result<()> {
        let present = virsh.volumes(&rec.pool)?;
        let replace = |name: &str, file: &Path| -> Result<()> {
            virsh.vol_delete(&rec.pool, name)?;
            let size = std::fs::metadata(file)?.len();
            virsh.vol_create(&rec.pool, name, size, "raw", &[])?;
            virsh.upload(&rec.pool, name, file)
        };
        let fw_cfg_key = meta.env.as_ref().is_some_and(|e| e.ssh_host_key_fw_cfg);
        if fw_cfg_key && dir.host_key().exists() && !present.contains(&rec.host_key_volume()) {
            replace(&rec.host_key_volume(), &dir.host_key())?;
        }
        if !present.contains(&rec.console_volume()) {
            virsh.vol_create(&rec.pool, &rec.console_volume(), 0, "raw", &[])?;
        }
        if let Some(files) = seed_files {
            seed::write_seed(&dir.seed_image(), files)?;
            replace(&rec.seed_volume(), &dir.seed_image())?;
        }
        Ok(())
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

    /// Whether the host offers KVM.
    fn host_has_kvm(virsh: &Virsh) -> bool {
        virsh
            .try_run(&["domcapabilities", "--virttype", "kvm", "--arch", "x86_64"])
            .is_ok_and(|o| o.status.success())
    }

    /// The pool's folder on the host (where libvirt writes files it owns).
    fn pool_path(virsh: &Virsh, pool: &str) -> Result<String> {
        let xml = virsh.run(&["pool-dumpxml", pool])?;
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
        let t = target(machine)?;
        let virsh = Virsh::new(&t.uri);
        Self::check_pool(&virsh, &t.pool)?;
        let (host, user) = owner();
        let project_id = record::project_id(state_dir(dir), &host, &user);
        let domain = record::domain_name(&project_id, &machine.name);
        let meta = &stored.metadata;
        let mut files: Vec<(String, String)> = meta
            .disk_files()
            .iter()
            .map(|f| (f.display().to_string(), meta.disk_format().to_string()))
            .collect();
        let boot = meta.env.as_ref();
        let kernel = boot.and_then(|e| e.kernel.clone());
        let initrd = boot.and_then(|e| e.initrd.clone());
        for f in [&kernel, &initrd].into_iter().flatten() {
            files.push((f.clone(), "raw".into()));
        }
        let box_volumes = volumes::ensure_box(&virsh, &t.pool, stored, &files, &machine.name)?;
        let disks = meta.disk_files().len();
        let box_gib = meta.virtual_size.unwrap_or(0);
        if let Some(size) = machine.disk
            && size.bytes() < box_gib * 1024 * 1024 * 1024
        {
            bail!(
                "machine `{}`: disk {} is smaller than the box's {} GiB: disks can grow, not shrink",
                machine.name,
                size,
                box_gib
            );
        }
        let mut overlays = Vec::new();
        let made = (|| -> Result<()> {
            for (i, base) in box_volumes.iter().take(disks).enumerate() {
                let name = format!("{domain}-disk{i}.qcow2");
                let local = stored.dir.join(&files[i].0);
                let box_bytes = img::virtual_size(&local)?;
                let bytes = match machine.disk {
                    Some(size) if i == 0 => size.bytes().max(box_bytes),
                    _ => box_bytes,
                };
                // A leftover of an earlier attempt of this same machine.
                virsh.vol_delete(&t.pool, &name)?;
                virsh.vol_create(
                    &t.pool,
                    &name,
                    bytes,
                    "qcow2",
                    &[
                        "--backing-vol",
                        &base.name,
                        "--backing-vol-format",
                        &base.format,
                    ],
                )?;
                overlays.push(name);
            }
            Ok(())
        })();
        if let Err(e) = made {
            for o in &overlays {
                let _ = virsh.vol_delete(&t.pool, o);
            }
            return Err(e);
        }
        let mut volumes = box_volumes.into_iter().map(|v| v.name);
        let rec = Record {
            uri: t.uri.clone(),
            pool: t.pool.clone(),
            project_id,
            domain,
            box_disks: overlays,
            box_volumes: volumes.by_ref().take(disks).collect(),
            kernel: kernel.as_ref().and_then(|_| volumes.next()),
            initrd: initrd.as_ref().and_then(|_| volumes.next()),
            data_disks: Vec::new(),
            own_network: None,
        };
        rec.save(dir)
    }

    fn create_data_disks(&self, dir: &MachineDir, machine: &Machine) -> Result<()> {
        let mut rec = record(dir)?;
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
        let (dir, machine, state) = (request.dir, request.machine, request.state);
        let t = target(machine)?;
        let meta = Metadata::load(&state.box_dir).with_context(|| {
            format!(
                "the box of machine `{}` is gone from the store",
                machine.name
            )
        })?;
        self.create_data_disks(dir, machine)?;
        let mut rec = record(dir)?;
        let virsh = Virsh::new(&rec.uri);
        let hop = hop(&rec)?;
        self.prepare_volumes(&virsh, &rec, dir, &meta, request.seed.as_ref())?;
        let kvm = match request.accel {
            Accel::Kvm => true,
            Accel::Tcg => false,
            Accel::Auto => Self::host_has_kvm(&virsh),
        };
        let pool_path = Self::pool_path(&virsh, &rec.pool)?;
        let in_pool = |volume: &str| format!("{pool_path}/{volume}");
        let uefi = match qemu_plan::firmware(machine, &meta) {
            Firmware::Bios => None,
            Firmware::Uefi => Some(xml::Uefi {
                code: Self::uefi_code(&virsh)?,
                vars: in_pool(&rec.vars_volume()),
            }),
        };
        let private_network = match &request.private_link {
            Some(link) => {
                let name = Self::private_network(&virsh, &rec, t.network.as_deref())?;
                if t.network.is_none() {
                    rec.own_network = Some(name.clone());
                    rec.save(dir)?;
                }
                Some((name, link.mac.clone()))
            }
            None => None,
        };
        let mut disks: Vec<xml::PoolDisk> = rec
            .box_disks
            .iter()
            .map(|v| xml::PoolDisk {
                volume: v.clone(),
                format: "qcow2".into(),
                serial: None,
                readonly: false,
            })
            .collect();
        for (disk, (volume, _)) in machine.disks.iter().zip(&rec.data_disks) {
            disks.push(xml::PoolDisk {
                volume: volume.clone(),
                format: disk.format.name().into(),
                serial: Some(format!("env-{}", disk.name)),
                readonly: false,
            });
        }
        if request.seed.is_some() {
            disks.push(xml::PoolDisk {
                volume: rec.seed_volume(),
                format: "raw".into(),
                serial: Some("env-cidata".into()),
                readonly: true,
            });
        }
        let kernel = match (&rec.kernel, meta.env.as_ref()) {
            (Some(k), Some(boot)) => Some(xml::KernelBoot {
                kernel: in_pool(k),
                initrd: rec.initrd.as_deref().map(in_pool),
                cmdline: qemu_plan::with_user_net_address(
                    boot.cmdline
                        .clone()
                        .unwrap_or_else(|| "root=/dev/vda rw console=ttyS0".into()),
                ),
            }),
            _ => None,
        };
        let fw_cfg = if meta.env.as_ref().is_some_and(|e| e.ssh_host_key_fw_cfg)
            && dir.host_key().exists()
        {
            vec![(
                qemu_plan::HOST_KEY_FW_CFG.to_string(),
                in_pool(&rec.host_key_volume()),
            )]
        } else {
            Vec::new()
        };
        // The developer's side of the forwarded ports.
        let local_forwards = ports::plan_forwards(
            &machine.name,
            &machine.ports,
            ports::is_free,
            ports::pick_free,
        )?;
        if hop.is_some()
            && let Some(i) = machine
                .ports
                .iter()
                .position(|p| p.protocol == Protocol::Udp)
        {
            bail!(
                "machine `{}`: ports[{i}] is UDP, and ports of a machine on a remote libvirt host \
                 come through SSH, which carries TCP only",
                machine.name
            );
        }
        let (host, user) = owner();
        let mut attempt = 0;
        let (ssh_port, hyp_ports) = loop {
            // On this host, QEMU binds the developer's ports itself; on a
            // remote one, its own loopback, reached through the tunnel.
            let (ssh_port, hyp_forwards): (u16, Vec<Forward>) = match &hop {
                None => (
                    ports::ssh_forward(machine.ssh_guest_port)?.host_port,
                    local_forwards.clone(),
                ),
                Some(_) => (
                    hypervisor_port(),
                    local_forwards
                        .iter()
                        .map(|f| Forward {
                            host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                            host_port: hypervisor_port(),
                            ..f.clone()
                        })
                        .collect(),
                ),
            };
            let ssh = Forward {
                protocol: Protocol::Tcp,
                host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                host_port: ssh_port,
                guest_port: machine.ssh_guest_port,
            };
            let mut netdev = String::from("user,id=net0");
            for f in std::iter::once(&ssh).chain(&hyp_forwards) {
                netdev.push(',');
                netdev.push_str(&super::qemu::args::hostfwd_rule(f));
            }
            let plan = xml::DomainPlan {
                name: rec.domain.clone(),
                identity: xml::Identity {
                    project_id: rec.project_id.clone(),
                    project_dir: state_dir(dir)
                        .parent()
                        .unwrap_or(Path::new("."))
                        .display()
                        .to_string(),
                    owner: format!("{user}@{host}"),
                    machine: machine.name.clone(),
                },
                kvm,
                cpus: machine.cpus,
                memory_mib: machine.memory.mib,
                pool: rec.pool.clone(),
                disks: disks.clone(),
                kernel: kernel.clone(),
                uefi: uefi.clone(),
                fw_cfg: fw_cfg.clone(),
                console_log: in_pool(&rec.console_volume()),
                user_netdev: netdev,
                user_mac: crate::machine::USER_NIC_MAC.into(),
                private_network: private_network.clone(),
                extra_qemu_args: machine.qemu_args.clone(),
            };
            virsh
                .run_with_file(&["define"], &xml::domain_xml(&plan))
                .with_context(|| format!("cannot define the domain of `{}`", machine.name))?;
            let started = match request.resume_snapshot {
                Some(tag) => virsh.run(&["snapshot-revert", &rec.domain, tag, "--running"]),
                None => virsh.run(&["start", &rec.domain]),
            };
            match started {
                Ok(_) => break (ssh_port, hyp_forwards),
                Err(e)
                    if attempt < PORT_RETRIES
                        && ports::taken_forward(&format!("{e:#}")).is_some() =>
                {
                    attempt += 1;
                }
                Err(e) if kvm && request.accel == Accel::Auto => {
                    return Err(e.context(BackendError::AccelFailed(format!(
                        "the domain of `{}` could not start under KVM on {}: use --accel tcg",
                        machine.name, rec.uri
                    ))));
                }
                Err(e) => return Err(e),
            }
        };
        let accel = if kvm {
            Accelerator::Kvm
        } else {
            Accelerator::Tcg
        };
        let ssh = match &hop {
            None => SshEndpoint {
                host: "127.0.0.1".into(),
                port: ssh_port,
                jump: None,
                proxy_command: None,
            },
            Some(hop) => {
                let control = dir.socket_path("lv")?;
                let rules: Vec<String> = local_forwards
                    .iter()
                    .zip(&hyp_ports)
                    .map(|(l, h)| tunnel::local_forward(l, h.host_port))
                    .collect();
                let opened = tunnel::open(hop, &control, &rules, &dir.root.join("tunnel.log"));
                if let Err(e) = opened {
                    Self::destroy_domain(&virsh, &rec.domain);
                    return Err(e);
                }
                SshEndpoint {
                    host: "127.0.0.1".into(),
                    port: ssh_port,
                    jump: Some(hop.destination()),
                    proxy_command: Some(tunnel::proxy_command(hop, &control)),
                }
            }
        };
        Ok(Booted {
            ssh,
            forwards: local_forwards,
            accel,
        })
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
        for volume in rec.own_volumes() {
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
        let text = std::fs::read_to_string(dir.console_log()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn box_disk_count(&self, dir: &MachineDir) -> usize {
        record(dir).map_or(0, |r| r.box_disks.len())
    }

    fn snapshots(&self, dir: &MachineDir, disk: DiskRef<'_>) -> Result<Vec<SnapshotInfo>> {
        let rec = record(dir)?;
        let virsh = Virsh::new(&rec.uri);
        if virsh.domstate(&rec.domain)?.is_none() {
            return Ok(Vec::new());
        }
        let names = virsh.run(&["snapshot-list", &rec.domain, "--name"])?;
        let target = match disk {
            DiskRef::Box(i) => xml::disk_target(i),
            DiskRef::Data(d) => xml::disk_target(
                rec.box_disks.len()
                    + rec
                        .data_disks
                        .iter()
                        .position(|(v, _)| v.contains(&format!("-data-{}.", d.name)))
                        .unwrap_or(usize::MAX / 2),
            ),
        };
        let mut all = Vec::new();
        for name in names.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let x = virsh.run(&["snapshot-dumpxml", &rec.domain, name])?;
            if let Some(info) = snapshot_info(name, &x, &target) {
                all.push(info);
            }
        }
        Ok(all)
    }

    fn snapshot(
        &self,
        dir: &MachineDir,
        op: SnapshotOp,
        tag: &str,
        disks: &[DiskRef<'_>],
        live: bool,
    ) -> Result<()> {
        let rec = record(dir)?;
        let virsh = Virsh::new(&rec.uri);
        let uefi = virsh
            .run(&["dumpxml", &rec.domain])
            .is_ok_and(|x| x.contains("type='pflash'"));
        if uefi {
            bail!(
                "libvirt 9.0 takes no internal snapshots of UEFI guests (their firmware variables \
                 live in pflash); snapshots of `{}` need the local backend or a BIOS box",
                dir.name
            );
        }
        match op {
            SnapshotOp::Save => {
                if disks.len() != Self::disk_targets(&rec) {
                    bail!(
                        "a libvirt snapshot covers every disk of `{}` (libvirt takes no internal snapshot of \
                         a running guest with a disk left out): add --include-kept, and give raw data disks \
                         format = \"qcow2\"",
                        dir.name
                    );
                }
                virsh.run(&["snapshot-create-as", &rec.domain, tag, "--atomic"])?;
            }
            SnapshotOp::Load if live => {
                virsh.run(&["snapshot-revert", &rec.domain, tag, "--running", "--force"])?;
            }
            SnapshotOp::Load => {
                // Paused, then stopped: the disks rewound, no guest code run.
                virsh.run(&["snapshot-revert", &rec.domain, tag, "--paused", "--force"])?;
                Self::destroy_domain(&virsh, &rec.domain);
            }
            SnapshotOp::Delete => {
                virsh.run(&["snapshot-delete", &rec.domain, tag])?;
            }
        }
        Ok(())
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

/// A snapshot as `env snapshot list` shows it, when it covers `target`.
fn snapshot_info(name: &str, x: &str, target: &str) -> Option<SnapshotInfo> {
    let field = |open: &str, close: &str| -> Option<String> {
        let (_, rest) = x.split_once(open)?;
        Some(rest.split_once(close)?.0.trim().to_string())
    };
    if x.contains(&format!("<disk name='{target}' snapshot='no'")) {
        return None;
    }
    let created = field("<creationTime>", "</creationTime>")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let with_memory = matches!(
        field("<state>", "</state>").as_deref(),
        Some("running" | "paused")
    );
    let memory_kib: u64 = field("<memory unit='KiB'>", "</memory>")
        .and_then(|m| m.parse().ok())
        .unwrap_or(1);
    Some(SnapshotInfo {
        name: name.into(),
        vm_state_bytes: if with_memory { memory_kib * 1024 } else { 0 },
        created,
        guest_uptime_secs: 0,
    })
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
    fn snapshot_xml_reads_state_and_coverage() {
        let x = "<domainsnapshot>\n  <name>s</name>\n  <state>running</state>\n  <creationTime>1796336465</creationTime>\n  <memory snapshot='internal'/>\n  <disks>\n    <disk name='vda' snapshot='internal'/>\n    <disk name='vdb' snapshot='no'/>\n  </disks>\n  <domain type='qemu'>\n    <memory unit='KiB'>1048576</memory>\n  </domain>\n</domainsnapshot>\n";
        let info = snapshot_info("s", x, "vda").unwrap();
        assert_eq!(info.created, 1796336465);
        assert_eq!(info.vm_state_bytes, 1 << 30);
        assert_eq!(snapshot_info("s", x, "vdb"), None);
        let off = x.replace("<state>running</state>", "<state>shutoff</state>");
        assert_eq!(snapshot_info("s", &off, "vda").unwrap().vm_state_bytes, 0);
    }

    #[test]
    fn hypervisor_ports_stay_in_their_range() {
        for _ in 0..100 {
            assert!((20000..60000).contains(&hypervisor_port()));
        }
    }
}
