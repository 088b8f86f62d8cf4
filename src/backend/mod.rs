//! Backends: what runs a machine. Operations reach a hypervisor only
//! through here.

pub mod network;
pub mod qemu;
