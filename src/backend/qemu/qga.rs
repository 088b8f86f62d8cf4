//! The QEMU guest agent (`qemu-guest-agent` in the box, on a virtio-serial
//! port): guest-side actions that must not wait for an SSH handshake.

use anyhow::{Context, Result, bail};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long one exchange with the agent may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(3);

type Client<'a> = qapi::Qga<qapi::Stream<std::io::BufReader<&'a UnixStream>, &'a UnixStream>>;

/// Connects and synchronises with the agent, then runs `f`. An agent that
/// has just (re)started may drop the first exchange, so each attempt uses a
/// fresh connection, until `patience` runs out.
fn with_qga<T>(
    socket: &Path,
    patience: Duration,
    mut f: impl FnMut(&mut Client<'_>) -> Result<T>,
) -> Result<T> {
    let deadline = Instant::now() + patience;
    let mut attempt: i32 = 0;
    loop {
        attempt += 1;
        let result = UnixStream::connect(socket)
            .with_context(|| format!("cannot connect to the guest agent at {}", socket.display()))
            .and_then(|stream| {
                stream.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
                stream.set_write_timeout(Some(EXCHANGE_TIMEOUT))?;
                let mut qga = qapi::Qga::from_stream(&stream);
                // A sync id unique to this attempt skips stale answers.
                let id = (std::process::id() as i32)
                    .wrapping_mul(31)
                    .wrapping_add(attempt);
                qga.guest_sync(id)
                    .context("the guest agent does not answer")?;
                f(&mut qga)
            });
        match result {
            Ok(value) => return Ok(value),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Sets the guest's clock to the host's (after a snapshot restore the guest
/// lives at the time of the snapshot).
pub fn set_time_now(socket: &Path, patience: Duration) -> Result<()> {
    with_qga(socket, patience, |qga| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("host clock before 1970")?;
        let Ok(nanos) = i64::try_from(now.as_nanos()) else {
            bail!("host clock out of range");
        };
        qga.execute(&qapi::qga::guest_set_time { time: Some(nanos) })
            .context("guest-set-time failed")?;
        Ok(())
    })
}
