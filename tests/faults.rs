//! Faults on a real guest: `env up` stopped by SIGTERM while it provisions
//! and by SIGINT while the guest boots. Either way the machine is left
//! running and recorded, or cleanly gone, and the next `up` or `destroy -f`
//! works. A stale pid file naming another process is never signalled.

mod common;

use common::{GuestSlot, TestProject, text};
use std::path::Path;
use std::time::{Duration, Instant};

/// Waits until `ready` holds, up to `limit`.
fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "gave up waiting");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the child this test spawned.
    unsafe { libc::kill(pid as i32, sig) };
}

/// Whether a QEMU process runs on this machine's disk.
fn qemu_runs(disk: &Path) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
        std::fs::read(p.path().join("cmdline")).is_ok_and(|c| {
            let needle = disk.as_os_str().as_encoded_bytes();
            c.windows(needle.len()).any(|w| w == needle)
        })
    })
}

#[test]
fn up_stopped_while_provisioning_is_finished_by_the_next_up() {
    let _slot = GuestSlot::take();
    let p = TestProject::with_box(
        r#"
[machines.m]
box = "debian-12"
[[machines.m.provision]]
type = "shell"
name = "slow the first time"
inline = "[ -f /var/tmp/second ] || { touch /var/tmp/second; sleep 120; }; echo done > /var/tmp/provisioned"
"#,
    );
    let log = p.dir.path().join(".envstate/machines/m/provision.log");
    let mut up = p.cmd(&["up"]).spawn().unwrap();
    wait_for(Duration::from_secs(180), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("==> slow the first time"))
    });
    std::thread::sleep(Duration::from_secs(2));
    signal(up.id(), libc::SIGTERM);
    assert!(!up.wait().unwrap().success());
    // Running and recorded: the next `up` provisions (the step was cut off).
    assert_eq!(p.state_of("m"), "running");
    let out = p.env(&["up"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(
        p.ok(&["ssh", "--", "cat", "/var/tmp/provisioned"]),
        "done\n"
    );
    p.ok(&["destroy", "-f"]);
    assert_eq!(p.state_of("m"), "not_created");
}

#[test]
fn up_interrupted_while_booting_leaves_nothing_destroy_cannot_remove() {
    let _slot = GuestSlot::take();
    let p = TestProject::with_box("[machines.m]\nbox = \"debian-12\"\n");
    let pidfile = p.dir.path().join(".envstate/machines/m/qemu.pid");
    let mut up = p.cmd(&["up"]).spawn().unwrap();
    wait_for(Duration::from_secs(60), || pidfile.exists());
    signal(up.id(), libc::SIGINT);
    assert!(!up.wait().unwrap().success());
    let disk = p.dir.path().join(".envstate/machines/m/disk.qcow2");
    // The guest boots on, recorded as running; destroy takes it all away.
    assert_eq!(p.state_of("m"), "running");
    let out = p.env(&["destroy", "-f"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(p.state_of("m"), "not_created");
    wait_for(Duration::from_secs(10), || !qemu_runs(&disk));
    // And the next `up` starts from nothing.
    let out = p.env(&["up"]);
    assert!(out.status.success(), "{}", text(&out).1);
    p.ok(&["destroy", "-f"]);
}

#[test]
fn a_box_store_without_room_refuses_the_box_and_keeps_nothing() {
    // A small filesystem for the store: a size-limited tmpfs (root only, as
    // in CI; elsewhere there is nothing to mount it with).
    // SAFETY: getuid has no preconditions and cannot fail.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("skipped: needs root to mount a small filesystem");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "env-test-full"])
        .arg(home.path())
        .status()
        .unwrap();
    assert!(mounted.success());
    let out = std::process::Command::new(common::env_bin())
        .args(["box", "add"])
        .arg(common::test_box())
        .args(["--name", "too-big"])
        .env("ENV_HOME", home.path())
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    let listing: Vec<String> = std::fs::read_dir(home.path().join("boxes"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let _ = std::process::Command::new("umount")
        .arg(home.path())
        .status();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("free space of") || stderr.contains("No space left"),
        "{stderr}"
    );
    assert!(
        listing.iter().all(|n| n == ".lock" || n == ".downloads"),
        "nothing half-added stays: {listing:?}"
    );
}

/// A machine recorded as running whose `qemu.pid` now names another
/// process (the pid was recycled; this one even has the disk path among its
/// arguments): env reports the machine dead and never signals that process.
#[test]
fn a_stale_pid_file_naming_another_process_is_never_signalled() {
    let p = TestProject::new("[machines.web]\nbox = \"fake\"\n");
    let dir = p.dir.path().join(".envstate/machines/web");
    std::fs::create_dir_all(&dir).unwrap();
    let state = std::fs::read_to_string(common::repo().join("tests/fixtures/state-format-0.json"))
        .unwrap()
        .replace("\"running\": false", "\"running\": true");
    std::fs::write(dir.join("state.json"), state).unwrap();
    let disk = dir.join("disk.qcow2");
    std::fs::write(&disk, b"").unwrap();
    let mut decoy = std::process::Command::new("sh")
        .args(["-c", "sleep 600"])
        .arg(&disk)
        .spawn()
        .unwrap();
    std::fs::write(dir.join("qemu.pid"), decoy.id().to_string()).unwrap();

    let status = p.status();
    assert_eq!(status[0]["state"], "died", "{status}");
    assert_eq!(status[0]["pid"], serde_json::Value::Null, "{status}");
    for args in [&["halt"][..], &["halt", "--force"], &["destroy", "-f"]] {
        let out = p.env(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out).1);
        assert!(
            decoy.try_wait().unwrap().is_none(),
            "`env {args:?}` signalled a process that is not the machine's QEMU"
        );
    }
    assert!(!dir.exists(), "destroy removed the machine");
    decoy.kill().unwrap();
    decoy.wait().unwrap();
}
