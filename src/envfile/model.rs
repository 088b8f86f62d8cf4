//! The Envfile's types: what a project describes, as parsed (`Raw*`,
//! `Settings`) and after defaults are merged ([`Machine`], [`Envfile`]).

use super::{disks, folders, provisioners};
use crate::util::size::Size;
use indexmap::IndexMap;
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The environment variable that overrides the Envfile's accelerator.
pub const ACCEL_VAR: &str = "ENV_ACCEL";

/// The file name looked for when walking up from the current folder.
pub const ENVFILE_NAME: &str = "Envfile";

/// The machine name used when the Envfile declares no `[machines.*]`.
pub const DEFAULT_MACHINE: &str = "default";

/// How QEMU runs guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM when it is usable, TCG otherwise.
    Auto,
    /// Hardware virtualization; fails when `/dev/kvm` is not usable.
    Kvm,
    /// Software emulation: slow, works everywhere.
    Tcg,
}

impl Accel {
    /// Parses `auto`, `kvm` or `tcg` (for `--accel` and `ENV_ACCEL`).
    pub fn parse(text: &str) -> Result<Accel, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Accel::Auto),
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            _ => Err(format!(
                "`{text}` is not an accelerator: use auto, kvm or tcg"
            )),
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// Transport protocol of a forwarded port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// A boot timeout: seconds as an integer, or `"90s"`, `"5m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Duration);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timeout;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("seconds (120) or a duration such as \"90s\", \"5m\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Timeout, E> {
                if v < 1 {
                    return Err(E::custom("a timeout must be at least 1 second"));
                }
                crate::util::duration::bounded_secs(v as u64)
                    .map(Timeout)
                    .map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timeout, E> {
                self.visit_i64(v.min(i64::MAX as u64) as i64)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timeout, E> {
                crate::util::duration::parse_duration(v)
                    .map(Timeout)
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// One forwarded port as written in the Envfile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortForward {
    /// Port inside the guest.
    pub guest: u16,
    /// Port on the host.
    pub host: u16,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Host address to bind; 127.0.0.1 unless asked otherwise.
    #[serde(default = "loopback")]
    pub host_ip: IpAddr,
    /// Move to a free host port when `host` is taken, instead of failing.
    #[serde(default)]
    pub auto_correct: bool,
}

fn loopback() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

/// SSH settings as written in the Envfile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    /// Login user; the box's (`vagrant`) when absent.
    pub user: Option<String>,
    /// Private key for the first contact, relative to the Envfile's folder;
    /// the well-known key when absent.
    pub private_key: Option<PathBuf>,
    /// Replace the first-contact key by a fresh per-machine key (default true).
    pub insert_key: Option<bool>,
    /// SSH port inside the guest (default 22).
    pub guest_port: Option<u16>,
    /// Forward the user's SSH agent to `env ssh` sessions and provisioners
    /// (default false: the guest could use the agent's keys meanwhile).
    pub forward_agent: Option<bool>,
}

/// Settings of a machine, or project-wide defaults; every field optional so
/// that a machine's own settings override the defaults field by field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Box name in the store.
    #[serde(rename = "box")]
    pub box_name: Option<String>,
    /// Version constraint on the box (`>= 1.0, < 2`).
    pub box_version: Option<String>,
    /// Where to fetch the box (archive or catalog URL) when the store lacks it.
    pub box_url: Option<String>,
    /// Expected digest of the box fetched from `box_url` (`sha256:HEX`).
    pub box_checksum: Option<String>,
    /// The Vagrant box registry that resolves `owner/name` boxes
    /// (`ENV_BOX_SERVER` overrides it).
    pub box_server: Option<String>,
    /// Virtual CPUs.
    pub cpus: Option<u32>,
    /// Guest memory.
    pub memory: Option<Size>,
    /// Root disk size; the overlay grows to it (never below the box's size).
    pub disk: Option<Size>,
    /// `auto`, `kvm` or `tcg`.
    pub accel: Option<Accel>,
    /// How long to wait for SSH after QEMU starts.
    pub boot_timeout: Option<Timeout>,
    /// Forwarded ports (a machine's list replaces the defaults' list).
    pub ports: Option<Vec<PortForward>>,
    /// SSH settings.
    pub ssh: Option<SshSettings>,
    /// Extra QEMU arguments appended last: the escape hatch.
    pub qemu_args: Option<Vec<String>>,
    /// Provisioners (the defaults' run before the machine's).
    pub provision: Option<Vec<provisioners::RawProvisioner>>,
    /// The machine's address on the project's private network.
    pub ip: Option<std::net::Ipv4Addr>,
    /// The private network's /24 (in `[defaults]`): `"192.168.56.0"`.
    pub private_subnet: Option<std::net::Ipv4Addr>,
    /// Machines that must be up (and provisioned) before this one provisions.
    pub depends_on: Option<Vec<String>>,
    /// Shared folders (the defaults' and the machine's).
    pub folders: Option<Vec<folders::RawFolder>>,
    /// Data disks (the defaults' and the machine's; each machine its own).
    pub disks: Option<Vec<disks::RawDisk>>,
    /// Spec files checked by `env verify` (paths or globs, relative to the
    /// Envfile; the defaults' and the machine's).
    pub specs: Option<Vec<String>>,
    /// `bios` or `uefi` (default: what the box says, else BIOS).
    pub firmware: Option<crate::boxes::metadata::Firmware>,
    /// cloud-init, for boxes made from cloud images.
    pub cloud_init: Option<CloudInitSettings>,
    /// The guest's HTTP proxy: `"inherit"` or a table.
    pub proxy: Option<super::proxy::RawProxy>,
    /// Forward the guest's listening ports as they open.
    pub ports_auto: Option<super::ports_auto::RawAutoPorts>,
    /// What runs the machine: `qemu` (this host, the default) or `libvirt`.
    pub backend: Option<super::libvirt::BackendKind>,
    /// The libvirt host: `{ uri, pool, network }`.
    pub libvirt: Option<super::libvirt::RawLibvirt>,
    /// What the machine needs before it counts as up.
    pub ready: Option<Vec<RawProbe>>,
    /// How long `up` and `provision` wait for the probes.
    pub ready_timeout: Option<Timeout>,
}

