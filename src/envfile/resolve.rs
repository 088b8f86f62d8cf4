//! Defaults merged into each machine, field by field, and each field
//! checked where it is written.

use super::error::{Step, error_at};
use super::model::*;
use super::{EnvfileError, disks, folders, provisioners};
use std::path::Path;

/// One table a machine's settings come from, and where it is written:
/// `[defaults]`, then a matrix platform, then the machine's (or suite's)
/// own table.
pub struct Layer<'a> {
    /// Its settings.
    pub settings: &'a Settings,
    /// Its key path (`defaults`, `machines.web`, `platforms.debian-12`).
    pub at: Vec<Step>,
}

impl Layer<'_> {
    /// The key path of `field` in this table.
    fn field(&self, field: &str) -> Vec<Step> {
        let mut p = self.at.clone();
        p.push(Step::Key(field.into()));
        p
    }

    fn is_defaults(&self) -> bool {
        self.at == [Step::Key("defaults".into())]
    }
}

/// The value of a field from the last layer that sets it, with that layer.
fn last<'l, 's, T>(
    layers: &'l [Layer<'s>],
    get: impl Fn(&'s Settings) -> Option<&'s T>,
) -> Option<(&'s T, &'l Layer<'s>)> {
    layers
        .iter()
        .rev()
        .find_map(|l| get(l.settings).map(|v| (v, l)))
}

