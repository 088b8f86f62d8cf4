//! Machines as env keeps them: a project (Envfile and `.envstate/`), each
//! machine's state folder and the record persisted in it.

pub mod dir;
pub mod project;
pub mod state;

pub use dir::MachineDir;
pub use state::{MachineState, Status};
