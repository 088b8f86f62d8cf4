//! Compiling checks into ONE POSIX shell script, and reading its output.
//! The script only gathers facts (no agent to install: `/bin/sh` and the
//! usual tools); judging happens on the host (`judge`). What each resource
//! type gathers is its own (`resource/`); this file puts it together.
//!
//! Under TCG every process the guest starts costs 60-80 ms, so the script
//! starts as few as it can: one `awk` reads all the files the checks need
//! (`/proc/net/*`, dpkg's database, `/etc/passwd`, each process's status),
//! one `stat` covers every file check, values come from shell builtins, and
//! only checks that must run something (commands, HTTP, DNS, connections)
//! run side by side in subshells. Facts come back framed by a token chosen
//! per run, so no content can fake a frame.

use super::check::{Check, Kind};
use super::facts::Facts;
use super::resource;
use crate::util::shell::shell_quote;

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

/// Compiles the checks `ids` (indexes into `checks`) into one script
/// whose frames carry `token`.
pub fn compile(checks: &[&Check], ids: &[usize], token: &str) -> String {
    let chosen: Vec<(usize, &Check)> = ids.iter().map(|i| (*i, checks[*i])).collect();
    let of_kind = |k: Kind| -> Vec<&Check> {
        chosen
            .iter()
            .filter(|(_, c)| c.kind == k)
            .map(|(_, c)| *c)
            .collect()
    };
    let scratch = chosen
        .iter()
        .any(|(_, c)| resource::of(c.kind).needs_scratch(c));
    let background = chosen.iter().any(|(_, c)| resource::of(c.kind).timed());
    let mut out = format!(
        "#!/bin/sh\n# env verify: the facts of {} checks\n",
        ids.len()
    );
    out.push_str(&prelude(token, scratch));

    // Files read by the one awk, each once.
    let mut files: Vec<String> = Vec::new();
    for kind in Kind::ALL {
        for check in of_kind(*kind) {
            for file in resource::of(*kind).shared_files(check) {
                if !files.contains(&file) {
                    files.push(file);
                }
            }
        }
    }
    if !files.is_empty() {
        out.push_str(&format!(
            "awk -v t=\"$K\" {} {}\n",
            shell_quote(DUMP_AWK),
            files.join(" ")
        ));
    }
    // What each resource type asks once for all its checks.
    for kind in Kind::ALL {
        let mine = of_kind(*kind);
        if !mine.is_empty() {
            out.push_str(&resource::of(*kind).shared_script(&mine));
        }
    }
    for (id, check) in &chosen {
        let r = resource::of(check.kind);
        let body = r.gather(*id, check);
        if r.timed() {
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

/// Hands the shared facts that answer each check to that check (a file's
/// `stat` line, a user's passwd line, a service's state...): each
/// resource type knows which are its own.
pub fn distribute(checks: &[&Check], ids: &[usize], facts: &mut Facts) {
    let mut seen_of_kind: std::collections::HashMap<Kind, usize> = Default::default();
    for &id in ids {
        let check = checks[id];
        let nth = seen_of_kind.entry(check.kind).or_default();
        let place = *nth;
        *nth += 1;
        let Some(mut own) = facts.checks.remove(&id) else {
            continue;
        };
        resource::of(check.kind).distribute(check, place, facts, &mut own);
        facts.checks.insert(id, own);
    }
}
