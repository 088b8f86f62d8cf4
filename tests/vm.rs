//! Machines for real: QEMU guests (TCG) booted from the box built by
//! boxes/debian-12, reached over real SSH. Read-only checks share one booted
//! machine; at most `common::MAX_GUESTS` guests boot at once.

mod common;

use common::{GuestSlot, TestProject, text};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

/// A free TCP port on 127.0.0.1 (for forwarded ports of test machines).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shared machine: one boot for every test that only reads.
struct Shared {
    project: TestProject,
    web_port: u16,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let _slot = GuestSlot::take();
        let web_port = free_port();
        let project = TestProject::with_box(&format!(
            "[defaults]\nbox = \"debian-12\"\nmemory = \"1G\"\n[machines.shared]\nports = [{{ guest = 8000, host = {web_port} }}]\nports_auto = {{ exclude = [\"9000-9100\"] }}\n"
        ));
        project.ok(&["up"]);
        // Serve HTTP in the guest for the forwarding test.
        project.ok(&["ssh", "--", "mkdir -p /tmp/www && echo hello-from-guest > /tmp/www/index.html && cd /tmp/www && (setsid nohup python3 -m http.server 8000 >/dev/null 2>&1 &)"]);
        project.destroy_at_exit();
        Shared { project, web_port }
    })
}

