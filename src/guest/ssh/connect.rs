//! Reaching a booting guest: waiting for its SSH banner, the first
//! contact (pin the host key, replace the well-known key) and the master
//! connection, each tried again while the guest does not let users in yet.

use super::config::{SshTarget, first_contact_args, known_hosts_line, render_config, target_for};
use super::exec::close_master;
use super::exec::command;
use super::keys::{ensure_keypair, first_contact_identities, remove_first_contact_keys};
use crate::envfile::Machine;
use crate::guest::scripts::replace_key_script;
use crate::machine::MachineDir;
use crate::machine::MachineState;
use crate::machine::state::SshEndpoint;
use crate::util::fs::write_atomic;
use crate::util::process::output_within;
use anyhow::{Context, Result, bail};
use std::io::Read;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Waits until an SSH server greets on `port` ("SSH-2.0-..."), checking
/// `still_booting` between tries so that a dead QEMU fails at once.
/// QEMU's user networking accepts connections before the guest listens, so
/// only the banner proves sshd is there.
pub fn wait_for_banner(
    endpoint: &SshEndpoint,
    deadline: Instant,
    mut still_booting: impl FnMut() -> Result<()>,
) -> Result<Duration> {
    let started = Instant::now();
    if endpoint.jump.is_some() {
        // Reachable only through the jump host: the first contact's own
        // retries wait for the guest instead.
        return Ok(started.elapsed());
    }
    let addr: Option<SocketAddr> = (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next());
    let addr = addr.with_context(|| format!("cannot resolve {}", endpoint.host))?;
    loop {
        still_booting()?;
        if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4];
            if stream.read_exact(&mut buf).is_ok() && &buf == b"SSH-" {
                return Ok(started.elapsed());
            }
        }
        if Instant::now() >= deadline {
            bail!("SSH did not answer within the boot timeout");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// First contact: checks or pins the host key, starts the master connection
/// and, with `new_public_key`, makes it the only authorized key. Tries the
/// identities one at a time and returns the one the guest accepted (env
/// keeps using it when it inserts no key of its own). A guest that answers
/// but does not let users in yet (pam_nologin while it boots) is tried again
/// until `deadline`.
pub fn first_contact(
    t: &SshTarget,
    identities: &[PathBuf],
    new_public_key: Option<&str>,
    pinned: bool,
    deadline: Instant,
) -> Result<PathBuf> {
    let script = new_public_key
        .map(replace_key_script)
        .unwrap_or_else(|| "true".into());
    let mut refusals = Vec::new();
    for identity in identities {
        let run = || {
            attempt(
                Command::new("ssh")
                    .args(first_contact_args(
                        t,
                        std::slice::from_ref(identity),
                        pinned,
                    ))
                    .arg(&script),
            )
        };
        match run_until_let_in(run, deadline)? {
            Login::LoggedIn => return Ok(identity.clone()),
            Login::KeyRefused => refusals.push(identity.display().to_string()),
            Login::Failed(stderr) => {
                bail!("first SSH contact as {} failed: {stderr}", t.user)
            }
        }
    }
    bail!(
        "first SSH contact as {} failed: the guest accepted none of the keys tried ({}). \
         Give the box's key with `ssh.private_key` in the Envfile",
        t.user,
        refusals.join(", ")
    )
}

/// Opens the master connection through the machine's ssh_config, again
/// while the guest does not let users in yet, until `deadline`.
pub fn open_master(config: &Path, alias: &str, deadline: Instant) -> Result<()> {
    let run = || attempt(command(config, alias).arg("true"));
    match run_until_let_in(run, deadline)? {
        Login::LoggedIn => Ok(()),
        Login::KeyRefused => bail!("the guest refused the machine's key"),
        Login::Failed(stderr) => bail!("{stderr}"),
    }
}

/// How long one log-in attempt may take (ssh's own ConnectTimeout bounds
/// the connection; this bounds a server that stalls after it).
const ATTEMPT_LIMIT: Duration = Duration::from_secs(60);

/// One ssh log-in attempt, within [`ATTEMPT_LIMIT`].
fn attempt(cmd: &mut Command) -> Result<std::process::Output> {
    output_within(cmd, ATTEMPT_LIMIT)
        .context("cannot run ssh (install the OpenSSH client)")?
        .with_context(|| format!("ssh did not finish within {} s", ATTEMPT_LIMIT.as_secs()))
}

/// How logging in ended, as far as the caller's next step goes.
#[derive(Debug, PartialEq, Eq)]
enum Login {
    /// In, and the command ran.
    LoggedIn,
    /// The server refused the key: another key may do.
    KeyRefused,
    /// Anything else, with what ssh said.
    Failed(String),
}

/// Runs `run` until it succeeds, fails for good, or `deadline` passes. ssh
/// exits 255 for its own failures; one whose output names neither a refused
/// key nor a host key problem is a connection the guest closed or refused
/// while booting (pam_nologin says "System is booting up" and closes), and
/// is tried again every half second.
fn run_until_let_in(
    run: impl Fn() -> Result<std::process::Output>,
    deadline: Instant,
) -> Result<Login> {
    loop {
        let out = run()?;
        if out.status.success() {
            return Ok(Login::LoggedIn);
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        match classify(out.status.code(), &stderr) {
            Attempt::KeyRefused => return Ok(Login::KeyRefused),
            Attempt::NotYet if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(500))
            }
            Attempt::NotYet if stderr.is_empty() => {
                return Ok(Login::Failed(
                    "the guest closed the connection and let no user in before the boot timeout"
                        .into(),
                ));
            }
            _ => return Ok(Login::Failed(stderr)),
        }
    }
}

