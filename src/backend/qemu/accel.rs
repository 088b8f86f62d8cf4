//! Choosing the accelerator: KVM when it is usable, TCG otherwise.
//!
//! "Usable" is more than `/dev/kvm` answering: on some hosts (nested
//! virtualization) KVM guests hang right after the kernel's decompressor. A
//! short probe boot under KVM tells: the box's kernel when it has one, else
//! its disk through its own firmware and bootloader (read-only), watching
//! the serial console for the kernel's banner. The verdict is the host's,
//! cached per host kernel and QEMU binary, so `auto` costs one probe, asked
//! first, whatever box comes next, and never hangs.

use crate::backend::qemu::args::{Accelerator, QEMU_BINARY};
use crate::envfile::Accel;
use crate::envfile::model::ACCEL_VAR;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a probe kernel may take to print its banner under KVM (it takes
/// well under a second where KVM works).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(8);

/// How long a probe through firmware and a bootloader may take to reach
/// the kernel's banner (SeaBIOS, GRUB's menu, then the kernel).
pub const FIRMWARE_PROBE_TIMEOUT: Duration = Duration::from_secs(25);

/// The environment variable that makes KVM look usable but hung, for tests
/// of `auto` on any host (`ENV_KVM_FAKE=hang`): nothing is probed or cached.
pub const FAKE_VAR: &str = "ENV_KVM_FAKE";

/// What a probe boots under KVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeGuest<'a> {
    /// A kernel, booted directly.
    Kernel(&'a Path),
    /// A qcow2 disk, booted through the firmware and its bootloader, with
    /// writes discarded.
    Disk(&'a Path),
}

/// The host facts `auto` decides from: the seam that lets tests make KVM
/// look hung.
pub trait KvmHost {
    /// Whether `/dev/kvm` can be opened and answers.
    fn device_usable(&self) -> bool;
    /// The cached verdict for this host, if there is one.
    fn cached(&self) -> Option<bool>;
    /// Boots `guest` under KVM: whether it got past the kernel's start.
    fn probe(&self, guest: ProbeGuest<'_>) -> Result<bool>;
    /// Keeps a verdict for this host.
    fn remember(&self, boots: bool) -> Result<()>;
}

/// What `resolve` decided, and the one line to tell the user, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The accelerator to boot with.
    pub accel: Accelerator,
    /// Why it is not what was asked for (TCG under `auto` on a KVM host).
    pub note: Option<String>,
}

/// Resolves `auto`; checks that `kvm` is possible at all.
pub fn resolve(
    host: &dyn KvmHost,
    requested: Accel,
    guest: Option<ProbeGuest<'_>>,
) -> Result<Decision> {
    let plain = |accel| Decision { accel, note: None };
    match requested {
        Accel::Tcg => Ok(plain(Accelerator::Tcg)),
        Accel::Kvm => {
            if !host.device_usable() {
                bail!(
                    "KVM was asked for, but /dev/kvm is not usable here: use --accel tcg (or {ACCEL_VAR}=tcg)"
                );
            }
            Ok(plain(Accelerator::Kvm))
        }
        Accel::Auto => {
            if !host.device_usable() {
                return Ok(plain(Accelerator::Tcg));
            }
            let boots = match (host.cached(), guest) {
                (Some(verdict), _) => verdict,
                (None, Some(guest)) => {
                    let verdict = host.probe(guest)?;
                    host.remember(verdict)?;
                    verdict
                }
                // Nothing to probe with: try KVM; a start that fails falls
                // back (see `fallback_note`).
                (None, None) => true,
            };
            Ok(if boots {
                plain(Accelerator::Kvm)
            } else {
                Decision {
                    accel: Accelerator::Tcg,
                    note: Some(hang_note()),
                }
            })
        }
    }
}

fn hang_note() -> String {
    format!(
        "KVM guests hang on this host: using TCG (software emulation). Set {ACCEL_VAR}=kvm to force KVM."
    )
}

/// The note when QEMU could not start under KVM and `auto` falls back to TCG.
pub fn fallback_note(error: &str) -> String {
    let first = error.lines().last().unwrap_or(error).trim();
    format!("QEMU could not start under KVM ({first}): using TCG instead")
}

/// The real host: `/dev/kvm`, a cache file in env's data folder, QEMU.
pub struct RealHost;

/// The host env runs on: the real one, or one whose KVM looks hung when
/// [`FAKE_VAR`] says so.
pub fn this_host() -> Box<dyn KvmHost> {
    match std::env::var(FAKE_VAR).as_deref() {
        Ok("hang") => Box::new(HungHost),
        _ => Box::new(RealHost),
    }
}

impl KvmHost for RealHost {
    fn device_usable(&self) -> bool {
        kvm_device_usable()
    }

    fn cached(&self) -> Option<bool> {
        let text = std::fs::read_to_string(cache_file().ok()?).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        (v["host"] == host_key()).then(|| v["kvm_boots"].as_bool())?
    }

    fn probe(&self, guest: ProbeGuest<'_>) -> Result<bool> {
        let timeout = match guest {
            ProbeGuest::Kernel(_) => PROBE_TIMEOUT,
            ProbeGuest::Disk(_) => FIRMWARE_PROBE_TIMEOUT,
        };
        eprintln!(
            "probing whether KVM guests boot on this host (once; up to {} s)...",
            timeout.as_secs()
        );
        probe_kvm(guest, timeout)
    }

    fn remember(&self, boots: bool) -> Result<()> {
        let cache = cache_file()?;
        if let Some(dir) = cache.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let record = serde_json::json!({ "host": host_key(), "kvm_boots": boots });
        crate::util::fs::write_atomic(&cache, record.to_string().as_bytes())
    }
}

/// A host whose `/dev/kvm` answers but whose KVM guests hang (what nested
/// virtualization often gives), made deterministic for tests.
struct HungHost;

impl KvmHost for HungHost {
    fn device_usable(&self) -> bool {
        true
    }

    fn cached(&self) -> Option<bool> {
        None
    }

    fn probe(&self, _: ProbeGuest<'_>) -> Result<bool> {
        Ok(false)
    }

    fn remember(&self, _: bool) -> Result<()> {
        Ok(())
    }
}

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

/// The cached verdict, probing with `kernel` when there is none (what
/// `env doctor` reports).
pub fn kvm_boots_cached(kernel: &Path) -> Result<bool> {
    let host = RealHost;
    if let Some(verdict) = host.cached() {
        return Ok(verdict);
    }
    let verdict = host.probe(ProbeGuest::Kernel(kernel))?;
    host.remember(verdict)?;
    Ok(verdict)
}

/// QEMU's arguments for a probe boot of `guest` under KVM, its serial
/// console written to `log`.
pub fn probe_args(guest: ProbeGuest<'_>, log: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-machine",
        "q35,accel=kvm",
        "-cpu",
        "host",
        "-m",
        "256M",
        "-no-reboot",
    ]
    .map(String::from)
    .to_vec();
    match guest {
        ProbeGuest::Kernel(kernel) => {
            args.push("-kernel".into());
            args.push(kernel.display().to_string());
            args.extend(["-append", "console=ttyS0 panic=-1 earlyprintk=serial"].map(String::from));
        }
        ProbeGuest::Disk(disk) => {
            // snapshot=on: the probe's writes go to a temporary file, never
            // to the box; the format is given, never probed.
            args.push("-drive".into());
            args.push(format!(
                "file={},format=qcow2,if=virtio,snapshot=on,readonly=off",
                disk.display().to_string().replace(',', ",,")
            ));
        }
    }
    args.push("-serial".into());
    args.push(format!("file:{}", log.display()));
    args
}

/// Boots `guest` under KVM and waits for the kernel's banner on the serial
/// console. A working KVM prints "Linux version" within seconds.
fn probe_kvm(guest: ProbeGuest<'_>, timeout: Duration) -> Result<bool> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("console.log");
    let mut child = Command::new(QEMU_BINARY)
        .args(probe_args(guest, &log))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {QEMU_BINARY}"))?;
    let deadline = Instant::now() + timeout;
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
    use std::cell::{Cell, RefCell};

    /// A host with a given device, cache and probe result, noting probes.
    struct Host {
        device: bool,
        cache: RefCell<Option<bool>>,
        probe_says: bool,
        probes: Cell<u32>,
    }

    impl Host {
        fn new(device: bool, cache: Option<bool>, probe_says: bool) -> Host {
            Host {
                device,
                cache: RefCell::new(cache),
                probe_says,
                probes: Cell::new(0),
            }
        }
    }

    impl KvmHost for Host {
        fn device_usable(&self) -> bool {
            self.device
        }
        fn cached(&self) -> Option<bool> {
            *self.cache.borrow()
        }
        fn probe(&self, _: ProbeGuest<'_>) -> Result<bool> {
            self.probes.set(self.probes.get() + 1);
            Ok(self.probe_says)
        }
        fn remember(&self, boots: bool) -> Result<()> {
            *self.cache.borrow_mut() = Some(boots);
            Ok(())
        }
    }

    fn disk() -> ProbeGuest<'static> {
        ProbeGuest::Disk(Path::new("/boxes/b/box.img"))
    }

    #[test]
    fn tcg_needs_no_probe_and_kvm_needs_the_device() {
        let host = Host::new(false, None, true);
        assert_eq!(
            resolve(&host, Accel::Tcg, None).unwrap().accel,
            Accelerator::Tcg
        );
        let err = resolve(&host, Accel::Kvm, None).unwrap_err().to_string();
        assert!(err.contains("--accel tcg"), "{err}");
        assert_eq!(
            resolve(&host, Accel::Auto, Some(disk())).unwrap().accel,
            Accelerator::Tcg
        );
        assert_eq!(host.probes.get(), 0);
    }

    #[test]
    fn auto_asks_the_cached_verdict_first_for_any_box() {
        let host = Host::new(true, Some(false), true);
        let d = resolve(&host, Accel::Auto, Some(disk())).unwrap();
        assert_eq!(d.accel, Accelerator::Tcg);
        assert!(d.note.unwrap().contains("KVM guests hang"));
        let d = resolve(&host, Accel::Auto, None).unwrap();
        assert_eq!(d.accel, Accelerator::Tcg, "no probe guest: still the cache");
        assert_eq!(host.probes.get(), 0);
    }

    #[test]
    fn a_firmware_box_is_probed_through_its_disk_once() {
        let host = Host::new(true, None, false);
        let d = resolve(&host, Accel::Auto, Some(disk())).unwrap();
        assert_eq!(d.accel, Accelerator::Tcg);
        resolve(&host, Accel::Auto, Some(disk())).unwrap();
        assert_eq!(host.probes.get(), 1, "the verdict is kept");
        let host = Host::new(true, None, true);
        let d = resolve(&host, Accel::Auto, Some(disk())).unwrap();
        assert_eq!((d.accel, d.note), (Accelerator::Kvm, None));
    }

    #[test]
    fn probe_boots_discard_writes_and_name_the_format() {
        let args = probe_args(disk(), Path::new("/t/console.log"));
        let drive = args
            .iter()
            .find(|a| a.starts_with("file="))
            .unwrap()
            .clone();
        assert!(drive.contains("format=qcow2") && drive.contains("snapshot=on"));
        assert!(args.contains(&"q35,accel=kvm".to_string()));
        let args = probe_args(
            ProbeGuest::Kernel(Path::new("/b/vmlinuz")),
            Path::new("/t/c.log"),
        );
        assert!(args.windows(2).any(|w| w == ["-kernel", "/b/vmlinuz"]));
    }

    #[test]
    fn the_fake_host_looks_hung() {
        let d = resolve(&HungHost, Accel::Auto, Some(disk())).unwrap();
        assert_eq!(d.accel, Accelerator::Tcg);
        assert!(d.note.is_some());
    }

    #[test]
    fn the_fallback_note_names_qemus_reason() {
        let note = fallback_note(
            "QEMU failed to start: qemu-system-x86_64: error: failed to set MSR 0x10a",
        );
        assert!(note.contains("failed to set MSR 0x10a") && note.contains("TCG"));
    }
}
