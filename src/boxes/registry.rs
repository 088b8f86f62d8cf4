//! Vagrant's box registry names (`owner/name`, as `generic/ubuntu2204`):
//! resolved the way Vagrant 2.3 resolves them, to the box metadata (a
//! catalog) at `SERVER/owner/name`, asked for as JSON. The server is
//! `ENV_BOX_SERVER`, else the Envfile's `box_server`, else Vagrant's public
//! registry; Vagrant itself reads `VAGRANT_SERVER_URL` the same way, so a
//! team's own registry serves both.

/// Vagrant's default server (its `DEFAULT_SERVER_URL`).
pub const DEFAULT_SERVER: &str = "https://vagrantcloud.com/api/v2/vagrant";

/// The environment variable naming another server.
pub const SERVER_VAR: &str = "ENV_BOX_SERVER";

/// Whether `name` is a registry name: `owner/name`, one `/`, both parts
/// made of letters, digits, `.`, `_`, `-` (a path or URL is not one).
pub fn is_registry_name(name: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    match name.split_once('/') {
        Some((owner, box_name)) => part(owner) && part(box_name),
        None => false,
    }
}

/// The registry server: `ENV_BOX_SERVER`, else `configured` (the
/// Envfile's), else [`DEFAULT_SERVER`].
pub fn server(configured: Option<&str>) -> String {
    pick_server(std::env::var(SERVER_VAR).ok().as_deref(), configured)
}

/// [`server`] with the environment given: the first non-empty one wins.
pub fn pick_server(environment: Option<&str>, configured: Option<&str>) -> String {
    [environment, configured]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or(DEFAULT_SERVER)
        .trim_end_matches('/')
        .to_string()
}

/// Where the box metadata of `name` is on `server`.
pub fn catalog_url(server: &str, name: &str) -> String {
    format!("{}/{name}", server.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_owner_slash_name_and_nothing_else() {
        for name in [
            "generic/ubuntu2204",
            "hashicorp/bionic64",
            "acme/deb-12.1_x",
        ] {
            assert!(is_registry_name(name), "{name}");
        }
        for name in [
            "debian-12",
            "a/b/c",
            "/abs",
            "rel/",
            "./x",
            "../x",
            "https://x/y",
            "owner/na me",
            "file:x/y",
            "boxes/x.box?",
        ] {
            assert!(!is_registry_name(name), "{name}");
        }
    }

    #[test]
    fn the_environment_wins_over_the_envfile_over_the_default() {
        assert_eq!(pick_server(None, None), DEFAULT_SERVER);
        assert_eq!(
            pick_server(None, Some("https://r.example/v/")),
            "https://r.example/v"
        );
        assert_eq!(
            pick_server(Some("http://127.0.0.1:1/reg"), Some("https://r.example")),
            "http://127.0.0.1:1/reg"
        );
        assert_eq!(
            pick_server(Some(" "), Some("https://r.example")),
            "https://r.example"
        );
        assert_eq!(
            catalog_url(
                "https://vagrantcloud.com/api/v2/vagrant/",
                "generic/ubuntu2204"
            ),
            "https://vagrantcloud.com/api/v2/vagrant/generic/ubuntu2204"
        );
    }
}
