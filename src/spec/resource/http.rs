//! `[http."http://..."]`: a URL fetched from inside the guest, with curl,
//! else a raw HTTP/1.0 request through bash (plain http://), else python3.

use super::common::{AttrType, CONTENT_LIMIT, Resource};
use crate::spec::check::Check;
use crate::spec::facts::{Facts, Fields, Found, Observed, get};
use crate::util::shell::shell_quote;

/// HTTP(S) URLs.
pub struct Http;

/// HTTP from the guest when it lacks curl: status, headers and body into
/// three files (argv: url, timeout, status, headers, body).
const HTTP_PY: &str = "import sys, urllib.request, urllib.error
url, t, sf, hf, bf = sys.argv[1:6]
try:
    r = urllib.request.urlopen(url, timeout=float(t))
except urllib.error.HTTPError as e:
    r = e
code = r.getcode() if hasattr(r, \"getcode\") else r.code
open(sf, \"w\").write(str(code))
open(hf, \"w\").write(\"HTTP %s\\r\\n\" % code + \"\".join(\"%s: %s\\r\\n\" % kv for kv in r.headers.items()))
open(bf, \"wb\").write(r.read())
";

impl Resource for Http {
    fn attributes(&self) -> &'static [(&'static str, AttrType)] {
        &[
            ("status", AttrType::Number),
            ("body", AttrType::Patterns),
            ("headers", AttrType::Patterns),
        ]
    }

    fn recorded(&self) -> &'static [&'static str] {
        &["status"]
    }

    fn check_name(&self, name: &str) -> Result<(), String> {
        if name.starts_with("http://") || name.starts_with("https://") {
            Ok(())
        } else {
            Err(format!("`{name}` is not an http:// or https:// URL"))
        }
    }

    fn timed(&self) -> bool {
        true
    }

    fn gather(&self, id: usize, check: &Check) -> String {
        let n = shell_quote(&check.name);
        let t = check.time_limit().as_secs().max(1);
        // Plain http:// without curl: a raw HTTP/1.0 request through
        // bash's /dev/tcp (python3 would cost a second under TCG).
        let raw = plain_http(&check.name)
            .map(|(host, port, path)| {
                let request = shell_quote(&format!(
                    "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: env-verify\r\nConnection: close\r\n\r\n"
                ));
                format!(
                    "elif has bash && has timeout; then\n\
                     timeout {t} bash -c 'exec 3<>\"/dev/tcp/$0/$1\" && printf %s \"$2\" >&3 && head -c {CONTENT_LIMIT} <&3' {h} {port} {request} > \"$T/r{id}\" 2> \"$T/x{id}\"\n\
                     emit {id} raw \"$T/r{id}\"; [ -s \"$T/x{id}\" ] && emit {id} error \"$T/x{id}\"\n",
                    h = shell_quote(&host)
                )
            })
            .unwrap_or_default();
        format!(
            "if has curl; then\n\
             tmo {t} curl -sS -L -m {t} -o \"$T/b{id}\" -D \"$T/h{id}\" -w '%{{http_code}}' {n} > \"$T/s{id}\" 2> \"$T/x{id}\"\n\
             val {id} status \"$(cat \"$T/s{id}\")\"; [ -s \"$T/x{id}\" ] && emit {id} error \"$T/x{id}\"\n\
             {raw}\
             elif has python3; then\n\
             python3 -c {py} {n} {t} \"$T/s{id}\" \"$T/h{id}\" \"$T/b{id}\" 2> \"$T/x{id}\"\n\
             val {id} status \"$(cat \"$T/s{id}\" 2>/dev/null)\"; [ -s \"$T/x{id}\" ] && emit {id} error \"$T/x{id}\"\n\
             else val {id} error 'neither curl nor python3 in the guest'; fi\n\
             [ -f \"$T/h{id}\" ] && emit {id} headers \"$T/h{id}\"\n\
             [ -f \"$T/b{id}\" ] && head -c {CONTENT_LIMIT} \"$T/b{id}\" > \"$T/bb{id}\" && emit {id} body \"$T/bb{id}\"\n",
            py = shell_quote(HTTP_PY)
        )
    }

    fn observe(&self, _: &Check, f: &Fields, _: &Facts) -> Observed {
        let mut seen = Observed::new();
        let raw = f.get("raw").map(|r| split_response(r));
        let raw_status = raw.as_ref().map(|(status, _, _)| status.to_string());
        let status = get(f, "status")
            .or(raw_status)
            .and_then(|s| s.trim().parse::<i64>().ok())
            .filter(|s| *s > 0);
        let Some(status) = status else {
            let why = get(f, "error").unwrap_or_default();
            let why = why.lines().last().unwrap_or("no answer").trim().to_string();
            for key in ["status", "body", "headers"] {
                seen.insert(key, Found::Absent(format!("request failed: {why}")));
            }
            return seen;
        };
        seen.insert("status", Found::Number(status));
        let (body, headers) = match raw {
            Some((_, headers, body)) => (body, headers),
            None => (
                get(f, "body").unwrap_or_default(),
                get(f, "headers").unwrap_or_default(),
            ),
        };
        seen.insert("body", Found::Text(body));
        seen.insert("headers", Found::Text(headers));
        seen
    }

    fn error_is_a_finding(&self) -> bool {
        true
    }
}

/// Status, header block and body of a raw HTTP response (0 when it is not one).
fn split_response(raw: &[u8]) -> (i64, String, String) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = match text.find("\r\n\r\n") {
        Some(i) => (&text[..i], &text[i + 4..]),
        None => (&text[..], ""),
    };
    let status = head
        .lines()
        .next()
        .filter(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// Host, port and path of a plain `http://` URL that a raw request can
/// fetch (no credentials; anything odd is left to curl or python3).
pub fn plain_http(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
        _ => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
    valid.then(|| (host.to_string(), port, path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_urls_split() {
        assert_eq!(
            plain_http("http://localhost/"),
            Some(("localhost".into(), 80, "/".into()))
        );
        assert_eq!(
            plain_http("http://127.0.0.1:8000/a?b=1"),
            Some(("127.0.0.1".into(), 8000, "/a?b=1".into()))
        );
        assert_eq!(
            plain_http("http://[::1]:81"),
            Some(("::1".into(), 81, "/".into()))
        );
        assert_eq!(plain_http("https://x/"), None);
        assert_eq!(plain_http("http://u:p@x/"), None);
    }
}
