//! `[service.NAME]`: a systemd service, an OpenRC one (Alpine, Gentoo,
//! Debian with OpenRC: `rc-service` and `rc-update`), or a SysV one through
//! `service`. One `systemctl show` answers every systemd service check of a
//! run; OpenRC's answers come in the same `KEY=value` form.

use super::common::{AttrType, Resource};
use crate::spec::check::Check;
use crate::spec::facts::{Facts, Fields, Found, Observed, get, put};
use crate::util::shell::shell_quote;

/// Services.
pub struct Service;

impl Resource for Service {
    fn attributes(&self) -> &'static [(&'static str, AttrType)] {
        &[("enabled", AttrType::Bool), ("running", AttrType::Bool)]
    }

    fn recorded(&self) -> &'static [&'static str] {
        &["enabled", "running"]
    }

    fn shared_script(&self, checks: &[&Check]) -> String {
        let units: Vec<String> = checks.iter().map(|c| shell_quote(&c.name)).collect();
        // One systemctl for every service: its blocks come in this order.
        format!(
            "has systemctl && val _ services \"$(systemctl show -p LoadState -p UnitFileState -p ActiveState -- {} 2>&1)\"\n",
            units.join(" ")
        )
    }

    fn gather(&self, id: usize, check: &Check) -> String {
        let n = shell_quote(&check.name);
        format!(
            "if has systemctl; then val {id} seen 1\n\
             elif has rc-service; then\n\
             if rc-service -e {n} >/dev/null 2>&1; then l=loaded; else l=not-found; fi\n\
             if rc-service {n} status >/dev/null 2>&1; then a=active; else a=inactive; fi\n\
             if rc-update show -a 2>/dev/null | awk -v s={n} '$1 == s && NF > 2 {{ f = 1 }} END {{ exit !f }}'; then u=enabled; else u=disabled; fi\n\
             val {id} show \"LoadState=$l\nUnitFileState=$u\nActiveState=$a\"\n\
             elif has service; then\n\
             if service {n} status >/dev/null 2>&1; then val {id} show ActiveState=active; else val {id} show ActiveState=inactive; fi\n\
             else val {id} error 'no systemctl, rc-service or service in the guest'; fi\n"
        )
    }

    fn distribute(&self, _: &Check, nth: usize, facts: &Facts, own: &mut Fields) {
        let show = own
            .get("show")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .or_else(|| {
                facts
                    .shared_text("services")
                    .split("\n\n")
                    .nth(nth)
                    .map(String::from)
            })
            .unwrap_or_default();
        let field = |k: &str| {
            show.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .unwrap_or("")
                .to_string()
        };
        let (unit_file, active, load) = (
            field("UnitFileState"),
            field("ActiveState"),
            field("LoadState"),
        );
        if !unit_file.is_empty() || load == "not-found" {
            // What `systemctl is-enabled` calls enabled.
            let enabled = matches!(
                unit_file.as_str(),
                "enabled" | "enabled-runtime" | "static" | "alias" | "indirect" | "generated"
            );
            put(own, "enabled_rc", if enabled { "0" } else { "1" }.into());
            put(
                own,
                "enabled",
                if load == "not-found" {
                    "not-found".into()
                } else {
                    unit_file
                },
            );
        }
        put(own, "active", active);
    }

    fn observe(&self, _: &Check, f: &Fields, _: &Facts) -> Observed {
        let enabled = get(f, "enabled").unwrap_or_default();
        let active = get(f, "active").unwrap_or_default();
        Observed::from([
            (
                "enabled",
                match get(f, "enabled_rc") {
                    Some(rc) => Found::Bool(rc == "0"),
                    None => Found::Absent(format!("unknown ({enabled})")),
                },
            ),
            ("running", Found::Bool(active.trim() == "active")),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the gathering of one service check with `sh`, on a guest
    /// without systemd whose OpenRC is played by scripts on PATH: `sshd`
    /// runs and starts in the default runlevel, `cron` is installed only.
    fn gather_on_openrc(name: &str) -> Fields {
        let bin = tempfile::tempdir().unwrap();
        let write = |file: &str, body: &str| {
            use std::os::unix::fs::PermissionsExt;
            let path = bin.path().join(file);
            std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        write(
            "rc-service",
            "case \"$1 $2\" in '-e sshd'|'-e cron') exit 0 ;; 'sshd status') exit 0 ;; *) exit 1 ;; esac\n",
        );
        write(
            "rc-update",
            "printf '%s\\n' '                sshd | default' '                cron |'\n",
        );
        let check = check_named(name);
        let script = format!(
            "has() {{ case $1 in systemctl|service) return 1 ;; *) command -v \"$1\" >/dev/null 2>&1 ;; esac; }}\n\
             val() {{ printf '%s\\t%s\\t%s\\n' \"$1\" \"$2\" \"$3\" | tr '\\n' '|'; echo; }}\n{}",
            Service.gather(0, &check)
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.path().display()))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let show = text
            .split('\t')
            .nth(2)
            .unwrap_or_default()
            .trim_end_matches(['|', '\n'])
            .replace('|', "\n");
        let mut own = Fields::new();
        own.insert("show".into(), show.into_bytes());
        let mut fields = own.clone();
        Service.distribute(&check, 0, &Facts::default(), &mut fields);
        fields
    }

    fn check_named(name: &str) -> Check {
        Check::new(
            crate::spec::check::Kind::Service,
            name,
            std::path::Path::new("t.toml"),
        )
    }

    #[test]
    fn openrc_services_are_read_without_systemd() {
        let observed = |name: &str| {
            let fields = gather_on_openrc(name);
            Service.observe(&check_named(name), &fields, &Facts::default())
        };
        let sshd = observed("sshd");
        assert_eq!(sshd["running"], Found::Bool(true), "{sshd:?}");
        assert_eq!(sshd["enabled"], Found::Bool(true), "{sshd:?}");
        let cron = observed("cron");
        assert_eq!(cron["running"], Found::Bool(false), "{cron:?}");
        assert_eq!(cron["enabled"], Found::Bool(false), "{cron:?}");
        let gone = gather_on_openrc("nothing");
        assert_eq!(get(&gone, "enabled").as_deref(), Some("not-found"));
    }
}
