//! `[group.NAME]`: a group, from the shared `/etc/group` or through NSS.

use super::common::{AttrType, Resource};
use super::user::ACCOUNT_FILES;
use crate::spec::check::Check;
use crate::spec::facts::{Facts, Fields, Found, Observed, get, put};
use crate::util::shell::shell_quote;

/// Groups.
pub struct Group;

impl Resource for Group {
    fn attributes(&self) -> &'static [(&'static str, AttrType)] {
        &[("exists", AttrType::Bool), ("gid", AttrType::Number)]
    }

    fn recorded(&self) -> &'static [&'static str] {
        &["exists", "gid"]
    }

    fn shared_files(&self, _: &Check) -> Vec<String> {
        ACCOUNT_FILES.map(String::from).to_vec()
    }

    fn gather(&self, id: usize, check: &Check) -> String {
        let n = shell_quote(&check.name);
        format!(
            "val {id} seen 1\ninlist {n} /etc/group || val {id} group \"$(getent group {n})\"\n"
        )
    }

    fn distribute(&self, check: &Check, _: usize, facts: &Facts, own: &mut Fields) {
        if let Some(line) = facts
            .shared_text("/etc/group")
            .lines()
            .find(|l| l.split(':').next() == Some(&check.name))
        {
            put(own, "group", line.to_string());
        }
    }

    fn observe(&self, _: &Check, f: &Fields, _: &Facts) -> Observed {
        let line = get(f, "group").unwrap_or_default();
        let parts: Vec<&str> = line.split(':').collect();
        Observed::from([
            ("exists", Found::Bool(parts.len() >= 3)),
            (
                "gid",
                parts
                    .get(2)
                    .and_then(|g| g.parse().ok())
                    .map_or_else(|| Found::Absent("no such group".into()), Found::Number),
            ),
        ])
    }
}
