//! `[kernel_module.NAME]`: a kernel module, loaded (`/proc/modules`) or
//! built in (`modules.builtin` of the running kernel).

use super::common::{AttrType, Resource};
use crate::spec::check::Check;
use crate::spec::facts::{Facts, Fields, Found, Observed};

/// Kernel modules.
pub struct KernelModule;

impl Resource for KernelModule {
    fn attributes(&self) -> &'static [(&'static str, AttrType)] {
        &[("loaded", AttrType::Bool)]
    }

    fn recorded(&self) -> &'static [&'static str] {
        &["loaded"]
    }

    fn shared_files(&self, _: &Check) -> Vec<String> {
        // MODULES_BUILTIN: the awk finds the running kernel's list itself.
        vec!["/proc/modules".into(), "MODULES_BUILTIN".into()]
    }

    fn gather(&self, id: usize, _: &Check) -> String {
        format!("val {id} seen 1\n")
    }

    fn observe(&self, check: &Check, _: &Fields, facts: &Facts) -> Observed {
        let name = check.name.replace('-', "_");
        let text = |key: &str| {
            facts
                .shared
                .iter()
                .filter(|(k, _)| k.ends_with(key))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .collect::<String>()
        };
        let loaded = text("/proc/modules")
            .lines()
            .any(|l| l.split(' ').next() == Some(&name))
            || text("/modules.builtin").lines().any(|l| {
                l.rsplit('/').next().and_then(|f| f.strip_suffix(".ko")) == Some(name.as_str())
            });
        Observed::from([("loaded", Found::Bool(loaded))])
    }
}
