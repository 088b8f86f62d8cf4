//! Checks: a resource type and name, and what is expected of its
//! attributes. Reading them from spec files is `parse`'s; what each type
//! knows is in `resource/`.

use super::matchers::{NumberMatch, Pattern};
use crate::util::version::Constraint;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Resource types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A package of the guest's package manager (dpkg, rpm).
    Package,
    /// A systemd service.
    Service,
    /// A listening port: `tcp:80`, `udp:53`, `80` (tcp).
    Port,
    /// A file, folder or link.
    File,
    /// A command's exit status and output.
    Command,
    /// A user account.
    User,
    /// A group.
    Group,
    /// Running processes by name.
    Process,
    /// A kernel parameter (`net.ipv4.ip_forward`).
    KernelParam,
    /// A kernel module.
    KernelModule,
    /// A mount point.
    Mount,
    /// An HTTP(S) URL fetched from inside the guest.
    Http,
    /// A host name resolved in the guest.
    Dns,
    /// A TCP address reached from the guest: `tcp://host:port`.
    Addr,
    /// A network interface.
    Interface,
    /// A Docker (or Podman) container.
    DockerContainer,
    /// A Docker (or Podman) image.
    DockerImage,
}

impl Kind {
    /// The table name in spec files (`kernel_param`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Package => "package",
            Kind::Service => "service",
            Kind::Port => "port",
            Kind::File => "file",
            Kind::Command => "command",
            Kind::User => "user",
            Kind::Group => "group",
            Kind::Process => "process",
            Kind::KernelParam => "kernel_param",
            Kind::KernelModule => "kernel_module",
            Kind::Mount => "mount",
            Kind::Http => "http",
            Kind::Dns => "dns",
            Kind::Addr => "addr",
            Kind::Interface => "interface",
            Kind::DockerContainer => "docker_container",
            Kind::DockerImage => "docker_image",
        }
    }

    /// The kind of a table name.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// All table names, for messages.
    pub fn names() -> Vec<&'static str> {
        Kind::ALL.iter().map(|k| k.name()).collect()
    }

    /// Every kind, in the order messages list them.
    pub const ALL: &'static [Kind] = &[
        Kind::Package,
        Kind::Service,
        Kind::Port,
        Kind::File,
        Kind::Command,
        Kind::User,
        Kind::Group,
        Kind::Process,
        Kind::KernelParam,
        Kind::KernelModule,
        Kind::Mount,
        Kind::Http,
        Kind::Dns,
        Kind::Addr,
        Kind::Interface,
        Kind::DockerContainer,
        Kind::DockerImage,
    ];
}

/// One expectation on one attribute.
#[derive(Debug, Clone)]
pub enum Expect {
    /// `installed = true`, `running = false`...
    Bool(bool),
    /// `uid = 33`, `size = "> 100"`.
    Number(NumberMatch),
    /// `version = ">= 1.2, < 2"`.
    Version(Constraint),
    /// `owner = "root"`, `shell = "/bin/.*sh/"`, `mode = "0644"`.
    Exact(Pattern),
    /// `contains = ["a", "/re/", "!b"]`: each must hold.
    Patterns(Vec<Pattern>),
    /// `groups = ["sudo"]`: each must be among what is found.
    Includes(Vec<String>),
}

/// One check: a resource and what is expected of it.
#[derive(Debug, Clone)]
pub struct Check {
    /// Resource type.
    pub kind: Kind,
    /// Resource name (path, package, `tcp:80`...).
    pub name: String,
    /// Title shown instead of `kind name`.
    pub title: Option<String>,
    /// Skipped (reported, not run).
    pub skip: bool,
    /// Extra attempts when it fails (slow services).
    pub retries: u32,
    /// Wait between attempts.
    pub retry_delay: Duration,
    /// Time limit of what it runs (command, http, dns, addr), when the spec
    /// sets one (a command then runs under `timeout`, which costs a process;
    /// otherwise the whole run's limit bounds it). See [`Check::time_limit`].
    pub timeout: Option<Duration>,
    /// Attribute expectations, in file order.
    pub expect: Vec<(String, Expect)>,
    /// The spec file it comes from.
    pub file: PathBuf,
}

impl Check {
    /// A check of `kind` `name` from `file`, with the defaults and no
    /// expectations yet.
    pub fn new(kind: Kind, name: &str, file: &Path) -> Check {
        Check {
            kind,
            name: name.to_string(),
            title: None,
            skip: false,
            retries: 0,
            retry_delay: Duration::from_secs(1),
            timeout: None,
            expect: Vec::new(),
            file: file.to_path_buf(),
        }
    }

    /// The time limit of what it runs: its own, else the default.
    pub fn time_limit(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    /// `file /etc/motd`, or the title.
    pub fn label(&self) -> String {
        self.title
            .clone()
            .unwrap_or_else(|| format!("{} {}", self.kind.name(), self.name))
    }
}

/// The checks of one spec file.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Its checks, in file order.
    pub checks: Vec<Check>,
}

/// Default time limit of commands, HTTP requests and lookups.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
