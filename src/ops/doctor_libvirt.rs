//! `env doctor`'s checks of a libvirt host: reachable, its versions, KVM
//! there, the storage pool, and whether env may create volumes in it.

use crate::backend::libvirt::virsh::Virsh;
use crate::ops::doctor::{Check, Level};

fn check(name: &'static str, level: Level, found: String, advice: impl Into<String>) -> Check {
    Check {
        name,
        level,
        found,
        advice: advice.into(),
    }
}

/// The checks of one libvirt URI and pool.
pub fn run(uri: &str, pool: &str) -> Vec<Check> {
    let virsh = Virsh::new(uri);
    let version = match virsh.run(&["version"]) {
        Ok(v) => v,
        Err(e) => {
            return vec![check(
                "libvirt",
                Level::Fail,
                format!("{uri}: {e:#}"),
                "start libvirtd there, check SSH to the host (ssh USER@HOST virsh version), \
                 and the user's membership in group libvirt (docs/backends.md)",
            )];
        }
    };
    let word = |prefix: &str| {
        version
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    let mut checks = vec![check(
        "libvirt",
        Level::Ok,
        format!(
            "{uri}: libvirt {}, {}",
            word("Using library: libvirt"),
            word("Running hypervisor:")
        ),
        "",
    )];
    checks.push(match virsh.has_kvm() {
        true => check("libvirt kvm", Level::Ok, format!("{uri}: KVM"), ""),
        false => check(
            "libvirt kvm",
            Level::Warn,
            format!("{uri}: no KVM, guests run under TCG (slow)"),
            "load kvm_intel or kvm_amd on that host and give libvirt /dev/kvm",
        ),
    });
    match virsh.try_run(&["pool-info", pool]) {
        Ok(out) if out.status.success() => {
            let info = String::from_utf8_lossy(&out.stdout).to_string();
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            let running = field("State:") == "running";
            checks.push(check(
                "libvirt pool",
                if running { Level::Ok } else { Level::Warn },
                format!(
                    "pool `{pool}`: {}, {} available",
                    field("State:"),
                    field("Available:")
                ),
                if running {
                    String::new()
                } else {
                    format!(
                        "virsh -c {uri} pool-start {pool} && virsh -c {uri} pool-autostart {pool}"
                    )
                },
            ));
            let probe = format!("env-doctor-probe-{}", std::process::id());
            let writable = virsh
                .vol_create(pool, &probe, 1, "raw", &[])
                .and_then(|()| virsh.vol_delete(pool, &probe));
            checks.push(match writable {
                Ok(()) => check(
                    "libvirt permissions",
                    Level::Ok,
                    format!("volumes can be made in `{pool}`"),
                    "",
                ),
                Err(e) => check(
                    "libvirt permissions",
                    Level::Fail,
                    format!("cannot make a volume in `{pool}`: {e:#}"),
                    "the SSH user needs group libvirt on that host (docs/backends.md)",
                ),
            });
        }
        _ => checks.push(check(
            "libvirt pool",
            Level::Fail,
            format!("{uri} has no storage pool `{pool}`"),
            crate::backend::libvirt::virsh::pool_setup_hint(uri, pool),
        )),
    }
    checks
}
