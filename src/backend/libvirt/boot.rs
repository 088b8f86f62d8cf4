//! Starting a machine on a libvirt host: its volumes made ready, its domain
//! defined from the plan (the same every boot, ports kept) and started (or
//! reverted to a snapshot), and on a remote host the SSH master opened.

use super::virsh::Virsh;
use super::{
    LibvirtBackend, PORT_RETRIES, domain_ports, hop, hypervisor_port, owner, record, state_dir,
    target, tunnel, xml,
};
use crate::backend::qemu::{plan as qemu_plan, ports};
use crate::backend::{Backend, BackendError, BootRequest, Booted};
use crate::boxes::metadata::{Firmware, Metadata};
use crate::envfile::{Accel, Protocol};
use crate::machine::state::{Accelerator, Forward, SshEndpoint};
use anyhow::{Context, Result, bail};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

impl LibvirtBackend {
    /// [`Backend::start`]: volumes ready, domain defined and started, the
    /// SSH master to a remote host opened.
    pub(super) fn boot(&self, request: &BootRequest<'_>) -> Result<Booted> {
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
        let mut prepare = self.prepare_volumes(&virsh, &rec, dir, &meta, request.seed.as_ref())?;
        let kvm = match request.accel {
            Accel::Kvm => true,
            Accel::Tcg => false,
            Accel::Auto => virsh.has_kvm(),
        };
        let pool_path = match rec.pool_path.as_str() {
            "" => Self::pool_path(&virsh, &rec.pool)?,
            known => known.to_string(),
        };
        let in_pool = |volume: &str| format!("{pool_path}/{volume}");
        let uefi = match qemu_plan::firmware(machine, &meta) {
            Firmware::Bios => None,
            Firmware::Uefi => Some(xml::Uefi {
                code: Self::uefi_code(&virsh)?,
                vars: in_pool(&rec.vars_volume()),
            }),
        };
        if rec.uefi != uefi.is_some() {
            rec.uefi = uefi.is_some();
            rec.save(dir)?;
        }
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
            let free = |f: &Forward| ports::is_free(f.protocol, f.host_ip, f.host_port);
            let mut local_port = || ports::ssh_forward(machine.ssh_guest_port).map(|f| f.host_port);
            let mut remote_port = hypervisor_port;
            let planned = domain_ports::plan(
                hop.is_some(),
                machine.ssh_guest_port,
                &local_forwards,
                rec.ports.as_ref(),
                attempt > 0,
                domain_ports::Pickers {
                    free: &free,
                    local_port: &mut local_port,
                    remote_port: &mut remote_port,
                },
            )?;
            let (ssh_port, hyp_forwards) = (planned.ssh, planned.forwards.clone());
            if rec.ports.as_ref() != Some(&planned) {
                rec.ports = Some(planned);
                rec.save(dir)?;
            }
            let ssh = Forward {
                protocol: Protocol::Tcp,
                host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                host_port: ssh_port,
                guest_port: machine.ssh_guest_port,
            };
            let mut all = vec![ssh];
            all.extend(hyp_forwards.iter().cloned());
            let netdev = crate::backend::qemu::args::user_netdev(&all);
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
            // One connection: the volumes made, the domain defined, started.
            let definition = tempfile::Builder::new()
                .prefix("env-libvirt-")
                .suffix(".xml")
                .tempfile()
                .context("cannot write a temporary file")?;
            std::fs::write(definition.path(), xml::domain_xml(&plan))?;
            let mut commands = std::mem::take(&mut prepare);
            commands.push(super::words(&[
                "define",
                &definition.path().display().to_string(),
            ]));
            commands.push(match request.resume_snapshot {
                Some(tag) => super::words(&["snapshot-revert", &rec.domain, tag, "--running"]),
                None => super::words(&["start", &rec.domain]),
            });
            let started = virsh
                .batch(&commands)
                .with_context(|| format!("cannot start the domain of `{}`", machine.name));
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
                Err(e) => {
                    // virsh goes on after a failed command: a `define` that
                    // failed may have left `start` running the old one.
                    Self::destroy_domain(&virsh, &rec.domain);
                    return Err(e);
                }
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
}
