//! Fetching boxes: from `http(s)://` and `file://` URLs or paths, either a
//! `.box` archive or a catalog (Vagrant's box metadata JSON). The digest is
//! computed while the bytes stream in, checked before anything is
//! unpacked; an interrupted download resumes (HTTP Range) on the next try;
//! a finished box enters the store atomically.

use super::catalog::{Location, client, host_architectures, pick, read_catalog};
use super::digest::{Checksum, DigestKind, Hasher, digest_file, each_chunk};
use super::{Store, StoredBox};
use crate::util::ui;
use crate::util::version::Constraint;
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What `env box add` and `env up` ask for.
#[derive(Debug, Clone, Default)]
pub struct AddRequest {
    /// URL or path of a `.box` or a catalog.
    pub source: String,
    /// Name in the store (default: the catalog's, or the file name).
    pub name: Option<String>,
    /// Version constraint (catalogs) or the version to record (a `.box`).
    pub version: Option<String>,
    /// Expected digest, overriding the catalog's.
    pub checksum: Option<Checksum>,
    /// Replace the same name and version.
    pub force: bool,
    /// What the image index knows of a bare disk image.
    pub image: super::bare::ImageHints,
}

/// Fetches and adds a box; returns it.
pub fn add(store: &Store, request: &AddRequest) -> Result<StoredBox> {
    let location = Location::parse(&request.source);
    if let Location::File(folder) = &location
        && folder.is_dir()
    {
        let added = super::import::add_folder(
            store,
            folder,
            request.name.as_deref(),
            request.version.as_deref(),
            request.force,
        )?;
        remember_source(&added, &location, false, request)?;
        return Ok(added);
    }
    let catalog = read_catalog(&location)?;
    let from_catalog = catalog.is_some();
    let (box_location, name, version, checksum) = match catalog {
        Some(catalog) => {
            let constraint = request
                .version
                .as_deref()
                .map(|c| Constraint::parse_box(c).map_err(anyhow::Error::msg))
                .transpose()?;
            let Some((v, provider)) = pick(&catalog, constraint.as_ref()) else {
                let offered: Vec<&str> = catalog
                    .versions
                    .iter()
                    .map(|v| v.version.as_str())
                    .collect();
                bail!(
                    "catalog {} has no version{} with a libvirt box for {}: it offers {}",
                    location.show(),
                    request
                        .version
                        .as_deref()
                        .map(|c| format!(" matching `{c}`"))
                        .unwrap_or_default(),
                    host_architectures()[0],
                    if offered.is_empty() {
                        "none".into()
                    } else {
                        offered.join(", ")
                    }
                );
            };
            let from_catalog = match (&provider.checksum_type, &provider.checksum) {
                (Some(kind), Some(hex)) => Some(Checksum::new(kind, hex)?),
                _ => None,
            };
            (
                location.join(&provider.url)?,
                request.name.clone().unwrap_or_else(|| catalog.name.clone()),
                Some(v.version.clone()),
                request.checksum.clone().or(from_catalog),
            )
        }
        None => {
            let name = match &request.name {
                Some(n) => n.clone(),
                None => request
                    .source
                    .rsplit('/')
                    .next()
                    .map(|n| n.trim_end_matches(".box").to_string())
                    .filter(|n| !n.is_empty())
                    .context("cannot derive a box name from the URL: pass --name")?,
            };
            // A plain .box: `version` is the version to record, unless it is
            // a constraint (an Envfile's `box_version = ">= 12"`): then the
            // box's own version is recorded and must satisfy it.
            let recorded = request
                .version
                .clone()
                .filter(|v| super::check_version(v).is_ok());
            (location.clone(), name, recorded, request.checksum.clone())
        }
    };
    let wanted = match (&request.version, from_catalog) {
        (Some(v), false) if super::check_version(v).is_err() => {
            Some(Constraint::parse_box(v).map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    super::check_name(&name)?;
    let added = match &box_location {
        Location::File(path) => {
            if let Some(expected) = &checksum {
                let actual = digest_file(path, expected.kind)?;
                check_digest(expected, &actual, &box_location)?;
            }
            let total = std::fs::metadata(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .len();
            let bar = ui::bytes_bar(total, &format!("adding {name}"));
            let staging = store.staging()?;
            let unpacked =
                super::archive::unpack(path, staging.path(), &mut |n| bar.set_position(n));
            bar.finish_and_clear();
            unpacked.and_then(|()| {
                store.add_staged(
                    staging,
                    &path.display().to_string(),
                    &name,
                    version.as_deref(),
                    request.force,
                    &request.image,
                )
            })
        }
        Location::Http(url) => {
            let staging = download(store, url, checksum.as_ref())?;
            store.add_staged(
                staging,
                url,
                &name,
                version.as_deref(),
                request.force,
                &request.image,
            )
        }
    };
    let added = added?;
    if let Some(constraint) = wanted
        && !constraint.holds(&added.version)
    {
        let _ = store.remove(&added.name, Some(&added.version), true);
        bail!(
            "the box at {} is version {}, which does not match `{constraint}`",
            box_location.show(),
            added.version
        );
    }
    remember_source(&added, &location, from_catalog, request)?;
    Ok(added)
}

/// Records where a box came from (for `box outdated` and `box update`).
fn remember_source(
    added: &StoredBox,
    location: &Location,
    from_catalog: bool,
    request: &AddRequest,
) -> Result<()> {
    let source = super::source::Source {
        url: match location {
            Location::File(p) => std::path::absolute(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string(),
            Location::Http(u) => u.clone(),
        },
        catalog: from_catalog,
        constraint: request.version.clone().filter(|_| from_catalog),
    };
    super::source::record_source(added, &source)
}

fn check_digest(expected: &Checksum, actual: &str, location: &Location) -> Result<()> {
    if expected.hex != actual {
        bail!(
            "checksum mismatch for {}: expected {expected}, got {}:{actual}; nothing was installed",
            location.show(),
            expected.kind.name()
        );
    }
    Ok(())
}

/// The partial download of `url` in the store (kept between tries).
pub fn partial_path(store: &Store, url: &str) -> PathBuf {
    store.root.join(".downloads").join(format!(
        "{}.part",
        crate::util::paths::short_hash(Path::new(url))
    ))
}

/// Downloads `url` and unpacks it as the bytes arrive: each chunk goes to
/// the partial file in the store's download folder (what a later try
/// resumes from, with an HTTP Range request), into the digest, and through
/// a pipe to a thread unpacking into a private staging folder. The staging
/// folder is returned only when the digest matches `expected`; otherwise it
/// and the download are deleted and nothing is installed.
fn download(store: &Store, url: &str, expected: Option<&Checksum>) -> Result<tempfile::TempDir> {
    let client = client()?;
    let partial = partial_path(store, url);
    let folder = partial.parent().context("no download folder")?;
    std::fs::create_dir_all(folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let kind = expected.map_or(DigestKind::Sha256, |c| c.kind);
    let mut have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    let mut response = loop {
        let mut request = client.get(url);
        if have > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let response = request
            .send()
            .with_context(|| format!("cannot fetch {url}"))?;
        let offered = response
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok());
        if have > 0
            && response.status() == reqwest::StatusCode::PARTIAL_CONTENT
            && range_start(offered) != Some(have)
        {
            // The server sent another part than the one asked for: appending
            // it would corrupt the box, so the download starts over.
            ui::line(&format!(
                "{url} answered the resume at {have} bytes with `{}`: downloading from the start",
                offered.unwrap_or("no Content-Range")
            ));
            have = 0;
            continue;
        }
        break response;
    };
    let status = response.status();
    let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT && have > 0;
    if !resumed {
        if !status.is_success() {
            bail!("fetching {url} failed: HTTP {status}");
        }
        have = 0;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(resumed)
        .write(true)
        .truncate(!resumed)
        .open(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let staging = store.staging()?;
    let (pipe_out, pipe_in) = std::io::pipe().context("cannot create a pipe")?;
    let dest = staging.path().to_path_buf();
    let unpacker = std::thread::spawn(move || super::archive::unpack_reader(pipe_out, &dest));
    let mut sink = Sink {
        hasher: Hasher::new(kind),
        pipe: Some(pipe_in),
    };
    if resumed {
        // The bytes already here go through the digest and the unpacker once.
        each_chunk(&partial, &mut |chunk| sink.take(chunk))?;
    }
    let total = response.content_length().map(|n| n + have).unwrap_or(0);
    let bar = ui::bytes_bar(
        total,
        &format!(
            "downloading {url}{}",
            if resumed {
                format!(" (resuming at {})", ui::human_bytes(have))
            } else {
                String::new()
            }
        ),
    );
    bar.set_position(have);
    let mut buf = vec![0u8; 1 << 20];
    let mut done = have;
    let cut = loop {
        let n = match response.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => n,
            Err(e) => break Some(e.to_string()),
        };
        file.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", partial.display()))?;
        sink.take(&buf[..n]);
        done += n as u64;
        bar.set_position(done);
    };
    // No fsync: the partial file only serves a resume, and a resumed
    // download is checked by its digest anyway.
    file.flush()?;
    drop(sink.pipe.take());
    let unpacked = unpacker
        .join()
        .map_err(|_| anyhow::anyhow!("the unpacking thread panicked"))?;
    if cut.is_some() || (total > 0 && done < total) {
        bar.abandon();
        bail!(
            "the download of {url} was cut off after {} of {}{}: run the command again to resume",
            ui::human_bytes(done),
            ui::human_bytes(total),
            cut.map(|e| format!(" ({e})")).unwrap_or_default()
        );
    }
    bar.finish_and_clear();
    let actual = sink.hasher.hex();
    let verdict = match expected {
        Some(expected) => check_digest(expected, &actual, &Location::Http(url.to_string())),
        None => Ok(()),
    };
    // The download is complete: it is not needed again, whatever happens.
    let _ = std::fs::remove_file(&partial);
    verdict?;
    unpacked.with_context(|| format!("cannot unpack {url}"))?;
    Ok(staging)
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL` answer.
fn range_start(header: Option<&str>) -> Option<u64> {
    let (start, _) = header?.trim().strip_prefix("bytes ")?.split_once('-')?;
    start.trim().parse().ok()
}

/// Where downloaded bytes go besides the partial file.
struct Sink {
    hasher: Hasher,
    /// Closed when the unpacker stopped early (a bad archive): the digest
    /// still covers every byte, and the unpacker's error is reported.
    pipe: Option<std::io::PipeWriter>,
}

impl Sink {
    fn take(&mut self, data: &[u8]) {
        self.hasher.update(data);
        if let Some(pipe) = &mut self.pipe
            && pipe.write_all(data).is_err()
        {
            self.pipe = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::range_start;

    #[test]
    fn a_content_range_gives_its_first_byte() {
        assert_eq!(range_start(Some("bytes 100-199/200")), Some(100));
        assert_eq!(range_start(Some(" bytes 0-9/*")), Some(0));
    }

    #[test]
    fn a_missing_or_odd_content_range_gives_none() {
        assert_eq!(range_start(None), None);
        assert_eq!(range_start(Some("bytes */200")), None);
        assert_eq!(range_start(Some("items 1-2/3")), None);
        assert_eq!(range_start(Some("bytes -5-9/10")), None);
    }
}
