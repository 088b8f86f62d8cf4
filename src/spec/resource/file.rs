//! `[file."/path"]`: a file, folder or link. One `stat` (and one
//! `sha256sum`) covers every file check of a run; contents are fetched
//! only for checks that look into them.

use super::common::{AttrType, CONTENT_LIMIT, Resource};
use crate::spec::check::Check;
use crate::spec::facts::{Facts, Fields, Found, Observed, flag, get, put};
use crate::spec::matchers::Pattern;
use crate::util::shell::shell_quote;

/// Files.
pub struct File;

fn wants(check: &Check, attribute: &str) -> bool {
    check.expect.iter().any(|(a, _)| a == attribute)
}

impl Resource for File {
    fn attributes(&self) -> &'static [(&'static str, AttrType)] {
        use AttrType::*;
        &[
            ("exists", Bool),
            ("type", Exact),
            ("mode", Exact),
            ("owner", Exact),
            ("group", Exact),
            ("size", Number),
            ("contains", Patterns),
            ("sha256", Exact),
            ("link_target", Exact),
        ]
    }

    fn recorded(&self) -> &'static [&'static str] {
        &["exists", "type", "mode", "owner", "group", "link_target"]
    }

    fn check_name(&self, name: &str) -> Result<(), String> {
        if name.starts_with('/') {
            Ok(())
        } else {
            Err(format!("`{name}` is not an absolute path"))
        }
    }

    fn needs_scratch(&self, check: &Check) -> bool {
        wants(check, "contains")
    }

    fn shared_script(&self, checks: &[&Check]) -> String {
        let names: Vec<String> = checks.iter().map(|c| shell_quote(&c.name)).collect();
        let mut out = format!(
            "val _ stat \"$(QUOTING_STYLE=literal stat -c '%F|%a|%U|%G|%s|%n' -- {} 2>/dev/null)\"\n",
            names.join(" ")
        );
        out.push_str(&format!(
            "val _ links \"$(for f in {}; do [ -L \"$f\" ] && printf '%s\\n%s\\n' \"$f\" \"$(readlink \"$f\")\"; done)\"\n",
            names.join(" ")
        ));
        let hashed: Vec<String> = checks
            .iter()
            .filter(|c| wants(c, "sha256"))
            .map(|c| shell_quote(&c.name))
            .collect();
        if !hashed.is_empty() {
            out.push_str(&format!(
                "val _ sha256 \"$(sha256sum -- {} 2>/dev/null)\"\n",
                hashed.join(" ")
            ));
        }
        out
    }

    fn gather(&self, id: usize, check: &Check) -> String {
        if !wants(check, "contains") {
            return format!("val {id} seen 1\n");
        }
        let n = shell_quote(&check.name);
        format!(
            "val {id} seen 1\n\
             if [ -f {n} ] && [ -r {n} ]; then head -c {CONTENT_LIMIT} {n} > \"$T/c{id}\" && emit {id} contents \"$T/c{id}\"; fi\n"
        )
    }

    fn distribute(&self, check: &Check, _: usize, facts: &Facts, own: &mut Fields) {
        let stat = facts.shared_text("stat");
        let suffix = format!("|{}", check.name);
        let line = stat.lines().find(|l| l.ends_with(&suffix));
        put(own, "exists", if line.is_some() { "1" } else { "0" }.into());
        if let Some(line) = line {
            put(own, "stat", line[..line.len() - suffix.len()].to_string());
        }
        let links = facts.shared_text("links");
        let mut pairs = links.lines();
        while let (Some(path), Some(target)) = (pairs.next(), pairs.next()) {
            if path == check.name {
                put(own, "link", target.to_string());
            }
        }
        if let Some(hash) = facts
            .shared_text("sha256")
            .lines()
            .find(|l| l.ends_with(&format!("  {}", check.name)))
            .and_then(|l| l.split_whitespace().next())
        {
            put(own, "sha256", hash.trim_start_matches('\\').to_string());
        }
    }

    fn observe(&self, _: &Check, f: &Fields, _: &Facts) -> Observed {
        let mut seen = Observed::new();
        let exists = flag(f, "exists").unwrap_or(false);
        seen.insert("exists", Found::Bool(exists));
        let absent = || Found::Absent("no such file".into());
        let stat = get(f, "stat").unwrap_or_default();
        let parts: Vec<&str> = stat.split('|').collect();
        if exists && parts.len() == 5 {
            seen.insert("type", Found::Text(file_type(parts[0]).into()));
            seen.insert("mode", Found::Text(format!("{:0>4}", parts[1])));
            seen.insert("owner", Found::Text(parts[2].into()));
            seen.insert("group", Found::Text(parts[3].into()));
            if let Ok(size) = parts[4].parse() {
                seen.insert("size", Found::Number(size));
            }
        } else {
            for key in ["type", "mode", "owner", "group", "size"] {
                seen.insert(key, absent());
            }
        }
        seen.insert(
            "contains",
            match f.get("contents") {
                Some(c) => Found::Text(String::from_utf8_lossy(c).into_owned()),
                None if exists => Found::Absent("not a readable regular file".into()),
                None => absent(),
            },
        );
        seen.insert(
            "sha256",
            get(f, "sha256").map_or_else(
                || Found::Absent("not a readable regular file".into()),
                Found::Text,
            ),
        );
        seen.insert(
            "link_target",
            get(f, "link").map_or_else(|| Found::Absent("not a symlink".into()), Found::Text),
        );
        seen
    }

    fn exact_holds(&self, attribute: &str, want: &Pattern, found: &str) -> bool {
        match attribute {
            "mode" => same_mode(want, found),
            "sha256" => want.equals(&found.to_lowercase()),
            _ => want.equals(found),
        }
    }
}

/// `0644` and `644` are the same mode.
fn same_mode(want: &Pattern, found: &str) -> bool {
    let wanted = want.to_string();
    if !wanted.is_empty() && wanted.chars().all(|c| c.is_digit(8)) {
        return u32::from_str_radix(&wanted, 8).ok() == u32::from_str_radix(found, 8).ok();
    }
    want.equals(found)
}

fn file_type(stat_type: &str) -> &str {
    match stat_type {
        "regular file" | "regular empty file" => "file",
        "directory" => "directory",
        "symbolic link" => "symlink",
        "fifo" => "pipe",
        "socket" => "socket",
        "character special file" => "character-device",
        "block special file" => "block-device",
        other => other,
    }
}
