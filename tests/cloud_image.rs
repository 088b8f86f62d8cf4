//! Distributions' cloud images as boxes: an image in the exact shape of
//! Debian's official genericcloud qcow2 (built by boxes/debian-12-cloud:
//! partitioned, GRUB for BIOS and UEFI, stock kernel, cloud-init, default
//! user `debian`, no env key), served over HTTP on 127.0.0.1 with a
//! SHA512SUMS file, reached through an image index entry that the test's
//! own index file points at that server. One machine boots from the index
//! name with the project's user-data (which sets its own `users:`) and
//! serves the read-only checks; a UEFI-only variant, derived by zeroing the
//! image's boot code, boots under OVMF.

mod common;

use common::http::Server;
use common::{GuestSlot, TestProject, text};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The cloud-shaped image, built once per recipe and cached.
fn cloud_image() -> PathBuf {
    common::recipe_box("debian-12-cloud")
}

fn sha512(path: &Path) -> String {
    use sha2::{Digest, Sha512};
    Sha512::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const IMAGE_FILE: &str = "debian-12-genericcloud-amd64-20261203-1.qcow2";
const USER_DATA: &str = "#cloud-config
users:
  - name: ops
    shell: /bin/bash
write_files:
  - path: /etc/env-user-data
    content: \"applied\\n\"
";

/// The machine booted from the index name, shared by the read-only tests.
struct Booted {
    project: TestProject,
    up_output: String,
    _home: tempfile::TempDir,
    _server: Server,
}

/// The shared machine; a failed boot fails every test that needs it, once
/// (the other tests do not boot it again).
fn booted() -> &'static Booted {
    static BOOTED: OnceLock<Result<Booted, String>> = OnceLock::new();
    match BOOTED.get_or_init(boot_from_the_index) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

fn boot_from_the_index() -> Result<Booted, String> {
    {
        let image = cloud_image();
        let server = Server::start();
        let url = server.serve(IMAGE_FILE, image.clone());
        let sums = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            sums.path(),
            format!(
                "{}  other.qcow2\n{}  {IMAGE_FILE}\n",
                "0".repeat(128),
                sha512(&image)
            ),
        )
        .unwrap();
        server.serve("SHA512SUMS", sums.keep().unwrap().1);
        // A store of its own: the shared one holds env's own `debian-12`
        // box, which would win over the index (the store always does).
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("images.toml"),
            format!(
                // As Debian's genericcloud kernel: virtiofs, no 9p.
                "format = 1\n[images.debian-12]\ndescription = \"local stand-in\"\nrelease = \"20261203-1\"\nuser = \"debian\"\nfirmware = \"bios\"\nfolders = [\"virtiofs\"]\nx86_64 = {{ url = \"{url}\", sums = \"SHA512SUMS\" }}\n"
            ),
        )
        .unwrap();
        let mut project = TestProject::new(
            r#"[machines.web]
box = "debian-12"
boot_timeout = "300s"
cloud_init = { user_data = "cloud-init/web.yaml" }
specs = ["specs/web.toml"]
folders = [{ host = "site", guest = "/srv/site" }]
[[machines.web.provision]]
type = "shell"
inline = "echo provisioned > /var/tmp/provisioned"
"#,
        );
        project.home = home.path().to_path_buf();
        let dir = project.dir.path();
        std::fs::create_dir_all(dir.join("cloud-init")).unwrap();
        std::fs::create_dir_all(dir.join("site")).unwrap();
        std::fs::write(dir.join("site/index.html"), "shared with the cloud guest\n").unwrap();
        std::fs::write(dir.join("cloud-init/web.yaml"), USER_DATA).unwrap();
        std::fs::create_dir_all(dir.join("specs")).unwrap();
        std::fs::write(
            dir.join("specs/web.toml"),
            "[file.\"/etc/env-user-data\"]\ncontains = [\"applied\"]\n[user.ops]\nexists = true\n[file.\"/var/tmp/provisioned\"]\nexists = true\n",
        )
        .unwrap();
        project.destroy_at_exit();
        let _slot = GuestSlot::take();
        let out = project.env(&["up"]);
        let (stdout, stderr) = text(&out);
        if !out.status.success() {
            return Err(format!("env up failed:\n{stdout}\n{stderr}"));
        }
        Ok(Booted {
            project,
            up_output: stdout + &stderr,
            _home: home,
            _server: server,
        })
    }
}

#[test]
fn the_index_entry_is_fetched_checked_against_its_sums_file_and_stored() {
    let b = booted();
    assert!(
        b.up_output.contains("from the image index"),
        "{}",
        b.up_output
    );
    // The sums file is not signed here, and env says so.
    assert!(b.up_output.contains("not checked"), "{}", b.up_output);
    let listed = b.project.ok(&["box", "list", "--json"]);
    let boxes: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(boxes[0]["name"], "debian-12");
    assert_eq!(boxes[0]["version"], "20261203-1");
    let search = b.project.ok(&["box", "search", "debian-12", "--json"]);
    assert!(
        search.contains("images.toml"),
        "the override is named: {search}"
    );
}

