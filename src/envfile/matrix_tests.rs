//! The platform x suite matrix and `[targets.*]`: combinations, their
//! names and merged settings, and every located error.

use super::matrix::machine_name;
use super::read::parse;
use super::targets::{Address, parse_address};
use super::*;
use std::path::Path;

fn parse_text(text: &str) -> Result<Envfile, EnvfileError> {
    parse(Path::new("/p/Envfile"), text)
}

fn err(text: &str) -> EnvfileError {
    parse_text(text).expect_err("should fail")
}

const MATRIX: &str = r#"
[defaults]
memory = "512M"
specs = ["specs/common.toml"]
provision = [{ type = "shell", inline = "echo defaults" }]

[platforms.debian-12]
box = "debian-12"

[platforms."ubuntu-24.04"]
box = "ubuntu-24.04"
memory = "1G"
provision = [{ type = "shell", inline = "echo platform" }]

[suites.web]
provision = [{ type = "shell", inline = "echo web" }]
specs = ["specs/web.toml"]

[suites.db]
cpus = 1
memory = "768M"
"#;

#[test]
fn every_suite_runs_on_every_platform_named_suite_platform() {
    let e = parse_text(MATRIX).unwrap();
    let names: Vec<&str> = e.machines.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "web-debian-12",
            "web-ubuntu-24-04",
            "db-debian-12",
            "db-ubuntu-24-04"
        ]
    );
    let c = e.machines[1].combination.as_ref().unwrap();
    assert_eq!(
        (c.suite.as_str(), c.platform.as_str()),
        ("web", "ubuntu-24.04")
    );
    assert!(e.machines.iter().all(|m| m.name != DEFAULT_MACHINE));
}

#[test]
fn a_combination_layers_defaults_platform_then_suite() {
    let e = parse_text(MATRIX).unwrap();
    let web_ubuntu = e.machine("web-ubuntu-24-04").unwrap();
    assert_eq!(web_ubuntu.boxref.name, "ubuntu-24.04");
    // The platform's memory over the defaults'; the suite sets none.
    assert_eq!(web_ubuntu.memory.to_string(), "1G");
    // Lists add up in layer order.
    let shells: Vec<String> = web_ubuntu
        .provisioners
        .iter()
        .map(|p| format!("{:?}", p.action))
        .collect();
    assert_eq!(shells.len(), 3, "{shells:?}");
    assert!(
        shells[0].contains("defaults")
            && shells[1].contains("platform")
            && shells[2].contains("web")
    );
    assert_eq!(web_ubuntu.specs, ["specs/common.toml", "specs/web.toml"]);
    // The suite's fields over the platform's.
    let db_ubuntu = e.machine("db-ubuntu-24-04").unwrap();
    assert_eq!(
        (db_ubuntu.cpus, db_ubuntu.memory.to_string().as_str()),
        (1, "768M")
    );
    assert_eq!(db_ubuntu.specs, ["specs/common.toml"]);
}

#[test]
fn names_turn_what_a_host_name_cannot_hold_into_dashes() {
    assert_eq!(machine_name("web", "ubuntu-24.04"), "web-ubuntu-24-04");
    assert_eq!(
        machine_name("my_suite", "generic/alma9"),
        "my-suite-generic-alma9"
    );
    assert_eq!(machine_name("a", "b"), "a-b");
}

