//! `env verify` of hosts env does not manage: a real sshd this test starts
//! on 127.0.0.1 (the host itself as a "production server", with throwaway
//! keys), reached with `--ssh` and through `[targets.*]`; and an env machine
//! reached only through a plain ssh config (`env ssh-config`), whose file
//! tree a verify leaves as it was, and which refuses sudo to a user
//! without it.

mod common;

use common::{GuestSlot, TestProject, text};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A real sshd on 127.0.0.1, its keys, and a known_hosts that knows it.
struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Sshd {
    fn start() -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (key, comment) in [("hostkey", "host"), ("id", "client")] {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(d.join(key))
                .status()
                .unwrap()
                .success();
            assert!(ok, "ssh-keygen failed");
        }
        std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host_pub = std::fs::read_to_string(d.join("hostkey.pub")).unwrap();
        let key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", key.join(" ")),
        )
        .unwrap();
        std::fs::write(d.join("empty_known_hosts"), "").unwrap();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PidFile none\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 LogLevel ERROR\n",
                d.join("hostkey").display(),
                d.join("authorized_keys").display()
            ),
        )
        .unwrap();
        // sshd run by root wants its privilege-separation folder.
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd (openssh-server, installed by scripts/install-host-deps.sh --tests)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd { dir, port, child }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn address(&self) -> String {
        format!("{}@127.0.0.1:{}", whoami(), self.port)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Checks true of any Debian host that runs these tests.
const HOST_PASS: &str = r#"
[file."/etc/passwd"]
exists = true
type = "file"
owner = "root"

[user.root]
exists = true
uid = 0

[command."uname -s"]
exit_status = 0
stdout = ["Linux"]

[package.openssh-server]
installed = true
"#;

/// One passing check and one that fails.
const HOST_FAIL: &str = r#"
[file."/etc/passwd"]
exists = true

[file."/nonexistent/env-target-test"]
exists = true
"#;

fn specs_in(dir: &Path) {
    std::fs::create_dir_all(dir.join("specs")).unwrap();
    std::fs::write(dir.join("specs/pass.toml"), HOST_PASS).unwrap();
    std::fs::write(dir.join("specs/fail.toml"), HOST_FAIL).unwrap();
}

fn env_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(common::env_bin())
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(out).0, text(out).1))
}

#[test]
fn a_host_env_does_not_manage_passes_and_fails_with_the_usual_exit_codes() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    specs_in(work.path());
    let id = sshd.path("id");
    let known = sshd.path("known_hosts");
    let base = |spec: &str| -> Vec<String> {
        vec![
            "verify".into(),
            "--ssh".into(),
            sshd.address(),
            "--identity".into(),
            id.display().to_string(),
            "--known-hosts".into(),
            known.display().to_string(),
            "--spec".into(),
            spec.into(),
        ]
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env_in(work.path(), &args)
    };

    let mut args = base("specs/pass.toml");
    args.extend([
        "--format".into(),
        "json".into(),
        "--junit".into(),
        "report.xml".into(),
    ]);
    let out = run(args);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let report = json(&out);
    let machine = &report["machines"][0];
    assert_eq!(machine["machine"], sshd.address(), "{report}");
    assert_eq!(machine["checks"].as_array().unwrap().len(), 4, "{report}");
    let junit = std::fs::read_to_string(work.path().join("report.xml")).unwrap();
    assert!(
        junit.contains("<testsuite") && junit.contains("failures=\"0\""),
        "{junit}"
    );

    let out = run(base("specs/fail.toml"));
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let (stdout, _) = text(&out);
    assert!(stdout.contains("/nonexistent/env-target-test"), "{stdout}");

    // A host whose key is not known is never checked.
    let mut args = base("specs/pass.toml");
    let at = args.iter().position(|a| a == "--known-hosts").unwrap();
    args[at + 1] = sshd.path("empty_known_hosts").display().to_string();
    let out = run(args);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let (stdout, stderr) = text(&out);
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains("host key") && all.contains("never skips"),
        "{all}"
    );

    // --spec is what --ssh needs; --sudo alone names nothing to check.
    let out = run(vec!["verify".into(), "--ssh".into(), sshd.address()]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("--spec FILE"), "{:?}", text(&out));
}

