//! A box's `metadata.json` (Vagrant's libvirt format, with env's boot extension).

use super::image::inspect;
use crate::util::names::check_user_name;
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
    /// The image configures itself with cloud-init: env gives each machine
    /// a NoCloud seed (user, key, host keys, name, network).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cloud_init: bool,
    /// How the image boots: `bios` or `uefi` (default: BIOS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<Firmware>,
    /// Shared-folder kinds the image's kernel supports (`9p`, `virtiofs`),
    /// when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folders: Option<Vec<String>>,
}

/// How a machine's firmware starts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// SeaBIOS, the boot sector's code (GRUB, syslinux).
    Bios,
    /// UEFI (OVMF), the EFI system partition's loader.
    Uefi,
}

impl Firmware {
    /// The word the Envfile and the index use.
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        }
    }
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
        let format = self.disk_format();
        if !["qcow2", "raw"].contains(&format) {
            bail!("the box's disk format is `{format}`; env boots qcow2 and raw disks");
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
        if let Some(user) = self.env.as_ref().and_then(|e| e.ssh_user.as_deref()) {
            check_user_name(user)
                .map_err(|e| anyhow::anyhow!("the box's metadata `env.ssh_user`: {e}"))?;
        }
        for disk in self.disk_files() {
            let found = inspect(&regular_file_inside(dir, &disk, "disk")?)?;
            if found.name() != format {
                bail!(
                    "the box's disk `{}` is {}, not {format} as its metadata says",
                    disk.display(),
                    found.name()
                );
            }
        }
        if let Some(boot) = &self.env {
            for file in [&boot.kernel, &boot.initrd].into_iter().flatten() {
                regular_file_inside(dir, Path::new(file), "boot file")?;
            }
        }
        Ok(())
    }

    /// The format of the box's disks (`qcow2` unless it says `raw`).
    pub fn disk_format(&self) -> &str {
        self.format.as_deref().unwrap_or("qcow2")
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

/// `dir/file` as a regular file that really is inside `dir`: the name's
/// last component is no link, and once every link on the way is resolved
/// the file is still inside the box (a chain like `x -> .`, `x/x/y -> ../..`
/// is caught here, whatever each link looked like as text).
fn regular_file_inside(dir: &Path, file: &Path, what: &str) -> Result<PathBuf> {
    let path = dir.join(file);
    let missing = || anyhow::anyhow!("the box's {what} `{}` is missing", file.display());
    let meta = std::fs::symlink_metadata(&path).map_err(|_| missing())?;
    if !meta.file_type().is_file() {
        bail!(
            "the box's {what} `{}` is not a regular file (a link or a folder)",
            file.display()
        );
    }
    let (real_dir, real) = (
        dir.canonicalize()?,
        path.canonicalize().map_err(|_| missing())?,
    );
    if !real.starts_with(&real_dir) {
        bail!(
            "the box's {what} `{}` leads outside the box (through a link)",
            file.display()
        );
    }
    Ok(real)
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
        let err = meta(r#"{"provider":"libvirt","format":"vmdk"}"#)
            .check(dir.path())
            .unwrap_err();
        assert!(err.to_string().contains("vmdk"));
        let err = meta(r#"{"provider":"libvirt","format":"qcow2"}"#)
            .check(dir.path())
            .unwrap_err();
        assert!(err.to_string().contains("box.img"));
        std::fs::write(dir.path().join("box.img"), "").unwrap();
        let err = meta(r#"{"provider":"libvirt","format":"qcow2"}"#)
            .check(dir.path())
            .unwrap_err();
        assert!(err.to_string().contains("not qcow2"), "{err}");
        std::fs::write(
            dir.path().join("box.img"),
            crate::boxes::image::empty_qcow2_header(),
        )
        .unwrap();
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

    #[test]
    fn hostile_boxes_are_refused() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let meta = |json: &str| serde_json::from_str::<Metadata>(json).unwrap();
        std::fs::write(
            root.join("box.img"),
            crate::boxes::image::empty_qcow2_header(),
        )
        .unwrap();
        // A user name that ssh would read as an option.
        let err =
            meta(r#"{"provider":"libvirt","env":{"ssh_user":"-oProxyCommand=touch${IFS}/tmp/x"}}"#)
                .check(root)
                .unwrap_err();
        assert!(format!("{err:#}").contains("env.ssh_user"), "{err:#}");
        // A chain of links, each lexically inside, that leads to `/`.
        symlink(".", root.join("x")).unwrap();
        symlink("../../../../../../../../..", root.join("x/x/x/y")).unwrap();
        let err = meta(r#"{"provider":"libvirt","env":{"kernel":"y/etc/hostname"}}"#)
            .check(root)
            .unwrap_err();
        assert!(err.to_string().contains("outside the box"), "{err}");
        // A disk that is a link, even to a file inside.
        symlink("box.img", root.join("link.img")).unwrap();
        let err = meta(r#"{"provider":"libvirt","disks":[{"path":"link.img"}]}"#)
            .check(root)
            .unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        // A qcow2 disk whose backing file names a host file.
        let mut header = crate::boxes::image::empty_qcow2_header();
        header[15] = 0x70;
        std::fs::write(root.join("backed.img"), header).unwrap();
        let err = meta(r#"{"provider":"libvirt","disks":[{"path":"backed.img"}]}"#)
            .check(root)
            .unwrap_err();
        assert!(format!("{err:#}").contains("backing file"), "{err:#}");
    }
}
