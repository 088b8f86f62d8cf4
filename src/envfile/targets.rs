//! Hosts env does not manage but checks with the same specs:
//! `[targets.NAME]` with an SSH address (or a host of an OpenSSH config),
//! the identity, jump host and known_hosts to use, the specs, and whether
//! to run them through sudo.

use super::EnvfileError;
use super::error::{Step, error_at};
use indexmap::IndexMap;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// A target as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// `[user@]host[:port]` (`deploy@web1.example.com:2222`, `[2001:db8::1]:22`).
    pub ssh: Option<String>,
    /// An OpenSSH config file (relative to the Envfile) that knows `host`.
    pub ssh_config: Option<PathBuf>,
    /// The `Host` of `ssh_config` to reach.
    pub host: Option<String>,
    /// Private key to log in with (relative to the Envfile).
    pub identity_file: Option<PathBuf>,
    /// Jump host(s), as `ssh -J` takes them.
    pub proxy_jump: Option<String>,
    /// A known_hosts file to check the host key against instead of the
    /// user's own (relative to the Envfile).
    pub known_hosts: Option<PathBuf>,
    /// Spec files or globs (relative to the Envfile).
    #[serde(default)]
    pub specs: Vec<String>,
    /// Run the checks as root through `sudo -n` (default false).
    pub sudo: Option<bool>,
}

/// How to reach a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `[user@]host[:port]`.
    Direct {
        /// Login user (ssh's default when absent).
        user: Option<String>,
        /// Host name or address.
        host: String,
        /// Port (ssh's default when absent).
        port: Option<u16>,
    },
    /// A host of an OpenSSH config file.
    Config {
        /// The config file (absolute).
        file: PathBuf,
        /// Its `Host` name.
        host: String,
    },
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Direct { user, host, port } => {
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                match (host.contains(':'), port) {
                    (true, Some(p)) => write!(f, "[{host}]:{p}"),
                    (false, Some(p)) => write!(f, "{host}:{p}"),
                    (_, None) => f.write_str(host),
                }
            }
            Address::Config { file, host } => write!(f, "{host} (in {})", file.display()),
        }
    }
}

/// A host checked over SSH, with everything resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its name (the table's, or the address given on the command line).
    pub name: String,
    /// How to reach it.
    pub address: Address,
    /// Private key (absolute).
    pub identity_file: Option<PathBuf>,
    /// Jump host(s).
    pub proxy_jump: Option<String>,
    /// known_hosts file to use instead of the user's (absolute).
    pub known_hosts: Option<PathBuf>,
    /// Spec files or globs, relative to the Envfile.
    pub specs: Vec<String>,
    /// Run the checks through `sudo -n`.
    pub sudo: bool,
}

/// A word ssh takes as a host, user or jump host: not empty, no leading
/// `-` (it would be read as an option), no spaces or control characters.
fn check_word(what: &str, word: &str) -> Result<(), String> {
    if word.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if word.starts_with('-') {
        return Err(format!("the {what} `{word}` starts with `-`"));
    }
    if word.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "the {what} `{word}` holds a space or control character"
        ));
    }
    Ok(())
}

/// Parses `[user@]host[:port]`; an IPv6 address with a port is written
/// in brackets (`[::1]:2222`), without one it may stand bare.
pub fn parse_address(text: &str) -> Result<Address, String> {
    let text = text.trim();
    let (user, rest) = match text.rsplit_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, text),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("`{text}`: a `[` without its `]`"))?;
        match after {
            "" => (host.to_string(), None),
            _ => match after.strip_prefix(':') {
                Some(p) => (host.to_string(), Some(p)),
                None => return Err(format!("`{text}`: `{after}` after the address")),
            },
        }
    } else if rest.matches(':').count() == 1 {
        let (h, p) = rest.split_once(':').unwrap_or((rest, ""));
        (h.to_string(), Some(p))
    } else {
        (rest.to_string(), None)
    };
    let port = match port {
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("`{text}`: `{p}` is not a port (1 to 65535)")),
        },
        None => None,
    };
    if let Some(u) = &user {
        check_word("user", u).map_err(|m| format!("`{text}`: {m}"))?;
    }
    check_word("host", &host).map_err(|m| format!("`{text}`: {m}"))?;
    Ok(Address::Direct { user, host, port })
}

