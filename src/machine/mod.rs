//! Machines as env keeps them: a project (Envfile and `.envstate/`), each
//! machine's state folder and the record persisted in it.

pub mod cache;
pub mod dir;
pub mod drift;
pub mod project;
pub mod state;

pub use dir::MachineDir;
pub use state::{MachineState, Status};

/// The MAC address of a machine's user-mode NIC (QEMU's default for a first
/// NIC, given explicitly): a cloud-init network config matches it.
pub const USER_NIC_MAC: &str = "52:54:00:12:34:56";
