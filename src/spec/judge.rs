//! Judging facts against expectations: pure functions, so every resource
//! type's pass and fail cases are tested without a guest.

use super::check::{Check, Expect};
use super::facts::{Facts, Fields, Found, get};
use super::matchers::Pattern;
use super::resource::{self, Resource};
use serde::Serialize;

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

/// Judges check `id` from the facts.
pub fn judge(id: usize, check: &Check, facts: &Facts) -> Outcome {
    let mut outcome = Outcome::skipped(check);
    outcome.attempts = 1;
    let empty = Fields::new();
    let fields = facts.checks.get(&id);
    let error = match fields {
        None => Some("no facts came back for this check".to_string()),
        Some(f) => get(f, "error")
            .filter(|e| !e.trim().is_empty() && !resource::of(check.kind).error_is_a_finding()),
    };
    if let Some(error) = error {
        outcome.verdict = Verdict::Error;
        outcome.error = Some(error.trim().to_string());
        return outcome;
    }
    let fields = fields.unwrap_or(&empty);
    let r = resource::of(check.kind);
    let observed = r.observe(check, fields, facts);
    for (attribute, expect) in &check.expect {
        let found = observed
            .get(attribute.as_str())
            .cloned()
            .unwrap_or(Found::Missing);
        outcome
            .assertions
            .push(assess(r, attribute, expect, &found));
    }
    outcome.verdict = if outcome.assertions.iter().all(|a| a.passed) {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    outcome
}

/// What the machine has now, as spec values, for the attributes `spec add`
/// records (those of a fresh, stable description: no sizes or hashes).
pub fn current_values(id: usize, check: &Check, facts: &Facts) -> Vec<(&'static str, toml::Value)> {
    let empty = Fields::new();
    let fields = facts.checks.get(&id).unwrap_or(&empty);
    let r = resource::of(check.kind);
    let seen = r.observe(check, fields, facts);
    let mut out = Vec::new();
    for attribute in r.recorded() {
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
pub fn literal(text: &str) -> String {
    let looks_like_regex = text.len() >= 2 && text.starts_with('/') && text.ends_with('/');
    if text.starts_with('!') || looks_like_regex {
        format!("/^{}$/", regex::escape(text))
    } else {
        text.to_string()
    }
}

fn assess(r: &dyn Resource, attribute: &str, expect: &Expect, found: &Found) -> Assertion {
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
            found
                .text()
                .is_some_and(|v| r.exact_holds(attribute, want, v))
                || matches!(found, Found::List(items) if items.iter().any(|v| want.equals(v))),
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
                && want.iter().all(|w| have.iter().any(|h| r.includes(w, h)));
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
