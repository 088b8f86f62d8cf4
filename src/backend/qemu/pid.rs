//! QEMU's process: its pid file, whether the pid is really this machine's
//! QEMU, and ending it.

use super::args::QEMU_BINARY;
use crate::machine::MachineDir;
use std::fs;
use std::time::{Duration, Instant};

/// QEMU's pid when its process is alive and really this machine's QEMU
/// (a recycled pid belongs to someone else).
pub fn qemu_pid(dir: &MachineDir) -> Option<i32> {
    let pid: i32 = fs::read_to_string(dir.pidfile())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    runs_disk(&cmdline, dir.disk().as_os_str().as_encoded_bytes())
        .then_some(pid)
        .filter(|pid| process_alive(*pid))
}

/// Whether a process command line (`/proc/PID/cmdline`: NUL-separated
/// arguments) is QEMU's with `disk` among its arguments: the program must
/// be [`QEMU_BINARY`], so a recycled pid running anything else that merely
/// names the disk (an editor, `cp`, a shell) is never taken for QEMU.
fn runs_disk(cmdline: &[u8], disk: &[u8]) -> bool {
    let mut args = cmdline.split(|b| *b == 0);
    let program = args.next().unwrap_or_default();
    let name = program.rsplit(|b| *b == b'/').next().unwrap_or_default();
    name == QEMU_BINARY.as_bytes() && args.any(|a| a.windows(disk.len()).any(|w| w == disk))
}

/// Whether process `pid` runs. A zombie has exited: daemonized QEMU is
/// reaped by init, which may take its time (a second or more in containers).
pub fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|s| s != 'Z' && s != 'X'),
        Err(_) => false,
    }
}

/// Waits until process `pid` has exited; false on timeout.
pub fn wait_exit(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while process_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Sends SIGKILL to this machine's QEMU (checked again right before) and
/// waits up to `grace` for it to go.
pub fn kill(dir: &MachineDir, grace: Duration) {
    if let Some(pid) = qemu_pid(dir) {
        // SAFETY: kill(2) with a pid just checked to be this machine's QEMU.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_exit(pid, grace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_qemu_naming_the_disk_is_the_machine() {
        let disk = b"/p/.envstate/machines/web/disk.qcow2";
        let qemu = b"qemu-system-x86_64\0-name\0web\0-drive\0file=/p/.envstate/machines/web/disk.qcow2,if=virtio\0";
        assert!(runs_disk(qemu, disk));
        let full =
            b"/usr/bin/qemu-system-x86_64\0-drive\0file=/p/.envstate/machines/web/disk.qcow2\0";
        assert!(runs_disk(full, disk));
        let other_disk = b"qemu-system-x86_64\0-drive\0file=/p/.envstate/machines/db/disk.qcow2\0";
        assert!(!runs_disk(other_disk, disk));
        let shell = b"sh\0-c\0sleep 600\0/p/.envstate/machines/web/disk.qcow2\0";
        assert!(!runs_disk(shell, disk));
        let lookalike = b"/tmp/qemu-system-x86_64-wrapper\0/p/.envstate/machines/web/disk.qcow2\0";
        assert!(!runs_disk(lookalike, disk));
        assert!(!runs_disk(b"", disk));
    }

    #[test]
    fn liveness_of_processes() {
        assert!(process_alive(std::process::id() as i32));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!process_alive(pid), "an exited, unreaped child is a zombie");
        child.wait().unwrap();
        assert!(!process_alive(pid));
    }

    #[test]
    fn a_pid_file_naming_another_process_is_not_qemu() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = MachineDir::new(tmp.path(), "web");
        fs::create_dir_all(&dir.root).unwrap();
        fs::write(dir.pidfile(), std::process::id().to_string()).unwrap();
        assert_eq!(qemu_pid(&dir), None);
        fs::write(dir.pidfile(), "not a number").unwrap();
        assert_eq!(qemu_pid(&dir), None);
    }
}
