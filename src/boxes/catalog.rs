//! Catalogs (Vagrant's box metadata JSON) and where they and boxes are:
//! reading one from a file or a server, picking the newest version that
//! matches a constraint for this host.

use crate::util::version::{Constraint, compare_dotted as compare_versions};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::io::Read;
use std::path::{Path, PathBuf};

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
pub fn host_architectures() -> &'static [&'static str] {
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
    /// A catalog served over HTTP names boxes over HTTP only: a path or a
    /// `file://` URL there would make env import a file of this host the
    /// server chose.
    pub fn join(&self, reference: &str) -> Result<Location> {
        let absolute = reference.contains("://") || reference.starts_with('/');
        match self {
            Location::Http(url) if absolute => match Location::parse(reference) {
                remote @ Location::Http(_) => Ok(remote),
                Location::File(_) => bail!(
                    "the catalog at {url} names the box `{reference}`, a file on this host: a catalog served over HTTP may name boxes over HTTP(S) only"
                ),
            },
            _ if absolute => Ok(Location::parse(reference)),
            Location::Http(url) => {
                let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
                Ok(Location::Http(format!("{base}/{reference}")))
            }
            Location::File(path) => Ok(Location::File(
                path.parent().unwrap_or(Path::new(".")).join(reference),
            )),
        }
    }

    /// As messages show it: the URL or the path.
    pub fn show(&self) -> String {
        match self {
            Location::Http(u) => u.clone(),
            Location::File(p) => p.display().to_string(),
        }
    }
}

/// How long a server may stay silent unless `ENV_DOWNLOAD_STALL` says
/// otherwise: reqwest's blocking client applies this to the response's
/// arrival and to each read of the body (not to the whole download), so a
/// stalled server fails, a slow big one does not.
pub const STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The variable that sets the silence allowed to a server (`30`, `"2m"`).
pub const STALL_VARIABLE: &str = "ENV_DOWNLOAD_STALL";

/// The silence allowed to a server: `ENV_DOWNLOAD_STALL` (a duration from
/// one second to a day), else [`STALL_TIMEOUT`].
pub fn stall_timeout() -> Result<std::time::Duration> {
    match std::env::var(STALL_VARIABLE) {
        Ok(text) => crate::util::duration::parse_duration(&text)
            .map_err(|e| anyhow::anyhow!("{STALL_VARIABLE}: {e}")),
        Err(_) => Ok(STALL_TIMEOUT),
    }
}

/// The HTTP client for catalogs and boxes.
pub fn client() -> Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(20))
        .timeout(stall_timeout()?)
        .user_agent(concat!("env/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot set up HTTP")
}

/// A GET of `url` answered with success (any other status is an error
/// naming the URL).
pub fn get(url: &str) -> Result<reqwest::blocking::Response> {
    let response = client()?
        .get(url)
        .send()
        .with_context(|| format!("cannot fetch {url}"))?;
    if !response.status().is_success() {
        bail!("fetching {url} failed: HTTP {}", response.status());
    }
    Ok(response)
}

/// Whether `location` holds a catalog (JSON) rather than a box: its name
/// says so, or its first byte is `{`.
pub fn read_catalog(location: &Location) -> Result<Option<Catalog>> {
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
            // A registry answers with metadata only when asked for JSON.
            let response = client()?
                .get(url)
                .header(reqwest::header::ACCEPT, "application/json, */*;q=0.1")
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

#[cfg(test)]
mod tests {
    use super::*;

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
            base.join("deb-1.box").unwrap(),
            Location::Http("http://127.0.0.1:8000/boxes/deb-1.box".into())
        );
        assert_eq!(
            base.join("https://cdn/x.box").unwrap(),
            Location::Http("https://cdn/x.box".into())
        );
        let file = Location::parse("file:///srv/boxes/catalog.json");
        assert_eq!(
            file.join("a.box").unwrap(),
            Location::File("/srv/boxes/a.box".into())
        );
        // A catalog over HTTP cannot point at this host's files.
        for local in ["/etc/shadow", "file:///etc/shadow"] {
            let err = base.join(local).unwrap_err().to_string();
            assert!(err.contains("a file on this host"), "{err}");
        }
        assert_eq!(
            file.join("/srv/other.box").unwrap(),
            Location::File("/srv/other.box".into())
        );
        assert_eq!(Location::parse("./x.box"), Location::File("./x.box".into()));
    }
}
