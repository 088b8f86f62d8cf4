//! `env`: local environments of QEMU/KVM machines, built from code.
//!
//! The folders are layers, top to bottom: `cli`, `ops`, `guest`, `backend`,
//! `machine`, then `spec`, `envfile`, `boxes`, and `util`; imports point
//! down only (checked by `tests/layers.rs`). See docs/architecture.md.

// A located Envfile error carries its message, its source line and the
// run's other problems: it is built once per failed command, never in a
// loop, so its size on the error path does not matter.
#![allow(clippy::result_large_err)]

mod backend;
mod boxes;
mod cli;
mod envfile;
mod guest;
mod machine;
mod ops;
mod spec;
mod util;

#[cfg(any(test, feature = "fuzzing"))]
mod fuzz;
#[cfg(test)]
mod robustness;

use clap::Parser;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    #[cfg(feature = "fuzzing")]
    if args.first().is_some_and(|a| a == "__fuzz") {
        let target = args.get(1).map(|t| t.to_string_lossy().into_owned());
        std::process::exit(fuzz::main_with(target.as_deref().unwrap_or("")));
    }
    let (subcommands, flags) = cli::known_words();
    if cli::passthrough::handler_for(&args, &subcommands, &flags)
        == cli::passthrough::Handler::System
    {
        if let Some(meant) = cli::passthrough::misspelt_subcommand(&args, &subcommands) {
            // What the system's env would say, and what was surely meant.
            let word = args[0].to_string_lossy();
            eprintln!("env: '{word}': No such file or directory");
            eprintln!(
                "env: '{word}' is no program and no env subcommand: did you mean `env {meant}`?"
            );
            std::process::exit(127);
        }
        let err = cli::passthrough::exec_system_env(&args);
        eprintln!("env: {err:#}");
        std::process::exit(127);
    }
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            // An invalid Envfile is a usage error (2), like clap's; the rest is 1.
            let code = match err.downcast_ref::<envfile::EnvfileError>() {
                Some(problems) if problems.count() > 1 => {
                    eprintln!(
                        "error: {} problems in {}:",
                        problems.count(),
                        problems.file.display()
                    );
                    2
                }
                Some(_) => 2,
                None => 1,
            };
            eprintln!("error: {err:#}");
            std::process::exit(code);
        }
    }
}
