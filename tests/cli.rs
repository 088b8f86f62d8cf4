//! The command line without guests: pass-through to the system's env, help,
//! completions, Envfile validation and the box store.

mod common;

use common::{TestProject, env_bin, text};
use std::process::Command;

fn env(args: &[&str]) -> std::process::Output {
    Command::new(env_bin()).args(args).output().unwrap()
}

#[test]
fn foreign_arguments_go_to_the_system_env() {
    let out = env(&["FOO=1", "sh", "-c", "echo $FOO"]);
    assert!(out.status.success());
    assert_eq!(text(&out).0, "1\n");

    let out = env(&["-i", "PATH=/bin:/usr/bin", "sh", "-c", "echo $HOME-$PATH"]);
    assert_eq!(text(&out).0, "-/bin:/usr/bin\n");

    let out = Command::new(env_bin())
        .arg("sort")
        .stdin(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "`env sort` runs sort");

    // A bare `env` prints the environment, as coreutils' does.
    let out = Command::new(env_bin())
        .env("ENV_TEST_MARKER", "here")
        .output()
        .unwrap();
    assert!(text(&out).0.contains("ENV_TEST_MARKER=here"));

    // The exit status of the command is kept.
    let out = env(&["sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));

    // A mistyped subcommand is no program either: env says what was meant,
    // with the system env's exit status.
    for (typo, meant) in [("stauts", "status"), ("detroy", "destroy")] {
        let out = env(&[typo]);
        assert_eq!(out.status.code(), Some(127));
        let stderr = text(&out).1;
        assert!(
            stderr.contains(&format!("did you mean `env {meant}`?")),
            "{stderr}"
        );
    }
    // A word close to no subcommand is left to the system's env.
    let out = env(&["frobnicate-nothing"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(!text(&out).1.contains("did you mean"));
}

#[test]
fn help_lists_subcommands_and_version_prints() {
    let (stdout, _) = text(&env(&["--help"]));
    for sub in [
        "init",
        "validate",
        "up",
        "ssh",
        "ssh-config",
        "status",
        "port",
        "halt",
        "reload",
        "destroy",
        "box",
        "completions",
    ] {
        assert!(
            stdout.contains(&format!("  {sub}")),
            "--help lacks {sub}:\n{stdout}"
        );
    }
    let (stdout, _) = text(&env(&["--version"]));
    assert_eq!(stdout.trim(), format!("env {}", env!("CARGO_PKG_VERSION")));
    let (stdout, _) = text(&env(&["box", "--help"]));
    assert!(stdout.contains("build") && stdout.contains("add") && stdout.contains("remove"));
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = env(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        assert!(
            text(&out).0.contains("ssh-config"),
            "{shell} completions name the subcommands"
        );
    }
    assert!(!env(&["completions", "cmd.exe"]).status.success());
}

#[test]
fn invalid_envfile_names_file_line_field_and_changes_nothing() {
    let project =
        TestProject::new("[defaults]\nbox = \"debian-12\"\n\n[machines.web]\nmemroy = \"1G\"\n");
    for args in [&["validate"][..], &["up"][..], &["status"][..]] {
        let out = project.env(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let (_, stderr) = text(&out);
        let file = project.dir.path().join("Envfile");
        assert!(
            stderr.contains(&format!("{}:5:1: machines.web", file.display())),
            "{stderr}"
        );
        assert!(
            stderr.contains("unknown field `memroy`") && stderr.contains("did you mean `memory`?"),
            "{stderr}"
        );
    }
    assert!(
        !project.dir.path().join(".envstate").exists(),
        "a bad Envfile must not create state"
    );
}

#[test]
fn validate_checks_the_spec_files_too() {
    let project = TestProject::new(
        "[machines.web]\nbox = \"x\"\nspecs = [\"specs/web.toml\", \"specs/none-*.toml\"]\n",
    );
    let specs = project.dir.path().join("specs");
    std::fs::create_dir_all(&specs).unwrap();
    std::fs::write(
        specs.join("web.toml"),
        "[file.\"/etc/motd\"]\nexists = true\nmdoe = \"0644\"\n",
    )
    .unwrap();
    let out = project.env(&["validate"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    let file = specs.join("web.toml").display().to_string();
    assert!(stderr.contains(&format!("{file}:3:")), "{stderr}");
    assert!(stderr.contains("mdoe"), "{stderr}");
    assert!(
        stderr.contains("`specs/none-*.toml` matches no file"),
        "{stderr}"
    );
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
    std::fs::write(specs.join("none-1.toml"), "").unwrap();
    std::fs::write(
        specs.join("web.toml"),
        "[file.\"/etc/motd\"]\nexists = true\n",
    )
    .unwrap();
    let out = project.env(&["validate"]);
    assert!(out.status.success(), "{}", text(&out).1);
}

#[test]
fn validate_reports_every_problem_at_once() {
    let project = TestProject::new(
        "[machines.a]\nbox = \"x\"\nmemory = \"lots\"\ncpus = 0\n\n[machines.b]\nbox = \"x\"\nports = [{ guest = 80, host = 99999 }]\n",
    );
    let out = project.env(&["validate"]);
    assert_eq!(out.status.code(), Some(2));
    let (_, stderr) = text(&out);
    let file = project.dir.path().join("Envfile").display().to_string();
    assert!(
        stderr.contains(&format!("3 problems in {file}")),
        "{stderr}"
    );
    let located: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(&format!("{file}:")) && !l.contains("problems in"))
        .collect();
    assert_eq!(located.len(), 3, "{stderr}");
    for (at, field) in [
        (":3:", "machines.a.memory"),
        (":4:", "machines.a.cpus"),
        (":8:", "machines.b.ports[0].host"),
    ] {
        assert!(
            located.iter().any(|l| l.contains(at) && l.contains(field)),
            "{at} {field}: {stderr}"
        );
    }
}

#[test]
fn missing_envfile_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env_bin())
        .arg("status")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("env init"));
}

#[test]
fn init_writes_a_valid_envfile_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env_bin())
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    assert!(run(&["init", "debian-12"]).status.success());
    let (stdout, stderr) = text(&run(&["validate"]));
    assert!(stdout.contains("1 machine(s): default"), "{stdout}{stderr}");
    let out = run(&["init", "debian-12"]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("--force"));
}

#[test]
fn the_example_envfile_validates() {
    let out = Command::new(env_bin())
        .args(["validate", "--envfile"])
        .arg(common::repo().join("Envfile.example"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
}

#[test]
fn status_of_machines_never_created() {
    let project = TestProject::new("[defaults]\nbox = \"debian-12\"\n[machines.a]\n[machines.b]\n");
    let out = Command::new(env_bin())
        .args(["status", "--json"])
        .current_dir(project.dir.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["name"], "a");
    assert_eq!(v[1]["state"], "not_created");
    let out = Command::new(env_bin())
        .args(["ssh", "a", "--", "true"])
        .current_dir(project.dir.path())
        .output()
        .unwrap();
    assert!(text(&out).1.contains("not running"));
    let out = Command::new(env_bin())
        .args(["ssh", "--", "true"])
        .current_dir(project.dir.path())
        .output()
        .unwrap();
    assert!(text(&out).1.contains("several machines"));
    // Destroying what does not exist succeeds.
    let out = Command::new(env_bin())
        .args(["destroy", "-f"])
        .current_dir(project.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn box_store_add_list_remove_with_a_hostile_archive_refused() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env_bin())
            .args(args)
            .env("ENV_HOME", home.path())
            .output()
            .unwrap()
    };

    let mut qcow2_header = [0u8; 112];
    qcow2_header[..4].copy_from_slice(b"QFI\xfb");
    qcow2_header[7] = 3;
    let good = work.path().join("tiny.box");
    let mut builder = tar::Builder::new(std::fs::File::create(&good).unwrap());
    for (name, data) in [
        (
            "metadata.json",
            &br#"{"provider":"libvirt","format":"qcow2","virtual_size":1}"#[..],
        ),
        // An empty qcow2 v3 header: what the store checks of a disk.
        ("box.img", &qcow2_header[..]),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, data).unwrap();
    }
    builder.finish().unwrap();
    drop(builder);

    let out = run(&["box", "add", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out).1);
    let (stdout, _) = text(&run(&["box", "list"]));
    assert!(
        stdout.contains("tiny") && stdout.contains("libvirt"),
        "{stdout}"
    );
    let listed: serde_json::Value =
        serde_json::from_slice(&run(&["box", "list", "--json"]).stdout).unwrap();
    assert_eq!(listed[0]["name"], "tiny");
    assert_eq!(listed[0]["version"], "0");

    // A box whose entry climbs out of the store is refused, and nothing lands.
    let evil = work.path().join("evil.box");
    let mut raw = Vec::new();
    {
        let mut b = tar::Builder::new(&mut raw);
        let mut header = tar::Header::new_gnu();
        let name = b"../../escaped";
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_size(1);
        header.set_mode(0o644);
        header.set_cksum();
        b.append(&header, &b"x"[..]).unwrap();
        b.finish().unwrap();
    }
    std::fs::write(&evil, raw).unwrap();
    let out = run(&["box", "add", evil.to_str().unwrap(), "--name", "evil"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains(".."), "{}", text(&out).1);
    assert!(
        !home.path().join("escaped").exists()
            && !home.path().parent().unwrap().join("escaped").exists()
    );
    let (stdout, _) = text(&run(&["box", "list"]));
    assert!(!stdout.contains("evil"));

    assert!(run(&["box", "remove", "tiny"]).status.success());
    let (stdout, _) = text(&run(&["box", "list"]));
    assert!(stdout.contains("no boxes"), "{stdout}");
    assert!(!run(&["box", "remove", "tiny"]).status.success());
}

#[test]
fn doctor_reports_every_check() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env_bin())
        .args(["doctor", "--json"])
        .env("ENV_HOME", home.path())
        .output()
        .unwrap();
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = checks
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in [
        "qemu",
        "qemu-img",
        "kvm",
        "ssh client",
        "disk space",
        "9p folders",
        "ansible",
        "vagrant keys",
    ] {
        assert!(names.contains(&name), "{names:?}");
    }
    let vagrant = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "vagrant keys")
        .unwrap();
    assert!(
        vagrant["found"].as_str().unwrap().contains("keys/vagrant"),
        "Vagrant is installed for the tests: {vagrant}"
    );
    let qemu = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "qemu")
        .unwrap();
    assert_eq!(
        qemu["level"], "ok",
        "QEMU is installed for the tests: {qemu}"
    );
    // No box yet: KVM is not probed, and doctor says so instead of hanging.
    let kvm = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kvm")
        .unwrap();
    assert_ne!(kvm["level"], "fail", "{kvm}");
    let out = Command::new(env_bin())
        .arg("doctor")
        .env("ENV_HOME", home.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(text(&out).0.starts_with("CHECK"), "{}", text(&out).0);
}