/// One machine of the Envfile: `layers` merged in order (a later table's
/// field replaces an earlier one's; provisioners, folders, disks, specs and
/// probes add up), each field checked where it is written.
pub fn machine(
    file: &Path,
    text: &str,
    dir: &Path,
    name: String,
    layers: &[Layer],
) -> Result<Machine, EnvfileError> {
    let fail = |layer: &Layer, field: &str, message: String| {
        error_at(file, text, &layer.field(field), message)
    };
    let own_at = &layers.last().expect("a machine has a table").at;

    let (box_name, box_layer) = last(layers, |s| s.box_name.as_ref()).ok_or_else(|| {
        error_at(
            file,
            text,
            own_at,
            format!(
                "machine `{name}` has no box: set `box = \"debian-12\"` in it or in [defaults]"
            ),
        )
    })?;
    if box_name.trim().is_empty() {
        return Err(fail(box_layer, "box", "the box name is empty".into()));
    }
    let checksum = match last(layers, |s| s.box_checksum.as_ref()) {
        Some((text_value, layer)) => Some(
            crate::boxes::digest::Checksum::parse(text_value)
                .map_err(|e| fail(layer, "box_checksum", format!("{e:#}")))?,
        ),
        None => None,
    };
    if let Some((server, layer)) = last(layers, |s| s.box_server.as_ref())
        && !(server.starts_with("http://") || server.starts_with("https://"))
    {
        return Err(fail(
            layer,
            "box_server",
            format!("`{server}` is no http(s) URL of a Vagrant box registry"),
        ));
    }
    let cpus = match last(layers, |s| s.cpus.as_ref()) {
        Some((&cpus, layer)) if !(1..=MAX_CPUS).contains(&cpus) => {
            return Err(fail(
                layer,
                "cpus",
                format!("{cpus} CPUs: use 1 to {MAX_CPUS}"),
            ));
        }
        Some((&cpus, _)) => cpus,
        None => DEFAULT_CPUS,
    };
    let memory = match last(layers, |s| s.memory.as_ref()) {
        Some((&memory, layer)) if memory < MIN_MEMORY => {
            return Err(fail(
                layer,
                "memory",
                format!("{memory} is too little memory: use at least {MIN_MEMORY}"),
            ));
        }
        Some((&memory, _)) => memory,
        None => DEFAULT_MEMORY,
    };
    let ports = match last(layers, |s| s.ports.as_ref()) {
        Some((ports, layer)) => {
            check_ports(file, text, ports, layer)?;
            ports.clone()
        }
        None => Vec::new(),
    };
    // SSH settings merge field by field.
    let ssh_field = |get: fn(&SshSettings) -> bool| {
        layers
            .iter()
            .rev()
            .find(|l| l.settings.ssh.as_ref().is_some_and(get))
            .and_then(|l| l.settings.ssh.as_ref().map(|s| (s, l)))
    };
    let ssh_guest_port = match ssh_field(|s| s.guest_port.is_some()) {
        Some((s, layer)) if s.guest_port == Some(0) => {
            return Err(fail(
                layer,
                "ssh",
                "ssh.guest_port 0 is not a port: use 1 to 65535".into(),
            ));
        }
        Some((s, _)) => s.guest_port.unwrap_or(22),
        None => 22,
    };
    let user = match ssh_field(|s| s.user.is_some()) {
        Some((s, layer)) => {
            let u = s.user.clone().unwrap_or_default();
            crate::util::names::check_user_name(&u).map_err(|m| fail(layer, "ssh", m))?;
            Some(u)
        }
        None => None,
    };
    let private_key = ssh_field(|s| s.private_key.is_some())
        .and_then(|(s, _)| s.private_key.as_ref())
        .map(|k| dir.join(k));
    let insert_key = ssh_field(|s| s.insert_key.is_some())
        .and_then(|(s, _)| s.insert_key)
        .unwrap_or(true);
    let forward_agent = ssh_field(|s| s.forward_agent.is_some())
        .and_then(|(s, _)| s.forward_agent)
        .unwrap_or(false);
    let cloud_init_user_data = match last(layers, |s| s.cloud_init.as_ref()) {
        Some((settings, layer)) => match &settings.user_data {
            Some(path) => {
                let full = dir.join(path);
                if !full.is_file() {
                    return Err(fail(
                        layer,
                        "cloud_init",
                        format!("user_data: no file at {}", full.display()),
                    ));
                }
                Some(full)
            }
            None => None,
        },
        None => None,
    };
    let backend = {
        let kind = last(layers, |s| s.backend.as_ref());
        let mut raw = last(layers, |s| s.libvirt.as_ref());
        // `[defaults]` may name a libvirt host that one machine opts out of
        // with `backend = "qemu"`; only a machine's own table is an error.
        let qemu = kind.is_none_or(|(k, _)| *k == super::libvirt::BackendKind::Qemu);
        if qemu && raw.is_some_and(|(_, l)| l.is_defaults()) {
            raw = None;
        }
        super::libvirt::resolve(kind.map(|(k, _)| *k), raw.map(|(r, _)| r)).map_err(
            |(field, message)| {
                // The table that wrote the field at fault (else the backend's).
                let layer = raw
                    .map(|(_, l)| l)
                    .filter(|_| field != "backend")
                    .or(kind.map(|(_, l)| l))
                    .or(layers.last())
                    .expect("a machine has a table");
                let mut at = layer.at.clone();
                at.extend(field.split('.').map(|k| Step::Key(k.into())));
                error_at(file, text, &at, message)
            },
        )?
    };
    let proxy = match last(layers, |s| s.proxy.as_ref()) {
        Some((raw, layer)) => {
            Some(super::proxy::resolve(raw).map_err(|m| fail(layer, "proxy", m))?)
        }
        None => None,
    };
    let ports_auto = match last(layers, |s| s.ports_auto.as_ref()) {
        Some((raw, layer)) => {
            super::ports_auto::resolve(raw).map_err(|m| fail(layer, "ports_auto", m))?
        }
        None => None,
    };
    let mut ready = Vec::new();
    for layer in layers {
        for (i, raw) in layer.settings.ready.iter().flatten().enumerate() {
            let mut path = layer.field("ready");
            path.push(Step::Index(i));
            let probe = probe_from(raw).map_err(|m| error_at(file, text, &path, m))?;
            if !ready.contains(&probe) {
                ready.push(probe);
            }
        }
    }
    let mut specs = Vec::new();
    for layer in layers {
        for (i, pattern) in layer.settings.specs.iter().flatten().enumerate() {
            if pattern.trim().is_empty() {
                let mut path = layer.field("specs");
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
    let mut machine_disks = Vec::new();
    for layer in layers {
        let own = disks::resolve(
            file,
            text,
            layer.settings.disks.as_deref().unwrap_or_default(),
            &layer.field("disks"),
            &machine_disks,
        )?;
        machine_disks.extend(own);
    }
    let mut machine_folders: Vec<folders::Folder> = Vec::new();
    for layer in layers {
        let at = layer.field("folders");
        let own = folders::resolve(
            file,
            text,
            dir,
            layer.settings.folders.as_deref().unwrap_or_default(),
            &at,
        )?;
        for (i, f) in own.into_iter().enumerate() {
            if machine_folders.iter().any(|d| d.guest == f.guest) {
                let mut path = at.clone();
                path.extend([Step::Index(i), Step::Key("guest".into())]);
                return Err(error_at(
                    file,
                    text,
                    &path,
                    format!("`{}` is shared by an earlier table already", f.guest),
                ));
            }
            machine_folders.push(f);
        }
    }
    let mut machine_provisioners = Vec::new();
    for layer in layers {
        let own = provisioners::resolve(
            file,
            text,
            dir,
            layer.settings.provision.as_deref().unwrap_or_default(),
            &layer.field("provision"),
            machine_provisioners.len(),
        )?;
        machine_provisioners.extend(own);
    }
    // `[defaults]` cannot give every machine one address; alone (the one
    // default machine) it is the machine's own table.
    let ip = match layers {
        [only] => only.settings.ip,
        _ => layers
            .iter()
            .rev()
            .filter(|l| !l.is_defaults())
            .find_map(|l| l.settings.ip),
    };
    let scalar = |get: fn(&Settings) -> Option<&String>| last(layers, get).map(|(v, _)| v.clone());
    Ok(Machine {
        name,
        boxref: BoxRef {
            name: box_name.clone(),
            version: scalar(|s| s.box_version.as_ref()),
            url: scalar(|s| s.box_url.as_ref()),
            checksum,
            server: scalar(|s| s.box_server.as_ref()),
        },
        cpus,
        memory,
        disk: last(layers, |s| s.disk.as_ref()).map(|(d, _)| *d),
        accel: last(layers, |s| s.accel.as_ref()).map_or(Accel::Auto, |(a, _)| *a),
        boot_timeout: last(layers, |s| s.boot_timeout.as_ref())
            .map_or(DEFAULT_BOOT_TIMEOUT, |(t, _)| t.0),
        ports,
        ssh_user: user,
        ssh_private_key: private_key,
        ssh_insert_key: insert_key,
        ssh_forward_agent: forward_agent,
        ssh_guest_port,
        qemu_args: last(layers, |s| s.qemu_args.as_ref())
            .map(|(a, _)| a.clone())
            .unwrap_or_default(),
        provisioners: machine_provisioners,
        depends_on: last(layers, |s| s.depends_on.as_ref())
            .map(|(d, _)| d.clone())
            .unwrap_or_default(),
        folders: machine_folders,
        disks: machine_disks,
        specs,
        firmware: last(layers, |s| s.firmware.as_ref()).map(|(f, _)| *f),
        backend,
        ready,
        ready_timeout: last(layers, |s| s.ready_timeout.as_ref())
            .map_or(DEFAULT_READY_TIMEOUT, |(t, _)| t.0),
        cloud_init_user_data,
        proxy,
        ports_auto,
        ip,
        table: own_at.clone(),
        combination: None,
    })
}

/// Checks one table's forwarded ports: no port 0, no host port twice.
fn check_ports(
    file: &Path,
    text: &str,
    ports: &[PortForward],
    layer: &Layer,
) -> Result<(), EnvfileError> {
    for (i, p) in ports.iter().enumerate() {
        let mut at_port = layer.field("ports");
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
    Ok(())
}

/// A probe from what the Envfile wrote: exactly one of `port`, `command`,
/// `http` (with `status` only beside `http`).
fn probe_from(raw: &RawProbe) -> Result<Probe, String> {
    let given = [
        raw.port.is_some(),
        raw.command.is_some(),
        raw.http.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(
            "a probe is one of `port = 80`, `command = \"...\"` or `http = \"http://localhost/\"`"
                .into(),
        );
    }
    if raw.status.is_some() && raw.http.is_none() {
        return Err("`status` goes with `http`".into());
    }
    match (raw.port, &raw.command, &raw.http) {
        (Some(0), _, _) => Err("port 0 is not a port: use 1 to 65535".into()),
        (Some(port), _, _) => Ok(Probe::Port(port)),
        (_, Some(command), _) if command.trim().is_empty() => Err("the command is empty".into()),
        (_, Some(command), _) => Ok(Probe::Command(command.clone())),
        (_, _, Some(url)) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("`{url}` is no http(s) URL"));
            }
            let status = raw.status.unwrap_or(200);
            if !(100..=599).contains(&status) {
                return Err(format!("status {status} is no HTTP status"));
            }
            Ok(Probe::Http {
                url: url.clone(),
                status,
            })
        }
        _ => Err("a probe needs `port`, `command` or `http`".into()),
    }
}
