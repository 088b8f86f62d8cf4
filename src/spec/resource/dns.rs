//! `[dns.NAME]`: a host name resolved in the guest (`getent ahosts`: what
//! its programs see, `/etc/hosts` included).

use super::common::{AttrType, Resource};
use crate::spec::check::Check;
use crate::spec::facts::{Facts, Fields, Found, Observed, get};
use crate::util::shell::shell_quote;
use std::net::IpAddr;

/// Host names.
pub struct Dns;

impl Resource for Dns {
    fn attributes(&self) -> &'static [(&'static str, AttrType)] {
        &[
            ("resolvable", AttrType::Bool),
            ("addresses", AttrType::Includes),
        ]
    }

    fn recorded(&self) -> &'static [&'static str] {
        &["resolvable", "addresses"]
    }

    fn timed(&self) -> bool {
        true
    }

    fn gather(&self, id: usize, check: &Check) -> String {
        let n = shell_quote(&check.name);
        let limit = match check.timeout {
            Some(_) => format!("tmo {} ", check.time_limit().as_secs().max(1)),
            None => String::new(),
        };
        format!(
            "{limit}getent ahosts {n} > \"$T/d{id}\" 2>/dev/null; val {id} rc $?; etext {id} answer \"$T/d{id}\"\n"
        )
    }

    fn observe(&self, _: &Check, f: &Fields, _: &Facts) -> Observed {
        let answer = get(f, "answer").unwrap_or_default();
        let mut unique: Vec<String> = Vec::new();
        for a in answer
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(String::from))
        {
            if !unique.contains(&a) {
                unique.push(a);
            }
        }
        Observed::from([
            (
                "resolvable",
                Found::Bool(get(f, "rc").as_deref() == Some("0") && !unique.is_empty()),
            ),
            ("addresses", Found::List(unique)),
        ])
    }

    fn includes(&self, want: &str, have: &str) -> bool {
        let (w, h) = (want.parse::<IpAddr>().ok(), have.parse::<IpAddr>().ok());
        if w.is_some() { w == h } else { want == have }
    }
}
