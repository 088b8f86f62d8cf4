//! The provisioning cache's storage: one folder per key under
//! `ENV_HOME/cache/`, holding a provisioned machine as a snapshot (its box
//! disks' overlays with the VM state in them, its keys and pinned host
//! key) and `entry.json` describing it. Entries are made in a staging
//! folder and renamed into place whole, never changed after, and checked
//! (every file there, at its recorded size) before use: a damaged entry is
//! ignored, never half-used. Machine snapshots die with `destroy`; these
//! outlive it.

pub mod key;

use crate::util::lock::{self, Lock};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The snapshot name a cached machine's VM state has in its root overlay.
pub const SNAPSHOT_TAG: &str = "env-cache";

/// Default size limit of the whole cache (`ENV_CACHE_MAX_SIZE` overrides).
pub const DEFAULT_MAX_BYTES: u64 = 20 << 30;

/// The environment variable that sets the size limit (`20G`, `500M`).
pub const MAX_SIZE_VAR: &str = "ENV_CACHE_MAX_SIZE";

/// One file of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryFile {
    /// Its name in the entry's folder.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What `entry.json` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The key (the folder's name).
    pub key: String,
    /// The machine it was made from.
    pub machine: String,
    /// Its project folder.
    pub project: PathBuf,
    /// Box name.
    pub box_name: String,
    /// Box version.
    pub box_version: String,
    /// The box's folder in the store (the overlays' backing files).
    pub box_dir: PathBuf,
    /// `kvm` or `tcg`: what the VM state was saved under.
    pub accel: String,
    /// Provisioning ran twice without changing anything before it was kept.
    pub idempotent: bool,
    /// When it was made (seconds since the epoch).
    pub created: u64,
    /// When it was last restored (or made).
    pub last_used: u64,
    /// Its files.
    pub files: Vec<EntryFile>,
}

impl Entry {
    /// Bytes on disk.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// An entry that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged {
    /// Its key.
    pub key: String,
    /// What is wrong.
    pub why: String,
}

/// The cache folder.
#[derive(Debug, Clone)]
pub struct Cache {
    /// `ENV_HOME/cache`.
    pub root: PathBuf,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A key is 64 hex digits: nothing else names a folder here.
fn check_key(key: &str) -> Result<()> {
    if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("`{key}` is not a cache key");
    }
    Ok(())
}

impl Cache {
    /// The cache of this user (`ENV_HOME/cache`), created private.
    pub fn open() -> Result<Cache> {
        let root = crate::util::paths::data_home()?.join("cache");
        Cache::at(root)
    }

    /// A cache in `root` (tests).
    pub fn at(root: PathBuf) -> Result<Cache> {
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        crate::util::fs::make_private(&root)?;
        Ok(Cache { root })
    }

    /// Held while restoring from an entry (shared) or removing entries
    /// (exclusive), so no entry goes away while it is copied.
    pub fn lock(&self, exclusive: bool) -> Result<Lock> {
        let path = self.root.join("lock");
        match exclusive {
            true => lock::exclusive(&path, "the provisioning cache"),
            false => lock::shared(&path, "the provisioning cache"),
        }
    }

