//! Spec tests: files of checks keyed by resource (like goss), compiled into
//! one POSIX shell script per machine (one SSH round trip), whose facts are
//! judged here. `model` reads the files, `script` builds the script and
//! reads its output, `judge` compares, `report` writes the results.

pub mod add;
pub mod judge;
pub mod matchers;
pub mod model;
pub mod report;
pub mod script;

pub use model::Check;
