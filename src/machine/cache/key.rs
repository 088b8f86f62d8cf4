//! The provisioning cache's key: a SHA-256 of everything provisioning
//! declares it reads. Two machines with the same key would be provisioned
//! into the same guest, so one's snapshot can stand for the other's run.
//!
//! Covered: env's release; the machine's name (its host name); the box
//! (name, version, folder, and each stored file's size and time: a box
//! added again is a new box); the settings that shape the guest or its
//! hypervisor state (CPUs, memory, disk size, firmware, accelerator asked
//! for, QEMU arguments, SSH user, port and first-contact key, private
//! address, subnet and the project's other addresses, folders, data
//! disks, cloud-init user-data); every provisioner's settings and inputs
//! (inline text, script files, uploaded files and folders, the Ansible
//! playbook's whole folder), and rsync folders' contents. Not covered, and
//! cannot be: anything provisioning fetches at run time (package
//! repositories, roles from Galaxy, `curl | sh`).

use crate::envfile::Machine;
use crate::envfile::provisioners::{Action, Script};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::net::Ipv4Addr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Bumped when what the key covers, or how entries are made, changes.
pub const KEY_FORMAT: u32 = 1;

/// What the key needs besides the machine itself.
#[derive(Debug, Clone)]
pub struct KeyContext<'a> {
    /// The project folder: paths under it are keyed relative to it, so a
    /// clone elsewhere has the same keys.
    pub project_dir: &'a Path,
    /// The stored box: name, version, folder.
    pub box_name: &'a str,
    /// Its version.
    pub box_version: &'a str,
    /// Its folder in the store.
    pub box_dir: &'a Path,
    /// The accelerator asked for (a VM state saved under one loads under
    /// that one only).
    pub accel: &'a str,
    /// The project's private subnet.
    pub private_subnet: Option<Ipv4Addr>,
    /// Every machine of the project and its private address: the guests'
    /// host tables list them.
    pub peers: Vec<(String, Option<Ipv4Addr>)>,
}

/// A hash fed labeled fields, each length-prefixed so no two inputs run
/// together.
struct Feed(Sha256);

impl Feed {
    fn field(&mut self, label: &str, bytes: &[u8]) {
        self.0.update((label.len() as u64).to_le_bytes());
        self.0.update(label.as_bytes());
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    fn text(&mut self, label: &str, text: &str) {
        self.field(label, text.as_bytes());
    }

    /// A file's or folder's contents (relative names, kinds, modes, bytes,
    /// link targets), in name order.
    fn tree(&mut self, label: &str, root: &Path) -> Result<()> {
        let meta = std::fs::symlink_metadata(root)
            .with_context(|| format!("cannot read {}", root.display()))?;
        if meta.is_file() {
            let bytes =
                std::fs::read(root).with_context(|| format!("cannot read {}", root.display()))?;
            self.text(
                label,
                &format!("file {:o}", meta.permissions().mode() & 0o7777),
            );
            self.field(label, &bytes);
            return Ok(());
        }
        let mut entries: Vec<_> = walk(root)?;
        entries.sort();
        for path in entries {
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .to_string();
            let meta = std::fs::symlink_metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path)?;
                self.text(label, &format!("link {relative} {}", target.display()));
            } else if meta.is_dir() {
                self.text(label, &format!("dir {relative} {mode:o}"));
            } else if meta.is_file() {
                self.text(label, &format!("file {relative} {mode:o}"));
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                self.field(label, &bytes);
            } else {
                self.text(label, &format!("special {relative}"));
            }
        }
        Ok(())
    }
}

/// Folders no key reads: env's own state (machine disks) and Git's.
const SKIPPED: [&str; 2] = [crate::util::paths::STATE_DIR, ".git"];

/// Every path under `root` (not following links), but [`SKIPPED`] folders.
fn walk(root: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let entry = entry?;
            if SKIPPED.iter().any(|s| entry.file_name() == *s) {
                continue;
            }
            let path = entry.path();
            if std::fs::symlink_metadata(&path)?.is_dir() {
                todo.push(path.clone());
            }
            out.push(path);
        }
    }
    Ok(out)
}

/// `path` as the key sees it: relative to the project when under it.
fn keyed_path(project_dir: &Path, path: &Path) -> String {
    match path.strip_prefix(project_dir) {
        Ok(rel) => format!("project:{}", rel.display()),
        Err(_) => path.display().to_string(),
    }
}