#[test]
fn matrix_errors_point_at_the_table_that_wrote_them() {
    let e = err("[platforms.debian-12]\nbox = \"x\"\n");
    assert_eq!((e.field.as_str(), e.line), ("platforms", 1));
    assert!(e.message.contains("without suites"), "{}", e.message);
    let e = err("[suites.web]\nspecs = [\"a.toml\"]\n");
    assert!(e.message.contains("without platforms"), "{}", e.message);

    // A field from the platform is reported where the platform writes it.
    let e = err("[platforms.p]\nbox = \"x\"\ncpus = 0\n[suites.s]\n");
    assert_eq!((e.field.as_str(), e.line), ("platforms.p.cpus", 3));
    let e = err("[platforms.p]\nbox = \"x\"\n[suites.s]\nmemory = \"1M\"\n");
    assert_eq!((e.field.as_str(), e.line), ("suites.s.memory", 4));
    let e = err("[platforms.p]\n[suites.s]\n");
    assert!(e.message.contains("has no box"), "{}", e.message);

    let e = err("[platforms.p]\nbox = \"x\"\nip = \"192.168.56.10\"\n[suites.s]\n");
    assert_eq!((e.field.as_str(), e.line), ("platforms.p.ip", 3));
    let e = err(
        "[platforms.p]\nbox = \"x\"\n[suites.s]\ndepends_on = [\"db\"]\n[machines.db]\nbox = \"x\"\n",
    );
    assert_eq!((e.field.as_str(), e.line), ("suites.s.depends_on", 4));
    // Two platforms forwarding one host port clash unless both may move.
    let e = err(
        "[platforms.a]\nbox = \"x\"\n[platforms.b]\nbox = \"y\"\n[suites.s]\nports = [{ guest = 80, host = 8080 }]\n",
    );
    assert_eq!((e.field.as_str(), e.line), ("suites.s.ports[0].host", 6));
    assert!(e.message.contains("auto_correct"), "{}", e.message);
    parse_text("[platforms.a]\nbox = \"x\"\n[platforms.b]\nbox = \"y\"\n[suites.s]\nports = [{ guest = 80, host = 8080, auto_correct = true }]\n").unwrap();
    // A combination named like a machine.
    let e = err("[machines.s-p]\nbox = \"x\"\n[platforms.p]\nbox = \"x\"\n[suites.s]\n");
    assert!(
        e.message.contains("two machines are named `s-p`"),
        "{}",
        e.message
    );
}

#[test]
fn a_project_without_a_matrix_has_no_combinations() {
    let e = parse_text("[machines.web]\nbox = \"x\"\n").unwrap();
    assert!(e.machines[0].combination.is_none());
    assert!(e.targets.is_empty());
}

#[test]
fn addresses_parse_with_user_port_and_ipv6() {
    let direct = |user: Option<&str>, host: &str, port: Option<u16>| Address::Direct {
        user: user.map(String::from),
        host: host.into(),
        port,
    };
    assert_eq!(parse_address("web1").unwrap(), direct(None, "web1", None));
    assert_eq!(
        parse_address("deploy@web1.example.com:2222").unwrap(),
        direct(Some("deploy"), "web1.example.com", Some(2222))
    );
    assert_eq!(
        parse_address("root@[::1]:22").unwrap(),
        direct(Some("root"), "::1", Some(22))
    );
    assert_eq!(
        parse_address("2001:db8::1").unwrap(),
        direct(None, "2001:db8::1", None)
    );
    assert_eq!(
        parse_address("[2001:db8::1]").unwrap(),
        direct(None, "2001:db8::1", None)
    );
    assert_eq!(
        parse_address("deploy@web1:2222").unwrap().to_string(),
        "deploy@web1:2222"
    );
    assert_eq!(
        parse_address("root@[::1]:22").unwrap().to_string(),
        "root@[::1]:22"
    );
    for bad in [
        "web1:0",
        "web1:http",
        "-oProxyCommand=x",
        "-x@web1",
        "we b1",
        "@web1",
        "[::1",
        "[::1]x",
        "",
    ] {
        assert!(parse_address(bad).is_err(), "{bad} parsed");
    }
}

#[test]
fn targets_resolve_paths_and_refuse_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ssh_config"), "Host web\n").unwrap();
    std::fs::write(dir.path().join("id"), "key").unwrap();
    let path = dir.path().join("Envfile");
    let text = r#"
[defaults]
box = "x"

[targets.prod-web]
ssh = "deploy@web1.example.com:22"
identity_file = "id"
proxy_jump = "bastion.example.com"
specs = ["specs/web.toml"]
sudo = true

