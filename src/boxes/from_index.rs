//! Adding a box by its image index name: the pinned image for this host's
//! architecture, its digest pinned in the index or read from the
//! distribution's sums file (whose signature gpgv checks when the index
//! names a keyring the host has), fetched like any box.

use super::catalog::{Location, get, host_architectures};
use super::digest::Checksum;
use super::fetch::{AddRequest, add};
use super::index::{ArchImage, Entry, digest_in_sums};
use super::{Store, StoredBox};
use crate::util::process::{HELPER_LIMIT, run_limited};
use crate::util::ui;
use anyhow::{Context, Result, bail};
use std::process::Command;

/// Fetches the index entry `name` into the store.
pub fn add_from_index(store: &Store, name: &str, entry: &Entry, force: bool) -> Result<StoredBox> {
    let Some((arch, image)) = entry.for_arch(host_architectures()) else {
        bail!(
            "the image index has no {} image of `{name}` (it has {})",
            host_architectures()[1],
            entry.arches.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    };
    let checksum = digest_of(name, arch, image)?;
    let request = AddRequest {
        source: image.url.clone(),
        name: Some(name.to_string()),
        version: Some(entry.release.clone()),
        checksum: Some(checksum),
        force,
        image: entry.hints(),
    };
    add(store, &request).with_context(|| format!("cannot add `{name}` from the image index"))
}

/// The image's digest: pinned, or from its sums file.
fn digest_of(name: &str, arch: &str, image: &ArchImage) -> Result<Checksum> {
    if let Some(digest) = &image.digest {
        return Checksum::parse(digest);
    }
    let sums_ref = image
        .sums
        .as_deref()
        .context("the index entry has neither digest nor sums")?;
    let image_location = Location::parse(&image.url);
    let sums_location = image_location.join(sums_ref)?;
    let sums = fetch_small(&sums_location)?;
    check_signature(name, image, &sums_location, &sums)?;
    let file = image.url.rsplit('/').next().unwrap_or_default();
    digest_in_sums(&String::from_utf8_lossy(&sums), file).with_context(|| {
        format!(
            "{} lists no digest for {file} (`{name}`, {arch})",
            sums_location.show()
        )
    })
}

/// A small file (sums, signature) over HTTP(S), capped at 4 MiB.
fn fetch_small(location: &Location) -> Result<Vec<u8>> {
    let Location::Http(url) = location else {
        bail!(
            "{} is a file on this host, not on the image's server",
            location.show()
        );
    };
    let response = get(url)?;
    let mut body = Vec::new();
    use std::io::Read;
    response
        .take(4 << 20)
        .read_to_end(&mut body)
        .with_context(|| format!("cannot read {url}"))?;
    Ok(body)
}

/// Checks the sums file's signature when the index names a keyring that
/// the host has and gpgv is installed; otherwise says plainly that it was
/// not checked. A bad signature is an error.
fn check_signature(
    name: &str,
    image: &ArchImage,
    sums_location: &Location,
    sums: &[u8],
) -> Result<()> {
    let Some(keyring) = &image.keyring else {
        ui::line(&format!(
            "{name}: signature of {} not checked (the index names no keyring)",
            sums_location.show()
        ));
        return Ok(());
    };
    if !keyring.is_file() || crate::util::process::which("gpgv").is_none() {
        ui::line(&format!(
            "{name}: signature of {} not checked: {}",
            sums_location.show(),
            if keyring.is_file() {
                "gpgv is not installed (apt-get install gpgv)".to_string()
            } else {
                format!("this host has no keyring {}", keyring.display())
            }
        ));
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let sums_file = work.path().join("sums");
    std::fs::write(&sums_file, sums)?;
    let mut gpgv = Command::new("gpgv");
    gpgv.arg("--keyring").arg(keyring);
    if let Some(signature) = &image.signature {
        let sig_location = sums_location.join(signature)?;
        let sig_file = work.path().join("sums.sig");
        std::fs::write(&sig_file, fetch_small(&sig_location)?)?;
        gpgv.arg(&sig_file);
    }
    gpgv.arg(&sums_file);
    run_limited(
        &mut gpgv,
        HELPER_LIMIT,
        "cannot run gpgv",
        &format!(
            "{name}: the signature of {} does not verify with {}",
            sums_location.show(),
            keyring.display()
        ),
    )?;
    ui::line(&format!(
        "{name}: signature of {} good ({})",
        sums_location.show(),
        keyring.display()
    ));
    Ok(())
}
