//! Fetching boxes: from `http(s)://` and `file://` URLs or paths, either a
//! `.box` archive or a catalog (Vagrant's box metadata JSON). The digest is
//! computed while the bytes stream in, checked before anything is
//! unpacked; an interrupted download resumes (HTTP Range) on the next try;
//! a finished box enters the store atomically.

use super::{Store, StoredBox};
use crate::util::ui;
use crate::util::version::{Constraint, compare_dotted as compare_versions};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use sha2::Digest as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

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

    fn name(self) -> &'static str {
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
enum Hasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(kind: DigestKind) -> Hasher {
        match kind {
            DigestKind::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            DigestKind::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            DigestKind::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            DigestKind::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    fn hex(self) -> String {
        let bytes: Vec<u8> = match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Vagrant's box metadata ("catalog").
#[derive(Debug, Clone, Deserialize)]
pub struct Catalog {
    /// Box name (`org/name`).
    pub name: String,
    /// Versions offered.
    #[serde(default)]
    pub versions: Vec<CatalogVersion>,
}

/// One version of a catalog.
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogVersion {
    /// The version.
    pub version: String,
    /// Its providers.
    #[serde(default)]
    pub providers: Vec<Provider>,
}

/// One provider's box of a version.
#[derive(Debug, Clone, Deserialize)]
pub struct Provider {
    /// `libvirt` (what env boots), `virtualbox`...
    pub name: String,
    /// Where the `.box` is (absolute, or relative to the catalog).
    pub url: String,
    /// `sha256`...
    #[serde(default)]
    pub checksum_type: Option<String>,
    /// Hex digest.
    #[serde(default)]
    pub checksum: Option<String>,
    /// `amd64`, `arm64`...
    #[serde(default)]
    pub architecture: Option<String>,
}

/// Providers whose boxes env boots.
const PROVIDERS: &[&str] = &["libvirt", "qemu", "env"];

/// The architecture names of this host.
fn host_architectures() -> &'static [&'static str] {
    if cfg!(target_arch = "aarch64") {
        &["arm64", "aarch64"]
    } else {
        &["amd64", "x86_64"]
    }
}

/// The newest version satisfying `constraint` with a provider env boots on
/// this host's architecture.
pub fn pick<'a>(
    catalog: &'a Catalog,
    constraint: Option<&Constraint>,
) -> Option<(&'a CatalogVersion, &'a Provider)> {
    let mut candidates: Vec<(&CatalogVersion, &Provider)> = catalog
        .versions
        .iter()
        .filter(|v| constraint.is_none_or(|c| c.holds(&v.version)))
        .filter_map(|v| {
            v.providers
                .iter()
                .find(|p| {
                    PROVIDERS.contains(&p.name.as_str())
                        && p.architecture
                            .as_deref()
                            .is_none_or(|a| host_architectures().contains(&a))
                })
                .map(|p| (v, p))
        })
        .collect();
    candidates.sort_by(|a, b| compare_versions(&a.0.version, &b.0.version));
    candidates.pop()
}

/// Where something is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An http(s) URL.
    Http(String),
    /// A local file.
    File(PathBuf),
}

impl Location {
    /// Reads `http(s)://...`, `file:///...` or a path.
    pub fn parse(text: &str) -> Location {
        if text.starts_with("http://") || text.starts_with("https://") {
            Location::Http(text.to_string())
        } else if let Some(path) = text.strip_prefix("file://") {
            Location::File(PathBuf::from(path))
        } else {
            Location::File(PathBuf::from(text))
        }
    }

    /// `reference` resolved against this location (a catalog's box URL).
    pub fn join(&self, reference: &str) -> Location {
        if reference.contains("://") || reference.starts_with('/') {
            return Location::parse(reference);
        }
        match self {
            Location::Http(url) => {
                let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
                Location::Http(format!("{base}/{reference}"))
            }
            Location::File(path) => {
                Location::File(path.parent().unwrap_or(Path::new(".")).join(reference))
            }
        }
    }

    fn show(&self) -> String {
        match self {
            Location::Http(u) => u.clone(),
            Location::File(p) => p.display().to_string(),
        }
    }
}

fn client() -> Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(20))
        .timeout(None)
        .user_agent(concat!("env/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot set up HTTP")
}

