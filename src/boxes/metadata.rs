//! A box's `metadata.json` (Vagrant's libvirt format, with env's boot extension).

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Providers whose boxes hold a qcow2 disk that QEMU boots as is.
pub const SUPPORTED_PROVIDERS: &[&str] = &["libvirt", "qemu"];

/// One disk of a multi-disk (v2) libvirt box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// File name inside the box.
    pub path: String,
    /// Optional name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// env's own boot information: direct kernel boot, far faster than BIOS +
/// bootloader under TCG.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvBoot {
    /// Kernel file inside the box.
    pub kernel: Option<String>,
    /// Initrd file inside the box.
    pub initrd: Option<String>,
    /// Kernel command line.
    pub cmdline: Option<String>,
    /// Login user of the box.
    pub ssh_user: Option<String>,
    /// The box installs the SSH host key env passes through QEMU's fw_cfg
    /// (`opt/org.env/ssh_host_ed25519_key`), so env can pin it before the
    /// first connection.
    #[serde(default)]
    pub ssh_host_key_fw_cfg: bool,
}

/// `metadata.json` of a box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// `libvirt` (or `qemu`).
    pub provider: String,
    /// Disk format of the v1 form (`qcow2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Virtual disk size in GB (v1 form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<u64>,
    /// Disks of the v2 form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<Disk>,
    /// env's boot extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<EnvBoot>,
}

impl Metadata {
    /// Reads and checks `metadata.json` in a box folder.
    pub fn load(dir: &Path) -> Result<Metadata> {
        let path = dir.join("metadata.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("the box has no readable metadata.json ({})", path.display())
        })?;
        let meta: Metadata = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid box metadata", path.display()))?;
        meta.check(dir)?;
        Ok(meta)
    }

    /// Checks provider, format and that the files it names exist.
    pub fn check(&self, dir: &Path) -> Result<()> {
        if !SUPPORTED_PROVIDERS.contains(&self.provider.as_str()) {
            bail!(
                "the box is for provider `{}`; env boots boxes for {}",
                self.provider,
                SUPPORTED_PROVIDERS.join(" or ")
            );
        }
        if let Some(format) = &self.format
            && format != "qcow2"
        {
            bail!("the box's disk format is `{format}`; env boots qcow2 disks");
        }
        let named = self.disks.iter().map(|d| d.path.as_str()).chain(
            self.env
                .iter()
                .flat_map(|b| [&b.kernel, &b.initrd])
                .flatten()
                .map(String::as_str),
        );
        for file in named {
            let path = Path::new(file);
            let inside = !file.is_empty()
                && path
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !inside {
                bail!(
                    "the box's metadata names `{file}`: files must be inside the box (no absolute paths or `..`)"
                );
            }
        }
        for disk in self.disk_files() {
            if !dir.join(&disk).is_file() {
                bail!("the box's disk `{}` is missing", disk.display());
            }
        }
        if let Some(boot) = &self.env {
            for file in [&boot.kernel, &boot.initrd].into_iter().flatten() {
                if !dir.join(file).is_file() {
                    bail!("the box's boot file `{file}` is missing");
                }
            }
        }
        Ok(())
    }

    /// The box's disk files, the root disk first.
    pub fn disk_files(&self) -> Vec<PathBuf> {
        if self.disks.is_empty() {
            vec![PathBuf::from("box.img")]
        } else {
            self.disks.iter().map(|d| PathBuf::from(&d.path)).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_forms() {
        let v1: Metadata =
            serde_json::from_str(r#"{"provider":"libvirt","format":"qcow2","virtual_size":16}"#)
                .unwrap();
        assert_eq!(v1.disk_files(), [PathBuf::from("box.img")]);
        assert_eq!(v1.virtual_size, Some(16));
        let v2: Metadata = serde_json::from_str(
            r#"{"provider":"libvirt","disks":[{"path":"disk1.img"},{"path":"disk2.img","name":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(
            v2.disk_files(),
            [PathBuf::from("disk1.img"), PathBuf::from("disk2.img")]
        );
    }

    #[test]
    fn check_rejects_other_providers_formats_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let meta = |json: &str| serde_json::from_str::<Metadata>(json).unwrap();
        let err = meta(r#"{"provider":"virtualbox"}"#)
            .check(dir.path())
            .unwrap_err();
        assert!(err.to_string().contains("virtualbox"));
        let err = meta(r#"{"provider":"libvirt","format":"raw"}"#)
            .check(dir.path())
            .unwrap_err();
        assert!(err.to_string().contains("raw"));
        let err = meta(r#"{"provider":"libvirt","format":"qcow2"}"#)
            .check(dir.path())
            .unwrap_err();
        assert!(err.to_string().contains("box.img"));
        std::fs::write(dir.path().join("box.img"), "").unwrap();
        meta(r#"{"provider":"libvirt","format":"qcow2"}"#)
            .check(dir.path())
            .unwrap();
        let err = meta(r#"{"provider":"libvirt","env":{"kernel":"vmlinuz"}}"#)
            .check(dir.path())
            .unwrap_err();
        assert!(err.to_string().contains("vmlinuz"));
        for escaping in [
            r#"{"provider":"libvirt","disks":[{"path":"box.img"},{"path":"../other/box.img"}]}"#,
            r#"{"provider":"libvirt","disks":[{"path":"/etc/passwd"}]}"#,
            r#"{"provider":"libvirt","env":{"kernel":"../../boot/vmlinuz"}}"#,
        ] {
            let err = meta(escaping).check(dir.path()).unwrap_err();
            assert!(
                err.to_string().contains("inside the box"),
                "{escaping}: {err}"
            );
        }
    }
}
