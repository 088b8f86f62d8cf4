//! Shared folders in the Envfile: project folders seen in the guest, through
//! 9p (live, both ways) or rsync (one-way copies at each `up` and `env rsync`).

use super::error::{EnvfileError, Step, entry_field_error};
use crate::util::paths::STATE_DIR;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// How a folder reaches the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum FolderKind {
    /// The default: 9p where the guest has it, virtiofs where it has only
    /// that, rsync otherwise (see [`choose`]).
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// QEMU's virtfs (9p over virtio): live, both ways.
    #[serde(rename = "9p")]
    NineP,
    /// rsync over SSH: host to guest copies, for guests without 9p.
    #[serde(rename = "rsync")]
    Rsync,
    /// virtio-fs (vhost-user-fs with the Rust `virtiofsd`): live, both
    /// ways, for guests whose kernel has virtiofs but no 9p (cloud kernels).
    #[serde(rename = "virtiofs")]
    Virtiofs,
}

impl FolderKind {
    /// Shares the host folder live (9p or virtiofs): the guest mounts it,
    /// writes reach the host, and QEMU cannot save a VM state meanwhile.
    /// (`auto` counts as live until it is chosen.)
    pub fn is_live(self) -> bool {
        matches!(
            self,
            FolderKind::NineP | FolderKind::Virtiofs | FolderKind::Auto
        )
    }

    /// The Envfile's word for it.
    pub fn name(self) -> &'static str {
        match self {
            FolderKind::Auto => "auto",
            FolderKind::NineP => "9p",
            FolderKind::Rsync => "rsync",
            FolderKind::Virtiofs => "virtiofs",
        }
    }
}

/// What `type = "auto"` becomes, and why, from what the box says its
/// kernel shares (`folders` in its metadata; the image index records it)
/// and whether env boots the box's kernel itself (env's own boxes, which
/// carry 9p).
pub fn choose(known: Option<&[String]>, env_kernel: bool) -> (FolderKind, String) {
    let has = |k: &str| known.is_some_and(|list| list.iter().any(|x| x == k));
    match known {
        Some(_) if has("9p") => (FolderKind::NineP, "the box's kernel has 9p".into()),
        Some(_) if has("virtiofs") => (
            FolderKind::Virtiofs,
            "the box's kernel has virtiofs but no 9p".into(),
        ),
        Some(_) => (
            FolderKind::Rsync,
            "the box's kernel has neither 9p nor virtiofs".into(),
        ),
        None if env_kernel => (
            FolderKind::NineP,
            "env boots the box's own kernel, which has 9p".into(),
        ),
        None => (
            FolderKind::Rsync,
            "the box does not say what its kernel shares; rsync works on any guest with rsync (type = \"9p\" or \"virtiofs\" shares live)".into(),
        ),
    }
}

/// The folders with every `auto` one chosen, and one line for each saying
/// which and why.
pub fn resolve_auto(
    folders: &[Folder],
    known: Option<&[String]>,
    env_kernel: bool,
) -> (Vec<Folder>, Vec<String>) {
    let mut notes = Vec::new();
    let chosen = folders
        .iter()
        .map(|f| {
            let mut f = f.clone();
            if f.kind == FolderKind::Auto {
                let (kind, why) = choose(known, env_kernel);
                notes.push(format!("folder {}: {} ({why})", f.guest, kind.name()));
                f.kind = kind;
            }
            f
        })
        .collect();
    (chosen, notes)
}

/// A folder as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFolder {
    /// Project folder (relative to the Envfile).
    pub host: PathBuf,
    /// Guest path (absolute).
    pub guest: String,
    /// `auto` (default), `9p`, `virtiofs` or `rsync`.
    #[serde(rename = "type")]
    pub kind: Option<FolderKind>,
    /// 9p: mount read-only.
    pub readonly: Option<bool>,
    /// rsync: patterns left out of the copy.
    pub exclude: Option<Vec<String>>,
}

/// A validated folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// Absolute host path.
    pub host: PathBuf,
    /// Absolute guest path.
    pub guest: String,
    /// 9p or rsync.
    pub kind: FolderKind,
    /// Read-only (9p).
    pub readonly: bool,
    /// Excluded patterns (rsync).
    pub exclude: Vec<String>,
}

