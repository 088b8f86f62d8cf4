//! The backend fields as the Envfile reads them: defaults, per-machine
//! overrides, located errors, and the private network across hosts.

use super::EnvfileError;
use super::libvirt::MachineBackend;
use super::read::parse;
use std::path::Path;

fn parse_text(text: &str) -> Result<super::Envfile, EnvfileError> {
    parse(Path::new("/p/Envfile"), text)
}

/// Two machines on the defaults' libvirt host, one with a table of its own.
const TWO_ON_LIBVIRT: &str = r#"
[defaults]
box = "debian-12"
backend = "libvirt"
libvirt = { uri = "qemu+ssh://ops@kvm1/system", pool = "fast" }

[machines.web]

[machines.other]
libvirt = { uri = "qemu:///session" }
"#;

#[test]
fn machines_pick_their_backend_from_defaults_or_their_own_table() {
    // A qemu machine with libvirt settings of its own is an error.
    let laptop =
        format!("{TWO_ON_LIBVIRT}\n[machines.laptop]\nbackend = \"qemu\"\nlibvirt = {{}}\n");
    let err = parse_text(&laptop).unwrap_err();
    assert_eq!(err.field, "machines.laptop.libvirt");
    let e = parse_text(TWO_ON_LIBVIRT).unwrap();
    let MachineBackend::Libvirt(web) = &e.machines[0].backend else {
        panic!("web is not on libvirt");
    };
    assert_eq!(
        (web.uri.as_str(), web.pool.as_str()),
        ("qemu+ssh://ops@kvm1/system", "fast")
    );
    // A machine's table replaces the defaults' as a whole.
    let MachineBackend::Libvirt(other) = &e.machines[1].backend else {
        panic!("other is not on libvirt");
    };
    assert_eq!(
        (other.uri.as_str(), other.pool.as_str()),
        ("qemu:///session", "default")
    );
    // One that opts out of the defaults' libvirt host is fine.
    let e = parse_text(
        "[defaults]\nbox = \"b\"\nbackend = \"libvirt\"\nlibvirt = { uri = \"qemu:///session\" }\n[machines.a]\n[machines.b]\nbackend = \"qemu\"\n",
    )
    .unwrap();
    assert_eq!(e.machines[1].backend, MachineBackend::Local);
    let local = parse_text("[defaults]\nbox = \"b\"\n").unwrap();
    assert_eq!(local.machines[0].backend, MachineBackend::Local);
}

#[test]
fn bad_backend_settings_name_file_line_and_field() {
    let e = parse_text("[machines.web]\nbox = \"b\"\nbackend = \"libvirt\"\nlibvirt = { uri = \"qemu+tcp://kvm1/system\" }\n")
        .unwrap_err();
    assert_eq!(e.field, "machines.web.libvirt.uri");
    assert_eq!(e.line, 4);
    assert!(e.message.contains("qemu+ssh://"), "{}", e.message);
    let e = parse_text("[machines.web]\nbox = \"b\"\nbackend = \"xen\"\n").unwrap_err();
    assert_eq!(e.line, 3);
    assert!(e.message.contains("libvirt"), "{}", e.message);
    let e = parse_text(
        "[machines.web]\nbox = \"b\"\nbackend = \"libvirt\"\nlibvirt = { pol = \"x\" }\n",
    )
    .unwrap_err();
    assert!(e.message.contains("pool"), "{}", e.message);
}

#[test]
fn a_private_network_stays_on_one_host() {
    let e = parse_text(
        r#"
[defaults]
box = "b"
backend = "libvirt"

[machines.a]
ip = "192.168.56.10"
libvirt = { uri = "qemu+ssh://kvm1/system" }

[machines.b]
ip = "192.168.56.11"
libvirt = { uri = "qemu+ssh://kvm2/system" }
"#,
    )
    .unwrap_err();
    assert_eq!(e.field, "machines.b.ip");
    assert!(e.message.contains("different hosts"), "{}", e.message);
    // Both joining one named network is the user's call.
    parse_text(
        r#"
[defaults]
box = "b"
backend = "libvirt"

[machines.a]
ip = "192.168.56.10"
libvirt = { uri = "qemu+ssh://kvm1/system", network = "lab" }

[machines.b]
ip = "192.168.56.11"
libvirt = { uri = "qemu+ssh://kvm2/system", network = "lab" }
"#,
    )
    .unwrap();
    let e = parse_text(
        "[machines.a]\nbox = \"b\"\nip = \"192.168.56.10\"\n[machines.b]\nbox = \"b\"\nip = \"192.168.56.11\"\nbackend = \"libvirt\"\n",
    )
    .unwrap_err();
    assert!(e.message.contains("this host"), "{}", e.message);
}