/// The cache key of `machine`: 64 hex digits.
pub fn key(machine: &Machine, context: &KeyContext) -> Result<String> {
    let mut feed = Feed(Sha256::new());
    let project = context.project_dir;
    feed.text("format", &KEY_FORMAT.to_string());
    feed.text("env", env!("CARGO_PKG_VERSION"));
    feed.text("name", &machine.name);
    feed.text(
        "box",
        &format!("{} {}", context.box_name, context.box_version),
    );
    feed.text("box-dir", &context.box_dir.display().to_string());
    let mut box_files = walk(context.box_dir)?;
    box_files.sort();
    for file in box_files {
        let meta = std::fs::symlink_metadata(&file)?;
        feed.text(
            "box-file",
            &format!(
                "{} {} {}.{}",
                file.strip_prefix(context.box_dir)
                    .unwrap_or(&file)
                    .display(),
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec()
            ),
        );
    }
    feed.text(
        "hardware",
        &format!(
            "cpus={} memory={} disk={:?} firmware={:?} accel={} qemu_args={:?}",
            machine.cpus,
            machine.memory,
            machine.disk,
            machine.firmware,
            context.accel,
            machine.qemu_args
        ),
    );
    feed.text(
        "ssh",
        &format!(
            "user={:?} port={} insert_key={}",
            machine.ssh_user, machine.ssh_guest_port, machine.ssh_insert_key
        ),
    );
    if let Some(private_key) = &machine.ssh_private_key {
        feed.tree("ssh-key", private_key)?;
    }
    feed.text(
        "network",
        &format!(
            "ip={:?} subnet={:?} peers={:?}",
            machine.ip, context.private_subnet, context.peers
        ),
    );
    for folder in &machine.folders {
        feed.text(
            "folder",
            &format!(
                "{} {} {:?} readonly={} exclude={:?}",
                keyed_path(project, &folder.host),
                folder.guest,
                folder.kind,
                folder.readonly,
                folder.exclude
            ),
        );
        use crate::envfile::folders::FolderKind;
        if matches!(folder.kind, FolderKind::Rsync | FolderKind::Auto) {
            feed.tree("folder-contents", &folder.host)?;
        }
    }
    feed.text("disks", &format!("{:?}", machine.disks));
    if let Some(user_data) = &machine.cloud_init_user_data {
        feed.tree("user-data", user_data)?;
    }
    feed_provisioners(&mut feed, machine, project)?;
    Ok(hex(feed))
}

/// Feeds every provisioner's settings and inputs (what `key` and
/// [`provisioners_digest`] share).
fn feed_provisioners(feed: &mut Feed, machine: &Machine, project: &Path) -> Result<()> {
    for p in &machine.provisioners {
        feed.text("provisioner", &format!("{} {:?}", p.name, p.run));
        match &p.action {
            Action::Shell {
                script,
                args,
                env,
                privileged,
                changed_exit_code,
            } => {
                feed.text(
                    "shell",
                    &format!("{args:?} {env:?} {privileged} {changed_exit_code:?}"),
                );
                match script {
                    Script::Inline(text) => feed.text("inline", text),
                    Script::File(path) => {
                        feed.text("script", &keyed_path(project, path));
                        feed.tree("script-contents", path)?;
                    }
                }
            }
            Action::Docker {
                engine,
                images,
                containers,
            } => {
                feed.text("docker", &format!("{engine:?} {containers:?}"));
                for image in images {
                    feed.text(
                        "image",
                        &format!("{} {}", image.tag, keyed_path(project, &image.context)),
                    );
                    feed.tree("image-context", &image.context)?;
                }
            }
            Action::File {
                source,
                destination,
                privileged,
            } => {
                feed.text(
                    "file",
                    &format!("{} {destination} {privileged}", keyed_path(project, source)),
                );
                feed.tree("file-contents", source)?;
            }
            Action::Ansible {
                playbook,
                extra_vars,
                tags,
                skip_tags,
                limit,
                groups,
            } => {
                feed.text(
                    "ansible",
                    &format!(
                        "{} {extra_vars:?} {tags:?} {skip_tags:?} {limit:?} {groups:?}",
                        keyed_path(project, playbook)
                    ),
                );
                // Roles, group_vars and templates sit beside the playbook.
                let folder = playbook.parent().unwrap_or(project);
                feed.tree("ansible-folder", folder)?;
            }
        }
    }
    Ok(())
}

/// A digest of the machine's provisioners and everything they read: what
/// `env status` compares to say provisioning is out of date.
pub fn provisioners_digest(machine: &Machine, project_dir: &Path) -> Result<String> {
    let mut feed = Feed(Sha256::new());
    feed_provisioners(&mut feed, machine, project_dir)?;
    Ok(hex(feed))
}

fn hex(feed: Feed) -> String {
    feed.0
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
