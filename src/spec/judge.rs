//! Judging facts against expectations: pure functions, so every resource
//! type's pass and fail cases are tested without a guest.

use super::matchers::Pattern;
use super::model::{Check, Expect, Kind, Protocol, parse_port};
use super::script::Facts;
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every expectation held.
    Pass,
    /// At least one did not.
    Fail,
    /// Marked `skip`.
    Skip,
    /// The facts could not be gathered.
    Error,
}

/// One attribute's comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assertion {
    /// Attribute (`mode`).
    pub attribute: String,
    /// What the spec wants.
    pub expected: String,
    /// What the machine has.
    pub found: String,
    /// Whether it held.
    pub passed: bool,
}

/// A judged check.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Resource type.
    pub resource: &'static str,
    /// Resource name.
    pub name: String,
    /// Title, or `type name`.
    pub title: String,
    /// Verdict.
    pub verdict: Verdict,
    /// Comparisons, in the spec's order.
    pub assertions: Vec<Assertion>,
    /// Why the facts are missing (verdict error).
    pub error: Option<String>,
    /// Runs it took (retries).
    pub attempts: u32,
    /// The spec file it comes from.
    pub spec: String,
}

impl Outcome {
    /// A skipped check.
    pub fn skipped(check: &Check) -> Outcome {
        Outcome {
            resource: check.kind.name(),
            name: check.name.clone(),
            title: check.label(),
            verdict: Verdict::Skip,
            assertions: Vec::new(),
            error: None,
            attempts: 0,
            spec: check.file.display().to_string(),
        }
    }
}

type Fields = HashMap<String, Vec<u8>>;

fn get(fields: &Fields, key: &str) -> Option<String> {
    fields.get(key).map(|v| {
        String::from_utf8_lossy(v)
            .trim_end_matches('\n')
            .to_string()
    })
}

