//! `[[triggers]]` as the Envfile reads them: defaults, order, and each
//! located error.

use super::EnvfileError;
use super::read::parse;
use super::triggers::*;
use std::path::Path;

const MACHINES: &str = "[machines.web]\nbox = \"b\"\n[machines.db]\nbox = \"b\"\n";

fn triggers(text: &str) -> Result<Vec<Trigger>, EnvfileError> {
    parse(Path::new("/p/Envfile"), &format!("{MACHINES}{text}")).map(|e| e.triggers)
}

#[test]
fn triggers_are_read_in_order_with_defaults() {
    let t = triggers(
        r#"
[[triggers]]
when = "before"
on = ["up", "provision"]
run = "echo hi"

[[triggers]]
name = "check"
when = "after"
on = ["up"]
machines = ["db"]
run_remote = "systemctl is-active postgresql"
on_error = "continue"
info = "checking the database"
"#,
    )
    .unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].name, "trigger 1");
    assert_eq!(t[0].on_error, OnError::Halt);
    assert!(t[0].fires(TriggerAction::Up, When::Before, "web"));
    assert!(t[0].fires(TriggerAction::Provision, When::Before, "db"));
    assert!(!t[0].fires(TriggerAction::Up, When::After, "web"));
    assert!(!t[0].fires(TriggerAction::Halt, When::Before, "web"));
    assert_eq!(t[1].name, "check");
    assert!(t[1].fires(TriggerAction::Up, When::After, "db"));
    assert!(
        !t[1].fires(TriggerAction::Up, When::After, "web"),
        "only db"
    );
    assert_eq!(t[1].on_error, OnError::Continue);
    assert_eq!(t[1].info.as_deref(), Some("checking the database"));
}

#[test]
fn bad_triggers_are_located_errors() {
    let cases = [
        (
            "when = \"during\"\non = [\"up\"]\nrun = \"x\"",
            6,
            "when",
            "unknown variant",
        ),
        (
            "when = \"before\"\non = [\"boot\"]\nrun = \"x\"",
            7,
            "on[0]",
            "unknown variant",
        ),
        (
            "when = \"before\"\non = []\nrun = \"x\"",
            7,
            "on",
            "name the commands",
        ),
        (
            "when = \"before\"\non = [\"up\"]",
            5,
            "triggers[0]",
            "something to run",
        ),
        (
            "when = \"before\"\non = [\"up\"]\nrun = \"x\"\nmachines = [\"cache\"]",
            9,
            "machines",
            "no machine `cache`",
        ),
        (
            "when = \"after\"\non = [\"up\", \"destroy\"]\nrun_remote = \"x\"",
            8,
            "run_remote",
            "after `destroy`",
        ),
        (
            "when = \"before\"\non = [\"up\"]\nrun = \"x\"\nonerror = \"halt\"",
            9,
            "onerror",
            "unknown field",
        ),
        (
            "when = \"before\"\non = [\"up\"]\nrun = \"x\"\non_error = \"ignore\"",
            9,
            "on_error",
            "unknown variant",
        ),
    ];
    for (body, line, field, message) in cases {
        let e = triggers(&format!("[[triggers]]\n{body}\n")).unwrap_err();
        assert_eq!(e.line, line, "{body}: {e}");
        assert!(e.field.ends_with(field), "{body}: field {}", e.field);
        assert!(e.message.contains(message), "{body}: {}", e.message);
    }
}