#[test]
fn package_refuses_a_bad_box_name_or_version_before_anything() {
    let project = TestProject::new("[machines.web]\nbox = \"x\"\n");
    for (flag, value) in [("--name", ".hidden"), ("--version", "1.0/2")] {
        let out = project.env(&["package", "--output", "out.box", flag, value]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(flag) && stderr.contains(value), "{stderr}");
        assert!(!project.dir.path().join("out.box").exists());
    }
}

#[test]
fn variables_come_from_the_environment_then_vars_then_defaults() {
    let p = TestProject::new(
        "[vars]\nMEMORY = \"768M\"\n\n[machines.web]\nbox = \"${BOX:-debian-12}\"\nmemory = \"${MEMORY}\"\ncpus = 1\n",
    );
    let printed = p.ok(&["validate", "--print"]);
    let table: toml::Table = printed.parse().unwrap();
    assert_eq!(table["machines"]["web"]["box"].as_str(), Some("debian-12"));
    assert_eq!(table["machines"]["web"]["memory"].as_str(), Some("768M"));
    let out = p
        .cmd(&["validate", "--print"])
        .env("BOX", "ubuntu-24.04")
        .env("MEMORY", "2G")
        .output()
        .unwrap();
    let table: toml::Table = text(&out).0.parse().unwrap();
    assert_eq!(
        table["machines"]["web"]["box"].as_str(),
        Some("ubuntu-24.04")
    );
    assert_eq!(
        table["machines"]["web"]["memory"].as_str(),
        Some("2G"),
        "the environment wins"
    );

    // Unset, no default: located, exit 2, nothing else said.
    std::fs::write(
        p.dir.path().join("Envfile"),
        "[machines.web]\nbox = \"x\"\nmemory = \"${ENV_TEST_UNSET_MEMORY}\"\n",
    )
    .unwrap();
    let out = p.env(&["validate"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let stderr = text(&out).1;
    assert!(
        stderr.contains(
            "Envfile:3:10: machines.web.memory: variable `ENV_TEST_UNSET_MEMORY` is not set"
        ),
        "{stderr}"
    );
}
