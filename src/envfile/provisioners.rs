//! Provisioners in the Envfile: what turns a box into the machine, run in
//! order at the first `up` (and on request).

use super::error::{EnvfileError, Step, entry_field_error, error_at};
use indexmap::IndexMap;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Kinds of provisioner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A shell script run in the guest.
    Shell,
    /// A file or folder uploaded from the project.
    File,
    /// An Ansible playbook run from the host against the machine.
    Ansible,
    /// Docker (or Podman) in the guest: images built, containers run.
    Docker,
}

/// When a provisioner runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunWhen {
    /// At the first `up`, and with `env provision` / `up --provision`.
    #[default]
    Once,
    /// At every boot too.
    Always,
    /// Only when named with `env provision --with NAME`.
    Never,
}

/// A provisioner as written: one table of `provision = [...]`, every field of
/// every kind optional so that errors can say which field does not belong.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvisioner {
    /// `shell` or `file`.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Name shown in output and used by `--with`.
    pub name: Option<String>,
    /// `once` (default), `always` or `never`.
    pub run: Option<RunWhen>,
    /// shell: the script text.
    pub inline: Option<String>,
    /// shell: a script file of the project.
    pub path: Option<PathBuf>,
    /// shell: arguments.
    pub args: Option<Vec<String>>,
    /// shell: environment variables.
    pub env: Option<IndexMap<String, String>>,
    /// shell: run as root (default true); file: write as root (default false).
    pub privileged: Option<bool>,
    /// shell: the exit status by which the script says "I changed
    /// something" (a success too); 0 then means "nothing to do". What
    /// `env test --idempotent` reads.
    pub changed_exit_code: Option<i32>,
    /// file: the project file or folder to upload.
    pub source: Option<PathBuf>,
    /// file: where it goes in the guest.
    pub destination: Option<String>,
    /// ansible: the playbook, relative to the Envfile.
    pub playbook: Option<PathBuf>,
    /// ansible: extra variables (`-e`).
    pub extra_vars: Option<IndexMap<String, toml::Value>>,
    /// ansible: only tasks with these tags.
    pub tags: Option<Vec<String>>,
    /// ansible: skip tasks with these tags.
    pub skip_tags: Option<Vec<String>>,
    /// ansible: `--limit` pattern (default: the machine).
    pub limit: Option<String>,
    /// ansible: inventory groups, `{ web = ["web1", "web2"] }`.
    pub groups: Option<IndexMap<String, Vec<String>>>,
    /// docker: `docker` (default) or `podman`.
    pub engine: Option<super::docker::Engine>,
    /// docker: images built from project folders.
    pub images: Option<Vec<super::docker::RawImage>>,
    /// docker: containers run.
    pub containers: Option<Vec<super::docker::RawContainer>>,
}

/// Where a shell provisioner's script comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// Text from the Envfile.
    Inline(String),
    /// A file of the project (absolute path).
    File(PathBuf),
}

/// What a provisioner does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run a script.
    Shell {
        /// The script.
        script: Script,
        /// Its arguments.
        args: Vec<String>,
        /// Environment variables.
        env: Vec<(String, String)>,
        /// As root (sudo) or as the SSH user.
        privileged: bool,
        /// The exit status meaning "changed something" (success too).
        changed_exit_code: Option<i32>,
    },
    /// Run an Ansible playbook from the host.
    Ansible {
        /// Absolute path of the playbook.
        playbook: PathBuf,
        /// Extra variables, as JSON.
        extra_vars: Option<String>,
        /// `--tags`.
        tags: Vec<String>,
        /// `--skip-tags`.
        skip_tags: Vec<String>,
        /// `--limit` (None: the machine itself).
        limit: Option<String>,
        /// Inventory groups.
        groups: Vec<(String, Vec<String>)>,
    },
    /// Install a container engine, build images, run containers.
    Docker {
        /// The engine.
        engine: super::docker::Engine,
        /// Images to build, in order.
        images: Vec<super::docker::Image>,
        /// Containers to run, in order.
        containers: Vec<super::docker::Container>,
    },
    /// Upload a file or folder.
    File {
        /// Absolute host path.
        source: PathBuf,
        /// Guest path.
        destination: String,
        /// Write as root.
        privileged: bool,
    },
}

/// A validated provisioner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioner {
    /// Name (given, or `shell #1` style).
    pub name: String,
    /// When it runs.
    pub run: RunWhen,
    /// What it does.
    pub action: Action,
}

