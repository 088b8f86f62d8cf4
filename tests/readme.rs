//! The README's opening console block runs as written, in order, on a real
//! machine: every `$ ` line of it, through `sh`, with this build as `env`.

mod common;

use common::{GuestSlot, TestProject, env_bin, text};

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
    let bin_dir = std::path::Path::new(env_bin()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for command in &commands {
        let out = p
            .cmd(&[])
            .env("PATH", &path)
            .env_remove("ENV_ENVFILE")
            .output_of_shell(command);
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "`{command}` failed:\nstdout: {stdout}\nstderr: {stderr}"
        );
    }
    p.ok(&["destroy", "-f"]);
}

/// Runs a shell command line with this command's environment and folder.
trait ShellLine {
    fn output_of_shell(&mut self, line: &str) -> std::process::Output;
}

impl ShellLine for std::process::Command {
    fn output_of_shell(&mut self, line: &str) -> std::process::Output {
        let mut sh = std::process::Command::new("sh");
        sh.arg("-c").arg(line);
        if let Some(dir) = self.get_current_dir() {
            sh.current_dir(dir);
        }
        for (key, value) in self.get_envs() {
            match value {
                Some(v) => sh.env(key, v),
                None => sh.env_remove(key),
            };
        }
        sh.stdin(std::process::Stdio::null()).output().unwrap()
    }
}
