//! `env box build NAME`: runs the recipe `boxes/NAME/build OUTPUT.box`.

use crate::util::process::{Finished, finish};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// Finds the recipe folder `boxes/NAME`: walking up from `start`, then in the
/// source tree this binary was built from.
pub fn find_recipe(name: &str, start: &Path) -> Result<PathBuf> {
    super::check_name(name)?;
    let mut candidates: Vec<PathBuf> = start
        .ancestors()
        .map(|d| d.join("boxes").join(name))
        .collect();
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("boxes")
            .join(name),
    );
    candidates
        .into_iter()
        .find(|dir| dir.join("build").is_file())
        .with_context(|| {
            format!(
                "no recipe `boxes/{name}/build` in {} or above it",
                start.display()
            )
        })
}

/// How long a box build may take (a distribution bootstrap from a slow
/// mirror takes minutes; a hung one must not hold `env` forever).
const BUILD_LIMIT: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

/// Runs a recipe, writing the box to `output` (which appears only when the
/// build succeeds: recipes write atomically).
pub fn run_recipe(recipe: &Path, output: &Path) -> Result<()> {
    // Its output goes to the terminal: a build shows its progress.
    let child = std::process::Command::new(recipe.join("build"))
        .arg(output)
        .stdin(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", recipe.join("build").display()))?;
    let status = match finish(child, Vec::new(), Some(BUILD_LIMIT))? {
        Finished::Exited(out) => out.status,
        Finished::TimedOut => bail!(
            "the recipe {} did not finish within {} and was stopped",
            recipe.display(),
            humantime::format_duration(BUILD_LIMIT)
        ),
    };
    if !status.success() {
        bail!("the recipe {} failed ({status})", recipe.display());
    }
    if !output.is_file() {
        bail!(
            "the recipe {} wrote no box at {}",
            recipe.display(),
            output.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_projects_recipes() {
        let here = std::env::current_dir().unwrap();
        let dir = find_recipe("debian-12", &here).unwrap();
        assert!(dir.join("config.sh").is_file());
        assert!(find_recipe("no-such-box", &here).is_err());
        assert!(find_recipe("../etc", &here).is_err());
    }

    #[test]
    fn failing_and_silent_recipes_are_errors() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let recipe = tmp.path().join("r");
        std::fs::create_dir(&recipe).unwrap();
        let script = recipe.join("build");
        for (body, needle) in [("exit 3", "failed"), ("exit 0", "wrote no box")] {
            std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
            let err = run_recipe(&recipe, &tmp.path().join("out.box")).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
    }
}
