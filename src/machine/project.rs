//! A project: its Envfile and its state folder `.envstate/` beside it.

use crate::envfile::{self, Envfile, Machine};
use crate::machine::MachineDir;
use crate::util::lock;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

pub use crate::util::paths::STATE_DIR;

/// A loaded project.
#[derive(Debug, Clone)]
pub struct Project {
    /// The validated Envfile.
    pub envfile: Envfile,
    /// `.envstate/` beside the Envfile.
    pub state_dir: PathBuf,
}

impl Project {
    /// Finds and loads the Envfile (`--envfile` or walking up from the cwd).
    pub fn load(explicit: Option<&Path>) -> Result<Project> {
        let cwd = std::env::current_dir().context("cannot read the current folder")?;
        let path = envfile::find(explicit, &cwd)?;
        let envfile = envfile::load(&path)?;
        let state_dir = envfile.dir.join(STATE_DIR);
        Ok(Project { envfile, state_dir })
    }

    /// Creates `.envstate/` (with a `.gitignore` so it is never committed)
    /// and takes the project lock.
    pub fn lock(&self) -> Result<lock::Lock> {
        std::fs::create_dir_all(self.state_dir.join("machines"))
            .with_context(|| format!("cannot create {}", self.state_dir.display()))?;
        let ignore = self.state_dir.join(".gitignore");
        if !ignore.exists() {
            std::fs::write(&ignore, "# env's machine state: never commit it.\n*\n")?;
        }
        lock::exclusive(&self.state_dir.join("lock"), "this project")
    }

    /// The state folder of a machine.
    pub fn machine_dir(&self, name: &str) -> MachineDir {
        MachineDir::new(&self.state_dir, name)
    }

    /// The machines named (all when `names` is empty), in Envfile order.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Machine>> {
        if names.is_empty() {
            return Ok(self.envfile.machines.iter().collect());
        }
        names
            .iter()
            .map(|name| {
                self.envfile.machine(name).ok_or_else(|| {
                    anyhow::anyhow!(
                        "no machine `{name}` in {}: it has {}",
                        self.envfile.path.display(),
                        self.machine_names()
                    )
                })
            })
            .collect()
    }

    /// The machines' names, comma-separated, for messages.
    fn machine_names(&self) -> String {
        let names: Vec<&str> = self
            .envfile
            .machines
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        names.join(", ")
    }

    /// The one machine meant by an optional name (`env ssh` without a name
    /// when the project has a single machine).
    pub fn one(&self, name: Option<&str>) -> Result<&Machine> {
        match name {
            Some(n) => Ok(self.select(&[n.to_string()])?[0]),
            None if self.envfile.machines.len() == 1 => Ok(&self.envfile.machines[0]),
            None => bail!(
                "this project has several machines ({}): name one",
                self.machine_names()
            ),
        }
    }
}
