//! QEMU control over QMP (the `qapi` crate), with timeouts on the socket: a
//! wedged QEMU makes a call fail, never hang.

use crate::backend::SnapshotOp;
use anyhow::{Context, Result};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long one QMP exchange may take.
pub const QMP_TIMEOUT: Duration = Duration::from_secs(5);

type Client<'a> = qapi::Qmp<qapi::Stream<std::io::BufReader<&'a UnixStream>, &'a UnixStream>>;

/// Connects, negotiates capabilities, runs `f`.
fn with_qmp<T>(socket: &Path, f: impl FnOnce(&mut Client<'_>) -> Result<T>) -> Result<T> {
    with_qmp_timeout(socket, QMP_TIMEOUT, f)
}

/// [`with_qmp`] with a longer wait per exchange: QEMU runs snapshot jobs in
/// its main loop, so it answers nothing until the job is done.
fn with_qmp_timeout<T>(
    socket: &Path,
    timeout: Duration,
    f: impl FnOnce(&mut Client<'_>) -> Result<T>,
) -> Result<T> {
    let stream = UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to QMP at {}", socket.display()))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut qmp = qapi::Qmp::from_stream(&stream);
    qmp.handshake().context("QMP handshake failed")?;
    f(&mut qmp)
}

/// The VM's run state (`running`, `paused`, `shutdown`...).
pub fn query_status(socket: &Path) -> Result<String> {
    with_qmp(socket, |qmp| {
        let status = qmp
            .execute(&qapi::qmp::query_status {})
            .context("query-status failed")?;
        Ok(format!("{:?}", status.status).to_lowercase())
    })
}

/// Why QEMU stopped a guest on its own: a disk write failed and the drive's
/// error policy (`werror=enospc`, QEMU's default) paused the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoPause {
    /// The drive whose write failed (its QEMU id, `disk0`, `data-db`).
    pub drive: String,
    /// The host filesystem had no room (otherwise: another I/O error).
    pub no_space: bool,
}

/// `Some` when the VM is stopped by a failed disk write (`io-error`).
pub fn io_pause(socket: &Path) -> Result<Option<IoPause>> {
    with_qmp(socket, |qmp| {
        let status = qmp
            .execute(&qapi::qmp::query_status {})
            .context("query-status failed")?;
        if status.status != qapi::qmp::RunState::io_error {
            return Ok(None);
        }
        let blocks = qmp
            .execute(&qapi::qmp::query_block {})
            .context("query-block failed")?;
        let failed = blocks.into_iter().find(|b| {
            b.io_status
                .is_some_and(|s| s != qapi::qmp::BlockDeviceIoStatus::ok)
        });
        Ok(Some(match failed {
            Some(b) => IoPause {
                no_space: b.io_status == Some(qapi::qmp::BlockDeviceIoStatus::nospace),
                drive: b.device,
            },
            None => IoPause {
                drive: "a disk".into(),
                no_space: false,
            },
        }))
    })
}

/// Lets a stopped VM run again; QEMU retries the write that failed.
pub fn cont(socket: &Path) -> Result<()> {
    with_qmp(socket, |qmp| {
        qmp.execute(&qapi::qmp::cont {}).context("cont failed")?;
        Ok(())
    })
}

/// Stops the VM's CPUs; QEMU drains and flushes every disk first.
pub fn stop(socket: &Path) -> Result<()> {
    with_qmp(socket, |qmp| {
        qmp.execute(&qapi::qmp::stop {}).context("stop failed")?;
        Ok(())
    })
}

/// Presses the virtual power button (ACPI): the guest shuts down cleanly if
/// it listens (systemd-logind or acpid).
pub fn system_powerdown(socket: &Path) -> Result<()> {
    with_qmp(socket, |qmp| {
        qmp.execute(&qapi::qmp::system_powerdown {})
            .context("system_powerdown failed")?;
        Ok(())
    })
}

/// Stops QEMU at once (like pulling the plug). QEMU may close the socket
/// before answering: that counts as success.
pub fn quit(socket: &Path) -> Result<()> {
    with_qmp(socket, |qmp| match qmp.execute(&qapi::qmp::quit {}) {
        Ok(_) => Ok(()),
        Err(qapi::ExecuteError::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e).context("quit failed"),
    })
}

/// Runs a snapshot job on the block nodes `devices` (the VM state goes to
/// the first) and waits for it to conclude, up to `timeout`. A job error
/// (QEMU's message) becomes the error. A failed load leaves QEMU paused:
/// it is resumed, so the machine never stays frozen.
pub fn snapshot_job(
    socket: &Path,
    job: SnapshotOp,
    tag: &str,
    devices: &[String],
    timeout: Duration,
) -> Result<()> {
    let vmstate = devices.first().cloned().context("no disk to snapshot")?;
    let job_id = format!("env-snapshot-{}", std::process::id());
    with_qmp_timeout(socket, timeout, |qmp| {
        let (id, tag, devices) = (job_id.clone(), tag.to_string(), devices.to_vec());
        let started = match job {
            SnapshotOp::Save => qmp
                .execute(&qapi::qmp::snapshot_save {
                    job_id: id,
                    tag,
                    vmstate,
                    devices,
                })
                .map(drop),
            SnapshotOp::Load => qmp
                .execute(&qapi::qmp::snapshot_load {
                    job_id: id,
                    tag,
                    vmstate,
                    devices,
                })
                .map(drop),
            SnapshotOp::Delete => qmp
                .execute(&qapi::qmp::snapshot_delete {
                    job_id: id,
                    tag,
                    devices,
                })
                .map(drop),
        };
        started.context("QEMU refused the snapshot job")?;
        let deadline = std::time::Instant::now() + timeout;
        let error = loop {
            let jobs = qmp
                .execute(&qapi::qmp::query_jobs {})
                .context("query-jobs failed")?;
            let mine = jobs.into_iter().find(|j| j.id == job_id);
            match mine {
                Some(j) if j.status == qapi::qmp::JobStatus::concluded => break j.error,
                None => break None,
                Some(_) if std::time::Instant::now() > deadline => {
                    anyhow::bail!("the snapshot job did not finish within {timeout:?}")
                }
                Some(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        // Concluded jobs stay listed until dismissed.
        let _ = qmp.execute(&qapi::qmp::job_dismiss { id: job_id.clone() });
        if let Some(error) = error {
            if job == SnapshotOp::Load {
                let _ = qmp.execute(&qapi::qmp::cont {});
            }
            anyhow::bail!("{error}");
        }
        Ok(())
    })
}
