//! The Envfile's parsing, defaults and every located error, one short test
//! each. (Over 600 lines: a test file, read by scanning.)

use super::error::with_suggestion;
use super::model::*;
use super::read::parse;
use super::*;
use crate::util::duration::parse_duration;
use crate::util::size::Size;
use std::path::Path;
use std::time::Duration;

fn parse_text(text: &str) -> Result<Envfile, EnvfileError> {
    parse(Path::new("/p/Envfile"), text)
}

fn err(text: &str) -> EnvfileError {
    parse_text(text).expect_err("should fail")
}

#[test]
fn minimal_single_machine_is_named_default() {
    let e = parse_text("[defaults]\nbox = \"debian-12\"\n").unwrap();
    assert_eq!(e.machines.len(), 1);
    let m = &e.machines[0];
    assert_eq!(m.name, "default");
    assert_eq!(m.boxref.name, "debian-12");
    assert_eq!(m.cpus, DEFAULT_CPUS);
    assert_eq!(m.memory, DEFAULT_MEMORY);
    assert_eq!(m.accel, Accel::Auto);
    assert_eq!(m.boot_timeout, DEFAULT_BOOT_TIMEOUT);
    assert_eq!(m.ssh_guest_port, 22);
    assert!(m.ssh_insert_key);
    assert_eq!(e.dir, Path::new("/p"));
}

#[test]
fn machines_override_defaults_field_by_field_in_file_order() {
    let e = parse_text(
        r#"
[defaults]
box = "debian-12"
memory = "2G"
cpus = 4
ports = [{ guest = 80, host = 8080 }]

[machines.web]
cpus = 1

[machines.db]
box = "other"
memory = 512
accel = "tcg"
boot_timeout = "2m"
ports = []
ssh = { user = "admin", private_key = "keys/id", guest_port = 2222, insert_key = false, forward_agent = true }
qemu_args = ["-device", "virtio-rng-pci"]
"#,
    )
    .unwrap();
    let names: Vec<_> = e.machines.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["web", "db"]);
    let web = e.machine("web").unwrap();
    assert_eq!(
        (web.cpus, web.memory, web.boxref.name.as_str()),
        (1, Size::mib(2048), "debian-12")
    );
    assert_eq!(web.ports.len(), 1);
    assert_eq!(web.ports[0].host_ip.to_string(), "127.0.0.1");
    assert_eq!(web.ports[0].protocol, Protocol::Tcp);
    let db = e.machine("db").unwrap();
    assert_eq!(
        (db.cpus, db.memory, db.boxref.name.as_str()),
        (4, Size::mib(512), "other")
    );
    assert_eq!(db.accel, Accel::Tcg);
    assert_eq!(db.boot_timeout, Duration::from_secs(120));
    assert!(db.ports.is_empty());
    assert_eq!(db.ssh_user.as_deref(), Some("admin"));
    assert_eq!(db.ssh_private_key.as_deref(), Some(Path::new("/p/keys/id")));
    assert_eq!(db.ssh_guest_port, 2222);
    assert!(!db.ssh_insert_key);
    assert!(db.ssh_forward_agent && !web.ssh_forward_agent);
    assert_eq!(db.qemu_args, ["-device", "virtio-rng-pci"]);
}

