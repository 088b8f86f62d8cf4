//! The README's opening console block runs as written, in order, on a real
//! machine: every `$ ` line of it, through `sh`, with this build as `env`.

mod common;

use common::{GuestSlot, TestProject, text};

/// The `$ ` lines of the README's first console block, comments cut.
fn opening_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let block = readme
        .split("```console\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("README.md has a console block");
    block
        .lines()
        .filter_map(|l| l.strip_prefix("$ "))
        .map(|l| l.split(" # ").next().unwrap_or(l).trim().to_string())
        .collect()
}

#[test]
fn the_opening_commands_run_as_written() {
    let commands = opening_commands();
    assert!(commands.len() >= 5, "{commands:?}");
    let _slot = GuestSlot::take();
    let p = TestProject::with_box(
        "[machines.web]\nbox = \"debian-12\"\nspecs = [\"specs/web.toml\"]\n",
    );
    std::fs::create_dir_all(p.dir.path().join("specs")).unwrap();
    std::fs::write(
        p.dir.path().join("specs/web.toml"),
        "[file.\"/etc/hostname\"]\ncontains = [\"web\"]\n",
    )
    .unwrap();
    let path = common::path_with_env();
    for command in &commands {
        let mut cmd = p.cmd(&[]);
        cmd.env("PATH", &path).env_remove("ENV_ENVFILE");
        let out = common::shell(&cmd, command);
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "`{command}` failed:\nstdout: {stdout}\nstderr: {stderr}"
        );
    }
    p.ok(&["destroy", "-f"]);
}
