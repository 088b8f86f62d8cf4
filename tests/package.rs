//! `env package`: a machine baked into a box, added to the store, and a new
//! machine up from it: the baked changes are there, what made the first
//! machine one machine is not.

mod common;

use common::{GuestSlot, TestProject, text};

#[test]
fn package_then_up_from_the_packaged_box() {
    let _slot = GuestSlot::take();
    let p = TestProject::with_box("[machines.golden]\nbox = \"debian-12\"\n");
    p.ok(&["up"]);
    p.ok(&[
        "ssh",
        "--",
        "echo baked | sudo tee /etc/baked-marker >/dev/null",
    ]);
    let first_id = p.ok(&["ssh", "--", "cat /etc/machine-id"]);
    let first_key = p.ok(&["ssh", "--", "cat ~/.ssh/authorized_keys"]);
    let output = p.dir.path().join("golden.box");
    let out = p.env(&["package", "--output", output.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(p.state_of("golden"), "halted");
    let listing = std::process::Command::new("tar")
        .arg("-tzf")
        .arg(&output)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for member in ["metadata.json", "info.json", "box.img", "packages.txt"] {
        assert!(
            listing.lines().any(|l| l == member),
            "{member} in {listing}"
        );
    }
    p.ok(&["destroy", "-f"]);

    let q = TestProject::with_box("[machines.copy]\nbox = \"golden\"\n");
    q.ok(&["box", "add", output.to_str().unwrap(), "--name", "golden"]);
    q.ok(&["up"]);
    assert_eq!(q.ok(&["ssh", "--", "cat /etc/baked-marker"]), "baked\n");
    let id = q.ok(&["ssh", "--", "cat /etc/machine-id"]);
    assert!(
        id.trim().len() == 32 && id != first_id,
        "a fresh machine-id: {id}"
    );
    let key = q.ok(&["ssh", "--", "cat ~/.ssh/authorized_keys"]);
    assert_ne!(
        key, first_key,
        "the new machine got its own key at first contact"
    );
    assert_eq!(q.ok(&["ssh", "--", "hostname"]), "copy\n");
    q.ok(&["destroy", "-f"]);
    q.ok(&["box", "remove", "golden", "--force"]);
}
