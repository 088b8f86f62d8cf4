//! Hosts env does not manage (staging, production), reached with the
//! user's own OpenSSH: its config, keys and known_hosts. Host keys are
//! always checked (`StrictHostKeyChecking=yes` on the command line wins
//! over any config), nothing asks a question (`BatchMode`), and the host
//! is passed after `--` so no name can be read as an option.

use crate::envfile::targets::{Address, Target};
use crate::util::process::{Finished, finish};
use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long ssh may take to reach a target before it gives up.
const CONNECT_TIMEOUT_SECS: u32 = 15;

/// The remote command that reads a script on stdin: through `sudo -n`
/// when asked (and the login is not root already), else as the login user.
pub fn runner(sudo: bool) -> &'static str {
    match sudo {
        true => "case \"$(id -u)\" in 0) exec sh -s;; esac; exec sudo -n sh -s",
        false => "sh -s",
    }
}

/// The arguments of `ssh` reaching `target` and running `remote` there.
pub fn ssh_args(target: &Target, remote: &str) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut option = |o: String| {
        args.push("-o".into());
        args.push(o.into());
    };
    option("BatchMode=yes".into());
    option("StrictHostKeyChecking=yes".into());
    option(format!("ConnectTimeout={CONNECT_TIMEOUT_SECS}"));
    option("ServerAliveInterval=10".into());
    option("ServerAliveCountMax=3".into());
    if let Some(known) = &target.known_hosts {
        option(format!("UserKnownHostsFile={}", known.display()));
    }
    if let Some(identity) = &target.identity_file {
        // Only this key: an agent full of keys trips MaxAuthTries first.
        option("IdentitiesOnly=yes".into());
        args.push("-i".into());
        args.push(identity.into());
    }
    if let Some(jump) = &target.proxy_jump {
        args.push("-J".into());
        args.push(jump.into());
    }
    let host = match &target.address {
        Address::Direct { user, host, port } => {
            if let Some(u) = user {
                args.push("-l".into());
                args.push(u.into());
            }
            if let Some(p) = port {
                args.push("-p".into());
                args.push(p.to_string().into());
            }
            host.clone()
        }
        Address::Config { file, host } => {
            args.push("-F".into());
            args.push(file.into());
            host.clone()
        }
    };
    args.push("--".into());
    args.push(host.into());
    args.push(remote.into());
    args
}

/// Runs `script` on the target (root through sudo when it says so) within
/// `limit`, returning its stdout; a failure says whether ssh could not get
/// in, sudo was refused, or the script failed.
pub fn run_script(target: &Target, script: &str, limit: Duration) -> Result<Vec<u8>> {
    let child = Command::new("ssh")
        .args(ssh_args(target, runner(target.sudo)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run ssh (install the OpenSSH client)")?;
    let out = match finish(child, script.as_bytes().to_vec(), Some(limit))? {
        Finished::Exited(out) => out,
        Finished::TimedOut => bail!(
            "the checks on `{}` ({}) did not finish within {} s",
            target.name,
            target.address,
            limit.as_secs()
        ),
    };
    if out.status.success() {
        return Ok(out.stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    bail!("{}", failure(target, out.status.code(), &stderr))
}

/// What went wrong, in words that say what to do.
pub fn failure(target: &Target, code: Option<i32>, stderr: &str) -> String {
    let who = format!("`{}` ({})", target.name, target.address);
    let known_hosts = match &target.known_hosts {
        Some(file) => file.display().to_string(),
        None => "~/.ssh/known_hosts".into(),
    };
    if stderr.contains("Host key verification failed")
        || stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
    {
        return format!(
            "cannot check {who}: its host key is not in {known_hosts} or does not match it; env never skips that check. Compare the key's fingerprint with the host's own (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` there), then add it (`ssh-keyscan HOST >> {known_hosts}`) ({stderr})"
        );
    }
    if stderr.contains("Permission denied") {
        return format!(
            "cannot log in to {who}: the server took none of the keys offered (set `identity_file`, or load the key into ssh-agent) ({stderr})"
        );
    }
    if code == Some(255) {
        return format!("cannot reach {who}: {stderr}");
    }
    if stderr.contains("sudo:") {
        return format!(
            "{who} refused sudo: the checks run as root through `sudo -n`, which needs passwordless sudo for this user; allow it (a sudoers rule), log in as root, or set `sudo = false` to check as the login user ({stderr})"
        );
    }
    format!(
        "running the checks on {who} failed (exit status {}): {stderr}",
        code.unwrap_or(-1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envfile::targets::parse_address;
    use std::path::PathBuf;

    fn target(address: &str) -> Target {
        Target {
            name: "prod".into(),
            address: parse_address(address).unwrap(),
            identity_file: None,
            proxy_jump: None,
            known_hosts: None,
            specs: vec!["s.toml".into()],
            sudo: false,
        }
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn host_keys_are_always_checked_and_the_host_comes_after_the_options() {
        let args = strings(ssh_args(&target("deploy@web1:2222"), "sh -s"));
        let joined = args.join(" ");
        assert!(joined.contains("-o StrictHostKeyChecking=yes"), "{joined}");
        assert!(joined.contains("-o BatchMode=yes"), "{joined}");
        assert!(
            joined.contains("-l deploy -p 2222 -- web1 sh -s"),
            "{joined}"
        );
        assert!(!joined.contains("UserKnownHostsFile"), "{joined}");
    }

    #[test]
    fn identity_jump_known_hosts_and_config_files_are_passed() {
        let mut t = target("web1");
        t.identity_file = Some(PathBuf::from("/k/id"));
        t.proxy_jump = Some("bastion".into());
        t.known_hosts = Some(PathBuf::from("/k/known"));
        let joined = strings(ssh_args(&t, "sh -s")).join(" ");
        assert!(
            joined.contains("-o UserKnownHostsFile=/k/known"),
            "{joined}"
        );
        assert!(
            joined.contains("-o IdentitiesOnly=yes -i /k/id -J bastion -- web1"),
            "{joined}"
        );
        t.address = Address::Config {
            file: PathBuf::from("/k/ssh_config"),
            host: "web".into(),
        };
        let joined = strings(ssh_args(&t, "sh -s")).join(" ");
        assert!(
            joined.ends_with("-F /k/ssh_config -- web sh -s"),
            "{joined}"
        );
    }

    #[test]
    fn sudo_only_when_asked_and_not_for_root() {
        assert_eq!(runner(false), "sh -s");
        assert!(runner(true).contains("sudo -n sh -s"));
        // The sudo runner as root runs the script without sudo.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(runner(true).replace("$(id -u)", "0"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success());
    }

    #[test]
    fn failures_say_what_to_do() {
        let t = target("deploy@web1");
        let m = failure(&t, Some(255), "Host key verification failed.");
        assert!(
            m.contains("~/.ssh/known_hosts") && m.contains("never skips"),
            "{m}"
        );
        let m = failure(&t, Some(255), "deploy@web1: Permission denied (publickey).");
        assert!(m.contains("identity_file"), "{m}");
        let m = failure(
            &t,
            Some(255),
            "ssh: connect to host web1 port 22: Connection refused",
        );
        assert!(m.starts_with("cannot reach `prod` (deploy@web1)"), "{m}");
        let m = failure(&t, Some(1), "sudo: a password is required");
        assert!(
            m.contains("refused sudo") && m.contains("sudo = false"),
            "{m}"
        );
        let m = failure(&t, Some(97), "mktemp: failed");
        assert!(m.contains("exit status 97"), "{m}");
    }
}
