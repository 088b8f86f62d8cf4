//! `env doctor`: checks the host and says what to do about each problem.

use crate::backend::qemu::accel;
use crate::backend::qemu::args::QEMU_BINARY;
use crate::util::process::output_within;
use serde::Serialize;
use std::process::Command;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, with a caveat, or an optional part is missing.
    Warn,
    /// env cannot work until this is fixed.
    Fail,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Outcome.
    pub level: Level,
    /// What was found.
    pub found: String,
    /// What to do (empty when nothing).
    pub advice: String,
}

fn check(
    name: &'static str,
    level: Level,
    found: impl Into<String>,
    advice: impl Into<String>,
) -> Check {
    Check {
        name,
        level,
        found: found.into(),
        advice: advice.into(),
    }
}

/// How long one program `doctor` asks may take to answer.
const PROBE_LIMIT: std::time::Duration = std::time::Duration::from_secs(15);

/// The first line a program prints for `args`, if it runs.
fn first_line(program: &str, args: &[&str]) -> Option<String> {
    let out = output_within(Command::new(program).args(args), PROBE_LIMIT).ok()??;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}

/// A program's version line (its path when `args` is empty), or a failed
/// check with install advice.
fn tool(name: &'static str, program: &str, args: &[&str], missing: Level, advice: &str) -> Check {
    let found = crate::util::process::which(program).and_then(|path| {
        if args.is_empty() {
            Some(path.display().to_string())
        } else {
            first_line(program, args)
        }
    });
    match found {
        Some(version) => check(name, Level::Ok, version, ""),
        None => check(name, missing, format!("{program} not found"), advice),
    }
}

/// Whether `/dev/kvm` is there, usable, and whether guests boot under it
/// (the cached probe verdict; probing now when a box kernel is at hand).
fn kvm(probe_kernel: Option<&std::path::Path>) -> Check {
    if !std::path::Path::new("/dev/kvm").exists() {
        return check(
            "kvm",
            Level::Warn,
            "no /dev/kvm",
            "guests run under TCG (slow): enable virtualization in the firmware, load kvm_intel/kvm_amd",
        );
    }
    if !accel::kvm_device_usable() {
        return check(
            "kvm",
            Level::Warn,
            "/dev/kvm is not usable by this user",
            "add the user to the kvm group (guests run under TCG meanwhile)",
        );
    }
    match probe_kernel.map(accel::kvm_boots_cached) {
        Some(Ok(true)) => check(
            "kvm",
            Level::Ok,
            "usable: a probe guest booted under KVM",
            "",
        ),
        Some(Ok(false)) => check(
            "kvm",
            Level::Warn,
            "/dev/kvm answers, but KVM guests hang or QEMU refuses the host CPU (nested virtualization?)",
            "`accel = \"auto\"` uses TCG here; the verdict is cached in $ENV_HOME/kvm-probe.json",
        ),
        Some(Err(e)) => check(
            "kvm",
            Level::Warn,
            format!("the probe failed: {e:#}"),
            "run `env doctor` again",
        ),
        None => check(
            "kvm",
            Level::Warn,
            "/dev/kvm answers; not probed (no box with a kernel yet)",
            "add a box, then run `env doctor` again",
        ),
    }
}

/// Free space where boxes and machine disks live.
fn disk_space() -> Check {
    let Ok(home) = crate::util::paths::data_home() else {
        return check("disk space", Level::Fail, "no data folder", "set ENV_HOME");
    };
    let Some(free) = crate::util::fs::free_space(&home) else {
        return check(
            "disk space",
            Level::Warn,
            format!("cannot read free space of {}", home.display()),
            "",
        );
    };
    let found = format!(
        "{} free in {}",
        crate::util::ui::human_bytes(free),
        home.display()
    );
    if free < 2 << 30 {
        check(
            "disk space",
            Level::Fail,
            found,
            "free space: a box takes ~300 MB, each machine's disk grows with its writes",
        )
    } else if free < 10 << 30 {
        check(
            "disk space",
            Level::Warn,
            found,
            "boxes and machine disks may fill it soon",
        )
    } else {
        check("disk space", Level::Ok, found, "")
    }
}

