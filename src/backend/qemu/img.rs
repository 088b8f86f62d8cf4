//! `qemu-img`: overlays and data disks made, snapshots of images that are
//! not in use, image facts, flattening. Every call has a time limit.

use crate::backend::SnapshotInfo;
use crate::util::process::{HELPER_LIMIT, run_limited};
use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// What to say when qemu-img is missing.
const INSTALL: &str = "cannot run qemu-img (install qemu-utils)";

/// How long flattening a disk may take (it reads and compresses all of it).
const CONVERT_LIMIT: Duration = Duration::from_secs(3600);

/// Runs qemu-img with `args` within `limit`; `failed` prefixes its stderr.
fn qemu_img(args: &mut Command, limit: Duration, failed: &str) -> Result<std::process::Output> {
    run_limited(args, limit, INSTALL, failed)
}

/// Creates a qcow2 overlay at `overlay` on the image `backing` of
/// `backing_format` (`qcow2`, `raw`: given explicitly, never probed),
/// `size_mib` larger when given.
pub fn create_overlay(
    backing: &Path,
    backing_format: &str,
    overlay: &Path,
    size_mib: Option<u64>,
) -> Result<()> {
    let mut cmd = Command::new("qemu-img");
    cmd.args(["create", "-q", "-f", "qcow2", "-F", backing_format, "-b"])
        .arg(backing)
        .arg(overlay);
    if let Some(mib) = size_mib {
        cmd.arg(format!("{mib}M"));
    }
    qemu_img(
        &mut cmd,
        HELPER_LIMIT,
        &format!("qemu-img create failed for {}", backing.display()),
    )
    .map(drop)
}

/// Creates an empty disk image of `format` (`qcow2`, `raw`).
pub fn create_disk(path: &Path, format: &str, size_mib: u64, failed: &str) -> Result<()> {
    qemu_img(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", format])
            .arg(path)
            .arg(format!("{size_mib}M")),
        HELPER_LIMIT,
        failed,
    )
    .map(drop)
}

/// `qemu-img snapshot FLAG TAG IMAGE` (`-c` create, `-a` apply, `-d`
/// delete) on an image no running QEMU uses.
pub fn snapshot(flag: &str, tag: &str, image: &Path, label: &str) -> Result<()> {
    qemu_img(
        Command::new("qemu-img")
            .args(["snapshot", flag, tag])
            .arg(image),
        HELPER_LIMIT,
        &format!("qemu-img snapshot {flag} {tag} on the {label} failed"),
    )
    .map(drop)
}

/// The snapshots of one image file (readable while QEMU runs).
pub fn list_snapshots(path: &Path) -> Result<Vec<SnapshotInfo>> {
    let out = qemu_img(
        Command::new("qemu-img")
            .args(["info", "--force-share", "--output=json"])
            .arg(path),
        HELPER_LIMIT,
        &format!("cannot read {}", path.display()),
    )?;
    parse_snapshots(&String::from_utf8_lossy(&out.stdout))
}

/// Flattens `image` (with its backing chain) into a standalone compressed
/// qcow2 at `out`; returns its virtual size in bytes.
pub fn flatten(image: &Path, out: &Path) -> Result<u64> {
    qemu_img(
        Command::new("qemu-img")
            .args(["convert", "-c", "-O", "qcow2"])
            .arg(image)
            .arg(out),
        CONVERT_LIMIT,
        "flattening the disk failed",
    )?;
    virtual_size(out)
}

/// The virtual size of an image in bytes.
pub fn virtual_size(image: &Path) -> Result<u64> {
    let info = qemu_img(
        Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(image),
        HELPER_LIMIT,
        &format!("cannot read the image {}", image.display()),
    )?;
    let v: serde_json::Value = serde_json::from_slice(&info.stdout)?;
    v["virtual-size"]
        .as_u64()
        .context("qemu-img reported no virtual size")
}

/// Points an overlay at another backing file of the same content, without
/// reading either (`qemu-img rebase -u`).
pub fn rebase_unsafe(image: &Path, backing: &Path, backing_format: &str) -> Result<()> {
    qemu_img(
        Command::new("qemu-img")
            .args(["rebase", "-u", "-F", backing_format, "-b"])
            .arg(backing)
            .arg(image),
        HELPER_LIMIT,
        "cannot point the downloaded overlay at the box's disk",
    )
    .map(drop)
}

#[derive(Deserialize)]
struct ImageInfo {
    #[serde(default)]
    snapshots: Vec<RawSnapshot>,
}

#[derive(Deserialize)]
struct RawSnapshot {
    name: String,
    #[serde(rename = "vm-state-size", default)]
    vm_state_size: u64,
    #[serde(rename = "date-sec", default)]
    date_sec: u64,
    #[serde(rename = "vm-clock-sec", default)]
    vm_clock_sec: u64,
}

/// Parses `qemu-img info --output=json` into its snapshots, oldest first.
pub fn parse_snapshots(json: &str) -> Result<Vec<SnapshotInfo>> {
    let info: ImageInfo =
        serde_json::from_str(json).context("cannot read qemu-img's image information")?;
    let mut list: Vec<SnapshotInfo> = info
        .snapshots
        .into_iter()
        .map(|s| SnapshotInfo {
            name: s.name,
            vm_state_bytes: s.vm_state_size,
            created: s.date_sec,
            guest_uptime_secs: s.vm_clock_sec,
        })
        .collect();
    list.sort_by_key(|s| s.created);
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_img_json_parses_oldest_first() {
        let json = r#"{"virtual-size": 1, "snapshots": [
            {"vm-clock-nsec": 1, "name": "b", "date-sec": 200, "date-nsec": 0,
             "vm-clock-sec": 30, "id": "2", "vm-state-size": 2240488},
            {"vm-clock-nsec": 1, "name": "a", "date-sec": 100, "date-nsec": 0,
             "vm-clock-sec": 0, "id": "1", "vm-state-size": 0}]}"#;
        let list = parse_snapshots(json).unwrap();
        assert_eq!(
            list,
            [
                SnapshotInfo {
                    name: "a".into(),
                    vm_state_bytes: 0,
                    created: 100,
                    guest_uptime_secs: 0
                },
                SnapshotInfo {
                    name: "b".into(),
                    vm_state_bytes: 2240488,
                    created: 200,
                    guest_uptime_secs: 30
                }
            ]
        );
        assert!(
            parse_snapshots(r#"{"virtual-size": 1}"#)
                .unwrap()
                .is_empty()
        );
        assert!(parse_snapshots("not json").is_err());
    }
}
