//! What env remembers of a machine on a libvirt host (`libvirt.json` in
//! the machine's folder): where it lives and the names it has there. Its
//! presence is what makes a machine a libvirt one.

use crate::machine::MachineDir;
use crate::util::fs::write_atomic;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File name of the record in the machine's folder.
pub const RECORD_FILE: &str = "libvirt.json";

/// A machine on a libvirt host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Connection URI.
    pub uri: String,
    /// Storage pool.
    pub pool: String,
    /// The pool's folder on the host (volume paths are in it).
    #[serde(default)]
    pub pool_path: String,
    /// The project's identity (prefix of every name below).
    pub project_id: String,
    /// Domain name.
    pub domain: String,
    /// Overlay volumes on the box's disks, the root disk first.
    pub box_disks: Vec<String>,
    /// The box's volumes the overlays stand on.
    pub box_volumes: Vec<String>,
    /// Kernel and initrd volumes, when the box boots its kernel directly.
    pub kernel: Option<String>,
    /// Initrd volume.
    pub initrd: Option<String>,
    /// Data disk volumes: name and whether it is kept across destroys.
    #[serde(default)]
    pub data_disks: Vec<(String, bool)>,
    /// The private network it joined, when env made it for the project.
    #[serde(default)]
    pub own_network: Option<String>,
    /// It boots through UEFI (its snapshots are volume copies).
    #[serde(default)]
    pub uefi: bool,
    /// The ports its domain forwards, kept across boots.
    #[serde(default)]
    pub ports: Option<super::domain_ports::DomainPorts>,
}

impl Record {
    /// The record's path.
    pub fn path(dir: &MachineDir) -> PathBuf {
        dir.root.join(RECORD_FILE)
    }

    /// The record of a machine, None for a machine of another backend.
    pub fn load(dir: &MachineDir) -> Result<Option<Record>> {
        Self::load_from(&Self::path(dir))
    }

    fn load_from(path: &Path) -> Result<Option<Record>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is damaged", path.display()))
                .map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the record.
    pub fn save(&self, dir: &MachineDir) -> Result<()> {
        write_atomic(&Self::path(dir), &serde_json::to_vec_pretty(self)?)
    }

    /// Where data disk `name` is among the machine's data disks.
    pub fn data_position(&self, name: &str) -> Option<usize> {
        let suffix = format!("-data-{name}.");
        self.data_disks
            .iter()
            .position(|(v, _)| v.contains(&suffix))
    }

    /// Volume of the SSH host key.
    pub fn host_key_volume(&self) -> String {
        format!("{}-hostkey", self.domain)
    }

    /// Volume of the console log.
    pub fn console_volume(&self) -> String {
        format!("{}-console.log", self.domain)
    }

    /// Volume of the cloud-init seed.
    pub fn seed_volume(&self) -> String {
        format!("{}-seed.img", self.domain)
    }

    /// File name of the UEFI variables (libvirt writes it; a volume after
    /// a pool refresh).
    pub fn vars_volume(&self) -> String {
        format!("{}-VARS.fd", self.domain)
    }

    /// Every volume that goes with the machine on destroy (kept data disks
    /// stay).
    pub fn own_volumes(&self) -> Vec<String> {
        let mut all = self.box_disks.clone();
        all.extend(
            self.data_disks
                .iter()
                .filter(|(_, keep)| !keep)
                .map(|(v, _)| v.clone()),
        );
        all.extend([
            self.host_key_volume(),
            self.console_volume(),
            self.seed_volume(),
            self.vars_volume(),
        ]);
        all
    }
}

/// Name of a box file's volume: shared by every machine on the host that
/// uses the same file (the digest is in the name).
pub fn box_volume(box_name: &str, version: &str, digest: &str, file: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!(
        "env-box-{}-{}-{}-{}",
        clean(box_name),
        clean(version),
        &digest[..digest.len().min(16)],
        clean(file)
    )
}

/// The marker volume written after a box volume's upload completed (its
/// content: the file's SHA-256).
pub fn done_marker(volume: &str) -> String {
    format!("{volume}.sha256")
}

/// The project's identity on libvirt hosts: the developer's host, user
/// and project state folder, hashed. Kept data disks are found again by it
/// after a destroy.
pub fn project_id(state_dir: &Path, host: &str, user: &str) -> String {
    let key = format!("{host}\n{user}\n{}", state_dir.display());
    crate::util::paths::short_hash(Path::new(&key))[..12].to_string()
}

/// Volume name of a data disk.
pub fn data_volume(project_id: &str, machine: &str, disk: &str, format: &str) -> String {
    format!("env-{project_id}-{machine}-data-{disk}.{format}")
}

/// Domain name of a machine.
pub fn domain_name(project_id: &str, machine: &str) -> String {
    format!("env-{project_id}-{machine}")
}

/// Name of the project's isolated private network.
pub fn network_name(project_id: &str) -> String {
    format!("env-{project_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_project_and_digest() {
        let id = project_id(Path::new("/p/.envstate"), "laptop", "dev");
        assert_eq!(id.len(), 12);
        assert_ne!(id, project_id(Path::new("/p/.envstate"), "laptop2", "dev"));
        assert_ne!(id, project_id(Path::new("/p/.envstate"), "laptop", "ci"));
        assert_eq!(domain_name(&id, "web"), format!("env-{id}-web"));
        assert_eq!(
            box_volume("org/deb ian", "1.0", "abcdef0123456789abcdef", "box.img"),
            "env-box-org_deb_ian-1.0-abcdef0123456789-box.img"
        );
        assert_eq!(done_marker("v"), "v.sha256");
    }

    #[test]
    fn hostile_box_names_and_files_make_plain_volume_names() {
        // Box metadata is untrusted: its file names reach virsh as volume
        // names (arguments, and words of a batch line).
        for file in ["../../etc/passwd", "a;b c", "x\"y'z$(id)", "disk\n1"] {
            let v = box_volume("org/evil box", "1.0;rm", "0123456789abcdef00", file);
            assert!(
                v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
                "{v}"
            );
            assert!(!v.contains('/'), "{v}");
        }
    }

    #[test]
    fn destroy_spares_kept_disks() {
        let r = Record {
            uri: "qemu:///system".into(),
            pool: "default".into(),
            pool_path: "/pool".into(),
            project_id: "p".into(),
            domain: "env-p-web".into(),
            box_disks: vec!["env-p-web-disk0.qcow2".into()],
            box_volumes: vec!["env-box-x".into()],
            kernel: None,
            initrd: None,
            data_disks: vec![("kept".into(), true), ("scratch".into(), false)],
            own_network: None,
            uefi: false,
            ports: None,
        };
        let own = r.own_volumes();
        assert!(own.contains(&"scratch".to_string()));
        assert!(!own.contains(&"kept".to_string()));
        assert!(!own.contains(&"env-box-x".to_string()));
        assert!(own.contains(&"env-p-web-hostkey".to_string()));
    }
}