#[test]
fn ssh_runs_commands_and_keeps_their_exit_status() {
    let s = shared();
    assert_eq!(s.project.ok(&["ssh", "--", "echo", "hi"]), "hi\n");
    let out = s.project.env(&["ssh", "shared", "--", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        s.project.ok(&["ssh", "--", "sudo -n id -u"]).trim(),
        "0",
        "password-less sudo"
    );
}

#[test]
fn the_well_known_key_is_replaced_and_the_host_key_pinned() {
    let s = shared();
    let keys = s.project.ok(&["ssh", "--", "cat ~/.ssh/authorized_keys"]);
    let well_known =
        std::fs::read_to_string(common::repo().join("boxes/keys/insecure_ed25519.pub")).unwrap();
    let well_known_blob = well_known.split_whitespace().nth(1).unwrap();
    assert!(
        !keys.contains(well_known_blob),
        "the well-known key must be gone: {keys}"
    );
    assert_eq!(keys.lines().count(), 1);
    assert!(keys.contains("env machine key"));

    let state = s.project.dir.path().join(".envstate/machines/shared");
    let known_hosts = std::fs::read_to_string(state.join("known_hosts")).unwrap();
    assert!(known_hosts.contains("ssh-ed25519"), "{known_hosts}");
    // The guest uses the host key env made and pinned before first contact.
    let host_public = std::fs::read_to_string(state.join("ssh_host_ed25519_key.pub")).unwrap();
    let blob = host_public.split_whitespace().nth(1).unwrap();
    assert_eq!(known_hosts.lines().count(), 1, "{known_hosts}");
    assert!(known_hosts.contains(blob), "{known_hosts}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(state.join("id_ed25519")).unwrap().mode() & 0o077,
        0,
        "the key is private"
    );
    for private in [state.clone(), state.join("disk.qcow2")] {
        assert_eq!(
            std::fs::metadata(&private).unwrap().mode() & 0o077,
            0,
            "{} is the user's alone",
            private.display()
        );
    }
    assert!(!state.join("first_contact_key").exists());

    // The well-known key no longer logs in.
    let port = s.project.status()[0]["ssh_port"].as_u64().unwrap() as u16;
    let out = common::ssh_with_well_known_key(port, "true");
    assert!(!out.status.success(), "the well-known key still works");
}

#[test]
fn ssh_config_works_with_plain_ssh() {
    let s = shared();
    let config = s.project.dir.path().join("ssh_config.test");
    std::fs::write(&config, s.project.ok(&["ssh-config"])).unwrap();
    let out = std::process::Command::new("ssh")
        .arg("-F")
        .arg(&config)
        .args(["shared", "uname", "-s"])
        .output()
        .unwrap();
    assert_eq!(text(&out).0, "Linux\n", "{}", text(&out).1);
}

#[test]
fn a_forwarded_port_is_reached_from_the_host() {
    let s = shared();
    let mut body = String::new();
    for _ in 0..50 {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", s.web_port)) {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            stream
                .write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
                .unwrap();
            body.clear();
            let _ = stream.read_to_string(&mut body);
            if body.contains("hello-from-guest") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(body.contains("hello-from-guest"), "{body}");
    let ports = s.project.ok(&["port"]);
    assert!(
        ports.contains(&format!(
            "8000/tcp (guest) => 127.0.0.1:{} (host)",
            s.web_port
        )),
        "{ports}"
    );
    assert!(ports.contains("22/tcp (guest)"), "{ports}");
}

#[test]
fn status_reports_running_with_its_qemu() {
    let s = shared();
    let status = s.project.status();
    assert_eq!(status[0]["state"], "running");
    assert_eq!(status[0]["vm_state"], "running", "asked over QMP");
    assert_eq!(status[0]["accel"], "tcg");
    let table = s.project.ok(&["status"]);
    assert!(
        table.contains("shared") && table.contains("running"),
        "{table}"
    );
    // `up` of a running machine does nothing.
    let out = s.project.env(&["up"]);
    assert!(text(&out).1.contains("already running"));
}

#[test]
fn halt_and_up_keep_the_disk_destroy_and_up_start_from_nothing() {
    let _slot = GuestSlot::take();
    let envfile = |memory: &str, step: &str| {
        format!(
            "[defaults]\nbox = \"debian-12\"\ndisk = \"10G\"\nmemory = \"{memory}\"\nprovision = [{{ type = \"shell\", inline = \"echo {step}\" }}]\n[logs]\nforward = true\n"
        )
    };
    let p = TestProject::with_box(&envfile("1G", "one"));
    p.ok(&["up"]);
    let drift = |p: &TestProject| p.status()[0]["drift"].clone();
    assert_eq!(
        drift(&p),
        serde_json::json!({ "reload": [], "provision": false })
    );
    p.ok(&["ssh", "--", "echo kept > ~/marker && sync"]);
    // The guest's journal streams to the host while the machine runs.
    p.ok(&["ssh", "--", "logger env-journal-marker"]);
    let streamed = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(200));
        p.ok(&["logs", "--journal"]).contains("env-journal-marker")
    });
    assert!(streamed, "{}", p.ok(&["logs", "--journal"]));
    // The overlay grew to the Envfile's size and the filesystem with it.
    let size = p.ok(&["ssh", "--", "df --output=size -BG / | tail -1"]);
    assert!(
        size.trim().trim_end_matches('G').parse::<u32>().unwrap() >= 9,
        "{size}"
    );

    // Drift: the Envfile changed under the running machine.
    std::fs::write(p.dir.path().join("Envfile"), envfile("768M", "two")).unwrap();
    assert_eq!(
        drift(&p),
        serde_json::json!({ "reload": ["memory"], "provision": true })
    );
    let status = p.ok(&["status"]);
    assert!(
        status.contains("memory changed since it booted: `env reload`")
            && status.contains("`env provision`"),
        "{status}"
    );
    p.ok(&["provision"]);
    assert_eq!(drift(&p)["provision"], false);

    // reload = halt (ACPI power-off) + up.
    let out = p.env(&["reload"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(text(&out).1.contains("halted in"), "{}", text(&out).1);
    assert_eq!(
        p.ok(&["ssh", "--", "cat ~/marker"]),
        "kept\n",
        "halt + up keeps the disk"
    );
    assert_eq!(
        drift(&p)["reload"],
        serde_json::json!([]),
        "booted with the new memory"
    );
    p.ok(&["halt", "--force"]);
    assert_eq!(p.state_of("default"), "halted");
    assert!(p.ok(&["status"]).contains("halted"));

    p.ok(&["destroy", "-f"]);
    assert_eq!(p.state_of("default"), "not_created");
    assert!(!p.dir.path().join(".envstate/machines/default").exists());
    // The logs outlive the machine.
    let runs: Vec<_> = std::fs::read_dir(p.dir.path().join(".envstate/logs/default"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(runs.len(), 1);
    assert!(runs[0].path().join("console.log").exists());
    assert!(runs[0].path().join("state.json").exists());
    let journal = std::fs::read_to_string(runs[0].path().join("journal.log")).unwrap();
    assert!(journal.contains("env-journal-marker"), "{journal}");
    let out = p.env(&["logs", "--console"]);
    assert!(out.status.success());
    assert!(
        text(&out).1.contains("newest archived run"),
        "{}",
        text(&out).1
    );
    p.ok(&["up"]);
    let out = p.env(&["ssh", "--", "test -e ~/marker"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "destroy + up starts from the box"
    );
}

/// A guest whose sshd answers before users may log in (pam_nologin while
/// it boots: "System is booting up", then the connection closes): env tries
/// again until they may, instead of failing the boot.
#[test]
fn a_guest_that_lets_users_in_late_is_waited_for() {
    let _slot = GuestSlot::take();
    let p = TestProject::with_box("[defaults]\nbox = \"debian-12\"\n[machines.late]\n");
    p.ok(&["up"]);
    // From the next boot on, logins wait 6 s after sshd starts; nothing
    // else lifts /run/nologin (systemd-user-sessions is masked).
    p.ok(&[
        "ssh",
        "--",
        r#"sudo sh -c 'systemctl mask -q systemd-user-sessions.service
cat > /etc/systemd/system/late-logins.service <<UNIT
[Unit]
DefaultDependencies=no
After=systemd-tmpfiles-setup.service
Before=ssh.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c "echo System is booting up. > /run/nologin; (sleep 6; rm -f /run/nologin) &"
[Install]
WantedBy=multi-user.target
UNIT
systemctl enable -q late-logins.service'"#,
    ]);
    p.ok(&["reload"]);
    assert_eq!(p.ok(&["ssh", "--", "echo in"]), "in\n");
    assert_eq!(
        p.ok(&["ssh", "--", "sudo systemctl is-active late-logins.service"]),
        "active\n",
        "the gate was there at this boot"
    );
    p.ok(&["destroy", "-f"]);
}

#[test]
fn a_killed_qemu_is_reported_and_destroy_still_works() {
    let _slot = GuestSlot::take();
    let p = TestProject::with_box("[defaults]\nbox = \"debian-12\"\n[machines.victim]\n");
    p.ok(&["up"]);
    // An `up` that died after starting QEMU is finished by the next `up`.
    std::fs::remove_file(p.dir.path().join(".envstate/machines/victim/ssh_config")).unwrap();
    let out = p.env(&["up"]);
    assert!(
        text(&out).1.contains("finishing an interrupted"),
        "{}",
        text(&out).1
    );
    assert_eq!(p.ok(&["ssh", "--", "echo back"]), "back\n");
    let pid = p.status()[0]["pid"].as_i64().unwrap();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(p.state_of("victim"), "died");
    assert!(
        p.ok(&["status"])
            .contains("died (QEMU exited without env halt)")
    );
    let out = p.env(&["ssh", "--", "true"]);
    assert!(text(&out).1.contains("not running"));
    p.ok(&["destroy", "-f"]);
    assert_eq!(p.state_of("victim"), "not_created");
}

#[test]
fn a_port_in_use_fails_before_boot_or_moves_with_auto_correct() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let p = TestProject::with_box(&format!(
        "[defaults]\nbox = \"debian-12\"\nports = [{{ guest = 80, host = {port} }}]\n"
    ));
    let out = p.env(&["up"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out).1;
    assert!(
        stderr.contains(&format!("host port {port}/tcp"))
            && stderr.contains("in use")
            && stderr.contains("auto_correct"),
        "{stderr}"
    );
    assert_ne!(p.state_of("default"), "running", "nothing booted");
    drop(p);

    // Two machines in one Envfile; one of them asks to move off a taken port.
    let _slot = GuestSlot::take();
    let p = TestProject::with_box(&format!(
        "[defaults]\nbox = \"debian-12\"\n[machines.one]\nports = [{{ guest = 80, host = {port}, auto_correct = true }}]\n[machines.two]\n"
    ));
    let out = p.env(&["up"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(text(&out).1.contains("auto_correct"));
    let status = p.status();
    assert_eq!(status[0]["state"], "running");
    assert_eq!(status[1]["state"], "running");
    assert_ne!(status[0]["ssh_port"], status[1]["ssh_port"]);
    assert_eq!(p.ok(&["ssh", "one", "--", "echo one"]), "one\n");
    assert_eq!(p.ok(&["ssh", "two", "--", "echo two"]), "two\n");
    let ports = p.ok(&["port", "one"]);
    assert!(
        !ports.contains(&format!("127.0.0.1:{port} (host)")),
        "{ports}"
    );
    drop(taken);
}

#[test]
fn a_boot_that_never_reaches_ssh_times_out_with_advice() {
    // KVM hangs on some hosts (nested virtualization): forcing it must end
    // in a clear timeout, never a hang. Hosts without /dev/kvm refuse at
    // once. One second is too short for any guest to answer SSH, under
    // KVM too: on a host where KVM works the timeout is checked the same.
    let _slot = GuestSlot::take();
    let p = TestProject::with_box("[defaults]\nbox = \"debian-12\"\nboot_timeout = 1\n");
    let started = std::time::Instant::now();
    let out = p.env(&["up", "--accel", "kvm"]);
    let stderr = text(&out).1;
    assert!(!out.status.success(), "no guest answers SSH within 1 s");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1));
    if stderr.contains("/dev/kvm is not usable") || stderr.contains("could not start under KVM") {
        // No KVM at all, or QEMU refused the host CPU (seen here: an MSR).
        assert!(stderr.contains("--accel tcg"), "{stderr}");
        return;
    }
    // KVM guests that hang: the boot timeout fires with advice.
    assert!(
        stderr.contains("did not answer SSH within 1 s (KVM)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("console.log")
            && stderr.contains("--accel tcg")
            && stderr.contains("ENV_ACCEL=tcg"),
        "{stderr}"
    );
    assert_eq!(
        p.state_of("default"),
        "halted",
        "QEMU is stopped after the timeout"
    );
}

#[test]
fn the_boot_timeout_stops_qemu_and_names_the_console_log() {
    let _slot = GuestSlot::take();
    let p = TestProject::with_box("[defaults]\nbox = \"debian-12\"\nboot_timeout = 2\n");
    let out = p.env(&["up"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out).1;
    assert!(
        stderr.contains("did not answer SSH within 2 s (TCG)"),
        "{stderr}"
    );
    let console = p.dir.path().join(".envstate/machines/default/console.log");
    assert!(stderr.contains(&console.display().to_string()), "{stderr}");
    assert_eq!(
        p.state_of("default"),
        "halted",
        "QEMU is stopped after the timeout"
    );
    assert!(
        p.status()[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("did not answer SSH")
    );
}

#[test]
fn upload_and_download_copy_files_and_folders_with_their_modes() {
    let s = shared();
    let p = &s.project;
    let d = p.dir.path();
    std::fs::create_dir_all(d.join("site/css")).unwrap();
    std::fs::write(d.join("site/index.html"), "hello upload").unwrap();
    std::fs::write(d.join("site/css/a.css"), "body{}").unwrap();
    std::fs::write(d.join("run.sh"), "#!/bin/sh\necho ran\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.join("run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();

    // A folder into a folder, a file under a new name (NAME: picks the machine).
    p.ok(&["ssh", "--", "mkdir -p /tmp/up"]);
    p.ok(&["upload", "site", "/tmp/up"]);
    p.ok(&["upload", "run.sh", "shared:/tmp/up/renamed.sh"]);
    assert_eq!(p.ok(&["ssh", "--", "cat /tmp/up/site/css/a.css"]), "body{}");
    assert_eq!(p.ok(&["ssh", "--", "/tmp/up/renamed.sh"]), "ran\n");
    assert_eq!(
        p.ok(&["ssh", "--", "stat -c %a /tmp/up/renamed.sh"]),
        "750\n"
    );

    // And back: a folder into a new name, a file into a folder.
    p.ok(&["download", "/tmp/up/site", "back"]);
    assert_eq!(
        std::fs::read_to_string(d.join("back/index.html")).unwrap(),
        "hello upload"
    );
    std::fs::create_dir_all(d.join("into")).unwrap();
    p.ok(&["download", "shared:/etc/hostname", "into"]);
    assert_eq!(
        std::fs::read_to_string(d.join("into/hostname")).unwrap(),
        "shared\n"
    );

    // A guest that sends a link leading out of the download is refused,
    // and nothing outside is written.
    p.ok(&[
        "ssh",
        "--",
        "mkdir -p /tmp/evil && ln -sfn / /tmp/evil/root && ln -sfn root/etc /tmp/evil/etc",
    ]);
    let out = p.env(&["download", "/tmp/evil", "evil"]);
    assert!(!out.status.success(), "{:?}", text(&out));
    assert!(text(&out).1.contains("refused"), "{:?}", text(&out));
    assert!(!d.join("evil").exists());
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".env-download-")
        })
        .collect();
    assert!(leftovers.is_empty(), "staging removed");

    // A path that is not there: the guest's own words.
    let out = p.env(&["download", "/nonexistent/x", "x"]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("/nonexistent"), "{:?}", text(&out));
}

#[test]
fn global_status_lists_machines_of_any_project_and_prunes_deleted_ones() {
    let s = shared();
    // Run from a folder with no Envfile: no project needed.
    let elsewhere = tempfile::tempdir().unwrap();
    let global = |args: &[&str]| {
        let out = std::process::Command::new(common::env_bin())
            .arg("global-status")
            .args(args)
            .current_dir(elsewhere.path())
            .env("ENV_HOME", &s.project.home)
            .output()
            .unwrap();
        assert!(out.status.success(), "{:?}", text(&out));
        text(&out).0
    };
    let all: serde_json::Value = serde_json::from_str(&global(&["--json"])).unwrap();
    let project = s.project.dir.path().canonicalize().unwrap();
    let me = all
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["name"] == "shared"
                && std::path::Path::new(m["project"].as_str().unwrap())
                    .canonicalize()
                    .ok()
                    == Some(project.clone())
        })
        .unwrap_or_else(|| panic!("the shared machine is listed: {all}"));
    assert_eq!(me["state"], "running");
    assert_eq!(
        me["box"].as_str().unwrap().split('@').next(),
        Some("debian-12")
    );
    assert!(me["ssh"]["port"].as_u64().is_some(), "{me}");
    assert_eq!(me["forwards"][0]["guest_port"], 8000);

    // A project deleted without `env destroy` leaves its record (the
    // store's `.users/BOX/VERSION/HASH`, docs/internals.md): shown as
    // gone, forgotten by --prune.
    let users = s.project.home.join("boxes/.users/debian-12");
    let version = std::fs::read_dir(&users)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    std::fs::write(
        version.join("0123456789abcdef"),
        "/nonexistent/project/.envstate/machines/old",
    )
    .unwrap();
    assert!(global(&[]).contains("gone"), "listed as gone");
    let pruned = std::process::Command::new(common::env_bin())
        .args(["global-status", "--prune"])
        .env("ENV_HOME", &s.project.home)
        .output()
        .unwrap();
    assert!(
        text(&pruned)
            .1
            .contains("forgot /nonexistent/project/.envstate/machines/old"),
        "{:?}",
        text(&pruned)
    );
    assert!(!version.join("0123456789abcdef").exists());
}

/// `env port --json` of the shared machine: guest port -> host port.
fn ports_now(s: &Shared) -> std::collections::BTreeMap<u64, u64> {
    let listed: serde_json::Value =
        serde_json::from_str(&s.project.ok(&["port", "--json"])).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["guest_port"].as_u64().unwrap(),
                f["host_port"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn ports_the_guest_opens_are_forwarded_automatically() {
    let s = shared();
    let wait_for = |what: &str, ok: &dyn Fn(&std::collections::BTreeMap<u64, u64>) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let now = ports_now(s);
            if ok(&now) {
                return now;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {now:?}");
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    };
    // A port free on the host: the guest's listener gets the same one.
    let port = free_port();
    s.project.ok(&[
        "ssh",
        "--",
        &format!(
            "mkdir -p /tmp/auto && echo auto-forwarded > /tmp/auto/index.html && cd /tmp/auto && (setsid nohup python3 -m http.server {port} >/dev/null 2>&1 &) && (setsid nohup python3 -m http.server 9050 >/dev/null 2>&1 &)"
        ),
    ]);
    let now = wait_for("the new port forwarded", &|m| {
        m.contains_key(&(port as u64))
    });
    assert_eq!(
        now[&(port as u64)],
        port as u64,
        "the same port on the host"
    );
    assert_eq!(
        now.get(&8000),
        Some(&(s.web_port as u64)),
        "the Envfile's own forward, once"
    );
    let body = http_get(port);
    assert!(body.contains("auto-forwarded"), "{body}");
    assert!(
        !ports_now(s).contains_key(&9050),
        "an excluded port was forwarded"
    );
    // Closed in the guest: released on the host.
    s.project
        .ok(&["ssh", "--", &format!("pkill -f 'http.server {port}'")]);
    wait_for("the closed port released", &|m| {
        !m.contains_key(&(port as u64))
    });
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "the host port is free again"
    );
}

/// The body of `GET /index.html` on the host's 127.0.0.1:`port`.
fn http_get(port: u16) -> String {
    let mut body = String::new();
    if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
            .unwrap();
        let _ = stream.read_to_string(&mut body);
    }
    body
}
