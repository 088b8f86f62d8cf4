//! Spec files: TOML tables keyed by resource type then resource name
//! (`[file."/etc/motd"]`), so a check written twice is a TOML error, not a
//! silent overwrite. Each attribute is an expectation; errors name the file,
//! line, column and field.

use super::check::{Check, Expect, Kind, Spec};
use super::matchers::{NumberMatch, Pattern};
use super::resource::{self, AttrType};
use crate::envfile::{EnvfileError, Step, error_at};
use crate::util::version::Constraint;
use indexmap::IndexMap;
use std::path::Path;
use std::time::Duration;

type RawSpec = IndexMap<String, IndexMap<String, IndexMap<String, toml::Value>>>;

/// Reads a spec file.
pub fn load(path: &Path) -> anyhow::Result<Spec> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(parse(path, &text)?)
}

/// Parses and checks spec text.
pub fn parse(path: &Path, text: &str) -> Result<Spec, EnvfileError> {
    let raw: RawSpec = crate::envfile::deserialize_toml(path, text)?;
    let mut checks = Vec::new();
    for (kind_name, resources) in raw {
        let err = |at: &[Step], message: String| error_at(path, text, at, message);
        let Some(kind) = Kind::from_name(&kind_name) else {
            return Err(err(
                &[Step::Key(kind_name.clone())],
                format!(
                    "unknown resource type `{kind_name}`{}: expected one of {}",
                    suggestion(&kind_name, &Kind::names()),
                    Kind::names().join(", ")
                ),
            ));
        };
        for (name, fields) in resources {
            let at = [Step::Key(kind_name.clone()), Step::Key(name.clone())];
            let check =
                check_from(kind, &name, fields, path).map_err(|(field, message)| match field {
                    Some(f) => {
                        let mut at = at.to_vec();
                        at.push(Step::Key(f));
                        err(&at, message)
                    }
                    None => err(&at, message),
                })?;
            checks.push(check);
        }
    }
    Ok(Spec { checks })
}

/// ` (did you mean `x`?)` when a candidate is close.
fn suggestion(word: &str, candidates: &[&str]) -> String {
    crate::envfile::closest(word, candidates)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

type FieldError = (Option<String>, String);

fn check_from(
    kind: Kind,
    name: &str,
    fields: IndexMap<String, toml::Value>,
    file: &Path,
) -> Result<Check, FieldError> {
    let resource = resource::of(kind);
    check_name(kind, name).map_err(|m| (None, m))?;
    let mut check = Check::new(kind, name, file);
    for (field, value) in fields {
        let fail = |m: String| (Some(field.clone()), m);
        match field.as_str() {
            "title" => check.title = Some(text(&value).map_err(fail)?),
            "skip" => check.skip = boolean(&value).map_err(fail)?,
            "retries" => {
                check.retries = u32::try_from(integer(&value).map_err(fail)?)
                    .map_err(|_| fail("retries: a number from 0 up".into()))?
            }
            "retry_delay" => check.retry_delay = duration(&value).map_err(fail)?,
            "timeout" if resource.timed() => {
                check.timeout = Some(duration(&value).map_err(fail)?);
            }
            _ => {
                let attributes = resource.attributes();
                let Some((_, ty)) = attributes.iter().find(|(a, _)| *a == field) else {
                    let mut known: Vec<&str> = attributes.iter().map(|(a, _)| *a).collect();
                    known.extend(
                        COMMON
                            .iter()
                            .filter(|c| **c != "timeout" || resource.timed()),
                    );
                    return Err(fail(format!(
                        "`{field}` is not an attribute of {}{}: expected one of {}",
                        kind.name(),
                        suggestion(&field, &known),
                        known.join(", ")
                    )));
                };
                let expect = expectation(*ty, &value).map_err(fail)?;
                check.expect.push((field.clone(), expect));
            }
        }
    }
    if check.expect.is_empty() {
        let attrs: Vec<&str> = resource.attributes().iter().map(|(a, _)| *a).collect();
        return Err((
            None,
            format!(
                "this check expects nothing, and would pass whatever the machine is: add one of {}",
                attrs.join(", ")
            ),
        ));
    }
    Ok(check)
}

/// Checks a resource name: not empty, and of the form its type needs.
pub fn check_name(kind: Kind, name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("a resource needs a name".into());
    }
    resource::of(kind).check_name(name)
}

