//! The Envfile: a project's machines, read from TOML.
//!
//! Parsing is pure: text in, a validated [`Envfile`] or an [`EnvfileError`]
//! that names the file, line, column and field out. Nothing on disk changes.

pub mod disks;
pub mod folders;
pub mod provisioners;
mod validate;

use crate::util::size::Size;
use indexmap::IndexMap;
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
                Ok(Timeout(Duration::from_secs(v as u64)))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timeout, E> {
                self.visit_i64(v.min(i64::MAX as u64) as i64)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timeout, E> {
                parse_duration(v).map(Timeout).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses `90`, `90s`, `5m`, `1h` into a duration of at least one second.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let seconds: u64 = number.parse().map_err(|_| {
        format!("`{text}` is not a duration: use seconds (120) or \"90s\", \"5m\", \"1h\"")
    })?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => {
            return Err(format!(
                "`{text}` is not a duration: use seconds (120) or \"90s\", \"5m\", \"1h\""
            ));
        }
    };
    if seconds == 0 {
        return Err("a duration must be at least 1 second".into());
    }
    Ok(Duration::from_secs(seconds * factor))
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
}

/// The Envfile as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvfile {
    #[serde(default)]
    defaults: Settings,
    #[serde(default)]
    machines: IndexMap<String, Settings>,
    #[serde(default)]
    logs: LogSettings,
}

/// The `[logs]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSettings {
    /// Archived runs kept per machine after `destroy`.
    keep: Option<usize>,
    /// Stream each guest's journal into its `journal.log` while it runs.
    forward: Option<bool>,
}

/// Default number of virtual CPUs.
pub const DEFAULT_CPUS: u32 = 2;
/// Default guest memory.
pub const DEFAULT_MEMORY: Size = Size::mib(1024);
/// Default boot timeout.
pub const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(180);
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
    pub checksum: Option<crate::boxes::fetch::Checksum>,
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
}

impl Envfile {
    /// Finds a machine by name.
    pub fn machine(&self, name: &str) -> Option<&Machine> {
        self.machines.iter().find(|m| m.name == name)
    }
}

/// An error in an Envfile, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvfileError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// Dotted path of the field (`machines.web.memory`), empty for syntax errors.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
    /// The offending source line, for display.
    pub source_line: String,
}

impl fmt::Display for EnvfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)?;
        if self.line > 0 && !self.source_line.is_empty() {
            let gutter = self.line.to_string().len();
            write!(
                f,
                "\n{:gutter$} |\n{} | {}\n{:gutter$} | {}^",
                "",
                self.line,
                self.source_line,
                "",
                " ".repeat(self.column.saturating_sub(1))
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for EnvfileError {}

/// 1-based line and column of a byte offset, and that line's text.
fn locate(text: &str, offset: usize) -> (usize, usize, String) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    let line_text = text[line_start..].lines().next().unwrap_or("").to_string();
    (line, column, line_text)
}

/// One step of a path into the TOML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// Renders a path as `machines.web.ports[1].host`.
fn render_path(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Byte span of the value (or key, when `key` is set) at `path`, as deep as
/// the document goes.
fn span_of(text: &str, path: &[Step], key: bool) -> Option<std::ops::Range<usize>> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut span = None;
    let mut current: Option<&toml::de::DeValue<'_>> = None;
    let mut table = Some(doc.get_ref());
    for (i, step) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        match step {
            Step::Key(k) => {
                let entry = table?.iter().find(|(name, _)| name.get_ref() == k)?;
                span = Some(if key && last {
                    entry.0.span()
                } else {
                    entry.1.span()
                });
                current = Some(entry.1.get_ref());
            }
            Step::Index(n) => {
                let item = current?.as_array()?.get(*n)?;
                span = Some(item.span());
                current = Some(item.get_ref());
            }
        }
        table = current.and_then(|v| v.as_table());
    }
    span
}

/// The error for field `field` of the `index`-th entry of the list at `list`
/// (`machines.web.disks[1].name`): what list validators report.
fn entry_field_error(
    file: &Path,
    text: &str,
    list: &[Step],
    index: usize,
    field: &str,
    message: String,
) -> EnvfileError {
    let mut path = list.to_vec();
    path.push(Step::Index(index));
    path.push(Step::Key(field.into()));
    error_at(file, text, &path, message)
}

