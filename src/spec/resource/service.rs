//! `[service.NAME]`: a systemd service (or a SysV one through `service`).
//! One `systemctl show` answers every service check of a run.

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
             elif has service; then\n\
             if service {n} status >/dev/null 2>&1; then val {id} show ActiveState=active; else val {id} show ActiveState=inactive; fi\n\
             else val {id} error 'neither systemctl nor service in the guest'; fi\n"
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
