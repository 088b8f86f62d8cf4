//! Compiling checks into ONE POSIX shell script, and reading its output.
//! The script only gathers facts (no agent to install: `/bin/sh` and the
//! usual tools); judging happens on the host ([`super::judge`]).
//!
//! Under TCG every process the guest starts costs 60-80 ms, so the script
//! starts as few as it can: one `awk` reads all the files the checks need
//! (`/proc/net/*`, dpkg's database, `/etc/passwd`, each process's status),
//! one `stat` covers every file check, values come from shell builtins, and
//! only checks that must run something (commands, HTTP, DNS, connections)
//! run side by side in subshells. Facts come back framed by a token chosen
//! per run, so no content can fake a frame.

use super::model::{Check, Kind, parse_addr};
use crate::util::shell::shell_quote;
use std::collections::HashMap;

/// How many bytes of a file's contents or an HTTP body are fetched.
pub const CONTENT_LIMIT: usize = 1 << 20;

/// Facts of the whole guest (the `_` record id) and of each check.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    /// Facts shared by all checks, by file path (`/proc/net/tcp`) or name.
    pub shared: HashMap<String, Vec<u8>>,
    /// Facts per check index.
    pub checks: HashMap<usize, HashMap<String, Vec<u8>>>,
}

/// The guest command that runs a compiled script from stdin as root (sudo
/// unless the login user is root already).
pub const RUNNER: &str = "case \"$LOGNAME\" in root) exec sh -s;; esac; exec sudo -n sh -s";

/// Reads files into frames, in one process: each file as `_ PATH`, each
/// `/proc/N/status` folded into one `_ procs` list of "uid name" lines.
/// Missing files are skipped (getline fails instead of aborting awk), and
/// files are read whole (`read` in dash reads a byte at a time, and
/// `/proc/sys` answers only the first such read).
const DUMP_AWK: &str = r#"BEGIN {
  for (i = 1; i < ARGC; i++) {
    f = ARGV[i]
    if (f == "MODULES_BUILTIN") {
      getline release < "/proc/sys/kernel/osrelease"
      f = "/lib/modules/" release "/modules.builtin"
    }
    if (f ~ /^\/proc\/[0-9]+\/status$/) {
      n = ""; u = ""
      while ((getline l < f) > 0) {
        if (l ~ /^Name:/) { sub(/^Name:[ \t]*/, "", l); n = l }
        else if (l ~ /^Uid:/) { split(l, a, /[ \t]+/); u = a[2] }
      }
      close(f)
      if (n != "") procs = procs u " " n "\n"
      continue
    }
    if ((getline l < f) <= 0) { close(f); continue }
    printf "@@%s _ %s\n%s\n", t, f, l
    while ((getline l < f) > 0) print l
    close(f)
    printf "\n@@%s-end\n", t
  }
  if (procs != "") printf "@@%s _ procs\n%s\n@@%s-end\n", t, procs, t
  exit
}"#;

