//! Running helper programs (qemu-img, QEMU, ssh, rsync, ssh-keygen): each
//! with a time limit, so a helper that hangs cannot hang env, and a failure
//! becomes an error that says what failed and what the program said. What
//! the user starts (provisioners, an interactive `env ssh`, the journal
//! stream) does not go through here.

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The time limit of quick helpers (qemu-img create/snapshot/info,
/// ssh-keygen, QEMU until it daemonizes): minutes, where they take seconds.
pub const HELPER_LIMIT: Duration = Duration::from_secs(120);

/// Runs `cmd` to completion with stdin closed, within `limit` (then it is
/// killed). `cannot_run` is the error when it cannot start (say what to
/// install); `failed` prefixes its stderr when it exits non-zero.
pub fn run_limited(
    cmd: &mut Command,
    limit: Duration,
    cannot_run: &str,
    failed: &str,
) -> Result<Output> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| cannot_run.to_string())?;
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = finish(child, Vec::new(), Some(limit))
        .with_context(|| format!("{failed}: {program} did not finish"))?;
    match out {
        Finished::Exited(out) if out.status.success() => Ok(out),
        Finished::Exited(out) => {
            bail!("{failed}: {}", String::from_utf8_lossy(&out.stderr).trim())
        }
        Finished::TimedOut => bail!(
            "{failed}: {program} did not finish within {} and was stopped",
            humantime::format_duration(limit)
        ),
    }
}

/// Runs `cmd` with stdin closed and its output captured, within `limit`:
/// None when it had to be stopped. Whether it succeeded is the caller's to
/// judge.
pub fn output_within(cmd: &mut Command, limit: Duration) -> std::io::Result<Option<Output>> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    match finish(child, Vec::new(), Some(limit)).map_err(std::io::Error::other)? {
        Finished::Exited(out) => Ok(Some(out)),
        Finished::TimedOut => Ok(None),
    }
}

/// How a limited child ended.
pub enum Finished {
    /// It exited (or was killed by someone else), with its output.
    Exited(Output),
    /// The limit passed: it was killed.
    TimedOut,
}

/// Feeds `input` to the child's stdin (if piped), drains its stdout and
/// stderr (if piped) from threads, so that a program that talks while it
/// reads never blocks on a full pipe, and waits up to `limit`.
pub fn finish(mut child: Child, input: Vec<u8>, limit: Option<Duration>) -> Result<Finished> {
    let feeder = child.stdin.take().map(|mut stdin| {
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        })
    });
    let drain = |source: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut source) = source {
                let _ = source.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let Some(status) = wait_until(&mut child, limit.map(|l| Instant::now() + l))? else {
        let _ = child.kill();
        let _ = child.wait();
        return Ok(Finished::TimedOut);
    };
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    Ok(Finished::Exited(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }))
}

/// Waits for the child until `deadline` (forever without one); None when
/// it still runs then.
fn wait_until(child: &mut Child, deadline: Option<Instant>) -> Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Finds a program on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_quote_stderr_and_missing_programs_say_so() {
        let err = run_limited(
            Command::new("sh").args(["-c", "echo oops >&2; exit 3"]),
            HELPER_LIMIT,
            "no sh",
            "sh failed",
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "sh failed: oops");
        let err = run_limited(
            &mut Command::new("no-such-program-env"),
            HELPER_LIMIT,
            "install it",
            "x",
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "install it");
        let out = run_limited(
            Command::new("sh").args(["-c", "echo ok"]),
            HELPER_LIMIT,
            "",
            "",
        )
        .unwrap();
        assert_eq!(out.stdout, b"ok\n");
    }

    #[test]
    fn a_helper_that_hangs_is_stopped_at_its_limit() {
        let started = Instant::now();
        let err = run_limited(
            Command::new("sleep").arg("30"),
            Duration::from_millis(300),
            "no sleep",
            "waiting failed",
        )
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            err.to_string(),
            "waiting failed: sleep did not finish within 300ms and was stopped"
        );
    }

    #[test]
    fn a_program_that_writes_much_while_reading_does_not_block() {
        let child = Command::new("sh")
            .args([
                "-c",
                "head -c 1000000 /dev/zero; cat >/dev/null; echo done >&2",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        match finish(child, vec![b'x'; 1_000_000], Some(Duration::from_secs(30))).unwrap() {
            Finished::Exited(out) => {
                assert_eq!(out.stdout.len(), 1_000_000);
                assert_eq!(out.stderr, b"done\n");
            }
            Finished::TimedOut => panic!("timed out"),
        }
    }

    #[test]
    fn which_finds_sh() {
        assert!(which("sh").is_some());
        assert!(which("no-such-program-env").is_none());
    }
}
