//! QEMU's command line, built by small pure functions, one per concern, from
//! a [`VmSpec`] (the "plan" of a boot).

pub use crate::machine::state::{Accelerator, Forward};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The QEMU system emulator env runs.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// How the guest's kernel is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// Direct kernel boot (fast): kernel, optional initrd, command line.
    Kernel {
        /// Kernel image.
        kernel: PathBuf,
        /// Initrd.
        initrd: Option<PathBuf>,
        /// Kernel command line.
        cmdline: String,
    },
    /// Firmware and the disk's own bootloader.
    Disk,
}

/// The second NIC, on the project's private multicast segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateNic {
    /// Multicast group.
    pub group: std::net::Ipv4Addr,
    /// UDP port.
    pub port: u16,
    /// MAC address.
    pub mac: String,
}

/// A host folder shared with the guest over 9p (virtio).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// Mount tag the guest mounts (`env0`, `env1`, ...).
    pub tag: String,
    /// Host folder.
    pub path: PathBuf,
    /// Read-only.
    pub readonly: bool,
}

/// A host folder shared over virtio-fs: the socket of the `virtiofsd`
/// serving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsShare {
    /// Mount tag the guest mounts.
    pub tag: String,
    /// The vhost-user socket `virtiofsd` listens on.
    pub socket: PathBuf,
}

/// A data disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDisk {
    /// Name; the virtio serial is `env-NAME`.
    pub name: String,
    /// Image file.
    pub path: PathBuf,
    /// `qcow2` or `raw`.
    pub format: String,
}

/// Data disks on virtio-blk with stable serials: the guest finds each at
/// `/dev/disk/by-id/virtio-env-NAME` whatever the order of the devices.
pub fn data_disk_args(disks: &[DataDisk]) -> Vec<String> {
    disks
        .iter()
        .flat_map(|d| {
            [
                "-drive".to_string(),
                format!(
                    "file={},if=none,id=data-{},node-name={},format={},discard=unmap",
                    escape_commas(&path(&d.path)),
                    d.name,
                    data_node(&d.name),
                    d.format
                ),
                "-device".to_string(),
                format!(
                    "virtio-blk-pci,drive=data-{name},serial=env-{name}",
                    name = d.name
                ),
            ]
        })
        .collect()
}

/// The block node name of the box's `index`-th disk (what QMP snapshot jobs
/// name; the drive id `diskN` names the device side).
pub fn box_disk_node(index: usize) -> String {
    format!("node-disk{index}")
}

/// The block node name of data disk `name`.
pub fn data_node(name: &str) -> String {
    format!("node-data-{name}")
}

/// The mount tag of the `index`-th shared folder.
pub fn share_tag(index: usize) -> String {
    format!("env{index}")
}

/// Everything QEMU needs for one boot of a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// Machine name (shown in `ps` as the process name).
    pub name: String,
    /// Accelerator.
    pub accel: Accelerator,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The machine's box disks (qcow2 overlays), the root disk first.
    pub disks: Vec<PathBuf>,
    /// How to boot.
    pub boot: Boot,
    /// QMP control socket.
    pub qmp_socket: PathBuf,
    /// Guest agent socket.
    pub qga_socket: PathBuf,
    /// Serial console log.
    pub console_log: PathBuf,
    /// QEMU's pid file.
    pub pidfile: PathBuf,
    /// Forwarded ports, SSH first.
    pub forwards: Vec<Forward>,
    /// Data disks.
    pub data_disks: Vec<DataDisk>,
    /// Host folders shared over 9p.
    pub shares: Vec<Share>,
    /// Host folders shared over virtio-fs.
    pub fs_shares: Vec<FsShare>,
    /// The private network's NIC, if the project has one.
    pub private_nic: Option<PrivateNic>,
    /// Files passed to the guest through fw_cfg (name under `opt/`, file).
    pub fw_cfg: Vec<(String, PathBuf)>,
    /// The cloud-init seed image, attached read-only.
    pub seed: Option<PathBuf>,
    /// UEFI firmware (BIOS otherwise).
    pub uefi: Option<Uefi>,
    /// Start from this snapshot's VM state instead of booting.
    pub loadvm: Option<String>,
    /// Extra arguments appended last.
    pub extra: Vec<String>,
}

/// UEFI firmware: OVMF's code (read-only, shared) and the machine's own
/// variables store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uefi {
    /// OVMF's code.
    pub code: PathBuf,
    /// The machine's copy of the variables.
    pub vars: PathBuf,
}

