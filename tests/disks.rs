//! Data disks: a kept disk survives destroy + up, a non-kept one does not,
//! `--purge-disks` removes kept ones, `env disks` lists them, snapshots
//! leave kept disks alone.

mod common;

use common::{GuestSlot, TestProject, text};

#[test]
fn kept_disks_survive_destroy_and_purge_removes_them() {
    let _slot = GuestSlot::take();
    let p = TestProject::with_box(
        r#"
[defaults]
box = "debian-12"
[machines.db]
disks = [
  { name = "data", size = "256M", keep = true, mount = "/var/lib/data" },
  { name = "scratch", size = "128M", format = "raw", mount = "/scratch" },
]
"#,
    );
    p.ok(&["up"]);
    assert_eq!(
        p.ok(&[
            "ssh",
            "--",
            "readlink -f /dev/disk/by-id/virtio-env-data | grep -c vd"
        ]),
        "1\n"
    );
    p.ok(&["ssh", "--", "echo kept | sudo tee /var/lib/data/file >/dev/null && echo gone | sudo tee /scratch/file >/dev/null && sync"]);
    let listed: serde_json::Value = serde_json::from_str(&p.ok(&["disks", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["keep"], true);
    assert_eq!(listed[0]["exists"], true);
    let kept_file = p.dir.path().join(".envstate/disks/db/data.qcow2");
    assert!(kept_file.exists());

    let out = p.env(&["destroy", "-f"]);
    assert!(text(&out).1.contains("kept disks stay"), "{}", text(&out).1);
    assert!(kept_file.exists(), "destroy must keep a kept disk");
    p.ok(&["up"]);
    assert_eq!(p.ok(&["ssh", "--", "cat /var/lib/data/file"]), "kept\n");
    assert_eq!(
        p.env(&["ssh", "--", "test -e /scratch/file"]).status.code(),
        Some(1),
        "a non-kept disk dies with its machine"
    );

    // A snapshot leaves the kept disk alone, and says so; restoring it
    // rewinds the root disk but keeps the kept disk's newest data.
    let out = p.env(&["snapshot", "save", "before"]);
    let (_, said) = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("left out data disk `data`: kept disk"),
        "{said}"
    );
    assert!(
        said.contains("left out data disk `scratch`: raw image"),
        "{said}"
    );
    p.ok(&[
        "ssh",
        "--",
        "echo newer | sudo tee /var/lib/data/file >/dev/null && sudo touch /etc/after-snapshot",
    ]);
    let out = p.env(&["snapshot", "restore", "before"]);
    let (_, said) = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("rewinding the disks and booting"), "{said}");
    assert_eq!(p.ok(&["ssh", "--", "cat /var/lib/data/file"]), "newer\n");
    assert_eq!(
        p.env(&["ssh", "--", "test -e /etc/after-snapshot"])
            .status
            .code(),
        Some(1),
        "the root disk is rewound"
    );

    p.ok(&["destroy", "-f", "--purge-disks"]);
    assert!(!kept_file.exists());
    let listed: serde_json::Value = serde_json::from_str(&p.ok(&["disks", "--json"])).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["exists"] == false)
    );
}
