//! Operations: what each command does to a project's machines, through the
//! backend and the guest side.

pub mod doctor;
pub mod logs;
pub mod package;
pub mod parallel;
pub mod snapshot;
pub mod test;
pub mod up;
pub mod verify;
