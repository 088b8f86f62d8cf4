//! The image index: short names (`ubuntu-24.04`) for distributions'
//! official cloud images, each pinned to a release, with where its digest
//! comes from, its firmware, its default user and what its kernel shares
//! folders with. Shipped in `images/index.toml`; `ENV_HOME/images.toml` and
//! a project's `images.toml` add or replace entries.

use super::bare::ImageHints;
use super::digest::Checksum;
use super::metadata::Firmware;
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The index env ships.
const BUILT_IN: &str = include_str!("../../images/index.toml");

/// The index file a user or a project adds.
pub const INDEX_FILE: &str = "images.toml";

/// One architecture's image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchImage {
    /// Where the image is.
    pub url: String,
    /// Its digest, pinned (`sha256:...`, `sha512:...`).
    pub digest: Option<String>,
    /// The distribution's sums file (relative to `url`, or a URL).
    pub sums: Option<String>,
    /// A detached signature of the sums file (relative to it, or a URL).
    pub signature: Option<String>,
    /// The keyring (a host file) the sums file's signature is checked with.
    pub keyring: Option<PathBuf>,
}

/// One image of the index.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Entry {
    /// One line for `env box search`.
    #[serde(default)]
    pub description: String,
    /// The pinned release: the box's version in the store.
    pub release: String,
    /// The distribution's default user.
    pub user: Option<String>,
    /// How the image boots.
    pub firmware: Option<Firmware>,
    /// Shared-folder kinds its kernel supports, when known.
    pub folders: Option<Vec<String>>,
    /// Per architecture (`x86_64`, `aarch64`).
    #[serde(flatten)]
    pub arches: BTreeMap<String, ArchImage>,
}

impl Entry {
    /// What the box store records of it beyond the image's bytes.
    pub fn hints(&self) -> ImageHints {
        ImageHints {
            user: self.user.clone(),
            firmware: self.firmware,
            folders: self.folders.clone(),
        }
    }

    /// The image for one of `arches` (the host's names, preferred first).
    pub fn for_arch(&self, arches: &[&str]) -> Option<(&str, &ArchImage)> {
        arches
            .iter()
            .find_map(|a| self.arches.get_key_value(*a))
            .map(|(k, v)| (k.as_str(), v))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexFile {
    format: u32,
    #[serde(default)]
    images: BTreeMap<String, Entry>,
}

/// The merged index: name -> entry, and the file each came from.
#[derive(Debug, Clone, Default)]
pub struct Index {
    /// Entries by name.
    pub entries: BTreeMap<String, (Entry, String)>,
}

/// Parses one index file's text (`origin` names it in errors).
fn parse(text: &str, origin: &str) -> Result<BTreeMap<String, Entry>> {
    let file: IndexFile =
        toml::from_str(text).with_context(|| format!("{origin}: not a valid image index"))?;
    if file.format != 1 {
        bail!(
            "{origin}: index format {} is not one env reads (1)",
            file.format
        );
    }
    for (name, entry) in &file.images {
        super::check_name(name).with_context(|| format!("{origin}: images.{name}"))?;
        super::check_version(&entry.release)
            .with_context(|| format!("{origin}: images.{name}.release"))?;
        if entry.arches.is_empty() {
            bail!("{origin}: images.{name} has no image for any architecture");
        }
        for (arch, image) in &entry.arches {
            let at = format!("{origin}: images.{name}.{arch}");
            match (&image.digest, &image.sums) {
                (Some(d), None) => {
                    Checksum::parse(d).with_context(|| format!("{at}.digest"))?;
                }
                (None, Some(_)) => {}
                _ => bail!("{at}: give `digest` or `sums` (one of them)"),
            }
            if !(image.url.starts_with("https://") || image.url.starts_with("http://")) {
                bail!("{at}.url: `{}` is no http(s) URL", image.url);
            }
        }
    }
    Ok(file.images)
}

impl Index {
    /// The built-in index, then the user's and the project's files (later
    /// ones replace entries of the same name).
    pub fn load(project_dir: Option<&Path>) -> Result<Index> {
        let mut index = Index::default();
        index.add(parse(BUILT_IN, "images/index.toml (built in)")?, "built in");
        let mut files = vec![crate::util::paths::data_home()?.join(INDEX_FILE)];
        files.extend(project_dir.map(|d| d.join(INDEX_FILE)));
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let shown = file.display().to_string();
            index.add(parse(&text, &shown)?, &shown);
        }
        Ok(index)
    }

    fn add(&mut self, entries: BTreeMap<String, Entry>, origin: &str) {
        for (name, entry) in entries {
            self.entries.insert(name, (entry, origin.to_string()));
        }
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name).map(|(e, _)| e)
    }

