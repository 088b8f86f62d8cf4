//! Small utilities every layer may use: atomic writes, shell quoting,
//! helper programs with time limits, version rules, paths, locks, sizes and
//! terminal output. Nothing here knows about machines, boxes or Envfiles.

pub mod duration;
pub mod fs;
pub mod lock;
pub mod names;
pub mod paths;
pub mod process;
pub mod shell;
pub mod size;
pub mod ui;
pub mod version;
