//! The platform x suite matrix of examples/matrix: the combinations listed
//! as CI systems read them (and the GitLab child pipeline made from them),
//! `--only` globs, and the whole matrix run by `env test --parallel 2` into
//! one JUnit file with a `<testsuite>` per combination and one record each.

mod common;

use common::{GuestSlot, TestProject, recipe_box, text};
use std::process::Command;

const COMBINATIONS: [(&str, &str, &str); 4] = [
    ("web-debian-12", "web", "debian-12"),
    ("web-debian-12-bios", "web", "debian-12-bios"),
    ("app-debian-12", "app", "debian-12"),
    ("app-debian-12-bios", "app", "debian-12-bios"),
];

fn example() -> TestProject {
    let p = TestProject::with_box("");
    common::copy_dir(&common::repo().join("examples/matrix"), p.dir.path());
    p
}

/// Parses YAML with the host's python3 (PyYAML) into JSON.
fn yaml(text: &str) -> serde_json::Value {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "not YAML:\n{text}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_combinations_are_listed_as_ci_systems_read_them() {
    let p = example();
    let names = p.ok(&["test", "--list"]);
    let expected: Vec<&str> = COMBINATIONS.iter().map(|c| c.0).collect();
    assert_eq!(names.lines().collect::<Vec<_>>(), expected);

    // GitHub Actions: `strategy.matrix: ${{ fromJSON(...) }}` takes this.
    let json: serde_json::Value =
        serde_json::from_str(&p.ok(&["test", "--list", "--json"])).unwrap();
    let include = json["include"].as_array().unwrap();
    for ((name, suite, platform), entry) in COMBINATIONS.iter().zip(include) {
        assert_eq!(entry["name"], *name);
        assert_eq!(entry["suite"], *suite);
        assert_eq!(entry["platform"], *platform);
    }
    let workflow = yaml(
        &std::fs::read_to_string(common::repo().join("examples/ci/github-actions.yml")).unwrap(),
    );
    let matrix = workflow["jobs"]["test"]["strategy"]["matrix"]
        .as_str()
        .unwrap();
    assert!(
        matrix.contains("fromJSON(needs.list.outputs.matrix)"),
        "{matrix}"
    );
    let run = workflow["jobs"]["list"]["steps"][2]["run"]
        .as_str()
        .unwrap();
    assert!(run.contains("env test --list --json"), "{run}");

    // GitLab: the child pipeline made from `env test --list`, one job each.
    let generator = common::repo().join("examples/ci/gitlab-child-pipeline.sh");
    let out = Command::new("sh")
        .arg(&generator)
        .current_dir(p.dir.path())
        .env("PATH", common::path_with_env())
        .env("ENV_HOME", &p.home)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let child = yaml(&text(&out).0);
    for (name, _, _) in COMBINATIONS {
        assert_eq!(child[name]["extends"], ".env-test", "{child}");
        assert_eq!(child[name]["variables"]["ENV_COMBINATION"], name);
    }
    let script = child[".env-test"]["script"][0].as_str().unwrap();
    assert!(
        script.contains("env test --only \"$ENV_COMBINATION\""),
        "{script}"
    );
    let parent =
        yaml(&std::fs::read_to_string(common::repo().join("examples/ci/gitlab-ci.yml")).unwrap());
    assert_eq!(
        parent["matrix"]["trigger"]["include"][0]["artifact"],
        "matrix-pipeline.yml"
    );

    // --only narrows by glob; one that matches nothing is an error.
    assert_eq!(
        p.ok(&["test", "--list", "--only", "*-bios"]),
        "web-debian-12-bios\napp-debian-12-bios\n"
    );
    let out = p.env(&["test", "--list", "--only", "db-*"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("matches no machine"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn the_whole_matrix_runs_into_one_junit_file() {
    let _slots = (GuestSlot::take(), GuestSlot::take());
    let p = example();
    p.ok(&[
        "box",
        "add",
        recipe_box("debian-12-bios").to_str().unwrap(),
        "--name",
        "debian-12-bios",
    ]);
    let out = p.env(&[
        "test",
        "--parallel",
        "2",
        "--idempotent",
        "--junit",
        "report.xml",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let junit = std::fs::read_to_string(p.dir.path().join("report.xml")).unwrap();
    assert_eq!(junit.matches("<testsuite ").count(), 4, "{junit}");
    for (name, suite, platform) in COMBINATIONS {
        assert!(
            junit.contains(&format!("<testsuite name=\"{name}\"")),
            "{junit}"
        );
        let record: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(p.dir.path().join(format!(".envstate/test/{name}.json")))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(record["verdict"], "passed", "{record}");
        assert_eq!(
            (record["suite"].as_str(), record["platform"].as_str()),
            (Some(suite), Some(platform))
        );
    }
    // Passing combinations are destroyed (`--destroy passing`).
    for machine in p.status().as_array().unwrap() {
        assert_eq!(machine["state"], "not_created", "{machine}");
    }
}