    /// Entries whose name or description contains `text` (all without one).
    pub fn search(&self, text: Option<&str>) -> Vec<(&str, &Entry, &str)> {
        let needle = text.map(str::to_lowercase);
        self.entries
            .iter()
            .filter(|(name, (entry, _))| {
                needle.as_deref().is_none_or(|n| {
                    name.to_lowercase().contains(n) || entry.description.to_lowercase().contains(n)
                })
            })
            .map(|(name, (entry, origin))| (name.as_str(), entry, origin.as_str()))
            .collect()
    }
}

/// The digest of `file` in a sums file: GNU form (`HEX  NAME`, `HEX *NAME`),
/// BSD form (`SHA256 (NAME) = HEX`, Fedora's CHECKSUM), or a lone digest (a
/// `.sha256` file beside one image). A clear-signed file's armor is skipped.
pub fn digest_in_sums(sums: &str, file: &str) -> Option<Checksum> {
    let kind_of = |hex: &str| match hex.len() {
        64 => Some("sha256"),
        128 => Some("sha512"),
        _ => None,
    };
    let hex_ok = |hex: &str| hex.chars().all(|c| c.is_ascii_hexdigit());
    let mut lone = None;
    for line in sums.lines().map(str::trim) {
        if let Some(rest) = line
            .split_once(" (")
            .filter(|(algo, _)| algo.starts_with("SHA"))
            .map(|(_, r)| r)
        {
            if let Some((name, hex)) = rest.split_once(") = ")
                && name == file
                && hex_ok(hex)
            {
                return Checksum::new(kind_of(hex)?, hex).ok();
            }
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(hex), name) = (parts.next(), parts.next()) else {
            continue;
        };
        if !hex_ok(hex) || kind_of(hex).is_none() {
            continue;
        }
        match name.map(|n| n.trim_start_matches('*')) {
            Some(n) if n == file || n.rsplit('/').next() == Some(file) => {
                return Checksum::new(kind_of(hex)?, hex).ok();
            }
            None => lone = Checksum::new(kind_of(hex)?, hex).ok(),
            _ => {}
        }
    }
    lone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_index_parses_and_has_what_users_ask_for() {
        let entries = parse(BUILT_IN, "built in").unwrap();
        for name in [
            "debian-11",
            "debian-12",
            "debian-13",
            "ubuntu-22.04",
            "ubuntu-24.04",
            "almalinux-9",
            "rocky-9",
            "fedora-42",
            "alpine-3.22",
            "archlinux",
            "opensuse-leap-15.6",
        ] {
            let entry = entries.get(name).unwrap_or_else(|| panic!("{name}"));
            let (_, image) = entry.for_arch(&["x86_64"]).unwrap();
            assert!(!image.url.contains("latest"), "{name} pins a release");
            assert!(entry.user.is_some() && entry.firmware.is_some(), "{name}");
        }
    }

    #[test]
    fn bad_entries_are_refused_with_their_place() {
        let cases = [
            ("format = 2", "format 2"),
            (
                "format = 1\n[images.x]\nrelease = \"1\"\nx86_64 = { url = \"https://a/b\" }",
                "give `digest` or `sums`",
            ),
            (
                "format = 1\n[images.x]\nrelease = \"1\"\nx86_64 = { url = \"file:///etc/shadow\", digest = \"sha256:00\" }",
                "images.x.x86_64",
            ),
            (
                "format = 1\n[images.\".x\"]\nrelease = \"1\"\nx86_64 = { url = \"https://a\", sums = \"S\" }",
                "images..x",
            ),
            (
                "format = 1\n[images.x]\nrelease = \"1\"\nx86_64 = { url = \"https://a\", sums = \"S\", bogus = 1 }",
                "not a valid image index",
            ),
        ];
        for (text, expected) in cases {
            let err = format!("{:#}", parse(text, "f.toml").unwrap_err());
            assert!(err.contains(expected), "{text}: {err}");
            assert!(err.contains("f.toml"), "{err}");
        }
    }

    #[test]
    fn sums_files_of_every_shape_give_the_digest() {
        let a = "a".repeat(64);
        let b = "b".repeat(128);
        let gnu = format!("{a}  other.img\n{b} *disk.qcow2\n");
        assert_eq!(
            digest_in_sums(&gnu, "disk.qcow2").unwrap().to_string(),
            format!("sha512:{b}")
        );
        let bsd = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n# Fedora\nSHA256 (x.qcow2) = {a}\n-----BEGIN PGP SIGNATURE-----\n"
        );
        assert_eq!(
            digest_in_sums(&bsd, "x.qcow2").unwrap().to_string(),
            format!("sha256:{a}")
        );
        assert!(digest_in_sums(&bsd, "y.qcow2").is_none());
        let lone = format!("{a}  /srv/build/disk.qcow2\n");
        assert!(digest_in_sums(&lone, "disk.qcow2").is_some());
        assert!(digest_in_sums(&format!("{a}\n"), "any.img").is_some());
        assert!(digest_in_sums("zz  disk.qcow2", "disk.qcow2").is_none());
    }
}
