//! The libvirt backend on a real libvirtd (started by .ci/libvirtd.sh):
//! two machines on a "remote" host reached over SSH (an sshd this test
//! starts on 127.0.0.1 with a throwaway key; libvirt's own SSH transport
//! and env's tunnel both go through it), and one on `qemu:///system`
//! through `env test`. Because that remote host shares this machine's
//! files and loopback, the test checks that env does not cheat: the domain
//! XML names only volumes of the pool, no secret, and the guests' SSH
//! listens on the hypervisor's loopback and is reached through the sshd.

mod common;

use common::{GuestSlot, TestProject, at_exit, text};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const POOL: &str = "default";

fn virsh(args: &[&str]) -> String {
    let out = Command::new("virsh")
        .args(["-q", "-c", "qemu:///system"])
        .args(args)
        .output()
        .expect("virsh runs (apt-get install libvirt-clients)");
    assert!(
        out.status.success(),
        "virsh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// libvirtd answers, and the pool the tests use exists.
fn libvirt_ready() {
    let ok = Command::new("virsh")
        .args(["-q", "-c", "qemu:///system", "pool-info", POOL])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "libvirtd is not running or has no pool `{POOL}`: run `sh .ci/libvirtd.sh` as root"
    );
}

/// The pool's folder on the host.
fn pool_dir() -> PathBuf {
    let xml = virsh(&["pool-dumpxml", POOL]);
    let start = xml.find("<path>").unwrap() + 6;
    PathBuf::from(&xml[start..start + xml[start..].find("</path>").unwrap()])
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The "remote" hypervisor host: an sshd on 127.0.0.1 with a throwaway
/// host key and client key; returns the libvirt URI that reaches it and
/// the sshd's log.
fn hypervisor_sshd(dir: &Path) -> (String, PathBuf) {
    let port = free_port();
    for key in ["host", "client"] {
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join(key))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let host_pub = std::fs::read_to_string(dir.join("host.pub")).unwrap();
    let mut fields = host_pub.split_whitespace();
    let known = dir.join("known_hosts");
    std::fs::write(
        &known,
        format!(
            "[127.0.0.1]:{port} {} {}\n",
            fields.next().unwrap(),
            fields.next().unwrap()
        ),
    )
    .unwrap();
    std::fs::copy(dir.join("client.pub"), dir.join("authorized_keys")).unwrap();
    let log = dir.join("sshd.log");
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host\nAuthorizedKeysFile {d}/authorized_keys\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nPidFile {d}/sshd.pid\n\
             StrictModes no\nAllowTcpForwarding yes\nLogLevel DEBUG1\n",
            d = dir.display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let status = Command::new("/usr/sbin/sshd")
        .arg("-f")
        .arg(&config)
        .arg("-E")
        .arg(&log)
        .status()
        .expect("sshd runs (apt-get install openssh-server)");
    assert!(status.success());
    let pidfile = dir.join("sshd.pid");
    at_exit(move || {
        if let Ok(pid) = std::fs::read_to_string(&pidfile) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    // qemu+ssh:// takes its host key and key from ssh's configuration, as
    // a team's hypervisor would be set up; a drop-in of its own, removed
    // at exit. Where that cannot be written, libssh's URI parameters.
    let alias = format!("env-test-hypervisor-{port}");
    let drop_in = PathBuf::from(format!("/etc/ssh/ssh_config.d/{alias}.conf"));
    let included = std::fs::read_to_string("/etc/ssh/ssh_config")
        .is_ok_and(|c| c.contains("Include /etc/ssh/ssh_config.d/*.conf"));
    let written = included
        && std::fs::write(
            &drop_in,
            format!(
                "Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {d}/client\n  \
                 IdentitiesOnly yes\n  UserKnownHostsFile {known}\n",
                d = dir.display(),
                known = known.display()
            ),
        )
        .is_ok();
    if written {
        at_exit(move || {
            let _ = std::fs::remove_file(drop_in);
        });
        (format!("qemu+ssh://root@{alias}/system"), log)
    } else {
        (
            format!(
                "qemu+libssh://root@127.0.0.1:{port}/system?keyfile={d}/client&known_hosts={k}&sshauth=privkey",
                d = dir.display(),
                k = known.display()
            ),
            log,
        )
    }
}

/// What env recorded of a machine on libvirt.
fn record(p: &TestProject, machine: &str) -> serde_json::Value {
    let path = p
        .dir
        .path()
        .join(format!(".envstate/machines/{machine}/libvirt.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Every file path a domain's XML names.
fn named_files(xml: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for (open, close) in [
        (" file='", "'"),
        ("<kernel>", "<"),
        ("<initrd>", "<"),
        ("<nvram", "<"),
    ] {
        let mut rest = xml;
        while let Some(i) = rest.find(open) {
            rest = &rest[i + open.len()..];
            if open == "<nvram" {
                // `<nvram template='...'>PATH</nvram>`: the path is the text.
                rest = &rest[rest.find('>').unwrap() + 1..];
            }
            let end = rest
                .find(close)
                .unwrap_or_else(|| panic!("{open} unclosed in\n{xml}"));
            paths.push(rest[..end].to_string());
        }
    }
    paths
}

fn http_status(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    answer.lines().next().map(String::from)
}

#[test]
fn machines_on_a_remote_libvirt_host_come_up_and_go_through_the_lifecycle() {
    libvirt_ready();
    let _slots = (GuestSlot::take(), GuestSlot::take());
    let host_dir = tempfile::tempdir().unwrap();
    let (uri, sshd_log) = hypervisor_sshd(host_dir.path());
    let web_port = free_port();
    let p = TestProject::with_box(&format!(
        r#"
[defaults]
box = "debian-12"
backend = "libvirt"
libvirt = {{ uri = "{uri}" }}

[machines.web]
ip = "192.168.77.10"
ports = [{{ guest = 8000, host = {web_port} }}]
specs = ["web.toml"]

[[machines.web.provision]]
type = "shell"
inline = "echo provisioned > /etc/env-provisioned"

[machines.db]
ip = "192.168.77.11"
"#
    ));
    std::fs::write(
        p.dir.path().join("web.toml"),
        "[file.\"/etc/env-provisioned\"]\ncontains = [\"provisioned\"]\n\n[command.\"ping -c1 -W5 192.168.77.11\"]\nexit_status = 0\n",
    )
    .unwrap();
    p.ok(&["up"]);
    let (web, db) = (record(&p, "web"), record(&p, "db"));
    let pool_path = pool_dir().display().to_string();
    let host_key = std::fs::read_to_string(
        p.dir
            .path()
            .join(".envstate/machines/web/ssh_host_ed25519_key"),
    )
    .unwrap();
    let secret = host_key.lines().nth(1).unwrap();
    for rec in [&web, &db] {
        let domain = rec["domain"].as_str().unwrap();
        let xml = virsh(&["dumpxml", domain]);
        // env's identity is in the metadata; every file is in the pool.
        assert!(xml.contains(rec["project_id"].as_str().unwrap()), "{xml}");
        let files = named_files(&xml);
        assert!(files.len() >= 4, "{files:?}");
        for f in &files {
            assert!(
                f.starts_with(&format!("{pool_path}/")),
                "{f} outside the pool\n{xml}"
            );
        }
        assert!(
            !xml.contains(p.dir.path().join(".envstate").to_str().unwrap()),
            "{xml}"
        );
        assert!(!xml.contains(secret), "the host key is in the domain XML");
    }
    // SSH goes through the hypervisor host: a ProxyCommand to it, its port
    // on the hypervisor's loopback only, and the sshd carried the channel.
    let config =
        std::fs::read_to_string(p.dir.path().join(".envstate/machines/web/ssh_config")).unwrap();
    assert!(config.contains("ProxyCommand ssh"), "{config}");
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.dir.path().join(".envstate/machines/web/state.json")).unwrap(),
    )
    .unwrap();
    let ssh_port = state["ssh_port"].as_u64().unwrap();
    let listening = Command::new("ss").args(["-ltnH"]).output().unwrap();
    let listening = String::from_utf8_lossy(&listening.stdout);
    let guest_ssh: Vec<&str> = listening
        .lines()
        .filter(|l| l.contains(&format!(":{ssh_port} ")))
        .collect();
    assert!(
        !guest_ssh.is_empty() && guest_ssh.iter().all(|l| l.contains("127.0.0.1:")),
        "{listening}"
    );
    assert!(
        std::fs::read_to_string(&sshd_log)
            .unwrap()
            .contains("direct-tcpip")
    );

    // Provisioned, on the private network, forwarded port, specs.
    let out = p.ok(&[
        "ssh",
        "web",
        "--",
        "cat /etc/env-provisioned; ip -4 -o addr",
    ]);
    assert!(
        out.contains("provisioned") && out.contains("192.168.77.10"),
        "{out}"
    );
    p.ok(&[
        "ssh",
        "web",
        "--",
        "cd /tmp && (setsid python3 -m http.server 8000 >/dev/null 2>&1 &); sleep 1",
    ]);
    let mut status = None;
    for _ in 0..20 {
        status = http_status(web_port);
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(status.unwrap_or_default().contains("200"), "forwarded port");
    let out = p.env(&["verify", "web"]);
    assert!(out.status.success(), "{:?}", text(&out));

    // A live snapshot and its restore.
    p.ok(&["snapshot", "save", "web", "s1"]);
    assert!(p.ok(&["snapshot", "list", "web"]).contains("s1"));
    p.ok(&["ssh", "web", "--", "sudo touch /etc/after-s1"]);
    p.ok(&["snapshot", "restore", "web", "s1"]);
    let out = p.env(&["ssh", "web", "--", "test -e /etc/after-s1"]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));

    // Package: the overlay volume downloaded and flattened (the machine
    // is cleaned and halted for it); its forwarded port closes.
    let packaged = p.dir.path().join("web.box");
    p.ok(&["package", "web", "--output", packaged.to_str().unwrap()]);
    let listing = Command::new("tar")
        .arg("tzf")
        .arg(&packaged)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains("box.img") && listing.contains("metadata.json"),
        "{listing}"
    );
    assert_eq!(p.state_of("web"), "halted");
    assert!(TcpStream::connect(("127.0.0.1", web_port)).is_err());
    // Halt through ACPI; the console log comes through libvirt.
    p.ok(&["halt", "db"]);
    assert_eq!(p.state_of("db"), "halted");
    let console = p.ok(&["logs", "web", "--console"]);
    assert!(console.contains("login"), "{console}");
    let doctor = p.env(&["doctor", "--json"]);
    let checks: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let libvirt: Vec<&serde_json::Value> = checks
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().unwrap().starts_with("libvirt"))
        .collect();
    assert!(libvirt.len() >= 3, "{checks:#}");
    assert!(libvirt.iter().all(|c| c["level"] != "fail"), "{checks:#}");

    // Destroy: domains, their volumes and the project's network go; the
    // box's volumes stay for the next machine.
    p.ok(&["destroy", "-f"]);
    let prefix = format!("env-{}-", web["project_id"].as_str().unwrap());
    assert!(!virsh(&["list", "--all", "--name"]).contains(&prefix));
    let volumes = virsh(&["vol-list", "--pool", POOL]);
    assert!(!volumes.contains(&prefix), "{volumes}");
    assert!(volumes.contains(web["box_volumes"][0].as_str().unwrap()));
    assert!(!virsh(&["net-list", "--all", "--name"]).contains(prefix.trim_end_matches('-')));
}

#[test]
fn env_test_runs_its_lifecycle_on_qemu_system() {
    libvirt_ready();
    let _slot = GuestSlot::take();
    let p = TestProject::with_box(
        "[machines.local]\nbox = \"debian-12\"\nbackend = \"libvirt\"\nspecs = [\"s.toml\"]\n\n\
         [[machines.local.provision]]\ntype = \"shell\"\ninline = \"touch /etc/from-env-test\"\n",
    );
    std::fs::write(
        p.dir.path().join("s.toml"),
        "[file.\"/etc/from-env-test\"]\nexists = true\n",
    )
    .unwrap();
    let out = p
        .cmd(&["test", "--format", "junit=junit.xml"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let junit = std::fs::read_to_string(p.dir.path().join("junit.xml")).unwrap();
    assert!(junit.contains("failures=\"0\""), "{junit}");
    // Destroyed at the end, on the host too.
    assert!(
        !virsh(&["list", "--all", "--name"])
            .lines()
            .any(|l| l.ends_with("-local"))
    );
}

#[test]
fn a_uefi_cloud_image_boots_on_libvirt_and_snapshots_as_volume_copies() {
    libvirt_ready();
    let home = tempfile::tempdir().unwrap();
    let mut p = TestProject::new(
        "[machines.efi]\nbox = \"cloud\"\nfirmware = \"uefi\"\nbackend = \"libvirt\"\nboot_timeout = \"300s\"\n",
    );
    p.home = home.path().to_path_buf();
    let image = common::recipe_box("debian-12-cloud");
    p.ok(&[
        "box",
        "add",
        image.to_str().unwrap(),
        "--name",
        "cloud",
        "--version",
        "1",
    ]);
    let _slot = GuestSlot::take();
    // OVMF with the machine's variables in the pool, cloud-init's seed a
    // volume: env's user and key come in through it.
    p.ok(&["up"]);
    let out = p.ok(&[
        "ssh",
        "--",
        "test -d /sys/firmware/efi && echo uefi; cloud-init status",
    ]);
    assert!(out.contains("uefi") && out.contains("done"), "{out}");
    let rec = record(&p, "efi");
    let xml = virsh(&["dumpxml", rec["domain"].as_str().unwrap()]);
    assert!(
        xml.contains("<nvram") && xml.contains("env-cidata"),
        "{xml}"
    );
    let pool = pool_dir().display().to_string();
    for f in named_files(&xml) {
        assert!(
            f.starts_with(&format!("{pool}/")),
            "{f} outside the pool\n{xml}"
        );
    }
    // libvirt 9.0 snapshots no running UEFI guest: env says what to do.
    let out = p.env(&["snapshot", "save", "efi", "s1"]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("env halt efi"), "{:?}", text(&out));
    p.ok(&["halt"]);
    p.ok(&["snapshot", "save", "efi", "s1"]);
    assert!(p.ok(&["snapshot", "list", "efi"]).contains("s1"));
    // A change to the halted disk (bytes written into the volume through
    // libvirt), then the restore: the disk the guest sees is the saved one
    // (`qemu-img compare` reads through backing files: the copies are full).
    let pool_dir = pool_dir();
    let disk = rec["box_disks"][0].as_str().unwrap();
    let before = common::sha256(&pool_dir.join(disk));
    let junk = home.path().join("junk");
    std::fs::write(&junk, b"not a qcow2 header").unwrap();
    virsh(&[
        "vol-upload",
        "--pool",
        POOL,
        disk,
        junk.to_str().unwrap(),
        "--offset",
        "0",
    ]);
    assert_ne!(common::sha256(&pool_dir.join(disk)), before);
    p.ok(&["snapshot", "restore", "efi", "s1"]);
    let copy = disk.replacen("-disk0", "-snap-s1-disk0", 1);
    let same = Command::new("qemu-img")
        .args(["compare", "-q"])
        .arg(pool_dir.join(&copy))
        .arg(pool_dir.join(disk))
        .status()
        .unwrap();
    assert!(same.success(), "the restored disk differs from snapshot s1");
    // Destroy takes the copies too.
    p.ok(&["destroy", "-f"]);
    let volumes = virsh(&["vol-list", "--pool", POOL]);
    assert!(
        !volumes.contains(rec["domain"].as_str().unwrap()),
        "{volumes}"
    );
}
