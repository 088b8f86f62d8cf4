//! Logs that outlive their machine: each machine's console and provisioning
//! logs move to `.envstate/logs/NAME/TIME/` when it is destroyed, pruned to
//! the newest runs; `env logs` shows the live ones or the newest archive.

use crate::machine::MachineDir;
use crate::machine::project::Project;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The files of a machine that are worth keeping after it is gone.
pub fn log_files(dir: &MachineDir) -> Vec<PathBuf> {
    [
        dir.console_log(),
        dir.provision_log(),
        dir.journal_log(),
        dir.verify_log(),
        dir.root.join("verify.json"),
        dir.state_file(),
    ]
    .into_iter()
    .filter(|p| p.exists())
    .collect()
}

/// The archive folder of machine `name`.
pub fn archive_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("logs").join(name)
}

/// A folder name for a run archived at `time`: sortable, e.g. `20261126T203512Z`.
pub fn run_name(time: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(time).to_string();
    stamp.replace(['-', ':'], "")
}

/// Copies the machine's logs into a new run folder of its archive, then
/// prunes the archive to the newest `keep` runs. Returns the run folder.
pub fn archive(state_dir: &Path, dir: &MachineDir, keep: usize) -> Result<Option<PathBuf>> {
    let files = log_files(dir);
    if files.is_empty() {
        return Ok(None);
    }
    let base = archive_dir(state_dir, &dir.name);
    let mut run = base.join(run_name(SystemTime::now()));
    // Two destroys within a second: the second run gets a suffix.
    let mut n = 1;
    while run.exists() {
        n += 1;
        run = base.join(format!("{}-{n}", run_name(SystemTime::now())));
    }
    std::fs::create_dir_all(&run).with_context(|| format!("cannot create {}", run.display()))?;
    for file in files {
        let name = file.file_name().context("log without name")?;
        std::fs::copy(&file, run.join(name))
            .with_context(|| format!("cannot archive {}", file.display()))?;
    }
    prune(&base, keep)?;
    Ok(Some(run))
}

/// Removes all but the newest `keep` runs.
pub fn prune(base: &Path, keep: usize) -> Result<()> {
    let mut runs = runs(base);
    while runs.len() > keep.max(1) {
        let oldest = runs.remove(0);
        std::fs::remove_dir_all(&oldest)
            .with_context(|| format!("cannot prune {}", oldest.display()))?;
    }
    Ok(())
}

/// Archived runs, oldest first.
pub fn runs(base: &Path) -> Vec<PathBuf> {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(base)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    runs.sort();
    runs
}

/// Which logs `env logs` shows (none chosen: all).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogChoice {
    /// The serial console.
    pub console: bool,
    /// The provisioning log.
    pub provision: bool,
    /// The guest's journal.
    pub journal: bool,
}

/// The logs to show of machine `name`: its live ones, or those of its
/// newest archived run when it is destroyed (returned second, to say so).
pub fn chosen(
    project: &Project,
    name: &str,
    choice: LogChoice,
) -> Result<(Vec<PathBuf>, Option<PathBuf>)> {
    let dir = project.machine_dir(name);
    let (folder, archived) = if dir.root.exists() {
        (dir.root.clone(), None)
    } else {
        let runs = runs(&archive_dir(&project.state_dir, name));
        let newest = runs
            .last()
            .with_context(|| format!("machine `{name}` has no logs yet"))?;
        (newest.clone(), Some(newest.clone()))
    };
    let all = !(choice.console || choice.provision || choice.journal);
    let paths: Vec<PathBuf> = [
        (choice.console, "console.log"),
        (choice.provision, "provision.log"),
        (choice.journal, "journal.log"),
    ]
    .into_iter()
    .filter(|(chosen, _)| all || *chosen)
    .map(|(_, file)| folder.join(file))
    .filter(|p| p.exists())
    .collect();
    if paths.is_empty() {
        bail!("machine `{name}` has no such log yet");
    }
    Ok((paths, archived))
}

/// Prints `path` from `offset`, returning the new offset.
fn print_from(path: &Path, offset: u64) -> Result<u64> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let Ok(mut file) = std::fs::File::open(path) else {
        return Ok(offset);
    };
    let len = file.metadata()?.len();
    // A log that shrank was replaced (a new machine): start again.
    let start = if len < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&buf)?;
    out.flush()?;
    Ok(start + buf.len() as u64)
}

/// Shows logs; with `follow`, keeps printing what is appended until
/// interrupted.
pub fn show(paths: &[PathBuf], follow: bool) -> Result<()> {
    let mut offsets: Vec<u64> = vec![0; paths.len()];
    for (path, offset) in paths.iter().zip(offsets.iter_mut()) {
        if paths.len() > 1 {
            println!("==> {} <==", path.display());
        }
        *offset = print_from(path, 0)?;
    }
    if !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(Duration::from_millis(250));
        for (path, offset) in paths.iter().zip(offsets.iter_mut()) {
            *offset = print_from(path, *offset)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_copies_logs_and_prunes_old_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path();
        let dir = MachineDir::new(state, "web");
        std::fs::create_dir_all(&dir.root).unwrap();
        assert_eq!(archive(state, &dir, 3).unwrap(), None, "nothing to keep");
        std::fs::write(dir.console_log(), "boot\n").unwrap();
        std::fs::write(dir.provision_log(), "step\n").unwrap();
        let base = archive_dir(state, "web");
        for i in 0..5 {
            // Distinct, ordered run names.
            std::fs::create_dir_all(base.join(format!("2020010{i}T000000Z"))).unwrap();
        }
        let run = archive(state, &dir, 3).unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(run.join("console.log")).unwrap(),
            "boot\n"
        );
        assert_eq!(
            std::fs::read_to_string(run.join("provision.log")).unwrap(),
            "step\n"
        );
        let kept = runs(&base);
        assert_eq!(kept.len(), 3);
        assert_eq!(kept.last().unwrap(), &run, "the newest run is kept");
        // The same second again gets its own folder.
        let again = archive(state, &dir, 10).unwrap().unwrap();
        assert_ne!(again, run);
    }

    #[test]
    fn run_names_sort_by_time() {
        let a = run_name(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000));
        let b = run_name(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_100));
        assert_eq!(a, "20010909T014640Z");
        assert!(a < b);
    }
}