/// Fields every check may carry besides its expectations.
const COMMON: &[&str] = &["title", "skip", "retries", "retry_delay", "timeout"];

fn expectation(ty: AttrType, value: &toml::Value) -> Result<Expect, String> {
    Ok(match ty {
        AttrType::Bool => Expect::Bool(boolean(value)?),
        AttrType::Number => Expect::Number(match value {
            toml::Value::Integer(n) => NumberMatch::exactly(*n),
            toml::Value::String(s) => NumberMatch::parse(s)?,
            _ => return Err("expected a number or a comparison like \"> 10\"".into()),
        }),
        AttrType::Version => Expect::Version(Constraint::parse_package(&text(value)?)?),
        AttrType::Exact => Expect::Exact(Pattern::parse(&match value {
            toml::Value::Integer(n) => n.to_string(),
            _ => text(value)?,
        })?),
        AttrType::Patterns => {
            let items = list(value)?;
            Expect::Patterns(
                items
                    .iter()
                    .map(|s| Pattern::parse(s))
                    .collect::<Result<_, _>>()?,
            )
        }
        AttrType::Includes => Expect::Includes(list(value)?),
    })
}

fn boolean(value: &toml::Value) -> Result<bool, String> {
    value
        .as_bool()
        .ok_or_else(|| "expected true or false".to_string())
}

fn integer(value: &toml::Value) -> Result<i64, String> {
    value
        .as_integer()
        .ok_or_else(|| "expected a whole number".to_string())
}

fn text(value: &toml::Value) -> Result<String, String> {
    value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "expected a string".to_string())
}

fn duration(value: &toml::Value) -> Result<Duration, String> {
    match value {
        toml::Value::Integer(n) if *n >= 0 => Ok(Duration::from_secs(*n as u64)),
        toml::Value::String(s) => match s.trim().strip_suffix("ms") {
            Some(ms) => ms
                .trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("`{s}` is not a duration")),
            None => crate::util::duration::parse_duration(s),
        },
        _ => Err("expected seconds (10) or a duration (\"10s\", \"500ms\", \"2m\")".into()),
    }
}

