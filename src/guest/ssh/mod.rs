//! The SSH communicator: OpenSSH client configuration, readiness, the first
//! contact (pin the host key, replace the well-known key), and commands over
//! one reused connection (ControlMaster).

use crate::machine::MachineDir;
use anyhow::{Context, Result, bail};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The well-known first-contact key every env box trusts (public knowledge,
/// like Vagrant's insecure key; replaced on first contact).
pub const WELL_KNOWN_KEY: &str = include_str!("../../../boxes/keys/insecure_ed25519");

/// Its public half (what a box's `authorized_keys` holds before first contact).
pub const WELL_KNOWN_PUBLIC_KEY: &str = include_str!("../../../boxes/keys/insecure_ed25519.pub");

/// How long an idle master connection stays up.
const CONTROL_PERSIST: &str = "10m";

/// Where Vagrant keeps its well-known insecure private keys, which boxes
/// made for Vagrant trust: the user's copies (`~/.vagrant.d`, written at
/// Vagrant's first use), HashiCorp's package under /opt/vagrant, and
/// Debian's `vagrant` package (`/usr/share/rubygems-integration`).
fn vagrant_key_patterns(home: Option<&Path>) -> Vec<String> {
    let mut patterns = Vec::new();
    if let Some(home) = home {
        let d = home.join(".vagrant.d");
        patterns.push(d.join("insecure_private_key").display().to_string());
        patterns.push(
            d.join("insecure_private_keys/vagrant.key.*")
                .display()
                .to_string(),
        );
    }
    patterns.extend(
        [
            "/opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant",
            "/opt/vagrant/embedded/gems/*/gems/vagrant-*/keys/vagrant",
            "/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant",
            "/usr/share/vagrant/keys/vagrant",
        ]
        .map(String::from),
    );
    patterns
}

/// The Vagrant insecure keys present on this host.
fn vagrant_keys(home: Option<&Path>) -> Vec<PathBuf> {
    let mut keys: Vec<PathBuf> = vagrant_key_patterns(home)
        .iter()
        .filter_map(|p| glob::glob(p).ok())
        .flat_map(|paths| paths.filter_map(Result::ok))
        .filter(|p| p.is_file())
        .collect();
    keys.dedup();
    keys
}

/// The Vagrant insecure private keys on this host, where Vagrant installs
/// them (`~/.vagrant.d`, its installer's and Debian's gem folders).
pub fn installed_vagrant_keys() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    vagrant_keys(home.as_deref())
}

/// The public halves of the Vagrant insecure keys on this host (the `.pub`
/// files Vagrant installs beside them).
pub fn vagrant_public_keys() -> Vec<String> {
    installed_vagrant_keys()
        .iter()
        .filter_map(|k| std::fs::read_to_string(format!("{}.pub", k.display())).ok())
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect()
}

/// What the client needs to reach one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Host alias (the machine name).
    pub alias: String,
    /// Host port forwarded to the guest's SSH.
    pub port: u16,
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
}

/// Renders an ssh_config block usable by `ssh -F`, Ansible and testinfra.
/// The host key must match the pinned one: no `StrictHostKeyChecking=no`.
pub fn render_config(t: &SshTarget) -> String {
    format!(
        "Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile \"{identity}\"\n  IdentitiesOnly yes\n  UserKnownHostsFile \"{known}\"\n  StrictHostKeyChecking yes\n  HostKeyAlias {hka}\n  ControlMaster auto\n  ControlPath \"{cp}\"\n  ControlPersist {persist}\n  PasswordAuthentication no\n  LogLevel ERROR\n",
        alias = t.alias,
        port = t.port,
        user = t.user,
        identity = t.identity.display(),
        known = t.known_hosts.display(),
        hka = t.host_key_alias,
        cp = t.control_path.display(),
        persist = CONTROL_PERSIST,
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
        ("ControlMaster", "auto".into()),
        ("ControlPath", t.control_path.display().to_string()),
        ("ControlPersist", CONTROL_PERSIST.into()),
        ("PasswordAuthentication", "no".into()),
        ("LogLevel", "ERROR".into()),
    ] {
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
        format!("{}@127.0.0.1", t.user),
    ]);
    args
}

/// The guest-side script that makes `public_key` the only authorized key.
pub fn replace_key_script(public_key: &str) -> String {
    let key = public_key.trim().replace('\'', "");
    format!(
        "set -e; umask 077; mkdir -p ~/.ssh; printf '%s\\n' '{key}' > ~/.ssh/authorized_keys.env-new; mv -f ~/.ssh/authorized_keys.env-new ~/.ssh/authorized_keys"
    )
}

