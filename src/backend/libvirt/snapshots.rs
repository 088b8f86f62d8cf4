//! Snapshots of machines on a libvirt host: libvirt's internal snapshots
//! (every disk, live with memory or halted), or for UEFI machines copies of
//! the halted machine's volumes (`copies.rs`).

use super::virsh::Virsh;
use super::{LibvirtBackend, copies, record, xml};
use crate::backend::{DiskRef, SnapshotInfo, SnapshotOp};
use crate::machine::MachineDir;
use anyhow::{Result, bail};

impl LibvirtBackend {
    /// [`Backend::snapshots`].
    pub(super) fn list_snapshots(
        &self,
        dir: &MachineDir,
        disk: DiskRef<'_>,
    ) -> Result<Vec<SnapshotInfo>> {
        let rec = record(dir)?;
        let virsh = Virsh::new(&rec.uri);
        if virsh.domstate(&rec.domain)?.is_none() {
            return Ok(Vec::new());
        }
        if rec.uefi {
            return copies::list(&virsh, &rec, &Self::volume_of(&rec, disk)?);
        }
        let names = virsh.run(&["snapshot-list", &rec.domain, "--name"])?;
        let target = match disk {
            DiskRef::Box(i) => xml::disk_target(i),
            DiskRef::Data(d) => match rec.data_position(&d.name) {
                Some(i) => xml::disk_target(rec.box_disks.len() + i),
                None => return Ok(Vec::new()),
            },
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

    /// [`Backend::snapshot`]: libvirt's internal snapshots, or volume copies
    /// for UEFI machines.
    pub(super) fn snapshot_op(
        &self,
        dir: &MachineDir,
        op: SnapshotOp,
        tag: &str,
        disks: &[DiskRef<'_>],
        live: bool,
    ) -> Result<()> {
        let rec = record(dir)?;
        let virsh = Virsh::new(&rec.uri);
        if rec.uefi {
            if live {
                bail!(
                    "libvirt 9.0 takes no snapshot of a running UEFI guest (its firmware variables \
                     live in pflash): `env halt {}` first; a halted UEFI machine's snapshot is a copy \
                     of its volumes",
                    dir.name
                );
            }
            let mut volumes = disks
                .iter()
                .map(|d| Self::volume_of(&rec, *d))
                .collect::<Result<Vec<_>>>()?;
            if virsh
                .volumes_refreshed(&rec.pool)?
                .contains(&rec.vars_volume())
            {
                volumes.push(rec.vars_volume());
            }
            return match op {
                SnapshotOp::Save => copies::save(&virsh, &rec, tag, &volumes),
                SnapshotOp::Load => copies::load(&virsh, &rec, tag, &volumes),
                SnapshotOp::Delete => copies::delete(&virsh, &rec, tag, &volumes),
            };
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
    fn snapshot_xml_reads_state_and_coverage() {
        let x = "<domainsnapshot>\n  <name>s</name>\n  <state>running</state>\n  <creationTime>1796336465</creationTime>\n  <memory snapshot='internal'/>\n  <disks>\n    <disk name='vda' snapshot='internal'/>\n    <disk name='vdb' snapshot='no'/>\n  </disks>\n  <domain type='qemu'>\n    <memory unit='KiB'>1048576</memory>\n  </domain>\n</domainsnapshot>\n";
        let info = snapshot_info("s", x, "vda").unwrap();
        assert_eq!(info.created, 1796336465);
        assert_eq!(info.vm_state_bytes, 1 << 30);
        assert_eq!(snapshot_info("s", x, "vdb"), None);
        let off = x.replace("<state>running</state>", "<state>shutoff</state>");
        assert_eq!(snapshot_info("s", &off, "vda").unwrap().vm_state_bytes, 0);
    }
}
