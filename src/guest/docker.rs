//! The guest script of the `docker` provisioner: the engine installed from
//! the distribution's packages when missing (and its daemon started),
//! images built from contexts uploaded before it runs, containers run.
//! Idempotent: an image whose build yields the same id, and a container
//! whose settings (a digest in its `env.config` label), image and running
//! state are what is asked, are left alone; the script exits [`CHANGED`]
//! when it changed anything (what `env test --idempotent` reads).

use crate::envfile::docker::{Container, Engine, Image};
use crate::util::shell::shell_quote;

/// Where build contexts are uploaded in the guest (removed after the build).
pub const CONTEXTS: &str = "/var/lib/env/docker-contexts";

/// The exit status that says "changed something".
pub const CHANGED: i32 = 100;

/// The label holding a container's settings digest.
pub const CONFIG_LABEL: &str = "env.config";

/// A short digest of a container's settings: a change recreates it.
pub fn config_digest(c: &Container) -> String {
    use sha2::{Digest, Sha256};
    let text = format!(
        "{}|{:?}|{:?}|{:?}|{}|{:?}",
        c.image, c.ports, c.volumes, c.env, c.restart, c.args
    );
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The distribution packages of an engine, per package manager.
fn install(engine: Engine) -> String {
    let (apt, dnf, apk) = match engine {
        Engine::Docker => ("docker.io", "docker", "docker"),
        Engine::Podman => ("podman", "podman", "podman"),
    };
    format!(
        "if ! command -v {cmd} >/dev/null 2>&1; then\n\
         echo 'installing {cmd} from the distribution'\n\
         if command -v apt-get >/dev/null 2>&1; then DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q {apt}\n\
         elif command -v dnf >/dev/null 2>&1; then dnf install -y {dnf}\n\
         elif command -v apk >/dev/null 2>&1; then apk add {apk}\n\
         else echo 'no apt-get, dnf or apk to install {cmd} with' >&2; exit 1; fi\n\
         changed=1\n\
         fi\n",
        cmd = engine.command()
    )
}

/// The root script for these images (their contexts uploaded at
/// `contexts`, in order) and containers.
pub fn script(
    engine: Engine,
    images: &[Image],
    contexts: &[String],
    containers: &[Container],
) -> String {
    let e = engine.command();
    let mut s = String::from("set -e\nchanged=0\n");
    s.push_str(&install(engine));
    if engine == Engine::Docker {
        s.push_str(
            "if ! docker info >/dev/null 2>&1; then\n\
             systemctl enable --now docker >/dev/null 2>&1 || service docker start >/dev/null 2>&1 || rc-service docker start >/dev/null 2>&1 || true\n\
             fi\n\
             i=0; until docker info >/dev/null 2>&1; do i=$((i+1)); if [ $i -gt 180 ]; then echo 'the docker daemon does not answer' >&2; exit 1; fi; sleep 1; done\n",
        );
    }
    for (image, context) in images.iter().zip(contexts) {
        let tag = shell_quote(&image.tag);
        let ctx = shell_quote(context);
        s.push_str(&format!(
            "before=$({e} image inspect -f '{{{{.Id}}}}' {tag} 2>/dev/null || true)\n\
             {e} build -q -t {tag} {ctx} >/dev/null\n\
             rm -rf {ctx}\n\
             after=$({e} image inspect -f '{{{{.Id}}}}' {tag})\n\
             if [ \"$before\" != \"$after\" ]; then echo \"image {tag_text}: built\"; changed=1; else echo \"image {tag_text}: unchanged\"; fi\n",
            tag_text = image.tag
        ));
    }
    for c in containers {
        let name = shell_quote(&c.name);
        let image = shell_quote(&c.image);
        let digest = config_digest(c);
        let mut run = format!(
            "{e} run -d --name {name} --label {CONFIG_LABEL}={digest} --restart {}",
            shell_quote(&c.restart)
        );
        for p in &c.ports {
            run.push_str(&format!(" -p {}", shell_quote(p)));
        }
        for v in &c.volumes {
            run.push_str(&format!(" -v {}", shell_quote(v)));
        }
        for (k, v) in &c.env {
            run.push_str(&format!(" -e {}", shell_quote(&format!("{k}={v}"))));
        }
        run.push(' ');
        run.push_str(&image);
        for a in &c.args {
            run.push(' ');
            run.push_str(&shell_quote(a));
        }
        s.push_str(&format!(
            "{e} image inspect {image} >/dev/null 2>&1 || {e} pull -q {image} >/dev/null\n\
             img=$({e} image inspect -f '{{{{.Id}}}}' {image})\n\
             have=$({e} inspect -f '{{{{index .Config.Labels \"{CONFIG_LABEL}\"}}}} {{{{.Image}}}} {{{{.State.Running}}}}' {name} 2>/dev/null || true)\n\
             if [ \"$have\" != \"{digest} $img true\" ]; then\n\
             {e} rm -f {name} >/dev/null 2>&1 || true\n\
             {run} >/dev/null\n\
             echo \"container {name_text}: started\"; changed=1\n\
             else echo \"container {name_text}: unchanged\"; fi\n",
            name_text = c.name
        ));
    }
    s.push_str(&format!("if [ $changed = 1 ]; then exit {CHANGED}; fi\n"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(env: &[(&str, &str)]) -> Container {
        Container {
            name: "web".into(),
            image: "app:1".into(),
            ports: vec!["8080:80".into()],
            volumes: vec!["/srv:/data:ro".into()],
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            restart: "always".into(),
            args: vec!["--flag".into(), "two words".into()],
        }
    }

    #[test]
    fn a_changed_setting_changes_the_digest() {
        assert_eq!(
            config_digest(&container(&[])),
            config_digest(&container(&[]))
        );
        assert_ne!(
            config_digest(&container(&[])),
            config_digest(&container(&[("A", "1")]))
        );
    }

    #[test]
    fn the_script_builds_then_runs_with_every_setting_quoted() {
        let image = Image {
            tag: "app:1".into(),
            context: "/p/app".into(),
        };
        let c = container(&[("GREETING", "hi there")]);
        let s = script(
            Engine::Docker,
            &[image],
            &[format!("{CONTEXTS}/0")],
            std::slice::from_ref(&c),
        );
        assert!(s.contains("apt-get install -y -q docker.io"));
        let q = |t: &str| shell_quote(t);
        assert!(s.contains(&format!(
            "docker build -q -t {} {}",
            q("app:1"),
            q(&format!("{CONTEXTS}/0"))
        )));
        assert!(s.contains(&format!(
            "docker run -d --name {} --label env.config={} --restart {} -p {} -v {} -e {} {} {} {}",
            q("web"),
            config_digest(&c),
            q("always"),
            q("8080:80"),
            q("/srv:/data:ro"),
            q("GREETING=hi there"),
            q("app:1"),
            q("--flag"),
            q("two words")
        )));
        assert!(s.find("docker build").unwrap() < s.find("docker run").unwrap());
        assert!(s.ends_with(&format!("exit {CHANGED}; fi\n")));
        let podman = script(Engine::Podman, &[], &[], &[c]);
        assert!(podman.contains("apt-get install -y -q podman"));
        assert!(!podman.contains("docker"));
        // The whole script is valid shell.
        crate::util::shell::sh_ok(&["-n", "-c", &s]);
    }
}
