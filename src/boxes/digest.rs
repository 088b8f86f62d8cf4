//! Digests of boxes and images: the kinds Vagrant's catalogs name, a
//! checksum as written (`sha256:HEX`), hashing while bytes stream in.

use anyhow::{Context, Result, bail};
use sha2::Digest as _;
use std::io::Read;
use std::path::Path;

/// Digest algorithms of checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestKind {
    /// SHA-1 (old catalogs).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl DigestKind {
    /// Parses `sha256` and friends (any case).
    pub fn parse(name: &str) -> Result<DigestKind> {
        match name.to_ascii_lowercase().as_str() {
            "sha1" => Ok(DigestKind::Sha1),
            "sha256" => Ok(DigestKind::Sha256),
            "sha384" => Ok(DigestKind::Sha384),
            "sha512" => Ok(DigestKind::Sha512),
            other => bail!("unsupported checksum type `{other}`: sha1, sha256, sha384 or sha512"),
        }
    }

    /// Its name in checksums and catalogs (`sha256`).
    pub fn name(self) -> &'static str {
        match self {
            DigestKind::Sha1 => "sha1",
            DigestKind::Sha256 => "sha256",
            DigestKind::Sha384 => "sha384",
            DigestKind::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            DigestKind::Sha1 => 40,
            DigestKind::Sha256 => 64,
            DigestKind::Sha384 => 96,
            DigestKind::Sha512 => 128,
        }
    }
}

/// An expected digest: `sha256:HEX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// Algorithm.
    pub kind: DigestKind,
    /// Lower-case hex.
    pub hex: String,
}

impl Checksum {
    /// Parses `TYPE:HEX`.
    pub fn parse(text: &str) -> Result<Checksum> {
        let (kind, hex) = text.split_once(':').with_context(|| {
            format!("`{text}` is not a checksum: write TYPE:HEX (sha256:0a1b...)")
        })?;
        Checksum::new(kind, hex)
    }

    /// A checksum from a type name and hex digits.
    pub fn new(kind: &str, hex: &str) -> Result<Checksum> {
        let kind = DigestKind::parse(kind)?;
        let hex = hex.trim().to_ascii_lowercase();
        if hex.len() != kind.hex_len() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!(
                "`{hex}` is not a {} digest ({} hex digits)",
                kind.name(),
                kind.hex_len()
            );
        }
        Ok(Checksum { kind, hex })
    }
}

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind.name(), self.hex)
    }
}

/// A digest being computed.
pub enum Hasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(kind: DigestKind) -> Hasher {
        match kind {
            DigestKind::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            DigestKind::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            DigestKind::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            DigestKind::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn hex(self) -> String {
        let bytes: Vec<u8> = match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The sha256 of a file, as lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    digest_file(path, DigestKind::Sha256)
}

pub fn digest_file(path: &Path, kind: DigestKind) -> Result<String> {
    let mut hasher = Hasher::new(kind);
    each_chunk(path, &mut |chunk| hasher.update(chunk))?;
    Ok(hasher.hex())
}

/// Reads a file in 1 MiB chunks.
pub fn each_chunk(path: &Path, f: &mut dyn FnMut(&[u8])) -> Result<()> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        f(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums() {
        let c = Checksum::parse(
            "SHA256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
        )
        .unwrap();
        assert_eq!(c.kind, DigestKind::Sha256);
        assert!(c.hex.starts_with("abcdef"));
        assert!(Checksum::parse("sha256:abc").is_err());
        assert!(Checksum::parse("md5:0123").is_err());
        assert!(Checksum::parse("nocolon").is_err());
        let mut h = Hasher::new(DigestKind::Sha1);
        h.update(b"abc");
        assert_eq!(h.hex(), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}
