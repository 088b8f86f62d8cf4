//! Boxes made for Vagrant's libvirt provider boot under env unchanged: the
//! test box `boxes/debian-12-bios` is such a box (plain Vagrant metadata, a
//! disk that boots through firmware and GRUB, Vagrant's insecure key).
//! First contact uses Vagrant's key from the host's Vagrant installation, or
//! the key the Envfile names.

mod common;

use common::{GuestSlot, TestProject, recipe_box, text};
use std::path::PathBuf;

/// Vagrant's insecure private key as Debian's `vagrant` package installs it
/// (readable by everyone, as Vagrant's own installer leaves it too).
fn vagrant_private_key() -> PathBuf {
    glob::glob("/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant")
        .unwrap()
        .flatten()
        .next()
        .expect("Vagrant's insecure key (apt-get install vagrant: scripts/install-host-deps.sh)")
}

#[test]
fn a_vagrant_libvirt_box_boots_through_its_bootloader() {
    let _slots = (GuestSlot::take(), GuestSlot::take());
    let vagrant_box = recipe_box("debian-12-bios");
    let p = TestProject::new(
        r#"
[machines.found]
box = "vagrant-bios"
ssh.insert_key = false

[machines.given]
box = "vagrant-bios"
ssh.private_key = "keys/vagrant"
"#,
    );
    let key = p.dir.path().join("keys/vagrant");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    std::fs::copy(vagrant_private_key(), &key).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    p.ok(&[
        "box",
        "add",
        vagrant_box.to_str().unwrap(),
        "--name",
        "vagrant-bios",
    ]);
    p.ok(&["up"]);

    for machine in ["found", "given"] {
        let cmdline = p.ok(&["ssh", machine, "--", "cat /proc/cmdline"]);
        assert!(
            cmdline.starts_with("BOOT_IMAGE=/boot/vmlinuz") && !cmdline.contains("env.ip="),
            "booted by the disk's GRUB, not by env's kernel: {cmdline}"
        );
        assert_eq!(
            p.ok(&["ssh", machine, "--", "hostname"]),
            format!("{machine}\n")
        );
        assert_eq!(p.ok(&["ssh", machine, "--", "whoami"]), "vagrant\n");
        let pinned = std::fs::read_to_string(
            p.dir
                .path()
                .join(format!(".envstate/machines/{machine}/known_hosts")),
        )
        .unwrap();
        assert!(
            pinned.contains("ssh-ed25519"),
            "host key pinned on first contact: {pinned}"
        );
    }
    // No key inserted: env keeps using the Vagrant key it found on the host.
    let found_keys = p.ok(&["ssh", "found", "--", "cat ~/.ssh/authorized_keys"]);
    assert!(
        found_keys.contains("vagrant insecure public key"),
        "{found_keys}"
    );
    // The Envfile's key made first contact; a per-machine key replaced it.
    let given_keys = p.ok(&["ssh", "given", "--", "cat ~/.ssh/authorized_keys"]);
    assert!(
        given_keys.starts_with("ssh-ed25519 ") && given_keys.lines().count() == 1,
        "{given_keys}"
    );
    assert!(!given_keys.contains("vagrant insecure"), "{given_keys}");
    let state = p.dir.path().join(".envstate/machines/found");
    let left: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("first_contact_key"))
        .collect();
    assert_eq!(left.len(), 1, "only the accepted key is kept: {left:?}");

    // A second boot: the pinned host key and the per-machine key still fit.
    p.ok(&["reload", "given"]);
    assert_eq!(p.ok(&["ssh", "given", "--", "echo", "again"]), "again\n");

    // Baked: a machine from the baked box makes host keys of its own (the
    // box does not get them from env), and env's own key opens it.
    let host_key = |project: &TestProject, machine: &str| {
        let line = std::fs::read_to_string(
            project
                .dir
                .path()
                .join(format!(".envstate/machines/{machine}/known_hosts")),
        )
        .unwrap();
        line.split_whitespace().nth(2).unwrap().to_string()
    };
    let given_host_key = host_key(&p, "given");
    let baked = p.dir.path().join("baked.box");
    p.ok(&["package", "given", "--output", baked.to_str().unwrap()]);
    p.ok(&["destroy", "-f"]);
    p.ok(&["box", "remove", "vagrant-bios", "--force"]);
    let q = TestProject::new("[machines.copy]\nbox = \"baked-bios\"\n");
    q.ok(&[
        "box",
        "add",
        baked.to_str().unwrap(),
        "--name",
        "baked-bios",
    ]);
    // No accelerator setting (`auto`), on a host whose KVM guests hang
    // (made so by the test seam, whatever this host's KVM does): the
    // firmware-booted box comes up under TCG, saying why in one line.
    let up = q
        .cmd(&["up"])
        .env_remove("ENV_ACCEL")
        .env("ENV_KVM_FAKE", "hang")
        .output()
        .unwrap();
    let (_, stderr) = text(&up);
    assert!(up.status.success(), "{stderr}");
    assert!(
        stderr.contains("KVM guests hang on this host: using TCG"),
        "{stderr}"
    );
    assert_eq!(q.status()[0]["accel"], "tcg");
    assert_ne!(host_key(&q, "copy"), given_host_key, "fresh host keys");
    assert_eq!(
        q.ok(&[
            "ssh",
            "--",
            "sudo systemctl is-enabled env-ssh-host-keys.service"
        ]),
        "enabled\n"
    );
    q.ok(&["destroy", "-f"]);
    q.ok(&["box", "remove", "baked-bios", "--force"]);
}
