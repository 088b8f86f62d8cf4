//! What a spec's expectations are made of: text patterns (substring,
//! `/regex/`, `!` negation), exact values, numbers with comparisons, and
//! package versions compared the way dpkg does (epochs, `~`).

use regex::Regex;
use std::cmp::Ordering;
use std::fmt;

/// How a pattern's text is matched.
#[derive(Debug, Clone)]
enum Matcher {
    Substring(String),
    Regex(Regex),
}

/// A text pattern: `word` (substring), `/re/` (regex), either negated by a
/// leading `!`. In lists (file contents, command output) every pattern must
/// hold.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    negated: bool,
    matcher: Matcher,
}

impl Pattern {
    /// Parses a pattern; a bad regex is an error.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let (negated, rest) = match text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let matcher = match rest
            .strip_prefix('/')
            .and_then(|r| r.strip_suffix('/'))
            .filter(|_| rest.len() >= 2)
        {
            Some(re) => Matcher::Regex(
                Regex::new(&format!("(?m){re}"))
                    .map_err(|e| format!("bad regex /{re}/: {}", first_line(&e.to_string())))?,
            ),
            None => Matcher::Substring(rest.to_string()),
        };
        if rest.is_empty() {
            return Err("an empty pattern matches everything: write what to look for".into());
        }
        Ok(Pattern {
            source: text.to_string(),
            negated,
            matcher,
        })
    }

    /// Whether `haystack` contains (or, negated, lacks) the pattern.
    pub fn found_in(&self, haystack: &str) -> bool {
        let hit = match &self.matcher {
            Matcher::Substring(s) => haystack.contains(s.as_str()),
            Matcher::Regex(r) => r.is_match(haystack),
        };
        hit != self.negated
    }

    /// Whether `value` equals (or fully matches) the pattern: exact values.
    pub fn equals(&self, value: &str) -> bool {
        let hit = match &self.matcher {
            Matcher::Substring(s) => value == s,
            Matcher::Regex(r) => r.is_match(value),
        };
        hit != self.negated
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim()
        .to_string()
}

/// Comparison operators of numbers and versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=` (the default)
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    /// Splits a leading operator off `text`.
    fn split(text: &str) -> (Op, &str) {
        let text = text.trim();
        for (sign, op) in [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("!=", Op::Ne),
            ("==", Op::Eq),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("=", Op::Eq),
        ] {
            if let Some(rest) = text.strip_prefix(sign) {
                return (op, rest.trim());
            }
        }
        (Op::Eq, text)
    }

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Op::Eq => ordering == Ordering::Equal,
            Op::Ne => ordering != Ordering::Equal,
            Op::Lt => ordering == Ordering::Less,
            Op::Le => ordering != Ordering::Greater,
            Op::Gt => ordering == Ordering::Greater,
            Op::Ge => ordering != Ordering::Less,
        }
    }

    fn sign(self) -> &'static str {
        match self {
            Op::Eq => "",
            Op::Ne => "!= ",
            Op::Lt => "< ",
            Op::Le => "<= ",
            Op::Gt => "> ",
            Op::Ge => ">= ",
        }
    }
}

/// A number expectation: `3`, or `"> 100"`, `">= 2, < 5"` (all must hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberMatch(Vec<(Op, i64)>);

impl NumberMatch {
    /// Exactly `n`.
    pub fn exactly(n: i64) -> NumberMatch {
        NumberMatch(vec![(Op::Eq, n)])
    }

    /// Parses `"> 100"` or `">= 2, < 5"`.
    pub fn parse(text: &str) -> Result<NumberMatch, String> {
        let parts = text
            .split(',')
            .map(|part| {
                let (op, rest) = Op::split(part);
                rest.parse::<i64>().map(|n| (op, n)).map_err(|_| {
                    format!(
                        "`{text}` is not a number or a comparison like \"> 10\" or \">= 1, < 5\""
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NumberMatch(parts))
    }

    /// Whether `n` satisfies every comparison.
    pub fn holds(&self, n: i64) -> bool {
        self.0.iter().all(|(op, want)| op.holds(n.cmp(want)))
    }
}

impl fmt::Display for NumberMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(op, n)| format!("{}{n}", op.sign()))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// A version expectation: `"1.22.1-9"` (exactly), or comparisons such as
/// `">= 1.2, < 2"`, compared with dpkg's ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionMatch(Vec<(Op, String)>);

impl VersionMatch {
    /// Parses a constraint.
    pub fn parse(text: &str) -> Result<VersionMatch, String> {
        let parts: Vec<(Op, String)> = text
            .split(',')
            .map(|part| {
                let (op, rest) = Op::split(part);
                (op, rest.to_string())
            })
            .collect();
        if parts.iter().any(|(_, v)| v.is_empty()) {
            return Err(format!(
                "`{text}` is not a version or a constraint like \">= 1.2, < 2\""
            ));
        }
        Ok(VersionMatch(parts))
    }

    /// Whether `version` satisfies every comparison.
    pub fn holds(&self, version: &str) -> bool {
        self.0
            .iter()
            .all(|(op, want)| op.holds(compare_versions(version, want)))
    }
}

impl fmt::Display for VersionMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(op, v)| format!("{}{v}", op.sign()))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// Compares package versions like dpkg: `[epoch:]upstream[-revision]`, a
/// missing epoch is 0, `~` sorts before anything (`1.0~rc1 < 1.0`), and
/// digit runs compare as numbers. A constraint without a revision matches
/// any revision of its upstream version (`= 1.22.1` holds for `1.22.1-9`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split_version(a);
    let (eb, ub, rb) = split_version(b);
    ea.cmp(&eb)
        .then_with(|| compare_part(ua, ub))
        .then_with(|| match rb {
            // The constraint names no revision: any revision matches.
            None => Ordering::Equal,
            Some(rb) => compare_part(ra.unwrap_or("0"), rb),
        })
}

fn split_version(v: &str) -> (u64, &str, Option<&str>) {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if e.chars().all(|c| c.is_ascii_digit()) && !e.is_empty() => {
            (e.parse().unwrap_or(0), rest)
        }
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, Some(revision)),
        None => (epoch, rest, None),
    }
}

