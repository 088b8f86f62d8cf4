//! The docs walked as a newcomer would: every `$ ` line of every console
//! block in docs/*.md runs as written (in page order, on one real machine,
//! boxes over a real HTTP server on 127.0.0.1) and prints what its page
//! says; a synopsis line (`NAME`, `FILE` placeholders) names only options
//! the command has; every TOML example is a valid Envfile or spec file; the
//! error example is the error env prints. A line this walk does not know
//! fails it, so a page cannot show a command nobody ran. README.md's console
//! block is run by tests/readme.rs.

mod common;

use common::http::Server;
use common::{GuestSlot, TestProject, path_with_env, sha256, shell, text, tiny_box};
use std::path::{Path, PathBuf};

/// Pages in the order the walk takes them (`env package` halts the machine,
/// so boxes.md comes last); pages not named here follow.
const PAGE_ORDER: &[&str] = &["specs.md", "snapshots.md", "boxes.md"];

/// Lines shown but run by another test, and why.
const RUN_ELSEWHERE: &[(&str, &str)] = &[
    (
        "env box add ~/.vagrant.d/boxes/",
        "a box from Vagrant's own store: tests/box_fetch.rs adds one that Vagrant 2.3.4 stored",
    ),
    (
        "env box add ubuntu-24.04",
        "an index entry from the internet: tests/cloud_image.rs adds one pointed at a local server",
    ),
];

/// Where the pages' example host and folders point in the walk.
const EXAMPLE_BASE: &str = "https://boxes.example.org/";
const EXAMPLE_FOLDER: &str = "/srv/boxes";
const EXAMPLE_CHECKSUM: &str = "sha256:0a1b...";

/// One `$ ` line of a docs page, its trailing comment cut.
#[derive(Debug, Clone)]
struct Shown {
    page: String,
    line: String,
}

/// The docs pages, in walk order.
fn pages() -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(common::repo().join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    all.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let rank = PAGE_ORDER
            .iter()
            .position(|n| *n == name)
            .unwrap_or(PAGE_ORDER.len());
        (rank, name)
    });
    all
}

/// The fenced blocks of `kind` (`console`, `toml`, `text`) of a page.
fn blocks(page: &Path, kind: &str) -> Vec<String> {
    let text = std::fs::read_to_string(page).unwrap();
    text.split(&format!("```{kind}\n"))
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_string())
        .collect()
}

fn shown_commands() -> Vec<Shown> {
    let mut all = Vec::new();
    for page in pages() {
        for block in blocks(&page, "console") {
            for line in block.lines().filter_map(|l| l.strip_prefix("$ ")) {
                all.push(Shown {
                    page: page.file_name().unwrap().to_string_lossy().into_owned(),
                    line: line.split(" # ").next().unwrap().trim().to_string(),
                });
            }
        }
    }
    all
}

/// A usage line rather than a command: it has placeholders (`NAME`, `FILE`).
fn is_synopsis(line: &str) -> bool {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| w.len() >= 3 && w.chars().all(|c| c.is_ascii_uppercase()))
}

/// The `--options` a line names.
fn options_of(line: &str) -> Vec<String> {
    line.split(|c: char| c.is_whitespace() || c == '[' || c == ']' || c == '=')
        .filter(|w| w.starts_with("--"))
        .map(|w| w.trim_end_matches("...").to_string())
        .collect()
}

