//! A small HTTP/1.1 file server on 127.0.0.1 for the box-fetching tests:
//! byte ranges (`Range: bytes=N-`), JSON content types, a request log, and
//! downloads cut off in the middle, reset, stalled, or resumed at the wrong
//! place on demand.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// One request seen: path and the Range header, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
}

#[derive(Default)]
struct State {
    files: HashMap<String, PathBuf>,
    /// Paths whose next full download is cut after this many bytes.
    cut: HashMap<String, u64>,
    /// Paths whose next full download is reset (TCP RST) after this many
    /// bytes.
    reset: HashMap<String, u64>,
    /// Paths whose next full download goes silent after this many bytes,
    /// the connection held open.
    stall: HashMap<String, u64>,
    /// Paths whose next ranged request is answered from byte 0 (a 206 whose
    /// Content-Range does not start where asked).
    misrange: HashSet<String>,
    seen: Vec<Seen>,
    /// Request targets as sent: absolute URLs when a client used this
    /// server as its HTTP proxy (`http://boxes.example/x.box`), or
    /// `host:port` for a CONNECT.
    targets: Vec<String>,
}

/// The server; it runs until the test process exits.
#[derive(Clone)]
pub struct Server {
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &state);
                });
            }
        });
        Server { base, state }
    }

    /// Serves `file` at `/name`; returns its URL.
    pub fn serve(&self, name: &str, file: PathBuf) -> String {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(format!("/{name}"), file);
        format!("{}/{name}", self.base)
    }

    /// The next full download of `/name` stops after `bytes`.
    pub fn cut_next(&self, name: &str, bytes: u64) {
        self.state
            .lock()
            .unwrap()
            .cut
            .insert(format!("/{name}"), bytes);
    }

    /// The next full download of `/name` is reset (RST) after `bytes`.
    pub fn reset_next(&self, name: &str, bytes: u64) {
        self.state
            .lock()
            .unwrap()
            .reset
            .insert(format!("/{name}"), bytes);
    }

    /// The next full download of `/name` sends `bytes`, then nothing.
    pub fn stall_next(&self, name: &str, bytes: u64) {
        self.state
            .lock()
            .unwrap()
            .stall
            .insert(format!("/{name}"), bytes);
    }

    /// The next ranged request for `/name` gets the whole file as a 206
    /// saying `bytes 0-...`, whatever range was asked.
    pub fn misrange_next(&self, name: &str) {
        self.state
            .lock()
            .unwrap()
            .misrange
            .insert(format!("/{name}"));
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Every request target as sent (see `State::targets`).
    pub fn targets(&self) -> Vec<String> {
        self.state.lock().unwrap().targets.clone()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        // As a proxy: an absolute URL's path is served from these files
        // whatever its host (a CONNECT finds nothing).
        let path = match target.strip_prefix("http://") {
            Some(rest) => rest
                .find('/')
                .map_or("/".into(), |at| rest[at..].to_string()),
            None => target.clone(),
        };
        let mut range = None;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end().to_string();
            if header.is_empty() {
                break;
            }
            if let Some(v) = header
                .strip_prefix("Range:")
                .or_else(|| header.strip_prefix("range:"))
            {
                range = Some(v.trim().to_string());
            }
        }
        let (file, cut, reset, stall, misrange) = {
            let mut s = state.lock().unwrap();
            s.targets.push(target);
            s.seen.push(Seen {
                path: path.clone(),
                range: range.clone(),
            });
            let (cut, reset, stall) = if range.is_none() {
                (
                    s.cut.remove(&path),
                    s.reset.remove(&path),
                    s.stall.remove(&path),
                )
            } else {
                (None, None, None)
            };
            let misrange = range.is_some() && s.misrange.remove(&path);
            (s.files.get(&path).cloned(), cut, reset, stall, misrange)
        };
        let Some(file) = file else {
            out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
            continue;
        };
        let mut data = Vec::new();
        std::fs::File::open(&file)?.read_to_end(&mut data)?;
        let len = data.len() as u64;
        let start = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.trim_end_matches('-').parse::<u64>().ok())
            .unwrap_or(0)
            .min(len);
        let start = if misrange { 0 } else { start };
        // A registry serves box metadata at `/OWNER/NAME`, no extension.
        let kind = if path.ends_with(".json") || data.first() == Some(&b'{') {
            "application/json"
        } else {
            "application/octet-stream"
        };
        let head = if range.is_some() {
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{len}\r\n\r\n",
                len - start,
                len.saturating_sub(1)
            )
        } else {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {len}\r\nAccept-Ranges: bytes\r\n\r\n"
            )
        };
        out.write_all(head.as_bytes())?;
        let body = &data[start as usize..];
        if let Some(n) = stall {
            out.write_all(&body[..(n as usize).min(body.len())])?;
            out.flush()?;
            // Silent, the connection open, until the client gives up.
            let mut rest = [0u8; 1];
            let _ = reader.read(&mut rest);
            return Ok(());
        }
        if let Some(n) = reset {
            out.write_all(&body[..(n as usize).min(body.len())])?;
            out.flush()?;
            // SO_LINGER with a zero timeout: closing sends RST, not FIN.
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: setsockopt on this stream's open socket, with a value
            // of the size given.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&out),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            drop(reader);
            drop(out);
            return Ok(());
        }
        match cut {
            Some(n) => {
                out.write_all(&body[..(n as usize).min(body.len())])?;
                out.flush()?;
                // Drop the connection mid-body.
                let _ = out.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            None => out.write_all(body)?,
        }
        out.flush()?;
    }
}
