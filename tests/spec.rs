//! `env verify` on a real guest: every resource type passing and failing,
//! the reports (JUnit checked for the schema's required structure, TAP,
//! JSON), spec errors with file and line, retries, and `env spec add`. The
//! checks only read, so they share one booted machine.

mod common;

use common::{GuestSlot, TestProject, text};
use std::sync::OnceLock;

/// Provisions the state the spec files describe.
const SETUP: &str = r#"#!/bin/bash
set -e
groupadd -g 1500 specgroup
useradd -u 1500 -g specgroup -G sudo -d /srv/spec -s /bin/bash specuser
mkdir -p /srv/spec
printf 'hello spec\nsecond line\n' > /srv/spec/data.txt
chown specuser:specgroup /srv/spec/data.txt
chmod 0640 /srv/spec/data.txt
ln -s /srv/spec/data.txt /srv/spec/link
cd /srv/spec
setsid nohup runuser -u specuser -- python3 -m http.server 8000 >/dev/null 2>&1 < /dev/null &
setsid nohup python3 -m http.server 8001 --bind :: >/dev/null 2>&1 < /dev/null &
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/8000 && exec 4<>/dev/tcp/127.0.0.1/8001) 2>/dev/null && exit 0; sleep 0.2; done
echo "the test web server did not start" >&2
exit 1
"#;

fn envfile(specs: &str) -> String {
    format!(
        "[machines.spec]\nbox = \"debian-12\"\nmemory = \"1G\"\nspecs = [{specs}]\n\
         provision = [{{ type = \"shell\", name = \"state\", path = \"setup.sh\" }}]\n"
    )
}

/// The shared machine, provisioned, with the spec files beside its Envfile
/// and one Envfile per spec selection (same machine, same state folder).
fn shared() -> &'static TestProject {
    static SHARED: OnceLock<TestProject> = OnceLock::new();
    SHARED.get_or_init(|| {
        let _slot = GuestSlot::take();
        let p = TestProject::with_box(&envfile("\"specs/pass.toml\""));
        std::fs::write(p.dir.path().join("setup.sh"), SETUP).unwrap();
        let specs = p.dir.path().join("specs");
        std::fs::create_dir_all(&specs).unwrap();
        for f in ["pass.toml", "fail.toml", "bad.toml"] {
            std::fs::copy(common::repo().join("tests/specs").join(f), specs.join(f)).unwrap();
        }
        for (name, specs) in [
            ("Envfile.fail", "\"specs/fail.toml\""),
            ("Envfile.bad", "\"specs/pass.toml\", \"specs/bad.toml\""),
            ("Envfile.retry", "\"specs/retry-*.toml\""),
            ("Envfile.added", "\"specs/added.toml\""),
        ] {
            std::fs::write(p.dir.path().join(name), envfile(specs)).unwrap();
        }
        p.ok(&["up"]);
        p.destroy_at_exit();
        p
    })
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(out).0, text(out).1))
}

