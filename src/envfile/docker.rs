//! The `docker` provisioner's settings (Vagrant's docker provisioner): the
//! engine to install, images built from project folders, containers run
//! from them. Everything here ends up in a guest shell script, so names,
//! ports and paths are checked to a plain form.

use indexmap::IndexMap;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Which container engine the guest gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Docker (the distribution's package: `docker.io` on Debian and Ubuntu).
    #[default]
    Docker,
    /// Podman (daemonless; the same command line).
    Podman,
}

impl Engine {
    /// Its command.
    pub fn command(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }
}

/// An image as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImage {
    /// Its tag (`app:1`).
    pub tag: String,
    /// A project folder holding its Dockerfile (the build context).
    pub build: PathBuf,
}

/// A container as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContainer {
    /// Its name.
    pub name: String,
    /// The image it runs.
    pub image: String,
    /// Published ports: `"8080:80"`, `"127.0.0.1:8080:80"`, `"80"`.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Volumes: `"/srv/data:/data"`, `"/srv/conf:/etc/app:ro"`, `"name:/data"`.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Restart policy: `no`, `always` (default), `unless-stopped`, `on-failure`.
    pub restart: Option<String>,
    /// Arguments after the image (its command).
    #[serde(default)]
    pub args: Vec<String>,
}

/// An image to build, checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Image {
    /// Tag.
    pub tag: String,
    /// The build context (absolute), with a Dockerfile.
    pub context: PathBuf,
}

/// A container to run, checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Container {
    /// Name.
    pub name: String,
    /// Image.
    pub image: String,
    /// Published ports.
    pub ports: Vec<String>,
    /// Volumes.
    pub volumes: Vec<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Restart policy.
    pub restart: String,
    /// Command arguments.
    pub args: Vec<String>,
}

