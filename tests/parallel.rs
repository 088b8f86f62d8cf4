//! `env up` of several machines at once, ordered by `depends_on`, with a
//! failure reported for every machine it concerns.

mod common;

use common::{GuestSlot, TestProject, text};

#[test]
fn three_machines_boot_together_and_depends_on_orders_provisioning() {
    // Three guests at once: hold every slot.
    let _slots = (GuestSlot::take(), GuestSlot::take());
    let p = TestProject::with_box(
        r#"
[defaults]
box = "debian-12"
memory = "512M"
[machines.a]
provision = [{ type = "shell", name = "a-step", inline = "sleep 2; echo a-finished" }]
[machines.b]
[machines.c]
depends_on = ["a"]
provision = [{ type = "shell", name = "c-step", inline = "getent hosts a && echo c-finished" }]
"#,
    );
    let out = p.env(&["up"]);
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    let first_up = stderr.find(": up in").unwrap();
    for m in ["a", "b", "c"] {
        let booting = stderr
            .find(&format!("==> {m}: booting"))
            .unwrap_or_else(|| panic!("{m} never booted: {stderr}"));
        assert!(
            booting < first_up,
            "{m} started booting only after another machine was up: {stderr}"
        );
    }
    assert!(
        stderr.find("a: a-finished").unwrap() < stderr.find("provisioning: c-step").unwrap(),
        "{stderr}"
    );
    assert!(
        stderr.contains("c: a\t") || stderr.contains("c: 10.251."),
        "c resolves a: {stderr}"
    );
    let status = p.status();
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "running"),
        "{status}"
    );
    p.ok(&["destroy", "-f"]);

    // a fails: c, which depends on it, is not provisioned; both are reported.
    let p = TestProject::with_box(
        r#"
[defaults]
box = "debian-12"
memory = "512M"
[machines.a]
provision = [{ type = "shell", name = "a-step", inline = "echo a-breaks; exit 4" }]
[machines.c]
depends_on = ["a"]
provision = [{ type = "shell", name = "c-step", inline = "touch /tmp/c-ran" }]
"#,
    );
    let out = p.env(&["up", "--parallel", "2"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out).1;
    assert!(
        stderr.contains("2 of 2 machines did not come up"),
        "{stderr}"
    );
    assert!(
        stderr.contains("a: provisioner `a-step` (shell) failed on `a` with exit status 4"),
        "{stderr}"
    );
    assert!(
        stderr.contains("c: not finished: machine `a` it depends on did not come up"),
        "{stderr}"
    );
    let out = p.env(&["ssh", "c", "--", "test -e /tmp/c-ran"]);
    assert_eq!(out.status.code(), Some(1), "c's provisioner must not run");
}
