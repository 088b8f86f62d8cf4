//! `[interface.NAME]`: a network interface: its `/sys/class/net` entry,
//! MTU (a shared file) and addresses (one `ip -o addr` for all).

use super::common::{AttrType, Resource};
use crate::spec::check::Check;
use crate::spec::facts::{Facts, Fields, Found, Observed, flag, get, put};
use crate::util::shell::shell_quote;

/// Network interfaces.
pub struct Interface;

fn mtu_file(name: &str) -> String {
    format!("/sys/class/net/{name}/mtu")
}

impl Resource for Interface {
    fn attributes(&self) -> &'static [(&'static str, AttrType)] {
        use AttrType::*;
        &[("exists", Bool), ("addresses", Includes), ("mtu", Number)]
    }

    fn recorded(&self) -> &'static [&'static str] {
        &["exists", "mtu", "addresses"]
    }

    fn check_name(&self, name: &str) -> Result<(), String> {
        if name.contains('/') || name.starts_with('.') {
            Err(format!("`{name}` is not an interface name"))
        } else {
            Ok(())
        }
    }

    fn shared_files(&self, check: &Check) -> Vec<String> {
        vec![shell_quote(&mtu_file(&check.name))]
    }

    fn shared_script(&self, _: &[&Check]) -> String {
        "val _ ip_addr \"$(ip -o addr show 2>/dev/null)\"\n".into()
    }

    fn gather(&self, id: usize, check: &Check) -> String {
        let d = shell_quote(&format!("/sys/class/net/{}", check.name));
        format!("if [ -d {d} ]; then val {id} exists 1; else val {id} exists 0; fi\n")
    }

    fn distribute(&self, check: &Check, _: usize, facts: &Facts, own: &mut Fields) {
        if let Some(mtu) = facts.shared_value(&mtu_file(&check.name)) {
            put(own, "mtu", mtu);
        }
        let ip = facts.shared_text("ip_addr");
        let lines: Vec<&str> = ip
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .nth(1)
                    .map(|n| n.split('@').next() == Some(&check.name))
                    .unwrap_or(false)
            })
            .collect();
        put(own, "addrs", lines.join("\n"));
    }

    fn observe(&self, _: &Check, f: &Fields, _: &Facts) -> Observed {
        let mut seen = Observed::new();
        let exists = flag(f, "exists").unwrap_or(false);
        seen.insert("exists", Found::Bool(exists));
        if !exists {
            seen.insert("mtu", Found::Absent("no such interface".into()));
            seen.insert("addresses", Found::Absent("no such interface".into()));
            return seen;
        }
        if let Some(mtu) = get(f, "mtu").and_then(|m| m.trim().parse().ok()) {
            seen.insert("mtu", Found::Number(mtu));
        }
        let addrs = get(f, "addrs").unwrap_or_default();
        let list: Vec<String> = addrs
            .lines()
            .filter_map(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                words
                    .iter()
                    .position(|w| *w == "inet" || *w == "inet6")
                    .and_then(|i| words.get(i + 1))
                    .map(|a| a.to_string())
            })
            .collect();
        seen.insert("addresses", Found::List(list));
        seen
    }

    fn includes(&self, want: &str, have: &str) -> bool {
        // `10.0.2.15` matches `10.0.2.15/24`; `10.0.2.15/24` only itself.
        have == want || have.split('/').next() == Some(want)
    }
}
