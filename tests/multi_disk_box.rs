//! Vagrant's multi-disk (v2) box form: every disk the box lists is attached
//! in order (the root disk first), each as an overlay of its own, and
//! `env package` of such a machine writes the v2 form back, authorizing
//! env's and Vagrant's first-contact keys.

mod common;

use common::{GuestSlot, TestProject, test_box, text};
use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", text(&out).1);
}

/// The test box with a second disk `data.img` (ext4, label boxdata, holding
/// `marker`) in the v2 metadata form.
fn two_disk_box(work: &Path) -> PathBuf {
    let unpacked = work.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(test_box())
        .arg("-C")
        .arg(&unpacked));
    let content = work.join("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("marker"), "from the box\n").unwrap();
    let raw = work.join("data.raw");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-L", "boxdata", "-d"])
        .arg(&content)
        .arg(&raw)
        .arg("64M"));
    run(Command::new("qemu-img")
        .args(["convert", "-O", "qcow2"])
        .arg(&raw)
        .arg(unpacked.join("data.img")));
    let meta_path = unpacked.join("metadata.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta["disks"] = serde_json::json!([{"path": "box.img"}, {"path": "data.img", "name": "data"}]);
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    let output = work.join("two-disks.box");
    let members: Vec<String> = std::fs::read_dir(&unpacked)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    run(Command::new("tar")
        .arg("-czf")
        .arg(&output)
        .arg("-C")
        .arg(&unpacked)
        .args(&members));
    output
}

#[test]
fn every_disk_of_a_v2_box_is_attached_and_packaged() {
    let _slot = GuestSlot::take();
    let work = tempfile::tempdir().unwrap();
    let two_disks = two_disk_box(work.path());
    let p = TestProject::new("[machines.db]\nbox = \"two-disks\"\n");
    p.ok(&[
        "box",
        "add",
        two_disks.to_str().unwrap(),
        "--name",
        "two-disks",
    ]);
    p.ok(&["up"]);
    let read_marker =
        "sudo mkdir -p /mnt/box && sudo mount /dev/vdb /mnt/box && cat /mnt/box/marker";
    assert_eq!(p.ok(&["ssh", "--", read_marker]), "from the box\n");
    assert_eq!(
        p.ok(&["ssh", "--", "findmnt -no SOURCE /"]),
        "/dev/vda\n",
        "the root disk is the first"
    );
    p.ok(&[
        "ssh",
        "--",
        "echo written | sudo tee /mnt/box/written >/dev/null && sudo umount /mnt/box",
    ]);
    assert!(
        p.dir
            .path()
            .join(".envstate/machines/db/disk1.qcow2")
            .is_file(),
        "the second disk has an overlay of its own"
    );

    let baked = work.path().join("baked.box");
    p.ok(&["package", "--output", baked.to_str().unwrap()]);
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(&baked)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(
        listing.lines().any(|l| l == "box.img") && listing.lines().any(|l| l == "data.img"),
        "{listing}"
    );
    let meta = Command::new("tar")
        .arg("-xzOf")
        .arg(&baked)
        .arg("metadata.json")
        .output()
        .unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout).unwrap();
    assert_eq!(
        meta["disks"],
        serde_json::json!([{"path": "box.img"}, {"path": "data.img", "name": "data"}])
    );
    p.ok(&["destroy", "-f"]);

    // No key inserted, to see what the baked box authorizes for first contact.
    let q = TestProject::new("[machines.copy]\nbox = \"baked\"\nssh.insert_key = false\n");
    q.ok(&["box", "add", baked.to_str().unwrap(), "--name", "baked"]);
    q.ok(&["up"]);
    let read_written = "sudo mkdir -p /mnt/box && sudo mount /dev/vdb /mnt/box && cat /mnt/box/marker /mnt/box/written";
    assert_eq!(
        q.ok(&["ssh", "--", read_written]),
        "from the box\nwritten\n"
    );
    q.ok(&["destroy", "-f"]);
    for name in ["two-disks", "baked"] {
        q.ok(&["box", "remove", name, "--force"]);
    }
}
