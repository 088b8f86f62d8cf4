//! The domain XML of a machine on a libvirt host, built by pure code from a
//! [`DomainPlan`]. Every file the domain names is a volume of the storage
//! pool (disks by pool and volume, kernel, initrd, host key, console log and
//! UEFI variables by the volume's path there), except the host's own UEFI
//! firmware. Nothing secret goes in: any libvirt client that may read the
//! domain sees it; the host key is a volume the guest gets through fw_cfg.

/// XML namespace of env's metadata element.
pub const METADATA_NS: &str = "https://github.com/env-project/env/libvirt/1";

/// Who a domain belongs to, written in its `<metadata>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The project's identity (a hash of the developer's host, user and
    /// project folder): every name env makes on the host starts with it.
    pub project_id: String,
    /// The project folder on the developer's host (for people reading).
    pub project_dir: String,
    /// The developer's host name and user.
    pub owner: String,
    /// The machine's name in the Envfile.
    pub machine: String,
}

/// A disk from the storage pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDisk {
    /// Volume name.
    pub volume: String,
    /// `qcow2` or `raw`.
    pub format: String,
    /// The virtio serial the guest finds it by (`env-NAME`), if any.
    pub serial: Option<String>,
    /// Attached read-only.
    pub readonly: bool,
}

/// Direct kernel boot from volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelBoot {
    /// Path of the kernel volume.
    pub kernel: String,
    /// Path of the initrd volume.
    pub initrd: Option<String>,
    /// Kernel command line.
    pub cmdline: String,
}

/// UEFI firmware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uefi {
    /// The hypervisor host's firmware code (read-only, shared).
    pub code: String,
    /// Path of the machine's variables volume.
    pub vars: String,
}

/// Everything a machine's domain holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainPlan {
    /// Domain name (unique on the host: it starts with the project id).
    pub name: String,
    /// Whose it is.
    pub identity: Identity,
    /// Under KVM (else TCG).
    pub kvm: bool,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The storage pool of every disk.
    pub pool: String,
    /// Box overlays (the root disk first), data disks, the seed.
    pub disks: Vec<PoolDisk>,
    /// Direct kernel boot, else the disk's own boot loader.
    pub kernel: Option<KernelBoot>,
    /// UEFI, else BIOS.
    pub uefi: Option<Uefi>,
    /// fw_cfg entries: name and the path of the volume holding the file.
    pub fw_cfg: Vec<(String, String)>,
    /// Path of the console log volume.
    pub console_log: String,
    /// QEMU's user-mode `-netdev` value (address 10.0.2.15, port forwards
    /// on the hypervisor host's loopback).
    pub user_netdev: String,
    /// MAC of the user-mode NIC.
    pub user_mac: String,
    /// The private network: libvirt network name and the NIC's MAC.
    pub private_network: Option<(String, String)>,
    /// The Envfile's `qemu_args`, appended last.
    pub extra_qemu_args: Vec<String>,
}

