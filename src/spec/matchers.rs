//! What a spec's expectations are made of: text patterns (substring,
//! `/regex/`, `!` negation), exact values, numbers with comparisons, and
//! package versions compared the way dpkg does (epochs, `~`).

use crate::util::version::Op;
use regex::Regex;
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
}
