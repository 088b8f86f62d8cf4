//! Which backend runs a machine: the local QEMU (the default) or a libvirt
//! host (`backend = "libvirt"`, `libvirt = { uri = "qemu+ssh://..." }`).
//! The libvirt connection URI is parsed here, purely: env reaches a remote
//! host's guests through SSH to that host, so only local (`qemu:///...`)
//! and SSH (`qemu+ssh://`, `qemu+libssh://`, `qemu+libssh2://`)
//! connections are accepted.

use serde::Deserialize;
use std::path::PathBuf;

/// `backend = "qemu" | "libvirt"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The local QEMU.
    #[default]
    Qemu,
    /// A libvirt host, local or remote.
    Libvirt,
}

/// `libvirt = { uri = "...", pool = "...", network = "..." }` as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawLibvirt {
    /// libvirt connection URI (default `qemu:///system`).
    pub uri: Option<String>,
    /// Storage pool for box and machine volumes (default `default`).
    pub pool: Option<String>,
    /// An existing libvirt network for the private network, instead of the
    /// isolated one env makes per project.
    pub network: Option<String>,
}

/// Where a machine runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MachineBackend {
    /// The local QEMU.
    #[default]
    Local,
    /// A libvirt host.
    Libvirt(LibvirtTarget),
}

/// A libvirt host and what env uses on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtTarget {
    /// The connection URI as written.
    pub uri: String,
    /// Its parsed form.
    pub parsed: LibvirtUri,
    /// The storage pool.
    pub pool: String,
    /// An existing network to join for the private network.
    pub network: Option<String>,
}

/// Default URI: the host's system libvirt.
pub const DEFAULT_URI: &str = "qemu:///system";
/// Default storage pool (what virt-install and vagrant-libvirt use).
pub const DEFAULT_POOL: &str = "default";

/// A parsed libvirt URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtUri {
    /// `system` or `session`.
    pub instance: String,
    /// The SSH hop to the hypervisor host, for `qemu+ssh://`.
    pub ssh: Option<SshHop>,
}

/// The SSH connection libvirt (and env, for guests and ports) makes to a
/// remote hypervisor host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshHop {
    /// Login user (the ssh client's default when absent).
    pub user: Option<String>,
    /// Host name or address.
    pub host: String,
    /// Port (ssh's default when absent).
    pub port: Option<u16>,
    /// `?keyfile=`: the private key.
    pub keyfile: Option<PathBuf>,
    /// `?known_hosts=`: the known_hosts file.
    pub known_hosts: Option<PathBuf>,
}

impl SshHop {
    /// `user@host` (what ssh takes as its destination).
    pub fn destination(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }

    /// The ssh arguments that reach the host, before the destination.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(port) = self.port {
            args.extend(["-p".into(), port.to_string()]);
        }
        if let Some(key) = &self.keyfile {
            args.extend([
                "-i".into(),
                key.display().to_string(),
                "-o".into(),
                "IdentitiesOnly=yes".into(),
            ]);
        }
        if let Some(known) = &self.known_hosts {
            args.extend([
                "-o".into(),
                format!("UserKnownHostsFile={}", known.display()),
            ]);
        }
        args
    }
}

/// A word ssh and libvirt take as a user or host: no leading `-`, no
/// spaces or shell or URI punctuation.
fn check_word(what: &str, word: &str) -> Result<(), String> {
    let ok = !word.is_empty()
        && !word.starts_with('-')
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:[]".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("`{word}` is not a {what}"))
    }
}

