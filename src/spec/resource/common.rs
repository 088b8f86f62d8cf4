//! What every resource type implements: its attributes, what the script
//! gathers, how facts are read (the registry of types is `mod.rs`).

use crate::spec::check::Check;
use crate::spec::facts::{Facts, Fields, Observed};
use crate::spec::matchers::Pattern;

/// How many bytes of a file's contents or an HTTP body are fetched.
pub const CONTENT_LIMIT: usize = 1 << 20;

/// How an attribute's value is read from a spec file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    /// `true` or `false`.
    Bool,
    /// A number or a comparison (`"> 10"`).
    Number,
    /// A package version or constraint (dpkg's order).
    Version,
    /// One value or pattern that must match exactly.
    Exact,
    /// Patterns that must all be found.
    Patterns,
    /// Items that must all be among what is found.
    Includes,
}

/// What one resource type knows.
pub trait Resource: Sync {
    /// Its attributes and how each is read.
    fn attributes(&self) -> &'static [(&'static str, AttrType)];
    /// The attributes `env spec add` records, in order (those of a stable
    /// description: no sizes or hashes).
    fn recorded(&self) -> &'static [&'static str];
    /// Checks a resource name's form.
    fn check_name(&self, _name: &str) -> Result<(), String> {
        Ok(())
    }
    /// Whether its checks run something of their own under a time limit
    /// (`timeout` applies): they run side by side in the script.
    fn timed(&self) -> bool {
        false
    }
    /// Whether the script needs its scratch folder for this check.
    fn needs_scratch(&self, _check: &Check) -> bool {
        self.timed()
    }
    /// Files the script's one `awk` reads for this check (shared by all
    /// checks: each is read once).
    fn shared_files(&self, _check: &Check) -> Vec<String> {
        Vec::new()
    }
    /// Shell run once for all of this type's checks of a run (one `stat`
    /// for every file, one `systemctl show` for every service).
    fn shared_script(&self, _checks: &[&Check]) -> String {
        String::new()
    }
    /// The shell that gathers one check's own facts (`id` frames them).
    fn gather(&self, id: usize, check: &Check) -> String;
    /// Hands the shared facts that answer this check to it; `nth` is its
    /// place among this type's checks in the run.
    fn distribute(&self, _check: &Check, _nth: usize, _facts: &Facts, _own: &mut Fields) {}
    /// What the machine has, per attribute, from the facts.
    fn observe(&self, check: &Check, own: &Fields, facts: &Facts) -> Observed;
    /// Whether a found value matches an exact expectation.
    fn exact_holds(&self, _attribute: &str, want: &Pattern, found: &str) -> bool {
        want.equals(found)
    }
    /// Whether `have` satisfies the wanted list item `want`.
    fn includes(&self, want: &str, have: &str) -> bool {
        want == have
    }
    /// Whether an `error` fact is part of what is judged (a failed HTTP
    /// request is a finding), not a failure to gather.
    fn error_is_a_finding(&self) -> bool {
        false
    }
}
