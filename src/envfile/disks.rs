//! Data disks in the Envfile: extra virtio disks, optionally kept across
//! `destroy` (a database's data is not cattle), optionally formatted and
//! mounted at a guest path.

use super::error::{EnvfileError, Step, entry_field_error};
use crate::util::size::Size;
use serde::Deserialize;
use std::path::Path;

/// Disk image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// qcow2 (sparse, default).
    #[default]
    Qcow2,
    /// raw.
    Raw,
}

impl DiskFormat {
    /// The format's name for QEMU and file extensions.
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }
}

/// A disk as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDisk {
    /// Name: the guest finds it as `/dev/disk/by-id/virtio-env-NAME`.
    pub name: String,
    /// Size.
    pub size: Size,
    /// `qcow2` (default) or `raw`.
    pub format: Option<DiskFormat>,
    /// Outlives the machine (`destroy` keeps it; `--purge-disks` removes it).
    pub keep: Option<bool>,
    /// Guest path where it is mounted (ext4, made on first use).
    pub mount: Option<String>,
}

/// A validated disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Name.
    pub name: String,
    /// Size.
    pub size: Size,
    /// Format.
    pub format: DiskFormat,
    /// Kept across destroy.
    pub keep: bool,
    /// Mount point in the guest.
    pub mount: Option<String>,
}

/// Longest disk name: virtio-blk serials hold 20 bytes, `env-` takes 4.
pub const MAX_NAME: usize = 16;

/// Validates the disks written at `at`; `taken` are names already used.
pub fn resolve(
    file: &Path,
    text: &str,
    raw: &[RawDisk],
    at: &[Step],
    taken: &[Disk],
) -> Result<Vec<Disk>, EnvfileError> {
    let mut out: Vec<Disk> = Vec::new();
    for (i, d) in raw.iter().enumerate() {
        let fail =
            |field: &str, message: String| entry_field_error(file, text, at, i, field, message);
        let valid = !d.name.is_empty()
            && d.name.len() <= MAX_NAME
            && d.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(fail(
                "name",
                format!(
                    "`{}` is not a disk name: 1 to {MAX_NAME} letters, digits, `-` or `_`",
                    d.name
                ),
            ));
        }
        if out.iter().chain(taken).any(|o| o.name == d.name) {
            return Err(fail("name", format!("two disks are named `{}`", d.name)));
        }
        if let Some(m) = &d.mount
            && (!m.starts_with('/') || m == "/" || m.split('/').any(|p| p == ".."))
        {
            return Err(fail(
                "mount",
                format!("`{m}` must be an absolute guest path other than /"),
            ));
        }
        out.push(Disk {
            name: d.name.clone(),
            size: d.size,
            format: d.format.unwrap_or_default(),
            keep: d.keep.unwrap_or(false),
            mount: d.mount.clone(),
        });
    }
    Ok(out)
}
