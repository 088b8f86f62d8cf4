//! Running helper programs (qemu-img, QEMU, ssh, rsync, ssh-keygen): a
//! failure becomes an error that says what failed and what the program said.

use anyhow::{Context, Result, bail};
use std::process::{Command, Output, Stdio};

/// Runs `cmd` to completion with stdin closed. `cannot_run` is the error when
/// it cannot start (say what to install); `failed` prefixes its stderr when
/// it exits non-zero.
pub fn run_checked(cmd: &mut Command, cannot_run: &str, failed: &str) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| cannot_run.to_string())?;
    if !out.status.success() {
        bail!("{failed}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_quote_stderr_and_missing_programs_say_so() {
        let err = run_checked(
            Command::new("sh").args(["-c", "echo oops >&2; exit 3"]),
            "no sh",
            "sh failed",
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "sh failed: oops");
        let err =
            run_checked(&mut Command::new("no-such-program-env"), "install it", "x").unwrap_err();
        assert_eq!(err.to_string(), "install it");
        let out = run_checked(Command::new("sh").args(["-c", "echo ok"]), "", "").unwrap();
        assert_eq!(out.stdout, b"ok\n");
    }
}
