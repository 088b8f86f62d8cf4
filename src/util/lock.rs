//! Advisory file locks that keep two `env` processes from changing the same
//! state at once. The OS drops a lock when its process dies, so a crashed
//! `env` never leaves a stale lock behind.

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::path::Path;

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Keeps the lock held by the program this process `exec`s into (the
    /// descriptor is inherited): `env ssh` holds its session slot for the
    /// life of the ssh that replaces it.
    pub fn keep_across_exec(&self) -> Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: F_SETFD on a descriptor this Lock owns; clearing
        // FD_CLOEXEC changes no memory.
        let rc = unsafe { libc::fcntl(self._file.as_raw_fd(), libc::F_SETFD, 0) };
        anyhow::ensure!(rc == 0, "cannot keep the lock across exec");
        Ok(())
    }
}

/// Takes the exclusive lock at `path` (created if needed), telling the user
/// when it has to wait for another `env` process.
pub fn exclusive(path: &Path, what: &str) -> Result<Lock> {
    take(path, what, File::try_lock, File::lock)
}

/// Takes the lock at `path` shared: many holders at once, but none while
/// someone holds it exclusively (a machine being created on a box keeps
/// `box remove` from deleting it under it).
pub fn shared(path: &Path, what: &str) -> Result<Lock> {
    take(path, what, File::try_lock_shared, File::lock_shared)
}

/// Takes the exclusive lock at `path` if no one holds it; None otherwise.
pub fn try_exclusive(path: &Path) -> Option<Lock> {
    let file = open(path).ok()?;
    file.try_lock().ok()?;
    Some(Lock { _file: file })
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))
}

/// Tries `try_take`; when another process holds the lock, says so and
/// waits with `wait`.
fn take(
    path: &Path,
    what: &str,
    try_take: fn(&File) -> Result<(), std::fs::TryLockError>,
    wait: fn(&File) -> std::io::Result<()>,
) -> Result<Lock> {
    let file = open(path)?;
    match try_take(&file) {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!(
                "waiting for another env process using {what} ({})...",
                path.display()
            );
            wait(&file).with_context(|| format!("cannot lock {}", path.display()))?;
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    Ok(Lock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_waits_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = exclusive(&path, "test").unwrap();
        let other = File::open(&path).unwrap();
        assert!(matches!(
            other.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop(first);
        other.try_lock().unwrap();
    }

    #[test]
    fn shared_holders_keep_an_exclusive_one_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let a = shared(&path, "t").unwrap();
        let b = shared(&path, "t").unwrap();
        assert!(try_exclusive(&path).is_none());
        drop((a, b));
        let held = try_exclusive(&path).unwrap();
        assert!(try_exclusive(&path).is_none());
        drop(held);
    }
}
