//! Keeping a store current and small: where each box came from, newer
//! versions in its catalog (`outdated`, `update`), old versions nobody uses
//! (`prune`), and catalogs for a folder of baked boxes (`catalog`), so a
//! team can serve them from any static web server.

use super::catalog::{self, Catalog};
use super::digest::sha256_file;
use super::fetch::{self, AddRequest};
use super::source::{Source, record_source, source_of};
use super::{Store, StoredBox};
use crate::util::version::Constraint;
use crate::util::version::compare_dotted as compare_versions;
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One box checked against its catalog.
#[derive(Debug, Clone, Serialize)]
pub struct Freshness {
    /// Box name.
    pub name: String,
    /// Newest version in the store.
    pub current: String,
    /// Newest version the catalog offers within the constraint.
    pub latest: Option<String>,
    /// Why it could not be checked (no catalog, unreachable).
    pub note: Option<String>,
    /// The catalog.
    pub url: Option<String>,
    /// The constraint it was added with.
    pub constraint: Option<String>,
}

impl Freshness {
    /// A newer version is available.
    pub fn outdated(&self) -> bool {
        self.latest
            .as_deref()
            .is_some_and(|l| compare_versions(l, &self.current) == std::cmp::Ordering::Greater)
    }
}

/// The newest stored version of each box name.
fn newest_per_name(boxes: &[StoredBox]) -> Vec<&StoredBox> {
    let mut newest: BTreeMap<&str, &StoredBox> = BTreeMap::new();
    for b in boxes {
        let keep = newest.get(b.name.as_str()).is_none_or(|n| {
            compare_versions(&b.version, &n.version) == std::cmp::Ordering::Greater
        });
        if keep {
            newest.insert(&b.name, b);
        }
    }
    newest.into_values().collect()
}

/// Checks the newest version of each box (or of `only`) against its catalog.
pub fn outdated(store: &Store, only: Option<&str>) -> Result<Vec<Freshness>> {
    let boxes = store.list()?;
    let mut out = Vec::new();
    for b in newest_per_name(&boxes) {
        if only.is_some_and(|n| n != b.name) {
            continue;
        }
        let source = source_of(b);
        let mut f = Freshness {
            name: b.name.clone(),
            current: b.version.clone(),
            latest: None,
            note: None,
            url: source.as_ref().map(|s| s.url.clone()),
            constraint: source.as_ref().and_then(|s| s.constraint.clone()),
        };
        match source.filter(|s| s.catalog) {
            None => f.note = Some("not from a catalog".into()),
            Some(s) => match latest_in_catalog(&s) {
                Ok(Some(v)) => f.latest = Some(v),
                Ok(None) => f.note = Some("the catalog offers no matching version".into()),
                Err(e) => f.note = Some(format!("{e:#}")),
            },
        }
        out.push(f);
    }
    if let Some(name) = only
        && out.is_empty()
    {
        anyhow::bail!("box `{name}` is not in the store");
    }
    Ok(out)
}

fn latest_in_catalog(source: &Source) -> Result<Option<String>> {
    let catalog = catalog::load_catalog(&catalog::Location::parse(&source.url))?;
    let constraint = source
        .constraint
        .as_deref()
        .map(|c| Constraint::parse_box(c).map_err(anyhow::Error::msg))
        .transpose()?;
    Ok(catalog::pick(&catalog, constraint.as_ref()).map(|(v, _)| v.version.clone()))
}

/// Adds the newer versions `outdated` found; returns the boxes added.
pub fn update(store: &Store, only: Option<&str>) -> Result<Vec<StoredBox>> {
    let mut added = Vec::new();
    for f in outdated(store, only)? {
        if !f.outdated() {
            continue;
        }
        let (Some(url), Some(latest)) = (&f.url, &f.latest) else {
            continue;
        };
        let request = AddRequest {
            source: url.clone(),
            name: Some(f.name.clone()),
            version: Some(format!("= {latest}")),
            checksum: None,
            force: false,
            image: Default::default(),
        };
        let b = fetch::add(store, &request)
            .with_context(|| format!("cannot update `{}` to {latest}", f.name))?;
        // Later checks keep the constraint the box was first added with.
        if let Some(mut source) = source_of(&b) {
            source.constraint = f.constraint.clone();
            record_source(&b, &source)?;
        }
        added.push(b);
    }
    Ok(added)
}

/// What `prune` does with one stored box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneItem {
    /// Box name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Removed (or, in a dry run, would be).
    pub remove: bool,
    /// Why it stays or goes.
    pub reason: String,
}

/// Decides, for boxes and their users, what `prune` keeps: the newest
/// version of each name and every version a machine still uses.
pub fn prune_plan(boxes: &[StoredBox], in_use: &dyn Fn(&StoredBox) -> usize) -> Vec<PruneItem> {
    let newest: Vec<(&str, &str)> = newest_per_name(boxes)
        .into_iter()
        .map(|b| (b.name.as_str(), b.version.as_str()))
        .collect();
    boxes
        .iter()
        .map(|b| {
            let users = in_use(b);
            let (remove, reason) = if newest.contains(&(b.name.as_str(), b.version.as_str())) {
                (false, "newest version".to_string())
            } else if users > 0 {
                (false, format!("used by {users} machine(s)"))
            } else {
                (true, "older and unused".to_string())
            };
            PruneItem {
                name: b.name.clone(),
                version: b.version.clone(),
                remove,
                reason,
            }
        })
        .collect()
}

