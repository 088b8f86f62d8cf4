//! Disk images from boxes are untrusted: before env hands one to QEMU or
//! `qemu-img`, its header is read here (pure Rust, no QEMU probing) and only
//! an allow-list passes: qcow2 without a backing file and without an
//! external data file (either would make QEMU open a host file of the box's
//! choosing, `/etc/shadow` say), or raw. Every drive and backing reference
//! env writes names its format, so a guest that writes a qcow2 header into
//! a raw disk cannot make QEMU follow it later.

use anyhow::{Context, Result, bail};
use std::io::Read;
use std::path::Path;

/// The formats env accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// qcow2, self-contained.
    Qcow2,
    /// Anything without a qcow2 header, used as raw bytes.
    Raw,
}

impl ImageFormat {
    /// QEMU's name for it.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Raw => "raw",
        }
    }
}

const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";

/// Incompatible feature bit of a qcow2 v3 image with an external data file.
const EXTERNAL_DATA_FILE: u64 = 1 << 2;

/// Reads the header of the image at `path` and checks it against the
/// allow-list.
pub fn inspect(path: &Path) -> Result<ImageFormat> {
    let mut header = Vec::with_capacity(112);
    std::fs::File::open(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .take(112)
        .read_to_end(&mut header)
        .with_context(|| format!("cannot read {}", path.display()))?;
    check_header(&header).with_context(|| format!("the disk image {}", path.display()))
}

/// The allow-list, on an image's first bytes.
pub fn check_header(header: &[u8]) -> Result<ImageFormat> {
    if header.len() < 4 || &header[..4] != QCOW2_MAGIC {
        return Ok(ImageFormat::Raw);
    }
    let be32 = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(header.get(at..at + 4)?.try_into().ok()?))
    };
    let be64 = |at: usize| -> Option<u64> {
        Some(u64::from_be_bytes(header.get(at..at + 8)?.try_into().ok()?))
    };
    let (Some(version), Some(backing_offset)) = (be32(4), be64(8)) else {
        bail!("has a truncated qcow2 header");
    };
    if !(2..=3).contains(&version) {
        bail!("is qcow2 version {version}; env reads versions 2 and 3");
    }
    if backing_offset != 0 {
        bail!(
            "is a qcow2 image with a backing file: a box's disk must stand alone (a backing file could name any file of this host)"
        );
    }
    if version == 3 {
        let features = be64(72).context("has a truncated qcow2 v3 header")?;
        if features & EXTERNAL_DATA_FILE != 0 {
            bail!("is a qcow2 image with an external data file: a box's disk must stand alone");
        }
    }
    Ok(ImageFormat::Qcow2)
}

/// The virtual size a qcow2 header declares (bytes 24..32).
pub fn qcow2_virtual_size(header: &[u8]) -> Option<u64> {
    if !header.starts_with(QCOW2_MAGIC) {
        return None;
    }
    Some(u64::from_be_bytes(header.get(24..32)?.try_into().ok()?))
}

/// The first sector of the disk an image holds (raw, or qcow2 through its
/// L1 and L2 tables, compressed clusters included), read in pure Rust:
/// `None` when it cannot be told (a table points nowhere sensible).
pub fn first_sector(path: &Path) -> Result<Option<Vec<u8>>> {
    use std::io::{Seek, SeekFrom};
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut header = vec![0u8; 112];
    let n = file.read(&mut header)?;
    header.truncate(n);
    let mut read_at = |offset: u64, len: usize| -> Option<Vec<u8>> {
        let mut buf = vec![0u8; len];
        file.seek(SeekFrom::Start(offset)).ok()?;
        file.read_exact(&mut buf).ok()?;
        Some(buf)
    };
    if check_header(&header)? == ImageFormat::Raw {
        return Ok(read_at(0, 512));
    }
    let be32 =
        |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap_or_default());
    let be64 =
        |b: &[u8], at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap_or_default());
    if header.len() < 104 {
        return Ok(None);
    }
    let cluster_bits = be32(&header, 20);
    if !(9..=21).contains(&cluster_bits) {
        return Ok(None);
    }
    const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
    let Some(l1) = read_at(be64(&header, 40), 8) else {
        return Ok(None);
    };
    let l2_offset = be64(&l1, 0) & OFFSET_MASK;
    if l2_offset == 0 {
        return Ok(Some(vec![0; 512]));
    }
    let Some(l2) = read_at(l2_offset, 8) else {
        return Ok(None);
    };
    let entry = be64(&l2, 0);
    if entry & (1 << 62) == 0 {
        let offset = entry & OFFSET_MASK;
        return Ok(if offset == 0 {
            Some(vec![0; 512])
        } else {
            read_at(offset, 512)
        });
    }
    // A compressed cluster: offset and sector count share the entry.
    let x = 62 - (cluster_bits - 8);
    let offset = entry & ((1u64 << x) - 1);
    let sectors = ((entry >> x) & ((1u64 << (cluster_bits - 8)) - 1)) + 1;
    let len = (sectors * 512).saturating_sub(offset & 511) as usize;
    let Some(packed) = read_at(offset, len.min(4 << 20)) else {
        return Ok(None);
    };
    let zstd = be64(&header, 72) & (1 << 3) != 0;
    let mut sector = vec![0u8; 512];
    let filled = if zstd {
        ruzstd::decoding::StreamingDecoder::new(&packed[..])
            .ok()
            .and_then(|mut d| d.read_exact(&mut sector).ok())
    } else {
        flate2::read::DeflateDecoder::new(&packed[..])
            .read_exact(&mut sector)
            .ok()
    };
    Ok(filled.map(|_| sector))
}

