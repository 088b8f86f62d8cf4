//! Defaults merged into each machine, field by field, and each field
//! checked where it is written.

use super::error::{Step, error_at};
use super::model::*;
use super::{EnvfileError, disks, folders, provisioners};
use std::path::Path;

/// One machine of the Envfile: its own settings over `[defaults]`, each
/// field checked where it is written.
pub fn machine(
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
            crate::boxes::digest::Checksum::parse(text)
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
        && let Err(message) = crate::util::names::check_user_name(u)
    {
        return Err(fail("ssh", own.ssh.is_some(), message));
    }
    let cloud_init = own
        .cloud_init
        .clone()
        .or_else(|| defaults.cloud_init.clone());
    let cloud_init_user_data = match cloud_init.and_then(|c| c.user_data) {
        Some(path) => {
            let full = dir.join(&path);
            if !full.is_file() {
                return Err(fail(
                    "cloud_init",
                    own.cloud_init.is_some(),
                    format!("user_data: no file at {}", full.display()),
                ));
            }
            Some(full)
        }
        None => None,
    };
    let mut ready = Vec::new();
    for (origin, list) in [
        (vec![Step::Key("defaults".into())], &defaults.ready),
        (at.to_vec(), &own.ready),
    ] {
        for (i, raw) in list.iter().flatten().enumerate() {
            let mut path = origin.clone();
            path.push(Step::Key("ready".into()));
            path.push(Step::Index(i));
            let probe = probe_from(raw).map_err(|m| error_at(file, text, &path, m))?;
            if !ready.contains(&probe) {
                ready.push(probe);
            }
        }
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
        firmware: own.firmware.or(defaults.firmware),
        ready,
        ready_timeout: own
            .ready_timeout
            .or(defaults.ready_timeout)
            .map_or(DEFAULT_READY_TIMEOUT, |t| t.0),
        cloud_init_user_data,
        ip: own
            .ip
            .or(if at.first() == Some(&Step::Key("defaults".into())) {
                defaults.ip
            } else {
                None
            }),
    })
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
