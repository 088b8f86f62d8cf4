//! `env snapshot ...`: the command line of [`crate::ops::snapshot`].

use crate::envfile::Machine;
use crate::envfile::triggers::TriggerAction;
use crate::machine::Status;
use crate::machine::project::Project;
use crate::ops::{Ctx, snapshot};
use crate::util::ui;
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::Path;

/// `env snapshot ...`.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save a snapshot: `save [MACHINE] SNAPSHOT` (all machines when none is named).
    Save(Target),
    /// Return to a snapshot: a running machine resumes from it in seconds.
    Restore(Target),
    /// Delete a snapshot.
    Delete(Target),
    /// List snapshots.
    List {
        /// Machines (default: all created).
        names: Vec<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Save a snapshot with a generated name, to `pop` back to.
    Push {
        /// Machines (default: all).
        names: Vec<String>,
        #[command(flatten)]
        kept: KeptFlag,
    },
    /// Restore the newest pushed snapshot and delete it.
    Pop {
        /// Machines (default: all).
        names: Vec<String>,
        /// Keep the snapshot after restoring it.
        #[arg(long)]
        no_delete: bool,
        #[command(flatten)]
        kept: KeptFlag,
    },
}

/// `--include-kept`.
#[derive(Debug, Args)]
pub struct KeptFlag {
    /// Also snapshot/rewind kept data disks (left alone by default: they
    /// hold what must survive).
    #[arg(long)]
    include_kept: bool,
}

/// `[MACHINE] SNAPSHOT`.
#[derive(Debug, Args)]
pub struct Target {
    /// `SNAPSHOT`, or `MACHINE SNAPSHOT`.
    #[arg(num_args = 1..=2, required = true, value_names = ["MACHINE", "SNAPSHOT"])]
    words: Vec<String>,
    #[command(flatten)]
    kept: KeptFlag,
}

impl Target {
    /// The machines named (none: all) and the snapshot.
    fn split(&self) -> (Vec<String>, &str) {
        match self.words.as_slice() {
            [machine, tag] => (vec![machine.clone()], tag.as_str()),
            // clap enforces one or two words.
            _ => (Vec::new(), self.words.first().map_or("", String::as_str)),
        }
    }
}

/// Runs one `env snapshot` command.
pub fn run(envfile: Option<&Path>, command: SnapshotCommand) -> Result<i32> {
    let project = Project::load(envfile)?;
    let ctx = &Ctx::local();
    let (target, action): (&Target, Action) = match &command {
        SnapshotCommand::List { names, json } => return list(ctx, &project, names, *json),
        SnapshotCommand::Push { names, kept } => {
            let _lock = project.lock()?;
            return each(ctx, &project, names, |p, m| {
                snapshot::push(ctx, p, m, kept.include_kept).map(drop)
            });
        }
        SnapshotCommand::Pop {
            names,
            no_delete,
            kept,
        } => {
            let _lock = project.lock()?;
            return each(ctx, &project, names, |p, m| {
                snapshot::pop(ctx, p, m, kept.include_kept, *no_delete)
            });
        }
        SnapshotCommand::Save(t) => (t, snapshot::save),
        SnapshotCommand::Restore(t) => (t, snapshot::restore),
        SnapshotCommand::Delete(t) => (t, snapshot::delete),
    };
    let (names, tag) = target.split();
    let _lock = project.lock()?;
    each(ctx, &project, &names, |p, m| {
        action(ctx, p, m, tag, target.kept.include_kept)
    })
}

/// save, restore or delete.
type Action = fn(&Ctx, &Project, &Machine, &str, bool) -> Result<()>;

/// Runs `action` on each selected machine. With no names given, machines
/// never created are skipped (a project's snapshot covers what exists).
fn each(
    ctx: &Ctx,
    project: &Project,
    names: &[String],
    action: impl Fn(&Project, &Machine) -> Result<()>,
) -> Result<i32> {
    let skip_uncreated = names.is_empty();
    let mut done = 0;
    for machine in project.select(names)? {
        let dir = project.machine_dir(&machine.name);
        if skip_uncreated && ctx.status(&dir)? == Status::NotCreated {
            continue;
        }
        crate::ops::triggers::around(ctx, project, &[machine], TriggerAction::Snapshot, || {
            action(project, machine)
        })?;
        done += 1;
    }
    if done == 0 {
        anyhow::bail!("no machine of this project is created: `env up` first");
    }
    Ok(0)
}

fn list(ctx: &Ctx, project: &Project, names: &[String], json: bool) -> Result<i32> {
    let mut rows = vec![vec![
        "MACHINE".to_string(),
        "SNAPSHOT".into(),
        "VM STATE".into(),
        "TAKEN".into(),
        "GUEST UPTIME".into(),
    ]];
    let mut items = Vec::new();
    for machine in project.select(names)? {
        let dir = project.machine_dir(&machine.name);
        if names.is_empty() && ctx.status(&dir)? == Status::NotCreated {
            continue;
        }
        for s in snapshot::list(ctx, &dir)? {
            let taken = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.created);
            rows.push(vec![
                machine.name.clone(),
                s.name.clone(),
                if s.vm_state_bytes > 0 {
                    ui::human_bytes(s.vm_state_bytes)
                } else {
                    "disks only".into()
                },
                humantime::format_rfc3339_seconds(taken).to_string(),
                format!("{} s", s.guest_uptime_secs),
            ]);
            items.push(serde_json::json!({
                "machine": machine.name, "name": s.name, "vm_state_bytes": s.vm_state_bytes,
                "created": s.created, "guest_uptime_secs": s.guest_uptime_secs,
            }));
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&items)?);
    } else if rows.len() == 1 {
        println!("no snapshots");
    } else {
        print!("{}", ui::table(&rows));
    }
    Ok(0)
}
