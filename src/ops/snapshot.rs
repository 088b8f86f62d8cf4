//! Snapshots: rewinding a machine instead of rebuilding it. Internal qcow2
//! snapshots of the machine's overlay (and of its non-kept qcow2 data
//! disks). A running machine is snapshotted through QMP jobs with its VM
//! state, so a restore resumes in about a second without a boot; a halted
//! one with `qemu-img snapshot` (disks only).

use crate::backend::qemu::{args as qemu, qga, qmp};
use crate::boxes::Store;
use crate::envfile::Machine;
use crate::envfile::disks::{Disk, DiskFormat};
use crate::envfile::folders::FolderKind;
use crate::guest::ssh;
use crate::machine::project::Project;
use crate::machine::{MachineDir, Status};
use crate::ops::up as lifecycle;
use crate::util::process::run_checked;
use crate::util::ui;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// How long a snapshot job may take (it writes the guest's RAM).
const JOB_TIMEOUT: Duration = Duration::from_secs(600);

/// Names `env snapshot push` gives, so `pop` finds them again.
const PUSH_PREFIX: &str = "push-";

/// One disk image a snapshot covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// What the user calls it (`root`, `data disk db`).
    pub label: String,
    /// QEMU's block node name (for QMP jobs).
    pub node: String,
    /// The image file (for `qemu-img`).
    pub path: PathBuf,
}

/// A data disk a snapshot leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// Disk name.
    pub disk: String,
    /// Why (shown to the user).
    pub reason: &'static str,
}

/// Which images a snapshot covers: the root overlay first (it holds the VM
/// state), the box's further disks, then the data disks that can and should
/// be rewound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Images snapshotted.
    pub images: Vec<Image>,
    /// Data disks left out.
    pub left_out: Vec<LeftOut>,
}

/// Decides what a snapshot covers. Kept disks hold what must survive, so
/// they are not rewound unless `include_kept`; raw images cannot hold
/// snapshots at all.
pub fn plan(dir: &MachineDir, disks: &[Disk], include_kept: bool) -> Plan {
    let mut images = vec![Image {
        label: "root".into(),
        node: qemu::ROOT_NODE.into(),
        path: dir.disk(),
    }];
    // The further disks of a multi-disk box are overlays like the root one.
    images.extend(
        dir.box_disks()
            .into_iter()
            .enumerate()
            .skip(1)
            .map(|(i, path)| Image {
                label: format!("box disk {i}"),
                node: qemu::box_disk_node(i),
                path,
            }),
    );
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
            images.push(Image {
                label: format!("data disk {}", disk.name),
                node: qemu::data_node(&disk.name),
                path: dir.data_disk(disk),
            });
        }
    }
    Plan { images, left_out }
}

/// A snapshot as `qemu-img info` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    /// Its name (tag).
    pub name: String,
    /// Bytes of saved VM state (0: disks only).
    pub vm_state_bytes: u64,
    /// When it was taken (seconds since the epoch).
    pub created: u64,
    /// How long the guest had run when it was taken (seconds).
    pub guest_uptime_secs: u64,
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

/// Checks a snapshot name: QEMU looks snapshots up by name or by numeric
/// id, so an all-digit name could mean another snapshot.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 100 {
        bail!("a snapshot name needs 1 to 100 characters");
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        bail!("snapshot name `{name}` is all digits: QEMU would take it for a snapshot id");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '@')))
    {
        bail!("snapshot name `{name}` has `{c}`: use letters, digits and - _ . + @");
    }
    Ok(())
}

/// The name `push` gives a snapshot taken at `time`: sortable, unique per second.
pub fn push_name(time: SystemTime) -> String {
    format!("{PUSH_PREFIX}{}", crate::ops::logs::run_name(time))
}

/// The snapshot `pop` returns to: the newest pushed one.
pub fn newest_pushed(list: &[SnapshotInfo]) -> Option<&SnapshotInfo> {
    list.iter()
        .filter(|s| s.name.starts_with(PUSH_PREFIX))
        .max_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)))
}

/// The snapshots of one image file (readable while QEMU runs).
pub fn list_image(path: &Path) -> Result<Vec<SnapshotInfo>> {
    let out = run_checked(
        Command::new("qemu-img")
            .args(["info", "--force-share", "--output=json"])
            .arg(path),
        "cannot run qemu-img (install qemu-utils)",
        &format!("cannot read {}", path.display()),
    )?;
    parse_snapshots(&String::from_utf8_lossy(&out.stdout))
}

/// The snapshots of a machine (those of its root disk).
pub fn list(dir: &MachineDir) -> Result<Vec<SnapshotInfo>> {
    if !dir.disk().exists() {
        bail!(
            "machine `{}` is not created: `env up {}` first",
            dir.name,
            dir.name
        );
    }
    list_image(&dir.disk())
}

