//! `[mount."/path"]`: a mount point, from the shared `/proc/mounts`.

use super::common::{AttrType, Resource};
use crate::spec::check::Check;
use crate::spec::facts::{Facts, Fields, Found, Observed};

/// Mount points.
pub struct Mount;

impl Resource for Mount {
    fn attributes(&self) -> &'static [(&'static str, AttrType)] {
        use AttrType::*;
        &[
            ("exists", Bool),
            ("filesystem", Exact),
            ("options", Includes),
            ("source", Exact),
        ]
    }

    fn recorded(&self) -> &'static [&'static str] {
        &["exists", "filesystem", "source", "options"]
    }

    fn check_name(&self, name: &str) -> Result<(), String> {
        if name.starts_with('/') {
            Ok(())
        } else {
            Err(format!("`{name}` is not an absolute path"))
        }
    }

    fn shared_files(&self, _: &Check) -> Vec<String> {
        vec!["/proc/mounts".into()]
    }

    fn gather(&self, id: usize, _: &Check) -> String {
        format!("val {id} seen 1\n")
    }

    fn observe(&self, check: &Check, _: &Fields, facts: &Facts) -> Observed {
        let mut seen = Observed::new();
        let mounts = facts.shared_text("/proc/mounts");
        let entry = mounts
            .lines()
            .rev()
            .filter_map(|l| {
                let p: Vec<&str> = l.split(' ').collect();
                (p.len() >= 4).then(|| {
                    (
                        unescape(p[0]),
                        unescape(p[1]),
                        p[2].to_string(),
                        p[3].to_string(),
                    )
                })
            })
            .find(|(_, point, _, _)| *point == check.name);
        seen.insert("exists", Found::Bool(entry.is_some()));
        match entry {
            Some((source, _, fs, options)) => {
                seen.insert("source", Found::Text(source));
                seen.insert("filesystem", Found::Text(fs));
                seen.insert(
                    "options",
                    Found::List(options.split(',').map(String::from).collect()),
                );
            }
            None => {
                for key in ["source", "filesystem", "options"] {
                    seen.insert(key, Found::Absent("not mounted".into()));
                }
            }
        }
        seen
    }
}

/// `/proc/mounts` escapes spaces and the like as `\040`.
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.clone().take(3).collect();
            if let Some(n) = (code.len() == 3)
                .then(|| u8::from_str_radix(&code, 8).ok())
                .flatten()
            {
                out.push(n as char);
                for _ in 0..3 {
                    chars.next();
                }
                continue;
            }
        }
        out.push(c);
    }
    out
}
