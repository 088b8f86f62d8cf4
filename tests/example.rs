//! The examples keep working: examples/multi-machine (two machines,
//! provisioners, a shared folder, the private network and names) and
//! examples/web (`env up` then `env verify` pass at once, as the README
//! says; `env test --idempotent` passes).

mod common;

use common::{GuestSlot, TestProject, text};

#[test]
fn the_multi_machine_example_comes_up() {
    let _slot = GuestSlot::take();
    let p = TestProject::with_box("");
    common::copy_dir(&common::repo().join("examples/multi-machine"), p.dir.path());
    let out = p.env(&["up"]);
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("db: database appdb ready on db"),
        "{stderr}"
    );
    assert!(stderr.contains("web: db is reachable"), "{stderr}");
    let hosts = p.ok(&["ssh", "web", "--", "getent hosts db"]);
    assert!(hosts.trim_end().ends_with("db"), "{hosts}");
    p.ok(&["ssh", "web", "--", "ping -c1 -W5 db"]);
    assert!(
        p.ok(&["ssh", "web", "--", "cat /etc/motd"])
            .contains("examples/multi-machine")
    );
    let page = p.ok(&["ssh", "web", "--", "for i in 1 2 3 4 5 6 7 8 9 10; do python3 -c 'import urllib.request;print(urllib.request.urlopen(\"http://localhost:8000/\").read().decode())' 2>/dev/null && break; sleep 0.5; done"]);
    assert!(page.contains("Served by web"), "{page}");
}

#[test]
fn the_web_example_passes_env_test() {
    let _slot = GuestSlot::take();
    let p = TestProject::with_box("");
    common::copy_dir(&common::repo().join("examples/web"), p.dir.path());
    // The README's step by step first: `env up`, then at once `env verify`.
    // The service starts after its provisioner returns; `up` waits for the
    // port the example declares ready, so the specs pass the first time.
    let out = p.env(&["up"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("ready in"), "{stderr}");
    let out = p.env(&["verify"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("after 2 attempts"),
        "no retry was needed: {stdout}"
    );
    // Then the CI lifecycle (it destroys what is there first).
    let out = p.env(&["test", "--idempotent", "--junit", "report.xml"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("ok   provisioning again changes nothing"),
        "{stdout}"
    );
    assert!(stderr.contains("web server already in place"), "{stderr}");
    assert!(stderr.contains("env test: PASSED"), "{stderr}");
    let junit = std::fs::read_to_string(p.dir.path().join("report.xml")).unwrap();
    assert!(junit.contains("failures=\"0\" errors=\"0\""), "{junit}");
    assert_eq!(
        p.state_of("web"),
        "not_created",
        "a passing run is destroyed"
    );
}
