//! The boot plan of a machine: what QEMU gets, computed by pure code from
//! the Envfile's machine, its state and its box's metadata.

use super::args::{self as qemu, Boot, Forward, VmSpec};
use crate::boxes::metadata::{Firmware, Metadata};
use crate::envfile::Machine;
use crate::envfile::folders::FolderKind;
use crate::machine::{MachineDir, MachineState};
use anyhow::Result;
use std::path::PathBuf;

/// fw_cfg name of the SSH host key env makes for a machine.
pub const HOST_KEY_FW_CFG: &str = "opt/org.env/ssh_host_ed25519_key";

/// The host key entry, when the box installs keys passed this way.
fn host_key_fw_cfg(dir: &MachineDir, meta: &Metadata) -> Vec<(String, PathBuf)> {
    let supported = meta.env.as_ref().is_some_and(|e| e.ssh_host_key_fw_cfg);
    if supported && dir.host_key().exists() {
        vec![(HOST_KEY_FW_CFG.into(), dir.host_key())]
    } else {
        Vec::new()
    }
}

/// The first NIC's address under QEMU user networking (always this one).
pub const USER_NET_GUEST_ADDRESS: &str = "10.0.2.15/24";

/// Adds `env.ip=` to a kernel command line: env's initrd sets that address
/// before systemd starts, so SSH answers without waiting for DHCP. Kernels
/// and initrds that do not know it ignore it.
pub fn with_user_net_address(cmdline: String) -> String {
    format!("{cmdline} env.ip={USER_NET_GUEST_ADDRESS}")
}

/// What a boot attaches beside the box's disks.
#[derive(Debug, Clone, Default)]
pub struct Attached {
    /// The private network's NIC.
    pub private_nic: Option<qemu::PrivateNic>,
    /// The cloud-init seed.
    pub seed: Option<PathBuf>,
    /// UEFI firmware, when the machine boots through it.
    pub uefi: Option<qemu::Uefi>,
    /// A snapshot to start from instead of booting.
    pub loadvm: Option<String>,
    /// The virtio-fs shares, their daemons started.
    pub fs_shares: Vec<qemu::FsShare>,
}

/// The firmware a machine boots with: the Envfile's, else the box's, else
/// BIOS.
pub fn firmware(machine: &Machine, meta: &Metadata) -> Firmware {
    machine
        .firmware
        .or_else(|| meta.env.as_ref().and_then(|e| e.firmware))
        .unwrap_or(Firmware::Bios)
}

/// Where distributions install OVMF: (code, variables template).
const OVMF_PLACES: &[(&str, &str)] = &[
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2/ovmf/OVMF_CODE.fd",
        "/usr/share/edk2/ovmf/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2/x64/OVMF_CODE.4m.fd",
        "/usr/share/edk2/x64/OVMF_VARS.4m.fd",
    ),
];

/// This host's OVMF (code, variables template), the first pair present.
pub fn ovmf() -> Result<(PathBuf, PathBuf)> {
    OVMF_PLACES
        .iter()
        .map(|(c, v)| (PathBuf::from(c), PathBuf::from(v)))
        .find(|(c, v)| c.is_file() && v.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "UEFI needs OVMF, found in none of {}: install it (apt-get install ovmf)",
                OVMF_PLACES
                    .iter()
                    .map(|(c, _)| *c)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// The boot plan of a machine from its box's metadata.
pub fn vm_spec(
    dir: &MachineDir,
    machine: &Machine,
    state: &MachineState,
    meta: &Metadata,
    accel: qemu::Accelerator,
    forwards: Vec<Forward>,
    attached: Attached,
) -> Result<VmSpec> {
    let boot = match meta.env.as_ref().and_then(|e| e.kernel.as_ref()) {
        Some(kernel) => Boot::Kernel {
            kernel: state.box_dir.join(kernel),
            initrd: meta
                .env
                .as_ref()
                .and_then(|e| e.initrd.as_ref())
                .map(|i| state.box_dir.join(i)),
            cmdline: with_user_net_address(
                meta.env
                    .as_ref()
                    .and_then(|e| e.cmdline.clone())
                    .unwrap_or_else(|| "root=/dev/vda rw console=ttyS0".into()),
            ),
        },
        None => Boot::Disk,
    };
    Ok(VmSpec {
        name: machine.name.clone(),
        accel,
        cpus: machine.cpus,
        memory_mib: machine.memory.mib,
        disks: dir.box_disks(),
        boot,
        qmp_socket: dir.qmp_socket()?,
        qga_socket: dir.qga_socket()?,
        console_log: dir.console_log(),
        pidfile: dir.pidfile(),
        forwards,
        private_nic: attached.private_nic,
        seed: attached.seed,
        uefi: attached.uefi,
        data_disks: machine
            .disks
            .iter()
            .map(|d| qemu::DataDisk {
                name: d.name.clone(),
                path: dir.data_disk(d),
                format: d.format.name().into(),
            })
            .collect(),
        shares: machine
            .folders
            .iter()
            .enumerate()
            .filter(|(_, f)| f.kind == FolderKind::NineP)
            .map(|(i, f)| qemu::Share {
                tag: qemu::share_tag(i),
                path: f.host.clone(),
                readonly: f.readonly,
            })
            .collect(),
        fw_cfg: host_key_fw_cfg(dir, meta),
        fs_shares: attached.fs_shares,
        loadvm: attached.loadvm,
        extra: machine.qemu_args.clone(),
    })
}
