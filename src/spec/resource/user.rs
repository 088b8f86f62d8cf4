//! `[user.NAME]`: a user account: local ones from the shared
//! `/etc/passwd` and `/etc/group`, others (LDAP, SSSD) through NSS.

use super::common::{AttrType, Resource};
use crate::spec::check::Check;
use crate::spec::facts::{Facts, Fields, Found, Observed, get, put};
use crate::util::shell::shell_quote;

/// The account databases every user, group and process check reads.
pub const ACCOUNT_FILES: [&str; 2] = ["/etc/passwd", "/etc/group"];

/// Users.
pub struct User;

impl Resource for User {
    fn attributes(&self) -> &'static [(&'static str, AttrType)] {
        use AttrType::*;
        &[
            ("exists", Bool),
            ("uid", Number),
            ("gid", Number),
            ("groups", Includes),
            ("home", Exact),
            ("shell", Exact),
        ]
    }

    fn recorded(&self) -> &'static [&'static str] {
        &["exists", "uid", "gid", "groups", "home", "shell"]
    }

    fn shared_files(&self, _: &Check) -> Vec<String> {
        ACCOUNT_FILES.map(String::from).to_vec()
    }

    fn gather(&self, id: usize, check: &Check) -> String {
        let n = shell_quote(&check.name);
        format!(
            "val {id} seen 1\n\
             inlist {n} /etc/passwd || {{ val {id} passwd \"$(getent passwd {n})\"; val {id} groups \"$(id -Gn {n} 2>/dev/null)\"; }}\n"
        )
    }

    fn distribute(&self, check: &Check, _: usize, facts: &Facts, own: &mut Fields) {
        let (passwd, group) = (
            facts.shared_text("/etc/passwd"),
            facts.shared_text("/etc/group"),
        );
        let Some(line) = passwd
            .lines()
            .find(|l| l.split(':').next() == Some(&check.name))
        else {
            return;
        };
        let gid = line.split(':').nth(3).unwrap_or("");
        let mut groups: Vec<&str> = Vec::new();
        for g in group.lines() {
            let f: Vec<&str> = g.split(':').collect();
            if f.len() < 4 {
                continue;
            }
            let member = f[3].split(',').any(|m| m == check.name);
            if (f[2] == gid || member) && !groups.contains(&f[0]) {
                groups.push(f[0]);
            }
        }
        put(own, "passwd", line.to_string());
        put(own, "groups", groups.join(" "));
    }

    fn observe(&self, _: &Check, f: &Fields, _: &Facts) -> Observed {
        let mut seen = Observed::new();
        let line = get(f, "passwd").unwrap_or_default();
        let parts: Vec<&str> = line.split(':').collect();
        let exists = parts.len() >= 7;
        seen.insert("exists", Found::Bool(exists));
        if exists {
            let number = |s: &str| s.parse().map_or(Found::Missing, Found::Number);
            seen.insert("uid", number(parts[2]));
            seen.insert("gid", number(parts[3]));
            seen.insert("home", Found::Text(parts[5].into()));
            seen.insert("shell", Found::Text(parts[6].into()));
            seen.insert(
                "groups",
                Found::List(
                    get(f, "groups")
                        .unwrap_or_default()
                        .split_whitespace()
                        .map(String::from)
                        .collect(),
                ),
            );
        } else {
            for key in ["uid", "gid", "home", "shell", "groups"] {
                seen.insert(key, Found::Absent("no such user".into()));
            }
        }
        seen
    }
}