fn prelude(token: &str, scratch: bool) -> String {
    let mut s = format!(
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         LC_ALL=C\n\
         export PATH LC_ALL\n\
         K={token}\n\
         # val ID KEY VALUE: one framed fact, from a builtin\n\
         val() {{ printf '@@%s %s %s\\n%s\\n@@%s-end\\n' \"$K\" \"$1\" \"$2\" \"$3\" \"$K\"; }}\n\
         # emit ID KEY FILE: the same for a file's contents (one cat)\n\
         emit() {{ printf '@@%s %s %s\\n' \"$K\" \"$1\" \"$2\"; cat \"$3\"; printf '\\n@@%s-end\\n' \"$K\"; }}\n\
         # etext ID KEY FILE: a short text file through builtins (no cat)\n\
         etext() {{ printf '@@%s %s %s\\n' \"$K\" \"$1\" \"$2\"; while IFS= read -r l || [ -n \"$l\" ]; do printf '%s\\n' \"$l\"; done < \"$3\"; printf '\\n@@%s-end\\n' \"$K\"; }}\n\
         has() {{ command -v \"$1\" >/dev/null 2>&1; }}\n\
         tmo() {{ s=$1; shift; if has timeout; then timeout \"$s\" \"$@\"; else \"$@\"; fi; }}\n\
         # inlist NAME FILE: NAME is the first field of a line of FILE\n\
         inlist() {{ while IFS=: read -r n _; do [ \"$n\" = \"$1\" ] && return 0; done < \"$2\"; return 1; }}\n"
    );
    if scratch {
        s.push_str("T=$(mktemp -d /tmp/env-verify.XXXXXX) || exit 97\ntrap 'rm -rf \"$T\"' EXIT\n");
    }
    s
}

/// A token for the frames of one run: content cannot guess it.
pub fn new_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    format!("envF{:016x}", h.finish())
}

/// Checks that must run something of their own: run side by side.
fn runs_alone(kind: Kind) -> bool {
    matches!(kind, Kind::Command | Kind::Http | Kind::Dns | Kind::Addr)
}

/// Compiles the checks `ids` (indexes into `checks`) into one script
/// whose frames carry `token`.
pub fn compile(checks: &[&Check], ids: &[usize], token: &str) -> String {
    let chosen: Vec<(usize, &Check)> = ids.iter().map(|i| (*i, checks[*i])).collect();
    let has = |k: Kind| chosen.iter().any(|(_, c)| c.kind == k);
    let wants = |c: &Check, a: &str| c.expect.iter().any(|(x, _)| x == a);
    let background = chosen.iter().any(|(_, c)| runs_alone(c.kind));
    let contents = chosen
        .iter()
        .any(|(_, c)| c.kind == Kind::File && wants(c, "contains"));
    let mut out = format!(
        "#!/bin/sh\n# env verify: the facts of {} checks\n",
        ids.len()
    );
    out.push_str(&prelude(token, background || contents));

    // Files read by the one awk.
    let mut files: Vec<String> = Vec::new();
    if has(Kind::Port) {
        files.extend(
            [
                "/proc/net/tcp",
                "/proc/net/tcp6",
                "/proc/net/udp",
                "/proc/net/udp6",
            ]
            .map(String::from),
        );
    }
    if has(Kind::Package) {
        files.push("/var/lib/dpkg/status".into());
    }
    if has(Kind::Mount) {
        files.push("/proc/mounts".into());
    }
    if has(Kind::KernelModule) {
        files.push("/proc/modules".into());
        files.push("MODULES_BUILTIN".into());
    }
    for (_, c) in chosen.iter().filter(|(_, c)| c.kind == Kind::KernelParam) {
        files.push(shell_quote(&kernel_param_path(&c.name)));
    }
    for (_, c) in chosen.iter().filter(|(_, c)| c.kind == Kind::Interface) {
        files.push(shell_quote(&format!("/sys/class/net/{}/mtu", c.name)));
    }
    if has(Kind::User) || has(Kind::Group) || has(Kind::Process) {
        files.extend(["/etc/passwd", "/etc/group"].map(String::from));
    }
    if has(Kind::Process) {
        files.push("/proc/[0-9]*/status".into());
    }
    if !files.is_empty() {
        out.push_str(&format!(
            "awk -v t=\"$K\" {} {}\n",
            shell_quote(DUMP_AWK),
            files.join(" ")
        ));
    }
    let file_names: Vec<String> = chosen
        .iter()
        .filter(|(_, c)| c.kind == Kind::File)
        .map(|(_, c)| shell_quote(&c.name))
        .collect();
    if !file_names.is_empty() {
        out.push_str(&format!(
            "val _ stat \"$(QUOTING_STYLE=literal stat -c '%F|%a|%U|%G|%s|%n' -- {} 2>/dev/null)\"\n",
            file_names.join(" ")
        ));
        out.push_str(&format!(
            "val _ links \"$(for f in {}; do [ -L \"$f\" ] && printf '%s\\n%s\\n' \"$f\" \"$(readlink \"$f\")\"; done)\"\n",
            file_names.join(" ")
        ));
        let hashed: Vec<String> = chosen
            .iter()
            .filter(|(_, c)| c.kind == Kind::File && wants(c, "sha256"))
            .map(|(_, c)| shell_quote(&c.name))
            .collect();
        if !hashed.is_empty() {
            out.push_str(&format!(
                "val _ sha256 \"$(sha256sum -- {} 2>/dev/null)\"\n",
                hashed.join(" ")
            ));
        }
    }
    if has(Kind::Interface) {
        out.push_str("val _ ip_addr \"$(ip -o addr show 2>/dev/null)\"\n");
    }
    let units: Vec<String> = chosen
        .iter()
        .filter(|(_, c)| c.kind == Kind::Service)
        .map(|(_, c)| shell_quote(&c.name))
        .collect();
    if !units.is_empty() {
        // One systemctl for every service: its blocks come in this order.
        out.push_str(&format!(
            "has systemctl && val _ services \"$(systemctl show -p LoadState -p UnitFileState -p ActiveState -- {} 2>&1)\"\n",
            units.join(" ")
        ));
    }
    for (id, check) in &chosen {
        let body = gather(*id, check);
        if runs_alone(check.kind) {
            out.push_str(&format!("(\n{body}) > \"$T/{id}\" 2>/dev/null &\n"));
        } else {
            out.push_str(&body);
        }
    }
    if background {
        out.push_str("wait\ncat \"$T\"/[0-9]*\n");
    }
    out.push_str("exit 0\n");
    out
}

/// The shell that gathers one check's own facts.
fn gather(id: usize, check: &Check) -> String {
    let n = shell_quote(&check.name);
    let t = check.time_limit().as_secs().max(1);
    match check.kind {
        Kind::Package => format!(
            "if [ -r /var/lib/dpkg/status ]; then val {id} manager dpkg\n\
             elif has rpm; then\n\
             if rpm -q {n} >/dev/null 2>&1; then val {id} installed 1; else val {id} installed 0; fi\n\
             val {id} version \"$(rpm -q --qf '%{{EPOCHNUM}}:%{{VERSION}}-%{{RELEASE}}' {n} 2>/dev/null)\"\n\
             elif has apk; then\n\
             if apk info -e {n} >/dev/null 2>&1; then val {id} installed 1; else val {id} installed 0; fi\n\
             val {id} version \"$(apk info -v {n} 2>/dev/null | head -n1)\"\n\
             else val {id} error 'no package manager (dpkg, rpm, apk) in the guest'; fi\n"
        ),
        Kind::Service => format!(
            "if has systemctl; then val {id} seen 1\n\
             elif has service; then\n\
             if service {n} status >/dev/null 2>&1; then val {id} show ActiveState=active; else val {id} show ActiveState=inactive; fi\n\
             else val {id} error 'neither systemctl nor service in the guest'; fi\n"
        ),
        // Judged from the shared facts.
        Kind::Port | Kind::Mount | Kind::Process | Kind::KernelModule => {
            format!("val {id} seen 1\n")
        }
        Kind::File if check.expect.iter().any(|(a, _)| a == "contains") => format!(
            "val {id} seen 1\n\
             if [ -f {n} ] && [ -r {n} ]; then head -c {CONTENT_LIMIT} {n} > \"$T/c{id}\" && emit {id} contents \"$T/c{id}\"; fi\n"
        ),
        Kind::File => format!("val {id} seen 1\n"),
        // Without its own timeout a command runs in the subshell itself
        // (no process for sh or timeout: the run's limit bounds it).
        Kind::Command if check.timeout.is_some() => format!(
            "timeout {t} sh -c {n} > \"$T/o{id}\" 2> \"$T/e{id}\" < /dev/null; val {id} exit_status $?\n\
             etext {id} stdout \"$T/o{id}\"; etext {id} stderr \"$T/e{id}\"\n"
        ),
        Kind::Command => format!(
            "(eval {n}) > \"$T/o{id}\" 2> \"$T/e{id}\" < /dev/null; val {id} exit_status $?\n\
             etext {id} stdout \"$T/o{id}\"; etext {id} stderr \"$T/e{id}\"\n"
        ),
        // Local accounts from the shared /etc/passwd and /etc/group; others
        // (LDAP, SSSD) through NSS.
        Kind::User => format!(
            "val {id} seen 1\n\
             inlist {n} /etc/passwd || {{ val {id} passwd \"$(getent passwd {n})\"; val {id} groups \"$(id -Gn {n} 2>/dev/null)\"; }}\n"
        ),
        Kind::Group => format!(
            "val {id} seen 1\ninlist {n} /etc/group || val {id} group \"$(getent group {n})\"\n"
        ),
        Kind::KernelParam => format!("val {id} seen 1\n"),
        Kind::Http => {
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
        Kind::Dns => format!(
            "{limit}getent ahosts {n} > \"$T/d{id}\" 2>/dev/null; val {id} rc $?; etext {id} answer \"$T/d{id}\"\n",
            limit = if check.timeout.is_some() {
                format!("tmo {t} ")
            } else {
                String::new()
            }
        ),
        Kind::Addr => {
            let (host, port) = parse_addr(&check.name).unwrap_or_default();
            let (h, p) = (shell_quote(&host), port);
            format!(
                "if has timeout && has bash; then timeout {t} bash -c 'exec 3<>\"/dev/tcp/$0/$1\"' {h} {p} 2>/dev/null; val {id} rc $?\n\
                 elif has python3; then python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), float(sys.argv[3]))' {h} {p} {t} 2>/dev/null; val {id} rc $?\n\
                 elif has nc; then nc -z -w {t} {h} {p} 2>/dev/null; val {id} rc $?\n\
                 else val {id} error 'no bash, python3 or nc in the guest to open a connection'; fi\n"
            )
        }
        Kind::Interface => {
            let d = shell_quote(&format!("/sys/class/net/{}", check.name));
            format!("if [ -d {d} ]; then val {id} exists 1; else val {id} exists 0; fi\n")
        }
    }
}

/// The `/proc/sys` file of a kernel parameter (`net.ipv4.ip_forward`, or
/// with slashes when a name holds dots: `net/ipv4/conf/eth0.1/forwarding`).
pub fn kernel_param_path(name: &str) -> String {
    if name.contains('/') {
        format!("/proc/sys/{}", name.trim_start_matches('/'))
    } else {
        format!("/proc/sys/{}", name.replace('.', "/"))
    }
}

/// Reads the script's framed output. Anything outside frames (a login
/// banner, a stray message) is ignored.
pub fn parse_output(out: &[u8], token: &str) -> Facts {
    let mut facts = Facts::default();
    let start = format!("@@{token} ");
    let end = format!("\n@@{token}-end\n");
    let mut rest = out;
    while let Some(at) = find(rest, start.as_bytes()) {
        let after = &rest[at + start.len()..];
        let Some(eol) = after.iter().position(|b| *b == b'\n') else {
            break;
        };
        let header = String::from_utf8_lossy(&after[..eol]).to_string();
        let body = &after[eol + 1..];
        let (value, next) = match find(body, end.as_bytes()) {
            Some(stop) => (&body[..stop], &body[stop + end.len()..]),
            None => (body, &body[body.len()..]),
        };
        if let Some((id, key)) = header.split_once(' ') {
            if id == "_" {
                facts.shared.insert(key.to_string(), value.to_vec());
            } else if let Ok(id) = id.parse::<usize>() {
                facts
                    .checks
                    .entry(id)
                    .or_default()
                    .insert(key.to_string(), value.to_vec());
            }
        }
        rest = next;
    }
    facts
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Hands the shared facts that answer one check to that check: a file's
/// `stat` line, link target and hash; a user's passwd line and groups from
/// the local files; a service's state; an interface's addresses.
pub fn distribute(checks: &[&Check], ids: &[usize], facts: &mut Facts) {
    let shared = |key: &str| {
        facts
            .shared
            .get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let (stat, links, sums, passwd, group, ip) = (
        shared("stat"),
        shared("links"),
        shared("sha256"),
        shared("/etc/passwd"),
        shared("/etc/group"),
        shared("ip_addr"),
    );
    let services = shared("services");
    let mut blocks = services.split("\n\n");
    let mut service_block: HashMap<usize, String> = HashMap::new();
    for &id in ids.iter().filter(|i| checks[**i].kind == Kind::Service) {
        service_block.insert(id, blocks.next().unwrap_or("").to_string());
    }
    for &id in ids {
        let check = checks[id];
        let Some(own) = facts.checks.get_mut(&id) else {
            continue;
        };
        let mut put = |key: &str, value: String| {
            own.entry(key.to_string()).or_insert(value.into_bytes());
        };
        match check.kind {
            Kind::File => {
                let suffix = format!("|{}", check.name);
                let line = stat.lines().find(|l| l.ends_with(&suffix));
                put("exists", if line.is_some() { "1" } else { "0" }.into());
                if let Some(line) = line {
                    put("stat", line[..line.len() - suffix.len()].to_string());
                }
                let mut pairs = links.lines();
                while let (Some(path), Some(target)) = (pairs.next(), pairs.next()) {
                    if path == check.name {
                        put("link", target.to_string());
                    }
                }
                if let Some(hash) = sums
                    .lines()
                    .find(|l| l.ends_with(&format!("  {}", check.name)))
                    .and_then(|l| l.split_whitespace().next())
                {
                    put("sha256", hash.trim_start_matches('\\').to_string());
                }
            }
            Kind::User => {
                if let Some(line) = passwd
                    .lines()
                    .find(|l| l.split(':').next() == Some(&check.name))
                {
                    let gid = line.split(':').nth(3).unwrap_or("");
                    let mut groups: Vec<&str> = Vec::new();
                    for g in group.lines() {
                        let f: Vec<&str> = g.split(':').collect();
                        if f.len() < 4 {
                            continue;
                        }
                        let member = f[3].split(',').any(|m| m == check.name);
                        if (f[2] == gid || member) && !groups.contains(&f[0]) {
                            groups.push(f[0]);
                        }
                    }
                    put("passwd", line.to_string());
                    put("groups", groups.join(" "));
                }
            }
            Kind::Group => {
                if let Some(line) = group
                    .lines()
                    .find(|l| l.split(':').next() == Some(&check.name))
                {
                    put("group", line.to_string());
                }
            }
            Kind::Service => {
                let show = own
                    .get("show")
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .or_else(|| service_block.get(&id).cloned())
                    .unwrap_or_default();
                let field = |k: &str| {
                    show.lines()
                        .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                        .unwrap_or("")
                        .to_string()
                };
                let (unit_file, active, load) = (
                    field("UnitFileState"),
                    field("ActiveState"),
                    field("LoadState"),
                );
                let mut put = |key: &str, value: String| {
                    own.entry(key.to_string()).or_insert(value.into_bytes());
                };
                if !unit_file.is_empty() || load == "not-found" {
                    // What `systemctl is-enabled` calls enabled.
                    let enabled = matches!(
                        unit_file.as_str(),
                        "enabled"
                            | "enabled-runtime"
                            | "static"
                            | "alias"
                            | "indirect"
                            | "generated"
                    );
                    put("enabled_rc", if enabled { "0" } else { "1" }.into());
                    put(
                        "enabled",
                        if load == "not-found" {
                            "not-found".into()
                        } else {
                            unit_file
                        },
                    );
                }
                put("active", active);
            }
            Kind::KernelParam => match facts_shared(&facts.shared, &kernel_param_path(&check.name))
            {
                Some(v) => put("value", v),
                None => put("error", "no such kernel parameter".into()),
            },
            Kind::Interface => {
                if let Some(mtu) =
                    facts_shared(&facts.shared, &format!("/sys/class/net/{}/mtu", check.name))
                {
                    put("mtu", mtu);
                }
                let lines: Vec<&str> = ip
                    .lines()
                    .filter(|l| {
                        l.split_whitespace()
                            .nth(1)
                            .map(|n| n.split('@').next() == Some(&check.name))
                            .unwrap_or(false)
                    })
                    .collect();
                put("addrs", lines.join("\n"));
            }
            _ => {}
        }
    }
}

fn facts_shared(shared: &HashMap<String, Vec<u8>>, key: &str) -> Option<String> {
    shared.get(key).map(|v| {
        String::from_utf8_lossy(v)
            .trim_end_matches('\n')
            .to_string()
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model;
    use std::path::Path;
    use std::process::Command;

    fn spec(text: &str) -> model::Spec {
        model::parse(Path::new("t.toml"), text).unwrap()
    }

    /// Runs a compiled script with the host's sh (it is POSIX shell).
    fn run_here(checks: &[&Check], ids: &[usize]) -> Facts {
        use std::io::Write;
        let token = new_token();
        let mut child = Command::new("sh")
            .arg("-s")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(compile(checks, ids, &token).as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let mut facts = parse_output(&out.stdout, &token);
        distribute(checks, ids, &mut facts);
        facts
    }

    #[test]
    fn frames_survive_any_content() {
        let t = "envFabc";
        let out = b"banner\n@@envFabc 0 stdout\na\n@@env\n\n@@envFabc-end\n@@envFabc _ /proc/mounts\nx y\n\n@@envFabc-end\ngarbage@@envFabc 1 rc\n0\n@@envFabc-end\n";
        let facts = parse_output(out, t);
        assert_eq!(facts.checks[&0]["stdout"], b"a\n@@env\n");
        assert_eq!(facts.shared["/proc/mounts"], b"x y\n");
        assert_eq!(facts.checks[&1]["rc"], b"0");
        // A cut-off frame keeps what arrived; another run's token is ignored.
        let facts = parse_output(b"@@envFzzz 3 x\nq\n@@envFzzz-end\n@@envFabc 2 x\nabc", t);
        assert_eq!(facts.checks[&2]["x"], b"abc");
        assert!(!facts.checks.contains_key(&3));
        assert_ne!(new_token(), new_token());
    }

    #[test]
    fn the_script_gathers_facts_in_one_run() {
        let s = spec(
            r#"
[command."echo \"it's\"; echo err >&2; exit 3"]
exit_status = 3
[file."/etc/hostname"]
exists = true
contains = "/./"
[file."/nonexistent/x"]
exists = false
[kernel_param."kernel.ostype"]
value = "Linux"
[mount."/"]
exists = true
[user.root]
uid = 0
[group.root]
gid = 0
[process.nothing-like-this]
running = false
[file."/etc/passwd"]
sha256 = "/./"
"#,
        );
        let checks: Vec<&Check> = s.checks.iter().collect();
        let ids: Vec<usize> = (0..checks.len()).collect();
        let script = compile(&checks, &ids, "envFx");
        assert_eq!(
            script.matches("(\n").count(),
            1,
            "only the command runs alone"
        );
        assert_eq!(script.matches("awk ").count(), 1, "one awk reads the files");
        let facts = run_here(&checks, &ids);
        assert_eq!(facts.checks[&0]["exit_status"], b"3");
        assert_eq!(facts.checks[&0]["stdout"], b"it's\n");
        assert_eq!(facts.checks[&0]["stderr"], b"err\n");
        assert_eq!(facts.checks[&1]["exists"], b"1");
        assert!(facts.checks[&1].contains_key("contents"));
        assert!(
            String::from_utf8_lossy(&facts.checks[&1]["stat"]).starts_with("regular"),
            "{:?}",
            facts.checks[&1]
        );
        assert_eq!(facts.checks[&2]["exists"], b"0");
        // Checks come grouped by resource type: the third file is check 3.
        assert_eq!(facts.checks[&3]["sha256"].len(), 64);
        assert_eq!(facts.checks[&4]["value"], b"Linux");
        assert!(facts.shared.contains_key("/proc/mounts"));
        assert!(String::from_utf8_lossy(&facts.checks[&6]["passwd"]).starts_with("root:"));
        assert!(String::from_utf8_lossy(&facts.checks[&7]["group"]).starts_with("root:"));
        assert!(facts.shared.contains_key("procs"));
        for (id, check) in checks.iter().enumerate() {
            let outcome = crate::spec::judge::judge(id, check, &facts);
            assert_eq!(
                outcome.verdict,
                crate::spec::judge::Verdict::Pass,
                "{outcome:?}"
            );
        }
    }

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

    #[test]
    fn names_are_quoted_not_run() {
        let s = spec("[file.\"/tmp/$(touch /tmp/env-pwned)\"]\nexists = false\n");
        let checks: Vec<&Check> = s.checks.iter().collect();
        let facts = run_here(&checks, &[0]);
        assert_eq!(facts.checks[&0]["exists"], b"0");
        assert!(!Path::new("/tmp/env-pwned").exists());
    }
}
#[cfg(test)]
#[test]
fn dump_example_script() {
    let spec =
        crate::spec::model::load(std::path::Path::new("examples/web/specs/web.toml")).unwrap();
    let checks: Vec<&Check> = spec.checks.iter().collect();
    let ids: Vec<usize> = (0..checks.len()).collect();
    std::fs::write("/tmp/example-script.sh", compile(&checks, &ids, "envFx")).unwrap();
}