/// dpkg's `verrevcmp`: alternating non-digit and digit runs.
fn compare_part(a: &str, b: &str) -> Ordering {
    fn order(c: Option<char>) -> i32 {
        match c {
            None => 0,
            Some('~') => -1,
            Some(c) if c.is_ascii_alphabetic() => c as i32,
            Some(c) => c as i32 + 256,
        }
    }
    let (mut a, mut b) = (a.chars().peekable(), b.chars().peekable());
    loop {
        // Non-digit runs, character by character.
        while a.peek().is_some_and(|c| !c.is_ascii_digit())
            || b.peek().is_some_and(|c| !c.is_ascii_digit())
        {
            let ca = a.peek().copied().filter(|c| !c.is_ascii_digit());
            let cb = b.peek().copied().filter(|c| !c.is_ascii_digit());
            let (oa, ob) = (order(ca), order(cb));
            if oa != ob {
                return oa.cmp(&ob);
            }
            if ca.is_some() {
                a.next();
            }
            if cb.is_some() {
                b.next();
            }
        }
        // Digit runs, as numbers.
        let mut da = String::new();
        while let Some(c) = a.peek().copied().filter(char::is_ascii_digit) {
            da.push(c);
            a.next();
        }
        let mut db = String::new();
        while let Some(c) = b.peek().copied().filter(char::is_ascii_digit) {
            db.push(c);
            b.next();
        }
        let (na, nb) = (da.trim_start_matches('0'), db.trim_start_matches('0'));
        let by_number = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
        if by_number != Ordering::Equal {
            return by_number;
        }
        if a.peek().is_none() && b.peek().is_none() {
            return Ordering::Equal;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_substring_regex_negation() {
        let p = Pattern::parse("worker").unwrap();
        assert!(p.found_in("a worker here"));
        assert!(!p.found_in("nothing"));
        let p = Pattern::parse("/^user www-data;$/").unwrap();
        assert!(p.found_in("x\nuser www-data;\ny"), "regex is multi-line");
        assert!(!p.found_in("user www-data; x"));
        let p = Pattern::parse("!debug").unwrap();
        assert!(p.found_in("info"));
        assert!(!p.found_in("debug on"));
        let p = Pattern::parse("!/^#/").unwrap();
        assert!(!p.found_in("a\n# comment"));
        assert!(Pattern::parse("/(/").unwrap_err().contains("bad regex"));
        assert!(Pattern::parse("").is_err());
        assert!(Pattern::parse("!").is_err());
        // A lone slash is a substring, not an empty regex.
        assert!(Pattern::parse("/").unwrap().found_in("a/b"));
    }

    #[test]
    fn exact_values() {
        assert!(Pattern::parse("1").unwrap().equals("1"));
        assert!(!Pattern::parse("1").unwrap().equals("10"));
        assert!(
            Pattern::parse("/^\\/bin\\/(ba)?sh$/")
                .unwrap()
                .equals("/bin/bash")
        );
        assert!(
            Pattern::parse("!/usr/sbin/nologin")
                .unwrap()
                .equals("/bin/sh")
        );
    }

    #[test]
    fn numbers_with_comparisons() {
        let m = NumberMatch::parse("> 100").unwrap();
        assert!(m.holds(101) && !m.holds(100));
        let m = NumberMatch::parse(">= 2, < 5").unwrap();
        assert!(m.holds(2) && m.holds(4) && !m.holds(5) && !m.holds(1));
        assert!(NumberMatch::parse("!= 0").unwrap().holds(3));
        assert!(NumberMatch::parse("7").unwrap().holds(7));
        assert!(NumberMatch::exactly(0).holds(0));
        assert!(NumberMatch::parse("lots").is_err());
        assert!(NumberMatch::parse("> ").is_err());
        assert_eq!(
            NumberMatch::parse(">=2,<5").unwrap().to_string(),
            ">= 2, < 5"
        );
    }

    #[test]
    fn versions_compare_like_dpkg() {
        use Ordering::*;
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "1.1", Less),
            ("1.10", "1.9", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0", "1.0a", Less),
            ("1:0.9", "2.0", Greater),
            ("2.0", "1:0.1", Less),
            ("3.11.2-6", "3.11.2-6+deb12u1", Less),
            ("3.11.2-6", "3.11.2-10", Less),
            ("1.22.1-9", "1.22.1", Equal),
            ("0001", "1", Equal),
            ("1.2.3", "1.2", Greater),
            ("7.2+dfsg-7+deb12u18", "7.2+dfsg-7+deb12u2", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
        }
    }

    #[test]
    fn version_constraints() {
        let m = VersionMatch::parse(">= 3.11, < 4").unwrap();
        assert!(m.holds("3.11.2-6+deb12u1"));
        assert!(!m.holds("3.10.9-1"));
        assert!(!m.holds("4.0-1"));
        assert!(VersionMatch::parse("1.22.1").unwrap().holds("1.22.1-9"));
        assert!(VersionMatch::parse("= 1.22.1-9").unwrap().holds("1.22.1-9"));
        assert!(!VersionMatch::parse("= 1.22.1-8").unwrap().holds("1.22.1-9"));
        assert!(VersionMatch::parse(">= ").is_err());
        assert_eq!(
            VersionMatch::parse(">=1.2,<2").unwrap().to_string(),
            ">= 1.2, < 2"
        );
    }
}
