//! Faults on a real guest: `env up` stopped by SIGTERM while it provisions
//! and by SIGINT while the guest boots. Either way the machine is left
//! running and recorded, or cleanly gone, and the next `up` or `destroy -f`
//! works. A stale pid file naming another process is never signalled. QEMU
//! killed while `up` waits for the guest is reported and recovered from; a
//! machine whose disk fills the host's filesystem is paused, said so, and
//! resumed by `up` once there is room.

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

/// Whether this test process may mount filesystems (root, as in CI).
fn may_mount() -> bool {
    // SAFETY: getuid has no preconditions and cannot fail.
    let root = unsafe { libc::getuid() } == 0;
    if !root {
        eprintln!("skipped: needs root to mount a small filesystem");
    }
    root
}

/// Mounts a tmpfs of `size` at `at` (or changes its size).
fn mount_tmpfs(at: &Path, size: &str, remount: bool) {
    let options = if remount {
        format!("remount,size={size}")
    } else {
        format!("size={size}")
    };
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &options, "env-test-full"])
        .arg(at)
        .status()
        .unwrap();
    assert!(mounted.success());
}

#[test]
fn qemu_killed_while_up_waits_for_the_guest_is_reported_and_the_next_up_works() {
    let _slot = GuestSlot::take();
    let p = TestProject::with_box("[machines.m]\nbox = \"debian-12\"\n");
    let pidfile = p.dir.path().join(".envstate/machines/m/qemu.pid");
    let up = p
        .cmd(&["up"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pid = 0;
    wait_for(Duration::from_secs(60), || {
        pid = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        pid > 0
    });
    std::thread::sleep(Duration::from_secs(2));
    signal(pid, libc::SIGKILL);
    let out = up.wait_with_output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("QEMU exited during boot"), "{stderr}");
    assert!(
        stderr.contains("console.log"),
        "names the console: {stderr}"
    );
    // `up` saw it go: the machine is recorded as stopped, not running.
    assert_eq!(p.state_of("m"), "halted");
    // The disk is kept; the next `up` boots it.
    let out = p.env(&["up"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(p.ok(&["ssh", "--", "echo", "back"]), "back\n");
    p.ok(&["destroy", "-f"]);
}

#[test]
fn a_machine_whose_disk_fills_the_host_is_paused_and_up_resumes_it() {
    if !may_mount() {
        return;
    }
    let _slot = GuestSlot::take();
    let p = TestProject::with_box("[machines.m]\nbox = \"debian-12\"\n");
    let state = p.dir.path().join(".envstate");
    std::fs::create_dir_all(&state).unwrap();
    mount_tmpfs(&state, "320m", false);
    let outcome = std::panic::catch_unwind(|| fill_then_make_room(&p, &state));
    let _ = p.env(&["destroy", "-f"]);
    let _ = std::process::Command::new("umount").arg(&state).status();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn fill_then_make_room(p: &TestProject, state: &Path) {
    p.ok(&["up"]);
    // More than the filesystem holds, written through to the disk.
    let fill = p
        .cmd(&[
            "ssh",
            "--",
            "dd if=/dev/zero of=/var/tmp/fill bs=1M count=400 oflag=direct status=none && echo filled",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(180), || p.state_of("m") == "paused");
    let status = p.status();
    let why = status[0]["paused"].as_str().unwrap().to_string();
    assert!(why.contains("no space left on the host"), "{why}");
    assert!(why.contains(&state.display().to_string()), "{why}");
    let out = p.env(&["ssh", "--", "true"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is paused by") && stderr.contains("env up m"),
        "{stderr}"
    );
    // Still no room: `up` says so and leaves it paused.
    let out = p.env(&["up"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out).1);
    assert_eq!(p.state_of("m"), "paused");
    // Room made: `up` lets it run on, the write completes, nothing lost.
    mount_tmpfs(state, "1g", true);
    let out = p.env(&["up"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        (stdout.clone() + &stderr).contains("running again"),
        "{stdout}{stderr}"
    );
    assert_eq!(p.state_of("m"), "running");
    let filled = fill.wait_with_output().unwrap();
    assert_eq!(text(&filled).0, "filled\n");
    assert_eq!(
        p.ok(&["ssh", "--", "stat", "-c", "%s", "/var/tmp/fill"]),
        "419430400\n"
    );
}

#[test]
fn a_box_store_without_room_refuses_the_box_and_keeps_nothing() {
    // A small filesystem for the store: a size-limited tmpfs (root only, as
    // in CI; elsewhere there is nothing to mount it with).
    if !may_mount() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    mount_tmpfs(home.path(), "64m", false);
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