/// Builds a located error for `path` in `text`.
pub(crate) fn error_at(file: &Path, text: &str, path: &[Step], message: String) -> EnvfileError {
    let span = (1..=path.len())
        .rev()
        .find_map(|n| span_of(text, &path[..n], false));
    let (line, column, source_line) = match span {
        Some(s) => locate(text, s.start),
        None => (0, 0, String::new()),
    };
    EnvfileError {
        file: file.to_path_buf(),
        line,
        column,
        field: render_path(path),
        message,
        source_line,
    }
}

/// The candidate close enough to `word` to be what was meant (a typo).
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c)
}

/// Adds "did you mean" to serde's "unknown field `x`, expected one of `a`, `b`".
fn with_suggestion(message: &str) -> String {
    let words: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let (Some(unknown), candidates) = (words.first(), words.get(1..).unwrap_or(&[])) else {
        return message.to_string();
    };
    match closest(unknown, candidates) {
        Some(c) if message.starts_with("unknown") => {
            format!("{message} (did you mean `{c}`?)")
        }
        _ => message.to_string(),
    }
}

/// Reads and validates the Envfile at `path`.
pub fn load(path: &Path) -> anyhow::Result<Envfile> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(parse(path, &text)?)
}

/// Parses and validates Envfile text; `path` is used for messages and to
/// resolve relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Envfile, EnvfileError> {
    let raw = deserialize(path, text)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut machines = Vec::new();
    if raw.logs.keep == Some(0) {
        let at = [Step::Key("logs".into()), Step::Key("keep".into())];
        return Err(error_at(
            path,
            text,
            &at,
            "keep at least 1 run of logs".into(),
        ));
    }
    // Fields that mean something in one place only.
    if raw.defaults.depends_on.is_some() {
        let at = [Step::Key("defaults".into()), Step::Key("depends_on".into())];
        return Err(error_at(
            path,
            text,
            &at,
            "`depends_on` belongs to a machine: set it in [machines.NAME]".into(),
        ));
    }
    if let Some((name, _)) = raw
        .machines
        .iter()
        .find(|(_, m)| m.private_subnet.is_some())
    {
        let at = [
            Step::Key("machines".into()),
            Step::Key(name.clone()),
            Step::Key("private_subnet".into()),
        ];
        return Err(error_at(
            path,
            text,
            &at,
            "`private_subnet` is project-wide: set it in [defaults]".into(),
        ));
    }
    let named: Vec<(String, Settings, Vec<Step>)> = if raw.machines.is_empty() {
        vec![(
            DEFAULT_MACHINE.to_string(),
            Settings::default(),
            vec![Step::Key("defaults".into())],
        )]
    } else {
        raw.machines
            .into_iter()
            .map(|(name, s)| {
                let at = vec![Step::Key("machines".into()), Step::Key(name.clone())];
                (name, s, at)
            })
            .collect()
    };
    for (name, own, at) in named {
        if !valid_machine_name(&name) {
            let mut key_path = at.clone();
            key_path.truncate(2);
            return Err(error_at(
                path,
                text,
                &key_path,
                format!(
                    "`{name}` is not a valid machine name: use letters, digits, `-` and `_`, starting with a letter (it becomes a host name)"
                ),
            ));
        }
        machines.push(resolve(path, text, &dir, name, &raw.defaults, own, &at)?);
    }
    validate::check_host_ports(path, text, &machines)?;
    validate::check_private_network(path, text, &raw.defaults, &machines)?;
    validate::check_dependencies(path, text, &machines)?;
    Ok(Envfile {
        path: path.to_path_buf(),
        dir,
        machines,
        private_subnet: raw.defaults.private_subnet,
        logs_keep: raw.logs.keep.unwrap_or(crate::ops::logs::DEFAULT_KEEP),
        logs_forward: raw.logs.forward.unwrap_or(false),
    })
}

fn deserialize(path: &Path, text: &str) -> Result<RawEnvfile, EnvfileError> {
    deserialize_toml(path, text)
}

/// Deserializes TOML text into `T`; errors name the file, line, column and
/// field (what every TOML file env reads reports).
pub(crate) fn deserialize_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, EnvfileError> {
    let de = toml::de::Deserializer::parse(text)
        .map_err(|e| toml_error(path, text, &e, String::new()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        toml_error(path, text, e.inner(), field)
    })
}

fn toml_error(path: &Path, text: &str, e: &toml::de::Error, field: String) -> EnvfileError {
    let (line, column, source_line) = match e.span() {
        Some(s) => locate(text, s.start),
        None => (0, 0, String::new()),
    };
    EnvfileError {
        file: path.to_path_buf(),
        line,
        column,
        field,
        message: with_suggestion(e.message().trim()),
        source_line,
    }
}

