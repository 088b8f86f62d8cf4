//! Keys: env's well-known first-contact key, Vagrant's insecure keys
//! where Vagrant installs them, per-machine key pairs, and the private
//! copies first contact tries.

use crate::machine::MachineDir;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The well-known first-contact key every env box trusts (public knowledge,
/// like Vagrant's insecure key; replaced on first contact).
pub const WELL_KNOWN_KEY: &str = include_str!("../../../boxes/keys/insecure_ed25519");

/// Its public half (what a box's `authorized_keys` holds before first contact).
pub const WELL_KNOWN_PUBLIC_KEY: &str = include_str!("../../../boxes/keys/insecure_ed25519.pub");

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

/// Creates an ed25519 key pair at `key` if there is none; returns the public key.
pub fn ensure_keypair(key: &Path, comment: &str) -> Result<String> {
    if !key.exists() {
        crate::util::process::run_limited(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(key),
            crate::util::process::HELPER_LIMIT,
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

#[cfg(test)]
mod tests {
    use super::*;

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
