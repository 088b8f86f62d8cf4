//! `env spec add`: writing checks from a live machine's current state (like
//! `goss add`), appended to a spec file without touching what is there.

use super::check::{Check, Expect, Kind};
use super::parse as model;
use anyhow::{Context, Result, bail};
use std::path::Path;

/// A check that gathers everything `spec add` records about a resource.
pub fn probe(kind: Kind, name: &str) -> Result<Check> {
    model::check_name(kind, name).map_err(anyhow::Error::msg)?;
    let mut check = Check::new(kind, name, Path::new(""));
    // Gathering depends on the kind only (contents and hashes are not
    // recorded); the expectation is a placeholder.
    check.expect.push(("exists".into(), Expect::Bool(true)));
    Ok(check)
}

/// The TOML text of one check: `[kind."name"]` and its values.
pub fn render(kind: Kind, name: &str, values: &[(&str, toml::Value)]) -> Result<String> {
    let mut attributes = toml::Table::new();
    for (attribute, value) in values {
        attributes.insert(attribute.to_string(), value.clone());
    }
    let mut by_name = toml::Table::new();
    by_name.insert(name.to_string(), toml::Value::Table(attributes));
    let mut doc = toml::Table::new();
    doc.insert(kind.name().to_string(), toml::Value::Table(by_name));
    toml::to_string(&doc).context("cannot write the check as TOML")
}

/// Appends rendered checks to the spec file at `path` (created if missing).
/// The file must parse before, a check already there is refused, and the
/// result must parse after: the file is never left broken.
pub fn append(path: &Path, additions: &[(Kind, String, String)]) -> Result<()> {
    let before = if path.exists() {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    } else {
        String::new()
    };
    let existing = model::parse(path, &before)?;
    for (kind, name, _) in additions {
        if existing
            .checks
            .iter()
            .any(|c| c.kind == *kind && &c.name == name)
        {
            bail!(
                "{} already has a check of {} `{name}`: edit it there",
                path.display(),
                kind.name()
            );
        }
    }
    let mut after = before.clone();
    for (_, _, text) in additions {
        if !after.is_empty() && !after.ends_with("\n\n") {
            after.push_str(if after.ends_with('\n') { "\n" } else { "\n\n" });
        }
        after.push_str(text);
    }
    model::parse(path, &after).context("the new checks would not read back")?;
    if let Some(folder) = path.parent().filter(|f| !f.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
    }
    crate::util::fs::write_atomic(path, after.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_checks_read_back() {
        let text = render(
            Kind::File,
            "/etc/motd",
            &[
                ("exists", toml::Value::Boolean(true)),
                ("mode", toml::Value::String("0644".into())),
            ],
        )
        .unwrap();
        assert!(text.contains("[file.\"/etc/motd\"]"), "{text}");
        let spec = model::parse(Path::new("x.toml"), &text).unwrap();
        assert_eq!(spec.checks[0].expect.len(), 2);
    }

    #[test]
    fn append_keeps_the_file_and_refuses_duplicates() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("specs/web.toml");
        let motd = render(
            Kind::File,
            "/etc/motd",
            &[("exists", toml::Value::Boolean(true))],
        )
        .unwrap();
        append(&path, &[(Kind::File, "/etc/motd".into(), motd.clone())]).unwrap();
        let user = render(Kind::User, "web", &[("uid", toml::Value::Integer(999))]).unwrap();
        append(&path, &[(Kind::User, "web".into(), user)]).unwrap();
        let spec = model::load(&path).unwrap();
        assert_eq!(spec.checks.len(), 2);
        let before = std::fs::read_to_string(&path).unwrap();
        let err = append(&path, &[(Kind::File, "/etc/motd".into(), motd)]).unwrap_err();
        assert!(err.to_string().contains("already has"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        std::fs::write(&path, "[file.\"/x\"\n").unwrap();
        assert!(
            append(&path, &[]).is_err(),
            "a broken file is not appended to"
        );
        assert!(probe(Kind::File, "relative").is_err());
    }
}
