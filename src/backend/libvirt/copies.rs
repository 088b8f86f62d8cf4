//! Snapshots of halted UEFI machines on libvirt: copies of their volumes.
//! libvirt 9.0 takes no internal snapshot of a guest whose firmware
//! variables live in pflash, and cannot revert external ones; a halted
//! machine's volumes (its disks and its UEFI variables) can always be
//! copied through libvirt (`virsh vol-clone`, a full copy), and copied back.

use super::record::Record;
use super::virsh::Virsh;
use crate::backend::SnapshotInfo;
use anyhow::Result;

/// Name of the copy of `volume` kept as snapshot `tag`.
pub fn copy_name(rec: &Record, tag: &str, volume: &str) -> String {
    let what = volume
        .strip_prefix(&format!("{}-", rec.domain))
        .unwrap_or(volume);
    format!("{}-snap-{tag}-{what}", rec.domain)
}

/// The snapshot tag a copy's name holds, for the root disk's copy.
pub fn tag_of(rec: &Record, name: &str) -> Option<String> {
    let root = rec.box_disks.first()?;
    let what = root.strip_prefix(&format!("{}-", rec.domain))?;
    name.strip_prefix(&format!("{}-snap-", rec.domain))?
        .strip_suffix(&format!("-{what}"))
        .map(String::from)
}

/// Copies `volumes` as snapshot `tag`; on a failure part way, the copies
/// made are removed.
pub fn save(virsh: &Virsh, rec: &Record, tag: &str, volumes: &[String]) -> Result<()> {
    let mut made: Vec<String> = Vec::new();
    for v in volumes {
        let copy = copy_name(rec, tag, v);
        if let Err(e) = virsh.run(&["vol-clone", "--pool", &rec.pool, v, &copy]) {
            for m in &made {
                let _ = virsh.vol_delete(&rec.pool, m);
            }
            return Err(e);
        }
        made.push(copy);
    }
    Ok(())
}

/// Puts the copies of snapshot `tag` back in place of `volumes`.
pub fn load(virsh: &Virsh, rec: &Record, tag: &str, volumes: &[String]) -> Result<()> {
    let present = virsh.volumes_refreshed(&rec.pool)?;
    for v in volumes {
        let copy = copy_name(rec, tag, v);
        if !present.contains(&copy) {
            anyhow::bail!("snapshot `{tag}` has no copy of volume `{v}`");
        }
    }
    for v in volumes {
        virsh.vol_delete(&rec.pool, v)?;
        virsh.run(&["vol-clone", "--pool", &rec.pool, &copy_name(rec, tag, v), v])?;
    }
    Ok(())
}

/// Removes the copies of snapshot `tag` of `volumes`.
pub fn delete(virsh: &Virsh, rec: &Record, tag: &str, volumes: &[String]) -> Result<()> {
    for v in volumes {
        virsh.vol_delete(&rec.pool, &copy_name(rec, tag, v))?;
    }
    Ok(())
}

/// The snapshots that hold a copy of `volume`.
pub fn list(virsh: &Virsh, rec: &Record, volume: &str) -> Result<Vec<SnapshotInfo>> {
    let present = virsh.volumes_refreshed(&rec.pool)?;
    let mut all = Vec::new();
    for name in &present {
        let Some(tag) = tag_of(rec, name) else {
            continue;
        };
        if !present.contains(&copy_name(rec, &tag, volume)) {
            continue;
        }
        let xml = virsh.run(&["vol-dumpxml", "--pool", &rec.pool, name])?;
        let created = xml
            .split_once("<ctime>")
            .and_then(|(_, rest)| rest.split(['.', '<']).next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        all.push(SnapshotInfo {
            name: tag,
            vm_state_bytes: 0,
            created,
            guest_uptime_secs: 0,
        });
    }
    all.sort_by_key(|s| s.created);
    Ok(all)
}

/// Every copy env made of a machine's volumes (removed with the machine).
pub fn all_copies(rec: &Record, present: &[String]) -> Vec<String> {
    let prefix = format!("{}-snap-", rec.domain);
    present
        .iter()
        .filter(|n| n.starts_with(&prefix))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Record {
        Record {
            uri: "qemu:///system".into(),
            pool: "default".into(),
            pool_path: "/pool".into(),
            project_id: "p".into(),
            domain: "env-p-web".into(),
            box_disks: vec!["env-p-web-disk0.qcow2".into()],
            box_volumes: vec![],
            kernel: None,
            initrd: None,
            data_disks: vec![],
            own_network: None,
            uefi: true,
            ports: None,
        }
    }

    #[test]
    fn copies_are_named_by_machine_tag_and_volume() {
        let r = rec();
        let c = copy_name(&r, "clean", "env-p-web-disk0.qcow2");
        assert_eq!(c, "env-p-web-snap-clean-disk0.qcow2");
        assert_eq!(
            copy_name(&r, "clean", "env-p-web-VARS.fd"),
            "env-p-web-snap-clean-VARS.fd"
        );
        assert_eq!(tag_of(&r, &c).as_deref(), Some("clean"));
        assert_eq!(tag_of(&r, "env-p-web-snap-clean-VARS.fd"), None);
        assert_eq!(tag_of(&r, "env-p-webby-snap-x-disk0.qcow2"), None);
        let present = vec![c.clone(), "env-p-web-disk0.qcow2".into()];
        assert_eq!(all_copies(&r, &present), [c]);
    }
}