#[test]
fn cloud_init_made_the_machine_with_env_s_user_key_and_host_key_and_the_user_data() {
    let b = booted();
    let p = &b.project;
    assert_eq!(p.ok(&["ssh", "--", "id", "-un"]), "debian\n");
    assert_eq!(p.ok(&["ssh", "--", "hostname"]), "web\n");
    // The project's user-data ran, its own `users:` included, and env's
    // user is still there (lists are appended, not replaced).
    assert_eq!(
        p.ok(&["ssh", "--", "cat", "/etc/env-user-data"]),
        "applied\n"
    );
    assert!(p.ok(&["ssh", "--", "id", "ops"]).contains("ops"));
    // The host key was pinned before the first connection: known_hosts
    // holds the key env made, and nothing else.
    let state = p.dir.path().join(".envstate/machines/web");
    let known = std::fs::read_to_string(state.join("known_hosts")).unwrap();
    let host = std::fs::read_to_string(state.join("ssh_host_ed25519_key.pub")).unwrap();
    assert_eq!(known.lines().count(), 1, "{known}");
    assert!(
        known.contains(host.split_whitespace().nth(1).unwrap()),
        "{known}"
    );
    // No well-known key: the machine's own was authorized from the start.
    assert!(!state.join("first_contact_key").exists());
    let keys = p.ok(&["ssh", "--", "cat", ".ssh/authorized_keys"]);
    let own = std::fs::read_to_string(state.join("id_ed25519.pub")).unwrap();
    assert_eq!(keys.trim(), own.trim());
    assert!(
        p.ok(&["ssh", "--", "cloud-init", "status"])
            .contains("done")
    );
}

#[test]
fn provisioners_and_verify_work_on_the_cloud_machine() {
    let b = booted();
    assert_eq!(
        b.project.ok(&["ssh", "--", "cat", "/var/tmp/provisioned"]),
        "provisioned\n"
    );
    let out = b.project.env(&["verify"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("3 passed"), "{stdout}");
}

#[test]
fn a_uefi_only_variant_boots_under_ovmf() {
    if !Path::new("/usr/share/OVMF").exists() {
        eprintln!("skipped: OVMF is not installed (apt-get install ovmf)");
        return;
    }
    // The same image with its BIOS boot code zeroed: only UEFI starts it,
    // and env tells so from the image itself.
    let work = tempfile::tempdir().unwrap();
    let variant = work.path().join("uefi-only.qcow2");
    std::fs::copy(cloud_image(), &variant).unwrap();
    // qemu-io writes into the guest's view of the disk: bytes 0..440,
    // the partition table after them stays.
    let zeroed = std::process::Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -z 0 440"])
        .arg(&variant)
        .output()
        .unwrap();
    assert!(zeroed.status.success(), "{}", text(&zeroed).1);

    let home = tempfile::tempdir().unwrap();
    let mut p = TestProject::new("[machines.efi]\nbox = \"uefi-only\"\nboot_timeout = \"300s\"\n");
    p.home = home.path().to_path_buf();
    p.ok(&[
        "box",
        "add",
        variant.to_str().unwrap(),
        "--name",
        "uefi-only",
        "--version",
        "1",
    ]);
    let meta =
        std::fs::read_to_string(home.path().join("boxes/uefi-only/1/metadata.json")).unwrap();
    assert!(meta.contains("\"firmware\": \"uefi\""), "{meta}");
    let _slot = GuestSlot::take();
    let out = p.env(&["up"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(
        p.ok(&["ssh", "--", "test -d /sys/firmware/efi && echo uefi"]),
        "uefi\n"
    );
    assert!(
        p.dir
            .path()
            .join(".envstate/machines/efi/uefi-vars.fd")
            .exists()
    );
    let first_instance = p.ok(&[
        "ssh",
        "--",
        "cat /run/cloud-init/.instance-id 2>/dev/null || sudo cat /var/lib/cloud/data/instance-id",
    ]);

    // Baked into a box: cloud-init's state is cleaned, so a machine from
    // the baked box is a new instance, runs cloud-init again with its own
    // key and host key, and keeps what the first one wrote.
    p.ok(&[
        "ssh",
        "--",
        "echo baked | sudo tee /etc/env-baked >/dev/null",
    ]);
    let baked = work.path().join("baked.box");
    p.ok(&["package", "--output", baked.to_str().unwrap()]);
    p.ok(&["destroy", "-f"]);
    p.ok(&[
        "box",
        "add",
        baked.to_str().unwrap(),
        "--name",
        "baked",
        "--version",
        "2",
    ]);
    std::fs::write(
        p.dir.path().join("Envfile"),
        "[machines.again]\nbox = \"baked\"\nboot_timeout = \"300s\"\n",
    )
    .unwrap();
    let out = p.env(&["up"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(p.ok(&["ssh", "--", "cat /etc/env-baked"]), "baked\n");
    assert_eq!(p.ok(&["ssh", "--", "hostname"]), "again\n");
    let status = p.ok(&["ssh", "--", "cloud-init status"]);
    assert!(status.contains("done"), "{status}");
    let second_instance = p.ok(&[
        "ssh",
        "--",
        "cat /run/cloud-init/.instance-id 2>/dev/null || sudo cat /var/lib/cloud/data/instance-id",
    ]);
    assert_ne!(
        first_instance, second_instance,
        "a new machine is a new instance"
    );
    p.ok(&["destroy", "-f"]);
}

#[test]
fn an_auto_folder_is_shared_through_virtiofs_on_a_kernel_without_9p() {
    let b = booted();
    assert!(
        b.up_output
            .contains("folder /srv/site: virtiofs (the box's kernel has virtiofs but no 9p)"),
        "{}",
        b.up_output
    );
    let mounts = b.project.ok(&["ssh", "--", "mount"]);
    assert!(mounts.contains("/srv/site type virtiofs"), "{mounts}");
    assert_eq!(
        b.project.ok(&["ssh", "--", "cat /srv/site/index.html"]),
        "shared with the cloud guest\n"
    );
    b.project.ok(&[
        "ssh",
        "--",
        "echo from the cloud guest | sudo tee /srv/site/back.txt >/dev/null",
    ]);
    assert_eq!(
        std::fs::read_to_string(b.project.dir.path().join("site/back.txt")).unwrap(),
        "from the cloud guest\n"
    );
}
