//! A platform x suite matrix: `[platforms.NAME]` (a box and what differs
//! per OS) times `[suites.NAME]` (provisioners, folders, specs), each
//! combination a machine named `SUITE-PLATFORM`, as Test Kitchen names its
//! instances.

use super::EnvfileError;
use super::error::{Step, error_at};
use super::model::{Combination, RawEnvfile, Settings};
use std::path::Path;

/// The machine name of a combination: `SUITE-PLATFORM`, every character a
/// host name cannot hold (the dots of `ubuntu-24.04`, `/`, `_`...) turned
/// into `-`, so `web` on `ubuntu-24.04` is `web-ubuntu-24-04`.
pub fn machine_name(suite: &str, platform: &str) -> String {
    format!("{suite}-{platform}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Every combination, suite by suite, each on every platform in file
/// order; none unless both tables are there.
pub fn combinations(raw: &RawEnvfile) -> Vec<Combination> {
    let mut out = Vec::new();
    for suite in raw.suites.keys() {
        for platform in raw.platforms.keys() {
            out.push(Combination {
                name: machine_name(suite, platform),
                suite: suite.clone(),
                platform: platform.clone(),
            });
        }
    }
    out
}

/// What a table may not say: `private_subnet` anywhere but `[defaults]`;
/// in a matrix, platforms without suites (or the reverse),
/// and fields that would be the same for every combination where each needs
/// its own (`ip`) or that tie combinations together (`depends_on`).
pub fn check_tables(file: &Path, text: &str, raw: &RawEnvfile) -> Vec<EnvfileError> {
    let mut problems = Vec::new();
    let table = |kind: &str, name: &str| vec![Step::Key(kind.into()), Step::Key(name.into())];
    let field = |kind: &str, name: &str, field: &str| {
        let mut at = table(kind, name);
        at.push(Step::Key(field.into()));
        at
    };
    match (raw.platforms.is_empty(), raw.suites.is_empty()) {
        (false, true) => problems.push(error_at(
            file,
            text,
            &[Step::Key("platforms".into())],
            "platforms without suites make no machine: add a `[suites.NAME]` (its provisioners and specs)".into(),
        )),
        (true, false) => problems.push(error_at(
            file,
            text,
            &[Step::Key("suites".into())],
            "suites without platforms make no machine: add a `[platforms.NAME]` with its `box`".into(),
        )),
        _ => {}
    }
    let tables: [(&str, &indexmap::IndexMap<String, Settings>); 3] = [
        ("machines", &raw.machines),
        ("platforms", &raw.platforms),
        ("suites", &raw.suites),
    ];
    for (kind, entries) in tables {
        for (name, settings) in entries {
            if settings.private_subnet.is_some() {
                problems.push(error_at(
                    file,
                    text,
                    &field(kind, name, "private_subnet"),
                    "`private_subnet` is project-wide: set it in [defaults]".into(),
                ));
            }
            if kind == "machines" {
                continue;
            }
            if settings.ip.is_some() {
                problems.push(error_at(
                    file,
                    text,
                    &field(kind, name, "ip"),
                    format!("`ip` in {kind} would give every combination one address: leave it out (each gets one from the private network)"),
                ));
            }
            if settings.depends_on.is_some() {
                problems.push(error_at(
                    file,
                    text,
                    &field(kind, name, "depends_on"),
                    "combinations run on their own: `depends_on` belongs to [machines.NAME]".into(),
                ));
            }
        }
    }
    problems
}
