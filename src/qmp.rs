//! QEMU control over QMP (the `qapi` crate), with timeouts on the socket: a
//! wedged QEMU makes a call fail, never hang.

use anyhow::{Context, Result};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long one QMP exchange may take.
pub const QMP_TIMEOUT: Duration = Duration::from_secs(5);

type Client<'a> = qapi::Qmp<qapi::Stream<std::io::BufReader<&'a UnixStream>, &'a UnixStream>>;

/// Connects, negotiates capabilities, runs `f`.
fn with_qmp<T>(socket: &Path, f: impl FnOnce(&mut Client<'_>) -> Result<T>) -> Result<T> {
    let stream = UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to QMP at {}", socket.display()))?;
    stream.set_read_timeout(Some(QMP_TIMEOUT))?;
    stream.set_write_timeout(Some(QMP_TIMEOUT))?;
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
