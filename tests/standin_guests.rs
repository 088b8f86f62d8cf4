//! Spec resources on guests that are not Debian with systemd. Alpine or
//! Fedora cannot be built here, so boxes/debian-12-openrc-rpm stands in for
//! them: sysvinit starts OpenRC (no systemctl in the guest at all) and the
//! package database is rpm's (one package installed by rpm, dpkg's database
//! moved aside). One boot: the checks that pass, the same checks made to
//! fail (so the found values are the guest's, not defaults), and a halt
//! through the power button, which OpenRC's acpid must handle.

mod common;

use common::{GuestSlot, TestProject, recipe_box, text};

const PASSING: &str = r#"
[service.ssh]
enabled = true
running = true

[service.acpid]
running = true

[service.rsync]
enabled = false
running = false

[service.no-such-service]
running = false

[package.env-standin]
installed = true
version = "1.2.3-4"

[package.openssh-server]
installed = false
"#;

const FAILING: &str = r#"
[service.ssh]
running = false

[service.rsync]
enabled = true

[package.env-standin]
version = "2.0"
"#;

fn envfile(spec: &str) -> String {
    format!("[machines.standin]\nbox = \"standin\"\nspecs = [\"{spec}\"]\n")
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(out).0, text(out).1))
}

/// The `found` value of each assertion, as `title attribute=found`.
fn found(report: &serde_json::Value) -> Vec<String> {
    let mut seen = Vec::new();
    for check in report["machines"][0]["checks"].as_array().unwrap() {
        for a in check["assertions"].as_array().unwrap() {
            seen.push(format!(
                "{} {}={}",
                check["title"].as_str().unwrap(),
                a["attribute"].as_str().unwrap(),
                a["found"].as_str().unwrap_or("-")
            ));
        }
    }
    seen
}

#[test]
fn services_on_openrc_and_packages_from_rpm_are_checked() {
    let _slot = GuestSlot::take();
    let p = TestProject::new(&envfile("pass.toml"));
    std::fs::write(p.dir.path().join("pass.toml"), PASSING).unwrap();
    std::fs::write(p.dir.path().join("fail.toml"), FAILING).unwrap();
    let standin = recipe_box("debian-12-openrc-rpm");
    p.ok(&["box", "add", standin.to_str().unwrap(), "--name", "standin"]);
    p.ok(&["up"]);

    // The guest really is without systemd and without dpkg's database.
    let probe = p.ok(&[
        "ssh",
        "--",
        "command -v systemctl || echo no-systemctl; test -e /var/lib/dpkg/status || echo no-dpkg; cat /proc/1/comm",
    ]);
    assert!(probe.contains("no-systemctl"), "{probe}");
    assert!(probe.contains("no-dpkg"), "{probe}");
    assert!(probe.ends_with("init\n"), "PID 1 is sysvinit: {probe}");

    let out = p.env(&["verify", "--format", "json"]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["totals"]["passed"], 6, "{report:#}");

    // The same resources with wrong expectations fail, naming what the
    // guest has: OpenRC's state and rpm's version.
    std::fs::write(p.dir.path().join("Envfile"), envfile("fail.toml")).unwrap();
    let out = p.env(&["verify", "--format", "json"]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    assert_eq!(report["totals"]["failed"], 3, "{report:#}");
    assert_eq!(
        found(&report),
        [
            "service ssh running=true",
            "service rsync enabled=false",
            "package env-standin version=1.2.3-4",
        ],
        "{report:#}"
    );

    // The power button reaches OpenRC's acpid: a clean halt, not a kill.
    let out = p.env(&["halt"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !format!("{stdout}{stderr}").contains("did not power off"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(p.state_of("standin"), "halted");
}
