//! The box store: base images unpacked under `<data home>/boxes/`, one folder
//! per name and version, shared by every project of the user.

pub mod archive;
pub mod bare;
pub mod build;
pub mod catalog;
pub mod compress;
pub mod digest;
pub mod fetch;
pub mod from_index;
pub mod image;
pub mod import;
pub mod index;
pub mod maintain;
pub mod metadata;
pub mod registry;
pub mod source;

use crate::util::lock;
use anyhow::{Context, Result, bail};
use metadata::Metadata;
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};

/// Version given to boxes that carry none (Vagrant's convention).
pub const UNVERSIONED: &str = "0";

/// A box in the store.
#[derive(Debug, Clone, Serialize)]
pub struct StoredBox {
    /// Name (`debian-12`, `org/name`).
    pub name: String,
    /// Version.
    pub version: String,
    /// Its folder.
    pub dir: PathBuf,
    /// Its metadata.
    pub metadata: Metadata,
    /// Free key/values from `info.json`.
    pub info: Option<serde_json::Value>,
    /// Bytes on disk.
    pub size: u64,
}

impl StoredBox {
    /// The package manifest (`packages.txt`), when the box has one.
    pub fn packages(&self) -> Option<String> {
        fs::read_to_string(self.dir.join("packages.txt")).ok()
    }
}

/// One machine's use of a box, as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The box.
    pub box_name: String,
    /// Its version.
    pub box_version: String,
    /// The machine's state folder (`PROJECT/.envstate/machines/NAME`).
    pub state_dir: PathBuf,
    /// The record file.
    pub record: PathBuf,
}

impl UserRecord {
    /// Whether the machine is still there.
    pub fn present(&self) -> bool {
        machine_present(&self.state_dir)
    }

    /// The project folder the machine belongs to.
    pub fn project(&self) -> Option<&Path> {
        self.state_dir.parent()?.parent()?.parent()
    }
}

/// Whether a machine's state folder still holds a machine (its root disk).
fn machine_present(state_dir: &Path) -> bool {
    state_dir.join("disk.qcow2").exists()
}

/// Checks a box name: letters, digits, `.`, `_`, `-`, and one `/` between an
/// organisation and a name, as on Vagrant's catalogs.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.split('/').count() <= 2
        && !name.contains("VAGRANTSLASH")
        && name.split('/').all(|part| {
            // A leading `.` or `-` would hide the box or read as an option.
            !part.is_empty()
                && !part.starts_with(['.', '-'])
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        });
    if !ok {
        bail!(
            "`{}` is not a box name: use letters, digits, `.`, `_`, `-` (not first), and at most one `/`",
            name.escape_debug()
        );
    }
    Ok(())
}

/// Checks a box version: 1 to 64 letters, digits, `.`, `_`, `-`, `+`,
/// starting with a letter or digit (it becomes a folder name).
pub fn check_version(version: &str) -> Result<()> {
    let ok = !version.is_empty()
        && version.len() <= 64
        && version.starts_with(|c: char| c.is_ascii_alphanumeric())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c));
    if !ok {
        bail!(
            "`{}` is not a box version: use letters, digits, `.`, `_`, `-` and `+`, starting with a letter or digit",
            version.escape_debug()
        );
    }
    Ok(())
}

/// Names of staging folders: `.incoming-PID-...`.
const STAGING_PREFIX: &str = ".incoming-";

/// Folder name of a box name (Vagrant's escaping of `/`).
fn dir_name(name: &str) -> String {
    name.replace('/', "-VAGRANTSLASH-")
}

