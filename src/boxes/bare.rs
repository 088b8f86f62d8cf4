//! Bare disk images as distributions publish them (a cloud image: qcow2 or
//! raw, cloud-init inside) become boxes: the image is the box's disk, and
//! env writes the `metadata.json` a box carries, from what the image shows
//! and what the image index knows of it.

use super::archive::BOX_IMAGE;
use super::image::{ImageFormat, first_sector, inspect, qcow2_virtual_size};
use super::metadata::{EnvBoot, Firmware, Metadata};
use anyhow::{Context, Result};
use std::io::Read;
use std::path::Path;

/// The login user env creates through cloud-init when nothing names one.
pub const DEFAULT_CLOUD_USER: &str = "env";

/// What is known of an image beyond its bytes (from the image index).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageHints {
    /// The distribution's default user (env creates it with its key).
    pub user: Option<String>,
    /// How it boots; otherwise read from the image's boot sector.
    pub firmware: Option<Firmware>,
    /// Shared-folder kinds its kernel supports.
    pub folders: Option<Vec<String>>,
}

/// Whether an unpacked download is a bare image (a disk and no metadata).
pub fn is_bare(dir: &Path) -> bool {
    dir.join(BOX_IMAGE).is_file() && !dir.join("metadata.json").exists()
}

/// How an image boots, from its first sector: no boot code there means
/// only UEFI can start it (an image with both, as most cloud images are,
/// boots through BIOS, the faster under emulation).
pub fn firmware_of(first_sector: &[u8]) -> Firmware {
    if first_sector.len() >= 440 && first_sector[..440].iter().all(|b| *b == 0) {
        Firmware::Uefi
    } else {
        Firmware::Bios
    }
}

/// The metadata of a bare image in `dir`.
pub fn metadata_for(dir: &Path, hints: &ImageHints) -> Result<Metadata> {
    let disk = dir.join(BOX_IMAGE);
    let format = inspect(&disk)?;
    let bytes = match format {
        ImageFormat::Qcow2 => {
            let mut header = Vec::new();
            std::fs::File::open(&disk)?
                .take(112)
                .read_to_end(&mut header)?;
            qcow2_virtual_size(&header).context("the image's qcow2 header has no size")?
        }
        ImageFormat::Raw => std::fs::metadata(&disk)?.len(),
    };
    let firmware = match hints.firmware {
        Some(f) => f,
        None => first_sector(&disk)?
            .map(|s| firmware_of(&s))
            .unwrap_or(Firmware::Bios),
    };
    Ok(Metadata {
        provider: "libvirt".into(),
        format: Some(format.name().into()),
        virtual_size: Some(bytes.div_ceil(1 << 30)),
        disks: Vec::new(),
        env: Some(EnvBoot {
            ssh_user: Some(
                hints
                    .user
                    .clone()
                    .unwrap_or_else(|| DEFAULT_CLOUD_USER.into()),
            ),
            cloud_init: true,
            firmware: Some(firmware),
            folders: hints.folders.clone(),
            ..EnvBoot::default()
        }),
    })
}

/// Makes the bare image in `dir` a box: writes its `metadata.json`.
pub fn complete(dir: &Path, hints: &ImageHints) -> Result<()> {
    let metadata = metadata_for(dir, hints)?;
    let text = serde_json::to_string_pretty(&metadata)?;
    crate::util::fs::write_atomic(&dir.join("metadata.json"), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_without_boot_code_is_uefi_only() {
        let mut sector = vec![0u8; 512];
        sector[510..].copy_from_slice(&[0x55, 0xaa]);
        assert_eq!(firmware_of(&sector), Firmware::Uefi);
        sector[0] = 0xeb;
        assert_eq!(firmware_of(&sector), Firmware::Bios);
    }

    #[test]
    fn a_raw_image_gets_metadata_from_its_bytes_and_the_hints() {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = vec![0u8; 3 << 20];
        disk[0] = 0xeb;
        disk[510..512].copy_from_slice(&[0x55, 0xaa]);
        std::fs::write(dir.path().join(BOX_IMAGE), &disk).unwrap();
        assert!(is_bare(dir.path()));
        let hints = ImageHints {
            user: Some("debian".into()),
            firmware: None,
            folders: Some(vec!["virtiofs".into()]),
        };
        complete(dir.path(), &hints).unwrap();
        assert!(!is_bare(dir.path()));
        let meta = Metadata::load(dir.path()).unwrap();
        assert_eq!(meta.format.as_deref(), Some("raw"));
        assert_eq!(meta.virtual_size, Some(1));
        let env = meta.env.unwrap();
        assert!(env.cloud_init);
        assert_eq!(env.ssh_user.as_deref(), Some("debian"));
        assert_eq!(env.firmware, Some(Firmware::Bios));
        assert_eq!(env.folders, Some(vec!["virtiofs".to_string()]));
    }

    #[test]
    fn a_qcow2_image_declares_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut header = crate::boxes::image::empty_qcow2_header();
        header[24..32].copy_from_slice(&(5u64 << 29).to_be_bytes());
        std::fs::write(dir.path().join(BOX_IMAGE), &header).unwrap();
        let meta = metadata_for(dir.path(), &ImageHints::default()).unwrap();
        assert_eq!(meta.virtual_size, Some(3));
        assert_eq!(
            meta.env.unwrap().ssh_user.as_deref(),
            Some(DEFAULT_CLOUD_USER)
        );
    }
}
