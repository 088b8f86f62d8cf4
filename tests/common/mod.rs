//! Shared fixtures of the integration tests: the `env` binary, the test box
//! (built from boxes/debian-12 once, cached by recipe hash; other recipes on
//! demand), a box store with
//! it, throw-away projects, and a bound on guests booting at once.
#![allow(dead_code)]

pub mod http;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};

/// The binary under test.
pub fn env_bin() -> &'static str {
    env!("CARGO_BIN_EXE_env")
}

/// Repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Hash of the files a box recipe builds from: its folder, the shared
/// `boxes/lib` and `boxes/keys`, and `boxes/debian-12` (whose config the
/// variants source). A cached box is reused only when they are unchanged.
pub fn recipe_hash(recipe: &str) -> String {
    use sha2::{Digest, Sha256};
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out)
            } else {
                out.push(p)
            }
        }
    }
    let mut files = Vec::new();
    let mut folders = vec!["lib", "keys", "debian-12", recipe];
    folders.dedup();
    for folder in folders {
        walk(&repo().join("boxes").join(folder), &mut files);
    }
    let mut h = Sha256::new();
    for f in files {
        h.update(f.strip_prefix(repo()).unwrap().to_string_lossy().as_bytes());
        h.update(std::fs::read(&f).unwrap());
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The test box: `$ENV_TEST_BOX`, else the cached build of boxes/debian-12.
pub fn test_box() -> PathBuf {
    static BOX: OnceLock<PathBuf> = OnceLock::new();
    BOX.get_or_init(|| match std::env::var_os("ENV_TEST_BOX") {
        Some(p) => PathBuf::from(p),
        None => recipe_box("debian-12"),
    })
    .clone()
}

/// The box of recipe `boxes/NAME`: the cached build for this recipe in
/// `$ENV_TEST_BOX_CACHE` (default /var/tmp/env-test-box), built now if absent.
pub fn recipe_box(recipe: &str) -> PathBuf {
    let cache = PathBuf::from(
        std::env::var_os("ENV_TEST_BOX_CACHE").unwrap_or("/var/tmp/env-test-box".into()),
    );
    std::fs::create_dir_all(&cache).unwrap();
    let path = cache.join(format!("{recipe}-{}.box", recipe_hash(recipe)));
    // Test binaries run one after another, but a developer may run two
    // `cargo test`s: the lock keeps them from building twice.
    let lock = std::fs::File::create(cache.join(".lock")).unwrap();
    lock.lock().unwrap();
    if !path.exists() {
        eprintln!("building the test box {} (about 2 min)...", path.display());
        let before = host_state();
        build_box(recipe, &path);
        // A box build writes its output and nothing else on the host: the
        // apt state and /etc are as they were (once, mmdebstrap's cleanup
        // wiped the host's package lists).
        let after = host_state();
        let changed: Vec<&String> = before.symmetric_difference(&after).collect();
        assert!(
            changed.is_empty(),
            "building {recipe} changed the host: {changed:?}"
        );
    }
    path
}

/// The recipe built without root: when the tests run as root (CI), the
/// debian-12 box is built by an ordinary user made for it (`useradd`, with
/// a subordinate id range), through mmdebstrap's unshare mode, from copies
/// of `env` and `boxes/` it can read; the other recipes are built as root,
/// so both ways stay tested. `ENV_TEST_BUILD_AS_ROOT=1` builds all as root.
const UNPRIVILEGED_RECIPE: &str = "debian-12";
const BUILD_USER: &str = "env-box-builder";

fn build_box(recipe: &str, path: &Path) {
    // SAFETY: getuid has no preconditions and cannot fail.
    let root = unsafe { libc::getuid() } == 0;
    let as_user = root
        && recipe == UNPRIVILEGED_RECIPE
        && std::env::var_os("ENV_TEST_BUILD_AS_ROOT").is_none();
    if !as_user {
        let status = Command::new(env_bin())
            .args(["box", "build", recipe, "--output"])
            .arg(path)
            .current_dir(repo())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "building the test box {recipe} failed: needs root (or uidmap and a subordinate id range), mmdebstrap and the Debian mirror"
        );
        return;
    }
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    if !Command::new("id")
        .arg(BUILD_USER)
        .output()
        .unwrap()
        .status
        .success()
    {
        run(Command::new("useradd").args(["--create-home", "--shell", "/bin/bash", BUILD_USER]));
    }
    for (file, flag) in [
        ("/etc/subuid", "--add-subuids"),
        ("/etc/subgid", "--add-subgids"),
    ] {
        let listed = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&format!("{BUILD_USER}:")));
        if !listed {
            run(Command::new("usermod").args([flag, "300000-365535", BUILD_USER]));
        }
    }
    // What the build reads and writes, where the user can: copies of env and
    // of boxes/, and an output folder of its own.
    let work = tempfile::Builder::new()
        .prefix("env-box-build-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let copy = Command::new("cp")
        .args(["-a"])
        .arg(repo().join("boxes"))
        .arg(env_bin())
        .arg(work.path())
        .status()
        .unwrap();
    assert!(copy.success());
    run(Command::new("chown")
        .args(["-R", BUILD_USER])
        .arg(work.path()));
    run(Command::new("chmod").args(["0755"]).arg(work.path()));
    let output = work.path().join("out.box");
    let status = Command::new("runuser")
        .args(["-u", BUILD_USER, "--"])
        .arg(work.path().join("env"))
        .args(["box", "build", recipe, "--output"])
        .arg(&output)
        .current_dir(work.path())
        .env("HOME", format!("/home/{BUILD_USER}"))
        .env("TMPDIR", "/var/tmp")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "building {recipe} as the unprivileged user {BUILD_USER} failed (mmdebstrap's unshare mode: uidmap, a subordinate id range)"
    );
    // Into the cache atomically: a half-copied box is never taken for one.
    let partial = path.with_extension("partial");
    std::fs::copy(&output, &partial).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

