//! A machine's state folder (`.envstate/machines/NAME/`) and what it says
//! about the machine: the files, the persisted record, the live status.

use super::state::{MachineState, STATE_FORMAT};
use crate::util::fs::write_atomic;
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// The files of one machine.
#[derive(Debug, Clone)]
pub struct MachineDir {
    /// Machine name.
    pub name: String,
    /// The state folder.
    pub root: PathBuf,
}

impl MachineDir {
    /// The folder of machine `name` under a project's state folder.
    pub fn new(project_state: &Path, name: &str) -> Self {
        MachineDir {
            name: name.into(),
            root: project_state.join("machines").join(name),
        }
    }
    /// The qcow2 overlay on the box image (its root disk).
    pub fn disk(&self) -> PathBuf {
        self.box_disk(0)
    }
    /// The overlay on the box's `index`-th disk (boxes in Vagrant's
    /// multi-disk form have several; 0 is the root disk).
    pub fn box_disk(&self, index: usize) -> PathBuf {
        match index {
            0 => self.root.join("disk.qcow2"),
            i => self.root.join(format!("disk{i}.qcow2")),
        }
    }
    /// The overlays of every box disk this machine has, the root disk first.
    pub fn box_disks(&self) -> Vec<PathBuf> {
        (0..)
            .map(|i| self.box_disk(i))
            .take_while(|p| p.exists())
            .collect()
    }
    /// The project's folder of kept disks of this machine
    /// (`.envstate/disks/NAME/`): outside the machine's folder, so `destroy`
    /// leaves it.
    pub fn kept_disks_dir(&self) -> PathBuf {
        let state = self
            .root
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."));
        state.join("disks").join(&self.name)
    }
    /// The image file of a data disk: kept ones outside the machine's folder.
    pub fn data_disk(&self, disk: &crate::envfile::disks::Disk) -> PathBuf {
        let file = format!("{}.{}", disk.name, disk.format.name());
        if disk.keep {
            self.kept_disks_dir().join(file)
        } else {
            self.root.join(format!("data-{file}"))
        }
    }
    /// Serial console output.
    pub fn console_log(&self) -> PathBuf {
        self.root.join("console.log")
    }
    /// The guest's journal, streamed while it runs (`[logs] forward`).
    pub fn journal_log(&self) -> PathBuf {
        self.root.join("journal.log")
    }
    /// The pid of the process streaming the journal.
    pub fn journal_pidfile(&self) -> PathBuf {
        self.root.join("journal.pid")
    }
    /// Results of `env verify` runs, appended.
    pub fn verify_log(&self) -> PathBuf {
        self.root.join("verify.log")
    }
    /// The cloud-init seed env attaches (cloud-image boxes).
    pub fn seed_image(&self) -> PathBuf {
        self.root.join("seed.img")
    }

    /// The machine's UEFI variables (its NVRAM), copied from OVMF's
    /// template at its first UEFI boot.
    pub fn uefi_vars(&self) -> PathBuf {
        self.root.join("uefi-vars.fd")
    }