/// Parses a libvirt URI env can use.
pub fn parse_uri(uri: &str) -> Result<LibvirtUri, String> {
    let (scheme, rest) = uri.split_once("://").ok_or_else(|| {
        format!("`{uri}` is not a libvirt URI (qemu:///system, qemu+ssh://user@host/system)")
    })?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let instance = match path {
        "/system" => "system",
        "/session" => "session",
        _ => {
            return Err(format!(
                "`{uri}`: the path must be /system or /session, not `{path}`"
            ));
        }
    }
    .to_string();
    let mut keyfile = None;
    let mut known_hosts = None;
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "keyfile" => keyfile = Some(PathBuf::from(value)),
            // libvirt's OpenSSH transport ignores it (ssh reads ~/.ssh).
            "known_hosts" if scheme != "qemu+ssh" => known_hosts = Some(PathBuf::from(value)),
            "known_hosts" => {
                return Err(format!(
                    "`{uri}`: qemu+ssh:// checks host keys with ~/.ssh/known_hosts; \
                     `known_hosts=` needs qemu+libssh://"
                ));
            }
            // Which authentications libssh tries: no way around a check.
            "sshauth" if scheme != "qemu+ssh" => {}
            // Ours to pass on would be a way around host key checks.
            "no_verify" | "command" | "socket" | "netcat" | "proxy" | "sshauth" | "mode"
            | "no_tty" => {
                return Err(format!(
                    "`{uri}`: env does not take `{key}` (put SSH options in ~/.ssh/config)"
                ));
            }
            _ => return Err(format!("`{uri}`: unknown URI parameter `{key}`")),
        }
    }
    for path in [&keyfile, &known_hosts].into_iter().flatten() {
        if !path.is_absolute() {
            return Err(format!(
                "`{uri}`: `{}` must be an absolute path",
                path.display()
            ));
        }
    }
    match scheme {
        "qemu" | "qemu+unix" => {
            if !authority.is_empty() || keyfile.is_some() || known_hosts.is_some() {
                return Err(format!(
                    "`{uri}`: a local URI names no host (qemu:///system); a remote host needs qemu+ssh://"
                ));
            }
            Ok(LibvirtUri {
                instance,
                ssh: None,
            })
        }
        "qemu+ssh" | "qemu+libssh" | "qemu+libssh2" => {
            let (user, hostport) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, authority),
            };
            // `[::1]:22` or `kvm1:22` or `kvm1`.
            let (host, port) = match hostport.strip_prefix('[') {
                Some(v6) => match v6.split_once(']') {
                    Some((h, rest)) => (h, rest.strip_prefix(':')),
                    None => return Err(format!("`{uri}`: `{hostport}` is not a host")),
                },
                None => match hostport.rsplit_once(':') {
                    Some((h, p)) => (h, Some(p)),
                    None => (hostport, None),
                },
            };
            let port = match port {
                Some(p) => Some(
                    p.parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| format!("`{uri}`: `{p}` is not a port"))?,
                ),
                None => None,
            };
            check_word("host", host).map_err(|m| format!("`{uri}`: {m}"))?;
            if let Some(u) = user {
                check_word("user", u).map_err(|m| format!("`{uri}`: {m}"))?;
            }
            Ok(LibvirtUri {
                instance,
                ssh: Some(SshHop {
                    user: user.map(String::from),
                    host: host.into(),
                    port,
                    keyfile,
                    known_hosts,
                }),
            })
        }
        other => Err(format!(
            "`{uri}`: env reaches guests through SSH to the libvirt host: use qemu:///system, qemu:///session, qemu+ssh:// or qemu+libssh://, not {other}://"
        )),
    }
}

/// Checks a pool or network name: libvirt object names env passes to virsh.
pub fn check_object_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a {what} name env uses (letters, digits, `.`, `_`, `-`)"
        ))
    }
}

