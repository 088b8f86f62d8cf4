//! `[docker_container.NAME]` and `[docker_image.TAG]`: containers and
//! images of the guest's Docker (or Podman, whichever it has), asked with
//! its own `inspect`.

use super::common::{AttrType, Resource};
use crate::spec::check::Check;
use crate::spec::facts::{Facts, Fields, Found, Observed, flag, get};
use crate::util::shell::shell_quote;

/// The engine command, or an error fact when there is none.
fn engine(id: usize) -> String {
    format!(
        "E=$(command -v docker || command -v podman || true)\n\
         if [ -z \"$E\" ]; then val {id} error 'no docker or podman in the guest'; else\n"
    )
}

/// Containers.
pub struct DockerContainer;

impl Resource for DockerContainer {
    fn attributes(&self) -> &'static [(&'static str, AttrType)] {
        use AttrType::*;
        &[
            ("exists", Bool),
            ("running", Bool),
            ("image", Exact),
            ("restart", Exact),
            ("ports", Includes),
        ]
    }

    fn recorded(&self) -> &'static [&'static str] {
        &["running", "image", "restart", "ports"]
    }

    fn gather(&self, id: usize, check: &Check) -> String {
        let n = shell_quote(&check.name);
        format!(
            "{}if out=$(\"$E\" inspect -f '{{{{.State.Running}}}}|{{{{.Config.Image}}}}|{{{{.HostConfig.RestartPolicy.Name}}}}' {n} 2>/dev/null); then\n\
             val {id} exists 1; val {id} info \"$out\"; val {id} ports \"$(\"$E\" port {n} 2>/dev/null)\"\n\
             else val {id} exists 0; fi\nfi\n",
            engine(id)
        )
    }

    fn observe(&self, _: &Check, f: &Fields, _: &Facts) -> Observed {
        let exists = flag(f, "exists").unwrap_or(false);
        let info = get(f, "info").unwrap_or_default();
        let parts: Vec<&str> = info.splitn(3, '|').collect();
        let field = |i: usize| match (exists, parts.get(i)) {
            (true, Some(v)) => Found::Text(v.to_string()),
            _ => Found::Absent("no such container".into()),
        };
        // `8080/tcp -> 0.0.0.0:8080`: the container's side.
        let mut ports: Vec<String> = get(f, "ports")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(String::from))
            .collect();
        ports.dedup();
        Observed::from([
            ("exists", Found::Bool(exists)),
            (
                "running",
                Found::Bool(exists && parts.first() == Some(&"true")),
            ),
            ("image", field(1)),
            ("restart", field(2)),
            ("ports", Found::List(ports)),
        ])
    }

    fn includes(&self, want: &str, have: &str) -> bool {
        // `80` means `80/tcp`.
        have == want || have == format!("{want}/tcp")
    }
}

/// Images.
pub struct DockerImage;

impl Resource for DockerImage {
    fn attributes(&self) -> &'static [(&'static str, AttrType)] {
        &[("exists", AttrType::Bool)]
    }

    fn recorded(&self) -> &'static [&'static str] {
        &["exists"]
    }

    fn gather(&self, id: usize, check: &Check) -> String {
        let n = shell_quote(&check.name);
        format!(
            "{}if \"$E\" image inspect {n} >/dev/null 2>&1; then val {id} exists 1; else val {id} exists 0; fi\nfi\n",
            engine(id)
        )
    }

    fn observe(&self, _: &Check, f: &Fields, _: &Facts) -> Observed {
        Observed::from([("exists", Found::Bool(flag(f, "exists").unwrap_or(false)))])
    }
}