/// The user's box store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store under the user's data home.
    pub fn open() -> Result<Store> {
        Ok(Store::at(crate::util::paths::boxes_dir()?))
    }

    /// A store at `root` (tests).
    pub fn at(root: PathBuf) -> Store {
        Store { root }
    }

    fn lock(&self) -> Result<lock::Lock> {
        fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        lock::exclusive(&self.root.join(".lock"), "the box store")
    }

    /// The store's lock, shared: held while a machine is created on a box,
    /// so no `box remove` or `prune` deletes it meanwhile.
    pub fn lock_shared(&self) -> Result<lock::Lock> {
        fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        lock::shared(&self.root.join(".lock"), "the box store")
    }

    /// Every box, sorted by name then version.
    pub fn list(&self) -> Result<Vec<StoredBox>> {
        let mut boxes = Vec::new();
        let Ok(names) = fs::read_dir(&self.root) else {
            return Ok(boxes);
        };
        for name_entry in names.flatten() {
            let file_name = name_entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with('.') || !name_entry.path().is_dir() {
                continue;
            }
            let name = file_name.replace("-VAGRANTSLASH-", "/");
            for version_entry in fs::read_dir(name_entry.path())?.flatten() {
                let version = version_entry.file_name().to_string_lossy().into_owned();
                if version.starts_with('.') {
                    continue;
                }
                if let Ok(b) = self.load(&name, &version) {
                    boxes.push(b);
                }
            }
        }
        boxes.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then_with(|| crate::util::version::compare_dotted(&a.version, &b.version))
        });
        Ok(boxes)
    }

    fn load(&self, name: &str, version: &str) -> Result<StoredBox> {
        let dir = self.root.join(dir_name(name)).join(version);
        let metadata = Metadata::load(&dir)?;
        let info = fs::read_to_string(dir.join("info.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        Ok(StoredBox {
            name: name.into(),
            version: version.into(),
            size: dir_size(&dir),
            dir,
            metadata,
            info,
        })
    }

    /// The newest version of `name`, or the newest satisfying `version` (a
    /// version or a constraint) when given.
    pub fn find(&self, name: &str, version: Option<&str>) -> Result<StoredBox> {
        let candidates: Vec<StoredBox> = self
            .list()?
            .into_iter()
            .filter(|b| b.name == name)
            .collect();
        // A version is a constraint (`12.0.0`, `>= 12, < 13`, `~> 12.0`).
        let constraint = version
            .map(|c| crate::util::version::Constraint::parse_box(c).map_err(anyhow::Error::msg))
            .transpose()?;
        let candidates: Vec<StoredBox> = candidates
            .into_iter()
            .filter(|b| constraint.as_ref().is_none_or(|c| c.holds(&b.version)))
            .collect();
        match candidates.into_iter().next_back() {
            Some(b) => Ok(b),
            None => bail!(
                "box `{name}`{} is not in the store ({}): add it with `env box add FILE|URL --name {name}`{}",
                version.map(|v| format!(" version {v}")).unwrap_or_default(),
                self.root.display(),
                if name.starts_with("debian-") {
                    " or build it with `env box build debian-12`"
                } else {
                    ""
                }
            ),
        }
    }

    /// Unpacks a `.box` archive into the store as `name` (version from the
    /// box's info.json, else `version`, else "0"). Nothing is left behind on
    /// failure; the box appears atomically.
    pub fn add_archive(
        &self,
        archive: &Path,
        name: &str,
        version: Option<&str>,
        force: bool,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<StoredBox> {
        check_name(name)?;
        let staging = self.staging()?;
        archive::unpack(archive, staging.path(), progress)?;
        self.add_staged(
            staging,
            &archive.display().to_string(),
            name,
            version,
            force,
            &bare::ImageHints::default(),
        )
    }

    /// A private folder of the store to unpack a box into before it is
    /// added (same filesystem: the final rename is atomic).
    pub fn staging(&self) -> Result<tempfile::TempDir> {
        fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        self.remove_stale_staging();
        tempfile::Builder::new()
            .prefix(&format!("{STAGING_PREFIX}{}-", std::process::id()))
            .tempdir_in(&self.root)
            .with_context(|| format!("cannot create a folder in {}", self.root.display()))
    }

    /// Removes staging folders whose env process is gone (killed while it
    /// added a box): they would otherwise stay forever, unseen by `box list`.
    pub fn remove_stale_staging(&self) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        let Ok(entries) = fs::read_dir(&self.root) else {
            return removed;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name
                .strip_prefix(STAGING_PREFIX)
                .or_else(|| name.strip_prefix(".removing-"))
            else {
                continue;
            };
            // `.incoming-PID-XXXX`: the pid of the env that made it; older
            // releases wrote no pid, and `.removing-` folders are always
            // leftovers once no env holds the store lock.
            let owner: Option<i32> = rest.split('-').next().and_then(|p| p.parse().ok());
            let alive = match owner {
                Some(pid) => std::path::Path::new(&format!("/proc/{pid}")).exists(),
                // No pid (an older release's, or `.removing-`): a day old
                // is surely abandoned.
                None => entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_none_or(|age| age < std::time::Duration::from_secs(24 * 3600)),
            };
            if !alive && self.lock_is_free() && fs::remove_dir_all(entry.path()).is_ok() {
                removed.push(entry.path());
            }
        }
        removed
    }

    /// Whether no env holds the store lock right now.
    fn lock_is_free(&self) -> bool {
        crate::util::lock::try_exclusive(&self.root.join(".lock")).is_some()
    }

    /// Moves an unpacked box (from [`Store::staging`]; `origin` names it in
    /// errors) into the store as `name` (version from its info.json, else
    /// `version`, else "0"). A bare disk image gets its metadata from its
    /// bytes and `image`. Nothing is left behind on failure.
    pub fn add_staged(
        &self,
        staging: tempfile::TempDir,
        origin: &str,
        name: &str,
        version: Option<&str>,
        force: bool,
        image: &bare::ImageHints,
    ) -> Result<StoredBox> {
        check_name(name)?;
        if bare::is_bare(staging.path()) {
            bare::complete(staging.path(), image)
                .with_context(|| format!("{origin} is not a usable disk image"))?;
        }
        let _lock = self.lock()?;
        Metadata::load(staging.path()).with_context(|| format!("{origin} is not a usable box"))?;
        let info_version = fs::read_to_string(staging.path().join("info.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("version").and_then(|v| v.as_str()).map(String::from));
        let version = version
            .map(String::from)
            .or(info_version)
            .unwrap_or_else(|| UNVERSIONED.into());
        check_version(&version)?;
        let parent = self.root.join(dir_name(name));
        let target = parent.join(&version);
        if target.exists() {
            if !force {
                bail!(
                    "box `{name}` version {version} is already in the store: pass --force to replace it"
                );
            }
            self.ensure_unused(name, &version)?;
            let old = tempfile::Builder::new()
                .prefix(".removing-")
                .tempdir_in(&self.root)?;
            fs::rename(&target, old.path().join("box"))?;
        }
        fs::create_dir_all(&parent)?;
        fs::rename(staging.keep(), &target)
            .with_context(|| format!("cannot move the box into {}", target.display()))?;
        self.load(name, &version)
    }

    /// Removes `name` (one version, or all); refuses while a machine uses it
    /// unless `force`.
    pub fn remove(&self, name: &str, version: Option<&str>, force: bool) -> Result<Vec<StoredBox>> {
        let _lock = self.lock()?;
        let doomed: Vec<StoredBox> = self
            .list()?
            .into_iter()
            .filter(|b| b.name == name && version.is_none_or(|v| v == b.version))
            .collect();
        if doomed.is_empty() {
            bail!(
                "box `{name}`{} is not in the store",
                version.map(|v| format!(" version {v}")).unwrap_or_default()
            );
        }
        if !force {
            for b in &doomed {
                self.ensure_unused(&b.name, &b.version)?;
            }
        }
        for b in &doomed {
            // Rename first so a half-deleted box is never seen as a box.
            let trash = tempfile::Builder::new()
                .prefix(".removing-")
                .tempdir_in(&self.root)?;
            fs::rename(&b.dir, trash.path().join("box"))?;
        }
        let _ = fs::remove_dir(self.root.join(dir_name(name)));
        Ok(doomed)
    }

    fn users_dir(&self, name: &str, version: &str) -> PathBuf {
        self.root.join(".users").join(dir_name(name)).join(version)
    }

    /// Records that the machine whose state lives in `state_dir` uses a box.
    pub fn add_user(&self, b: &StoredBox, state_dir: &Path) -> Result<()> {
        let dir = self.users_dir(&b.name, &b.version);
        fs::create_dir_all(&dir)?;
        fs::write(
            dir.join(crate::util::paths::short_hash(state_dir)),
            state_dir.as_os_str().as_encoded_bytes(),
        )?;
        Ok(())
    }

    /// Forgets a machine's use of a box.
    pub fn remove_user(&self, name: &str, version: &str, state_dir: &Path) {
        let _ = fs::remove_file(
            self.users_dir(name, version)
                .join(crate::util::paths::short_hash(state_dir)),
        );
    }

    /// Every machine's use of every box, as recorded: what `env
    /// global-status` lists, machines of any project (records whose state
    /// folder is gone included, for pruning).
    pub fn all_users(&self) -> Vec<UserRecord> {
        let mut out = Vec::new();
        let Ok(boxes) = fs::read_dir(self.root.join(".users")) else {
            return out;
        };
        for name_dir in boxes.flatten() {
            let name = name_dir
                .file_name()
                .to_string_lossy()
                .replace("-VAGRANTSLASH-", "/");
            for version_dir in fs::read_dir(name_dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let version = version_dir.file_name().to_string_lossy().into_owned();
                for record in fs::read_dir(version_dir.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    if let Ok(bytes) = fs::read(record.path()) {
                        out.push(UserRecord {
                            box_name: name.clone(),
                            box_version: version.clone(),
                            state_dir: PathBuf::from(String::from_utf8_lossy(&bytes).into_owned()),
                            record: record.path(),
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.state_dir.cmp(&b.state_dir));
        out
    }

    /// Forgets one record (its machine is gone).
    pub fn forget(&self, record: &UserRecord) -> Result<()> {
        fs::remove_file(&record.record)
            .with_context(|| format!("cannot remove {}", record.record.display()))
    }

    /// Machines (state folders) that still use a box.
    pub fn users(&self, name: &str, version: &str) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(self.users_dir(name, version)) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| fs::read(e.path()).ok())
            .map(|bytes| PathBuf::from(String::from_utf8_lossy(&bytes).into_owned()))
            .filter(|state_dir| machine_present(state_dir))
            .collect()
    }

    fn ensure_unused(&self, name: &str, version: &str) -> Result<()> {
        let users = self.users(name, version);
        if let Some(user) = users.first() {
            bail!(
                "box `{name}` version {version} is used by {} machine(s), e.g. {}: destroy them first or pass --force (their disks then break)",
                users.len(),
                user.display()
            );
        }
        Ok(())
    }
}

/// Bytes used by the files under `dir` (allocated blocks, not apparent size).
pub fn dir_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if let Ok(meta) = entry.metadata() {
                total += if meta.is_dir() {
                    dir_size(&entry.path())
                } else {
                    meta.blocks() * 512
                };
            }
        }
    }
    total
}

#[cfg(test)]
pub(crate) mod tests;