/// The machine's backend from the merged `backend` and `libvirt` fields;
/// errors name the field at fault.
pub fn resolve(
    kind: Option<BackendKind>,
    raw: Option<&RawLibvirt>,
) -> Result<MachineBackend, (&'static str, String)> {
    match kind.unwrap_or_default() {
        BackendKind::Qemu => {
            if raw.is_some() {
                return Err((
                    "libvirt",
                    "`libvirt` settings need `backend = \"libvirt\"`".into(),
                ));
            }
            Ok(MachineBackend::Local)
        }
        BackendKind::Libvirt => {
            let raw = raw.cloned().unwrap_or_default();
            let uri = raw.uri.unwrap_or_else(|| DEFAULT_URI.into());
            let parsed = parse_uri(&uri).map_err(|m| ("libvirt.uri", m))?;
            let pool = raw.pool.unwrap_or_else(|| DEFAULT_POOL.into());
            check_object_name("storage pool", &pool).map_err(|m| ("libvirt.pool", m))?;
            if let Some(n) = &raw.network {
                check_object_name("network", n).map_err(|m| ("libvirt.network", m))?;
            }
            Ok(MachineBackend::Libvirt(LibvirtTarget {
                uri,
                parsed,
                pool,
                network: raw.network,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_uris_parse() {
        for (uri, instance) in [
            ("qemu:///system", "system"),
            ("qemu:///session", "session"),
            ("qemu+unix:///system", "system"),
        ] {
            let p = parse_uri(uri).unwrap();
            assert_eq!(p.instance, instance);
            assert!(p.ssh.is_none());
        }
    }

    #[test]
    fn ssh_uris_parse_with_user_port_and_files() {
        let p =
            parse_uri("qemu+libssh://ops@kvm1.example:2222/system?keyfile=/k/id&known_hosts=/k/known&sshauth=privkey")
                .unwrap();
        let hop = p.ssh.unwrap();
        assert_eq!(hop.destination(), "ops@kvm1.example");
        assert_eq!(hop.port, Some(2222));
        assert_eq!(
            hop.args(),
            [
                "-p",
                "2222",
                "-i",
                "/k/id",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "UserKnownHostsFile=/k/known"
            ]
        );
        let bare = parse_uri("qemu+ssh://kvm1/system").unwrap().ssh.unwrap();
        assert_eq!((bare.destination(), bare.port), ("kvm1".into(), None));
        assert!(bare.args().is_empty());
        let v6 = parse_uri("qemu+ssh://root@[::1]:22/session").unwrap();
        assert_eq!(v6.instance, "session");
        assert_eq!(v6.ssh.unwrap().host, "::1");
    }

    #[test]
    fn bad_uris_say_why() {
        for (uri, words) in [
            ("kvm1", "not a libvirt URI"),
            ("qemu:///", "must be /system or /session"),
            ("qemu+tcp://kvm1/system", "use qemu:///system"),
            ("qemu+tls://kvm1/system", "not qemu+tls://"),
            ("qemu://kvm1/system", "names no host"),
            ("qemu+ssh://-oProxyCommand=x/system", "not a host"),
            ("qemu+ssh://a b@kvm1/system", "not a user"),
            ("qemu+ssh://kvm1:0/system", "not a port"),
            ("qemu+ssh://kvm1:x/system", "not a port"),
            (
                "qemu+ssh://kvm1/system?no_verify=1",
                "does not take `no_verify`",
            ),
            (
                "qemu+ssh://kvm1/system?command=/bin/sh",
                "does not take `command`",
            ),
            ("qemu+ssh://kvm1/system?foo=1", "unknown URI parameter"),
            ("qemu+ssh://kvm1/system?keyfile=id", "absolute path"),
            (
                "qemu+ssh://kvm1/system?known_hosts=/k",
                "needs qemu+libssh://",
            ),
            (
                "qemu+ssh://kvm1/system?sshauth=privkey",
                "does not take `sshauth`",
            ),
        ] {
            let e = parse_uri(uri).unwrap_err();
            assert!(e.contains(words), "{uri}: {e}");
        }
    }

    #[test]
    fn the_backend_resolves_with_defaults_and_located_errors() {
        assert_eq!(resolve(None, None), Ok(MachineBackend::Local));
        let MachineBackend::Libvirt(t) = resolve(Some(BackendKind::Libvirt), None).unwrap() else {
            panic!("not libvirt");
        };
        assert_eq!(
            (t.uri.as_str(), t.pool.as_str()),
            (DEFAULT_URI, DEFAULT_POOL)
        );
        let raw = RawLibvirt {
            pool: Some("a b".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve(Some(BackendKind::Libvirt), Some(&raw))
                .unwrap_err()
                .0,
            "libvirt.pool"
        );
        assert_eq!(
            resolve(None, Some(&RawLibvirt::default())).unwrap_err().0,
            "libvirt"
        );
        let raw = RawLibvirt {
            uri: Some("xen:///".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve(Some(BackendKind::Libvirt), Some(&raw))
                .unwrap_err()
                .0,
            "libvirt.uri"
        );
    }
}
