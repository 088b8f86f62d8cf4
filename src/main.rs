//! `env`: local environments of QEMU/KVM machines, built from code.
//!
//! Dependencies point one way: the CLI calls operations (`lifecycle`), which
//! use the domain modules (Envfile, box store, QEMU arguments, ports), which
//! reach the outside world only at the edges (QEMU, QMP, ssh).

mod backend;
mod boxes;
mod cli;
mod envfile;
mod guest;
mod machine;
mod ops;
mod spec;
mod util;

use clap::Parser;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let (subcommands, flags) = cli::known_words();
    if cli::passthrough::handler_for(&args, &subcommands, &flags)
        == cli::passthrough::Handler::System
    {
        let err = cli::passthrough::exec_system_env(&args);
        eprintln!("env: {err:#}");
        std::process::exit(127);
    }
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            // An invalid Envfile is a usage error (2), like clap's; the rest is 1.
            let code = if err.downcast_ref::<envfile::EnvfileError>().is_some() {
                2
            } else {
                1
            };
            eprintln!("error: {err:#}");
            std::process::exit(code);
        }
    }
}
