//! `[process.NAME]`: running processes by name, from every
//! `/proc/N/status` (folded by the script's one awk into `uid name` lines).

use super::common::{AttrType, Resource};
use super::user::ACCOUNT_FILES;
use crate::spec::check::Check;
use crate::spec::facts::{Facts, Fields, Found, Observed};
use std::collections::HashMap;

/// Processes.
pub struct Process;

impl Resource for Process {
    fn attributes(&self) -> &'static [(&'static str, AttrType)] {
        use AttrType::*;
        &[("running", Bool), ("count", Number), ("user", Exact)]
    }

    fn recorded(&self) -> &'static [&'static str] {
        &["running", "user"]
    }

    fn shared_files(&self, _: &Check) -> Vec<String> {
        let mut files = ACCOUNT_FILES.map(String::from).to_vec();
        files.push("/proc/[0-9]*/status".into());
        files
    }

    fn gather(&self, id: usize, _: &Check) -> String {
        format!("val {id} seen 1\n")
    }

    fn observe(&self, check: &Check, _: &Fields, facts: &Facts) -> Observed {
        let users = user_names(facts);
        let matching: Vec<String> = processes(facts)
            .into_iter()
            .filter(|(_, comm)| same_process(&check.name, comm))
            .map(|(uid, _)| users.get(&uid).cloned().unwrap_or(uid))
            .collect();
        let mut distinct = matching.clone();
        distinct.sort();
        distinct.dedup();
        Observed::from([
            ("running", Found::Bool(!matching.is_empty())),
            ("count", Found::Number(matching.len() as i64)),
            ("user", Found::List(distinct)),
        ])
    }
}

/// `(uid, command name)` of each process.
fn processes(facts: &Facts) -> Vec<(String, String)> {
    facts
        .shared_text("procs")
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let (uid, comm) = l.split_once(char::is_whitespace)?;
            Some((uid.to_string(), comm.trim().to_string()))
        })
        .collect()
}

/// uid -> user name, from `/etc/passwd`.
fn user_names(facts: &Facts) -> HashMap<String, String> {
    facts
        .shared_text("/etc/passwd")
        .lines()
        .filter_map(|l| {
            let p: Vec<&str> = l.split(':').collect();
            (p.len() >= 3).then(|| (p[2].to_string(), p[0].to_string()))
        })
        .collect()
}

/// The kernel keeps 15 characters of a process name.
fn same_process(wanted: &str, comm: &str) -> bool {
    wanted == comm || (wanted.len() > 15 && wanted.get(..15) == Some(comm))
}
