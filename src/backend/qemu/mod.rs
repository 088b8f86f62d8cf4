//! The local QEMU backend: QEMU's command line, the accelerator, QMP, the
//! guest agent, host ports.

pub mod accel;
pub mod args;
pub mod ports;
pub mod qga;
pub mod qmp;