/// One readiness probe as written: exactly one of `port`, `command`, `http`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    /// A TCP port listening in the guest.
    pub port: Option<u16>,
    /// A command exiting 0 (run as root).
    pub command: Option<String>,
    /// An HTTP URL fetched in the guest.
    pub http: Option<String>,
    /// The status the URL must answer (default 200).
    pub status: Option<u16>,
}

/// `cloud_init = { user_data = "cloud-init/web.yaml" }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudInitSettings {
    /// The project's own user-data (relative to the Envfile), merged with
    /// env's: env's user, key and host key always stay.
    pub user_data: Option<PathBuf>,
}

/// Where a combination comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Combination {
    /// The machine's name: `SUITE-PLATFORM`, made host-name safe.
    pub name: String,
    /// The `[suites.NAME]` it runs.
    pub suite: String,
    /// The `[platforms.NAME]` it runs on.
    pub platform: String,
}

/// The Envfile as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvfile {
    /// `[defaults]`: settings every machine starts from.
    #[serde(default)]
    pub defaults: Settings,
    /// `[machines.NAME]`, in file order.
    #[serde(default)]
    pub machines: IndexMap<String, Settings>,
    /// `[logs]`.
    #[serde(default)]
    pub logs: LogSettings,
    /// `[platforms.NAME]`: the matrix's operating systems (a box each).
    #[serde(default)]
    pub platforms: IndexMap<String, Settings>,
    /// `[suites.NAME]`: what the matrix runs on every platform.
    #[serde(default)]
    pub suites: IndexMap<String, Settings>,
    /// `[targets.NAME]`: hosts env does not manage, checked by `env verify`.
    #[serde(default)]
    pub targets: IndexMap<String, super::targets::RawTarget>,
    /// `[cache]`: the provisioning cache.
    #[serde(default)]
    pub cache: CacheSettings,
    /// `[[triggers]]`: host commands or guest scripts around commands.
    #[serde(default)]
    pub triggers: Vec<super::triggers::RawTrigger>,
    /// `[vars]`: values for `${NAME}` in string values (the environment's
    /// win).
    #[serde(default)]
    #[allow(dead_code)] // read by `vars::expand`, before deserializing
    pub vars: IndexMap<String, String>,
}

/// The `[cache]` table: the provisioning cache, opt-in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// `env up` and `env test` restore and keep provisioned machines
    /// (`--cache` / `--no-cache` override).
    #[serde(default)]
    pub enabled: bool,
    /// The whole cache's size limit (least recently used entries go).
    pub max_size: Option<Size>,
}

/// The `[logs]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Archived runs kept per machine after `destroy`.
    pub keep: Option<usize>,
    /// Stream each guest's journal into its `journal.log` while it runs.
    pub forward: Option<bool>,
}

/// Default number of virtual CPUs.
/// How many archived runs of logs a machine keeps by default (`[logs] keep`).
pub const DEFAULT_LOGS_KEEP: usize = 10;
/// Default CPUs.
pub const DEFAULT_CPUS: u32 = 2;
/// Default guest memory.
pub const DEFAULT_MEMORY: Size = Size::mib(1024);
/// Default boot timeout.
pub const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// How long `up` and `provision` wait for readiness probes by default.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Smallest memory a guest may have.
pub const MIN_MEMORY: Size = Size::mib(128);
/// Most virtual CPUs a machine may have.
pub const MAX_CPUS: u32 = 255;