#[test]
fn an_envfile_target_through_an_ssh_config_is_verified_by_name() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    specs_in(work.path());
    std::fs::write(
        work.path().join("ssh_config"),
        format!(
            "Host prod-web\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  UserKnownHostsFile {}\n",
            sshd.port,
            whoami(),
            sshd.path("id").display(),
            sshd.path("known_hosts").display()
        ),
    )
    .unwrap();
    std::fs::write(
        work.path().join("Envfile"),
        "[machines.web]\nbox = \"debian-12\"\nspecs = [\"specs/pass.toml\"]\n\n\
         [targets.prod]\nssh_config = \"ssh_config\"\nhost = \"prod-web\"\n\
         specs = [\"specs/pass.toml\"]\nsudo = true\n\n\
         [targets.broken]\nssh_config = \"ssh_config\"\nhost = \"prod-web\"\n\
         specs = [\"specs/fail.toml\"]\n",
    )
    .unwrap();
    let out = env_in(work.path(), &["verify", "prod", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(json(&out)["machines"][0]["machine"], "prod");
    let out = env_in(work.path(), &["verify", "broken"]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    // `env validate` reads the targets' specs too.
    std::fs::write(
        work.path().join("specs/pass.toml"),
        "[file.x]\nexists = maybe\n",
    )
    .unwrap();
    let out = env_in(work.path(), &["validate"]);
    assert!(!out.status.success(), "{:?}", text(&out));
    assert!(text(&out).1.contains("pass.toml"), "{:?}", text(&out));
}

/// Makes a user without sudo who logs in with the machine's key.
const SETUP: &str = r#"#!/bin/sh
set -e
useradd -m -s /bin/sh nosudo
mkdir -p /home/nosudo/.ssh
cp /home/vagrant/.ssh/authorized_keys /home/nosudo/.ssh/
chown -R nosudo: /home/nosudo/.ssh
chmod 700 /home/nosudo/.ssh
"#;

/// The machine these tests reach only through a plain ssh config.
fn machine() -> &'static (TestProject, PathBuf) {
    static MACHINE: OnceLock<(TestProject, PathBuf)> = OnceLock::new();
    MACHINE.get_or_init(|| {
        let _slot = GuestSlot::take();
        let p = TestProject::with_box(
            "[machines.web]\nbox = \"debian-12\"\nmemory = \"512M\"\n\
             provision = [{ type = \"shell\", path = \"setup.sh\" }]\n",
        );
        std::fs::write(p.dir.path().join("setup.sh"), SETUP).unwrap();
        specs_in(p.dir.path());
        p.ok(&["up"]);
        p.destroy_at_exit();
        let config = p.dir.path().join("plain_ssh_config");
        std::fs::write(&config, p.ok(&["ssh-config", "web"])).unwrap();
        (p, config)
    })
}

/// Every path of the guest's root file system with its type, size, mode
/// and modification time, but for what the system itself changes while
/// it runs (logs, the journal, runtime state).
fn guest_tree(config: &Path) -> Vec<String> {
    let listing = r#"sudo find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /var/log -o -path /var/lib/systemd -o -path /var/tmp/systemd-private-* -o -path /tmp/systemd-private-* \) -prune -o -printf '%p %y %s %m %T@\n'"#;
    let out = Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args(["web", listing])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

/// The tree with the mtime of /tmp itself left out: the script's own
/// temporary folder comes and goes there.
fn without_tmp_mtime(tree: Vec<String>) -> Vec<String> {
    tree.into_iter()
        .map(|l| match l.strip_prefix("/tmp d ") {
            Some(rest) => format!("/tmp d {}", rest.rsplit_once(' ').map_or(rest, |r| r.0)),
            None => l,
        })
        .collect()
}

/// One test, in order: the tree compare must not see another verify's
/// temporary folder.
#[test]
fn a_machine_reached_through_a_plain_ssh_config_is_left_as_it_was_and_may_refuse_sudo() {
    let (p, config) = machine();
    let plain = config.display().to_string();
    let before = without_tmp_mtime(guest_tree(config));
    let out = p.env(&[
        "verify",
        "--ssh-config",
        &plain,
        "--host",
        "web",
        "--sudo",
        "--spec",
        "specs/pass.toml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let after = without_tmp_mtime(guest_tree(config));
    let gone: Vec<&String> = before.iter().filter(|l| !after.contains(l)).collect();
    let new: Vec<&String> = after.iter().filter(|l| !before.contains(l)).collect();
    assert!(
        gone.is_empty() && new.is_empty(),
        "verify changed files: gone {gone:?}, new {new:?}"
    );

    // A user without sudo: the checks run as that user unless sudo is asked.
    let nosudo = config.with_file_name("nosudo_ssh_config");
    // Its own connection: env's master connection is logged in as vagrant.
    let plain_text: String = std::fs::read_to_string(config)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("Control"))
        .map(|l| format!("{}\n", l.replace("User vagrant", "User nosudo")))
        .collect();
    std::fs::write(&nosudo, plain_text).unwrap();
    let nosudo = nosudo.display().to_string();
    let args = [
        "verify",
        "--ssh-config",
        &nosudo,
        "--host",
        "web",
        "--spec",
        "specs/pass.toml",
    ];
    let out = p.env(&args);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let mut with_sudo = args.to_vec();
    with_sudo.push("--sudo");
    let out = p.env(&with_sudo);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let (stdout, stderr) = text(&out);
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains("refused sudo") && all.contains("sudo = false"),
        "{all}"
    );
}