#[cfg(test)]
/// The header of an empty, self-contained qcow2 v3 image: what the store
/// checks of a box's disk (nothing here boots it).
pub(crate) fn empty_qcow2_header() -> Vec<u8> {
    let mut h = vec![0u8; 112];
    h[..4].copy_from_slice(b"QFI\xfb");
    h[4..8].copy_from_slice(&3u32.to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qcow2(version: u32, backing: u64, features: u64) -> Vec<u8> {
        let mut h = vec![0u8; 112];
        h[..4].copy_from_slice(QCOW2_MAGIC);
        h[4..8].copy_from_slice(&version.to_be_bytes());
        h[8..16].copy_from_slice(&backing.to_be_bytes());
        h[72..80].copy_from_slice(&features.to_be_bytes());
        h
    }

    #[test]
    fn only_self_contained_qcow2_and_raw_pass() {
        assert_eq!(check_header(&qcow2(3, 0, 0)).unwrap(), ImageFormat::Qcow2);
        assert_eq!(check_header(&qcow2(2, 0, 0)).unwrap(), ImageFormat::Qcow2);
        let err = check_header(&qcow2(3, 0x200, 0)).unwrap_err().to_string();
        assert!(err.contains("backing file"), "{err}");
        let err = check_header(&qcow2(3, 0, EXTERNAL_DATA_FILE))
            .unwrap_err()
            .to_string();
        assert!(err.contains("external data file"), "{err}");
        assert!(check_header(&qcow2(4, 0, 0)).is_err());
        assert!(check_header(&QCOW2_MAGIC[..]).is_err(), "truncated");
        assert_eq!(check_header(b"").unwrap(), ImageFormat::Raw);
        assert_eq!(check_header(b"KDMV...").unwrap(), ImageFormat::Raw);
    }

    #[test]
    fn the_first_sector_is_read_through_qcow2_tables_compressed_or_not() {
        if crate::util::process::which("qemu-img").is_none() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        let mut sector = vec![0u8; 1 << 20];
        sector[..4].copy_from_slice(b"\xeb\x63\x90\x10");
        sector[510..512].copy_from_slice(&[0x55, 0xaa]);
        std::fs::write(&raw, &sector).unwrap();
        assert_eq!(first_sector(&raw).unwrap().unwrap(), sector[..512]);
        for extra in [&[][..], &["-c"][..]] {
            let q = dir.path().join(format!("disk{}.qcow2", extra.len()));
            let ok = std::process::Command::new("qemu-img")
                .args(["convert", "-f", "raw", "-O", "qcow2"])
                .args(extra)
                .arg(&raw)
                .arg(&q)
                .status()
                .unwrap()
                .success();
            assert!(ok);
            assert_eq!(
                first_sector(&q).unwrap().unwrap(),
                sector[..512],
                "{extra:?}"
            );
        }
        // An empty qcow2: nothing allocated, all zeros.
        let empty = dir.path().join("empty.qcow2");
        std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&empty)
            .arg("1M")
            .status()
            .unwrap();
        assert_eq!(first_sector(&empty).unwrap().unwrap(), vec![0u8; 512]);
    }

    #[test]
    fn real_images_from_qemu_img() {
        if crate::util::process::which("qemu-img").is_none() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let ok = std::process::Command::new("qemu-img")
                .args(args)
                .current_dir(tmp.path())
                .output()
                .unwrap()
                .status
                .success();
            assert!(ok, "qemu-img {args:?}");
        };
        run(&["create", "-q", "-f", "qcow2", "plain.qcow2", "1M"]);
        assert_eq!(
            inspect(&tmp.path().join("plain.qcow2")).unwrap(),
            ImageFormat::Qcow2
        );
        std::fs::write(tmp.path().join("secret"), "host secret").unwrap();
        let secret = tmp.path().join("secret");
        run(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            secret.to_str().unwrap(),
            "-F",
            "raw",
            "hostile.qcow2",
        ]);
        let err = format!(
            "{:#}",
            inspect(&tmp.path().join("hostile.qcow2")).unwrap_err()
        );
        assert!(err.contains("backing file"), "{err}");
        run(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "data_file=data.raw",
            "external.qcow2",
            "1M",
        ]);
        let err = format!(
            "{:#}",
            inspect(&tmp.path().join("external.qcow2")).unwrap_err()
        );
        assert!(err.contains("external data file"), "{err}");
    }
}