    /// QEMU's pid file.
    pub fn pidfile(&self) -> PathBuf {
        self.root.join("qemu.pid")
    }
    /// The persisted [`MachineState`].
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }
    /// The per-machine private key (its `.pub` beside it).
    pub fn key(&self) -> PathBuf {
        self.root.join("id_ed25519")
    }
    /// The first-contact key written for the first connection.
    pub fn first_contact_key(&self) -> PathBuf {
        self.root.join("first_contact_key")
    }
    /// A private copy of the host's `index`-th Vagrant insecure key, for
    /// first contact with boxes made for Vagrant.
    pub fn vagrant_key_copy(&self, index: usize) -> PathBuf {
        self.root.join(format!("first_contact_key.vagrant{index}"))
    }
    /// The guest's SSH host key, made by env and passed in through fw_cfg
    /// (its `.pub` beside it).
    pub fn host_key(&self) -> PathBuf {
        self.root.join("ssh_host_ed25519_key")
    }
    /// The pinned host key.
    pub fn known_hosts(&self) -> PathBuf {
        self.root.join("known_hosts")
    }
    /// The provisioning log.
    pub fn provision_log(&self) -> PathBuf {
        self.root.join("provision.log")
    }
    /// The generated ssh_config (what `env ssh-config` prints).
    pub fn ssh_config(&self) -> PathBuf {
        self.root.join("ssh_config")
    }
    /// Socket base name in the runtime folder: short and unique per machine.
    fn socket(&self, suffix: &str) -> Result<PathBuf> {
        Ok(crate::util::paths::runtime_dir()?.join(format!(
            "{}.{suffix}",
            crate::util::paths::short_hash(&self.root)
        )))
    }
    /// A private socket of this machine named by `suffix` (the port
    /// watcher's SSH connection).
    pub fn socket_path(&self, suffix: &str) -> Result<PathBuf> {
        self.socket(suffix)
    }
    /// QMP socket.
    pub fn qmp_socket(&self) -> Result<PathBuf> {
        self.socket("qmp")
    }
    /// The socket of the `virtiofsd` serving virtio-fs folder `index`.
    pub fn virtiofs_socket(&self, index: usize) -> Result<PathBuf> {
        self.socket(&format!("vfs{index}"))
    }
    /// Guest agent socket.
    pub fn qga_socket(&self) -> Result<PathBuf> {
        self.socket("qga")
    }
    /// OpenSSH ControlPath for connection reuse.
    pub fn control_path(&self) -> Result<PathBuf> {
        self.socket("ssh")
    }

    /// Reads the persisted state, if the machine was created.
    pub fn load_state(&self) -> Result<Option<MachineState>> {
        let path = self.state_file();
        match fs::read_to_string(&path) {
            Ok(text) => {
                let state: MachineState = serde_json::from_str(&text).with_context(|| {
                    format!(
                        "{} is corrupt; env leaves it as it is. `env destroy {}` stops and removes the machine and keeps the file with its logs",
                        path.display(),
                        self.name
                    )
                })?;
                if state.format > STATE_FORMAT {
                    anyhow::bail!(
                        "{} was written by a newer env (state format {}; this one reads up to {STATE_FORMAT}): use that release",
                        path.display(),
                        state.format
                    );
                }
                Ok(Some(state))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the state atomically (a crash leaves the old or the new file).
    pub fn save_state(&self, state: &MachineState) -> Result<()> {
        write_atomic(
            &self.state_file(),
            serde_json::to_string_pretty(state)?.as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_disks_are_the_overlays_present_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = MachineDir::new(tmp.path(), "db");
        assert!(dir.box_disks().is_empty());
        fs::create_dir_all(&dir.root).unwrap();
        fs::write(dir.disk(), "").unwrap();
        fs::write(dir.box_disk(1), "").unwrap();
        fs::write(dir.box_disk(3), "").unwrap();
        assert_eq!(
            dir.box_disks(),
            [dir.root.join("disk.qcow2"), dir.root.join("disk1.qcow2")]
        );
    }

    #[test]
    fn corrupt_state_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = MachineDir::new(tmp.path(), "web");
        fs::create_dir_all(&dir.root).unwrap();
        fs::write(dir.state_file(), "{").unwrap();
        let err = dir.load_state().unwrap_err();
        assert!(err.to_string().contains("state.json"));
    }

    #[test]
    fn a_state_from_a_newer_release_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = MachineDir::new(tmp.path(), "web");
        fs::create_dir_all(&dir.root).unwrap();
        let mut state = MachineState::created("b", "0", "/b".into(), "u".into());
        dir.save_state(&state).unwrap();
        assert_eq!(dir.load_state().unwrap(), Some(state.clone()));
        state.format = STATE_FORMAT + 1;
        dir.save_state(&state).unwrap();
        let err = dir.load_state().unwrap_err().to_string();
        assert!(err.contains("newer env"), "{err}");
    }
}
