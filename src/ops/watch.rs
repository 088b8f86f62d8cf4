//! `env rsync --watch` (Vagrant's rsync-auto): the rsync folders of running
//! machines copied again whenever their host files change. inotify (through
//! the `notify` crate) reports changes; they are batched (a quiet moment of
//! [`QUIET`], at most [`BATCH_LIMIT`] after the first) and only the folders
//! they touch are copied, changes to excluded paths ignored. Each copy takes
//! the project lock for its duration only, so other env commands run
//! meanwhile; a machine that is not running is skipped until it is.

use crate::envfile::Machine;
use crate::envfile::folders::{Folder, FolderKind};
use crate::machine::project::Project;
use crate::ops::Ctx;
use crate::util::ui;
use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The quiet that ends a batch of changes.
const QUIET: Duration = Duration::from_millis(200);
/// The longest a change waits for the batch it is in.
const BATCH_LIMIT: Duration = Duration::from_millis(800);
/// How often a copy held back by another env command is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// One watched folder of one machine.
struct Watched {
    machine: Machine,
    folder: Folder,
}

/// The folders a batch of changed paths touches, as indexes into
/// `watched`: a path inside a folder's host path that its excludes do not
/// leave out.
fn touched(watched: &[(&str, &Folder)], changed: &BTreeSet<PathBuf>) -> Vec<usize> {
    (0..watched.len())
        .filter(|&i| {
            let folder = watched[i].1;
            changed
                .iter()
                .any(|p| p.starts_with(&folder.host) && !folder.excludes(p))
        })
        .collect()
}

/// Copies the rsync folders of `machines` once, then again at every change
/// until the process is stopped.
pub fn watch(ctx: &Ctx, project: &Project, machines: &[&Machine]) -> Result<()> {
    let mut watched = Vec::new();
    for machine in machines {
        let dir = project.machine_dir(&machine.name);
        let chosen = match dir.load_state()? {
            Some(state) => crate::ops::with_chosen_folders(machine, &state.box_dir).0,
            None => (*machine).clone(),
        };
        for folder in chosen
            .folders
            .iter()
            .filter(|f| f.kind == FolderKind::Rsync)
        {
            watched.push(Watched {
                machine: chosen.clone(),
                folder: folder.clone(),
            });
        }
    }
    anyhow::ensure!(
        !watched.is_empty(),
        "no rsync folders to watch: give a folder `type = \"rsync\"` (or one that `auto` makes rsync)"
    );
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let _ = tx.send(event.paths);
        }
    })
    .context("cannot watch files (inotify)")?;
    let hosts: BTreeSet<&PathBuf> = watched.iter().map(|w| &w.folder.host).collect();
    for host in &hosts {
        watcher
            .watch(host, RecursiveMode::Recursive)
            .with_context(|| format!("cannot watch {}", host.display()))?;
    }
    let all: BTreeSet<usize> = (0..watched.len()).collect();
    let mut pending = sync(ctx, project, &watched, &all);
    ui::line(&format!(
        "==> watching {} folder(s) for changes (Ctrl-C stops)",
        hosts.len()
    ));
    let index: Vec<(&str, &Folder)> = watched
        .iter()
        .map(|w| (w.machine.name.as_str(), &w.folder))
        .collect();
    loop {
        let wait = if pending.is_empty() {
            Duration::from_secs(3600)
        } else {
            RETRY
        };
        let mut changed = BTreeSet::new();
        match rx.recv_timeout(wait) {
            Ok(paths) => changed.extend(paths),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => anyhow::bail!("the file watcher stopped"),
        }
        let first = Instant::now();
        while !changed.is_empty() && first.elapsed() < BATCH_LIMIT {
            match rx.recv_timeout(QUIET) {
                Ok(paths) => changed.extend(paths),
                Err(_) => break,
            }
        }
        pending.extend(touched(&index, &changed));
        if !pending.is_empty() {
            pending = sync(ctx, project, &watched, &pending);
        }
    }
}

/// Copies the folders `which` of running machines; returns those held
/// back because another env command holds the project.
fn sync(
    ctx: &Ctx,
    project: &Project,
    watched: &[Watched],
    which: &BTreeSet<usize>,
) -> BTreeSet<usize> {
    let Some(_lock) = crate::util::lock::try_exclusive(&project.state_dir.join("lock")) else {
        return which.clone();
    };
    let names: BTreeSet<&str> = which
        .iter()
        .map(|&i| watched[i].machine.name.as_str())
        .collect();
    for name in names {
        let dir = project.machine_dir(name);
        let Ok(state) = ctx.running_state(&dir) else {
            ui::step(name, "not running: its folders are copied once it is");
            continue;
        };
        let folders: Vec<Folder> = which
            .iter()
            .filter(|&&i| watched[i].machine.name == name)
            .map(|&i| watched[i].folder.clone())
            .collect();
        let machine = Machine {
            folders,
            ..watched
                .iter()
                .find(|w| w.machine.name == name)
                .map(|w| w.machine.clone())
                .expect("a watched machine")
        };
        if let Err(e) = ctx.guest.sync_folders(&dir, &machine, &state.ssh_user) {
            ui::step(name, &format!("{e:#}"));
        }
    }
    BTreeSet::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(host: &str, exclude: &[&str]) -> Folder {
        Folder {
            host: host.into(),
            guest: "/g".into(),
            kind: FolderKind::Rsync,
            readonly: false,
            exclude: exclude.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_batch_touches_the_folders_holding_copied_paths() {
        let app = folder("/p/app", &["*.log"]);
        let site = folder("/p/site", &[]);
        let index = [("web", &app), ("web", &site), ("db", &app)];
        let batch =
            |paths: &[&str]| -> BTreeSet<PathBuf> { paths.iter().map(PathBuf::from).collect() };
        assert_eq!(touched(&index, &batch(&["/p/app/main.py"])), [0, 2]);
        assert_eq!(
            touched(&index, &batch(&["/p/app/x.log"])),
            Vec::<usize>::new()
        );
        assert_eq!(
            touched(&index, &batch(&["/p/app/x.log", "/p/site/index.html"])),
            [1]
        );
        assert!(touched(&index, &batch(&["/p/other/file"])).is_empty());
    }
}
