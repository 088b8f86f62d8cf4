//! The provisioning cache on real guests: a cold `env test --idempotent`
//! keeps the provisioned machine; the same run again restores it (no
//! provisioning, the idempotence proven when it was kept, the specs still
//! run); one byte changed in a provisioned file is a new key and
//! provisioning runs again; a damaged entry is ignored with a note and
//! replaced; `--no-cache` overrides the Envfile; `env cache list|prune`.

mod common;

use common::{GuestSlot, TestProject, text};

const ENVFILE: &str = r#"
[cache]
enabled = true

[machines.app]
box = "debian-12"
memory = "512M"
cpus = 1
specs = ["specs/app.toml"]
provision = [
  { type = "file", source = "files/app.conf", destination = "/tmp/app.conf" },
  { type = "shell", path = "setup.sh", changed_exit_code = 100 },
]
"#;

/// Installs the uploaded config and counts its runs in the guest.
const SETUP: &str = r#"#!/bin/sh
set -eu
echo run >> /var/lib/provision-runs
if ! cmp -s /tmp/app.conf /etc/app.conf; then
  cp /tmp/app.conf /etc/app.conf
  exit 100
fi
"#;

fn spec(content: &str) -> String {
    format!("[file.\"/etc/app.conf\"]\ncontains = [\"{content}\"]\n")
}

fn project() -> TestProject {
    let p = TestProject::with_box(ENVFILE);
    let d = p.dir.path();
    std::fs::create_dir_all(d.join("files")).unwrap();
    std::fs::create_dir_all(d.join("specs")).unwrap();
    std::fs::write(d.join("setup.sh"), SETUP).unwrap();
    std::fs::write(d.join("files/app.conf"), "color = blue\n").unwrap();
    std::fs::write(d.join("specs/app.toml"), spec("color = blue")).unwrap();
    p
}

fn entries(p: &TestProject) -> Vec<serde_json::Value> {
    let list: serde_json::Value =
        serde_json::from_str(&p.ok(&["cache", "list", "--json"])).unwrap();
    list["entries"].as_array().unwrap().clone()
}

#[test]
fn a_provisioned_machine_is_kept_restored_and_invalidated_by_one_byte() {
    let _slot = GuestSlot::take();
    let p = project();
    let d = p.dir.path();

    // Cold: provisioned twice (idempotence), kept, verified, destroyed.
    let out = p.env(&["test", "--idempotent"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("cache: no entry for key"), "{stderr}");
    assert!(
        stderr.contains("kept in the provisioning cache"),
        "{stderr}"
    );
    let kept = entries(&p);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["idempotent"], true);
    assert_eq!(kept[0]["machine"], "app");

    // Unchanged: restored, not provisioned, the specs still run.
    let out = p.env(&["test", "--idempotent", "--junit", "report.xml"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("restored from the provisioning cache"),
        "{stderr}"
    );
    assert!(
        stderr.contains("idempotence: proven when its cache entry was kept"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("provisioning: "),
        "provisioning ran on a hit:\n{stderr}"
    );
    let junit = std::fs::read_to_string(d.join("report.xml")).unwrap();
    assert!(
        junit.contains("/etc/app.conf") && junit.contains("failures=\"0\""),
        "{junit}"
    );

    // One byte of a provisioned file: a new key, provisioning runs.
    std::fs::write(d.join("files/app.conf"), "color = bluE\n").unwrap();
    std::fs::write(d.join("specs/app.toml"), spec("color = bluE")).unwrap();
    let out = p.env(&["test"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("cache: no entry for key"), "{stderr}");
    assert!(stderr.contains("provisioning: "), "{stderr}");
    let now = entries(&p);
    assert_eq!(now.len(), 2, "{now:?}");
    let newest = now[0]["key"].as_str().unwrap().to_string();
    assert_ne!(newest, kept[0]["key"].as_str().unwrap());
    assert_eq!(now[0]["idempotent"], false, "kept without --idempotent");

    // A damaged entry is ignored (said why), never half-used, and replaced.
    let home = &p.home;
    let disk = home.join("cache").join(&newest).join("disk.qcow2");
    let bytes = std::fs::read(&disk).unwrap();
    std::fs::write(&disk, &bytes[..bytes.len() / 2]).unwrap();
    let out = p.env(&["up"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("cache: entry {} ignored", &newest[..12])),
        "{stderr}"
    );
    assert!(stderr.contains("bytes, not"), "{stderr}");
    assert!(
        stderr.contains("kept in the provisioning cache"),
        "{stderr}"
    );
    let runs = p.ok(&["ssh", "app", "--", "cat /var/lib/provision-runs"]);
    assert_eq!(runs.lines().count(), 1, "{runs}");
    p.ok(&["destroy", "-f"]);

    // --no-cache overrides the Envfile: an entry matches, yet it boots.
    std::fs::write(d.join("files/app.conf"), "color = blue\n").unwrap();
    let out = p.env(&["up", "--no-cache"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stderr.contains("cache:") && !stderr.contains("provisioning cache"),
        "{stderr}"
    );
    assert!(stderr.contains("provisioning: "), "{stderr}");
    p.ok(&["destroy", "-f"]);

    // Pruning: to a size below one entry removes the least recently used.
    let out = p.ok(&["cache", "prune", "--max-size", "1M"]);
    assert!(out.is_empty(), "{out}");
    assert!(entries(&p).is_empty(), "{:?}", entries(&p));
}
