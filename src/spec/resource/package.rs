//! `[package.NAME]`: a package of the guest's package manager. dpkg's
//! database is read with the other shared files; rpm and apk are asked.

use super::common::{AttrType, Resource};
use crate::spec::check::Check;
use crate::spec::facts::{Facts, Fields, Found, Observed, flag, get};
use crate::util::shell::shell_quote;

/// dpkg's database: every package's status and version.
const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// Packages.
pub struct Package;

impl Resource for Package {
    fn attributes(&self) -> &'static [(&'static str, AttrType)] {
        &[
            ("installed", AttrType::Bool),
            ("version", AttrType::Version),
        ]
    }

    fn recorded(&self) -> &'static [&'static str] {
        &["installed", "version"]
    }

    fn shared_files(&self, _: &Check) -> Vec<String> {
        vec![DPKG_STATUS.into()]
    }

    fn gather(&self, id: usize, check: &Check) -> String {
        let n = shell_quote(&check.name);
        format!(
            "if [ -r /var/lib/dpkg/status ]; then val {id} manager dpkg\n\
             elif has rpm; then\n\
             if rpm -q {n} >/dev/null 2>&1; then val {id} installed 1; else val {id} installed 0; fi\n\
             val {id} version \"$(rpm -q --qf '%|EPOCH?{{%{{EPOCH}}:}}:{{}}|%{{VERSION}}-%{{RELEASE}}' {n} 2>/dev/null)\"\n\
             elif has apk; then\n\
             if apk info -e {n} >/dev/null 2>&1; then val {id} installed 1; else val {id} installed 0; fi\n\
             val {id} version \"$(apk info -v {n} 2>/dev/null | head -n1)\"\n\
             else val {id} error 'no package manager (dpkg, rpm, apk) in the guest'; fi\n"
        )
    }

    fn observe(&self, check: &Check, f: &Fields, facts: &Facts) -> Observed {
        let dpkg = (get(f, "manager").as_deref() == Some("dpkg"))
            .then(|| dpkg_package(facts, &check.name));
        let (installed, version) = match dpkg {
            Some(found) => (found.is_some(), found),
            None => (flag(f, "installed").unwrap_or(false), get(f, "version")),
        };
        Observed::from([
            ("installed", Found::Bool(installed)),
            (
                "version",
                match version.filter(|v| installed && !v.is_empty()) {
                    Some(v) => Found::Text(v),
                    None => Found::Absent("not installed".into()),
                },
            ),
        ])
    }
}

/// The version of package `name` if dpkg's database says it is installed
/// (`name` or `name:arch`).
fn dpkg_package(facts: &Facts, name: &str) -> Option<String> {
    let db = facts.shared_value(DPKG_STATUS)?;
    let (wanted, arch) = match name.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (name, None),
    };
    for paragraph in db.split("\n\n") {
        let field = |key: &str| {
            paragraph
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .map(str::trim)
        };
        if field("Package") != Some(wanted) {
            continue;
        }
        if arch.is_some_and(|a| field("Architecture") != Some(a)) {
            continue;
        }
        if field("Status").is_some_and(|s| s.ends_with(" installed")) {
            return field("Version").map(String::from);
        }
    }
    None
}
