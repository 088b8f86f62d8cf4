//! The OpenSSH client configuration of a machine: the ssh_config env
//! writes (host key pinned, one master connection), and the arguments of a
//! first connection.

use crate::machine::MachineDir;
use crate::machine::state::SshEndpoint;
use anyhow::Result;
use std::path::PathBuf;

/// How long an idle master connection stays up.
const CONTROL_PERSIST: &str = "10m";

/// What the client needs to reach one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Host alias (the machine name).
    pub alias: String,
    /// Host the client connects to (what the backend handed back).
    pub host: String,
    /// Port there.
    pub port: u16,
    /// Host to jump through first, if any.
    pub jump: Option<String>,
    /// The command that reaches the jump host, used instead of `jump`.
    pub proxy_command: Option<String>,
    /// Login user.
    pub user: String,
    /// Private key.
    pub identity: PathBuf,
    /// Pinned host keys.
    pub known_hosts: PathBuf,
    /// Name the host key is pinned under (stable across SSH port changes).
    pub host_key_alias: String,
    /// ControlPath for connection reuse.
    pub control_path: PathBuf,
    /// Forward the user's SSH agent (through the master connection: the
    /// agent of the process that opened it).
    pub forward_agent: bool,
}

/// Renders an ssh_config block usable by `ssh -F`, Ansible and testinfra.
/// The host key must match the pinned one: no `StrictHostKeyChecking=no`.
pub fn render_config(t: &SshTarget) -> String {
    let jump = match (&t.proxy_command, &t.jump) {
        (Some(command), _) => format!("  ProxyCommand {command}\n"),
        (None, Some(j)) => format!("  ProxyJump {j}\n"),
        (None, None) => String::new(),
    };
    format!(
        "Host {alias}\n  HostName {host}\n  Port {port}\n{jump}  ConnectTimeout 20\n  ServerAliveInterval 15\n  ServerAliveCountMax 4\n  User {user}\n  IdentityFile \"{identity}\"\n  IdentitiesOnly yes\n  UserKnownHostsFile \"{known}\"\n  StrictHostKeyChecking yes\n  HostKeyAlias {hka}\n  ControlMaster auto\n  ControlPath \"{cp}\"\n  ControlPersist {persist}\n  PasswordAuthentication no\n  LogLevel ERROR\n{agent}",
        alias = t.alias,
        host = t.host,
        port = t.port,
        user = t.user,
        identity = t.identity.display(),
        known = t.known_hosts.display(),
        hka = t.host_key_alias,
        cp = t.control_path.display(),
        persist = CONTROL_PERSIST,
        agent = if t.forward_agent {
            "  ForwardAgent yes\n"
        } else {
            ""
        },
    )
}

/// A known_hosts line pinning `public_key` (`ssh-ed25519 AAAA... comment`)
/// under `alias`.
pub fn known_hosts_line(alias: &str, public_key: &str) -> String {
    let mut parts = public_key.split_whitespace();
    let kind = parts.next().unwrap_or_default();
    let blob = parts.next().unwrap_or_default();
    format!("{alias} {kind} {blob}\n")
}

/// Arguments for a first connection with keys that are not yet the
/// machine's own. With `pinned`, the host key must match known_hosts
/// already; without, it is pinned on first sight (accept-new).
pub fn first_contact_args(t: &SshTarget, identities: &[PathBuf], pinned: bool) -> Vec<String> {
    let mut args = vec!["-F".into(), "/dev/null".into()];
    for (k, v) in [
        ("UserKnownHostsFile", t.known_hosts.display().to_string()),
        (
            "StrictHostKeyChecking",
            if pinned { "yes" } else { "accept-new" }.into(),
        ),
        ("HostKeyAlias", t.host_key_alias.clone()),
        ("IdentitiesOnly", "yes".into()),
        ("BatchMode", "yes".into()),
        ("ConnectTimeout", "20".into()),
        ("ServerAliveInterval", "15".into()),
        ("ServerAliveCountMax", "4".into()),
        ("ControlMaster", "auto".into()),
        ("ControlPath", t.control_path.display().to_string()),
        ("ControlPersist", CONTROL_PERSIST.into()),
        ("PasswordAuthentication", "no".into()),
        ("LogLevel", "ERROR".into()),
    ]
    .into_iter()
    .chain(match (&t.proxy_command, &t.jump) {
        (Some(command), _) => Some(("ProxyCommand", command.clone())),
        (None, Some(j)) => Some(("ProxyJump", j.clone())),
        (None, None) => None,
    })
    // This connection may become the master, whose setting decides.
    .chain(t.forward_agent.then(|| ("ForwardAgent", "yes".to_string())))
    {
        args.push("-o".into());
        args.push(format!("{k}={v}"));
    }
    for identity in identities {
        args.push("-i".into());
        args.push(identity.display().to_string());
    }
    args.extend([
        "-p".into(),
        t.port.to_string(),
        format!("{}@{}", t.user, t.host),
    ]);
    args
}