#[test]
fn every_resource_type_passes_with_reports_in_three_formats() {
    let p = shared();
    let out = p.env(&[
        "verify",
        "--format",
        "json",
        "--format",
        "tap=report.tap",
        "--junit",
        "report.xml",
    ]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    let checks = report["machines"][0]["checks"].as_array().unwrap();
    let kinds: std::collections::BTreeSet<&str> = checks
        .iter()
        .map(|c| c["resource"].as_str().unwrap())
        .collect();
    // (docker_container and docker_image need a guest with Docker:
    // tests/docker.rs.)
    assert_eq!(kinds.len(), 15, "every other resource type: {kinds:?}");
    assert_eq!(report["totals"]["skipped"], 1);
    assert_eq!(report["totals"]["failed"], 0);
    assert_eq!(report["totals"]["errors"], 0);

    // JUnit: the structure CI reporters require.
    let xml = std::fs::read_to_string(p.dir.path().join("report.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let suite = root.first_element_child().unwrap();
    assert_eq!(suite.tag_name().name(), "testsuite");
    assert_eq!(suite.attribute("name"), Some("spec"));
    for attr in [
        "tests",
        "failures",
        "errors",
        "skipped",
        "time",
        "timestamp",
    ] {
        assert!(suite.attribute(attr).is_some(), "testsuite lacks {attr}");
    }
    let cases: Vec<_> = suite.children().filter(|n| n.is_element()).collect();
    assert_eq!(
        suite.attribute("tests"),
        Some(cases.len().to_string().as_str())
    );
    assert!(cases.iter().all(|c| {
        c.tag_name().name() == "testcase"
            && c.attribute("name").is_some()
            && c.attribute("classname")
                .is_some_and(|n| n.starts_with("spec."))
            && c.attribute("time").is_some()
    }));
    let skipped = cases
        .iter()
        .filter(|c| c.first_element_child().map(|e| e.tag_name().name()) == Some("skipped"))
        .count();
    assert_eq!(skipped, 1);

    let tap = std::fs::read_to_string(p.dir.path().join("report.tap")).unwrap();
    assert!(
        tap.starts_with(&format!("TAP version 13\n1..{}\n", checks.len())),
        "{tap}"
    );
    assert!(!tap.contains("not ok"), "{tap}");

    // The results are kept with the machine's logs.
    let kept = p.dir.path().join(".envstate/machines/spec/verify.log");
    assert!(std::fs::read_to_string(kept).unwrap().contains("checks:"));
}

#[test]
fn every_resource_type_fails_with_expected_and_found() {
    let p = shared();
    let out = p.env(&["--envfile", "Envfile.fail", "verify", "--format", "json"]);
    let report = json(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "failed checks exit 1: {report:#}"
    );
    let checks = report["machines"][0]["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 15);
    for c in checks {
        assert_eq!(c["verdict"], "fail", "{c:#}");
        let failing = c["assertions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["passed"] == false)
            .unwrap();
        assert!(failing["expected"].is_string() && failing["found"].is_string());
    }
    let mode = checks.iter().find(|c| c["resource"] == "file").unwrap()["assertions"][0].clone();
    assert_eq!(
        (mode["expected"].as_str(), mode["found"].as_str()),
        (Some("0600"), Some("0640"))
    );

    // The readable report says what was expected and what was found.
    let out = p.env(&["--envfile", "Envfile.fail", "verify"]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("FAIL file /srv/spec/data.txt"), "{stdout}");
    assert!(
        stdout.contains("mode: expected 0600, found 0640"),
        "{stdout}"
    );
    assert!(
        stdout.contains("15 checks: 0 passed, 15 failed"),
        "{stdout}"
    );
}

#[test]
fn a_bad_spec_file_is_an_error_with_file_line_and_field() {
    let p = shared();
    let out = p.env(&["--envfile", "Envfile.bad", "verify"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("bad.toml:3:"), "{stderr}");
    assert!(stderr.contains("file./etc/motd.mdoe"), "{stderr}");
    assert!(stderr.contains("did you mean `mode`"), "{stderr}");
    assert!(stdout.is_empty(), "nothing is run: {stdout}");
}

#[test]
fn retries_wait_for_slow_services() {
    let p = shared();
    let specs = p.dir.path().join("specs");
    // Per-check retries: a file that appears after two seconds.
    std::fs::write(
        specs.join("retry-check.toml"),
        "[file.\"/tmp/late-a\"]\nexists = true\nretries = 15\nretry_delay = \"500ms\"\n",
    )
    .unwrap();
    p.ok(&[
        "ssh",
        "--",
        "(sleep 2; touch /tmp/late-a) >/dev/null 2>&1 &",
    ]);
    let out = p.env(&["--envfile", "Envfile.retry", "verify", "--format", "json"]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert!(
        report["machines"][0]["checks"][0]["attempts"]
            .as_u64()
            .unwrap()
            > 1
    );

    // --retry-timeout: every failing check waits, then gives up.
    std::fs::write(
        specs.join("retry-check.toml"),
        "[file.\"/tmp/late-b\"]\nexists = true\n",
    )
    .unwrap();
    p.ok(&[
        "ssh",
        "--",
        "(sleep 2; touch /tmp/late-b) >/dev/null 2>&1 &",
    ]);
    let out = p.env(&["--envfile", "Envfile.retry", "verify"]);
    assert_eq!(out.status.code(), Some(1), "without waiting it fails");
    let out = p.env(&[
        "--envfile",
        "Envfile.retry",
        "verify",
        "--retry-timeout",
        "30s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).0);
    let started = std::time::Instant::now();
    std::fs::write(
        specs.join("retry-check.toml"),
        "[file.\"/tmp/never\"]\nexists = true\n",
    )
    .unwrap();
    let out = p.env(&[
        "--envfile",
        "Envfile.retry",
        "verify",
        "--retry-timeout",
        "3s",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).0.contains("attempts"), "{}", text(&out).0);
    assert!(started.elapsed().as_secs() < 30, "gave up in time");
}

#[test]
fn spec_add_writes_checks_that_pass() {
    let p = shared();
    let out = p.env(&[
        "--envfile",
        "Envfile.added",
        "spec",
        "add",
        "file",
        "/srv/spec/data.txt",
        "/srv/spec/link",
    ]);
    assert!(out.status.success(), "{}", text(&out).1);
    p.ok(&[
        "--envfile",
        "Envfile.added",
        "spec",
        "add",
        "user",
        "specuser",
    ]);
    p.ok(&[
        "--envfile",
        "Envfile.added",
        "spec",
        "add",
        "service",
        "ssh",
    ]);
    p.ok(&[
        "--envfile",
        "Envfile.added",
        "spec",
        "add",
        "port",
        "tcp:22",
    ]);
    let added = std::fs::read_to_string(p.dir.path().join("specs/added.toml")).unwrap();
    assert!(
        added.contains("[user.specuser]") && added.contains("uid = 1500"),
        "{added}"
    );
    assert!(added.contains("mode = \"0640\""), "{added}");
    assert!(
        added.contains("link_target = \"/srv/spec/data.txt\""),
        "{added}"
    );
    let out = p.env(&[
        "--envfile",
        "Envfile.added",
        "spec",
        "add",
        "user",
        "specuser",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("already has"), "{}", text(&out).1);
    let out = p.env(&["--envfile", "Envfile.added", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).0);
}

#[test]
fn verify_of_a_machine_not_running_is_an_error() {
    let p = TestProject::new("[machines.idle]\nbox = \"debian-12\"\nspecs = [\"s.toml\"]\n");
    std::fs::write(p.dir.path().join("s.toml"), "[file.\"/\"]\nexists = true\n").unwrap();
    let out = p.env(&["verify"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).0.contains("not running"), "{}", text(&out).0);
    std::fs::write(
        p.dir.path().join("Envfile"),
        "[machines.idle]\nbox = \"debian-12\"\nspecs = [\"nothing-*.toml\"]\n",
    )
    .unwrap();
    let out = p.env(&["verify"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("matches no file"), "{}", text(&out).1);
}