/// The target for a machine's current boot.
pub fn target_for(dir: &MachineDir, port: u16, user: &str) -> Result<SshTarget> {
    Ok(SshTarget {
        alias: dir.name.clone(),
        port,
        user: user.into(),
        identity: dir.key(),
        known_hosts: dir.known_hosts(),
        host_key_alias: format!(
            "env-{}-{}",
            crate::util::paths::short_hash(&dir.root),
            dir.name
        ),
        control_path: dir.control_path()?,
    })
}

/// Waits until an SSH server greets on `port` ("SSH-2.0-..."), checking
/// `still_booting` between tries so that a dead QEMU fails at once.
/// QEMU's user networking accepts connections before the guest listens, so
/// only the banner proves sshd is there.
pub fn wait_for_banner(
    port: u16,
    deadline: Instant,
    mut still_booting: impl FnMut() -> Result<()>,
) -> Result<Duration> {
    let started = Instant::now();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
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

/// Creates an ed25519 key pair at `key` if there is none; returns the public key.
pub fn ensure_keypair(key: &Path, comment: &str) -> Result<String> {
    if !key.exists() {
        crate::util::process::run_checked(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(key),
            "cannot run ssh-keygen (install the OpenSSH client)",
            "ssh-keygen failed",
        )?;
    }
    let public = key.with_extension("pub");
    std::fs::read_to_string(&public).with_context(|| format!("cannot read {}", public.display()))
}

/// Keys to try on first contact, in order: the Envfile's, else env's
/// well-known key and any Vagrant insecure key installed on the host. Vagrant
/// installs its keys readable by everyone, which ssh refuses: env uses
/// private copies in the machine's folder (as Vagrant copies its key into
/// `~/.vagrant.d`).
pub fn first_contact_identities(
    dir: &MachineDir,
    configured: Option<&Path>,
) -> Result<Vec<PathBuf>> {
    identities(dir, configured, &installed_vagrant_keys())
}

fn identities(
    dir: &MachineDir,
    configured: Option<&Path>,
    vagrant_keys: &[PathBuf],
) -> Result<Vec<PathBuf>> {
    if let Some(key) = configured {
        anyhow::ensure!(
            key.is_file(),
            "the SSH key {} does not exist",
            key.display()
        );
        return Ok(vec![key.to_path_buf()]);
    }
    let well_known = dir.first_contact_key();
    write_private(&well_known, WELL_KNOWN_KEY)?;
    let mut keys = vec![well_known];
    for vagrant_key in vagrant_keys {
        let Ok(contents) = std::fs::read_to_string(vagrant_key) else {
            continue;
        };
        // Numbered without gaps: removal stops at the first missing copy.
        let copy = dir.vagrant_key_copy(keys.len() - 1);
        write_private(&copy, &contents)?;
        keys.push(copy);
    }
    Ok(keys)
}

/// Removes the first-contact keys written by [`first_contact_identities`]
/// except `keep` (the one still used when env inserts no key of its own).
pub fn remove_first_contact_keys(dir: &MachineDir, keep: Option<&Path>) {
    let copies = (0..)
        .map(|i| dir.vagrant_key_copy(i))
        .take_while(|p| p.exists());
    for key in std::iter::once(dir.first_contact_key()).chain(copies.collect::<Vec<_>>()) {
        if Some(key.as_path()) != keep {
            let _ = std::fs::remove_file(key);
        }
    }
}

/// Writes a private key readable by the user only.
fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
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
            Command::new("ssh")
                .args(first_contact_args(
                    t,
                    std::slice::from_ref(identity),
                    pinned,
                ))
                .arg(&script)
                .stdin(Stdio::null())
                .output()
                .context("cannot run ssh (install the OpenSSH client)")
        };
        match run_until_let_in(run, deadline)? {
            Outcome::LoggedIn => return Ok(identity.clone()),
            Outcome::KeyRefused => refusals.push(identity.display().to_string()),
            Outcome::Failed(stderr) => {
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
    let run = || {
        command(config, alias)
            .arg("true")
            .stdin(Stdio::null())
            .output()
            .context("cannot run ssh (install the OpenSSH client)")
    };
    match run_until_let_in(run, deadline)? {
        Outcome::LoggedIn => Ok(()),
        Outcome::KeyRefused => bail!("the guest refused the machine's key"),
        Outcome::Failed(stderr) => bail!("{stderr}"),
    }
}

/// How logging in ended, as far as the caller's next step goes.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
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
) -> Result<Outcome> {
    loop {
        let out = run()?;
        if out.status.success() {
            return Ok(Outcome::LoggedIn);
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        match classify(out.status.code(), &stderr) {
            Verdict::KeyRefused => return Ok(Outcome::KeyRefused),
            Verdict::NotYet if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(500))
            }
            Verdict::NotYet if stderr.is_empty() => {
                return Ok(Outcome::Failed(
                    "the guest closed the connection and let no user in before the boot timeout"
                        .into(),
                ));
            }
            _ => return Ok(Outcome::Failed(stderr)),
        }
    }
}

