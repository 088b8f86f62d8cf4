//! The box built by boxes/debian-12 stands on its own: plain QEMU boots it
//! and plain ssh logs in with the well-known first-contact key.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_box_boots_under_plain_qemu_and_answers_ssh() {
    let _slot = common::GuestSlot::take();
    let work = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .arg("-C")
        .arg(work.path())
        .arg("-xzf")
        .arg(common::test_box())
        .status()
        .unwrap();
    assert!(status.success());
    let dir = work.path();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["provider"], "libvirt");
    assert_eq!(meta["format"], "qcow2");
    assert!(meta["virtual_size"].as_u64().unwrap() >= 1);
    assert!(
        std::fs::read_to_string(dir.join("packages.txt"))
            .unwrap()
            .contains("openssh-server\t")
    );

    assert!(
        Command::new("qemu-img")
            .args([
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "qcow2",
                "-b",
                "box.img",
                "disk.qcow2"
            ])
            .current_dir(dir)
            .status()
            .unwrap()
            .success()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = &meta["env"];
    let mut qemu = KillOnDrop(
        Command::new("qemu-system-x86_64")
            .current_dir(dir)
            .args([
                "-nodefaults",
                "-display",
                "none",
                "-machine",
                "q35,accel=tcg",
                "-smp",
                "2",
                "-m",
                "1G",
            ])
            .args([
                "-kernel",
                env["kernel"].as_str().unwrap(),
                "-initrd",
                env["initrd"].as_str().unwrap(),
            ])
            .args(["-append", env["cmdline"].as_str().unwrap()])
            .args(["-drive", "file=disk.qcow2,if=virtio,format=qcow2"])
            .args([
                "-netdev",
                &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"),
                "-device",
                "virtio-net-pci,netdev=n0",
            ])
            .args(["-serial", "file:console.log"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(qemu.0.try_wait().unwrap().is_none(), "QEMU exited");
        assert!(
            Instant::now() < deadline,
            "no SSH banner: {}",
            std::fs::read_to_string(dir.join("console.log")).unwrap_or_default()
        );
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut b = [0u8; 4];
            if s.read_exact(&mut b).is_ok() && &b == b"SSH-" {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = common::ssh_with_well_known_key(
        port,
        "sudo -n cat /etc/debian_version; uname -r; sudo -n systemctl is-enabled ssh",
    );
    drop(qemu);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("12."), "{stdout}");
    assert!(stdout.contains("enabled"), "{stdout}");
}

/// Kills QEMU however the test ends (a failed assertion must not leak it).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