/// Resolves `[targets.*]`: each a target, or an error at its field.
pub fn resolve(
    file: &Path,
    text: &str,
    dir: &Path,
    raw: &IndexMap<String, RawTarget>,
) -> (Vec<Target>, Vec<EnvfileError>) {
    let (mut targets, mut problems) = (Vec::new(), Vec::new());
    for (name, t) in raw {
        let at = |field: Option<&str>| {
            let mut p = vec![Step::Key("targets".into()), Step::Key(name.clone())];
            p.extend(field.map(|f| Step::Key(f.into())));
            p
        };
        match resolve_one(dir, name, t) {
            Ok(target) => targets.push(target),
            Err((field, message)) => problems.push(error_at(file, text, &at(field), message)),
        }
    }
    (targets, problems)
}

/// One target, or the field that is wrong and why.
fn resolve_one(
    dir: &Path,
    name: &str,
    t: &RawTarget,
) -> Result<Target, (Option<&'static str>, String)> {
    // Targets are named as machines are: reports show both the same way.
    if !crate::util::names::is_machine_name(name) {
        return Err((
            None,
            format!(
                "`{name}` is not a valid target name: use letters, digits, `-` and `_`, starting with a letter"
            ),
        ));
    }
    let address = match (&t.ssh, &t.ssh_config, &t.host) {
        (Some(ssh), None, None) => parse_address(ssh).map_err(|m| (Some("ssh"), m))?,
        (None, Some(config), Some(host)) => {
            check_word("host", host).map_err(|m| (Some("host"), m))?;
            let file = dir.join(config);
            if !file.is_file() {
                return Err((Some("ssh_config"), format!("no file at {}", file.display())));
            }
            Address::Config {
                file,
                host: host.clone(),
            }
        }
        (None, Some(_), None) => {
            return Err((
                Some("ssh_config"),
                "name the config's `Host` with `host = \"NAME\"`".into(),
            ));
        }
        (None, None, Some(_)) => {
            return Err((
                Some("host"),
                "`host` names a Host of `ssh_config = \"FILE\"`: give the file, or write `ssh = \"user@host:port\"`".into(),
            ));
        }
        (None, None, None) => {
            return Err((
                None,
                "a target needs `ssh = \"user@host[:port]\"` or `ssh_config = \"FILE\"` with `host = \"NAME\"`".into(),
            ));
        }
        (Some(_), _, _) => {
            return Err((
                Some("ssh"),
                "`ssh` and `ssh_config` are two ways to say where the host is: keep one".into(),
            ));
        }
    };
    if let Some(jump) = &t.proxy_jump {
        check_word("jump host", jump).map_err(|m| (Some("proxy_jump"), m))?;
    }
    let existing = |field: &'static str, path: &Option<PathBuf>| match path {
        Some(p) => {
            let full = dir.join(p);
            match full.is_file() {
                true => Ok(Some(full)),
                false => Err((Some(field), format!("no file at {}", full.display()))),
            }
        }
        None => Ok(None),
    };
    let identity_file = existing("identity_file", &t.identity_file)?;
    let known_hosts = existing("known_hosts", &t.known_hosts)?;
    if t.specs.is_empty() {
        return Err((
            Some("specs"),
            "a target is there to be checked: list its spec files (`specs = [\"specs/web.toml\"]`)"
                .into(),
        ));
    }
    if let Some(empty) = t.specs.iter().find(|s| s.trim().is_empty()) {
        return Err((Some("specs"), format!("an empty spec path `{empty}`")));
    }
    Ok(Target {
        name: name.to_string(),
        address,
        identity_file,
        proxy_jump: t.proxy_jump.clone(),
        known_hosts,
        specs: t.specs.clone(),
        sudo: t.sudo.unwrap_or(false),
    })
}