/// The subcommand words of an `env` line (`["spec", "add"]`).
fn subcommand_of(line: &str) -> Vec<String> {
    line.split_whitespace()
        .skip(1)
        .take_while(|w| {
            !w.starts_with('-') && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        })
        .take(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn synopses_name_only_options_the_commands_have() {
    let lines: Vec<Shown> = shown_commands()
        .into_iter()
        .filter(|s| is_synopsis(&s.line))
        .collect();
    assert!(lines.len() >= 3, "{lines:?}");
    for shown in lines {
        assert!(shown.line.starts_with("env "), "{shown:?}");
        let words = subcommand_of(&shown.line);
        let mut help = std::process::Command::new(common::env_bin());
        // `env spec add` has its own help; `env verify` too.
        let out = help.args(&words).arg("--help").output().unwrap();
        let (help_text, stderr) = text(&out);
        assert!(out.status.success(), "{shown:?}: {stderr}");
        for option in options_of(&shown.line) {
            assert!(
                help_text.contains(&format!("{option} "))
                    || help_text.contains(&format!("{option}\n")),
                "{}: `{}` shows {option}, which `env {} --help` does not know",
                shown.page,
                shown.line,
                words.join(" ")
            );
        }
    }
}

/// Files the Envfile examples refer to, made so that they validate.
fn make_referenced_files(dir: &Path) {
    for folder in [
        "src",
        "docs",
        "build",
        "specs/common",
        "scripts",
        "ansible",
        "files",
        "site",
        "docker/hello",
    ] {
        std::fs::create_dir_all(dir.join(folder)).unwrap();
    }
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::create_dir_all(dir.join("ssh")).unwrap();
    for file in [
        "specs/web.toml",
        "specs/common/base.toml",
        "specs/db.toml",
        "keys/deploy_ed25519",
        "ssh/inventory_config",
    ] {
        std::fs::write(dir.join(file), "").unwrap();
    }
    std::fs::write(dir.join("scripts/setup.sh"), "#!/bin/sh\n").unwrap();
    std::fs::write(dir.join("ansible/site.yml"), "- hosts: all\n").unwrap();
    std::fs::write(dir.join("files/app.conf"), "").unwrap();
    std::fs::write(dir.join("docker/hello/Dockerfile"), "FROM scratch\n").unwrap();
}

/// A TOML example as a whole Envfile: a spec file (its first table is a
/// resource) is named by a machine; an Envfile fragment gets a box.
fn as_envfile(example: &str, dir: &Path) -> String {
    let first_table = example
        .lines()
        .find_map(|l| {
            l.trim_start_matches('[')
                .split(['.', ']'])
                .next()
                .filter(|_| l.starts_with('['))
        })
        .unwrap_or("");
    let envfile_tables = [
        "defaults",
        "machines",
        "logs",
        "targets",
        "platforms",
        "suites",
        "cache",
        "vars",
        "triggers",
        "",
    ];
    let body = if !envfile_tables.contains(&first_table) {
        std::fs::write(dir.join("example-spec.toml"), example).unwrap();
        "[machines.web]\nspecs = [\"example-spec.toml\"]\n".to_string()
    } else {
        example.to_string()
    };
    if body.contains("box =") {
        body
    } else if body.lines().any(|l| l.trim() == "[defaults]") {
        body.replacen("[defaults]", "[defaults]\nbox = \"debian-12\"", 1)
    } else {
        format!("[defaults]\nbox = \"debian-12\"\n{body}")
    }
}

#[test]
fn every_toml_example_is_a_valid_envfile_or_spec_file() {
    let mut checked = 0;
    for page in pages() {
        for (i, example) in blocks(&page, "toml").iter().enumerate() {
            let p = TestProject::new("");
            if example.contains("[images.") {
                // An image index: a project's images.toml, read by search.
                std::fs::write(p.dir.path().join("images.toml"), example).unwrap();
                let name = example
                    .split("[images.")
                    .nth(1)
                    .and_then(|r| r.split(']').next())
                    .unwrap();
                let out = p.env(&["box", "search", name]);
                let (stdout, stderr) = text(&out);
                assert!(out.status.success(), "{}: {stderr}", page.display());
                assert!(stdout.contains(name), "{stdout}");
                checked += 1;
                continue;
            }
            make_referenced_files(p.dir.path());
            std::fs::write(
                p.dir.path().join("Envfile"),
                as_envfile(example, p.dir.path()),
            )
            .unwrap();
            let out = p.env(&["validate"]);
            assert!(
                out.status.success(),
                "{} example {}:\n{example}\n{}",
                page.display(),
                i + 1,
                text(&out).1
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked}");
}

#[test]
fn the_error_example_is_what_env_prints() {
    let page = common::repo().join("docs/envfile.md");
    let example = blocks(&page, "text")
        .into_iter()
        .find(|b| b.starts_with("error: "))
        .unwrap();
    let first = example.lines().next().unwrap();
    // `error: /src/app/Envfile:5:1: machines.web: unknown field ...`
    let (shown_path, rest) = first["error: ".len()..].split_once(":5:1: ").unwrap();
    assert!(shown_path.ends_with("/Envfile"), "{first}");
    let p =
        TestProject::new("[defaults]\nbox = \"debian-12\"\n\n[machines.web]\nmemroy = \"1G\"\n");
    let out = p.env(&["validate"]);
    assert_eq!(out.status.code(), Some(2));
    let (_, stderr) = text(&out);
    let file = p.dir.path().join("Envfile").display().to_string();
    let printed = stderr.lines().next().unwrap();
    let (start, end) = rest.split_once("...").unwrap();
    assert!(
        printed.starts_with(&format!("error: {file}:5:1: {start}")),
        "{printed}\nvs {first}"
    );
    assert!(printed.ends_with(end), "{printed}\nvs {first}");
    for shown in example.lines().skip(1) {
        assert!(
            stderr.contains(shown.trim_end()),
            "{stderr}\nlacks `{shown}`"
        );
    }
}

/// What the walk has at hand: the project, the server, the example folder.
struct Walk {
    project: TestProject,
    server: Server,
    srv: PathBuf,
    files: tempfile::TempDir,
    checksum: String,
}

impl Walk {
    fn new() -> Walk {
        let project = TestProject::with_box(
            "[machines.web]\nbox = \"debian-12\"\nspecs = [\"specs/web.toml\"]\n",
        );
        std::fs::create_dir_all(project.dir.path().join("specs")).unwrap();
        std::fs::write(
            project.dir.path().join("specs/web.toml"),
            "[file.\"/etc/hostname\"]\ncontains = [\"web\"]\n",
        )
        .unwrap();
        let files = tempfile::tempdir().unwrap();
        let srv = files.path().join("srv-boxes");
        std::fs::create_dir_all(&srv).unwrap();
        let server = Server::start();
        // The pages' example boxes: a file here, a box and a catalog served.
        let local = tiny_box(files.path(), "debian-12", "1.0.0");
        std::fs::copy(&local, project.dir.path().join("debian-12.box")).unwrap();
        server.serve("debian-12.box", local.clone());
        let mut versions = Vec::new();
        for version in ["1.1.0", "1.2.0", "1.4.0", "2.0.0"] {
            let b = tiny_box(files.path(), "team/deb", version);
            let name = format!("team-deb-{version}.box");
            let url = server.serve(&name, b.clone());
            versions.push(serde_json::json!({"version": version, "providers": [
                {"name": "libvirt", "url": url, "checksum_type": "sha256", "checksum": sha256(&b)}
            ]}));
        }
        let catalog = files.path().join("team-deb.json");
        std::fs::write(
            &catalog,
            serde_json::json!({"name": "team/deb", "versions": versions}).to_string(),
        )
        .unwrap();
        server.serve("team-deb.json", catalog);
        // A bare disk image, xz-compressed, as distributions publish them.
        let image = files.path().join("disk.qcow2");
        let made = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&image)
            .arg("1G")
            .status()
            .unwrap();
        assert!(made.success());
        let xz = std::process::Command::new("xz")
            .arg(&image)
            .status()
            .unwrap();
        assert!(xz.success());
        server.serve("images/disk.qcow2.xz", files.path().join("disk.qcow2.xz"));
        Walk {
            project,
            checksum: format!("sha256:{}", sha256(&local)),
            server,
            srv,
            files,
        }
    }

    /// The line with the pages' example host, folder and digest made real,
    /// and its optional options (`[--json]`) given.
    fn rewrite(&self, line: &str) -> String {
        let given: Vec<&str> = line
            .split(' ')
            .map(
                |w| match w.strip_prefix("[--").and_then(|w| w.strip_suffix(']')) {
                    Some(_) => &w[1..w.len() - 1],
                    None => w,
                },
            )
            .collect();
        given
            .join(" ")
            .replace(EXAMPLE_BASE, &format!("{}/", self.server.base))
            .replace(EXAMPLE_FOLDER, &self.srv.display().to_string())
            .replace(EXAMPLE_CHECKSUM, &self.checksum)
    }

    /// Runs one line; a box added gets a store of its own (the pages show
    /// alternatives, not one sequence).
    fn run(&self, line: &str) -> (std::process::Output, Option<PathBuf>) {
        let mut cmd = self.project.cmd(&[]);
        cmd.env("PATH", path_with_env()).env_remove("ENV_ENVFILE");
        let own_store = line.starts_with("env box add ").then(|| {
            let home = tempfile::Builder::new()
                .prefix("store-")
                .tempdir_in(self.files.path())
                .unwrap()
                .keep();
            cmd.env("ENV_HOME", &home);
            home
        });
        if line.starts_with("vagrant ") {
            cmd.env("VAGRANT_HOME", self.files.path().join("vagrant-home"));
        }
        (shell(&cmd, &self.rewrite(line)), own_store)
    }

    /// Boxes in a store, as `name version` lines.
    fn listed(&self, home: &Path) -> Vec<String> {
        let out = self
            .project
            .cmd(&["box", "list", "--json"])
            .env("ENV_HOME", home)
            .output()
            .unwrap();
        let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        all.as_array()
            .unwrap()
            .iter()
            .map(|b| {
                format!(
                    "{} {}",
                    b["name"].as_str().unwrap(),
                    b["version"].as_str().unwrap()
                )
            })
            .collect()
    }

    /// What the page says the line does, checked.
    fn check(&self, line: &str, stdout: &str, store: Option<&Path>) {
        let dir = self.project.dir.path();
        if line.starts_with("env box add ./debian-12.box") {
            // "name from the file name"
            assert_eq!(self.listed(store.unwrap()), ["debian-12 1.0.0"]);
        } else if line.contains("--version \"~> 1.2\"") {
            assert_eq!(self.listed(store.unwrap()), ["team/deb 1.4.0"]);
        } else if line.contains("--checksum") {
            assert_eq!(self.listed(store.unwrap()), ["debian-12 1.0.0"]);
        } else if line.contains("disk.qcow2.xz") {
            assert_eq!(self.listed(store.unwrap()), ["mine 1"]);
        } else if line.starts_with("env box add team-web") {
            let listed = self.listed(store.unwrap());
            assert!(
                listed.len() == 1 && listed[0].starts_with("team/web "),
                "{listed:?}"
            );
        } else if line.starts_with("env snapshot list") && line.contains("--json") {
            let list: serde_json::Value = serde_json::from_str(stdout).unwrap();
            assert!(list.to_string().contains("clean"), "{list}");
        } else if line.starts_with("env spec add file") {
            let spec = std::fs::read_to_string(dir.join("specs/web.toml")).unwrap();
            assert!(spec.contains("/etc/motd"), "{spec}");
        } else if line.starts_with("env box catalog") && !line.contains("--base-url") {
            // "writes one catalog per box name: team-web.json"
            assert!(self.srv.join("team-web.json").is_file());
        } else if line.starts_with("env box catalog") {
            let catalog = std::fs::read_to_string(self.srv.join("team-web.json")).unwrap();
            assert!(
                catalog.contains(&self.server.base),
                "URLs absolute: {catalog}"
            );
            for entry in std::fs::read_dir(&self.srv).unwrap().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                self.server.serve(&name, entry.path());
            }
        }
    }

    /// What the pages leave to the reader between lines.
    fn before(&self, line: &str) {
        // "put the `.box` files in one folder"
        if line.starts_with("env box catalog") {
            for entry in std::fs::read_dir(self.project.dir.path())
                .unwrap()
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("team-web") && name.ends_with(".box") {
                    std::fs::copy(entry.path(), self.srv.join(&name)).unwrap();
                }
            }
        }
    }
}

#[test]
fn every_console_line_of_the_docs_runs_as_written() {
    let shown = shown_commands();
    let _slot = GuestSlot::take();
    let walk = Walk::new();
    walk.project.ok(&["up"]);
    let mut ran = 0;
    for s in shown.iter().filter(|s| !is_synopsis(&s.line)) {
        if let Some((_, why)) = RUN_ELSEWHERE.iter().find(|(l, _)| s.line.starts_with(l)) {
            eprintln!("{}: `{}`: {why}", s.page, s.line);
            continue;
        }
        if s.line.starts_with("vagrant ") && which("vagrant").is_none() {
            eprintln!(
                "{}: `{}`: skipped, Vagrant is not installed",
                s.page, s.line
            );
            continue;
        }
        walk.before(&s.line);
        let (out, store) = walk.run(&s.line);
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "{}: `{}` failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
            s.page,
            s.line,
            out.status
        );
        walk.check(&s.line, &stdout, store.as_deref());
        ran += 1;
    }
    assert!(ran >= 15, "ran {ran}");
    walk.project.ok(&["destroy", "-f"]);
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