/// Whether the machine runs (QMP) or not (`qemu-img`); an error when it was
/// never created.
fn is_running(dir: &MachineDir) -> Result<bool> {
    match dir.status()? {
        Status::Running { .. } => Ok(true),
        Status::Halted | Status::Died => Ok(false),
        Status::NotCreated => bail!(
            "machine `{}` is not created: `env up {}` first",
            dir.name,
            dir.name
        ),
    }
}

fn labels(images: &[Image]) -> String {
    images
        .iter()
        .map(|i| i.label.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn report_left_out(name: &str, plan: &Plan) {
    for l in &plan.left_out {
        ui::step(
            name,
            &format!("left out data disk `{}`: {}", l.disk, l.reason),
        );
    }
}

fn qemu_img_snapshot(flag: &str, tag: &str, image: &Image) -> Result<()> {
    run_checked(
        Command::new("qemu-img")
            .args(["snapshot", flag, tag])
            .arg(&image.path),
        "cannot run qemu-img (install qemu-utils)",
        &format!(
            "qemu-img snapshot {flag} {tag} on the {} failed",
            image.label
        ),
    )
    .map(drop)
}

/// Saves snapshot `tag` of a machine. Refuses a name in use. On a halted
/// machine a failure part way removes what was made, so no image is left
/// with a snapshot the others lack.
pub fn save(project: &Project, machine: &Machine, tag: &str, include_kept: bool) -> Result<()> {
    let dir = &project.machine_dir(&machine.name);
    check_name(tag)?;
    let running = is_running(dir)?;
    let plan = plan(dir, &machine.disks, include_kept);
    for image in &plan.images {
        if list_image(&image.path)?.iter().any(|s| s.name == tag) {
            bail!(
                "machine `{}` already has a snapshot `{tag}` (on its {}): delete it first \
                 (`env snapshot delete {} {tag}`)",
                dir.name,
                image.label,
                dir.name
            );
        }
    }
    let started = Instant::now();
    if running {
        if machine.folders.iter().any(|f| f.kind == FolderKind::NineP) {
            bail!(
                "machine `{}` mounts 9p folders, and QEMU cannot save a VM state while one \
                 is mounted: halt it for a disk-only snapshot, or use type = \"rsync\" folders",
                dir.name
            );
        }
        // The disks alone must hold what the guest wrote: a restore that
        // boots (left-out disks) sees the disks, not the saved memory.
        if let Err(e) = guest_command(dir, "sync") {
            ui::step(
                &dir.name,
                &format!("could not sync the guest's disks: {e:#}"),
            );
        }
        live_job(dir, qmp::SnapshotJob::Save, tag, &plan.images)?;
    } else {
        for (done, image) in plan.images.iter().enumerate() {
            if let Err(e) = qemu_img_snapshot("-c", tag, image) {
                for made in &plan.images[..done] {
                    let _ = qemu_img_snapshot("-d", tag, made);
                }
                return Err(e);
            }
        }
    }
    ui::step(
        &dir.name,
        &format!(
            "saved snapshot `{tag}` ({}{}) in {:.1} s",
            labels(&plan.images),
            if running {
                " and VM state"
            } else {
                "; disks only"
            },
            started.elapsed().as_secs_f64()
        ),
    );
    report_left_out(&dir.name, &plan);
    Ok(())
}

/// Returns a machine to snapshot `tag`. A running machine resumes from the
/// snapshot's VM state (or, for a disk-only snapshot, stops: it must boot
/// from the rewound disks); a halted machine's disks are rewound and its
/// next `env up` boots from them.
pub fn restore(project: &Project, machine: &Machine, tag: &str, include_kept: bool) -> Result<()> {
    let dir = &project.machine_dir(&machine.name);
    let running = is_running(dir)?;
    let plan = plan(dir, &machine.disks, include_kept);
    let mut with_state = false;
    for image in &plan.images {
        let found = list_image(&image.path)?.into_iter().find(|s| s.name == tag);
        match found {
            Some(s) => with_state |= s.vm_state_bytes > 0,
            None => bail!(
                "machine `{}` has no snapshot `{tag}` on its {} (`env snapshot list {}`)",
                dir.name,
                image.label,
                dir.name
            ),
        }
    }
    if running && !with_state {
        bail!(
            "snapshot `{tag}` of `{}` holds disks only (taken while halted): \
             `env halt {}` first, then restore it",
            dir.name,
            dir.name
        );
    }
    let started = Instant::now();
    if running && !plan.left_out.is_empty() {
        // The guest's memory would go back in time but the left-out disks
        // would not: its page cache and mounted filesystems would disagree
        // with them. Rewind the disks and boot instead.
        ui::step(
            &dir.name,
            "data disks are left out, and resuming a VM state without them would leave \
             their filesystems inconsistent: halting, rewinding the disks and booting instead",
        );
        report_left_out(&dir.name, &plan);
        lifecycle::halt(project, &machine.name, false)?;
        for image in &plan.images {
            qemu_img_snapshot("-a", tag, image)?;
        }
        let options = lifecycle::UpOptions {
            accel: None,
            provision: Some(false),
        };
        lifecycle::up(project, machine, &Store::open()?, &options)?;
        ui::step(
            &dir.name,
            &format!(
                "restored snapshot `{tag}` ({}) and booted in {:.1} s",
                labels(&plan.images),
                started.elapsed().as_secs_f64()
            ),
        );
        return Ok(());
    }
    if running {
        // The guest's TCP state goes back in time: the master connection
        // cannot survive it.
        if let Ok(control) = dir.control_path() {
            ssh::close_master(&control);
        }
        // So does the journal stream's connection; it restarts from now.
        crate::ops::logs::stop_forward(dir);
        live_job(dir, qmp::SnapshotJob::Load, tag, &plan.images)?;
        set_guest_clock(dir)?;
        if project.envfile.logs_forward {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            lifecycle::start_journal_forward(dir, Some(now.as_secs()));
        }
        ui::step(
            &dir.name,
            &format!(
                "restored snapshot `{tag}` ({}) in {:.1} s: resumed where it was saved",
                labels(&plan.images),
                started.elapsed().as_secs_f64()
            ),
        );
    } else {
        for image in &plan.images {
            qemu_img_snapshot("-a", tag, image)?;
        }
        ui::step(
            &dir.name,
            &format!(
                "restored snapshot `{tag}` ({}) in {:.1} s: the next `env up` boots from it",
                labels(&plan.images),
                started.elapsed().as_secs_f64()
            ),
        );
        report_left_out(&dir.name, &plan);
    }
    Ok(())
}

/// Runs a snapshot job on a running machine's images (the first holds the
/// VM state).
fn live_job(dir: &MachineDir, job: qmp::SnapshotJob, tag: &str, images: &[Image]) -> Result<()> {
    let nodes: Vec<String> = images.iter().map(|i| i.node.clone()).collect();
    let verb = match job {
        qmp::SnapshotJob::Save => "save",
        qmp::SnapshotJob::Load => "restore",
        qmp::SnapshotJob::Delete => "delete",
    };
    qmp::snapshot_job(&dir.qmp_socket()?, job, tag, &nodes, JOB_TIMEOUT)
        .with_context(|| format!("cannot {verb} snapshot `{tag}` of `{}`", dir.name))
}

/// A restored guest's clock shows the time of the snapshot: set it to now
/// (through the guest agent: no SSH handshake to wait for), or TLS, make
/// and apt see a clock gone back.
fn set_guest_clock(dir: &MachineDir) -> Result<()> {
    qga::set_time_now(&dir.qga_socket()?, Duration::from_secs(10)).with_context(|| {
        format!(
            "machine `{}` was restored, but setting its clock failed",
            dir.name
        )
    })
}

/// Runs a short shell command in the guest over SSH.
fn guest_command(dir: &MachineDir, script: &str) -> Result<()> {
    run_checked(
        ssh::command(&dir.ssh_config(), &dir.name).arg(script),
        "cannot run ssh (install the OpenSSH client)",
        &format!("`{script}` over SSH failed"),
    )
    .map(drop)
}

/// Deletes snapshot `tag` from every image of the machine that holds it
/// (kept disks included when `include_kept`).
pub fn delete(project: &Project, machine: &Machine, tag: &str, include_kept: bool) -> Result<()> {
    let dir = &project.machine_dir(&machine.name);
    let running = is_running(dir)?;
    let plan = plan(dir, &machine.disks, include_kept);
    let mut holders = Vec::new();
    for image in plan.images {
        if list_image(&image.path)?.iter().any(|s| s.name == tag) {
            holders.push(image);
        }
    }
    if holders.is_empty() {
        bail!(
            "machine `{}` has no snapshot `{tag}` (`env snapshot list {}`)",
            dir.name,
            dir.name
        );
    }
    if running {
        live_job(dir, qmp::SnapshotJob::Delete, tag, &holders)?;
    } else {
        for image in &holders {
            qemu_img_snapshot("-d", tag, image)?;
        }
    }
    ui::step(
        &dir.name,
        &format!("deleted snapshot `{tag}` ({})", labels(&holders)),
    );
    Ok(())
}

/// Saves a snapshot under a fresh `push-TIME` name; returns it.
pub fn push(project: &Project, machine: &Machine, include_kept: bool) -> Result<String> {
    let dir = &project.machine_dir(&machine.name);
    let existing = list(dir)?;
    let base = push_name(SystemTime::now());
    let mut tag = base.clone();
    // Two pushes within a second.
    for n in 2.. {
        if !existing.iter().any(|s| s.name == tag) {
            break;
        }
        tag = format!("{base}-{n}");
    }
    save(project, machine, &tag, include_kept)?;
    Ok(tag)
}

/// Restores the newest pushed snapshot and, unless `keep`, deletes it.
pub fn pop(project: &Project, machine: &Machine, include_kept: bool, keep: bool) -> Result<()> {
    let dir = &project.machine_dir(&machine.name);
    let list = list(dir)?;
    let Some(newest) = newest_pushed(&list) else {
        bail!(
            "machine `{}` has no pushed snapshot (`env snapshot push` makes one)",
            dir.name
        );
    };
    let tag = newest.name.clone();
    restore(project, machine, &tag, include_kept)?;
    if !keep {
        delete(project, machine, &tag, include_kept)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::size::Size;
    use std::time::UNIX_EPOCH;

    fn disk(name: &str, keep: bool, format: DiskFormat) -> Disk {
        Disk {
            name: name.into(),
            size: Size { mib: 64 },
            format,
            keep,
            mount: None,
        }
    }

    #[test]
    fn plan_covers_root_and_rewindable_data_disks() {
        let dir = MachineDir::new(Path::new("/p/.envstate"), "web");
        let disks = [
            disk("scratch", false, DiskFormat::Qcow2),
            disk("db", true, DiskFormat::Qcow2),
            disk("blob", false, DiskFormat::Raw),
        ];
        let p = plan(&dir, &disks, false);
        let nodes: Vec<&str> = p.images.iter().map(|i| i.node.as_str()).collect();
        assert_eq!(nodes, ["node-disk0", "node-data-scratch"]);
        assert_eq!(p.images[0].path, dir.disk());
        assert_eq!(p.images[1].path, dir.data_disk(&disks[0]));
        let left: Vec<&str> = p.left_out.iter().map(|l| l.disk.as_str()).collect();
        assert_eq!(left, ["db", "blob"]);
        assert!(p.left_out[0].reason.contains("--include-kept"));

        let p = plan(&dir, &disks, true);
        let nodes: Vec<&str> = p.images.iter().map(|i| i.node.as_str()).collect();
        assert_eq!(nodes, ["node-disk0", "node-data-scratch", "node-data-db"]);
        assert_eq!(p.images[2].path, dir.data_disk(&disks[1]));
        assert_eq!(p.left_out.len(), 1);
    }

    #[test]
    fn plan_covers_every_disk_of_a_multi_disk_box() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = MachineDir::new(tmp.path(), "db");
        std::fs::create_dir_all(&dir.root).unwrap();
        std::fs::write(dir.disk(), "").unwrap();
        std::fs::write(dir.box_disk(1), "").unwrap();
        let p = plan(&dir, &[disk("scratch", false, DiskFormat::Qcow2)], false);
        let nodes: Vec<&str> = p.images.iter().map(|i| i.node.as_str()).collect();
        assert_eq!(nodes, ["node-disk0", "node-disk1", "node-data-scratch"]);
        assert_eq!(p.images[1].path, dir.box_disk(1));
    }

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

    #[test]
    fn names_are_checked() {
        for good in [
            "clean",
            "before-upgrade",
            "v1.2_ok",
            "push-20261126T220000Z",
        ] {
            check_name(good).unwrap();
        }
        for bad in ["", "12", "has space", "a/b", "x;y", &"n".repeat(101)] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_name("12").unwrap_err().to_string().contains("id"));
    }

    #[test]
    fn pop_takes_the_newest_pushed_snapshot() {
        let snap = |name: &str, created| SnapshotInfo {
            name: name.into(),
            vm_state_bytes: 1,
            created,
            guest_uptime_secs: 0,
        };
        let list = [
            snap("push-20261126T100000Z", 10),
            snap("clean", 30),
            snap("push-20261126T100005Z", 15),
        ];
        assert_eq!(newest_pushed(&list).unwrap().name, "push-20261126T100005Z");
        assert!(newest_pushed(&list[1..2]).is_none());
        let name = push_name(UNIX_EPOCH + Duration::from_secs(1_795_730_854));
        assert!(name.starts_with("push-2026"), "{name}");
        check_name(&name).unwrap();
    }
}
