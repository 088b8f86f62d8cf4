//! Creating a machine on a libvirt host: the box's files as volumes of the
//! pool (once per host), the machine's overlay volumes on them, its record.

use super::record::Record;
use super::virsh::Virsh;
use super::{LibvirtBackend, owner, record, state_dir, target, volumes};
use crate::backend::qemu::img;
use crate::boxes::StoredBox;
use crate::envfile::Machine;
use crate::machine::MachineDir;
use anyhow::Result;

impl LibvirtBackend {
    /// [`Backend::create_disks`]: the box's files as volumes (uploaded once
    /// per host), overlay volumes on them, the record.
    pub(super) fn make_disks(
        &self,
        dir: &MachineDir,
        stored: &StoredBox,
        machine: &Machine,
    ) -> Result<()> {
        let t = target(machine)?;
        // Checked before anything is uploaded: a refusal changes nothing.
        crate::backend::check_disk_fits(machine, stored.metadata.virtual_size.unwrap_or(0))?;
        let virsh = Virsh::new(&t.uri);
        let pool_path = Self::pool_path(&virsh, &t.pool)?;
        let present = virsh.volumes(&t.pool)?;
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
        let box_volumes =
            volumes::ensure_box(&virsh, &t.pool, stored, &files, &machine.name, &present)?;
        let disks = meta.disk_files().len();
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
                if present.contains(&name) {
                    // A leftover of an earlier attempt of this same machine.
                    virsh.vol_delete(&t.pool, &name)?;
                }
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
            pool_path,
            project_id,
            domain,
            box_disks: overlays,
            box_volumes: volumes.by_ref().take(disks).collect(),
            kernel: kernel.as_ref().and_then(|_| volumes.next()),
            initrd: initrd.as_ref().and_then(|_| volumes.next()),
            data_disks: Vec::new(),
            own_network: None,
            uefi: false,
            ports: None,
        };
        rec.save(dir)
    }
}
