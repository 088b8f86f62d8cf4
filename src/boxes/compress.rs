//! Compressed downloads: a box archive or a distribution's disk image may
//! come gzip-, zstd-, xz- or bzip2-compressed. The compression is told from
//! the first bytes, never from the name, and undone while the bytes stream.

use anyhow::{Context, Result, bail};
use std::io::{BufReader, Read};

/// How a stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not at all.
    None,
    /// gzip (`.gz`, `.tgz`, `.box`), members concatenated or not.
    Gzip,
    /// Zstandard (`.zst`).
    Zstd,
    /// xz (`.xz`).
    Xz,
    /// bzip2 (`.bz2`).
    Bzip2,
}

/// The compression of a stream, from its first bytes.
pub fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else if head.starts_with(b"BZh") && head.get(3).is_some_and(|b| (b'1'..=b'9').contains(b)) {
        Compression::Bzip2
    } else {
        Compression::None
    }
}

/// Runs `f` on the decompressed stream of `raw`. A corrupt stream is an
/// error even when `f` read what came before the damage without complaint.
pub fn with_decoder<R: Read + Send, T>(
    compression: Compression,
    mut raw: R,
    f: impl FnOnce(&mut dyn Read) -> Result<T>,
) -> Result<T> {
    match compression {
        Compression::None => f(&mut raw),
        Compression::Gzip => f(&mut flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => f(&mut ruzstd::decoding::StreamingDecoder::new(raw)
            .map_err(|e| anyhow::anyhow!("bad zstd stream: {e}"))?),
        Compression::Bzip2 => f(&mut bzip2::read::MultiBzDecoder::new(raw)),
        Compression::Xz => xz(raw, f),
    }
}

/// xz through a pipe: the decoder (lzma-rs, pure Rust) writes, `f` reads.
fn xz<R: Read + Send, T>(raw: R, f: impl FnOnce(&mut dyn Read) -> Result<T>) -> Result<T> {
    let (mut plain, mut sink) = std::io::pipe().context("cannot create a pipe")?;
    std::thread::scope(|scope| {
        let decoder = scope.spawn(move || {
            let mut input = BufReader::with_capacity(1 << 20, raw);
            // A reader that stops early closes the pipe: the write fails and
            // the decoder ends.
            lzma_rs::xz_decompress(&mut input, &mut sink)
        });
        let result = f(&mut plain);
        drop(plain);
        let decoded = decoder
            .join()
            .map_err(|_| anyhow::anyhow!("the xz decoder panicked"))?;
        match (result, decoded) {
            (Ok(value), Ok(())) => Ok(value),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => bail!("bad xz stream: {e}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const TEXT: &[u8] = b"the same bytes, whatever wraps them\n";

    fn compressed(c: Compression) -> Vec<u8> {
        match c {
            Compression::None => TEXT.to_vec(),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(TEXT).unwrap();
                e.finish().unwrap()
            }
            Compression::Bzip2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                e.write_all(TEXT).unwrap();
                e.finish().unwrap()
            }
            Compression::Xz => {
                let mut out = Vec::new();
                lzma_rs::xz_compress(&mut std::io::Cursor::new(TEXT), &mut out).unwrap();
                out
            }
            Compression::Zstd => {
                // A zstd frame of one raw block (no compressor at hand).
                let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0x20, TEXT.len() as u8];
                let header = ((TEXT.len() as u32) << 3) | 1; // last, raw
                f.extend_from_slice(&header.to_le_bytes()[..3]);
                f.extend_from_slice(TEXT);
                f
            }
        }
    }

    #[test]
    fn every_compression_is_told_from_its_bytes_and_undone() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Zstd,
            Compression::Xz,
            Compression::Bzip2,
        ] {
            let bytes = compressed(c);
            assert_eq!(detect(&bytes), c);
            let plain = with_decoder(c, &bytes[..], |r| {
                let mut out = Vec::new();
                r.read_to_end(&mut out)?;
                Ok(out)
            })
            .unwrap();
            assert_eq!(plain, TEXT, "{c:?}");
        }
    }

    #[test]
    fn a_damaged_xz_stream_is_an_error_even_after_good_bytes() {
        let mut bytes = compressed(Compression::Xz);
        let n = bytes.len();
        bytes[n - 8] ^= 0xff;
        let result = with_decoder(Compression::Xz, &bytes[..], |r| {
            let mut out = Vec::new();
            let _ = r.read_to_end(&mut out);
            Ok(out)
        });
        assert!(result.is_err());
    }

    #[test]
    fn a_reader_that_stops_early_ends_the_xz_decoder() {
        let big = vec![7u8; 4 << 20];
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut std::io::Cursor::new(&big), &mut xz).unwrap();
        let first = with_decoder(Compression::Xz, &xz[..], |r| {
            let mut one = [0u8; 1];
            r.read_exact(&mut one)?;
            Ok(one[0])
        });
        // Either the early stop is reported as the decoder's broken pipe or
        // the value comes back; it must not hang.
        if let Ok(b) = first {
            assert_eq!(b, 7);
        }
    }
}
