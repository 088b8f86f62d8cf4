//! Checks across machines, after each machine's settings are resolved: host
//! ports claimed twice, the private network's addresses and subnet, and
//! `depends_on` naming machines that exist, without cycles.

use super::libvirt::MachineBackend;
use super::{DEFAULT_MACHINE, EnvfileError, Machine, Settings, Step, error_at};
use std::path::Path;

/// Where a machine's private NIC lands: this host, a libvirt host's
/// project network, or a libvirt network the Envfile names.
fn network_place(m: &Machine) -> String {
    match &m.backend {
        MachineBackend::Local => "this host".into(),
        MachineBackend::Libvirt(t) => match &t.network {
            Some(n) => format!("libvirt network `{n}`"),
            None => format!("libvirt host {}", t.uri),
        },
    }
}

/// Private addresses: `ip` only on machines, unique, inside the subnet;
/// the subnet only in `[defaults]`, a /24 written with its .0 address.
pub(super) fn check_private_network(
    file: &Path,
    text: &str,
    defaults: &Settings,
    machines: &[Machine],
) -> Result<(), EnvfileError> {
    let single = machines.len() == 1 && machines[0].name == DEFAULT_MACHINE;
    let at = |machine: Option<&Machine>, field: &str| -> Vec<Step> {
        let mut p = match machine {
            Some(m) => m.table.clone(),
            None => vec![Step::Key("defaults".into())],
        };
        p.push(Step::Key(field.into()));
        p
    };
    if defaults.ip.is_some() && !single {
        return Err(error_at(
            file,
            text,
            &at(None, "ip"),
            "`ip` belongs to a machine: set it in [machines.NAME]".into(),
        ));
    }
    if let Some(subnet) = defaults.private_subnet
        && subnet.octets()[3] != 0
    {
        return Err(error_at(
            file,
            text,
            &at(None, "private_subnet"),
            format!("{subnet} is not a /24 network address: write it as x.y.z.0"),
        ));
    }
    for (i, m) in machines.iter().enumerate() {
        let Some(ip) = m.ip else { continue };
        let field = at(Some(m), "ip");
        let last = ip.octets()[3];
        if last == 0 || last == 255 {
            return Err(error_at(
                file,
                text,
                &field,
                format!("{ip} is a network or broadcast address"),
            ));
        }
        if let Some(subnet) = defaults.private_subnet
            && ip.octets()[..3] != subnet.octets()[..3]
        {
            return Err(error_at(
                file,
                text,
                &field,
                format!("{ip} is outside the private subnet {subnet}/24"),
            ));
        }
        if let Some(other) = machines[..i].iter().find(|o| o.ip.is_some())
            && network_place(other) != network_place(m)
        {
            return Err(error_at(
                file,
                text,
                &field,
                format!(
                    "machine `{}` is on {} and `{}` on {}: machines on different hosts cannot \
                     share the private network (put them on one host, or have both join one \
                     libvirt network that spans the hosts with `libvirt.network`)",
                    other.name,
                    network_place(other),
                    m.name,
                    network_place(m)
                ),
            ));
        }
        if let Some(other) = machines[..i].iter().find(|o| o.ip == Some(ip)) {
            return Err(error_at(
                file,
                text,
                &field,
                format!("{ip} is already the address of machine `{}`", other.name),
            ));
        }
        if let Some(first) = machines[..i].iter().find_map(|o| o.ip)
            && first.octets()[..3] != ip.octets()[..3]
        {
            return Err(error_at(
                file,
                text,
                &field,
                format!("{ip} is not in the same /24 as {first}: the private network is one /24"),
            ));
        }
    }
    Ok(())
}

/// `depends_on` names other machines of the Envfile, without cycles.
pub(super) fn check_dependencies(
    file: &Path,
    text: &str,
    machines: &[Machine],
) -> Result<(), EnvfileError> {
    let at = |m: &Machine| {
        let mut p = m.table.clone();
        p.push(Step::Key("depends_on".into()));
        p
    };
    for m in machines {
        for dep in &m.depends_on {
            if dep == &m.name {
                return Err(error_at(
                    file,
                    text,
                    &at(m),
                    format!("machine `{dep}` cannot depend on itself"),
                ));
            }
            if !machines.iter().any(|o| &o.name == dep) {
                let names: Vec<&str> = machines.iter().map(|o| o.name.as_str()).collect();
                return Err(error_at(
                    file,
                    text,
                    &at(m),
                    format!("no machine `{dep}`: the machines are {}", names.join(", ")),
                ));
            }
        }
    }
    // A cycle: some machine reaches itself through depends_on.
    for m in machines {
        let mut seen: Vec<&str> = Vec::new();
        let mut todo: Vec<&str> = m.depends_on.iter().map(String::as_str).collect();
        while let Some(name) = todo.pop() {
            if name == m.name {
                return Err(error_at(
                    file,
                    text,
                    &at(m),
                    format!("`depends_on` makes a cycle through machine `{}`", m.name),
                ));
            }
            if !seen.contains(&name) {
                seen.push(name);
                if let Some(o) = machines.iter().find(|o| o.name == name) {
                    todo.extend(o.depends_on.iter().map(String::as_str));
                }
            }
        }
    }
    Ok(())
}

/// Two machines of one project cannot forward the same host port.
pub(super) fn check_host_ports(
    file: &Path,
    text: &str,
    machines: &[Machine],
) -> Result<(), EnvfileError> {
    for (mi, m) in machines.iter().enumerate() {
        for (pi, p) in m.ports.iter().enumerate() {
            // Two that may move to a free port both find one when started.
            let clash = machines[..mi].iter().find(|other| {
                other.ports.iter().any(|q| {
                    q.host == p.host
                        && q.protocol == p.protocol
                        && q.host_ip == p.host_ip
                        && !(q.auto_correct && p.auto_correct)
                })
            });
            if let Some(other) = clash {
                let mut path = m.table.clone();
                path.extend([
                    Step::Key("ports".into()),
                    Step::Index(pi),
                    Step::Key("host".into()),
                ]);
                return Err(error_at(
                    file,
                    text,
                    &path,
                    format!(
                        "host port {}/{} is already forwarded by machine `{}` (`auto_correct = true` on both lets the later one move)",
                        p.host, p.protocol, other.name
                    ),
                ));
            }
        }
    }
    Ok(())
}