/// Removes old unused versions (unless `dry_run`); returns the plan.
pub fn prune(store: &Store, dry_run: bool) -> Result<Vec<PruneItem>> {
    let boxes = store.list()?;
    let plan = prune_plan(&boxes, &|b| store.users(&b.name, &b.version).len());
    if !dry_run {
        for item in plan.iter().filter(|i| i.remove) {
            store.remove(&item.name, Some(&item.version), false)?;
        }
    }
    Ok(plan)
}

/// Reads `info.json` from a `.box` without unpacking it.
fn box_info(path: &Path) -> Result<serde_json::Value> {
    let mut found = None;
    super::archive::each_entry(path, &mut |entry_path, reader| {
        if entry_path == Path::new("info.json") {
            let mut text = String::new();
            reader.read_to_string(&mut text)?;
            found = Some(text);
            return Ok(false);
        }
        Ok(true)
    })?;
    let text = found.with_context(|| format!("{} has no info.json", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("bad info.json in {}", path.display()))
}

/// Writes a catalog (`NAME.json`, `/` as `-`) for each box name found in
/// the `.box` files of `dir`, with relative URLs and sha256 checksums;
/// returns the catalog files. Name and version come from each box's
/// info.json.
pub fn write_catalogs(dir: &Path, base_url: Option<&str>) -> Result<Vec<PathBuf>> {
    let base = base_url
        .map(|b| {
            let with_slash = if b.ends_with('/') {
                b.to_string()
            } else {
                format!("{b}/")
            };
            reqwest::Url::parse(&with_slash)
                .with_context(|| format!("--base-url `{b}` is not a URL"))
        })
        .transpose()?;
    let mut by_name: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "box"))
        .collect();
    files.sort();
    for file in &files {
        let info = box_info(file)?;
        let name = info["name"]
            .as_str()
            .with_context(|| format!("{}: info.json has no name", file.display()))?
            .to_string();
        let version = info["version"]
            .as_str()
            .with_context(|| format!("{}: info.json has no version", file.display()))?
            .to_string();
        let digest = sha256_file(file)?;
        let file_name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let url = match &base {
            Some(base) => base
                .join(&file_name)
                .with_context(|| format!("cannot make a URL for {file_name}"))?
                .to_string(),
            None => file_name,
        };
        by_name.entry(name).or_default().push(serde_json::json!({
            "version": version,
            "providers": [{
                "name": "libvirt",
                "url": url,
                "checksum_type": "sha256",
                "checksum": digest,
                "architecture": "amd64",
                "default_architecture": true,
            }],
        }));
    }
    let mut written = Vec::new();
    for (name, mut versions) in by_name {
        versions.sort_by(|a, b| {
            compare_versions(
                a["version"].as_str().unwrap_or(""),
                b["version"].as_str().unwrap_or(""),
            )
        });
        let catalog = serde_json::json!({ "name": name, "versions": versions });
        // Validate what we write the way `box add` will read it.
        let _: Catalog = serde_json::from_value(catalog.clone())?;
        let path = dir.join(format!("{}.json", name.replace('/', "-")));
        crate::util::fs::write_atomic(&path, serde_json::to_string_pretty(&catalog)?.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boxes::metadata::Metadata;

    fn stored(name: &str, version: &str) -> StoredBox {
        StoredBox {
            name: name.into(),
            version: version.into(),
            dir: PathBuf::from(format!("/s/{name}/{version}")),
            metadata: serde_json::from_str::<Metadata>(r#"{"provider": "libvirt"}"#).unwrap(),
            info: None,
            size: 1,
        }
    }

    #[test]
    fn prune_keeps_the_newest_and_what_machines_use() {
        let boxes = [
            stored("deb", "1.0"),
            stored("deb", "1.10"),
            stored("deb", "1.9"),
            stored("alpine", "3"),
        ];
        let plan = prune_plan(&boxes, &|b| usize::from(b.version == "1.0"));
        let removed: Vec<&str> = plan
            .iter()
            .filter(|i| i.remove)
            .map(|i| i.version.as_str())
            .collect();
        assert_eq!(removed, ["1.9"]);
        assert_eq!(plan[0].reason, "used by 1 machine(s)");
        assert_eq!(plan[1].reason, "newest version");
        assert!(!plan[3].remove, "the only version of a box stays");
    }

    #[test]
    fn outdated_compares_versions() {
        let f = |current: &str, latest: Option<&str>| Freshness {
            name: "x".into(),
            current: current.into(),
            latest: latest.map(String::from),
            note: None,
            url: None,
            constraint: None,
        };
        assert!(f("1.9", Some("1.10")).outdated());
        assert!(!f("1.10", Some("1.10")).outdated());
        assert!(!f("1.10", None).outdated());
    }
}
