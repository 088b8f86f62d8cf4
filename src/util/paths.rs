//! Where `env` keeps things: per-user data (box store, caches) and the
//! per-user runtime folder for sockets.

use anyhow::{Context, Result, bail};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Name of the per-project state folder beside the Envfile (not `.env`:
/// that is dotenv's).
pub const STATE_DIR: &str = ".envstate";

/// The per-user data folder: `$ENV_HOME`, else the platform's data folder
/// (`~/.local/share/env` on Linux).
pub fn data_home() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("ENV_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    directories::ProjectDirs::from("", "", "env")
        .map(|d| d.data_dir().to_path_buf())
        .context("cannot find a home folder for env's data: set ENV_HOME")
}

/// The box store folder.
pub fn boxes_dir() -> Result<PathBuf> {
    Ok(data_home()?.join("boxes"))
}

/// A folder for QMP and SSH control sockets. Unix socket paths are limited to
/// 108 bytes, so sockets cannot live beside a deep project: they live here,
/// named by a hash of their machine's state folder.
pub fn runtime_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("env"),
        // SAFETY: getuid has no preconditions and cannot fail.
        None => PathBuf::from(format!("/tmp/env-{}", unsafe { libc::getuid() })),
    };
    private_dir(&base)?;
    Ok(base)
}

/// Creates `dir` (mode 0700) if needed and checks that it is ours and private,
/// so no other user can reach the sockets inside.
pub fn private_dir(dir: &Path) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
    let meta =
        fs::symlink_metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    if !meta.is_dir() || meta.uid() != uid {
        bail!(
            "{} is not a folder owned by you: remove it or set XDG_RUNTIME_DIR",
            dir.display()
        );
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
    }
    Ok(())
}

/// A short, stable name for a path (16 hex digits of its SHA-256).
pub fn short_hash(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_hash_is_stable_and_short() {
        let a = short_hash(Path::new("/a/b"));
        assert_eq!(a.len(), 16);
        assert_eq!(a, short_hash(Path::new("/a/b")));
        assert_ne!(a, short_hash(Path::new("/a/c")));
    }

    #[test]
    fn private_dir_is_created_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        private_dir(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    }
}
