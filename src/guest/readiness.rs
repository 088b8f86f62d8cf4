//! Readiness probes: what a machine declares it needs before it counts as
//! up (a port listening, a command succeeding, an HTTP status), checked in
//! the guest by one script that retries until all pass or the time is up,
//! then names the probe that did not pass. The script needs only a POSIX
//! shell: ports come from /proc/net/tcp, HTTP through curl, wget or python3.

use crate::envfile::Probe;
use crate::util::shell::shell_quote;

/// The shell functions the probes use.
const HELPERS: &str = r#"listening() {
  p=$(printf ':%04X ' "$1")
  grep -qi "$p[0-9a-f]*:[0-9a-f]* 0A" /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
http_status() {
  if command -v curl >/dev/null 2>&1; then
    curl -s -o /dev/null -m 5 -w '%{http_code}' "$1"
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c 'import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("no answer")' "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -S -T 5 -O /dev/null "$1" 2>&1 | awk '/HTTP\// { c = $2 } END { print (c == "" ? "no answer" : c) }'
  else
    echo "no curl, python3 or wget in the guest"
  fi
}
"#;

/// A script that retries every probe until all pass (exit 0) or
/// `timeout_secs` pass (exit 1, the probe that did not pass on stderr).
pub fn wait_script(probes: &[Probe], timeout_secs: u64) -> String {
    let mut s = String::from(HELPERS);
    let mut checks = String::new();
    for probe in probes {
        let check = match probe {
            Probe::Port(port) => format!("listening {port}"),
            Probe::Command(command) => format!("sh -c {} >/dev/null 2>&1", shell_quote(command)),
            Probe::Http { url, status } => format!(
                "last=$(http_status {url}); [ \"$last\" = {status} ]",
                url = shell_quote(url)
            ),
        };
        checks.push_str(&format!(
            "  if ! {{ {check}; }}; then failed={}; else ",
            shell_quote(&probe.describe())
        ));
    }
    checks.push_str("failed=\"\"; ");
    checks.push_str(&"fi; ".repeat(probes.len()));
    s.push_str(&format!(
        "deadline=$(( $(date +%s) + {timeout_secs} ))\n\
         while :; do\n  last=\"\"\n{checks}\n  [ -z \"$failed\" ] && exit 0\n  \
         if [ \"$(date +%s)\" -ge \"$deadline\" ]; then\n    \
         echo \"not ready within {timeout_secs} s: $failed${{last:+ (last answer: $last)}}\" >&2\n    exit 1\n  fi\n  \
         sleep 1\ndone\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn run(script: &str) -> std::process::Output {
        Command::new("sh").arg("-c").arg(script).output().unwrap()
    }

    #[test]
    fn probes_are_named_for_messages() {
        assert_eq!(Probe::Port(80).describe(), "port 80 listening");
        assert_eq!(
            Probe::Http {
                url: "http://localhost/".into(),
                status: 204
            }
            .describe(),
            "http://localhost/ answering 204"
        );
    }

    #[test]
    fn a_listening_port_and_a_passing_command_are_ready_at_once() {
        // The host's own /proc/net/tcp stands in for the guest's.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let out = run(&wait_script(
            &[Probe::Port(port), Probe::Command("test 1 = 1".into())],
            5,
        ));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn a_probe_that_never_passes_is_named_when_the_time_is_up() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let started = std::time::Instant::now();
        let out = run(&wait_script(
            &[Probe::Command("true".into()), Probe::Port(port)],
            1,
        ));
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("not ready within 1 s: port {port} listening")),
            "{stderr}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        let out = run(&wait_script(&[Probe::Command("exit 3".into())], 0));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("command `exit 3` succeeding"), "{stderr}");
    }

    #[test]
    fn an_http_status_is_waited_for_and_the_last_answer_reported() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for stream in listener.incoming().flatten().take(20) {
                let mut stream = stream;
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf);
                let _ = stream
                    .write_all(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
            }
        });
        let url = format!("http://127.0.0.1:{port}/");
        let out = run(&wait_script(
            &[Probe::Http {
                url: url.clone(),
                status: 200,
            }],
            1,
        ));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains(&format!("{url} answering 200 (last answer: 503)")),
            "{stderr}"
        );
        let out = run(&wait_script(&[Probe::Http { url, status: 503 }], 5));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