/// A problem at a field of the provisioner.
pub type FieldError = (&'static str, String);

fn plain(field: &'static str, what: &str, value: &str, extra: &str) -> Result<(), FieldError> {
    let ok = !value.is_empty()
        && !value.starts_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-/:@".contains(c) || extra.contains(c));
    match ok {
        true => Ok(()),
        false => Err((field, format!("`{value}` is not a valid {what}"))),
    }
}

/// Checks the images (contexts relative to `dir`) and containers.
pub fn resolve(
    dir: &Path,
    images: &[RawImage],
    containers: &[RawContainer],
) -> Result<(Vec<Image>, Vec<Container>), FieldError> {
    let mut out_images = Vec::new();
    for i in images {
        plain("images", "image tag", &i.tag, "")?;
        let context = dir.join(&i.build);
        if !context.join("Dockerfile").is_file() {
            return Err((
                "images",
                format!("image `{}`: no Dockerfile in {}", i.tag, context.display()),
            ));
        }
        out_images.push(Image {
            tag: i.tag.clone(),
            context,
        });
    }
    let mut out_containers: Vec<Container> = Vec::new();
    for c in containers {
        let name_ok = c
            .name
            .chars()
            .next()
            .is_some_and(|f| f.is_ascii_alphanumeric())
            && c.name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch));
        if !name_ok {
            return Err((
                "containers",
                format!("`{}` is not a valid container name", c.name),
            ));
        }
        if out_containers.iter().any(|o| o.name == c.name) {
            return Err((
                "containers",
                format!("two containers are named `{}`", c.name),
            ));
        }
        plain("containers", "image", &c.image, "")?;
        for p in &c.ports {
            let parts: Vec<&str> = p.split(':').collect();
            let numbers = match parts.as_slice() {
                [g] | [_, g] => vec![*g],
                [ip, _, g] if ip.parse::<std::net::IpAddr>().is_ok() => vec![*g],
                _ => vec![""],
            };
            let guest_ok = numbers.iter().all(|g| {
                g.trim_end_matches("/udp")
                    .trim_end_matches("/tcp")
                    .parse::<u16>()
                    .is_ok()
            });
            let host_ok = match parts.as_slice() {
                [h, _] | [_, h, _] => h.parse::<u16>().is_ok(),
                _ => true,
            };
            if !(guest_ok && host_ok) {
                return Err((
                    "containers",
                    format!(
                        "container `{}`: `{p}` is not a port (\"8080:80\", \"127.0.0.1:8080:80\")",
                        c.name
                    ),
                ));
            }
        }
        for v in &c.volumes {
            plain("containers", "volume", v, "")?;
            if v.split(':').count() < 2 {
                return Err((
                    "containers",
                    format!("container `{}`: volume `{v}` needs SOURCE:TARGET", c.name),
                ));
            }
        }
        if let Some(bad) = c.env.keys().find(|k| {
            !k.chars()
                .next()
                .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
                || !k.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        }) {
            return Err(("containers", format!("`{bad}` is not a variable name")));
        }
        let restart = c.restart.clone().unwrap_or_else(|| "always".into());
        if !["no", "always", "unless-stopped", "on-failure"].contains(&restart.as_str()) {
            return Err((
                "containers",
                format!("restart `{restart}`: no, always, unless-stopped or on-failure"),
            ));
        }
        out_containers.push(Container {
            name: c.name.clone(),
            image: c.image.clone(),
            ports: c.ports.clone(),
            volumes: c.volumes.clone(),
            env: c.env.clone().into_iter().collect(),
            restart,
            args: c.args.clone(),
        });
    }
    if out_images.is_empty() && out_containers.is_empty() {
        return Err((
            "containers",
            "a docker provisioner needs `images` to build or `containers` to run".into(),
        ));
    }
    Ok((out_images, out_containers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(
        name: &str,
        ports: &[&str],
        volumes: &[&str],
        restart: Option<&str>,
    ) -> RawContainer {
        RawContainer {
            name: name.into(),
            image: "app:1".into(),
            ports: ports.iter().map(|p| p.to_string()).collect(),
            volumes: volumes.iter().map(|v| v.to_string()).collect(),
            env: IndexMap::new(),
            restart: restart.map(String::from),
            args: Vec::new(),
        }
    }

    #[test]
    fn images_and_containers_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("app")).unwrap();
        std::fs::write(tmp.path().join("app/Dockerfile"), "FROM scratch\n").unwrap();
        let image = RawImage {
            tag: "app:1".into(),
            build: "app".into(),
        };
        let ok = container(
            "web",
            &["8080:80", "127.0.0.1:5353:53/udp", "9000"],
            &["/srv:/data:ro"],
            None,
        );
        let (images, containers) =
            resolve(tmp.path(), std::slice::from_ref(&image), &[ok]).unwrap();
        assert_eq!(images[0].context, tmp.path().join("app"));
        assert_eq!(containers[0].restart, "always");
        let bad_cases = [
            (container("-x", &[], &[], None), "container name"),
            (container("web", &["80:http"], &[], None), "is not a port"),
            (container("web", &["x:80:80"], &[], None), "is not a port"),
            (container("web", &[], &["/srv"], None), "SOURCE:TARGET"),
            (container("web", &[], &["/a b:/c"], None), "valid volume"),
            (container("web", &[], &[], Some("sometimes")), "restart"),
        ];
        for (bad, says) in bad_cases {
            let (_, e) = resolve(tmp.path(), &[], &[bad]).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
        let no_dockerfile = RawImage {
            tag: "x:1".into(),
            build: "missing".into(),
        };
        assert!(
            resolve(tmp.path(), &[no_dockerfile], &[])
                .unwrap_err()
                .1
                .contains("no Dockerfile")
        );
        let (_, e) = resolve(tmp.path(), &[], &[]).unwrap_err();
        assert!(e.contains("needs `images`"));
        let twice = [
            container("a", &[], &[], None),
            container("a", &[], &[], None),
        ];
        assert!(
            resolve(tmp.path(), &[], &twice)
                .unwrap_err()
                .1
                .contains("two containers")
        );
    }
}
