//! What env remembers about a machine between commands, and its status.

use crate::envfile::Protocol;
use serde::{Deserialize, Serialize};
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

/// What `env status` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// No disk, no state.
    NotCreated,
    /// The machine runs.
    Running,
    /// Halted by env; the disk is kept.
    Halted,
    /// The machine is gone but env did not halt it (killed, crashed, or the guest
    /// powered itself off). The disk is kept.
    Died,
    /// Suspended by env: its memory saved on its disks, no hypervisor
    /// running; `env resume` starts it where it was.
    Suspended,
}

impl Status {
    /// The word scripts read (`--json`).
    pub fn word(&self) -> &'static str {
        match self {
            Status::NotCreated => "not_created",
            Status::Running => "running",
            Status::Halted => "halted",
            Status::Died => "died",
            Status::Suspended => "suspended",
        }
    }
}

/// The format of `state.json` this release writes. Files without a
/// `format` field were written before it existed (format 0): they load as
/// they are, their SSH address being the loopback one that release used.
pub const STATE_FORMAT: u32 = 1;

/// What env remembers about a machine between commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineState {
    /// The file's format ([`STATE_FORMAT`] when written by this release).
    #[serde(default)]
    pub format: u32,
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
    /// Where SSH answered in the last boot: host (absent in format 0:
    /// the loopback address), port, and jump host.
    #[serde(default)]
    pub ssh_host: Option<String>,
    /// Port of SSH in the last boot.
    pub ssh_port: Option<u16>,
    /// Jump host of SSH in the last boot.
    #[serde(default)]
    pub ssh_jump: Option<String>,
    /// The command that carries SSH to the jump host (ssh_config's
    /// `ProxyCommand`), when plain `ProxyJump` does not do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_proxy_command: Option<String>,
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
    /// The Envfile settings it booted with (what `env status` compares to
    /// say a reload is due).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub booted_with: std::collections::BTreeMap<String, String>,
    /// A digest of its provisioners and their inputs when they last ran
    /// in full (compared to say `env provision` is due).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned_with: Option<String>,
    /// `env suspend` saved its memory and stopped it (`running` is false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspended: bool,
    /// The provisioning cache entry it was restored from, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_cache: Option<CacheOrigin>,
}

/// Where a machine restored from the provisioning cache came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheOrigin {
    /// The entry's key.
    pub key: String,
    /// Its provisioning was proven idempotent before it was kept.
    pub idempotent: bool,
}

impl MachineState {
    /// A new machine's state: created, never booted.
    pub fn created(box_name: &str, box_version: &str, box_dir: PathBuf, ssh_user: String) -> Self {
        MachineState {
            format: STATE_FORMAT,
            box_name: box_name.into(),
            box_version: box_version.into(),
            box_dir,
            accel: None,
            ssh_user,
            ssh_host: None,
            ssh_port: None,
            ssh_jump: None,
            ssh_proxy_command: None,
            forwards: Vec::new(),
            key_inserted: false,
            provisioned: false,
            running: false,
            last_action: "create".into(),
            last_error: None,
            booted_with: Default::default(),
            provisioned_with: None,
            suspended: false,
            from_cache: None,
        }
    }

    /// Where SSH answered in the last boot.
    pub fn ssh_endpoint(&self) -> Option<SshEndpoint> {
        Some(SshEndpoint {
            host: self
                .ssh_host
                .clone()
                .unwrap_or_else(|| FORMAT_0_SSH_HOST.into()),
            port: self.ssh_port?,
            jump: self.ssh_jump.clone(),
            proxy_command: self.ssh_proxy_command.clone(),
        })
    }

    /// Records where SSH answers now.
    pub fn set_ssh_endpoint(&mut self, endpoint: Option<&SshEndpoint>) {
        self.ssh_host = endpoint.map(|e| e.host.clone());
        self.ssh_port = endpoint.map(|e| e.port);
        self.ssh_jump = endpoint.and_then(|e| e.jump.clone());
        self.ssh_proxy_command = endpoint.and_then(|e| e.proxy_command.clone());
    }
}

/// The only SSH address releases before format 1 used (QEMU's forward on
/// the host's loopback interface).
const FORMAT_0_SSH_HOST: &str = "127.0.0.1";

/// Where SSH reaches a machine's guest: what a backend hands back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshEndpoint {
    /// Host name or address the client connects to.
    pub host: String,
    /// Port there.
    pub port: u16,
    /// A host to jump through first (`ProxyJump`), when the port listens
    /// only on the hypervisor's own loopback.
    pub jump: Option<String>,
    /// How to reach the jump host (ssh_config's `ProxyCommand`, `%h` and
    /// `%p` the guest's port there): used instead of `ProxyJump` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_command: Option<String>,
}

impl std::fmt::Display for SshEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)?;
        if let Some(jump) = &self.jump {
            write!(f, " via {jump}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_0_state_reads_with_its_loopback_endpoint() {
        let old = r#"{"box_name":"b","box_version":"0","box_dir":"/x","accel":"tcg","ssh_user":"vagrant","ssh_port":2222,"forwards":[],"key_inserted":true,"provisioned":true,"running":true,"last_action":"up","last_error":null}"#;
        let state: MachineState = serde_json::from_str(old).unwrap();
        assert_eq!(state.format, 0);
        let endpoint = state.ssh_endpoint().unwrap();
        assert_eq!((endpoint.host.as_str(), endpoint.port), ("127.0.0.1", 2222));
        assert_eq!(endpoint.jump, None);
    }

    #[test]
    fn endpoints_round_trip() {
        let mut state = MachineState::created("b", "1", "/x".into(), "u".into());
        assert_eq!(state.ssh_endpoint(), None);
        let e = SshEndpoint {
            host: "kvm1".into(),
            port: 40022,
            jump: Some("ops@kvm1".into()),
            proxy_command: None,
        };
        state.set_ssh_endpoint(Some(&e));
        let text = serde_json::to_string(&state).unwrap();
        let back: MachineState = serde_json::from_str(&text).unwrap();
        assert_eq!(back.ssh_endpoint(), Some(e));
        assert_eq!(back.format, STATE_FORMAT);
        assert_eq!(e_display(&back), "kvm1:40022 via ops@kvm1");
    }

    fn e_display(s: &MachineState) -> String {
        s.ssh_endpoint().unwrap().to_string()
    }
}