/// Whether this QEMU can share folders over 9p.
fn ninep() -> Check {
    let ok = output_within(
        Command::new(QEMU_BINARY).args(["-device", "virtio-9p-pci,help"]),
        PROBE_LIMIT,
    )
    .ok()
    .flatten()
    .is_some_and(|out| out.status.success());
    if ok {
        check("9p folders", Level::Ok, "QEMU has virtio-9p", "")
    } else {
        check(
            "9p folders",
            Level::Warn,
            "QEMU lacks virtio-9p (or is missing)",
            "use `type = \"rsync\"` folders, or a QEMU build with virtfs",
        )
    }
}

/// Which Vagrant insecure keys env would try on first contact with boxes
/// made for Vagrant. None is fine for env's own boxes.
fn vagrant_keys() -> Check {
    let keys = crate::guest::ssh::keys::installed_vagrant_keys();
    if keys.is_empty() {
        check(
            "vagrant keys",
            Level::Ok,
            "none (needed only for boxes made for Vagrant)",
            "for such boxes install Vagrant (apt-get install vagrant) or set ssh.private_key in the Envfile",
        )
    } else {
        let found: Vec<String> = keys.iter().map(|k| k.display().to_string()).collect();
        check("vagrant keys", Level::Ok, found.join(", "), "")
    }
}

/// Runs every check. `probe_kernel` is a box kernel for the KVM probe.
pub fn run(probe_kernel: Option<&std::path::Path>) -> Vec<Check> {
    vec![
        tool(
            "qemu",
            QEMU_BINARY,
            &["--version"],
            Level::Fail,
            "apt-get install qemu-system-x86 qemu-utils",
        ),
        tool(
            "qemu-img",
            "qemu-img",
            &["--version"],
            Level::Fail,
            "apt-get install qemu-utils",
        ),
        kvm(probe_kernel),
        tool(
            "ssh client",
            "ssh",
            &["-V"],
            Level::Fail,
            "apt-get install openssh-client",
        ),
        tool(
            "ssh-keygen",
            "ssh-keygen",
            &[],
            Level::Fail,
            "apt-get install openssh-client",
        ),
        disk_space(),
        ninep(),
        vagrant_keys(),
        tool(
            "rsync",
            "rsync",
            &["--version"],
            Level::Warn,
            "needed by rsync folders: apt-get install rsync",
        ),
        tool(
            "ansible",
            "ansible-playbook",
            &["--version"],
            Level::Warn,
            "needed by ansible provisioners: apt-get install ansible-core",
        ),
        tool(
            "mmdebstrap",
            "mmdebstrap",
            &["--version"],
            Level::Warn,
            "needed by `env box build`: apt-get install mmdebstrap",
        ),
    ]
}

/// Renders the checks for a terminal.
pub fn render(checks: &[Check]) -> String {
    let mut rows = vec![vec!["CHECK".to_string(), "STATUS".into(), "FOUND".into()]];
    for c in checks {
        let status = match c.level {
            Level::Ok => crate::util::ui::paint("ok", "32"),
            Level::Warn => crate::util::ui::paint("warn", "33"),
            Level::Fail => crate::util::ui::paint("FAIL", "31"),
        };
        rows.push(vec![c.name.to_string(), status, c.found.clone()]);
    }
    let mut out = crate::util::ui::table(&rows);
    for c in checks
        .iter()
        .filter(|c| !c.advice.is_empty() && c.level != Level::Ok)
    {
        out.push_str(&format!("{}: {}\n", c.name, c.advice));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_fail_with_advice() {
        let c = tool(
            "x",
            "no-such-program-env",
            &["--version"],
            Level::Fail,
            "install it",
        );
        assert_eq!(c.level, Level::Fail);
        assert_eq!(c.advice, "install it");
        let c = tool("sh", "sh", &["-c", "echo version 1"], Level::Fail, "");
        assert_eq!((c.level, c.found.as_str()), (Level::Ok, "version 1"));
    }

    #[test]
    fn rendering_lists_advice_for_problems_only() {
        let checks = [
            check("a", Level::Ok, "fine", "never shown"),
            check("b", Level::Warn, "meh", "do this"),
        ];
        let text = render(&checks);
        assert!(
            text.contains("b: do this") && !text.contains("never shown"),
            "{text}"
        );
    }

    #[test]
    fn disk_space_is_measured() {
        let c = disk_space();
        assert!(c.found.contains("free in"), "{}", c.found);
    }
}