impl Folder {
    /// Whether rsync leaves `path` (inside `host`) out, by the folder's
    /// excludes as rsync reads them: `/x` anchored at the folder, `x/` a
    /// folder anywhere, `a/b*` a path, `*.log` a name anywhere. env's
    /// state folder is always left out.
    pub fn excludes(&self, path: &Path) -> bool {
        let Ok(rel) = path.strip_prefix(&self.host) else {
            return true;
        };
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.first().is_some_and(|p| p == STATE_DIR) {
            return true;
        }
        let literal_slash = glob::MatchOptions {
            require_literal_separator: true,
            ..Default::default()
        };
        self.exclude.iter().any(|pattern| {
            let (pattern, dir_only) = match pattern.strip_suffix('/') {
                Some(p) => (p, true),
                None => (pattern.as_str(), false),
            };
            let Ok(glob) = glob::Pattern::new(pattern.trim_start_matches('/')) else {
                return false;
            };
            // A folder pattern matches the folders the path is in (whether
            // the path itself is one, an event does not say).
            let names = match dir_only {
                true => &parts[..parts.len().saturating_sub(1)],
                false => &parts[..],
            };
            if pattern.starts_with('/') || pattern.contains('/') {
                // Anchored: the path, or a folder it is in, from the top.
                (1..=names.len()).any(|n| glob.matches_with(&names[..n].join("/"), literal_slash))
            } else {
                names.iter().any(|name| glob.matches(name))
            }
        })
    }
}

/// Validates the folders written at `at`.
pub fn resolve(
    file: &Path,
    text: &str,
    dir: &Path,
    raw: &[RawFolder],
    at: &[Step],
) -> Result<Vec<Folder>, EnvfileError> {
    let mut out: Vec<Folder> = Vec::new();
    for (i, f) in raw.iter().enumerate() {
        let fail =
            |field: &str, message: String| entry_field_error(file, text, at, i, field, message);
        let host = dir.join(&f.host);
        if !host.is_dir() {
            return Err(fail("host", format!("{} is not a folder", host.display())));
        }
        if !f.guest.starts_with('/') || f.guest.split('/').any(|part| part == "..") {
            return Err(fail(
                "guest",
                format!("`{}` must be an absolute guest path without `..`", f.guest),
            ));
        }
        let kind = f.kind.unwrap_or_default();
        if kind.is_live() && kind != FolderKind::Auto && f.exclude.is_some() {
            return Err(fail(
                "exclude",
                "`exclude` is for rsync folders (9p and virtiofs share the whole folder)".into(),
            ));
        }
        if kind == FolderKind::Rsync && f.readonly.is_some() {
            return Err(fail(
                "readonly",
                "`readonly` is for 9p and virtiofs folders (rsync copies one way anyway)".into(),
            ));
        }
        let host = std::fs::canonicalize(&host).unwrap_or(host);
        let state = std::fs::canonicalize(dir)
            .unwrap_or_else(|_| dir.to_path_buf())
            .join(STATE_DIR);
        if kind.is_live() && !f.readonly.unwrap_or(false) && state.starts_with(&host) {
            // The guest would write env's own state: the ssh_config and keys
            // that host programs run with (a ProxyCommand is host code).
            return Err(fail(
                "host",
                format!(
                    "{} holds env's state folder ({STATE_DIR}/), which a guest must not write: share it with `readonly = true`, as `type = \"rsync\"` (which leaves {STATE_DIR}/ out), or share a subfolder",
                    host.display()
                ),
            ));
        }
        let guest = f.guest.trim_end_matches('/').to_string();
        if out.iter().any(|o| o.guest == guest) {
            return Err(fail(
                "guest",
                format!("two folders are mounted at `{guest}`"),
            ));
        }
        out.push(Folder {
            host,
            guest: if guest.is_empty() { "/".into() } else { guest },
            kind,
            readonly: f.readonly.unwrap_or(false),
            exclude: f.exclude.clone().unwrap_or_default(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod exclude_tests {
    use super::*;

    #[test]
    fn excludes_read_as_rsync_reads_them() {
        let folder = Folder {
            host: "/p/app".into(),
            guest: "/opt/app".into(),
            kind: FolderKind::Rsync,
            readonly: false,
            exclude: ["*.log", "tmp/", "/build", "docs/*.md"]
                .map(String::from)
                .to_vec(),
        };
        let out = |p: &str| folder.excludes(Path::new(p));
        for left_out in [
            "/p/app/debug.log",
            "/p/app/lib/deep/x.log",
            "/p/app/tmp/scratch",
            "/p/app/lib/tmp/x",
            "/p/app/build",
            "/p/app/build/out.o",
            "/p/app/docs/a.md",
            "/p/app/.envstate/machines/web/console.log",
            "/elsewhere/x",
        ] {
            assert!(out(left_out), "{left_out} should be left out");
        }
        for copied in [
            "/p/app/main.py",
            "/p/app/tmp",
            "/p/app/lib/build",
            "/p/app/docs/sub/a.md",
            "/p/app/logs.txt",
        ] {
            assert!(!out(copied), "{copied} should be copied");
        }
    }
}
