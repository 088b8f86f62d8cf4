//! Choosing the accelerator: KVM when it is usable, TCG otherwise.
//!
//! "Usable" is more than `/dev/kvm` answering: on some hosts (nested
//! virtualization) KVM guests hang right after the kernel's decompressor. A
//! short probe boot of the box's kernel tells; its verdict is cached per host
//! so `auto` costs the probe once, and never hangs.

use crate::backend::qemu::args::{Accelerator, QEMU_BINARY};
use crate::envfile::Accel;
use crate::envfile::model::ACCEL_VAR;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the probe kernel may take to print its banner under KVM (it takes
/// well under a second where KVM works).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(8);

/// Whether `/dev/kvm` can be opened and answers the API version ioctl.
pub fn kvm_device_usable() -> bool {
    use std::os::fd::AsRawFd;
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    else {
        return false;
    };
    // SAFETY: KVM_GET_API_VERSION takes no argument and only returns a number.
    let version = unsafe { libc::ioctl(file.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    version == 12
}

/// Resolves `auto`; checks that `kvm` is possible at all.
pub fn resolve(requested: Accel, probe_kernel: Option<&Path>) -> Result<Accelerator> {
    match requested {
        Accel::Tcg => Ok(Accelerator::Tcg),
        Accel::Kvm => {
            if !kvm_device_usable() {
                bail!(
                    "KVM was asked for, but /dev/kvm is not usable here: use --accel tcg (or {ACCEL_VAR}=tcg)"
                );
            }
            Ok(Accelerator::Kvm)
        }
        Accel::Auto => {
            if !kvm_device_usable() {
                return Ok(Accelerator::Tcg);
            }
            let Some(kernel) = probe_kernel else {
                return Ok(Accelerator::Kvm);
            };
            Ok(if kvm_boots_cached(kernel)? {
                Accelerator::Kvm
            } else {
                Accelerator::Tcg
            })
        }
    }
}

fn cache_file() -> Result<PathBuf> {
    Ok(crate::util::paths::data_home()?.join("kvm-probe.json"))
}

/// A key that changes when the verdict may: host kernel and QEMU binary.
fn host_key() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let qemu = crate::util::process::which(QEMU_BINARY)
        .and_then(|p| std::fs::metadata(p).ok())
        .and_then(|m| m.modified().ok())
        .map(|t| format!("{t:?}"))
        .unwrap_or_default();
    format!("{}|{qemu}", release.trim())
}

/// The cached probe verdict, probing when there is none for this host.
pub fn kvm_boots_cached(kernel: &Path) -> Result<bool> {
    let key = host_key();
    let cache = cache_file()?;
    if let Ok(text) = std::fs::read_to_string(&cache)
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        && v["host"] == key
        && let Some(ok) = v["kvm_boots"].as_bool()
    {
        return Ok(ok);
    }
    eprintln!(
        "probing whether KVM guests boot on this host (once; up to {} s)...",
        PROBE_TIMEOUT.as_secs()
    );
    let ok = probe_kvm(kernel)?;
    if !ok {
        eprintln!(
            "KVM guests hang on this host: using TCG (software emulation). Set {ACCEL_VAR}=kvm to force KVM."
        );
    }
    if let Some(dir) = cache.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let record = serde_json::json!({ "host": key, "kvm_boots": ok });
    crate::util::fs::write_atomic(&cache, record.to_string().as_bytes())?;
    Ok(ok)
}

/// Boots `kernel` under KVM with no disk and waits for its banner on the
/// serial console. A working KVM prints "Linux version" within a second.
pub fn probe_kvm(kernel: &Path) -> Result<bool> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("console.log");
    let mut child = Command::new(QEMU_BINARY)
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-machine",
            "q35,accel=kvm",
            "-cpu",
            "host",
        ])
        .args(["-m", "256M", "-no-reboot", "-kernel"])
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1 earlyprintk=serial"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {QEMU_BINARY}"))?;
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let verdict = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Linux version") && text.contains("Command line") {
            break true;
        }
        if child.try_wait()?.is_some() {
            // QEMU exited (it refused a CPU feature KVM cannot give, say):
            // not usable, unless the kernel got far enough to print.
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            break text.contains("Linux version");
        }
        if Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcg_needs_no_probe() {
        assert_eq!(resolve(Accel::Tcg, None).unwrap(), Accelerator::Tcg);
    }
}
