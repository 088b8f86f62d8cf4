//! The Ansible provisioner's host side: an inventory of the project's running
//! machines (reached through their generated ssh_config, host keys pinned) and
//! the `ansible-playbook` command line.

use crate::util::shell::shell_quote;
use std::path::{Path, PathBuf};

/// A machine in the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Machine name (also its host alias in `ssh_config`).
    pub name: String,
    /// Login user.
    pub user: String,
    /// The machine's generated ssh_config.
    pub ssh_config: PathBuf,
}

/// An INI inventory: every host with its connection variables, then groups.
pub fn render_inventory(hosts: &[Host], groups: &[(String, Vec<String>)]) -> String {
    let mut out =
        String::from("# written by env for the ansible provisioner: do not edit\n[all]\n");
    for h in hosts {
        out.push_str(&format!(
            "{name} ansible_host={name} ansible_user={user} ansible_python_interpreter=/usr/bin/python3 ansible_ssh_common_args={args}\n",
            name = h.name,
            user = h.user,
            args = shell_quote(&format!("-F {}", shell_quote(&h.ssh_config.to_string_lossy()))),
        ));
    }
    for (group, members) in groups {
        out.push_str(&format!("\n[{group}]\n"));
        for m in members {
            out.push_str(m);
            out.push('\n');
        }
    }
    out
}

/// Arguments of `ansible-playbook` for one machine.
pub fn playbook_args(
    inventory: &Path,
    playbook: &Path,
    machine: &str,
    extra_vars: Option<&str>,
    tags: &[String],
    skip_tags: &[String],
    limit: Option<&str>,
) -> Vec<String> {
    let mut args = vec![
        "-i".to_string(),
        inventory.display().to_string(),
        "--limit".into(),
        limit.unwrap_or(machine).to_string(),
    ];
    if let Some(vars) = extra_vars {
        args.extend(["-e".into(), vars.to_string()]);
    }
    if !tags.is_empty() {
        args.extend(["--tags".into(), tags.join(",")]);
    }
    if !skip_tags.is_empty() {
        args.extend(["--skip-tags".into(), skip_tags.join(",")]);
    }
    args.push(playbook.display().to_string());
    args
}

/// Environment of `ansible-playbook`: live, plain output in logs, no retry
/// files, pipelining (one SSH round trip per task instead of several).
pub const ANSIBLE_ENV: &[(&str, &str)] = &[
    ("PYTHONUNBUFFERED", "1"),
    ("ANSIBLE_RETRY_FILES_ENABLED", "0"),
    ("ANSIBLE_PIPELINING", "1"),
    ("ANSIBLE_HOST_KEY_CHECKING", "1"),
    ("ANSIBLE_NOCOLOR", "1"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_reaches_hosts_through_their_ssh_config() {
        let hosts = [
            Host {
                name: "web".into(),
                user: "vagrant".into(),
                ssh_config: "/p/.envstate/machines/web/ssh_config".into(),
            },
            Host {
                name: "db".into(),
                user: "admin".into(),
                ssh_config: "/p q/db/ssh_config".into(),
            },
        ];
        let inv = render_inventory(&hosts, &[("app".into(), vec!["web".into(), "db".into()])]);
        assert!(
            inv.contains("web ansible_host=web ansible_user=vagrant"),
            "{inv}"
        );
        assert!(
            inv.contains("ansible_ssh_common_args='-F /p/.envstate/machines/web/ssh_config'"),
            "{inv}"
        );
        assert!(
            inv.contains("ansible_ssh_common_args='-F '\\''/p q/db/ssh_config'\\'''"),
            "{inv}"
        );
        assert!(inv.ends_with("\n[app]\nweb\ndb\n"), "{inv}");
    }

    #[test]
    fn playbook_arguments() {
        let args = playbook_args(
            Path::new("/i"),
            Path::new("/p/site.yml"),
            "web",
            Some("{\"a\":1}"),
            &["x".into(), "y".into()],
            &[],
            None,
        );
        assert_eq!(
            args,
            [
                "-i",
                "/i",
                "--limit",
                "web",
                "-e",
                "{\"a\":1}",
                "--tags",
                "x,y",
                "/p/site.yml"
            ]
        );
        let args = playbook_args(
            Path::new("/i"),
            Path::new("/p/site.yml"),
            "web",
            None,
            &[],
            &["slow".into()],
            Some("all"),
        );
        assert_eq!(
            args,
            [
                "-i",
                "/i",
                "--limit",
                "all",
                "--skip-tags",
                "slow",
                "/p/site.yml"
            ]
        );
    }
}
