//! Spec tests: files of checks keyed by resource (like goss), compiled into
//! one POSIX shell script per machine (one SSH round trip), whose facts are
//! judged on the host. `check` holds the types, `parse` reads the files,
//! each resource type lives in `resource/` (its attributes, what the script
//! gathers, how facts are read), `script` puts the script together and
//! reads its output, `judge` compares, `report` writes the results.

pub mod add;
pub mod check;
pub mod facts;
pub mod judge;
pub mod matchers;
pub mod parse;
pub mod report;
pub mod resource;
pub mod script;

#[cfg(test)]
mod tests;

pub use check::Check;