/// Escapes text for an XML attribute or element.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// A UUID derived from a domain name (libvirt refuses a definition whose
/// UUID differs from the defined domain's of the same name).
pub fn uuid_of(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(name.as_bytes());
    let hex: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Target device name of the `index`-th virtio disk (`vda`, `vdb`, ...).
pub fn disk_target(index: usize) -> String {
    let mut name = String::new();
    let mut n = index;
    loop {
        name.insert(0, (b'a' + (n % 26) as u8) as char);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    format!("vd{name}")
}

/// PCI slot of the user-mode NIC on q35's root bus: libvirt places its own
/// devices from slot 1 up; 0x1e is left to env's NIC.
const USER_NIC_SLOT: &str = "0x1e";

/// The domain XML.
pub fn domain_xml(p: &DomainPlan) -> String {
    let e = escape;
    let mut x = String::new();
    x.push_str(&format!(
        "<domain type='{}' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n",
        if p.kvm { "kvm" } else { "qemu" }
    ));
    x.push_str(&format!("  <name>{}</name>\n", e(&p.name)));
    // Stable: defining the domain again (every boot) updates it in place.
    x.push_str(&format!("  <uuid>{}</uuid>\n", uuid_of(&p.name)));
    x.push_str(&format!(
        "  <metadata>\n    <env:machine xmlns:env='{METADATA_NS}'>\n      <env:project>{}</env:project>\n      <env:dir>{}</env:dir>\n      <env:owner>{}</env:owner>\n      <env:name>{}</env:name>\n    </env:machine>\n  </metadata>\n",
        e(&p.identity.project_id),
        e(&p.identity.project_dir),
        e(&p.identity.owner),
        e(&p.identity.machine)
    ));
    x.push_str(&format!("  <memory unit='MiB'>{}</memory>\n", p.memory_mib));
    x.push_str(&format!("  <vcpu>{}</vcpu>\n", p.cpus));
    x.push_str("  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n");
    if let Some(uefi) = &p.uefi {
        x.push_str(&format!(
            "    <loader readonly='yes' secure='no' type='pflash'>{}</loader>\n    <nvram>{}</nvram>\n",
            e(&uefi.code),
            e(&uefi.vars)
        ));
    }
    match &p.kernel {
        Some(k) => {
            x.push_str(&format!("    <kernel>{}</kernel>\n", e(&k.kernel)));
            if let Some(initrd) = &k.initrd {
                x.push_str(&format!("    <initrd>{}</initrd>\n", e(initrd)));
            }
            x.push_str(&format!("    <cmdline>{}</cmdline>\n", e(&k.cmdline)));
        }
        None => x.push_str("    <boot dev='hd'/>\n"),
    }
    x.push_str("  </os>\n");
    if !p.fw_cfg.is_empty() {
        x.push_str("  <sysinfo type='fwcfg'>\n");
        for (name, file) in &p.fw_cfg {
            x.push_str(&format!(
                "    <entry name='{}' file='{}'/>\n",
                e(name),
                e(file)
            ));
        }
        x.push_str("  </sysinfo>\n");
    }
    x.push_str("  <features><acpi/><apic/></features>\n");
    if p.kvm {
        x.push_str("  <cpu mode='host-passthrough'/>\n");
    }
    x.push_str("  <clock offset='utc'/>\n  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  <on_crash>destroy</on_crash>\n  <devices>\n");
    for (i, d) in p.disks.iter().enumerate() {
        x.push_str(&format!(
            "    <disk type='volume' device='disk'>\n      <driver name='qemu' type='{}' discard='unmap'/>\n      <source pool='{}' volume='{}'/>\n      <target dev='{}' bus='virtio'/>\n",
            e(&d.format),
            e(&p.pool),
            e(&d.volume),
            disk_target(i)
        ));
        if let Some(serial) = &d.serial {
            x.push_str(&format!("      <serial>{}</serial>\n", e(serial)));
        }
        if d.readonly {
            x.push_str("      <readonly/>\n");
        }
        x.push_str("    </disk>\n");
    }
    if let Some((network, mac)) = &p.private_network {
        x.push_str(&format!(
            "    <interface type='network'>\n      <source network='{}'/>\n      <mac address='{}'/>\n      <model type='virtio'/>\n      <rom enabled='no'/>\n    </interface>\n",
            e(network),
            e(mac)
        ));
    }
    x.push_str(&format!(
        "    <serial type='pty'>\n      <log file='{}' append='on'/>\n    </serial>\n    <console type='pty'/>\n",
        e(&p.console_log)
    ));
    x.push_str("    <channel type='unix'>\n      <target type='virtio' name='org.qemu.guest_agent.0'/>\n    </channel>\n    <memballoon model='none'/>\n    <controller type='usb' model='none'/>\n    <rng model='virtio'>\n      <backend model='random'>/dev/urandom</backend>\n    </rng>\n  </devices>\n");
    // libvirt 9.0 parses no passt backend (`<backend type='passt'/>` is
    // refused): QEMU's own user-mode network, as the local backend uses it.
    let mut args = vec![
        "-netdev".to_string(),
        p.user_netdev.clone(),
        "-device".into(),
        format!(
            "virtio-net-pci,netdev=net0,mac={},bus=pcie.0,addr={USER_NIC_SLOT},romfile=",
            p.user_mac
        ),
    ];
    args.extend(p.extra_qemu_args.iter().cloned());
    x.push_str("  <qemu:commandline>\n");
    for a in &args {
        x.push_str(&format!("    <qemu:arg value='{}'/>\n", e(a)));
    }
    x.push_str("  </qemu:commandline>\n</domain>\n");
    x
}

/// Every file path the domain XML names outside `<source pool= volume=>`
/// disks: what a test checks lies in the pool.
#[cfg(test)]
pub fn named_paths(xml: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for element in ["kernel", "initrd", "nvram", "loader"] {
        let (open, close) = (format!("<{element}"), format!("</{element}>"));
        let mut rest = xml;
        while let Some(i) = rest.find(&open) {
            rest = &rest[i + open.len()..];
            let Some(start) = rest.find('>') else { break };
            if let Some(end) = rest.find(&close) {
                paths.push(rest[start + 1..end].to_string());
            }
        }
    }
    for attr in [" file='"] {
        let mut rest = xml;
        while let Some(i) = rest.find(attr) {
            let after = &rest[i + attr.len()..];
            if let Some(j) = after.find('\'') {
                paths.push(after[..j].to_string());
            }
            rest = &rest[i + attr.len()..];
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> DomainPlan {
        DomainPlan {
            name: "env-0123abcd-web".into(),
            identity: Identity {
                project_id: "0123abcd".into(),
                project_dir: "/home/dev/shop & co".into(),
                owner: "dev@laptop".into(),
                machine: "web".into(),
            },
            kvm: false,
            cpus: 2,
            memory_mib: 1024,
            pool: "default".into(),
            disks: vec![
                PoolDisk {
                    volume: "env-0123abcd-web-disk0.qcow2".into(),
                    format: "qcow2".into(),
                    serial: None,
                    readonly: false,
                },
                PoolDisk {
                    volume: "env-0123abcd-web-data-db.qcow2".into(),
                    format: "qcow2".into(),
                    serial: Some("env-db".into()),
                    readonly: false,
                },
            ],
            kernel: Some(KernelBoot {
                kernel: "/pool/env-box-k".into(),
                initrd: Some("/pool/env-box-i".into()),
                cmdline: "root=/dev/vda console=ttyS0".into(),
            }),
            uefi: None,
            fw_cfg: vec![(
                "opt/org.env/key".into(),
                "/pool/env-0123abcd-web-hostkey".into(),
            )],
            console_log: "/pool/env-0123abcd-web-console.log".into(),
            user_netdev: "user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22".into(),
            user_mac: "52:54:00:12:34:56".into(),
            private_network: Some(("env-0123abcd".into(), "52:54:00:aa:bb:cc".into())),
            extra_qemu_args: vec!["-device".into(), "virtio-rng-pci".into()],
        }
    }

    #[test]
    fn the_domain_holds_the_plan_and_only_pool_paths() {
        let x = domain_xml(&plan());
        assert!(x.starts_with("<domain type='qemu'"));
        assert!(x.contains("<name>env-0123abcd-web</name>"));
        assert!(x.contains("<env:dir>/home/dev/shop &amp; co</env:dir>"));
        assert!(x.contains("<memory unit='MiB'>1024</memory>"));
        assert!(x.contains("<vcpu>2</vcpu>"));
        assert!(x.contains("<source pool='default' volume='env-0123abcd-web-disk0.qcow2'/>\n      <target dev='vda'"));
        assert!(x.contains("<target dev='vdb' bus='virtio'/>\n      <serial>env-db</serial>"));
        assert!(x.contains("<cmdline>root=/dev/vda console=ttyS0</cmdline>"));
        assert!(x.contains("<source network='env-0123abcd'/>"));
        assert!(x.contains("<qemu:arg value='user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22'/>"));
        assert!(x.contains("mac=52:54:00:12:34:56,bus=pcie.0,addr=0x1e,romfile="));
        assert!(x.rfind("virtio-rng-pci") > x.find("netdev=net0"));
        assert_eq!(
            named_paths(&x),
            [
                "/pool/env-0123abcd-web-console.log",
                "/pool/env-0123abcd-web-hostkey",
                "/pool/env-box-i",
                "/pool/env-box-k",
            ]
        );
        assert!(!x.contains("<cpu mode"));
    }

    #[test]
    fn kvm_uefi_and_disk_boot_change_the_right_parts() {
        let mut p = plan();
        p.kvm = true;
        p.kernel = None;
        p.uefi = Some(Uefi {
            code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
            vars: "/pool/env-0123abcd-web-VARS.fd".into(),
        });
        let x = domain_xml(&p);
        assert!(x.starts_with("<domain type='kvm'"));
        assert!(x.contains("<cpu mode='host-passthrough'/>"));
        assert!(x.contains("<boot dev='hd'/>"));
        assert!(!x.contains("<kernel>"));
        assert!(x.contains("<nvram>/pool/env-0123abcd-web-VARS.fd</nvram>"));
        assert!(named_paths(&x).contains(&"/usr/share/OVMF/OVMF_CODE_4M.fd".to_string()));
    }

    #[test]
    fn hostile_text_is_escaped() {
        let mut p = plan();
        p.identity.machine = "x'/><evil/>".into();
        p.extra_qemu_args = vec!["a'b\"<c>".into()];
        let x = domain_xml(&p);
        assert!(!x.contains("<evil/>"));
        assert!(x.contains("a&apos;b&quot;&lt;c&gt;"));
    }

    #[test]
    fn uuids_are_stable_per_name() {
        assert_eq!(uuid_of("a"), uuid_of("a"));
        assert_ne!(uuid_of("a"), uuid_of("b"));
        assert_eq!(uuid_of("a").len(), 36);
        assert!(
            domain_xml(&plan()).contains(&format!("<uuid>{}</uuid>", uuid_of("env-0123abcd-web")))
        );
    }

    #[test]
    fn disk_targets_count_like_linux() {
        assert_eq!(disk_target(0), "vda");
        assert_eq!(disk_target(25), "vdz");
        assert_eq!(disk_target(26), "vdaa");
        assert_eq!(disk_target(27), "vdab");
    }
}