/// The box a machine boots from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxRef {
    /// Name in the store.
    pub name: String,
    /// Version constraint.
    pub version: Option<String>,
    /// Where to fetch it.
    pub url: Option<String>,
    /// The digest the fetched box must have (a catalog's own is used otherwise).
    pub checksum: Option<crate::boxes::digest::Checksum>,
    /// The registry server for `owner/name` boxes, when the Envfile names one.
    pub server: Option<String>,
}

/// A machine with every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// Unique name within the project.
    pub name: String,
    /// The box.
    pub boxref: BoxRef,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Guest memory.
    pub memory: Size,
    /// Requested root disk size (None: the box's size).
    pub disk: Option<Size>,
    /// Accelerator.
    pub accel: Accel,
    /// Boot timeout.
    pub boot_timeout: Duration,
    /// Forwarded ports.
    pub ports: Vec<PortForward>,
    /// Login user (None: the box's).
    pub ssh_user: Option<String>,
    /// First-contact private key, absolute (None: the well-known key).
    pub ssh_private_key: Option<PathBuf>,
    /// Replace the first-contact key on first contact.
    pub ssh_insert_key: bool,
    /// Forward the user's SSH agent (`[ssh] forward_agent`).
    pub ssh_forward_agent: bool,
    /// SSH port inside the guest.
    pub ssh_guest_port: u16,
    /// Extra QEMU arguments.
    pub qemu_args: Vec<String>,
    /// Provisioners in run order: the defaults', then the machine's.
    pub provisioners: Vec<provisioners::Provisioner>,
    /// Address on the private network (None: assigned).
    pub ip: Option<std::net::Ipv4Addr>,
    /// Machines to wait for before provisioning.
    pub depends_on: Vec<String>,
    /// Shared folders.
    pub folders: Vec<folders::Folder>,
    /// Data disks.
    pub disks: Vec<disks::Disk>,
    /// Spec files or globs, relative to the Envfile (in order).
    pub specs: Vec<String>,
    /// Firmware asked for (otherwise the box's).
    pub firmware: Option<crate::boxes::metadata::Firmware>,
    /// What runs it: the local QEMU or a libvirt host.
    pub backend: super::libvirt::MachineBackend,
    /// The project's user-data for cloud-init boxes (absolute path).
    pub cloud_init_user_data: Option<PathBuf>,
    /// The guest's HTTP proxy, if it gets one.
    pub proxy: Option<super::proxy::ProxySetting>,
    /// Automatic port forwarding, when on.
    pub ports_auto: Option<super::ports_auto::AutoPorts>,
    /// Readiness probes (the defaults' and the machine's).
    pub ready: Vec<Probe>,
    /// How long to wait for them.
    pub ready_timeout: Duration,
    /// The key path of its own table (`machines.web`, `suites.web`, or
    /// `defaults` for the one default machine): where errors point.
    pub table: Vec<super::Step>,
    /// The matrix combination it is, when it is one.
    pub combination: Option<Combination>,
}

/// A parsed, validated Envfile.
#[derive(Debug, Clone)]
pub struct Envfile {
    /// The file it was read from.
    pub path: PathBuf,
    /// The project folder (the Envfile's folder).
    pub dir: PathBuf,
    /// Machines in file order.
    pub machines: Vec<Machine>,
    /// The private network's /24, when set.
    pub private_subnet: Option<std::net::Ipv4Addr>,
    /// Archived log runs kept per machine.
    pub logs_keep: usize,
    /// Guests' journals are streamed to the host (`[logs] forward`).
    pub logs_forward: bool,
    /// Hosts env does not manage, checked with specs.
    pub targets: Vec<super::targets::Target>,
    /// The provisioning cache's settings.
    pub cache: CacheSettings,
    /// Triggers, in file order.
    pub triggers: Vec<super::triggers::Trigger>,
}

impl Envfile {
    /// Finds a machine by name.
    pub fn machine(&self, name: &str) -> Option<&Machine> {
        self.machines.iter().find(|m| m.name == name)
    }

    /// Finds a target by name.
    pub fn target(&self, name: &str) -> Option<&super::targets::Target> {
        self.targets.iter().find(|t| t.name == name)
    }
}

/// One probe, as the Envfile declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A TCP port listening in the guest (any address).
    Port(u16),
    /// A command (run by `sh -c` as root) exiting 0.
    Command(String),
    /// An HTTP URL, fetched in the guest, answering this status.
    Http {
        /// The URL (`http://localhost/health`).
        url: String,
        /// The status expected.
        status: u16,
    },
}

impl Probe {
    /// How messages name it.
    pub fn describe(&self) -> String {
        match self {
            Probe::Port(p) => format!("port {p} listening"),
            Probe::Command(c) => format!("command `{c}` succeeding"),
            Probe::Http { url, status } => format!("{url} answering {status}"),
        }
    }
}
