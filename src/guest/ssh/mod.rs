//! The SSH communicator: OpenSSH client configuration (`config`), keys
//! (`keys`), reaching a booting guest (`connect`) and commands over one
//! reused connection (`exec`).

pub mod config;
pub mod connect;
pub mod exec;
pub mod keys;
pub mod remote;