/// Validates the provisioners written at `at` (`machines.web.provision`).
pub fn resolve(
    file: &Path,
    text: &str,
    dir: &Path,
    raw: &[RawProvisioner],
    at: &[Step],
    number_from: usize,
) -> Result<Vec<Provisioner>, EnvfileError> {
    raw.iter()
        .enumerate()
        .map(|(i, p)| {
            let mut here = at.to_vec();
            here.push(Step::Index(i));
            let fail =
                |field: &str, message: String| entry_field_error(file, text, at, i, field, message);
            let kind_name = match p.kind {
                Kind::Shell => "shell",
                Kind::File => "file",
                Kind::Ansible => "ansible",
                Kind::Docker => "docker",
            };
            // Each field belongs to some kinds: set on another, it is an error.
            let owned: [(&str, bool, &[Kind], &str); 17] = [
                ("inline", p.inline.is_some(), &[Kind::Shell], "shell"),
                ("path", p.path.is_some(), &[Kind::Shell], "shell"),
                ("args", p.args.is_some(), &[Kind::Shell], "shell"),
                ("env", p.env.is_some(), &[Kind::Shell], "shell"),
                (
                    "changed_exit_code",
                    p.changed_exit_code.is_some(),
                    &[Kind::Shell],
                    "shell",
                ),
                (
                    "privileged",
                    p.privileged.is_some(),
                    &[Kind::Shell, Kind::File],
                    "shell and file",
                ),
                ("source", p.source.is_some(), &[Kind::File], "file"),
                (
                    "destination",
                    p.destination.is_some(),
                    &[Kind::File],
                    "file",
                ),
                (
                    "playbook",
                    p.playbook.is_some(),
                    &[Kind::Ansible],
                    "ansible",
                ),
                (
                    "extra_vars",
                    p.extra_vars.is_some(),
                    &[Kind::Ansible],
                    "ansible",
                ),
                ("tags", p.tags.is_some(), &[Kind::Ansible], "ansible"),
                (
                    "skip_tags",
                    p.skip_tags.is_some(),
                    &[Kind::Ansible],
                    "ansible",
                ),
                ("limit", p.limit.is_some(), &[Kind::Ansible], "ansible"),
                ("groups", p.groups.is_some(), &[Kind::Ansible], "ansible"),
                ("engine", p.engine.is_some(), &[Kind::Docker], "docker"),
                ("images", p.images.is_some(), &[Kind::Docker], "docker"),
                (
                    "containers",
                    p.containers.is_some(),
                    &[Kind::Docker],
                    "docker",
                ),
            ];
            if let Some((field, _, _, kinds)) = owned
                .iter()
                .find(|(_, set, owners, _)| *set && !owners.contains(&p.kind))
            {
                return Err(fail(
                    field,
                    format!("`{field}` is for {kinds} provisioners, not {kind_name}"),
                ));
            }
            let action = match p.kind {
                Kind::Docker => {
                    let (images, containers) = super::docker::resolve(
                        dir,
                        p.images.as_deref().unwrap_or_default(),
                        p.containers.as_deref().unwrap_or_default(),
                    )
                    .map_err(|(field, message)| fail(field, message))?;
                    Action::Docker {
                        engine: p.engine.unwrap_or_default(),
                        images,
                        containers,
                    }
                }
                Kind::Ansible => {
                    let playbook = p.playbook.as_ref().ok_or_else(|| {
                        error_at(
                            file,
                            text,
                            &here,
                            "an ansible provisioner needs `playbook`".into(),
                        )
                    })?;
                    let full = dir.join(playbook);
                    if !full.is_file() {
                        return Err(fail(
                            "playbook",
                            format!("no playbook at {}", full.display()),
                        ));
                    }
                    let extra_vars = match &p.extra_vars {
                        Some(vars) => Some(
                            serde_json::to_string(vars)
                                .map_err(|e| fail("extra_vars", e.to_string()))?,
                        ),
                        None => None,
                    };
                    Action::Ansible {
                        playbook: full,
                        extra_vars,
                        tags: p.tags.clone().unwrap_or_default(),
                        skip_tags: p.skip_tags.clone().unwrap_or_default(),
                        limit: p.limit.clone(),
                        groups: p.groups.clone().unwrap_or_default().into_iter().collect(),
                    }
                }
                Kind::Shell => {
                    let script = match (&p.inline, &p.path) {
                        (Some(text), None) => Script::Inline(text.clone()),
                        (None, Some(path)) => {
                            let full = dir.join(path);
                            if !full.is_file() {
                                return Err(fail(
                                    "path",
                                    format!("no script at {}", full.display()),
                                ));
                            }
                            Script::File(full)
                        }
                        (Some(_), Some(_)) => {
                            return Err(fail("path", "give `inline` or `path`, not both".into()));
                        }
                        (None, None) => {
                            return Err(error_at(
                                file,
                                text,
                                &here,
                                "a shell provisioner needs `inline` or `path`".into(),
                            ));
                        }
                    };
                    let env = p.env.clone().unwrap_or_default();
                    if let Some(bad) = env.keys().find(|k| !valid_variable(k)) {
                        return Err(fail("env", format!("`{bad}` is not a variable name")));
                    }
                    Action::Shell {
                        script,
                        args: p.args.clone().unwrap_or_default(),
                        env: env.into_iter().collect(),
                        privileged: p.privileged.unwrap_or(true),
                        changed_exit_code: match p.changed_exit_code {
                            Some(c) if !(1..=255).contains(&c) => {
                                return Err(fail(
                                    "changed_exit_code",
                                    "an exit status from 1 to 255".into(),
                                ));
                            }
                            c => c,
                        },
                    }
                }
                Kind::File => {
                    let source = p.source.as_ref().ok_or_else(|| {
                        error_at(
                            file,
                            text,
                            &here,
                            "a file provisioner needs `source`".into(),
                        )
                    })?;
                    let full = dir.join(source);
                    if !full.exists() {
                        return Err(fail("source", format!("{} does not exist", full.display())));
                    }
                    let destination = p.destination.clone().ok_or_else(|| {
                        error_at(
                            file,
                            text,
                            &here,
                            "a file provisioner needs `destination`".into(),
                        )
                    })?;
                    if !destination.starts_with('/') && !destination.starts_with("~/") {
                        return Err(fail(
                            "destination",
                            format!("`{destination}` must be absolute (or start with ~/)"),
                        ));
                    }
                    Action::File {
                        source: full,
                        destination,
                        privileged: p.privileged.unwrap_or(false),
                    }
                }
            };
            Ok(Provisioner {
                name: p
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{kind_name} #{}", number_from + i + 1)),
                run: p.run.unwrap_or_default(),
                action,
            })
        })
        .collect()
}

/// Shell variable names: letters, digits and `_`, not starting with a digit.
fn valid_variable(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