/// Machine names become host names and folder names.
fn valid_machine_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn resolve(
    file: &Path,
    text: &str,
    dir: &Path,
    name: String,
    defaults: &Settings,
    own: Settings,
    at: &[Step],
) -> Result<Machine, EnvfileError> {
    // Where a field is written: the machine's table when it sets it, else the defaults.
    let field_path = |field: &str, own_has: bool| -> Vec<Step> {
        let mut p = if own_has {
            at.to_vec()
        } else {
            vec![Step::Key("defaults".into())]
        };
        p.push(Step::Key(field.into()));
        p
    };
    let fail = |field: &str, own_has: bool, message: String| {
        error_at(file, text, &field_path(field, own_has), message)
    };

    let box_name = own
        .box_name
        .clone()
        .or_else(|| defaults.box_name.clone())
        .ok_or_else(|| {
            error_at(
                file,
                text,
                at,
                format!(
                    "machine `{name}` has no box: set `box = \"debian-12\"` in it or in [defaults]"
                ),
            )
        })?;
    if box_name.trim().is_empty() {
        return Err(fail(
            "box",
            own.box_name.is_some(),
            "the box name is empty".into(),
        ));
    }
    let checksum = match own.box_checksum.as_ref().or(defaults.box_checksum.as_ref()) {
        Some(text) => Some(
            crate::boxes::fetch::Checksum::parse(text)
                .map_err(|e| fail("box_checksum", own.box_checksum.is_some(), format!("{e:#}")))?,
        ),
        None => None,
    };
    let cpus = own.cpus.or(defaults.cpus).unwrap_or(DEFAULT_CPUS);
    if !(1..=MAX_CPUS).contains(&cpus) {
        return Err(fail(
            "cpus",
            own.cpus.is_some(),
            format!("{cpus} CPUs: use 1 to {MAX_CPUS}"),
        ));
    }
    let memory = own.memory.or(defaults.memory).unwrap_or(DEFAULT_MEMORY);
    if memory < MIN_MEMORY {
        return Err(fail(
            "memory",
            own.memory.is_some(),
            format!("{memory} is too little memory: use at least {MIN_MEMORY}"),
        ));
    }
    let ports = own
        .ports
        .clone()
        .or_else(|| defaults.ports.clone())
        .unwrap_or_default();
    for (i, p) in ports.iter().enumerate() {
        let mut at_port = field_path("ports", own.ports.is_some());
        at_port.push(Step::Index(i));
        if p.guest == 0 || p.host == 0 {
            at_port.push(Step::Key(
                if p.guest == 0 { "guest" } else { "host" }.into(),
            ));
            return Err(error_at(
                file,
                text,
                &at_port,
                "port 0 is not a port: use 1 to 65535".into(),
            ));
        }
        if let Some(j) = ports[..i]
            .iter()
            .position(|q| q.host == p.host && q.protocol == p.protocol && q.host_ip == p.host_ip)
        {
            at_port.push(Step::Key("host".into()));
            return Err(error_at(
                file,
                text,
                &at_port,
                format!(
                    "host port {}/{} is already forwarded by ports[{j}]",
                    p.host, p.protocol
                ),
            ));
        }
    }
    let ssh = own.ssh.clone().unwrap_or_default();
    let dssh = defaults.ssh.clone().unwrap_or_default();
    let ssh_guest_port = ssh.guest_port.or(dssh.guest_port).unwrap_or(22);
    if ssh_guest_port == 0 {
        return Err(fail(
            "ssh",
            own.ssh.is_some(),
            "ssh.guest_port 0 is not a port: use 1 to 65535".into(),
        ));
    }
    let user = ssh.user.or(dssh.user);
    if let Some(u) = &user
        && (u.is_empty() || u.contains(|c: char| c.is_whitespace() || c == '@'))
    {
        return Err(fail(
            "ssh",
            own.ssh.is_some(),
            format!("`{u}` is not a user name"),
        ));
    }
    let mut specs = Vec::new();
    for (origin, list) in [
        (vec![Step::Key("defaults".into())], &defaults.specs),
        (at.to_vec(), &own.specs),
    ] {
        for (i, pattern) in list.iter().flatten().enumerate() {
            if pattern.trim().is_empty() {
                let mut path = origin.clone();
                path.push(Step::Key("specs".into()));
                path.push(Step::Index(i));
                return Err(error_at(
                    file,
                    text,
                    &path,
                    "an empty spec path: name a file or a glob like \"specs/*.toml\"".into(),
                ));
            }
            if !specs.contains(pattern) {
                specs.push(pattern.clone());
            }
        }
    }
    let mut machine_disks = disks::resolve(
        file,
        text,
        defaults.disks.as_deref().unwrap_or_default(),
        &[Step::Key("defaults".into()), Step::Key("disks".into())],
        &[],
    )?;
    if at.first() == Some(&Step::Key("machines".into())) {
        let mut own_disks_at = at.to_vec();
        own_disks_at.push(Step::Key("disks".into()));
        let own_disks = disks::resolve(
            file,
            text,
            own.disks.as_deref().unwrap_or_default(),
            &own_disks_at,
            &machine_disks,
        )?;
        machine_disks.extend(own_disks);
    }
    let mut machine_folders = folders::resolve(
        file,
        text,
        dir,
        defaults.folders.as_deref().unwrap_or_default(),
        &[Step::Key("defaults".into()), Step::Key("folders".into())],
    )?;
    if at.first() == Some(&Step::Key("machines".into())) {
        let mut own_folders_at = at.to_vec();
        own_folders_at.push(Step::Key("folders".into()));
        for f in folders::resolve(
            file,
            text,
            dir,
            own.folders.as_deref().unwrap_or_default(),
            &own_folders_at,
        )? {
            if machine_folders.iter().any(|d| d.guest == f.guest) {
                own_folders_at.push(Step::Key("guest".into()));
                return Err(error_at(
                    file,
                    text,
                    &own_folders_at,
                    format!("`{}` is a folder of [defaults] already", f.guest),
                ));
            }
            machine_folders.push(f);
        }
    }
    let defaults_provisioners = provisioners::resolve(
        file,
        text,
        dir,
        defaults.provision.as_deref().unwrap_or_default(),
        &[Step::Key("defaults".into()), Step::Key("provision".into())],
        0,
    )?;
    let mut own_at = at.to_vec();
    own_at.push(Step::Key("provision".into()));
    let mut provisioners = defaults_provisioners.clone();
    if at.first() == Some(&Step::Key("machines".into())) {
        provisioners.extend(provisioners::resolve(
            file,
            text,
            dir,
            own.provision.as_deref().unwrap_or_default(),
            &own_at,
            defaults_provisioners.len(),
        )?);
    }
    Ok(Machine {
        name,
        boxref: BoxRef {
            name: box_name,
            version: own.box_version.or_else(|| defaults.box_version.clone()),
            url: own.box_url.or_else(|| defaults.box_url.clone()),
            checksum,
        },
        cpus,
        memory,
        disk: own.disk.or(defaults.disk),
        accel: own.accel.or(defaults.accel).unwrap_or(Accel::Auto),
        boot_timeout: own
            .boot_timeout
            .or(defaults.boot_timeout)
            .map_or(DEFAULT_BOOT_TIMEOUT, |t| t.0),
        ports,
        ssh_user: user,
        ssh_private_key: ssh.private_key.or(dssh.private_key).map(|k| dir.join(k)),
        ssh_insert_key: ssh.insert_key.or(dssh.insert_key).unwrap_or(true),
        ssh_guest_port,
        qemu_args: own
            .qemu_args
            .or_else(|| defaults.qemu_args.clone())
            .unwrap_or_default(),
        provisioners,
        depends_on: own.depends_on.clone().unwrap_or_default(),
        folders: machine_folders,
        disks: machine_disks,
        specs,
        ip: own
            .ip
            .or(if at.first() == Some(&Step::Key("defaults".into())) {
                defaults.ip
            } else {
                None
            }),
    })
}

/// Finds the Envfile: `explicit` when given, else the nearest `Envfile`
/// walking up from `start` (like Vagrantfile).
pub fn find(explicit: Option<&Path>, start: &Path) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        anyhow::ensure!(path.is_file(), "no Envfile at {}", path.display());
        return Ok(std::path::absolute(path)?);
    }
    let mut dir = Some(start);
    while let Some(d) = dir {
        let candidate = d.join(ENVFILE_NAME);
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    anyhow::bail!(
        "no {ENVFILE_NAME} in {} or any folder above it: write one with `env init BOX`, or pass --envfile FILE",
        start.display()
    )
}

#[cfg(test)]
mod tests;