/// Whether `location` holds a catalog (JSON) rather than a box: its name
/// says so, or its first byte is `{`.
fn read_catalog(location: &Location) -> Result<Option<Catalog>> {
    let text = match location {
        Location::File(path) => {
            let mut head = [0u8; 1];
            let n = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .read(&mut head)?;
            if n == 0 || head[0] != b'{' {
                return Ok(None);
            }
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?
        }
        Location::Http(url) => {
            if url.ends_with(".box") {
                return Ok(None);
            }
            let response = client()?
                .get(url)
                .send()
                .with_context(|| format!("cannot fetch {url}"))?;
            if !response.status().is_success() {
                bail!("fetching {url} failed: HTTP {}", response.status());
            }
            let json = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.contains("json"));
            if !json && !url.ends_with(".json") {
                return Ok(None);
            }
            response
                .text()
                .with_context(|| format!("cannot read {url}"))?
        }
    };
    let catalog: Catalog = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a box catalog", location.show()))?;
    Ok(Some(catalog))
}

/// The catalog at `location` (an error when it holds something else).
pub fn load_catalog(location: &Location) -> Result<Catalog> {
    read_catalog(location)?.with_context(|| format!("{} is not a box catalog", location.show()))
}

/// The sha256 of a file, as lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    digest_file(path, DigestKind::Sha256)
}

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
                location.join(&provider.url),
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
            (
                location.clone(),
                name,
                request.version.clone(),
                request.checksum.clone(),
            )
        }
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
            let added =
                store.add_archive(path, &name, version.as_deref(), request.force, &mut |n| {
                    bar.set_position(n)
                });
            bar.finish_and_clear();
            added
        }
        Location::Http(url) => {
            let staging = download(store, url, checksum.as_ref())?;
            store.add_staged(staging, url, &name, version.as_deref(), request.force)
        }
    };
    let added = added?;
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

fn digest_file(path: &Path, kind: DigestKind) -> Result<String> {
    let mut hasher = Hasher::new(kind);
    each_chunk(path, &mut |chunk| hasher.update(chunk))?;
    Ok(hasher.hex())
}

/// Reads a file in 1 MiB chunks.
fn each_chunk(path: &Path, f: &mut dyn FnMut(&[u8])) -> Result<()> {
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
    let partial = partial_path(store, url);
    let folder = partial.parent().context("no download folder")?;
    std::fs::create_dir_all(folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let kind = expected.map_or(DigestKind::Sha256, |c| c.kind);
    let mut have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    let mut request = client()?.get(url);
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut response = request
        .send()
        .with_context(|| format!("cannot fetch {url}"))?;
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

    #[test]
    fn catalogs_pick_the_newest_matching_libvirt_box() {
        let catalog: Catalog = serde_json::from_str(
            r#"{"name": "org/deb", "versions": [
              {"version": "1.0.0", "providers": [{"name": "libvirt", "url": "a.box"}]},
              {"version": "1.10.0", "providers": [
                {"name": "virtualbox", "url": "vb.box"},
                {"name": "libvirt", "url": "https://x/b.box", "architecture": "amd64",
                 "checksum_type": "sha256", "checksum": "00"}]},
              {"version": "2.0.0", "providers": [{"name": "libvirt", "url": "c.box", "architecture": "arm64"}]},
              {"version": "1.9.0", "providers": [{"name": "virtualbox", "url": "d.box"}]}
            ]}"#,
        )
        .unwrap();
        let (v, p) = pick(&catalog, None).unwrap();
        assert_eq!(
            (v.version.as_str(), p.url.as_str()),
            ("1.10.0", "https://x/b.box")
        );
        let c = Constraint::parse_box("< 1.5").unwrap();
        assert_eq!(pick(&catalog, Some(&c)).unwrap().0.version, "1.0.0");
        let c = Constraint::parse_box(">= 3").unwrap();
        assert!(pick(&catalog, Some(&c)).is_none());
    }

    #[test]
    fn locations_resolve_relative_box_urls() {
        let base = Location::parse("http://127.0.0.1:8000/boxes/catalog.json");
        assert_eq!(
            base.join("deb-1.box"),
            Location::Http("http://127.0.0.1:8000/boxes/deb-1.box".into())
        );
        assert_eq!(
            base.join("https://cdn/x.box"),
            Location::Http("https://cdn/x.box".into())
        );
        let file = Location::parse("file:///srv/boxes/catalog.json");
        assert_eq!(
            file.join("a.box"),
            Location::File("/srv/boxes/a.box".into())
        );
        assert_eq!(Location::parse("./x.box"), Location::File("./x.box".into()));
    }
}