[targets.staging]
ssh_config = "ssh_config"
host = "web"
specs = ["specs/*.toml"]
"#;
    let e = parse(&path, text).unwrap();
    assert_eq!(e.targets.len(), 2);
    let prod = e.target("prod-web").unwrap();
    assert_eq!(
        prod.identity_file.as_deref(),
        Some(dir.path().join("id").as_path())
    );
    assert!(prod.sudo);
    assert_eq!(prod.proxy_jump.as_deref(), Some("bastion.example.com"));
    let staging = e.target("staging").unwrap();
    assert!(!staging.sudo);
    assert_eq!(
        staging.address,
        Address::Config {
            file: dir.path().join("ssh_config"),
            host: "web".into()
        }
    );

    let bad = |body: &str| {
        parse(
            &path,
            &format!("[defaults]\nbox = \"x\"\n[targets.t]\n{body}"),
        )
        .expect_err(body)
    };
    let e = bad("specs = [\"a.toml\"]\n");
    assert_eq!((e.field.as_str(), e.line), ("targets.t", 3));
    let e = bad("ssh = \"h\"\n");
    assert!(e.message.contains("list its spec files"), "{}", e.message);
    let e = bad("ssh = \"-oProxyCommand=touch /tmp/x\"\nspecs = [\"a\"]\n");
    assert_eq!((e.field.as_str(), e.line), ("targets.t.ssh", 4));
    let e = bad("ssh = \"h\"\nssh_config = \"ssh_config\"\nhost = \"web\"\nspecs = [\"a\"]\n");
    assert!(e.message.contains("keep one"), "{}", e.message);
    let e = bad("ssh_config = \"ssh_config\"\nspecs = [\"a\"]\n");
    assert!(e.message.contains("host = "), "{}", e.message);
    let e = bad("ssh_config = \"nope\"\nhost = \"web\"\nspecs = [\"a\"]\n");
    assert_eq!(e.field, "targets.t.ssh_config");
    let e = bad("ssh = \"h\"\nidentity_file = \"missing\"\nspecs = [\"a\"]\n");
    assert_eq!(e.field, "targets.t.identity_file");
    let e = bad("ssh = \"h\"\nproxy_jump = \"-J x\"\nspecs = [\"a\"]\n");
    assert_eq!(e.field, "targets.t.proxy_jump");
    let e = bad("ssh = \"h\"\nspecs = [\"a\"]\npassword = \"x\"\n");
    assert!(e.message.contains("password"), "{}", e.message);
    let e = parse(
        &path,
        "[machines.t]\nbox = \"x\"\n[targets.t]\nssh = \"h\"\nspecs = [\"a\"]\n",
    )
    .expect_err("clash");
    assert!(
        e.message.contains("a machine's name already"),
        "{}",
        e.message
    );
}

#[test]
fn a_box_server_is_an_http_url_where_it_is_written() {
    let e =
        parse_text("[defaults]\nbox = \"team/debian\"\nbox_server = \"https://r.example/reg\"\n")
            .unwrap();
    assert_eq!(
        e.machines[0].boxref.server.as_deref(),
        Some("https://r.example/reg")
    );
    let e = err("[machines.m]\nbox = \"team/debian\"\nbox_server = \"/srv/registry\"\n");
    assert_eq!((e.field.as_str(), e.line), ("machines.m.box_server", 3));
}

#[test]
fn the_cache_table_is_read_and_checked() {
    let e = parse_text("[cache]\nenabled = true\nmax_size = \"5G\"\n[defaults]\nbox = \"x\"\n")
        .unwrap();
    assert!(e.cache.enabled);
    assert_eq!(
        e.cache.max_size.map(|s| s.to_string()).as_deref(),
        Some("5G")
    );
    assert!(
        !parse_text("[defaults]\nbox = \"x\"\n")
            .unwrap()
            .cache
            .enabled,
        "off unless asked"
    );
    let e = err("[cache]\nenable = true\n[defaults]\nbox = \"x\"\n");
    assert_eq!(e.line, 2);
}

#[test]
fn auto_folders_take_what_the_box_kernel_shares() {
    use super::folders::{FolderKind, choose};
    let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let both = list(&["9p", "virtiofs"]);
    let vfs = list(&["virtiofs"]);
    let none = list(&[]);
    assert_eq!(choose(Some(&both), false).0, FolderKind::NineP);
    let (kind, why) = choose(Some(&vfs), false);
    assert_eq!(kind, FolderKind::Virtiofs);
    assert!(why.contains("no 9p"), "{why}");
    assert_eq!(
        choose(Some(&none), true).0,
        FolderKind::Rsync,
        "what the box says wins"
    );
    assert_eq!(
        choose(None, true).0,
        FolderKind::NineP,
        "env's own kernel has 9p"
    );
    let (kind, why) = choose(None, false);
    assert_eq!(kind, FolderKind::Rsync);
    assert!(why.contains("does not say"), "{why}");

    // The default is auto; exclude and readonly both allowed with it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    let path = dir.path().join("Envfile");
    let e = parse(
        &path,
        "[defaults]\nbox = \"x\"\nfolders = [{ host = \"src\", guest = \"/srv\", exclude = [\"*.log\"], readonly = true }]\n",
    )
    .unwrap();
    let folder = &e.machines[0].folders[0];
    assert_eq!(folder.kind, FolderKind::Auto);
    let (chosen, notes) = super::folders::resolve_auto(&e.machines[0].folders, Some(&vfs), false);
    assert_eq!(chosen[0].kind, FolderKind::Virtiofs);
    assert_eq!(
        notes,
        ["folder /srv: virtiofs (the box's kernel has virtiofs but no 9p)"]
    );
}