/// Judges check `id` from the facts.
pub fn judge(id: usize, check: &Check, facts: &Facts) -> Outcome {
    let mut outcome = Outcome::skipped(check);
    outcome.attempts = 1;
    let empty = Fields::new();
    let fields = facts.checks.get(&id);
    let error = match fields {
        None => Some("no facts came back for this check".to_string()),
        Some(f) => get(f, "error").filter(|e| !e.trim().is_empty() && check.kind != Kind::Http),
    };
    if let Some(error) = error {
        outcome.verdict = Verdict::Error;
        outcome.error = Some(error.trim().to_string());
        return outcome;
    }
    let fields = fields.unwrap_or(&empty);
    let observed = observe(check, fields, facts);
    for (attribute, expect) in &check.expect {
        let found = observed
            .get(attribute.as_str())
            .cloned()
            .unwrap_or(Found::Missing);
        outcome
            .assertions
            .push(assess(attribute, expect, &found, check.kind));
    }
    outcome.verdict = if outcome.assertions.iter().all(|a| a.passed) {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    outcome
}

/// A value found on the machine.
#[derive(Debug, Clone, PartialEq)]
enum Found {
    Bool(bool),
    Number(i64),
    Text(String),
    List(Vec<String>),
    /// Not there (with why), e.g. the version of a package not installed.
    Missing,
    Absent(String),
}

impl Found {
    fn show(&self) -> String {
        match self {
            Found::Bool(b) => b.to_string(),
            Found::Number(n) => n.to_string(),
            Found::Text(t) => shorten(t),
            Found::List(items) if items.is_empty() => "nothing".into(),
            Found::List(items) => items.join(", "),
            Found::Missing => "nothing".into(),
            Found::Absent(why) => why.clone(),
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            Found::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// What the machine has now, as spec values, for the attributes `spec add`
/// records (those of a fresh, stable description: no sizes or hashes).
pub fn current_values(id: usize, check: &Check, facts: &Facts) -> Vec<(&'static str, toml::Value)> {
    let empty = Fields::new();
    let fields = facts.checks.get(&id).unwrap_or(&empty);
    let seen = observe(check, fields, facts);
    let order: &[&str] = match check.kind {
        Kind::Package => &["installed", "version"],
        Kind::Service => &["enabled", "running"],
        Kind::Port => &["listening", "addresses"],
        Kind::File => &["exists", "type", "mode", "owner", "group", "link_target"],
        Kind::Command => &["exit_status", "stdout"],
        Kind::User => &["exists", "uid", "gid", "groups", "home", "shell"],
        Kind::Group => &["exists", "gid"],
        Kind::Process => &["running", "user"],
        Kind::KernelParam => &["value"],
        Kind::KernelModule => &["loaded"],
        Kind::Mount => &["exists", "filesystem", "source", "options"],
        Kind::Http => &["status"],
        Kind::Dns => &["resolvable", "addresses"],
        Kind::Addr => &["reachable"],
        Kind::Interface => &["exists", "mtu", "addresses"],
    };
    let mut out = Vec::new();
    for attribute in order {
        let value = match seen.get(attribute) {
            Some(Found::Bool(b)) => toml::Value::Boolean(*b),
            Some(Found::Number(n)) => toml::Value::Integer(*n),
            Some(Found::Text(t)) if *attribute == "stdout" => toml::Value::Array(
                t.lines()
                    .filter(|l| !l.trim().is_empty())
                    .take(5)
                    .map(|l| toml::Value::String(literal(l)))
                    .collect(),
            ),
            Some(Found::Text(t)) => toml::Value::String(literal(t)),
            Some(Found::List(items)) if *attribute == "user" => match items.as_slice() {
                [one] => toml::Value::String(literal(one)),
                _ => continue,
            },
            Some(Found::List(items)) if !items.is_empty() => {
                toml::Value::Array(items.iter().cloned().map(toml::Value::String).collect())
            }
            _ => continue,
        };
        if matches!(&value, toml::Value::Array(a) if a.is_empty()) {
            continue;
        }
        out.push((*attribute, value));
    }
    out
}

/// A value written so that it reads back as itself, not as a pattern.
fn literal(text: &str) -> String {
    let looks_like_regex = text.len() >= 2 && text.starts_with('/') && text.ends_with('/');
    if text.starts_with('!') || looks_like_regex {
        format!("/^{}$/", regex::escape(text))
    } else {
        text.to_string()
    }
}

/// Long outputs are cut in reports.
fn shorten(text: &str) -> String {
    const MAX: usize = 300;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
}

fn assess(attribute: &str, expect: &Expect, found: &Found, kind: Kind) -> Assertion {
    let (expected, passed) = match expect {
        Expect::Bool(want) => (
            want.to_string(),
            matches!(found, Found::Bool(b) if b == want),
        ),
        Expect::Number(want) => (
            want.to_string(),
            matches!(found, Found::Number(n) if want.holds(*n)),
        ),
        Expect::Version(want) => (
            want.to_string(),
            found.text().is_some_and(|v| want.holds(v)),
        ),
        Expect::Exact(want) => (
            want.to_string(),
            found.text().is_some_and(|v| {
                if kind == Kind::File && attribute == "mode" {
                    same_mode(want, v)
                } else if attribute == "sha256" {
                    want.equals(&v.to_lowercase())
                } else {
                    want.equals(v)
                }
            }) || matches!(found, Found::List(items) if items.iter().any(|v| want.equals(v))),
        ),
        Expect::Patterns(want) => {
            let text = found.text().unwrap_or("");
            let failing: Vec<&Pattern> = want.iter().filter(|p| !p.found_in(text)).collect();
            let expected = want
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let ok = found.text().is_some() && failing.is_empty();
            let found_text = if found.text().is_some() && !failing.is_empty() {
                format!(
                    "not matching {} in: {}",
                    failing
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    found.show()
                )
            } else {
                found.show()
            };
            return Assertion {
                attribute: attribute.into(),
                expected,
                found: found_text,
                passed: ok,
            };
        }
        Expect::Includes(want) => {
            let have: Vec<String> = match found {
                Found::List(items) => items.clone(),
                _ => Vec::new(),
            };
            let ok = matches!(found, Found::List(_))
                && want
                    .iter()
                    .all(|w| have.iter().any(|h| includes(kind, attribute, w, h)));
            (want.join(", "), ok)
        }
    };
    Assertion {
        attribute: attribute.into(),
        expected,
        found: found.show(),
        passed,
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

/// Whether `have` satisfies the wanted list item `want`.
fn includes(kind: Kind, attribute: &str, want: &str, have: &str) -> bool {
    match (kind, attribute) {
        // `10.0.2.15` matches `10.0.2.15/24`; `10.0.2.15/24` only itself.
        (Kind::Interface, _) => have == want || have.split('/').next() == Some(want),
        // A dual-stack `::` listener serves IPv4 too.
        (Kind::Port, _) => {
            let (w, h) = (want.parse::<IpAddr>().ok(), have.parse::<IpAddr>().ok());
            w.is_some() && (w == h || (want == "0.0.0.0" && have == "::"))
        }
        (Kind::Dns, _) => {
            let (w, h) = (want.parse::<IpAddr>().ok(), have.parse::<IpAddr>().ok());
            if w.is_some() { w == h } else { want == have }
        }
        _ => want == have,
    }
}

/// What the machine has, per attribute, from the raw facts.
fn observe(check: &Check, f: &Fields, facts: &Facts) -> HashMap<&'static str, Found> {
    let mut seen: HashMap<&'static str, Found> = HashMap::new();
    let flag = |key: &str| get(f, key).map(|v| v == "1");
    match check.kind {
        Kind::Package => {
            let dpkg = (get(f, "manager").as_deref() == Some("dpkg"))
                .then(|| dpkg_package(facts, &check.name));
            let (installed, version) = match dpkg {
                Some(found) => (found.is_some(), found),
                None => (flag("installed").unwrap_or(false), get(f, "version")),
            };
            seen.insert("installed", Found::Bool(installed));
            seen.insert(
                "version",
                match version.filter(|v| installed && !v.is_empty()) {
                    Some(v) => Found::Text(v),
                    None => Found::Absent("not installed".into()),
                },
            );
        }
        Kind::Service => {
            let enabled = get(f, "enabled").unwrap_or_default();
            let active = get(f, "active").unwrap_or_default();
            seen.insert(
                "enabled",
                match get(f, "enabled_rc") {
                    Some(rc) => Found::Bool(rc == "0"),
                    None => Found::Absent(format!("unknown ({enabled})")),
                },
            );
            seen.insert("running", Found::Bool(active.trim() == "active"));
        }
        Kind::Port => {
            let listeners = listeners(facts);
            if let Ok((proto, port)) = parse_port(&check.name) {
                let addresses: Vec<String> = listeners
                    .iter()
                    .filter(|l| l.port == port && serves(proto, l))
                    .map(|l| l.address.to_string())
                    .collect();
                seen.insert("listening", Found::Bool(!addresses.is_empty()));
                seen.insert("addresses", Found::List(addresses));
            }
        }
        Kind::File => {
            let exists = flag("exists").unwrap_or(false);
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
        }
        Kind::Command => {
            if let Some(code) = get(f, "exit_status").and_then(|c| c.parse().ok()) {
                seen.insert(
                    "exit_status",
                    if code == 124 {
                        Found::Absent(format!(
                            "124: timed out after {} s",
                            check.time_limit().as_secs()
                        ))
                    } else {
                        Found::Number(code)
                    },
                );
            }
            for key in ["stdout", "stderr"] {
                if let Some(text) = get(f, key) {
                    seen.insert(
                        if key == "stdout" { "stdout" } else { "stderr" },
                        Found::Text(text),
                    );
                }
            }
        }
        Kind::User => {
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
        }
        Kind::Group => {
            let line = get(f, "group").unwrap_or_default();
            let parts: Vec<&str> = line.split(':').collect();
            seen.insert("exists", Found::Bool(parts.len() >= 3));
            seen.insert(
                "gid",
                parts
                    .get(2)
                    .and_then(|g| g.parse().ok())
                    .map_or_else(|| Found::Absent("no such group".into()), Found::Number),
            );
        }
        Kind::Process => {
            let users = user_names(facts);
            let matching: Vec<String> = processes(facts)
                .into_iter()
                .filter(|(_, comm)| same_process(&check.name, comm))
                .map(|(uid, _)| users.get(&uid).cloned().unwrap_or(uid))
                .collect();
            seen.insert("running", Found::Bool(!matching.is_empty()));
            seen.insert("count", Found::Number(matching.len() as i64));
            let mut distinct = matching.clone();
            distinct.sort();
            distinct.dedup();
            seen.insert("user", Found::List(distinct));
        }
        Kind::KernelParam => {
            if let Some(v) = get(f, "value") {
                // Multi-value parameters are tab-separated: compare with spaces.
                seen.insert(
                    "value",
                    Found::Text(v.split_whitespace().collect::<Vec<_>>().join(" ")),
                );
            }
        }
        Kind::KernelModule => {
            let name = check.name.replace('-', "_");
            let text = |key: &str| {
                facts
                    .shared
                    .iter()
                    .filter(|(k, _)| k.ends_with(key))
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    .collect::<String>()
            };
            let loaded = text("/proc/modules")
                .lines()
                .any(|l| l.split(' ').next() == Some(&name))
                || text("/modules.builtin").lines().any(|l| {
                    l.rsplit('/').next().and_then(|f| f.strip_suffix(".ko")) == Some(name.as_str())
                });
            seen.insert("loaded", Found::Bool(loaded));
        }
        Kind::Mount => {
            let mounts =
                String::from_utf8_lossy(facts.shared.get("/proc/mounts").map_or(&[][..], |v| v))
                    .to_string();
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
        }
        Kind::Http => {
            let raw = f.get("raw").map(|r| split_response(r));
            let raw_status = raw.as_ref().map(|(status, _, _)| status.to_string());
            let status = get(f, "status")
                .or(raw_status)
                .and_then(|s| s.trim().parse::<i64>().ok());
            match status.filter(|s| *s > 0) {
                Some(s) => {
                    seen.insert("status", Found::Number(s));
                }
                None => {
                    let why = get(f, "error").unwrap_or_default();
                    let why = why.lines().last().unwrap_or("no answer").trim().to_string();
                    for key in ["status", "body", "headers"] {
                        seen.insert(key, Found::Absent(format!("request failed: {why}")));
                    }
                }
            }
            if status.is_some_and(|s| s > 0) {
                let (body, headers) = match raw {
                    Some((_, headers, body)) => (body, headers),
                    None => (
                        get(f, "body").unwrap_or_default(),
                        get(f, "headers").unwrap_or_default(),
                    ),
                };
                seen.insert("body", Found::Text(body));
                seen.insert("headers", Found::Text(headers));
            }
        }
        Kind::Dns => {
            let answer = get(f, "answer").unwrap_or_default();
            let mut addresses: Vec<String> = answer
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(String::from))
                .collect();
            addresses.dedup();
            let mut unique = Vec::new();
            for a in addresses {
                if !unique.contains(&a) {
                    unique.push(a);
                }
            }
            seen.insert(
                "resolvable",
                Found::Bool(get(f, "rc").as_deref() == Some("0") && !unique.is_empty()),
            );
            seen.insert("addresses", Found::List(unique));
        }
        Kind::Addr => {
            seen.insert(
                "reachable",
                Found::Bool(get(f, "rc").as_deref() == Some("0")),
            );
        }
        Kind::Interface => {
            let exists = flag("exists").unwrap_or(false);
            seen.insert("exists", Found::Bool(exists));
            if exists {
                if let Some(mtu) = get(f, "mtu").and_then(|m| m.trim().parse().ok()) {
                    seen.insert("mtu", Found::Number(mtu));
                }
                let addrs = get(f, "addrs").unwrap_or_default();
                let list: Vec<String> = addrs
                    .lines()
                    .filter_map(|l| {
                        let words: Vec<&str> = l.split_whitespace().collect();
                        words
                            .iter()
                            .position(|w| *w == "inet" || *w == "inet6")
                            .and_then(|i| words.get(i + 1))
                            .map(|a| a.to_string())
                    })
                    .collect();
                seen.insert("addresses", Found::List(list));
            } else {
                seen.insert("mtu", Found::Absent("no such interface".into()));
                seen.insert("addresses", Found::Absent("no such interface".into()));
            }
        }
    }
    seen
}

/// The version of package `name` if dpkg's database says it is installed
/// (`name` or `name:arch`).
fn dpkg_package(facts: &Facts, name: &str) -> Option<String> {
    let db =
        String::from_utf8_lossy(facts.shared.get("/var/lib/dpkg/status")?.as_slice()).into_owned();
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

/// Status, header block and body of a raw HTTP response (0 when it is not one).
fn split_response(raw: &[u8]) -> (i64, String, String) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = match text.find("\r\n\r\n") {
        Some(i) => (&text[..i], &text[i + 4..]),
        None => (&text[..], ""),
    };
    let status = head
        .lines()
        .next()
        .filter(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
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

/// A listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `tcp` or `udp`.
    pub udp: bool,
    /// Over IPv6.
    pub v6: bool,
    /// Local address.
    pub address: IpAddr,
    /// Local port.
    pub port: u16,
}

fn serves(proto: Protocol, l: &Listener) -> bool {
    match proto {
        Protocol::Tcp => !l.udp,
        Protocol::Udp => l.udp,
        Protocol::Tcp6 => !l.udp && l.v6,
        Protocol::Udp6 => l.udp && l.v6,
    }
}

/// Listening sockets from `/proc/net/{tcp,tcp6,udp,udp6}`: TCP in state
/// LISTEN (0A), UDP bound (state 07).
pub fn listeners(facts: &Facts) -> Vec<Listener> {
    let mut out = Vec::new();
    for (key, udp, v6) in [
        ("/proc/net/tcp", false, false),
        ("/proc/net/tcp6", false, true),
        ("/proc/net/udp", true, false),
        ("/proc/net/udp6", true, true),
    ] {
        let Some(table) = facts.shared.get(key) else {
            continue;
        };
        for line in String::from_utf8_lossy(table).lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 4 || cols[3] != if udp { "07" } else { "0A" } {
                continue;
            }
            if let Some((address, port)) = parse_socket(cols[1], v6) {
                out.push(Listener {
                    udp,
                    v6,
                    address,
                    port,
                });
            }
        }
    }
    out
}

/// `0100007F:0050` (little-endian words, as the kernel prints them).
fn parse_socket(text: &str, v6: bool) -> Option<(IpAddr, u16)> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).map(u32::swap_bytes))
        .collect::<Result<_, _>>()
        .ok()?;
    let ip = if v6 {
        if words.len() != 4 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, w) in words.iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        IpAddr::from(bytes)
    } else {
        IpAddr::from(words.first()?.to_be_bytes())
    };
    Some((ip, port))
}

