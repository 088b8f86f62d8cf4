//! The Envfile: a project's machines, read from TOML.
//!
//! Parsing is pure: text in, a validated [`Envfile`] or an [`EnvfileError`]
//! that names the file, line, column and field out. Nothing on disk changes.
//! `model` holds the types, `parse` reads and `resolve` merges defaults
//! (lima keeps `FillDefault` apart from `Validate` the same way), `validate`
//! checks across machines, `error` locates problems.

pub mod disks;
pub mod docker;
pub mod error;
pub mod folders;
pub mod libvirt;
pub mod matrix;
pub mod model;
pub mod ports_auto;
pub mod provisioners;
pub mod proxy;
pub mod read;
mod resolve;
pub mod targets;
pub mod triggers;
mod validate;
pub mod vars;

pub use error::{EnvfileError, Step, closest, deserialize_toml, error_at};
pub use model::{
    Accel, DEFAULT_MACHINE, ENVFILE_NAME, Envfile, Machine, PortForward, Probe, Protocol, Settings,
};
pub use read::{find, load};

#[cfg(test)]
mod libvirt_tests;
#[cfg(test)]
mod matrix_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod triggers_tests;
