//! What env remembers about a machine between commands, and its status.

use crate::envfile::Protocol;
use serde::{Deserialize, Serialize};
use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;

/// The accelerator a boot actually uses (`auto` already resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    /// Hardware virtualization.
    Kvm,
    /// Software emulation.
    Tcg,
}

/// A host port forwarded to the guest through QEMU user networking.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Forward {
    /// tcp or udp.
    pub protocol: Protocol,
    /// Host address bound.
    pub host_ip: IpAddr,
    /// Host port.
    pub host_port: u16,
    /// Guest port.
    pub guest_port: u16,
}

/// Whether process `pid` runs. A zombie has exited: daemonized QEMU is
/// reaped by init, which may take its time (a second or more in containers).
pub fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|s| s != 'Z' && s != 'X'),
        Err(_) => false,
    }
}

/// What `env status` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// No disk, no state.
    NotCreated,
    /// QEMU is running.
    Running {
        /// QEMU's pid.
        pid: i32,
    },
    /// Halted by env; the disk is kept.
    Halted,
    /// QEMU is gone but env did not halt it (killed, crashed, or the guest
    /// powered itself off). The disk is kept.
    Died,
}

impl Status {
    /// The word scripts read (`--json`).
    pub fn word(&self) -> &'static str {
        match self {
            Status::NotCreated => "not_created",
            Status::Running { .. } => "running",
            Status::Halted => "halted",
            Status::Died => "died",
        }
    }
}

/// What env remembers about a machine between commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineState {
    /// Box name.
    pub box_name: String,
    /// Box version.
    pub box_version: String,
    /// Box folder in the store (the overlay's backing file lives there).
    pub box_dir: PathBuf,
    /// Accelerator of the last boot.
    pub accel: Option<Accelerator>,
    /// Login user.
    pub ssh_user: String,
    /// Host port of SSH in the last boot.
    pub ssh_port: Option<u16>,
    /// Forwarded ports of the last boot (SSH excluded).
    pub forwards: Vec<Forward>,
    /// The first-contact key was replaced by the per-machine key.
    pub key_inserted: bool,
    /// The provisioners ran successfully once (later boots run only `always`).
    #[serde(default)]
    pub provisioned: bool,
    /// env booted QEMU and has not halted it since.
    pub running: bool,
    /// Last action (`up`, `halt`, ...).
    pub last_action: String,
    /// The last action's error, if it failed.
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_of_processes() {
        assert!(process_alive(std::process::id() as i32));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!process_alive(pid), "an exited, unreaped child is a zombie");
        child.wait().unwrap();
        assert!(!process_alive(pid));
    }
}