/// `(uid, command name)` of each process.
fn processes(facts: &Facts) -> Vec<(String, String)> {
    String::from_utf8_lossy(facts.shared.get("procs").map_or(&[][..], |v| v))
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let (uid, comm) = l.split_once(char::is_whitespace)?;
            Some((uid.to_string(), comm.trim().to_string()))
        })
        .collect()
}

/// uid -> user name, from `getent passwd`.
fn user_names(facts: &Facts) -> HashMap<String, String> {
    String::from_utf8_lossy(facts.shared.get("/etc/passwd").map_or(&[][..], |v| v))
        .lines()
        .filter_map(|l| {
            let p: Vec<&str> = l.split(':').collect();
            (p.len() >= 3).then(|| (p[2].to_string(), p[0].to_string()))
        })
        .collect()
}

/// The kernel keeps 15 characters of a process name.
fn same_process(wanted: &str, comm: &str) -> bool {
    wanted == comm || (wanted.len() > 15 && wanted.get(..15) == Some(comm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model;
    use std::path::Path;

    fn one(text: &str, fields: &[(&str, &str)], shared: &[(&str, &str)]) -> Outcome {
        let spec = model::parse(Path::new("t.toml"), text).unwrap();
        let mut facts = Facts::default();
        facts.checks.insert(
            0,
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        );
        for (k, v) in shared {
            facts.shared.insert(k.to_string(), v.as_bytes().to_vec());
        }
        judge(0, &spec.checks[0], &facts)
    }

    fn passes(text: &str, fields: &[(&str, &str)], shared: &[(&str, &str)]) -> bool {
        let o = one(text, fields, shared);
        assert_ne!(o.verdict, Verdict::Error, "{o:?}");
        o.verdict == Verdict::Pass
    }

    #[test]
    fn package() {
        const DB: &str = "Package: python3\nStatus: install ok installed\nArchitecture: amd64\nVersion: 3.11.2-1+b1\n\nPackage: nginx\nStatus: deinstall ok config-files\nVersion: 1.22.1-9\n";
        let dpkg = [("/var/lib/dpkg/status", DB)];
        let m = [("manager", "dpkg")];
        assert!(passes(
            "[package.python3]\ninstalled = true\nversion = \"3.11.2\"",
            &m,
            &dpkg
        ));
        assert!(passes(
            "[package.\"python3:amd64\"]\ninstalled = true",
            &m,
            &dpkg
        ));
        assert!(!passes(
            "[package.\"python3:i386\"]\ninstalled = true",
            &m,
            &dpkg
        ));
        assert!(
            passes("[package.nginx]\ninstalled = false", &m, &dpkg),
            "config files only"
        );
        assert!(passes("[package.nope]\ninstalled = false", &m, &dpkg));
        let facts = [("installed", "1"), ("version", "3.11.2-1+b1")];
        assert!(passes(
            "[package.python3]\ninstalled = true\nversion = \">= 3.11, < 4\"",
            &facts,
            &[]
        ));
        assert!(!passes(
            "[package.python3]\nversion = \">= 3.12\"",
            &facts,
            &[]
        ));
        let epoch = [("installed", "1"), ("version", "1:9.2p1-2")];
        assert!(
            passes(
                "[package.openssh-server]\nversion = \"> 10.0\"",
                &epoch,
                &[]
            ),
            "an epoch outranks the rest"
        );
        let absent = [("installed", "0"), ("version", "")];
        assert!(passes("[package.nginx]\ninstalled = false", &absent, &[]));
        let o = one("[package.nginx]\nversion = \"1.0\"", &absent, &[]);
        assert_eq!(o.assertions[0].found, "not installed");
    }

    #[test]
    fn service() {
        let running = [
            ("enabled_rc", "0"),
            ("enabled", "enabled"),
            ("active", "active"),
        ];
        assert!(passes(
            "[service.ssh]\nenabled = true\nrunning = true",
            &running,
            &[]
        ));
        let stopped = [
            ("enabled_rc", "1"),
            ("enabled", "disabled"),
            ("active", "inactive"),
        ];
        assert!(!passes("[service.ssh]\nrunning = true", &stopped, &[]));
        assert!(passes(
            "[service.ssh]\nenabled = false\nrunning = false",
            &stopped,
            &[]
        ));
    }

    const TCP: &str = "  sl  local_address rem_address   st\n   0: 0100007F:0050 00000000:0000 0A\n   1: 00000000:0016 00000000:0000 0A\n   2: 0100007F:1F90 0100007F:C350 01\n";
    const TCP6: &str = "  sl  local_address                         remote_address  st\n   0: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A\n";
    const UDP: &str =
        "  sl  local_address rem_address   st\n   0: 00000000:0035 00000000:0000 07\n";

    #[test]
    fn port_reads_proc_net_and_counts_dual_stack() {
        let shared = [
            ("/proc/net/tcp", TCP),
            ("/proc/net/tcp6", TCP6),
            ("/proc/net/udp", UDP),
        ];
        let seen = [("seen", "1")];
        assert!(passes(
            "[port.\"tcp:80\"]\nlistening = true\naddresses = [\"127.0.0.1\"]",
            &seen,
            &shared
        ));
        assert!(passes(
            "[port.\"22\"]\nlistening = true\naddresses = [\"0.0.0.0\"]",
            &seen,
            &shared
        ));
        // 8000 listens on tcp6 `::` only: a tcp check passes (dual stack).
        assert!(passes(
            "[port.\"tcp:8000\"]\nlistening = true\naddresses = [\"0.0.0.0\"]",
            &seen,
            &shared
        ));
        assert!(passes(
            "[port.\"tcp6:8000\"]\nlistening = true",
            &seen,
            &shared
        ));
        assert!(!passes(
            "[port.\"tcp6:80\"]\nlistening = true",
            &seen,
            &shared
        ));
        // 8080 is an established connection, not a listener.
        assert!(passes(
            "[port.\"tcp:8080\"]\nlistening = false",
            &seen,
            &shared
        ));
        assert!(passes(
            "[port.\"udp:53\"]\nlistening = true",
            &seen,
            &shared
        ));
        assert!(!passes(
            "[port.\"udp:80\"]\nlistening = true",
            &seen,
            &shared
        ));
        assert!(!passes(
            "[port.\"tcp:80\"]\naddresses = [\"0.0.0.0\"]",
            &seen,
            &shared
        ));
    }

    #[test]
    fn file() {
        let facts = [
            ("exists", "1"),
            ("stat", "regular file|644|root|adm|1234"),
            ("contents", "user www-data;\nworker_processes auto;\n"),
            ("sha256", "ABCDEF"),
        ];
        let spec = "[file.\"/etc/x\"]\nexists = true\ntype = \"file\"\nmode = \"0644\"\nowner = \"root\"\ngroup = \"adm\"\nsize = \"> 1000\"\ncontains = [\"worker\", \"/^user www-data;$/\", \"!debug\"]\nsha256 = \"abcdef\"";
        let o = one(spec, &facts, &[]);
        assert_eq!(o.verdict, Verdict::Pass, "{o:?}");
        assert!(passes("[file.\"/etc/x\"]\nmode = \"644\"", &facts, &[]));
        let o = one(
            "[file.\"/etc/x\"]\nmode = \"0600\"\ncontains = [\"worker\", \"debug\"]",
            &facts,
            &[],
        );
        assert_eq!(o.verdict, Verdict::Fail);
        assert_eq!(o.assertions[0].found, "0644");
        assert!(!o.assertions[1].passed);
        assert!(
            o.assertions[1].found.starts_with("not matching debug"),
            "{}",
            o.assertions[1].found
        );
        let missing = [("exists", "0")];
        assert!(passes("[file.\"/nope\"]\nexists = false", &missing, &[]));
        let o = one("[file.\"/nope\"]\nmode = \"0644\"", &missing, &[]);
        assert_eq!(
            (o.verdict, o.assertions[0].found.as_str()),
            (Verdict::Fail, "no such file")
        );
        let link = [
            ("exists", "1"),
            ("stat", "symbolic link|777|root|root|7"),
            ("link", "/usr/bin/python3.11"),
        ];
        assert!(passes(
            "[file.\"/usr/bin/python3\"]\ntype = \"symlink\"\nlink_target = \"/python3\\\\.\\\\d+$/\"",
            &link,
            &[]
        ));
    }

    #[test]
    fn command() {
        let facts = [("exit_status", "0"), ("stdout", "Linux\n"), ("stderr", "")];
        assert!(passes(
            "[command.\"uname\"]\nexit_status = 0\nstdout = [\"Linux\"]\nstderr = [\"!/./\"]",
            &facts,
            &[]
        ));
        assert!(!passes(
            "[command.\"uname\"]\nexit_status = \"!= 0\"",
            &facts,
            &[]
        ));
        let slow = [("exit_status", "124"), ("stdout", ""), ("stderr", "")];
        let o = one(
            "[command.\"sleep 9\"]\nexit_status = 0\ntimeout = 1",
            &slow,
            &[],
        );
        assert_eq!(o.verdict, Verdict::Fail);
        assert!(o.assertions[0].found.contains("timed out after 1 s"));
    }

    #[test]
    fn user_and_group() {
        let facts = [
            ("passwd", "vagrant:x:1000:1000:,,,:/home/vagrant:/bin/bash"),
            ("groups", "vagrant sudo"),
        ];
        assert!(passes(
            "[user.vagrant]\nexists = true\nuid = 1000\ngid = 1000\ngroups = [\"sudo\"]\nhome = \"/home/vagrant\"\nshell = \"/bin/bash\"",
            &facts,
            &[]
        ));
        assert!(!passes(
            "[user.vagrant]\ngroups = [\"sudo\", \"docker\"]",
            &facts,
            &[]
        ));
        assert!(passes(
            "[user.nobody2]\nexists = false",
            &[("passwd", ""), ("groups", "")],
            &[]
        ));
        assert!(!passes(
            "[user.nobody2]\nuid = 1",
            &[("passwd", ""), ("groups", "")],
            &[]
        ));
        assert!(passes(
            "[group.sudo]\nexists = true\ngid = 27",
            &[("group", "sudo:x:27:vagrant")],
            &[]
        ));
        assert!(!passes(
            "[group.sudo]\ngid = 28",
            &[("group", "sudo:x:27:vagrant")],
            &[]
        ));
    }

    #[test]
    fn process() {
        let shared = [
            (
                "procs",
                "    0 sshd\n 1000 python3\n 1000 python3\n    0 systemd-journald\n",
            ),
            (
                "/etc/passwd",
                "root:x:0:0::/root:/bin/sh\nweb:x:1000:1000::/srv:/bin/sh\n",
            ),
        ];
        let seen = [("seen", "1")];
        assert!(passes(
            "[process.python3]\nrunning = true\ncount = 2\nuser = \"web\"",
            &seen,
            &shared
        ));
        assert!(!passes(
            "[process.python3]\nuser = \"root\"",
            &seen,
            &shared
        ));
        assert!(
            passes("[process.systemd-journald]\nrunning = true", &seen, &shared),
            "names cut at 15"
        );
        assert!(!passes("[process.nginx]\nrunning = true", &seen, &shared));
        assert!(passes("[process.nginx]\ncount = 0", &seen, &shared));
    }

    #[test]
    fn kernel_param_and_module() {
        assert!(passes(
            "[kernel_param.\"net.ipv4.tcp_rmem\"]\nvalue = \"4096 131072 6291456\"",
            &[("value", "4096\t131072\t6291456\n")],
            &[]
        ));
        assert!(!passes(
            "[kernel_param.\"net.ipv4.ip_forward\"]\nvalue = 1",
            &[("value", "0")],
            &[]
        ));
        let o = one(
            "[kernel_param.\"no.such\"]\nvalue = 1",
            &[("error", "no such kernel parameter")],
            &[],
        );
        assert_eq!(o.verdict, Verdict::Error);
        let modules = [
            (
                "/proc/modules",
                "virtio_net 61440 0 - Live 0x0\n9pnet 90112 1 9p, Live 0x0\n",
            ),
            (
                "/lib/modules/6.1.0/modules.builtin",
                "kernel/fs/ext4/ext4.ko\n",
            ),
        ];
        let seen = [("seen", "1")];
        assert!(passes(
            "[kernel_module.virtio_net]\nloaded = true",
            &seen,
            &modules
        ));
        assert!(passes(
            "[kernel_module.virtio-net]\nloaded = true",
            &seen,
            &modules
        ));
        assert!(
            passes("[kernel_module.ext4]\nloaded = true", &seen, &modules),
            "built in"
        );
        assert!(!passes(
            "[kernel_module.nf_tables]\nloaded = true",
            &seen,
            &modules
        ));
    }

    #[test]
    fn mount() {
        let shared = [(
            "/proc/mounts",
            "/dev/vda / ext4 rw,relatime 0 0\nenv0 /srv/my\\040share 9p rw,sync 0 0\n",
        )];
        let seen = [("seen", "1")];
        assert!(passes(
            "[mount.\"/\"]\nexists = true\nfilesystem = \"ext4\"\noptions = [\"rw\"]\nsource = \"/dev/vda\"",
            &seen,
            &shared
        ));
        assert!(passes(
            "[mount.\"/srv/my share\"]\nfilesystem = \"9p\"",
            &seen,
            &shared
        ));
        assert!(!passes("[mount.\"/\"]\noptions = [\"ro\"]", &seen, &shared));
        assert!(!passes("[mount.\"/data\"]\nexists = true", &seen, &shared));
    }

    #[test]
    fn http() {
        let ok = [
            ("status", "200"),
            ("headers", "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n"),
            ("body", "<h1>hello</h1>"),
        ];
        assert!(passes(
            "[http.\"http://localhost/\"]\nstatus = 200\nbody = [\"hello\"]\nheaders = [\"Content-Type: text/html\"]",
            &ok,
            &[]
        ));
        assert!(!passes(
            "[http.\"http://localhost/\"]\nbody = [\"goodbye\"]",
            &ok,
            &[]
        ));
        let raw = [(
            "raw",
            "HTTP/1.0 404 File not found\r\nServer: SimpleHTTP\r\nContent-Type: text/html\r\n\r\n<p>nope</p>",
        )];
        assert!(passes(
            "[http.\"http://localhost/x\"]\nstatus = 404\nbody = [\"nope\"]\nheaders = [\"Server: SimpleHTTP\"]",
            &raw,
            &[]
        ));
        assert!(!passes(
            "[http.\"http://localhost/x\"]\nstatus = 200",
            &raw,
            &[]
        ));
        let refused_raw = [("raw", ""), ("error", "bash: connect: Connection refused")];
        let o = one(
            "[http.\"http://localhost:9/\"]\nstatus = 200",
            &refused_raw,
            &[],
        );
        assert!(
            o.assertions[0].found.contains("Connection refused"),
            "{o:?}"
        );
        let refused = [("status", "000"), ("error", "curl: (7) Failed to connect")];
        let o = one(
            "[http.\"http://localhost:9/\"]\nstatus = 200",
            &refused,
            &[],
        );
        assert_eq!(o.verdict, Verdict::Fail);
        assert!(o.assertions[0].found.contains("Failed to connect"), "{o:?}");
    }

    #[test]
    fn dns_addr_interface() {
        let answer = [
            ("rc", "0"),
            (
                "answer",
                "127.0.0.1 STREAM localhost\n127.0.0.1 DGRAM\n::1 STREAM\n",
            ),
        ];
        assert!(passes(
            "[dns.localhost]\nresolvable = true\naddresses = [\"127.0.0.1\", \"::1\"]",
            &answer,
            &[]
        ));
        assert!(!passes(
            "[dns.localhost]\naddresses = [\"10.0.0.1\"]",
            &answer,
            &[]
        ));
        assert!(passes(
            "[dns.\"nope.invalid\"]\nresolvable = false",
            &[("rc", "2"), ("answer", "")],
            &[]
        ));
        assert!(passes(
            "[addr.\"tcp://127.0.0.1:22\"]\nreachable = true",
            &[("rc", "0")],
            &[]
        ));
        assert!(!passes(
            "[addr.\"tcp://127.0.0.1:9\"]\nreachable = true",
            &[("rc", "1")],
            &[]
        ));
        let eth0 = [
            ("exists", "1"),
            ("mtu", "1500"),
            (
                "addrs",
                "2: eth0    inet 10.0.2.15/24 brd 10.0.2.255 scope global eth0\n2: eth0    inet6 fe80::1/64 scope link\n",
            ),
        ];
        assert!(passes(
            "[interface.eth0]\nexists = true\nmtu = 1500\naddresses = [\"10.0.2.15/24\", \"fe80::1\"]",
            &eth0,
            &[]
        ));
        assert!(!passes(
            "[interface.eth0]\naddresses = [\"10.0.2.16\"]",
            &eth0,
            &[]
        ));
        assert!(passes(
            "[interface.eth9]\nexists = false",
            &[("exists", "0")],
            &[]
        ));
    }

    #[test]
    fn current_values_read_back_as_passing_checks() {
        let spec =
            model::parse(Path::new("t.toml"), "[file.\"/srv/www/\"]\nexists = true").unwrap();
        let mut facts = Facts::default();
        facts.checks.insert(
            0,
            [("exists", "1"), ("stat", "directory|755|root|root|4096")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        );
        let values = current_values(0, &spec.checks[0], &facts);
        let names: Vec<&str> = values.iter().map(|(a, _)| *a).collect();
        assert_eq!(names, ["exists", "type", "mode", "owner", "group"]);
        assert_eq!(values[2].1.as_str(), Some("0755"));
        assert_eq!(literal("/srv/www/"), "/^/srv/www/$/");
        assert!(
            Pattern::parse(&literal("/srv/www/"))
                .unwrap()
                .equals("/srv/www/")
        );
        assert!(Pattern::parse(&literal("!x")).unwrap().equals("!x"));
        assert_eq!(literal("/home/vagrant"), "/home/vagrant");
    }

    #[test]
    fn missing_facts_are_errors_not_passes() {
        let spec = model::parse(Path::new("t.toml"), "[file.\"/x\"]\nexists = false").unwrap();
        let o = judge(0, &spec.checks[0], &Facts::default());
        assert_eq!(o.verdict, Verdict::Error);
    }

    #[test]
    fn socket_addresses_decode() {
        assert_eq!(
            parse_socket("0100007F:0050", false),
            Some(("127.0.0.1".parse().unwrap(), 80))
        );
        assert_eq!(
            parse_socket("00000000000000000000000001000000:0016", true),
            Some(("::1".parse().unwrap(), 22))
        );
    }
}
