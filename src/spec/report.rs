//! Reports of a verify run: readable text, JSON, TAP and JUnit XML, all
//! from the same results (several may be written in one run).

use super::judge::{Outcome, Verdict};
use serde::Serialize;
use std::fmt::Write as _;

/// The results of one machine.
#[derive(Debug, Clone, Serialize)]
pub struct MachineReport {
    /// Machine name.
    pub machine: String,
    /// Judged checks, in spec order.
    pub checks: Vec<Outcome>,
    /// Wall time of the machine's verification.
    pub seconds: f64,
    /// Why the machine could not be verified at all.
    pub error: Option<String>,
}

/// Counts of a report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Checks.
    pub total: usize,
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
    /// Could not be judged (machine errors count one each).
    pub errors: usize,
}

impl Totals {
    /// Counts the checks of some machines.
    pub fn of(reports: &[MachineReport]) -> Totals {
        let mut t = Totals::default();
        for r in reports {
            if r.error.is_some() {
                t.errors += 1;
                t.total += 1;
            }
            for c in &r.checks {
                t.total += 1;
                match c.verdict {
                    Verdict::Pass => t.passed += 1,
                    Verdict::Fail => t.failed += 1,
                    Verdict::Skip => t.skipped += 1,
                    Verdict::Error => t.errors += 1,
                }
            }
        }
        t
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// For people.
    Text,
    /// For scripts.
    Json,
    /// Test Anything Protocol.
    Tap,
    /// JUnit XML.
    Junit,
}

impl ReportFormat {
    /// Parses a format name.
    pub fn parse(name: &str) -> Result<ReportFormat, String> {
        match name {
            "text" => Ok(ReportFormat::Text),
            "json" => Ok(ReportFormat::Json),
            "tap" => Ok(ReportFormat::Tap),
            "junit" => Ok(ReportFormat::Junit),
            _ => Err(format!("unknown format `{name}`: text, json, tap or junit")),
        }
    }
}

/// Renders a report.
pub fn render(format: ReportFormat, reports: &[MachineReport], color: bool) -> String {
    match format {
        ReportFormat::Text => text(reports, color),
        ReportFormat::Json => json(reports),
        ReportFormat::Tap => tap(reports),
        ReportFormat::Junit => junit(reports),
    }
}

fn paint(text: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// The terminal report: one line per check, expected vs found for failures.
pub fn text(reports: &[MachineReport], color: bool) -> String {
    let mut out = String::new();
    for r in reports {
        let _ = writeln!(out, "{}", paint(&r.machine, "1", color));
        if let Some(e) = &r.error {
            let _ = writeln!(out, "  {} {e}", paint("ERROR", "31", color));
            continue;
        }
        for c in &r.checks {
            let (mark, code) = match c.verdict {
                Verdict::Pass => ("ok  ", "32"),
                Verdict::Fail => ("FAIL", "31"),
                Verdict::Skip => ("skip", "33"),
                Verdict::Error => ("ERR ", "31"),
            };
            let retried = if c.attempts > 1 {
                format!(" (after {} attempts)", c.attempts)
            } else {
                String::new()
            };
            let _ = writeln!(out, "  {} {}{retried}", paint(mark, code, color), c.title);
            if let Some(e) = &c.error {
                let _ = writeln!(out, "       {e}");
            }
            for a in c.assertions.iter().filter(|a| !a.passed) {
                let _ = writeln!(
                    out,
                    "       {}: expected {}, found {}",
                    a.attribute, a.expected, a.found
                );
            }
        }
        let t = Totals::of(std::slice::from_ref(r));
        let _ = writeln!(
            out,
            "  {} checks: {} passed, {} failed, {} skipped, {} errors in {:.2} s",
            t.total, t.passed, t.failed, t.skipped, t.errors, r.seconds
        );
    }
    out
}

/// `{"machines": [...], "totals": {...}}`.
pub fn json(reports: &[MachineReport]) -> String {
    let value = serde_json::json!({ "machines": reports, "totals": Totals::of(reports) });
    serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
}

/// TAP version 13, with a YAML block for each failure.
pub fn tap(reports: &[MachineReport]) -> String {
    let total = Totals::of(reports).total;
    let mut out = format!("TAP version 13\n1..{total}\n");
    let mut n = 0;
    for r in reports {
        if let Some(e) = &r.error {
            n += 1;
            let _ = writeln!(out, "not ok {n} - {}: {}", r.machine, one_line(e));
        }
        for c in &r.checks {
            n += 1;
            let label = format!("{}: {}", r.machine, one_line(&c.title));
            match c.verdict {
                Verdict::Pass => {
                    let _ = writeln!(out, "ok {n} - {label}");
                }
                Verdict::Skip => {
                    let _ = writeln!(out, "ok {n} - {label} # SKIP");
                }
                Verdict::Fail | Verdict::Error => {
                    let _ = writeln!(out, "not ok {n} - {label}");
                    out.push_str("  ---\n");
                    if let Some(e) = &c.error {
                        let _ = writeln!(out, "  error: {}", yaml_string(e));
                    }
                    for a in c.assertions.iter().filter(|a| !a.passed) {
                        let _ = writeln!(
                            out,
                            "  {}:\n    expected: {}\n    found: {}",
                            a.attribute,
                            yaml_string(&a.expected),
                            yaml_string(&a.found)
                        );
                    }
                    out.push_str("  ...\n");
                }
            }
        }
    }
    out
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ").replace('#', "\\#")
}

fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// JUnit XML: `<testsuites>` holding one `<testsuite>` per machine, one
/// `<testcase>` per check, `<failure>`/`<error>`/`<skipped>` as the
/// schema's common form (Jenkins, GitLab, GitHub reporters) expects.
pub fn junit(reports: &[MachineReport]) -> String {
    let all = Totals::of(reports);
    let total_time: f64 = reports.iter().map(|r| r.seconds).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"env verify\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
        all.total, all.failed, all.errors, all.skipped, total_time
    );
    let timestamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .trim_end_matches('Z')
        .to_string();
    for (i, r) in reports.iter().enumerate() {
        let t = Totals::of(std::slice::from_ref(r));
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" id=\"{i}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\" timestamp=\"{timestamp}\" hostname=\"{}\">",
            xml(&r.machine),
            t.total,
            t.failed,
            t.errors,
            t.skipped,
            r.seconds,
            xml(&r.machine)
        );
        if let Some(e) = &r.error {
            let _ = writeln!(
                out,
                "    <testcase name=\"machine\" classname=\"{}\" time=\"0\">\n      <error message=\"{}\" type=\"machine\">{}</error>\n    </testcase>",
                xml(&r.machine),
                xml(&one_line(e)),
                xml(e)
            );
        }
        let per_check = if r.checks.is_empty() {
            0.0
        } else {
            r.seconds / r.checks.len() as f64
        };
        for c in &r.checks {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}.{}\" time=\"{per_check:.3}\"",
                xml(&c.title),
                xml(&r.machine),
                c.resource
            );
            match c.verdict {
                Verdict::Pass => out.push_str("/>\n"),
                Verdict::Skip => out.push_str(">\n      <skipped/>\n    </testcase>\n"),
                Verdict::Error => {
                    let e = c.error.clone().unwrap_or_default();
                    let _ = write!(
                        out,
                        ">\n      <error message=\"{}\" type=\"{}\">{}</error>\n    </testcase>\n",
                        xml(&one_line(&e)),
                        c.resource,
                        xml(&e)
                    );
                }
                Verdict::Fail => {
                    let failed: Vec<String> = c
                        .assertions
                        .iter()
                        .filter(|a| !a.passed)
                        .map(|a| {
                            format!(
                                "{}: expected {}, found {}",
                                a.attribute, a.expected, a.found
                            )
                        })
                        .collect();
                    let _ = write!(
                        out,
                        ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>\n",
                        xml(&one_line(failed.first().map_or("", String::as_str))),
                        c.resource,
                        xml(&failed.join("\n"))
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Escapes text for XML, dropping characters XML 1.0 cannot hold.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::judge::Assertion;

    fn outcome(title: &str, verdict: Verdict) -> Outcome {
        Outcome {
            resource: "file",
            name: title.into(),
            title: title.into(),
            verdict,
            assertions: vec![Assertion {
                attribute: "mode".into(),
                expected: "0644".into(),
                found: "0600 <&\"'>".into(),
                passed: verdict != Verdict::Fail,
            }],
            error: (verdict == Verdict::Error).then(|| "no facts".to_string()),
            attempts: 1,
            spec: String::new(),
        }
    }

    fn reports() -> Vec<MachineReport> {
        vec![
            MachineReport {
                machine: "web".into(),
                checks: vec![
                    outcome("file /a", Verdict::Pass),
                    outcome("file /b", Verdict::Fail),
                    outcome("file /c", Verdict::Skip),
                    outcome("file /d", Verdict::Error),
                ],
                seconds: 1.5,
                error: None,
            },
            MachineReport {
                machine: "db".into(),
                checks: vec![],
                seconds: 0.0,
                error: Some("machine `db` is not running".into()),
            },
        ]
    }

    #[test]
    fn totals_count_machine_errors() {
        let t = Totals::of(&reports());
        assert_eq!(
            t,
            Totals {
                total: 5,
                passed: 1,
                failed: 1,
                skipped: 1,
                errors: 2
            }
        );
    }

    #[test]
    fn text_shows_expected_and_found_for_failures_only() {
        let out = text(&reports(), false);
        assert!(
            out.contains("FAIL file /b\n       mode: expected 0644, found 0600"),
            "{out}"
        );
        assert_eq!(out.matches("expected").count(), 1, "{out}");
        assert!(out.contains("4 checks: 1 passed, 1 failed, 1 skipped, 1 errors"));
        assert!(out.contains("ERROR machine `db` is not running"));
        assert!(!out.contains('\x1b'), "no control characters without color");
        assert!(text(&reports(), true).contains("\x1b[31m"));
    }

    #[test]
    fn tap_numbers_every_check() {
        let out = tap(&reports());
        assert!(out.starts_with("TAP version 13\n1..5\n"), "{out}");
        assert!(out.contains("ok 1 - web: file /a\n"));
        assert!(out.contains("not ok 2 - web: file /b\n  ---\n  mode:\n    expected: \"0644\""));
        assert!(out.contains("ok 3 - web: file /c # SKIP"));
        assert!(out.contains("not ok 5 - db: machine `db` is not running"));
    }

    #[test]
    fn junit_has_the_required_structure() {
        let out = junit(&reports());
        let doc = roxmltree::Document::parse(&out).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        assert_eq!(root.attribute("tests"), Some("5"));
        let suites: Vec<_> = root.children().filter(|n| n.is_element()).collect();
        assert_eq!(suites.len(), 2);
        for s in &suites {
            assert_eq!(s.tag_name().name(), "testsuite");
            for attr in [
                "name",
                "tests",
                "failures",
                "errors",
                "skipped",
                "time",
                "timestamp",
            ] {
                assert!(s.attribute(attr).is_some(), "testsuite lacks {attr}");
            }
        }
        let cases: Vec<_> = suites[0].children().filter(|n| n.is_element()).collect();
        assert_eq!(cases.len(), 4);
        assert!(cases.iter().all(|c| c.attribute("name").is_some()
            && c.attribute("classname") == Some("web.file")
            && c.attribute("time").is_some()));
        let failure = cases[1].first_element_child().unwrap();
        assert_eq!(failure.tag_name().name(), "failure");
        assert_eq!(
            failure.attribute("message"),
            Some("mode: expected 0644, found 0600 <&\"'>")
        );
        assert_eq!(
            cases[2].first_element_child().unwrap().tag_name().name(),
            "skipped"
        );
        assert_eq!(
            cases[3].first_element_child().unwrap().tag_name().name(),
            "error"
        );
        assert_eq!(suites[1].attribute("errors"), Some("1"));
        assert!(xml("a\u{1}b").contains('?'));
    }

    #[test]
    fn json_has_totals_and_checks() {
        let v: serde_json::Value = serde_json::from_str(&json(&reports())).unwrap();
        assert_eq!(v["totals"]["failed"], 1);
        assert_eq!(v["machines"][0]["checks"][1]["verdict"], "fail");
        assert_eq!(
            v["machines"][0]["checks"][1]["assertions"][0]["expected"],
            "0644"
        );
    }
}
