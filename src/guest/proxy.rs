//! The guest script that gives a machine its HTTP proxy (or takes it
//! away): `/etc/environment` for every login and sudo, apt's and dnf's or
//! yum's own settings, which do not read the environment when run by
//! tools. Pure: text in, script out.

use crate::envfile::proxy::ProxyTable;

/// Marks env's block in `/etc/environment`.
const BEGIN: &str = "# BEGIN env proxy (managed by env)";
/// End of env's block.
const END: &str = "# END env proxy";
/// apt's configuration file env writes.
pub const APT_FILE: &str = "/etc/apt/apt.conf.d/95env-proxy";
/// The comment line before the `proxy=` line env adds to dnf.conf and
/// yum.conf (their parsers take no comment on the line itself).
const DNF_MARK: &str = "# env proxy (managed by env)";

/// A root script setting `proxy` in the guest, or removing what env set
/// before when `None`. Values are checked by the Envfile (no quotes,
/// spaces or shell characters), so they are written as they are.
pub fn script(proxy: Option<&ProxyTable>) -> String {
    let mut s = format!(
        "f=/etc/environment\n\
         if [ -f \"$f\" ] && grep -q '^{BEGIN}' \"$f\"; then sed -i '/^{BEGIN}/,/^{END}/d' \"$f\"; fi\n\
         rm -f {APT_FILE}\n\
         for c in /etc/dnf/dnf.conf /etc/yum.conf; do [ -f \"$c\" ] && sed -i '/^{DNF_MARK}$/,+1d' \"$c\"; done; true\n"
    );
    let Some(p) = proxy else {
        return s;
    };
    let mut block = format!("{BEGIN}\n");
    for (name, value) in [
        ("http_proxy", &p.http),
        ("https_proxy", &p.https),
        ("no_proxy", &p.no_proxy),
    ] {
        if let Some(v) = value {
            block.push_str(&format!("{name}={v}\n{}={v}\n", name.to_uppercase()));
        }
    }
    block.push_str(END);
    s.push_str(&format!(
        "printf '%s\\n' '{}' >> \"$f\"\n",
        block.replace('\n', "' '")
    ));
    let mut apt = String::new();
    if let Some(v) = &p.http {
        apt.push_str(&format!("Acquire::http::Proxy \"{v}\";\n"));
    }
    if let Some(v) = &p.https {
        apt.push_str(&format!("Acquire::https::Proxy \"{v}\";\n"));
    }
    s.push_str(&format!(
        "if [ -d /etc/apt/apt.conf.d ]; then printf '%s' '{apt}' > {APT_FILE}; fi\n"
    ));
    // dnf and yum take one proxy, for both schemes.
    if let Some(v) = p.https.as_ref().or(p.http.as_ref()) {
        s.push_str(&format!(
            "for c in /etc/dnf/dnf.conf /etc/yum.conf; do [ -f \"$c\" ] && sed -i -e '/^\\[main\\]/a {DNF_MARK}' -e '/^\\[main\\]/a proxy={v}' \"$c\"; done; true\n"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `script` with its paths under `root` (a fake guest's /etc).
    fn run_in(root: &std::path::Path, script: &str) {
        let script = script.replace("/etc/", &format!("{}/etc/", root.display()));
        crate::util::shell::sh_ok(&["-c", &format!("set -e\n{script}")]);
    }

    #[test]
    fn the_proxy_is_written_for_logins_apt_and_dnf_and_removed_again() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("etc/apt/apt.conf.d")).unwrap();
        std::fs::create_dir_all(root.join("etc/dnf")).unwrap();
        std::fs::write(root.join("etc/environment"), "LANG=C.UTF-8\n").unwrap();
        std::fs::write(root.join("etc/dnf/dnf.conf"), "[main]\ngpgcheck=1\n").unwrap();
        let proxy = ProxyTable {
            http: Some("http://10.0.2.2:3128".into()),
            https: None,
            no_proxy: Some("localhost,.corp".into()),
        };
        // Twice: the second run replaces, it does not add.
        run_in(root, &script(Some(&proxy)));
        run_in(root, &script(Some(&proxy)));
        let environment = std::fs::read_to_string(root.join("etc/environment")).unwrap();
        assert_eq!(
            environment,
            format!(
                "LANG=C.UTF-8\n{BEGIN}\nhttp_proxy=http://10.0.2.2:3128\nHTTP_PROXY=http://10.0.2.2:3128\nno_proxy=localhost,.corp\nNO_PROXY=localhost,.corp\n{END}\n"
            )
        );
        let apt = std::fs::read_to_string(root.join("etc/apt/apt.conf.d/95env-proxy")).unwrap();
        assert_eq!(apt, "Acquire::http::Proxy \"http://10.0.2.2:3128\";\n");
        let dnf = std::fs::read_to_string(root.join("etc/dnf/dnf.conf")).unwrap();
        assert_eq!(
            dnf,
            format!("[main]\n{DNF_MARK}\nproxy=http://10.0.2.2:3128\ngpgcheck=1\n")
        );

        run_in(root, &script(None));
        assert_eq!(
            std::fs::read_to_string(root.join("etc/environment")).unwrap(),
            "LANG=C.UTF-8\n"
        );
        assert!(!root.join("etc/apt/apt.conf.d/95env-proxy").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("etc/dnf/dnf.conf")).unwrap(),
            "[main]\ngpgcheck=1\n"
        );
    }
}
