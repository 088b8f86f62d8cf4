//! `[kernel_param."net.ipv4.ip_forward"]`: a kernel parameter, its
//! `/proc/sys` file read with the other shared files.

use super::common::{AttrType, Resource};
use crate::spec::check::Check;
use crate::spec::facts::{Facts, Fields, Found, Observed, get, put};
use crate::util::shell::shell_quote;

/// Kernel parameters.
pub struct KernelParam;

impl Resource for KernelParam {
    fn attributes(&self) -> &'static [(&'static str, AttrType)] {
        &[("value", AttrType::Exact)]
    }

    fn recorded(&self) -> &'static [&'static str] {
        &["value"]
    }

    fn check_name(&self, name: &str) -> Result<(), String> {
        let allowed = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
        if !allowed || name.contains("..") {
            return Err(format!("`{name}` is not a kernel parameter name"));
        }
        Ok(())
    }

    fn shared_files(&self, check: &Check) -> Vec<String> {
        vec![shell_quote(&kernel_param_path(&check.name))]
    }

    fn gather(&self, id: usize, _: &Check) -> String {
        format!("val {id} seen 1\n")
    }

    fn distribute(&self, check: &Check, _: usize, facts: &Facts, own: &mut Fields) {
        match facts.shared_value(&kernel_param_path(&check.name)) {
            Some(v) => put(own, "value", v),
            None => put(own, "error", "no such kernel parameter".into()),
        }
    }

    fn observe(&self, _: &Check, f: &Fields, _: &Facts) -> Observed {
        let mut seen = Observed::new();
        if let Some(v) = get(f, "value") {
            // Multi-value parameters are tab-separated: compare with spaces.
            seen.insert(
                "value",
                Found::Text(v.split_whitespace().collect::<Vec<_>>().join(" ")),
            );
        }
        seen
    }
}

/// The `/proc/sys` file of a kernel parameter (`net.ipv4.ip_forward`, or
/// with slashes when a name holds dots: `net/ipv4/conf/eth0.1/forwarding`).
pub fn kernel_param_path(name: &str) -> String {
    if name.contains('/') {
        format!("/proc/sys/{}", name.trim_start_matches('/'))
    } else {
        format!("/proc/sys/{}", name.replace('.', "/"))
    }
}
