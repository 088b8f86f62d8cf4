//! Which disks a snapshot (or a suspended machine's saved state) covers:
//! the root disk first (it holds the VM state), the box's further disks,
//! then the data disks that can and should be rewound.

use crate::backend::DiskRef;
use crate::envfile::disks::{Disk, DiskFormat};

/// A data disk a snapshot leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// Disk name.
    pub disk: String,
    /// Why (shown to the user).
    pub reason: &'static str,
}

/// Which disks a snapshot covers: the root disk first (it holds the VM
/// state), the box's further disks, then the data disks that can and
/// should be rewound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage<'a> {
    /// Disks snapshotted.
    pub disks: Vec<DiskRef<'a>>,
    /// Data disks left out.
    pub left_out: Vec<LeftOut>,
}

/// Decides what a snapshot covers. Kept disks hold what must survive, so
/// they are not rewound unless `include_kept`; raw images cannot hold
/// snapshots at all.
pub fn plan(box_disks: usize, disks: &[Disk], include_kept: bool) -> Coverage<'_> {
    let mut covered: Vec<DiskRef<'_>> = (0..box_disks.max(1)).map(DiskRef::Box).collect();
    let mut left_out = Vec::new();
    for disk in disks {
        if disk.keep && !include_kept {
            left_out.push(LeftOut {
                disk: disk.name.clone(),
                reason: "kept disk, not rewound (--include-kept rewinds it too)",
            });
        } else if disk.format == DiskFormat::Raw {
            left_out.push(LeftOut {
                disk: disk.name.clone(),
                reason: "raw image, cannot hold snapshots (use format = \"qcow2\")",
            });
        } else {
            covered.push(DiskRef::Data(disk));
        }
    }
    Coverage {
        disks: covered,
        left_out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::size::Size;

    fn disk(name: &str, keep: bool, format: DiskFormat) -> Disk {
        Disk {
            name: name.into(),
            size: Size { mib: 64 },
            format,
            keep,
            mount: None,
        }
    }

    fn labels_of(p: &Coverage<'_>) -> Vec<String> {
        p.disks.iter().map(|d| d.label()).collect()
    }

    #[test]
    fn plan_covers_root_and_rewindable_data_disks() {
        let disks = [
            disk("scratch", false, DiskFormat::Qcow2),
            disk("db", true, DiskFormat::Qcow2),
            disk("blob", false, DiskFormat::Raw),
        ];
        let p = plan(1, &disks, false);
        assert_eq!(labels_of(&p), ["root", "data disk scratch"]);
        assert_eq!(p.disks[1], DiskRef::Data(&disks[0]));
        let left: Vec<&str> = p.left_out.iter().map(|l| l.disk.as_str()).collect();
        assert_eq!(left, ["db", "blob"]);
        assert!(p.left_out[0].reason.contains("--include-kept"));

        let p = plan(1, &disks, true);
        assert_eq!(labels_of(&p), ["root", "data disk scratch", "data disk db"]);
        assert_eq!(p.left_out.len(), 1);
    }

    #[test]
    fn plan_covers_every_disk_of_a_multi_disk_box() {
        let disks = [disk("scratch", false, DiskFormat::Qcow2)];
        let p = plan(2, &disks, false);
        assert_eq!(labels_of(&p), ["root", "box disk 1", "data disk scratch"]);
        assert_eq!(p.disks[1], DiskRef::Box(1));
    }
}
