//! A box on a libvirt host: each of its files (disks, kernel, initrd)
//! uploaded once per host into the storage pool, as a volume named by the
//! file's SHA-256, and reused by every machine there. A marker volume
//! written after the upload says it completed; a volume without one is a
//! cut-short upload and is made again.

use super::record::{box_volume, done_marker};
use super::virsh::Virsh;
use crate::boxes::StoredBox;
use crate::boxes::digest::sha256_file;
use crate::util::{lock, paths, ui};
use anyhow::{Context, Result};
use std::path::Path;
use std::time::UNIX_EPOCH;

/// The SHA-256 of a box file, computed once per file (cached by path, size
/// and modification time under env's data folder).
pub fn file_digest(file: &Path) -> Result<String> {
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let cache = paths::data_home()?.join("libvirt-digests");
    std::fs::create_dir_all(&cache)?;
    let entry = cache.join(format!(
        "{}-{}-{mtime}",
        paths::short_hash(file),
        meta.len()
    ));
    if let Ok(digest) = std::fs::read_to_string(&entry)
        && digest.len() == 64
    {
        return Ok(digest);
    }
    let digest = sha256_file(file)?;
    crate::util::fs::write_atomic(&entry, digest.as_bytes())?;
    Ok(digest)
}

/// One box file as a volume of the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxVolume {
    /// Volume name.
    pub name: String,
    /// Its format (`qcow2`, `raw`).
    pub format: String,
}

/// Makes sure every file of the box the machine needs is a volume of the
/// pool: `files` are (file in the box folder, format), `present` the
/// pool's volumes. Returns the volumes in the same order.
pub fn ensure_box(
    virsh: &Virsh,
    pool: &str,
    stored: &StoredBox,
    files: &[(String, String)],
    machine: &str,
    present: &[String],
) -> Result<Vec<BoxVolume>> {
    let mut volumes = Vec::new();
    for (file, format) in files {
        let path = stored.dir.join(file);
        let digest = file_digest(&path)?;
        let name = box_volume(&stored.name, &stored.version, &digest, file);
        let marker = done_marker(&name);
        if !(present.contains(&name) && present.contains(&marker)) {
            // Two machines of one project (or two projects) uploading the same
            // file from this host: one uploads, the other waits and reuses.
            let key = paths::short_hash(Path::new(&format!("{}\n{pool}\n{name}", virsh.uri)));
            let lock_path = paths::runtime_dir()?.join(format!("libvirt-upload-{key}.lock"));
            let _lock = lock::exclusive(&lock_path, "a box upload to the libvirt host")?;
            let again = virsh.volumes(pool)?;
            if !(again.contains(&name) && again.contains(&marker)) {
                upload(virsh, pool, &path, &name, &digest, machine)?;
            }
        }
        volumes.push(BoxVolume {
            name,
            format: format.clone(),
        });
    }
    Ok(volumes)
}

/// Uploads one file as volume `name`, then its marker.
fn upload(
    virsh: &Virsh,
    pool: &str,
    path: &Path,
    name: &str,
    digest: &str,
    machine: &str,
) -> Result<()> {
    let size = std::fs::metadata(path)?.len();
    let spinner = ui::spinner(
        machine,
        &format!(
            "uploading {} ({}) to pool `{pool}`",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
            ui::human_bytes(size)
        ),
    );
    let marker = done_marker(name);
    virsh.vol_delete(pool, &marker)?;
    virsh.vol_delete(pool, name)?;
    // Created raw: the upload writes the file's bytes as they are, and
    // libvirt reads the format (qcow2) from them on its next refresh.
    virsh.vol_create(pool, name, size, "raw", &[])?;
    virsh.upload(pool, name, path)?;
    let digest_file = tempfile::NamedTempFile::new()?;
    std::fs::write(digest_file.path(), digest)?;
    virsh.vol_create(pool, &marker, digest.len() as u64, "raw", &[])?;
    virsh.upload(pool, &marker, digest_file.path())?;
    spinner.finish_and_clear();
    ui::step(machine, &format!("box file uploaded as volume `{name}`"));
    Ok(())
}
