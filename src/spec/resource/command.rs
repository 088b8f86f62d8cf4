//! `[command."..."]`: a command's exit status and output, run in the guest
//! as root, side by side with the other checks that run something.

use super::common::{AttrType, Resource};
use crate::spec::check::Check;
use crate::spec::facts::{Facts, Fields, Found, Observed, get};
use crate::util::shell::shell_quote;

/// Commands.
pub struct Command;

impl Resource for Command {
    fn attributes(&self) -> &'static [(&'static str, AttrType)] {
        &[
            ("exit_status", AttrType::Number),
            ("stdout", AttrType::Patterns),
            ("stderr", AttrType::Patterns),
        ]
    }

    fn recorded(&self) -> &'static [&'static str] {
        &["exit_status", "stdout"]
    }

    fn timed(&self) -> bool {
        true
    }

    fn gather(&self, id: usize, check: &Check) -> String {
        let n = shell_quote(&check.name);
        let t = check.time_limit().as_secs().max(1);
        if check.timeout.is_some() {
            format!(
                "timeout {t} sh -c {n} > \"$T/o{id}\" 2> \"$T/e{id}\" < /dev/null; val {id} exit_status $?\n\
                 etext {id} stdout \"$T/o{id}\"; etext {id} stderr \"$T/e{id}\"\n"
            )
        } else {
            // Without its own timeout a command runs in the subshell itself
            // (no process for sh or timeout: the run's limit bounds it).
            format!(
                "(eval {n}) > \"$T/o{id}\" 2> \"$T/e{id}\" < /dev/null; val {id} exit_status $?\n\
                 etext {id} stdout \"$T/o{id}\"; etext {id} stderr \"$T/e{id}\"\n"
            )
        }
    }

    fn observe(&self, check: &Check, f: &Fields, _: &Facts) -> Observed {
        let mut seen = Observed::new();
        if let Some(code) = get(f, "exit_status").and_then(|c| c.parse().ok()) {
            seen.insert(
                "exit_status",
                if code == 124 {
                    Found::Absent(format!(
                        "124: timed out after {} s",
                        check.time_limit().as_secs()
                    ))
                } else {
                    Found::Number(code)
                },
            );
        }
        for key in ["stdout", "stderr"] {
            if let Some(text) = get(f, key) {
                seen.insert(
                    if key == "stdout" { "stdout" } else { "stderr" },
                    Found::Text(text),
                );
            }
        }
        seen
    }
}