/// The firmware's flash drives, for UEFI.
pub fn firmware_args(uefi: Option<&Uefi>) -> Vec<String> {
    let Some(uefi) = uefi else {
        return Vec::new();
    };
    vec![
        "-drive".into(),
        format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            escape_commas(&path(&uefi.code))
        ),
        "-drive".into(),
        format!(
            "if=pflash,format=raw,unit=1,file={}",
            escape_commas(&path(&uefi.vars))
        ),
    ]
}

/// The cloud-init seed on its own read-only virtio disk.
pub fn seed_args(seed: Option<&Path>) -> Vec<String> {
    let Some(seed) = seed else {
        return Vec::new();
    };
    vec![
        "-drive".into(),
        format!(
            "file={},if=none,id=seed,format=raw,readonly=on",
            escape_commas(&path(seed))
        ),
        "-device".into(),
        "virtio-blk-pci,drive=seed,serial=env-cidata".into(),
    ]
}

/// Machine type and accelerator. Under KVM the host CPU model is passed
/// through; under TCG QEMU's default model emulates fastest.
pub fn machine_args(accel: Accelerator) -> Vec<String> {
    match accel {
        Accelerator::Kvm => strings(&["-machine", "q35,accel=kvm", "-cpu", "host"]),
        Accelerator::Tcg => strings(&["-machine", "q35,accel=tcg"]),
    }
}

/// CPUs and memory.
pub fn resource_args(cpus: u32, memory_mib: u64) -> Vec<String> {
    vec![
        "-smp".into(),
        cpus.to_string(),
        "-m".into(),
        format!("{memory_mib}M"),
    ]
}

/// No default devices, no user config files, no display: every device is
/// declared here, so a guest boots the same on every host.
pub fn base_args(name: &str) -> Vec<String> {
    vec![
        "-name".into(),
        format!("{name},process=env-{name}"),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
    ]
}

/// Kernel, initrd and command line for direct kernel boot.
pub fn boot_args(boot: &Boot) -> Vec<String> {
    match boot {
        Boot::Disk => Vec::new(),
        Boot::Kernel {
            kernel,
            initrd,
            cmdline,
        } => {
            let mut args = vec!["-kernel".into(), path(kernel)];
            if let Some(initrd) = initrd {
                args.extend(["-initrd".into(), path(initrd)]);
            }
            args.extend(["-append".into(), cmdline.clone()]);
            args
        }
    }
}

/// The box disks on virtio-blk, in the box's order: the root disk first, so
/// the guest sees it as `/dev/vda` and firmware boots from it.
pub fn drive_args(disks: &[PathBuf]) -> Vec<String> {
    disks
        .iter()
        .enumerate()
        .flat_map(|(i, disk)| {
            [
                "-drive".to_string(),
                format!(
                    "file={},if=none,id=disk{i},node-name={},format=qcow2,discard=unmap",
                    escape_commas(&path(disk)),
                    box_disk_node(i)
                ),
                "-device".to_string(),
                format!("virtio-blk-pci,drive=disk{i}"),
            ]
        })
        .collect()
}

/// One `hostfwd` rule: `tcp:127.0.0.1:8080-:80`.
pub fn hostfwd_rule(forward: &Forward) -> String {
    let ip = match forward.host_ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    format!(
        "hostfwd={}:{}:{}-:{}",
        forward.protocol, ip, forward.host_port, forward.guest_port
    )
}

/// The user-mode `-netdev` value with every forwarded port (`net0`).
pub fn user_netdev(forwards: &[Forward]) -> String {
    let mut netdev = String::from("user,id=net0");
    for forward in forwards {
        netdev.push(',');
        netdev.push_str(&hostfwd_rule(forward));
    }
    netdev
}

/// User-mode networking on virtio-net with every forwarded port. No option
/// ROM: iPXE's start-up costs about a second under TCG and env never boots
/// from the network.
pub fn network_args(forwards: &[Forward]) -> Vec<String> {
    vec![
        "-netdev".into(),
        user_netdev(forwards),
        "-device".into(),
        format!(
            "virtio-net-pci,netdev=net0,mac={},romfile=",
            crate::machine::USER_NIC_MAC
        ),
    ]
}