    /// The folder of entry `key`.
    pub fn dir(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// The entry of `key`: `Ok(None)` when there is none, `Err` when there
    /// is one that cannot be used (said why).
    pub fn get(&self, key: &str) -> Result<Option<Entry>, Damaged> {
        let dir = self.dir(key);
        if !dir.exists() {
            return Ok(None);
        }
        let damaged = |why: String| Damaged {
            key: key.to_string(),
            why,
        };
        let text = std::fs::read_to_string(dir.join("entry.json"))
            .map_err(|e| damaged(format!("entry.json unreadable: {e}")))?;
        let entry: Entry = serde_json::from_str(&text)
            .map_err(|e| damaged(format!("entry.json is damaged: {e}")))?;
        if entry.key != key {
            return Err(damaged(format!("entry.json names key {}", entry.key)));
        }
        for file in &entry.files {
            if file.name.contains('/') || file.name.starts_with('.') {
                return Err(damaged(format!("a file named `{}`", file.name)));
            }
            match std::fs::metadata(dir.join(&file.name)) {
                Ok(m) if m.len() == file.size => {}
                Ok(m) => {
                    return Err(damaged(format!(
                        "{} has {} bytes, not {}",
                        file.name,
                        m.len(),
                        file.size
                    )));
                }
                Err(e) => return Err(damaged(format!("{}: {e}", file.name))),
            }
        }
        Ok(Some(entry))
    }

    /// Every entry, and every folder that is not a usable one.
    pub fn list(&self) -> Result<(Vec<Entry>, Vec<Damaged>)> {
        let (mut entries, mut damaged) = (Vec::new(), Vec::new());
        let mut names: Vec<String> = std::fs::read_dir(&self.root)
            .with_context(|| format!("cannot read {}", self.root.display()))?
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            if name.starts_with('.') {
                // A staging folder: an entry being made (or a crashed one).
                continue;
            }
            match self.get(&name) {
                Ok(Some(entry)) => entries.push(entry),
                Ok(None) => {}
                Err(d) => damaged.push(d),
            }
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.last_used));
        Ok((entries, damaged))
    }

    /// A staging folder for a new entry (renamed into place by
    /// [`Cache::commit`], removed when dropped otherwise).
    pub fn stage(&self) -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(&self.root)
            .with_context(|| format!("cannot stage in {}", self.root.display()))
    }

    /// Writes `entry.json` (the files' sizes read from the staging folder)
    /// and moves the staged entry into place. An entry already there for
    /// the key (made meanwhile by another run) is kept.
    pub fn commit(&self, staging: tempfile::TempDir, mut entry: Entry) -> Result<Entry> {
        check_key(&entry.key)?;
        entry.files.clear();
        let mut names: Vec<String> = std::fs::read_dir(staging.path())?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let size = std::fs::metadata(staging.path().join(&name))?.len();
            entry.files.push(EntryFile { name, size });
        }
        entry.created = now();
        entry.last_used = entry.created;
        crate::util::fs::write_atomic(
            &staging.path().join("entry.json"),
            serde_json::to_string_pretty(&entry)?.as_bytes(),
        )?;
        let target = self.dir(&entry.key);
        if target.exists() {
            return Ok(entry);
        }
        std::fs::rename(staging.keep(), &target)
            .with_context(|| format!("cannot move the entry into {}", target.display()))?;
        Ok(entry)
    }

    /// Marks an entry used now (pruning removes the least recently used).
    pub fn touch(&self, entry: &Entry) -> Result<()> {
        let mut entry = entry.clone();
        entry.last_used = now();
        crate::util::fs::write_atomic(
            &self.dir(&entry.key).join("entry.json"),
            serde_json::to_string_pretty(&entry)?.as_bytes(),
        )
    }

    /// Removes entry `key` (or a damaged folder of that name).
    pub fn remove(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let dir = self.dir(key);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        Ok(())
    }
}

/// What pruning removes: damaged entries, entries whose box is gone
/// (`box_gone`), and then the least recently used until the rest fit in
/// `max_bytes`. Pure: the caller removes them.
pub fn prune_plan(
    entries: &[Entry],
    damaged: &[Damaged],
    max_bytes: u64,
    box_gone: &dyn Fn(&Entry) -> bool,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = damaged
        .iter()
        .map(|d| (d.key.clone(), format!("damaged: {}", d.why)))
        .collect();
    let mut kept: Vec<&Entry> = Vec::new();
    for e in entries {
        if box_gone(e) {
            out.push((
                e.key.clone(),
                format!("its box {} {} is gone", e.box_name, e.box_version),
            ));
        } else {
            kept.push(e);
        }
    }
    // Newest use first: the oldest go while the total is over the limit.
    kept.sort_by_key(|e| std::cmp::Reverse(e.last_used));
    let mut total: u64 = kept.iter().map(|e| e.size()).sum();
    while total > max_bytes {
        let Some(oldest) = kept.pop() else { break };
        total -= oldest.size();
        out.push((
            oldest.key.clone(),
            format!(
                "over the size limit ({} used)",
                crate::util::ui::human_bytes(total + oldest.size())
            ),
        ));
    }
    out
}

/// The size limit: `ENV_CACHE_MAX_SIZE` when set, else the Envfile's
/// `max_size`, else [`DEFAULT_MAX_BYTES`].
pub fn max_bytes(envfile: Option<u64>) -> Result<u64> {
    match std::env::var(MAX_SIZE_VAR) {
        Ok(text) if !text.trim().is_empty() => crate::util::size::parse_size(&text)
            .map(|s| s.bytes())
            .map_err(|e| anyhow::anyhow!("{MAX_SIZE_VAR}: {e}")),
        _ => Ok(envfile.unwrap_or(DEFAULT_MAX_BYTES)),
    }
}

/// Whether `path` is a box folder still in the store.
pub fn box_present(path: &Path) -> bool {
    path.join("metadata.json").is_file()
}

#[cfg(test)]
mod tests;
