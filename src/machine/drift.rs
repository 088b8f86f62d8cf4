//! Drift: what changed in the Envfile since a machine booted (settings a
//! running guest cannot take without `env reload`) or was provisioned
//! (its provisioners or what they read: `env provision`). `up` and
//! `provision` record what they used in the machine's state; `env status`
//! compares.

use crate::envfile::Machine;
use std::collections::BTreeMap;

/// The settings a running machine took at boot, by Envfile field, as text.
pub fn boot_settings(machine: &Machine) -> BTreeMap<String, String> {
    let mut s = BTreeMap::new();
    let mut put = |field: &str, value: String| {
        s.insert(field.to_string(), value);
    };
    put("cpus", machine.cpus.to_string());
    put("memory", machine.memory.to_string());
    put("disk", format!("{:?}", machine.disk.map(|d| d.to_string())));
    put("firmware", format!("{:?}", machine.firmware));
    put("ports", format!("{:?}", machine.ports));
    put("folders", format!("{:?}", machine.folders));
    put("disks", format!("{:?}", machine.disks));
    put("qemu_args", format!("{:?}", machine.qemu_args));
    put("ip", format!("{:?}", machine.ip));
    if let Some(proxy) = &machine.proxy {
        // Only when set: machines booted before env knew proxies show no drift.
        put("proxy", format!("{proxy:?}"));
    }
    put(
        "ssh",
        format!(
            "{} {:?}{}",
            machine.ssh_guest_port,
            machine.ssh_user,
            if machine.ssh_forward_agent {
                " forward_agent"
            } else {
                ""
            }
        ),
    );
    s
}

/// The fields whose value differs between what a machine booted with and
/// the Envfile now, in field order; nothing when nothing was recorded (a
/// machine booted by an older env).
pub fn changed(booted: &BTreeMap<String, String>, now: &BTreeMap<String, String>) -> Vec<String> {
    if booted.is_empty() {
        return Vec::new();
    }
    now.iter()
        .filter(|(field, value)| booted.get(*field) != Some(*value))
        .map(|(field, _)| field.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(text: &str) -> Machine {
        crate::envfile::read::parse(std::path::Path::new("/p/Envfile"), text)
            .unwrap()
            .machines
            .remove(0)
    }

    #[test]
    fn what_needs_a_reload_is_named_by_field() {
        let before = machine("[machines.web]\nbox = \"x\"\nmemory = \"1G\"\n");
        let after = machine(
            "[machines.web]\nbox = \"x\"\nmemory = \"2G\"\nports = [{ guest = 80, host = 8080 }]\n",
        );
        let booted = boot_settings(&before);
        assert_eq!(
            changed(&booted, &boot_settings(&before)),
            Vec::<String>::new()
        );
        assert_eq!(
            changed(&booted, &boot_settings(&after)),
            ["memory", "ports"]
        );
        // What a guest takes without a reload is no drift.
        let specs_only = machine(
            "[machines.web]\nbox = \"x\"\nmemory = \"1G\"\nspecs = [\"a.toml\"]\nready_timeout = \"5s\"\n",
        );
        assert!(changed(&booted, &boot_settings(&specs_only)).is_empty());
        assert!(
            changed(&BTreeMap::new(), &boot_settings(&after)).is_empty(),
            "nothing recorded"
        );
    }
}