/// A non-empty list of strings (a single string counts as a list of one).
fn list(value: &toml::Value) -> Result<Vec<String>, String> {
    let items: Vec<String> = match value {
        toml::Value::String(s) => vec![s.clone()],
        toml::Value::Array(items) => items
            .iter()
            .map(|v| match v {
                toml::Value::Integer(n) => Ok(n.to_string()),
                _ => text(v),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("expected a list of strings".into()),
    };
    if items.is_empty() {
        return Err("an empty list expects nothing and would always pass: list what must be there, or remove the attribute".into());
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::resource::addr::parse_addr;
    use crate::spec::resource::port::{PortProtocol, parse_port};

    fn parse_text(text: &str) -> Result<Spec, EnvfileError> {
        parse(Path::new("spec/web.toml"), text)
    }

    fn err(text: &str) -> EnvfileError {
        parse_text(text).unwrap_err()
    }

    #[test]
    fn every_resource_type_parses() {
        let spec = parse_text(
            r#"
[package.nginx]
installed = true
version = ">= 1.22, < 2"

[service.nginx]
enabled = true
running = true

[port."tcp:80"]
listening = true
addresses = ["0.0.0.0"]

[file."/etc/motd"]
exists = true
type = "file"
mode = "0644"
owner = "root"
group = "root"
size = "> 0"
contains = ["Debian", "/^The programs/", "!secret"]
sha256 = "/^[0-9a-f]{64}$/"

[command."uname -s"]
exit_status = 0
stdout = "Linux"
stderr = ["!error"]
timeout = "5s"
retries = 2
retry_delay = "500ms"

[user.vagrant]
exists = true
uid = 1000
groups = ["sudo"]
home = "/home/vagrant"
shell = "/bin/bash"

[group.sudo]
gid = 27

[process.sshd]
running = true
count = ">= 1"
user = "root"

[kernel_param."net.ipv4.ip_forward"]
value = 0

[kernel_module.virtio_net]
loaded = true

[mount."/"]
filesystem = "ext4"
options = ["rw"]

[http."http://localhost:8000/"]
status = 200
body = ["hello"]
headers = ["/Content-Type: text/html/"]

[dns.localhost]
resolvable = true
addresses = ["127.0.0.1"]

[addr."tcp://127.0.0.1:22"]
reachable = true
title = "SSH answers locally"

[interface.eth0]
exists = true
mtu = 1500
skip = true

[docker_container.web]
running = true
image = "app:1"
ports = ["8080"]

[docker_image."app:1"]
exists = true
"#,
        )
        .unwrap();
        assert_eq!(spec.checks.len(), 17);
        let command = &spec.checks[4];
        assert_eq!(command.kind, Kind::Command);
        assert_eq!(command.timeout, Some(Duration::from_secs(5)));
        assert_eq!(command.retries, 2);
        assert_eq!(command.retry_delay, Duration::from_millis(500));
        assert_eq!(spec.checks[13].label(), "SSH answers locally");
        assert_eq!(spec.checks[3].label(), "file /etc/motd");
        assert!(spec.checks[14].skip);
        let names: Vec<&str> = spec.checks.iter().map(|c| c.kind.name()).collect();
        assert_eq!(names.len(), Kind::names().len(), "one of each");
    }

    #[test]
    fn a_repeated_check_is_a_toml_error() {
        let e = err("[file.\"/a\"]\nexists = true\n[file.\"/a\"]\nexists = false\n");
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn errors_name_line_and_field() {
        let e = err("[file.\"/etc/motd\"]\nexists = true\nmdoe = \"0644\"\n");
        assert_eq!(
            (e.line, e.field.as_str()),
            (3, "file./etc/motd.mdoe"),
            "{e}"
        );
        assert!(e.message.contains("did you mean `mode`"), "{e}");

        let e = err("[packages.nginx]\ninstalled = true\n");
        assert_eq!(e.line, 1);
        assert!(e.message.contains("did you mean `package`"), "{e}");

        let e = err("[service.nginx]\nrunning = \"yes\"\n");
        assert_eq!((e.line, e.field.as_str()), (2, "service.nginx.running"));

        let e = err("[file.\"/x\"]\ncontains = [\"/(/\"]\n");
        assert!(e.message.contains("bad regex"), "{e}");

        let e = err("[file.\"/x\"]\nsize = \"big\"\n");
        assert!(e.message.contains("not a number"), "{e}");

        let e = err("[port.\"sctp:80\"]\nlistening = true\n");
        assert_eq!(e.line, 1, "{e}");

        let e = err("[file.\"relative\"]\nexists = true\n");
        assert!(e.message.contains("absolute"), "{e}");

        let e = err("[package.nginx]\ntimeout = 3\ninstalled = true\n");
        assert!(e.message.contains("not an attribute"), "{e}");
    }

    #[test]
    fn empty_expectations_are_errors_not_passes() {
        let e = err("[file.\"/etc/motd\"]\ntitle = \"motd\"\n");
        assert!(e.message.contains("expects nothing"), "{e}");
        assert_eq!(e.line, 1);
        let e = err("[file.\"/etc/motd\"]\ncontains = []\n");
        assert!(e.message.contains("empty list"), "{e}");
        assert_eq!(e.field, "file./etc/motd.contains");
        let e = err("[command.\"true\"]\nstdout = [\"\"]\n");
        assert!(e.message.contains("empty pattern"), "{e}");
    }

    #[test]
    fn ports_and_addresses() {
        assert_eq!(parse_port("80").unwrap(), (PortProtocol::Tcp, 80));
        assert_eq!(parse_port("udp:53").unwrap(), (PortProtocol::Udp, 53));
        assert_eq!(parse_port("tcp6:22").unwrap(), (PortProtocol::Tcp6, 22));
        assert!(parse_port("tcp:0").is_err());
        assert!(parse_port("tcp:99999").is_err());
        assert_eq!(
            parse_addr("tcp://db.local:5432").unwrap(),
            ("db.local".to_string(), 5432)
        );
        assert_eq!(
            parse_addr("tcp://[::1]:80").unwrap(),
            ("::1".to_string(), 80)
        );
        assert!(parse_addr("udp://x:1").is_err());
        assert!(parse_addr("tcp://x;rm:1").is_err());
    }
}
