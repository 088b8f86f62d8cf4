//! `--cache` / `--no-cache` of `up` and `test`, and `env cache list|prune`:
//! the command line of [`crate::ops::cache`].

use crate::boxes::Store;
use crate::machine::cache::{self, Cache};
use crate::machine::project::Project;
use crate::util::ui;
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::Path;

/// `--cache` / `--no-cache`.
#[derive(Debug, Args)]
pub struct CacheFlags {
    /// Restore provisioned machines from the provisioning cache when
    /// nothing provisioning reads has changed, and keep them there after a
    /// successful provisioning (docs/testing-recipes.md says what the key covers).
    #[arg(long, conflicts_with = "no_cache")]
    pub cache: bool,
    /// Neither restore from nor keep in the cache, even when the Envfile's
    /// `[cache] enabled` says so.
    #[arg(long)]
    pub no_cache: bool,
}

impl CacheFlags {
    /// Whether the cache is on: the flags, else the Envfile's setting.
    pub fn enabled(&self, envfile: bool) -> bool {
        match (self.cache, self.no_cache) {
            (true, _) => true,
            (_, true) => false,
            _ => envfile,
        }
    }
}

/// `env cache ...`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the provisioning cache's entries, most recently used first.
    List {
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Remove damaged entries, entries whose box is gone, and the least
    /// recently used past the size limit (or every entry with --all).
    Prune {
        /// Remove every entry.
        #[arg(long)]
        all: bool,
        /// The size limit for this prune (default: `ENV_CACHE_MAX_SIZE`, the
        /// Envfile's `[cache] max_size`, else 20G).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_size: Option<crate::util::size::Size>,
    },
}

fn parse_size(text: &str) -> Result<crate::util::size::Size, String> {
    crate::util::size::parse_size(text)
}

/// Runs `env cache ...`.
pub fn run(envfile: Option<&Path>, command: CacheCommand) -> Result<i32> {
    let cache = Cache::open()?;
    match command {
        CacheCommand::List { json } => {
            let (entries, damaged) = cache.list()?;
            if json {
                let rows: Vec<serde_json::Value> = entries
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "key": e.key, "machine": e.machine, "project": e.project,
                            "box": e.box_name, "box_version": e.box_version,
                            "accel": e.accel, "idempotent": e.idempotent,
                            "created": e.created, "last_used": e.last_used, "bytes": e.size(),
                        })
                    })
                    .collect();
                let bad: Vec<serde_json::Value> = damaged
                    .iter()
                    .map(|d| serde_json::json!({ "key": d.key, "damaged": d.why }))
                    .collect();
                println!("{}", serde_json::json!({ "entries": rows, "damaged": bad }));
                return Ok(0);
            }
            if entries.is_empty() && damaged.is_empty() {
                println!("the provisioning cache is empty ({})", cache.root.display());
                return Ok(0);
            }
            let total: u64 = entries.iter().map(|e| e.size()).sum();
            for e in &entries {
                println!(
                    "{}  {:<20} {} {}  {:>9}  {}{}",
                    &e.key[..12],
                    e.machine,
                    e.box_name,
                    e.box_version,
                    ui::human_bytes(e.size()),
                    e.project.display(),
                    if e.idempotent { "  (idempotent)" } else { "" }
                );
            }
            for d in &damaged {
                println!("{}  damaged: {}", &d.key[..12.min(d.key.len())], d.why);
            }
            println!(
                "{} entries, {} in {}",
                entries.len(),
                ui::human_bytes(total),
                cache.root.display()
            );
            Ok(0)
        }
        CacheCommand::Prune { all, max_size } => {
            let store = Store::open()?;
            let limit = match (all, max_size) {
                (true, _) => 0,
                (false, Some(size)) => size.bytes(),
                (false, None) => {
                    let envfile_limit = Project::load(envfile)
                        .ok()
                        .and_then(|p| p.envfile.cache.max_size)
                        .map(|s| s.bytes());
                    cache::max_bytes(envfile_limit)?
                }
            };
            let removed = crate::ops::cache::prune(&cache, &store, limit, "cache");
            ui::line(&format!("{} entries removed", removed.len()));
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_override_the_envfile() {
        let flags = |cache, no_cache| CacheFlags { cache, no_cache };
        assert!(!flags(false, false).enabled(false));
        assert!(flags(false, false).enabled(true));
        assert!(flags(true, false).enabled(false));
        assert!(!flags(false, true).enabled(true));
    }
}
