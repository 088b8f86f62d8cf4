//! Snapshots of a running machine (VM state: restore resumes without a
//! boot) and of a halted one (`qemu-img`, disks only), push/pop, and the
//! errors that protect the user.

mod common;

use common::{GuestSlot, TestProject, text};

fn names(p: &TestProject) -> Vec<String> {
    let listed: serde_json::Value =
        serde_json::from_str(&p.ok(&["snapshot", "list", "--json"])).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

fn exists(p: &TestProject, path: &str) -> bool {
    match p
        .env(&["ssh", "--", &format!("test -e {path}")])
        .status
        .code()
    {
        Some(0) => true,
        Some(1) => false,
        other => panic!("ssh failed: {other:?}"),
    }
}

/// The guest's clock minus the host's, in seconds.
fn clock_skew(p: &TestProject) -> i64 {
    p.ok(&["ssh", "--", "date +%s"])
        .trim()
        .parse::<i64>()
        .unwrap()
        - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
}

#[test]
fn snapshots_of_running_and_halted_machines() {
    let _slot = GuestSlot::take();
    let p = TestProject::with_box(
        r#"
[machines.app]
box = "debian-12"
memory = "512M"
"#,
    );
    let out = p.env(&["snapshot", "save", "early"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("`env up` first"), "{}", text(&out).1);
    p.ok(&["up"]);

    // Running: VM state included, a file made afterwards is gone after the
    // restore, the guest runs on without a boot, and its clock is now.
    p.ok(&["ssh", "--", "touch /tmp/before"]);
    let boot_id = p.ok(&["ssh", "--", "cat /proc/sys/kernel/random/boot_id"]);
    let said = text(&p.env(&["snapshot", "save", "clean"])).1;
    assert!(said.contains("and VM state"), "{said}");
    let listed: serde_json::Value =
        serde_json::from_str(&p.ok(&["snapshot", "list", "--json"])).unwrap();
    assert_eq!(listed[0]["machine"], "app");
    assert_eq!(listed[0]["name"], "clean");
    assert!(listed[0]["vm_state_bytes"].as_u64().unwrap() > 0);
    let out = p.env(&["snapshot", "save", "app", "clean"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("already has a snapshot `clean`"));

    p.ok(&["ssh", "--", "touch /tmp/after"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    p.ok(&["snapshot", "restore", "clean"]);
    assert!(exists(&p, "/tmp/before"));
    assert!(!exists(&p, "/tmp/after"), "a file made after the snapshot");
    assert_eq!(
        p.ok(&["ssh", "--", "cat /proc/sys/kernel/random/boot_id"]),
        boot_id,
        "a restore resumes, it does not boot"
    );
    let skew = clock_skew(&p);
    assert!(skew.abs() <= 2, "guest clock off by {skew} s after restore");

    // push/pop: a stack of generated names.
    p.ok(&["snapshot", "push"]);
    assert_eq!(names(&p).len(), 2);
    p.ok(&["ssh", "--", "touch /tmp/pushed"]);
    p.ok(&["snapshot", "pop"]);
    assert!(!exists(&p, "/tmp/pushed"));
    assert_eq!(names(&p), ["clean"], "pop deletes what it restored");
    let out = p.env(&["snapshot", "pop"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("no pushed snapshot"));

    p.ok(&["snapshot", "delete", "clean"]);
    assert!(names(&p).is_empty());
    let out = p.env(&["snapshot", "restore", "clean"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("no snapshot `clean`"));
    let out = p.env(&["snapshot", "save", "42"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("all digits"));

    // Suspend: memory saved, QEMU gone; resume runs on where it was (same
    // boot, a process started before still there, the clock now).
    let sleeper = p.ok(&[
        "ssh",
        "--",
        "setsid sleep 900 </dev/null >/dev/null 2>&1 & echo $!",
    ]);
    let said = text(&p.env(&["suspend"])).1;
    assert!(said.contains("suspended in"), "{said}");
    assert_eq!(p.state_of("app"), "suspended");
    let out = p.env(&["ssh", "--", "true"]);
    assert!(
        text(&out).1.contains("`env resume app`"),
        "{}",
        text(&out).1
    );
    let out = p.env(&["snapshot", "save", "while-suspended"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("is suspended"), "{}", text(&out).1);
    std::thread::sleep(std::time::Duration::from_secs(3));
    p.ok(&["resume"]);
    assert_eq!(p.state_of("app"), "running");
    assert_eq!(
        p.ok(&["ssh", "--", "cat /proc/sys/kernel/random/boot_id"]),
        boot_id,
        "resume does not boot"
    );
    p.ok(&["ssh", "--", &format!("kill -0 {}", sleeper.trim())]);
    let skew = clock_skew(&p);
    assert!(skew.abs() <= 2, "guest clock off by {skew} s after resume");
    assert!(names(&p).is_empty(), "the saved state is gone once resumed");
    // `env up` resumes too; `env halt` of a suspended machine discards its
    // state, and the next up boots.
    p.ok(&["suspend"]);
    let said = text(&p.env(&["up"])).1;
    assert!(said.contains("resuming where it was suspended"), "{said}");
    p.ok(&["suspend"]);
    let said = text(&p.env(&["halt"])).1;
    assert!(said.contains("saved state discarded"), "{said}");
    assert_eq!(p.state_of("app"), "halted");
    assert!(names(&p).is_empty());
    p.ok(&["up"]);
    assert_ne!(
        p.ok(&["ssh", "--", "cat /proc/sys/kernel/random/boot_id"]),
        boot_id
    );

    // Halted: disks only, through qemu-img; the next up boots from it.
    p.ok(&["ssh", "--", "sudo touch /etc/kept-by-cold-snapshot && sync"]);
    p.ok(&["halt"]);
    let said = text(&p.env(&["snapshot", "save", "cold"])).1;
    assert!(said.contains("disks only"), "{said}");
    p.ok(&["up"]);
    let out = p.env(&["snapshot", "restore", "cold"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "disk-only snapshot of a running machine"
    );
    assert!(text(&out).1.contains("env halt"), "{}", text(&out).1);
    p.ok(&["ssh", "--", "sudo touch /etc/made-after-cold && sync"]);
    p.ok(&["halt"]);
    p.ok(&["snapshot", "restore", "cold"]);
    p.ok(&["up"]);
    assert!(exists(&p, "/etc/kept-by-cold-snapshot"));
    assert!(!exists(&p, "/etc/made-after-cold"));
    p.ok(&["halt"]);
    p.ok(&["snapshot", "delete", "cold"]);
    assert!(names(&p).is_empty());
}