/// The private NIC: QEMU's socket networking on a multicast group, bound to
/// the loopback address so the segment never leaves the host (no root, no
/// bridge). Every machine of a project joins the same group.
pub fn private_network_args(nic: &PrivateNic) -> Vec<String> {
    vec![
        "-netdev".into(),
        format!(
            "socket,id=net1,mcast={}:{},localaddr=127.0.0.1",
            nic.group, nic.port
        ),
        "-device".into(),
        format!("virtio-net-pci,netdev=net1,mac={},romfile=", nic.mac),
    ]
}

/// 9p shares. `security_model=none`: QEMU reads and writes as the user who
/// runs it, so files the guest writes belong to the host user, not root.
pub fn virtfs_args(shares: &[Share]) -> Vec<String> {
    shares
        .iter()
        .flat_map(|s| {
            let mut opt = format!(
                "local,path={},mount_tag={tag},security_model=none,id={tag}",
                escape_commas(&path(&s.path)),
                tag = s.tag
            );
            if s.readonly {
                opt.push_str(",readonly=on");
            }
            ["-virtfs".to_string(), opt]
        })
        .collect()
}

/// virtio-fs shares: the guest's memory must be shared with `virtiofsd`
/// (a memfd backend, named as the machine's RAM), then one vhost-user-fs
/// device per share on its daemon's socket.
pub fn virtiofs_args(shares: &[FsShare], memory_mib: u64) -> Vec<String> {
    if shares.is_empty() {
        return Vec::new();
    }
    let mut args = vec![
        "-object".to_string(),
        format!("memory-backend-memfd,id=env-mem,size={memory_mib}M,share=on"),
        "-machine".into(),
        "memory-backend=env-mem".into(),
    ];
    for (i, s) in shares.iter().enumerate() {
        args.extend([
            "-chardev".to_string(),
            format!(
                "socket,id=env-vfs{i},path={}",
                escape_commas(&path(&s.socket))
            ),
            "-device".into(),
            format!("vhost-user-fs-pci,chardev=env-vfs{i},tag={}", s.tag),
        ]);
    }
    args
}

/// The QMP control socket, listening without waiting for a client.
pub fn qmp_args(socket: &Path) -> Vec<String> {
    vec![
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", escape_commas(&path(socket))),
    ]
}

/// The guest agent's virtio-serial port (`org.qemu.guest_agent.0`).
pub fn guest_agent_args(socket: &Path) -> Vec<String> {
    vec![
        "-chardev".into(),
        format!(
            "socket,id=qga0,path={},server=on,wait=off",
            escape_commas(&path(socket))
        ),
        "-device".into(),
        "virtio-serial-pci".into(),
        "-device".into(),
        "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0".into(),
    ]
}

/// The serial console, appended to a log file.
pub fn console_args(log: &Path) -> Vec<String> {
    vec![
        "-chardev".into(),
        format!(
            "file,id=console0,path={},append=on",
            escape_commas(&path(log))
        ),
        "-serial".into(),
        "chardev:console0".into(),
    ]
}

/// Entropy from the host: without it sshd and the kernel wait for randomness.
pub fn rng_args() -> Vec<String> {
    strings(&["-device", "virtio-rng-pci"])
}

/// Files for the guest through QEMU's fw_cfg (read in the guest under
/// `/sys/firmware/qemu_fw_cfg/by_name/NAME/raw`); names must start with `opt/`.
pub fn fw_cfg_args(entries: &[(String, PathBuf)]) -> Vec<String> {
    entries
        .iter()
        .flat_map(|(name, file)| {
            [
                "-fw_cfg".to_string(),
                format!("name={name},file={}", escape_commas(&path(file))),
            ]
        })
        .collect()
}

/// Detach once the guest is set up, leaving a pid file.
pub fn daemon_args(pidfile: &Path) -> Vec<String> {
    vec!["-daemonize".into(), "-pidfile".into(), path(pidfile)]
}

/// The whole command line (without the binary), extra arguments last.
pub fn qemu_args(spec: &VmSpec) -> Vec<String> {
    [
        base_args(&spec.name),
        machine_args(spec.accel),
        resource_args(spec.cpus, spec.memory_mib),
        firmware_args(spec.uefi.as_ref()),
        boot_args(&spec.boot),
        drive_args(&spec.disks),
        seed_args(spec.seed.as_deref()),
        data_disk_args(&spec.data_disks),
        network_args(&spec.forwards),
        spec.private_nic
            .as_ref()
            .map(private_network_args)
            .unwrap_or_default(),
        virtfs_args(&spec.shares),
        virtiofs_args(&spec.fs_shares, spec.memory_mib),
        rng_args(),
        guest_agent_args(&spec.qga_socket),
        qmp_args(&spec.qmp_socket),
        console_args(&spec.console_log),
        fw_cfg_args(&spec.fw_cfg),
        daemon_args(&spec.pidfile),
        loadvm_args(spec.loadvm.as_deref()),
        spec.extra.clone(),
    ]
    .concat()
}

