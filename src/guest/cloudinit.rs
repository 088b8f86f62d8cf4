//! The NoCloud seed of a machine booted from a cloud image: what cloud-init
//! reads at first boot (`meta-data`, `user-data`, `network-config`). env's
//! part creates the login user with the machine's own key, installs the SSH
//! host key env made (so it is pinned before the first connection) and
//! names the machine; the project's own user-data follows it in a
//! multipart message, merged into env's part so that lists append and
//! env's other values stay: a user-data with its own `users:` still leaves
//! env's user in, and cannot replace env's host key.
//! Pure: the backend writes the files into whatever medium it attaches.

use anyhow::{Context, Result};
use std::path::Path;

use crate::machine::USER_NIC_MAC;

/// What a seed says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedInput<'a> {
    /// The machine's name (host name).
    pub name: &'a str,
    /// Unique per machine creation: cloud-init runs again when it changes.
    pub instance_id: &'a str,
    /// The login user.
    pub user: &'a str,
    /// Public keys authorized for the user.
    pub authorized_keys: Vec<String>,
    /// The ed25519 host key env made (private, public).
    pub host_key: Option<(String, String)>,
    /// The project's own user-data, if any.
    pub user_data: Option<String>,
}

/// cloud-init merges the project's part into env's this way: lists append
/// (`users`, `runcmd`), dictionaries merge, and where both set a value
/// env's stays (host keys, host name). (cloud-init's `replace` would skip
/// the list merging altogether: it replaces before it recurses.)
const PROJECT_MERGE: &str = "list(append)+dict(no_replace,recurse_list)+str()";

/// A YAML string, double-quoted (JSON strings are YAML).
fn yaml_str(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// env's `#cloud-config`.
pub fn env_cloud_config(input: &SeedInput<'_>) -> String {
    let mut s = String::from(
        "#cloud-config\n# written by env: the machine's user, key, host key and name\n",
    );
    s.push_str(&format!(
        "hostname: {name}\npreserve_hostname: false\nmanage_etc_hosts: localhost\nusers:\n  - name: {user}\n    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n    lock_passwd: true\n    ssh_authorized_keys:\n",
        name = yaml_str(input.name),
        user = yaml_str(input.user)
    ));
    for key in &input.authorized_keys {
        s.push_str(&format!("      - {}\n", yaml_str(key.trim())));
    }
    if let Some((private, public)) = &input.host_key {
        s.push_str(&format!(
            "ssh_deletekeys: true\nssh_genkeytypes: [ed25519]\nssh_keys:\n  ed25519_private: {}\n  ed25519_public: {}\n",
            yaml_str(private),
            yaml_str(public.trim())
        ));
    }
    s
}

/// The content type cloud-init gives a user-data part, from its first line.
fn part_type(text: &str) -> &'static str {
    let first = text.lines().next().unwrap_or_default().trim();
    if first.starts_with("#cloud-config") {
        "text/cloud-config"
    } else if first.starts_with("#!") {
        "text/x-shellscript"
    } else if first.starts_with("#cloud-boothook") {
        "text/cloud-boothook"
    } else if first.starts_with("## template: jinja") {
        "text/jinja2"
    } else {
        "text/cloud-config"
    }
}

/// The whole `user-data`: env's cloud-config alone, or a multipart message
/// with env's part first and the project's merged into it.
pub fn user_data(input: &SeedInput<'_>) -> String {
    let env = env_cloud_config(input);
    let Some(own) = &input.user_data else {
        return env;
    };
    // A boundary that neither part contains.
    let mut boundary = String::from("==env-seed-part");
    while own.contains(&boundary) || env.contains(&boundary) {
        boundary.push('=');
    }
    format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n\
         --{boundary}\nContent-Type: text/cloud-config; charset=\"utf-8\"\nMIME-Version: 1.0\nContent-Disposition: attachment; filename=\"env.cfg\"\n\n{env}\n\
         --{boundary}\nContent-Type: {own_type}; charset=\"utf-8\"\nMIME-Version: 1.0\nMerge-Type: {PROJECT_MERGE}\nContent-Disposition: attachment; filename=\"project.cfg\"\n\n{own}\n\
         --{boundary}--\n",
        own_type = part_type(own),
        own = own.trim_end(),
    )
}

/// `meta-data`.
pub fn meta_data(input: &SeedInput<'_>) -> String {
    format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        yaml_str(input.instance_id),
        yaml_str(input.name)
    )
}

