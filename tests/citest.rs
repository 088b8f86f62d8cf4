//! `env test`, the CI lifecycle, on an Envfile whose provisioner is broken:
//! a non-zero exit, the failure recorded, the machine kept under
//! `--destroy never` and destroyed under `--destroy always`.

mod common;

use common::{GuestSlot, TestProject, text};

#[test]
fn a_broken_provisioner_fails_the_run_and_destroy_follows_the_policy() {
    let _slot = GuestSlot::take();
    let p = TestProject::with_box(
        r#"
[machines.broken]
box = "debian-12"
memory = "512M"
specs = ["spec.toml"]
provision = [
  { type = "shell", name = "breaks", inline = "echo about to fail; exit 7" },
]
"#,
    );
    std::fs::write(
        p.dir.path().join("spec.toml"),
        "[file.\"/\"]\nexists = true\n",
    )
    .unwrap();
    let record = p.dir.path().join(".envstate/test/broken.json");

    let out = p.env(&["test", "--destroy", "never", "--junit", "report.xml"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("env test: FAILED"), "{stderr}");
    assert!(stderr.contains("kept for inspection"), "{stderr}");
    assert_eq!(p.state_of("broken"), "running", "--destroy never keeps it");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    assert_eq!(state["verdict"], "failed");
    assert_eq!(state["last_action"], "up");
    let error = state["last_error"].as_str().unwrap();
    assert!(
        error.contains("breaks") && error.contains("exit status 7"),
        "{error}"
    );
    let junit = std::fs::read_to_string(p.dir.path().join("report.xml")).unwrap();
    let doc = roxmltree::Document::parse(&junit).unwrap();
    assert!(
        doc.descendants().any(|n| n.tag_name().name() == "error"),
        "{junit}"
    );

    // The next run starts by destroying the leftover, then fails again and
    // destroys it at the end.
    let out = p.env(&["test", "--destroy", "always"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out).1);
    assert_eq!(p.state_of("broken"), "not_created", "--destroy always");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    assert_eq!(state["verdict"], "failed");
    let actions: Vec<&str> = state["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["destroy", "up", "destroy"]);
    // The logs of the failed run outlive the machine.
    assert!(p.dir.path().join(".envstate/logs/broken").exists());
}
