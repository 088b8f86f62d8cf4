//! Where each stored box came from (`source.json` in its folder), so
//! `box outdated` and `box update` know which catalog to ask.

use super::StoredBox;
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// Where a stored box came from (`source.json` in its folder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The catalog or `.box` it was added from.
    pub url: String,
    /// It came through a catalog (so newer versions can be looked up).
    pub catalog: bool,
    /// The version constraint it was added with.
    pub constraint: Option<String>,
}

const SOURCE_FILE: &str = "source.json";

/// Records a box's source.
pub fn record_source(b: &StoredBox, source: &Source) -> Result<()> {
    let text = serde_json::to_string_pretty(source)?;
    crate::util::fs::write_atomic(&b.dir.join(SOURCE_FILE), text.as_bytes())
}

/// A box's recorded source.
pub fn source_of(b: &StoredBox) -> Option<Source> {
    let text = std::fs::read_to_string(b.dir.join(SOURCE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}