/// `network-config` (version 2): DHCP on the user-mode NIC only; the
/// private network is set up by env after boot, as on every box.
pub fn network_config() -> String {
    format!(
        "version: 2\nethernets:\n  env-user:\n    match:\n      macaddress: \"{USER_NIC_MAC}\"\n    dhcp4: true\n"
    )
}

/// The seed's files, by name.
pub fn seed_files(input: &SeedInput<'_>) -> Vec<(String, Vec<u8>)> {
    vec![
        ("meta-data".into(), meta_data(input).into_bytes()),
        ("user-data".into(), user_data(input).into_bytes()),
        ("network-config".into(), network_config().into_bytes()),
    ]
}

/// A root script waiting for cloud-init to finish: exit 0 when it did (or
/// the guest has no cloud-init), else the status and the tail of its log on
/// stderr. Status 2 (newer cloud-init: finished with recoverable errors,
/// such as a deprecated key) is reported, not fatal.
pub const WAIT_SCRIPT: &str = r#"command -v cloud-init >/dev/null 2>&1 || exit 0
cloud-init status --wait >/dev/null 2>&1
rc=$?
case $rc in
0) exit 0 ;;
2) echo "cloud-init finished with recoverable errors (status 2): see /var/log/cloud-init.log" ;;
*) { echo "cloud-init failed (status $rc); the end of /var/log/cloud-init-output.log:"; tail -n 20 /var/log/cloud-init-output.log 2>/dev/null; cloud-init status --long 2>/dev/null | tail -n 5; } >&2; exit 1 ;;
esac
"#;

/// Reads the project's user-data file (the Envfile names it).
pub fn read_user_data(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the user-data {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(user_data: Option<&str>) -> SeedInput<'static> {
        SeedInput {
            name: "web",
            instance_id: "env-web-1",
            user: "debian",
            authorized_keys: vec!["ssh-ed25519 AAAA machine".into()],
            host_key: Some((
                "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
                    .into(),
                "ssh-ed25519 BBBB host\n".into(),
            )),
            user_data: user_data.map(String::from),
        }
    }

    #[test]
    fn env_alone_gives_a_cloud_config_with_user_key_host_key_and_name() {
        let text = user_data(&input(None));
        assert!(text.starts_with("#cloud-config\n"));
        for expected in [
            "hostname: \"web\"",
            "- name: \"debian\"",
            "- \"ssh-ed25519 AAAA machine\"",
            "ssh_genkeytypes: [ed25519]",
            "ed25519_private: \"-----BEGIN OPENSSH PRIVATE KEY-----\\nabc\\n",
            "ed25519_public: \"ssh-ed25519 BBBB host\"",
        ] {
            assert!(text.contains(expected), "{expected}:\n{text}");
        }
        assert_eq!(
            meta_data(&input(None)),
            "instance-id: \"env-web-1\"\nlocal-hostname: \"web\"\n"
        );
        assert!(network_config().contains(USER_NIC_MAC));
    }

    #[test]
    fn project_user_data_follows_env_s_and_merges_into_it_appending() {
        let own = "#cloud-config\nusers:\n  - name: ops\npackages: [nginx]\n";
        let text = user_data(&input(Some(own)));
        let project_at = text.find("- name: ops").unwrap();
        let env_at = text.find("- name: \"debian\"").unwrap();
        assert!(env_at < project_at);
        let merge_at = text.find(&format!("Merge-Type: {PROJECT_MERGE}")).unwrap();
        assert!(env_at < merge_at && merge_at < project_at);
        assert!(text.contains("Content-Type: text/cloud-config; charset"));
        let script = user_data(&input(Some("#!/bin/sh\necho hi\n")));
        assert!(script.contains("Content-Type: text/x-shellscript"));
    }

    #[test]
    fn the_boundary_never_occurs_in_a_part() {
        let own = "#cloud-config\n# ==env-seed-part\n";
        let text = user_data(&input(Some(own)));
        let boundary = text
            .lines()
            .next()
            .unwrap()
            .split("boundary=\"")
            .nth(1)
            .unwrap()
            .trim_end_matches('"');
        assert_ne!(boundary, "==env-seed-part");
        assert!(!own.contains(boundary), "{boundary:?}");
    }

    #[test]
    fn odd_names_and_keys_stay_yaml_strings() {
        let mut i = input(None);
        i.authorized_keys = vec!["ssh-ed25519 AAAA a: b # c".into()];
        let text = user_data(&i);
        assert!(text.contains("- \"ssh-ed25519 AAAA a: b # c\""), "{text}");
    }
}