/// The target for a machine's current boot.
pub fn target_for(dir: &MachineDir, endpoint: &SshEndpoint, user: &str) -> Result<SshTarget> {
    // Both reach ssh's command line and config: checked again here, whatever
    // wrote them (state.json sits in the project folder).
    crate::util::names::check_user_name(user).map_err(anyhow::Error::msg)?;
    let host_ok = !endpoint.host.is_empty()
        && !endpoint.host.starts_with('-')
        && endpoint
            .host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    anyhow::ensure!(
        host_ok,
        "`{}` is not a host name",
        endpoint.host.escape_debug()
    );
    Ok(SshTarget {
        alias: dir.name.clone(),
        host: endpoint.host.clone(),
        port: endpoint.port,
        jump: endpoint.jump.clone(),
        proxy_command: endpoint.proxy_command.clone(),
        user: user.into(),
        identity: dir.key(),
        known_hosts: dir.known_hosts(),
        host_key_alias: format!(
            "env-{}-{}",
            crate::util::paths::short_hash(&dir.root),
            dir.name
        ),
        control_path: dir.control_path()?,
        forward_agent: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SshTarget {
        SshTarget {
            alias: "web".into(),
            host: "127.0.0.1".into(),
            port: 2222,
            jump: None,
            proxy_command: None,
            user: "vagrant".into(),
            identity: "/p/.envstate/machines/web/id_ed25519".into(),
            known_hosts: "/p/.envstate/machines/web/known_hosts".into(),
            host_key_alias: "env-abc-web".into(),
            control_path: "/run/env/abc.ssh".into(),
            forward_agent: false,
        }
    }

    #[test]
    fn config_pins_host_keys_and_reuses_connections() {
        let c = render_config(&target());
        assert!(c.starts_with("Host web\n"));
        for line in [
            "Port 2222",
            "User vagrant",
            "StrictHostKeyChecking yes",
            "HostKeyAlias env-abc-web",
            "ControlMaster auto",
            "IdentitiesOnly yes",
            "IdentityFile \"/p/.envstate/machines/web/id_ed25519\"",
        ] {
            assert!(c.contains(&format!("  {line}\n")), "missing {line}:\n{c}");
        }
        assert!(!c.contains("StrictHostKeyChecking no"));
        assert!(!c.contains("ForwardAgent"), "never unless asked");
        let forwarding = SshTarget {
            forward_agent: true,
            ..target()
        };
        assert!(render_config(&forwarding).contains("  ForwardAgent yes\n"));
    }

    #[test]
    fn first_contact_pins_on_first_sight_only() {
        let args = first_contact_args(&target(), &["/k1".into(), "/k2".into()], false);
        let joined = args.join(" ");
        assert!(joined.starts_with("-F /dev/null "));
        assert!(joined.contains("-o StrictHostKeyChecking=accept-new"));
        let strict = first_contact_args(&target(), &["/k1".into()], true).join(" ");
        assert!(strict.contains("-o StrictHostKeyChecking=yes"));
        assert!(joined.contains("-o HostKeyAlias=env-abc-web"));
        assert!(joined.contains("-i /k1 -i /k2"));
        assert!(joined.ends_with("-p 2222 vagrant@127.0.0.1"));
    }

    #[test]
    fn known_hosts_lines_drop_the_comment() {
        let line = known_hosts_line("env-x-web", "ssh-ed25519 AAAA env host key\n");
        assert_eq!(line, "env-x-web ssh-ed25519 AAAA\n");
    }
}