/// What an ssh exit means.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    KeyRefused,
    /// Worth trying again shortly: the guest is not letting users in yet.
    NotYet,
    /// The remote command failed, or the host key does not match.
    Final,
}

fn classify(code: Option<i32>, stderr: &str) -> Attempt {
    if code != Some(255) {
        Attempt::Final
    } else if stderr.contains("Permission denied") {
        Attempt::KeyRefused
    } else if stderr.contains("Host key verification failed")
        || stderr.contains("HOST IDENTIFICATION HAS CHANGED")
        || stderr.contains("Could not resolve")
    {
        Attempt::Final
    } else {
        Attempt::NotYet
    }
}

/// SSH set-up after the banner: first contact (pin the host key, replace the
/// well-known key) or a plain connection with the pinned key; writes the
/// ssh_config and leaves a master connection for later commands.
pub fn set_up(
    dir: &MachineDir,
    machine: &Machine,
    state: &mut MachineState,
    endpoint: &SshEndpoint,
    deadline: Instant,
) -> Result<()> {
    let mut target = target_for(dir, endpoint, &state.ssh_user)?;
    target.forward_agent = machine.ssh_forward_agent;
    close_master(&target.control_path);
    // A host key env made and passed in (fw_cfg, cloud-init) is pinned
    // before the first connection; otherwise the first key seen is pinned.
    let pinned = std::fs::read_to_string(dir.host_key().with_extension("pub")).ok();
    if let Some(host_public) = &pinned {
        write_atomic(
            &dir.known_hosts(),
            known_hosts_line(&target.host_key_alias, host_public).as_bytes(),
        )?;
    }
    if !state.key_inserted {
        let identities = first_contact_identities(dir, machine.ssh_private_key.as_deref())?;
        let public = if machine.ssh_insert_key {
            Some(ensure_keypair(&dir.key(), "env machine key")?)
        } else {
            None
        };
        let accepted = first_contact(
            &target,
            &identities,
            public.as_deref(),
            pinned.is_some(),
            deadline,
        )?;
        if machine.ssh_insert_key {
            state.key_inserted = true;
            remove_first_contact_keys(dir, None);
        } else {
            // Without a key of its own, env connects with the accepted one
            // (first contact runs again at every boot).
            remove_first_contact_keys(dir, Some(&accepted));
            target.identity = accepted;
        }
    }
    // Once env's key is in, it is the only one the guest takes, whatever
    // `insert_key` says now: the target's identity stays the machine key.
    write_atomic(&dir.ssh_config(), render_config(&target).as_bytes())?;
    if state.key_inserted || !machine.ssh_insert_key {
        // Opens the master connection now, checking the pinned host key.
        open_master(&dir.ssh_config(), &dir.name, deadline)
            .with_context(|| format!("SSH to `{}` failed", machine.name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(port: u16) -> SshEndpoint {
        SshEndpoint {
            host: "127.0.0.1".into(),
            port,
            jump: None,
            proxy_command: None,
        }
    }

    #[test]
    fn banner_wait_fails_fast_when_qemu_dies_and_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let err = wait_for_banner(
            &local(port),
            Instant::now() + Duration::from_secs(5),
            || bail!("QEMU exited"),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "QEMU exited");
        drop(listener);
        let err = wait_for_banner(&local(port), Instant::now(), || Ok(())).unwrap_err();
        assert!(err.to_string().contains("boot timeout"));
    }

    #[test]
    fn banner_wait_succeeds_on_a_greeting() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            use std::io::Write;
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"SSH-2.0-test\r\n").unwrap();
        });
        wait_for_banner(
            &local(port),
            Instant::now() + Duration::from_secs(5),
            || Ok(()),
        )
        .unwrap();
        server.join().unwrap();
    }

    #[test]
    fn ssh_failures_are_told_apart() {
        assert_eq!(
            classify(
                Some(255),
                "vagrant@127.0.0.1: Permission denied (publickey)."
            ),
            Attempt::KeyRefused
        );
        assert_eq!(
            classify(Some(255), "Host key verification failed."),
            Attempt::Final
        );
        assert_eq!(
            classify(Some(1), "Permission denied"),
            Attempt::Final,
            "the command failed"
        );
        // pam_nologin while the guest boots: with LogLevel=ERROR ssh says nothing.
        assert_eq!(classify(Some(255), ""), Attempt::NotYet);
        assert_eq!(
            classify(
                Some(255),
                "System is booting up.\nConnection closed by 127.0.0.1 port 2222"
            ),
            Attempt::NotYet
        );
    }

    #[test]
    fn a_guest_that_lets_users_in_late_is_tried_again_until_the_deadline() {
        use std::os::unix::process::ExitStatusExt;
        let tries = std::cell::Cell::new(0);
        let exit = |code: i32, stderr: &str| std::process::Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        };
        let later = Instant::now() + Duration::from_secs(30);
        let result = run_until_let_in(
            || {
                tries.set(tries.get() + 1);
                Ok(if tries.get() < 3 {
                    exit(255, "")
                } else {
                    exit(0, "")
                })
            },
            later,
        )
        .unwrap();
        assert_eq!((result, tries.get()), (Login::LoggedIn, 3));
        let result = run_until_let_in(|| Ok(exit(255, "")), Instant::now()).unwrap();
        assert!(matches!(result, Login::Failed(m) if m.contains("boot timeout")));
        let result =
            run_until_let_in(|| Ok(exit(255, "Permission denied (publickey)")), later).unwrap();
        assert_eq!(result, Login::KeyRefused);
    }
}