/// What a box build could touch on the host, as `path size mtime` lines:
/// apt's package lists and caches, and /etc.
fn host_state() -> std::collections::BTreeSet<String> {
    fn walk(dir: &Path, out: &mut std::collections::BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let mtime = meta
                .modified()
                .ok()
                .map(|t| format!("{t:?}"))
                .unwrap_or_default();
            out.insert(format!("{} {} {mtime}", path.display(), meta.len()));
            if meta.is_dir() {
                walk(&path, out);
            }
        }
    }
    let mut state = std::collections::BTreeSet::new();
    for dir in ["/var/lib/apt/lists", "/var/cache/apt", "/etc"] {
        walk(Path::new(dir), &mut state);
    }
    state
}

/// A box store (ENV_HOME) shared by the tests of one binary, holding the test
/// box as `debian-12`.
pub fn home() -> &'static Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("env-test-home-")
            .tempdir()
            .unwrap();
        let out = Command::new(env_bin())
            .args(["box", "add"])
            .arg(test_box())
            .args(["--name", "debian-12"])
            .env("ENV_HOME", dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "box add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dir.path().to_path_buf();
        at_exit(move || {
            let _ = std::fs::remove_dir_all(path);
        });
        dir
    })
    .path()
}

/// At most this many guests boot at once (2 cores, TCG).
pub const MAX_GUESTS: usize = 2;

static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// A place for booting guests; released when dropped.
pub struct GuestSlot;

impl GuestSlot {
    /// Waits for a free slot.
    pub fn take() -> GuestSlot {
        let (lock, cvar) = &SLOTS;
        let mut used = lock.lock().unwrap();
        while *used >= MAX_GUESTS {
            used = cvar.wait(used).unwrap();
        }
        *used += 1;
        GuestSlot
    }
}

impl Drop for GuestSlot {
    fn drop(&mut self) {
        let (lock, cvar) = &SLOTS;
        *lock.lock().unwrap() -= 1;
        cvar.notify_one();
    }
}

/// A throw-away project: a folder with an Envfile; its machines are
/// destroyed when it is dropped.
pub struct TestProject {
    /// The project folder.
    pub dir: tempfile::TempDir,
    /// ENV_HOME of its commands.
    pub home: PathBuf,
}

impl TestProject {
    /// A project with this Envfile text and an empty box store.
    pub fn new(envfile: &str) -> TestProject {
        static EMPTY: OnceLock<tempfile::TempDir> = OnceLock::new();
        let empty = EMPTY
            .get_or_init(|| tempfile::tempdir().unwrap())
            .path()
            .to_path_buf();
        TestProject::in_home(envfile, empty)
    }

    /// A project with this Envfile text and the store holding the test box.
    pub fn with_box(envfile: &str) -> TestProject {
        TestProject::in_home(envfile, home().to_path_buf())
    }