#[test]
fn unknown_key_names_line_column_field_and_suggests() {
    let e = err("[defaults]\nbox = \"x\"\n\n[machines.web]\nmemroy = \"1G\"\n");
    assert_eq!((e.line, e.column), (5, 1));
    assert!(e.field.contains("machines.web"), "{}", e.field);
    assert!(
        e.message.contains("unknown field `memroy`"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("did you mean `memory`?"),
        "{}",
        e.message
    );
    let shown = e.to_string();
    assert!(shown.starts_with("/p/Envfile:5:1: "), "{shown}");
    assert!(shown.contains("5 | memroy = \"1G\""), "{shown}");
}

#[test]
fn unknown_top_level_table() {
    let e = err("[machine.web]\nbox = \"x\"\n");
    assert_eq!(e.line, 1);
    assert!(
        e.message.contains("did you mean `machines`?"),
        "{}",
        e.message
    );
}

#[test]
fn bad_accel_lists_allowed_values() {
    let e = err("[defaults]\nbox = \"x\"\naccel = \"kvmm\"\n");
    assert_eq!((e.line, e.column), (3, 9));
    assert_eq!(e.field, "defaults.accel");
    assert!(e.message.contains("`auto`, `kvm`"), "{}", e.message);
    assert!(e.message.contains("did you mean `kvm`?"), "{}", e.message);
}

#[test]
fn bad_size_names_the_field() {
    let e = err("[machines.a]\nbox = \"x\"\nmemory = \"lots\"\n");
    assert_eq!(e.field, "machines.a.memory");
    assert_eq!(e.line, 3);
    assert!(e.message.contains("not a size"), "{}", e.message);
}

#[test]
fn wrong_type_names_the_field() {
    let e = err("[machines.a]\nbox = \"x\"\ncpus = \"two\"\n");
    assert_eq!(e.field, "machines.a.cpus");
    assert_eq!(e.line, 3);
}

#[test]
fn syntax_error_is_located() {
    let e = err("[defaults]\nbox = \"x\n");
    assert_eq!(e.line, 2);
    assert!(e.field.is_empty());
}

#[test]
fn duplicate_machine_is_a_toml_error() {
    let e = err("[machines.a]\nbox = \"x\"\n[machines.a]\nbox = \"y\"\n");
    assert_eq!(e.line, 3);
}

#[test]
fn missing_box_is_reported_on_the_machine() {
    let e = err("[machines.web]\ncpus = 1\n");
    assert_eq!(e.field, "machines.web");
    assert_eq!(e.line, 1);
    assert!(e.message.contains("has no box"), "{}", e.message);
}

#[test]
fn semantic_errors_point_at_the_value() {
    let e = err("[machines.web]\nbox = \"x\"\ncpus = 0\n");
    assert_eq!(
        (e.field.as_str(), e.line, e.column),
        ("machines.web.cpus", 3, 8)
    );
    let e = err("[defaults]\nbox = \"x\"\nmemory = \"64M\"\n[machines.a]\n");
    assert_eq!((e.field.as_str(), e.line), ("defaults.memory", 3));
    let e = err("[machines.a]\nbox = \"x\"\nports = [{ guest = 0, host = 1 }]\n");
    assert_eq!(e.field, "machines.a.ports[0].guest");
}

#[test]
fn port_clashes_within_and_across_machines() {
    let e = err(
        "[machines.a]\nbox = \"x\"\nports = [\n { guest = 1, host = 8080 },\n { guest = 2, host = 8080 },\n]\n",
    );
    assert_eq!(e.field, "machines.a.ports[1].host");
    assert_eq!(e.line, 5);
    assert!(e.message.contains("ports[0]"), "{}", e.message);

    let e = err(
        "[defaults]\nbox = \"x\"\n[machines.a]\nports = [{ guest = 1, host = 8080 }]\n[machines.b]\nports = [{ guest = 2, host = 8080 }]\n",
    );
    assert_eq!(e.field, "machines.b.ports[0].host");
    assert_eq!(e.line, 6);
    assert!(e.message.contains("machine `a`"), "{}", e.message);

    // Same port, other protocol or address: no clash.
    parse_text(
        "[defaults]\nbox = \"x\"\n[machines.a]\nports = [{ guest = 1, host = 8080 }, { guest = 1, host = 8080, protocol = \"udp\" }]\n[machines.b]\nports = [{ guest = 2, host = 8080, host_ip = \"127.0.0.2\" }]\n",
    )
    .unwrap();
}

#[test]
fn bad_port_fields() {
    let e = err("[machines.a]\nbox = \"x\"\nports = [{ guest = 70000, host = 1 }]\n");
    assert!(e.field.contains("ports[0].guest"), "{}", e.field);
    let e =
        err("[machines.a]\nbox = \"x\"\nports = [{ guest = 1, host = 2, protocol = \"sctp\" }]\n");
    assert!(e.message.contains("`tcp`"), "{}", e.message);
    let e = err(
        "[machines.a]\nbox = \"x\"\nports = [{ guest = 1, host = 2, host_ip = \"localhost\" }]\n",
    );
    assert!(e.field.contains("host_ip"), "{}", e.field);
    let e = err("[machines.a]\nbox = \"x\"\nports = [{ guest = 1, hots = 2 }]\n");
    assert!(e.message.contains("did you mean `host`?"), "{}", e.message);
}

#[test]
fn invalid_machine_names() {
    for name in ["\"1web\"", "\"we b\"", "\"web.x\"", "\"\""] {
        let e = err(&format!("[defaults]\nbox = \"x\"\n[machines.{name}]\n"));
        assert!(
            e.message.contains("not a valid machine name"),
            "{name}: {}",
            e.message
        );
        assert_eq!(e.line, 3);
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    for bad in ["", "0", "s", "5d", "-1", "1.5m"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
    let e = err("[defaults]\nbox = \"x\"\nboot_timeout = 0\n");
    assert_eq!(e.field, "defaults.boot_timeout");
}

#[test]
fn accel_parse() {
    assert_eq!(Accel::parse("TCG"), Ok(Accel::Tcg));
    assert!(Accel::parse("hvf").is_err());
}

#[test]
fn find_walks_up() {
    let tmp = tempfile::tempdir().unwrap();
    let deep = tmp.path().join("a/b");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(tmp.path().join("Envfile"), "").unwrap();
    assert_eq!(find(None, &deep).unwrap(), tmp.path().join("Envfile"));
    assert!(find(Some(&tmp.path().join("nope")), &deep).is_err());
    let empty = tempfile::tempdir().unwrap();
    assert!(
        find(None, empty.path())
            .unwrap_err()
            .to_string()
            .contains("env init")
    );
}

#[test]
fn example_envfile_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("Envfile.example");
    let text = std::fs::read_to_string(&path).unwrap();
    let e = parse(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    assert!(!e.machines.is_empty());
}

#[test]
fn suggestion_only_for_close_names() {
    assert_eq!(
        with_suggestion("unknown field `zzzzzz`, expected `box` or `cpus`"),
        "unknown field `zzzzzz`, expected `box` or `cpus`"
    );
    assert!(
        with_suggestion("unknown field `cpu`, expected `box` or `cpus`")
            .ends_with("(did you mean `cpus`?)")
    );
}

fn with_files(text: &str) -> (tempfile::TempDir, Result<Envfile, EnvfileError>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
    std::fs::write(dir.path().join("scripts/setup.sh"), "#!/bin/sh\n").unwrap();
    std::fs::write(dir.path().join("app.conf"), "x").unwrap();
    let path = dir.path().join("Envfile");
    let parsed = parse(&path, text);
    (dir, parsed)
}

#[test]
fn provisioners_run_defaults_first_and_are_validated() {
    use provisioners::{Action, RunWhen, Script};
    let (dir, parsed) = with_files(
        r#"
[defaults]
box = "b"
provision = [{ type = "shell", inline = "echo hi" }]
[machines.web]
provision = [
  { type = "shell", name = "setup", path = "scripts/setup.sh", args = ["a"], env = { X = "1" }, run = "always" },
  { type = "file", source = "app.conf", destination = "/etc/app.conf", privileged = true },
]
"#,
    );
    let e = parsed.unwrap();
    let p = &e.machines[0].provisioners;
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].name, "shell #1");
    assert_eq!(
        p[0].action,
        Action::Shell {
            script: Script::Inline("echo hi".into()),
            args: vec![],
            env: vec![],
            privileged: true,
            changed_exit_code: None
        }
    );
    assert_eq!(p[1].name, "setup");
    assert_eq!(p[1].run, RunWhen::Always);
    assert!(
        matches!(&p[1].action, Action::Shell { script: Script::File(f), .. } if f == &dir.path().join("scripts/setup.sh"))
    );
    assert_eq!(p[2].name, "file #3");
    assert!(
        matches!(&p[2].action, Action::File { privileged: true, destination, .. } if destination == "/etc/app.conf")
    );
}

#[test]
fn provisioner_errors_are_located() {
    let cases = [
        (
            "{ type = \"shell\" }",
            "machines.web.provision[0]",
            "needs `inline` or `path`",
        ),
        (
            "{ type = \"shell\", path = \"nope.sh\" }",
            "machines.web.provision[0].path",
            "no script at",
        ),
        (
            "{ type = \"shell\", inline = \"x\", source = \"app.conf\" }",
            "machines.web.provision[0].source",
            "for file provisioners",
        ),
        (
            "{ type = \"file\", source = \"app.conf\" }",
            "machines.web.provision[0]",
            "needs `destination`",
        ),
        (
            "{ type = \"file\", source = \"missing\", destination = \"/x\" }",
            "machines.web.provision[0].source",
            "does not exist",
        ),
        (
            "{ type = \"file\", source = \"app.conf\", destination = \"rel\" }",
            "machines.web.provision[0].destination",
            "must be absolute",
        ),
        (
            "{ type = \"shell\", inline = \"x\", env = { \"1A\" = \"v\" } }",
            "machines.web.provision[0].env",
            "not a variable name",
        ),
        (
            "{ type = \"shell\", inline = \"x\", run = \"sometimes\" }",
            "machines.web.provision",
            "`always`",
        ),
        (
            "{ type = \"ansibel\", inline = \"x\" }",
            "machines.web.provision",
            "`shell`",
        ),
    ];
    for (entry, field, needle) in cases {
        let (_dir, parsed) = with_files(&format!(
            "[defaults]\nbox = \"b\"\n[machines.web]\nprovision = [\n  {entry},\n]\n"
        ));
        let e = parsed.expect_err(entry);
        assert!(
            e.field.starts_with(field),
            "{entry}: field {} (want {field})",
            e.field
        );
        assert!(e.message.contains(needle), "{entry}: {}", e.message);
        assert_eq!(e.line, 5, "{entry}: {e}");
    }
}

#[test]
fn depends_on_is_checked() {
    let e = parse_text(
        "[defaults]\nbox = \"b\"\n[machines.db]\n[machines.web]\ndepends_on = [\"db\"]\n",
    )
    .unwrap();
    assert_eq!(e.machine("web").unwrap().depends_on, ["db"]);
    let e = err("[defaults]\nbox = \"b\"\n[machines.web]\ndepends_on = [\"dbb\"]\n");
    assert_eq!((e.field.as_str(), e.line), ("machines.web.depends_on", 4));
    assert!(e.message.contains("no machine `dbb`"), "{}", e.message);
    let e = err(
        "[defaults]\nbox = \"b\"\n[machines.a]\ndepends_on = [\"b\"]\n[machines.b]\ndepends_on = [\"a\"]\n",
    );
    assert!(e.message.contains("cycle"), "{}", e.message);
    let e = err("[defaults]\nbox = \"b\"\n[machines.a]\ndepends_on = [\"a\"]\n");
    assert!(e.message.contains("itself"), "{}", e.message);
}

#[test]
fn private_network_fields_are_checked() {
    let e = parse_text("[defaults]\nbox = \"b\"\nprivate_subnet = \"192.168.56.0\"\n[machines.a]\nip = \"192.168.56.10\"\n[machines.b]\n").unwrap();
    assert_eq!(
        e.machine("a").unwrap().ip,
        Some("192.168.56.10".parse().unwrap())
    );
    let cases = [
        (
            "[defaults]\nbox = \"b\"\nprivate_subnet = \"192.168.56.1\"\n[machines.a]\n",
            "defaults.private_subnet",
            "not a /24",
        ),
        (
            "[defaults]\nbox = \"b\"\nprivate_subnet = \"192.168.56.0\"\n[machines.a]\nip = \"10.0.0.5\"\n",
            "machines.a.ip",
            "outside",
        ),
        (
            "[defaults]\nbox = \"b\"\n[machines.a]\nip = \"10.1.1.5\"\n[machines.b]\nip = \"10.1.1.5\"\n",
            "machines.b.ip",
            "already the address",
        ),
        (
            "[defaults]\nbox = \"b\"\n[machines.a]\nip = \"10.1.1.255\"\n",
            "machines.a.ip",
            "broadcast",
        ),
        (
            "[defaults]\nbox = \"b\"\n[machines.a]\nip = \"10.1.1.5\"\n[machines.b]\nip = \"10.1.2.5\"\n",
            "machines.b.ip",
            "same /24",
        ),
        (
            "[defaults]\nbox = \"b\"\nip = \"10.1.1.5\"\n[machines.a]\n[machines.b]\n",
            "defaults.ip",
            "belongs to a machine",
        ),
    ];
    for (text, field, needle) in cases {
        let e = err(text);
        assert_eq!(e.field, field, "{text}");
        assert!(e.message.contains(needle), "{text}: {}", e.message);
    }
}

#[test]
fn fields_in_the_wrong_table() {
    let e = err("[defaults]\nbox = \"b\"\ndepends_on = [\"x\"]\n");
    assert_eq!(e.field, "defaults.depends_on");
    let e = err("[defaults]\nbox = \"b\"\n[machines.a]\nprivate_subnet = \"10.0.0.0\"\n");
    assert_eq!(e.field, "machines.a.private_subnet");
}

#[test]
fn disks_are_validated() {
    let e = parse_text(
        "[defaults]\nbox = \"b\"\ndisks = [{ name = \"logs\", size = \"1G\" }]\n[machines.db]\ndisks = [{ name = \"data\", size = 512, keep = true, mount = \"/data\", format = \"raw\" }]\n",
    )
    .unwrap();
    let d = &e.machines[0].disks;
    assert_eq!(d.len(), 2);
    assert_eq!((d[0].name.as_str(), d[0].keep), ("logs", false));
    assert_eq!(
        (d[1].name.as_str(), d[1].keep, d[1].mount.as_deref()),
        ("data", true, Some("/data"))
    );
    assert_eq!(d[1].format, disks::DiskFormat::Raw);
    let cases = [
        (
            "{ name = \"a b\", size = \"1G\" }",
            "machines.db.disks[0].name",
            "not a disk name",
        ),
        (
            "{ name = \"seventeen-chars-x\", size = \"1G\" }",
            "machines.db.disks[0].name",
            "not a disk name",
        ),
        (
            "{ name = \"d\", size = \"1G\", mount = \"rel\" }",
            "machines.db.disks[0].mount",
            "absolute",
        ),
        (
            "{ name = \"d\", size = \"lots\" }",
            "machines.db.disks[0].size",
            "not a size",
        ),
        (
            "{ name = \"d\", size = \"1G\", format = \"vmdk\" }",
            "machines.db.disks[0].format",
            "`qcow2`",
        ),
    ];
    for (entry, field, needle) in cases {
        let e = err(&format!(
            "[defaults]\nbox = \"b\"\n[machines.db]\ndisks = [{entry}]\n"
        ));
        assert!(e.field.starts_with(field), "{entry}: {}", e.field);
        assert!(e.message.contains(needle), "{entry}: {}", e.message);
    }
    let e = err(
        "[defaults]\nbox = \"b\"\ndisks = [{ name = \"d\", size = 1 }]\n[machines.db]\ndisks = [{ name = \"d\", size = 1 }]\n",
    );
    assert!(
        e.message.contains("two disks are named `d`"),
        "{}",
        e.message
    );
}

#[test]
fn box_checksum_is_checked_where_it_is_written() {
    let hex = "ab".repeat(32);
    let e = parse_text(&format!(
        "[defaults]\nbox = \"team/base\"\nbox_url = \"https://b.example/base.box\"\nbox_checksum = \"SHA256:{hex}\"\n"
    ))
    .unwrap();
    let checksum = e.machines[0].boxref.checksum.as_ref().unwrap();
    assert_eq!(checksum.to_string(), format!("sha256:{hex}"));

    let e = err("[defaults]\nbox = \"b\"\n\n[machines.web]\nbox_checksum = \"sha256:abc\"\n");
    assert_eq!((e.line, e.field.as_str()), (5, "machines.web.box_checksum"));
    assert!(e.message.contains("64 hex digits"), "{}", e.message);
    let e = err("[defaults]\nbox = \"b\"\nbox_checksum = \"md5:abc\"\n");
    assert_eq!((e.line, e.field.as_str()), (3, "defaults.box_checksum"));
    let e = err("[defaults]\nbox = \"b\"\nbox_checksum = \"abc\"\n");
    assert!(e.message.contains("TYPE:HEX"), "{}", e.message);
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let text = "[machines.a]\nbox = \"x\"\nmemory = \"lots\"\ncpus = 0\n\n[machines.b]\nbox = \"x\"\nports = [{ guest = 80, host = 99999 }]\n";
    let e = err(text);
    assert_eq!(e.count(), 3, "{e}");
    let all: Vec<(usize, &str)> = std::iter::once(&e)
        .chain(&e.also)
        .map(|p| (p.line, p.field.as_str()))
        .collect();
    assert_eq!(
        all,
        [
            (3, "machines.a.memory"),
            (4, "machines.a.cpus"),
            (8, "machines.b.ports[0].host"),
        ]
    );
    assert!(
        e.also[1].message.contains("65535") || e.also[1].message.contains("u16"),
        "{}",
        e.also[1].message
    );
    let shown = e.to_string();
    assert!(
        shown.contains("/p/Envfile:3:")
            && shown.contains("/p/Envfile:4:")
            && shown.contains("/p/Envfile:8:"),
        "{shown}"
    );
}

#[test]
fn an_unknown_key_does_not_hide_the_problems_after_it() {
    let e = err("[defaults]\nbox = \"x\"\nmemroy = \"1G\"\ncpus = 0\n");
    assert_eq!(e.count(), 2, "{e}");
    assert!(
        e.message.contains("did you mean `memory`?"),
        "{}",
        e.message
    );
    assert_eq!(e.also[0].field, "defaults.cpus");
}

#[test]
fn a_user_name_that_ssh_would_read_as_an_option_is_refused() {
    let e = err("[defaults]\nbox = \"x\"\nssh.user = \"-oProxyCommand=touch /tmp/x\"\n");
    assert_eq!(e.field, "defaults.ssh");
    assert!(e.message.contains("is not a user name"), "{}", e.message);
}

#[test]
fn a_writable_9p_share_of_the_state_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    let path = dir.path().join("Envfile");
    let shared = |folders: &str| {
        let text = format!("[defaults]\nbox = \"x\"\nfolders = [{folders}]\n");
        parse(&path, &text)
    };
    let e = shared(r#"{ host = ".", guest = "/vagrant" }"#).unwrap_err();
    assert_eq!(e.field, "defaults.folders[0].host");
    assert!(
        e.message.contains(".envstate/") && e.message.contains("readonly = true"),
        "{}",
        e.message
    );
    shared(r#"{ host = ".", guest = "/vagrant", readonly = true }"#).unwrap();
    shared(r#"{ host = ".", guest = "/vagrant", type = "rsync" }"#).unwrap();
    shared(r#"{ host = "src", guest = "/src" }"#).unwrap();
}

#[test]
fn readiness_probes_are_read_and_checked_where_written() {
    let env = parse_text(
        "[defaults]\nbox = \"b\"\nready = [{ port = 22 }]\n[machines.a]\nready = [{ port = 80 }, { http = \"http://localhost/\", status = 204 }, { command = \"true\" }]\nready_timeout = \"2m\"\n[machines.b]\n",
    )
    .unwrap();
    let a = env.machine("a").unwrap();
    assert_eq!(
        a.ready,
        [
            Probe::Port(22),
            Probe::Port(80),
            Probe::Http {
                url: "http://localhost/".into(),
                status: 204
            },
            Probe::Command("true".into()),
        ]
    );
    assert_eq!(a.ready_timeout, std::time::Duration::from_secs(120));
    let b = env.machine("b").unwrap();
    assert_eq!(b.ready, [Probe::Port(22)]);
    assert_eq!(b.ready_timeout, super::model::DEFAULT_READY_TIMEOUT);
    for (probe, message) in [
        ("{ port = 0 }", "port 0"),
        ("{ port = 80, command = \"x\" }", "one of"),
        ("{}", "one of"),
        ("{ command = \"x\", status = 200 }", "goes with `http`"),
        ("{ http = \"ftp://x/\" }", "no http(s) URL"),
        ("{ http = \"http://x/\", status = 42 }", "no HTTP status"),
        ("{ command = \" \" }", "empty"),
    ] {
        let e = err(&format!(
            "[defaults]\nbox = \"b\"\n[machines.a]\nready = [{{ port = 1 }}, {probe}]\n"
        ));
        assert!(e.message.contains(message), "{probe}: {}", e.message);
        assert!(
            e.to_string().contains("machines.a.ready[1]"),
            "{probe}: {e}"
        );
    }
    let e = err("[defaults]\nbox = \"b\"\n[machines.a]\nready = [{ prot = 1 }]\n");
    assert!(e.message.contains("did you mean `port`"), "{}", e.message);
}