/// What an ssh exit means.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    KeyRefused,
    /// Worth trying again shortly: the guest is not letting users in yet.
    NotYet,
    /// The remote command failed, or the host key does not match.
    Final,
}

fn classify(code: Option<i32>, stderr: &str) -> Verdict {
    if code != Some(255) {
        Verdict::Final
    } else if stderr.contains("Permission denied") {
        Verdict::KeyRefused
    } else if stderr.contains("Host key verification failed")
        || stderr.contains("HOST IDENTIFICATION HAS CHANGED")
        || stderr.contains("Could not resolve")
    {
        Verdict::Final
    } else {
        Verdict::NotYet
    }
}

/// An `ssh` command for a machine, through its generated ssh_config.
pub fn command(config: &Path, alias: &str) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.arg("-F").arg(config);
    cmd.arg(alias);
    cmd
}

/// Runs `remote` on the machine (e.g. `sudo -n sh -s`) with `input` on its
/// stdin, capturing its output. The input is written and the output read
/// from threads, so a command that talks while it reads cannot block on a
/// full pipe. With a `limit`, ssh is killed when it runs longer.
pub fn run_with_input(
    config: &Path,
    alias: &str,
    remote: &str,
    input: &[u8],
    limit: Option<std::time::Duration>,
) -> anyhow::Result<std::process::Output> {
    use anyhow::Context;
    use std::io::{Read, Write};
    let mut child = command(config, alias)
        .arg(remote)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run ssh (install the OpenSSH client)")?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let drain = |mut source: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = source.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().context("no stdout")?));
    let stderr = drain(Box::new(child.stderr.take().context("no stderr")?));
    let deadline = limit.map(|l| std::time::Instant::now() + l);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if deadline.is_some_and(|d| std::time::Instant::now() > d) {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "`{remote}` on `{alias}` did not finish within {} s",
                limit.unwrap_or_default().as_secs()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let _ = feeder.join();
    Ok(std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Runs a shell script on the machine as root (`sudo -n sh -s`); a failure
/// becomes an error starting with `what` and quoting the script's stderr.
pub fn run_root_script(config: &Path, alias: &str, script: &str, what: &str) -> anyhow::Result<()> {
    let out = run_with_input(config, alias, "sudo -n sh -s", script.as_bytes(), None)?;
    if !out.status.success() {
        anyhow::bail!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// An `ssh` command on its own connection, not the master's: for a
/// long-lived stream that must not die with the master, and whose dead peer
/// (a halted or rewound guest) is noticed within 15 s.
pub fn own_connection_command(config: &Path, alias: &str) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.arg("-F").arg(config);
    cmd.args([
        "-o",
        "ControlMaster=no",
        "-o",
        "ControlPath=none",
        "-o",
        "ServerAliveInterval=5",
        "-o",
        "ServerAliveCountMax=3",
    ]);
    cmd.arg(alias);
    cmd
}

/// Closes the master connection (before the machine goes away).
pub fn close_master(control_path: &Path) {
    if control_path.exists() {
        let _ = Command::new("ssh")
            .args(["-F", "/dev/null", "-o"])
            .arg(format!("ControlPath={}", control_path.display()))
            .args(["-O", "exit", "env-master"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_file(control_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SshTarget {
        SshTarget {
            alias: "web".into(),
            port: 2222,
            user: "vagrant".into(),
            identity: "/p/.envstate/machines/web/id_ed25519".into(),
            known_hosts: "/p/.envstate/machines/web/known_hosts".into(),
            host_key_alias: "env-abc-web".into(),
            control_path: "/run/env/abc.ssh".into(),
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

    #[test]
    fn replacement_script_overwrites_authorized_keys() {
        let s = replace_key_script("ssh-ed25519 AAAA env machine key\n");
        assert!(s.contains("'ssh-ed25519 AAAA env machine key'"));
        assert!(s.contains("mv -f ~/.ssh/authorized_keys.env-new ~/.ssh/authorized_keys"));
        assert!(s.contains("umask 077"));
        assert!(!replace_key_script("a'b").contains("a'b"));
    }

    #[test]
    fn banner_wait_fails_fast_when_qemu_dies_and_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let err = wait_for_banner(port, Instant::now() + Duration::from_secs(5), || {
            bail!("QEMU exited")
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "QEMU exited");
        drop(listener);
        let err = wait_for_banner(port, Instant::now(), || Ok(())).unwrap_err();
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
        wait_for_banner(port, Instant::now() + Duration::from_secs(5), || Ok(())).unwrap();
        server.join().unwrap();
    }

    #[test]
    fn vagrant_keys_are_found_where_vagrant_installs_them() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        // ~/.vagrant.d as Vagrant 2.4 leaves it.
        let keys = home.join(".vagrant.d/insecure_private_keys");
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::write(keys.join("vagrant.key.ed25519"), "k").unwrap();
        std::fs::write(keys.join("vagrant.key.rsa"), "k").unwrap();
        std::fs::write(home.join(".vagrant.d/insecure_private_key"), "k").unwrap();
        let found = vagrant_keys(Some(home));
        let in_home = found.iter().filter(|k| k.starts_with(home)).count();
        assert_eq!(in_home, 3, "{found:?}");
        // Debian's package layout (vagrant 2.3.4+dfsg, bookworm).
        assert!(vagrant_key_patterns(None).iter().any(|p| {
            glob::Pattern::new(p)
                .unwrap()
                .matches("/usr/share/rubygems-integration/all/gems/vagrant-2.3.4/keys/vagrant")
        }));
    }

    #[test]
    fn ssh_failures_are_told_apart() {
        assert_eq!(
            classify(
                Some(255),
                "vagrant@127.0.0.1: Permission denied (publickey)."
            ),
            Verdict::KeyRefused
        );
        assert_eq!(
            classify(Some(255), "Host key verification failed."),
            Verdict::Final
        );
        assert_eq!(
            classify(Some(1), "Permission denied"),
            Verdict::Final,
            "the command failed"
        );
        // pam_nologin while the guest boots: with LogLevel=ERROR ssh says nothing.
        assert_eq!(classify(Some(255), ""), Verdict::NotYet);
        assert_eq!(
            classify(
                Some(255),
                "System is booting up.\nConnection closed by 127.0.0.1 port 2222"
            ),
            Verdict::NotYet
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
        assert_eq!((result, tries.get()), (Outcome::LoggedIn, 3));
        let result = run_until_let_in(|| Ok(exit(255, "")), Instant::now()).unwrap();
        assert!(matches!(result, Outcome::Failed(m) if m.contains("boot timeout")));
        let result =
            run_until_let_in(|| Ok(exit(255, "Permission denied (publickey)")), later).unwrap();
        assert_eq!(result, Outcome::KeyRefused);
    }

    #[test]
    fn vagrant_keys_get_private_copies_removed_after_first_contact() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir_all(home.join(".vagrant.d")).unwrap();
        let key = home.join(".vagrant.d/insecure_private_key");
        std::fs::write(&key, "vagrant key").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let dir = MachineDir::new(&tmp.path().join("state"), "web");
        std::fs::create_dir_all(&dir.root).unwrap();
        let keys = identities(&dir, None, &vagrant_keys(Some(&home))).unwrap();
        assert_eq!(keys[0], dir.first_contact_key());
        let copy = keys
            .iter()
            .find(|k| std::fs::read_to_string(k).unwrap() == "vagrant key")
            .expect("a copy of the Vagrant key");
        assert!(copy.starts_with(&dir.root));
        let mode = std::fs::metadata(copy).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        remove_first_contact_keys(&dir, Some(copy));
        assert!(copy.exists() && !dir.first_contact_key().exists());
        remove_first_contact_keys(&dir, None);
        assert!(!copy.exists());
    }

    #[test]
    fn well_known_key_is_embedded() {
        assert!(WELL_KNOWN_KEY.contains("OPENSSH PRIVATE KEY"));
    }
}
