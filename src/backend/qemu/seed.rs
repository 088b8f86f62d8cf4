//! The cloud-init seed as a medium: a small VFAT image labelled `CIDATA`
//! (NoCloud's label), written in pure Rust (the `fatfs` crate: no mkfs,
//! mtools or ISO tool on the host), attached read-only as a virtio disk.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// NoCloud finds its seed by this filesystem label.
const LABEL: &[u8; 11] = b"CIDATA     ";

/// Writes `files` into a fresh VFAT image at `path` (replaced atomically).
pub fn write_seed(path: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    let total: u64 = files.iter().map(|(_, data)| data.len() as u64).sum();
    // FAT12 wants some room for its tables; the files are small.
    let size = (total * 2 + (512 << 10)).max(1 << 20).next_multiple_of(512);
    let tmp = path.with_extension("img.new");
    let result = (|| -> Result<()> {
        let mut image = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        image.set_len(size)?;
        fatfs::format_volume(
            &mut image,
            fatfs::FormatVolumeOptions::new()
                .volume_label(*LABEL)
                .fat_type(fatfs::FatType::Fat12),
        )?;
        {
            let fs = fatfs::FileSystem::new(&mut image, fatfs::FsOptions::new())?;
            for (name, data) in files {
                fs.root_dir().create_file(name)?.write_all(data)?;
            }
            fs.unmount()?;
        }
        image.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e)
            .with_context(|| format!("cannot write the cloud-init seed {}", path.display()));
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot write the cloud-init seed {}", path.display()))?;
    crate::util::fs::make_private(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_seed_is_a_cidata_volume_with_long_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed.img");
        let files = vec![
            ("meta-data".to_string(), b"instance-id: x\n".to_vec()),
            ("user-data".to_string(), vec![b'#'; 70_000]),
            ("network-config".to_string(), b"version: 2\n".to_vec()),
        ];
        write_seed(&path, &files).unwrap();
        let image = std::fs::File::open(&path).unwrap();
        let fs = fatfs::FileSystem::new(image, fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.volume_label(), "CIDATA");
        let names: Vec<String> = fs
            .root_dir()
            .iter()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["meta-data", "user-data", "network-config"]);
        let mut read = Vec::new();
        fs.root_dir()
            .open_file("user-data")
            .unwrap()
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, files[1].1);
    }
}