/// Starting from a snapshot's VM state: QEMU builds the machine, then
/// loads the state instead of running the firmware.
pub fn loadvm_args(tag: Option<&str>) -> Vec<String> {
    match tag {
        Some(tag) => vec!["-loadvm".into(), tag.into()],
        None => Vec::new(),
    }
}

/// QEMU option values use `,` as separator; a literal comma is written `,,`.
fn escape_commas(value: &str) -> String {
    value.replace(',', ",,")
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envfile::Protocol;

    fn spec() -> VmSpec {
        VmSpec {
            name: "web".into(),
            accel: Accelerator::Tcg,
            cpus: 2,
            memory_mib: 1024,
            disks: vec!["/p/.envstate/machines/web/disk.qcow2".into()],
            boot: Boot::Kernel {
                kernel: "/b/vmlinuz".into(),
                initrd: Some("/b/initrd.img".into()),
                cmdline: "root=/dev/vda rw".into(),
            },
            qmp_socket: "/run/env/abc.qmp".into(),
            qga_socket: "/run/env/abc.qga".into(),
            console_log: "/p/.envstate/machines/web/console.log".into(),
            pidfile: "/p/.envstate/machines/web/qemu.pid".into(),
            forwards: vec![
                Forward {
                    protocol: Protocol::Tcp,
                    host_ip: "127.0.0.1".parse().unwrap(),
                    host_port: 2222,
                    guest_port: 22,
                },
                Forward {
                    protocol: Protocol::Udp,
                    host_ip: "::1".parse().unwrap(),
                    host_port: 5353,
                    guest_port: 53,
                },
            ],
            private_nic: None,
            seed: None,
            uefi: None,
            fs_shares: Vec::new(),
            loadvm: None,
            data_disks: vec![DataDisk {
                name: "db".into(),
                path: "/p/db.qcow2".into(),
                format: "qcow2".into(),
            }],
            shares: vec![Share {
                tag: share_tag(0),
                path: "/p/src".into(),
                readonly: true,
            }],
            fw_cfg: vec![("opt/org.env/k".into(), "/s/k".into())],
            extra: vec!["-device".into(), "virtio-balloon".into()],
        }
    }

    fn window(args: &[String], flag: &str) -> Vec<String> {
        args.iter()
            .enumerate()
            .filter(|(_, a)| *a == flag)
            .map(|(i, _)| args[i + 1].clone())
            .collect()
    }

    #[test]
    fn a_cached_machine_starts_from_its_snapshot_before_the_extra_arguments() {
        let mut s = spec();
        assert!(!qemu_args(&s).contains(&"-loadvm".to_string()));
        s.loadvm = Some("env-cache".into());
        let args = qemu_args(&s);
        let at = args.iter().position(|a| a == "-loadvm").unwrap();
        assert_eq!(args[at + 1], "env-cache");
        let extra = args.iter().position(|a| a == "virtio-balloon").unwrap();
        assert!(at < extra, "the user's escape hatch comes last");
    }

    #[test]
    fn full_command_line() {
        let args = qemu_args(&spec());
        assert_eq!(window(&args, "-machine"), ["q35,accel=tcg"]);
        assert!(
            !args.contains(&"-cpu".to_string()),
            "TCG keeps QEMU's default CPU"
        );
        assert_eq!(window(&args, "-smp"), ["2"]);
        assert_eq!(window(&args, "-m"), ["1024M"]);
        assert_eq!(window(&args, "-kernel"), ["/b/vmlinuz"]);
        assert_eq!(window(&args, "-initrd"), ["/b/initrd.img"]);
        assert_eq!(window(&args, "-append"), ["root=/dev/vda rw"]);
        assert_eq!(
            window(&args, "-netdev"),
            ["user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=udp:[::1]:5353-:53"]
        );
        assert_eq!(
            window(&args, "-qmp"),
            ["unix:/run/env/abc.qmp,server=on,wait=off"]
        );
        assert_eq!(
            window(&args, "-pidfile"),
            ["/p/.envstate/machines/web/qemu.pid"]
        );
        assert!(args.contains(&"-daemonize".to_string()));
        assert!(
            window(&args, "-device")
                .contains(&"virtio-blk-pci,drive=data-db,serial=env-db".to_string())
        );
        assert!(window(&args, "-drive").contains(
            &"file=/p/db.qcow2,if=none,id=data-db,node-name=node-data-db,format=qcow2,discard=unmap".to_string()
        ));
        assert_eq!(
            window(&args, "-virtfs"),
            ["local,path=/p/src,mount_tag=env0,security_model=none,id=env0,readonly=on"]
        );
        assert_eq!(window(&args, "-fw_cfg"), ["name=opt/org.env/k,file=/s/k"]);
        assert!(args.contains(&"-nodefaults".to_string()));
        assert_eq!(
            args[args.len() - 2..],
            ["-device", "virtio-balloon"],
            "extra arguments come last"
        );
        assert!(
            window(&args, "-device")
                .contains(&"virtserialport,chardev=qga0,name=org.qemu.guest_agent.0".to_string())
        );
    }

    #[test]
    fn box_disks_attach_in_order_root_first() {
        let args = drive_args(&["/m/disk.qcow2".into(), "/m/disk1.qcow2".into()]);
        assert_eq!(
            window(&args, "-drive"),
            [
                "file=/m/disk.qcow2,if=none,id=disk0,node-name=node-disk0,format=qcow2,discard=unmap",
                "file=/m/disk1.qcow2,if=none,id=disk1,node-name=node-disk1,format=qcow2,discard=unmap"
            ]
        );
        assert_eq!(
            window(&args, "-device"),
            ["virtio-blk-pci,drive=disk0", "virtio-blk-pci,drive=disk1"]
        );
        assert_eq!(box_disk_node(0), "node-disk0");
        let spec = spec();
        let all = qemu_args(&spec);
        let drives = window(&all, "-drive");
        assert!(
            drives[0].contains("id=disk0") && drives[1].contains("id=data-db"),
            "box disks come before data disks: {drives:?}"
        );
    }

    #[test]
    fn uefi_and_a_seed_attach_as_flash_and_a_read_only_disk() {
        let mut s = spec();
        s.boot = Boot::Disk;
        s.seed = Some("/m/seed.img".into());
        s.uefi = Some(Uefi {
            code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
            vars: "/m/uefi-vars.fd".into(),
        });
        let args = qemu_args(&s);
        let drives = window(&args, "-drive");
        assert_eq!(
            &drives[..2],
            [
                "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
                "if=pflash,format=raw,unit=1,file=/m/uefi-vars.fd"
            ]
        );
        assert!(
            drives.contains(&"file=/m/seed.img,if=none,id=seed,format=raw,readonly=on".to_string())
        );
        let devices = window(&args, "-device");
        // The seed comes after the root disk: the root disk stays /dev/vda.
        let root = devices
            .iter()
            .position(|d| d == "virtio-blk-pci,drive=disk0")
            .unwrap();
        let seed = devices
            .iter()
            .position(|d| d.contains("drive=seed"))
            .unwrap();
        assert!(root < seed);
        assert!(devices.contains(&format!(
            "virtio-net-pci,netdev=net0,mac={},romfile=",
            crate::machine::USER_NIC_MAC
        )));
        assert!(firmware_args(None).is_empty() && seed_args(None).is_empty());
    }

    #[test]
    fn kvm_uses_the_host_cpu() {
        let args = machine_args(Accelerator::Kvm);
        assert_eq!(args, ["-machine", "q35,accel=kvm", "-cpu", "host"]);
    }

    #[test]
    fn firmware_boot_has_no_kernel() {
        assert!(boot_args(&Boot::Disk).is_empty());
        let args = boot_args(&Boot::Kernel {
            kernel: "k".into(),
            initrd: None,
            cmdline: "c".into(),
        });
        assert_eq!(args, ["-kernel", "k", "-append", "c"]);
    }

    #[test]
    fn commas_in_paths_are_escaped() {
        let args = drive_args(&["/a,b/disk.qcow2".into()]);
        assert!(
            args[1].starts_with("file=/a,,b/disk.qcow2,if=none"),
            "{}",
            args[1]
        );
        assert_eq!(
            qmp_args(Path::new("/x,y"))[1],
            "unix:/x,,y,server=on,wait=off"
        );
    }
}
