//! Keeps the system's `env` working when this binary shadows it on `PATH`.
//!
//! `env FOO=1 cmd`, `env -i sh` and a bare `env` are coreutils' business: when
//! the first argument is not one of our subcommands or global flags, the
//! process becomes the system's `env` with the arguments unchanged.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// Who should handle a command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Handler {
    /// This tool (`env up`, `env --version`, ...).
    Ours,
    /// The system's `env` (`env FOO=1 cmd`, `env -i sh`, a bare `env`).
    System,
}

/// Decides who handles `args` (without argv[0]), given our subcommand names
/// and our global flags (`--envfile`, `-h`, ...).
pub fn handler_for(args: &[OsString], subcommands: &[String], flags: &[String]) -> Handler {
    let Some(first) = args.first().and_then(|a| a.to_str()) else {
        return Handler::System;
    };
    let ours = if first.starts_with('-') {
        let name = first.split('=').next().unwrap_or(first);
        flags.iter().any(|f| f == name)
    } else {
        subcommands.iter().any(|s| s == first)
    };
    if ours { Handler::Ours } else { Handler::System }
}

/// The subcommand a mistyped first word was meant to be: a plain word
/// (no `=`, no path, no flag) that is no program on `PATH` and is close to
/// one of ours (`stauts` -> `status`). The system's `env` would only say it
/// found no such file.
pub fn misspelt_subcommand(args: &[OsString], subcommands: &[String]) -> Option<String> {
    let first = args.first()?.to_str()?;
    let plain = !first.is_empty() && !first.contains(['=', '/']) && !first.starts_with('-');
    if !plain || crate::util::process::which(first).is_some() {
        return None;
    }
    let names: Vec<&str> = subcommands.iter().map(String::as_str).collect();
    crate::envfile::closest(first, &names).map(String::from)
}

/// Where the system's `env` may live, in order of preference.
const SYSTEM_ENV_CANDIDATES: &[&str] = &["/usr/bin/env", "/bin/env"];

/// Finds the system's `env`, skipping any candidate that is this very binary
/// (installed over `/usr/bin/env`, exec'ing it would loop forever).
pub fn system_env() -> Option<PathBuf> {
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok());
    SYSTEM_ENV_CANDIDATES
        .iter()
        .map(Path::new)
        .filter(|p| p.exists())
        .find(|p| p.canonicalize().ok() != me)
        .map(Path::to_path_buf)
}

/// Replaces this process with the system's `env`; returns only on failure.
pub fn exec_system_env(args: &[OsString]) -> anyhow::Error {
    match system_env() {
        Some(path) => {
            let err = std::process::Command::new(&path)
                .arg0(OsStr::new("env"))
                .args(args)
                .exec();
            anyhow::anyhow!("cannot run the system's env ({}): {err}", path.display())
        }
        None => anyhow::anyhow!(
            "this is not an `env` subcommand, and no system env was found in {}",
            SYSTEM_ENV_CANDIDATES.join(" or ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(args: &[&str]) -> Handler {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let subs = ["up", "ssh", "box", "help"].map(String::from);
        let flags = ["--envfile", "-h", "--help", "-V", "--version"].map(String::from);
        handler_for(&args, &subs, &flags)
    }

    #[test]
    fn our_subcommands_and_flags() {
        assert_eq!(decide(&["up"]), Handler::Ours);
        assert_eq!(decide(&["box", "list"]), Handler::Ours);
        assert_eq!(decide(&["--version"]), Handler::Ours);
        assert_eq!(decide(&["-h"]), Handler::Ours);
        assert_eq!(decide(&["--envfile", "x", "up"]), Handler::Ours);
        assert_eq!(decide(&["--envfile=x", "up"]), Handler::Ours);
    }

    #[test]
    fn everything_else_is_the_system_env() {
        assert_eq!(decide(&[]), Handler::System);
        assert_eq!(decide(&["FOO=1", "sh"]), Handler::System);
        assert_eq!(decide(&["-i", "PATH=/bin", "sh"]), Handler::System);
        assert_eq!(decide(&["sort"]), Handler::System);
        assert_eq!(decide(&["-u", "HOME", "up"]), Handler::System);
        assert_eq!(decide(&["--ignore-environment"]), Handler::System);
        assert_eq!(decide(&["upx"]), Handler::System);
    }

    #[test]
    fn mistyped_subcommands_are_told_apart_from_programs() {
        let subs: Vec<String> = ["status", "destroy", "up", "ssh"]
            .map(String::from)
            .to_vec();
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            misspelt_subcommand(&args(&["stauts"]), &subs).as_deref(),
            Some("status")
        );
        assert_eq!(
            misspelt_subcommand(&args(&["detroy", "-f"]), &subs).as_deref(),
            Some("destroy")
        );
        // Real programs, assignments, flags and paths stay the system's.
        assert_eq!(
            misspelt_subcommand(&args(&["sh", "-c", "true"]), &subs),
            None
        );
        assert_eq!(misspelt_subcommand(&args(&["SSH=1", "true"]), &subs), None);
        assert_eq!(misspelt_subcommand(&args(&["-i"]), &subs), None);
        assert_eq!(misspelt_subcommand(&args(&["./stauts"]), &subs), None);
        // Far from every subcommand: the system's env says what it says.
        assert_eq!(misspelt_subcommand(&args(&["frobnicate"]), &subs), None);
    }
}