    fn in_home(envfile: &str, home: PathBuf) -> TestProject {
        let dir = tempfile::Builder::new()
            .prefix("env-test-project-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("Envfile"), envfile).unwrap();
        TestProject { dir, home }
    }

    /// An `env` command in this project, with the shared store and TCG.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env_bin());
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("ENV_HOME", &self.home)
            .env("ENV_ACCEL", "tcg")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `env ARGS` here.
    pub fn env(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs `env ARGS` and asserts success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.env(args);
        assert!(
            out.status.success(),
            "env {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `env status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).unwrap()
    }

    /// The state word of machine `name`.
    pub fn state_of(&self, name: &str) -> String {
        let status = self.status();
        status
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()["state"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

impl TestProject {
    /// Destroys the machines (and the folder) when the test process exits:
    /// for projects kept in statics, which are never dropped.
    pub fn destroy_at_exit(&self) {
        let (dir, home) = (self.dir.path().to_path_buf(), self.home.clone());
        at_exit(move || {
            let _ = Command::new(env_bin())
                .args(["destroy", "-f"])
                .current_dir(&dir)
                .env("ENV_HOME", &home)
                .stdin(Stdio::null())
                .output();
            let _ = std::fs::remove_dir_all(&dir);
        });
    }
}

impl Drop for TestProject {
    fn drop(&mut self) {
        let _ = self.env(&["destroy", "-f"]);
    }
}

/// Text of an output's stdout and stderr.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `command` as vagrant on 127.0.0.1:`port` with plain ssh and the
/// box's well-known first-contact key (host key not checked).
pub fn ssh_with_well_known_key(port: u16, command: &str) -> Output {
    use std::os::unix::fs::PermissionsExt;
    let key = tempfile::NamedTempFile::new().unwrap();
    std::fs::copy(repo().join("boxes/keys/insecure_ed25519"), key.path()).unwrap();
    std::fs::set_permissions(key.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
        ])
        .args([
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
        ])
        .arg(key.path())
        .args(["-p", &port.to_string(), "vagrant@127.0.0.1", command])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

type ExitHook = Box<dyn FnOnce() + Send>;

static EXIT_HOOKS: Mutex<Vec<ExitHook>> = Mutex::new(Vec::new());

extern "C" fn run_exit_hooks() {
    let hooks = std::mem::take(&mut *EXIT_HOOKS.lock().unwrap_or_else(|e| e.into_inner()));
    for hook in hooks.into_iter().rev() {
        hook();
    }
}

/// Runs `hook` when the test process exits. Statics are never dropped, so
/// fixtures kept in them (the shared machine, the box store) clean up here.
pub fn at_exit(hook: impl FnOnce() + Send + 'static) {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        // SAFETY: registering a plain extern "C" function with atexit(3).
        unsafe { libc::atexit(run_exit_hooks) };
    });
    EXIT_HOOKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Box::new(hook));
}

/// A minimal valid box (libvirt metadata, a 1 MiB qcow2, info.json), with
/// some incompressible padding so a download can be cut in the middle.
pub fn tiny_box(dir: &Path, name: &str, version: &str) -> PathBuf {
    let work = dir.join(format!("{name}-{version}"));
    std::fs::create_dir_all(&work).unwrap();
    let img = work.join("box.img");
    let status = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&img)
        .arg("1M")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(
        work.join("metadata.json"),
        r#"{"provider": "libvirt", "format": "qcow2", "virtual_size": 1}"#,
    )
    .unwrap();
    std::fs::write(
        work.join("info.json"),
        format!(r#"{{"name": "{name}", "version": "{version}"}}"#),
    )
    .unwrap();
    let padding: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(work.join("padding.bin"), padding).unwrap();
    let path = dir.join(format!("{name}-{version}.box"));
    let file = std::fs::File::create(&path).unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        file,
        flate2::Compression::fast(),
    ));
    for f in ["metadata.json", "info.json", "box.img", "padding.bin"] {
        tar.append_path_with_name(work.join(f), f).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
    path
}

/// The sha256 of a file, in hex.
pub fn sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs a shell command line with `cmd`'s environment and folder (what a
/// user types at a prompt, `env` resolved through PATH).
pub fn shell(cmd: &Command, line: &str) -> Output {
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(line);
    if let Some(dir) = cmd.get_current_dir() {
        sh.current_dir(dir);
    }
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => sh.env(key, v),
            None => sh.env_remove(key),
        };
    }
    sh.stdin(Stdio::null()).output().unwrap()
}

/// PATH with this build's `env` first.
pub fn path_with_env() -> String {
    let bin_dir = Path::new(env_bin()).parent().unwrap();
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Copies a folder tree (an example project into a test project).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
