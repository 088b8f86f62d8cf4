//! Parsers of untrusted (or mistyped) input never panic: random and mutated
//! Envfiles, spec files, catalogs, box metadata, archive and disk headers,
//! the spec script's framed output, qemu-img's JSON and QEMU's and ssh's
//! messages, a bounded number of cases each (proptest; `PROPTEST_CASES`
//! raises it for a longer run, docs/testing.md). They may refuse; they must
//! not crash, hang or wrap.

use crate::fuzz;
use proptest::prelude::*;
use std::path::Path;

/// Valid inputs the mutations start from.
const ENVFILE: &str = r#"[defaults]
box = "debian-12"
cpus = 2
memory = "1G"
boot_timeout = "90s"
ports = [{ guest = 80, host = 8080, auto_correct = true }]
folders = [{ host = "src", guest = "/srv", type = "rsync", exclude = ["*.log"] }]
disks = [{ name = "data", size = "1G", keep = true, mount = "/data" }]

[machines.web]
ip = "10.1.1.11"
[[machines.web.provision]]
type = "shell"
inline = "echo hi"

[machines.db]
depends_on = ["web"]
"#;

const SPEC: &str = r#"[file."/etc/motd"]
exists = true
mode = "0644"
contains = ["Debian", "/^The/", "!secret"]

[package.nginx]
version = ">= 1.22, < 2"

[port."tcp:80"]
listening = true

[command."uname -s"]
exit_status = 0
timeout = "5s"
"#;

const CATALOG: &str = r#"{"name":"org/box","versions":[{"version":"1.2.0","providers":[{"name":"libvirt","url":"x.box","checksum_type":"sha256","checksum":"00"}]}]}"#;

const METADATA: &str = r#"{"provider":"libvirt","format":"qcow2","virtual_size":8,"env":{"kernel":"vmlinuz","ssh_user":"vagrant"}}"#;

/// `text` with some bytes replaced, removed or inserted.
fn mutated(text: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..12).prop_map(move |edits| {
        let mut bytes = text.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let i = at % (bytes.len() + 1);
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 if i < bytes.len() => {
                    bytes.remove(i);
                }
                _ => bytes.insert(i, byte),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(200)
    ))]

    #[test]
    fn envfiles(text in prop_oneof![mutated(ENVFILE), ".{0,300}"]) {
        fuzz::envfile(text.as_bytes());
    }

    #[test]
    fn spec_files(text in prop_oneof![mutated(SPEC), ".{0,300}"]) {
        fuzz::spec_file(text.as_bytes());
    }

    #[test]
    fn catalogs_and_metadata(text in prop_oneof![mutated(CATALOG), mutated(METADATA), ".{0,200}"]) {
        fuzz::catalog_and_metadata(text.as_bytes());
    }

    #[test]
    fn headers(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        fuzz::headers(&bytes);
    }

    #[test]
    fn archives(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        fuzz::archive(&bytes);
    }

    #[test]
    fn guest_and_helper_output(bytes in prop::collection::vec(any::<u8>(), 0..600), text in ".{0,200}") {
        fuzz::guest_and_helper_output(&bytes);
        fuzz::guest_and_helper_output(text.as_bytes());
    }
}

/// The inputs the mutations start from, written as AFL++ seeds:
/// `ENV_FUZZ_SEEDS=DIR cargo test --bin env write_fuzz_seeds` (docs/testing.md).
#[test]
fn write_fuzz_seeds() {
    let seeds: &[(&str, &str)] = &[
        ("envfile", ENVFILE),
        ("spec", SPEC),
        ("catalog", CATALOG),
        ("catalog", METADATA),
        ("header", "QFI\u{fb}\0\0\0\x03"),
        ("archive", "not a tar"),
        ("output", "@@envFtest 0 k\nfacts"),
    ];
    for (target, _) in seeds {
        assert!(fuzz::TARGETS.iter().any(|(name, _)| name == target));
    }
    let Some(out) = std::env::var_os("ENV_FUZZ_SEEDS") else {
        return;
    };
    for (i, (target, text)) in seeds.iter().enumerate() {
        let dir = Path::new(&out).join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{i}")), text).unwrap();
    }
    // A real box archive: a tar with metadata.json and a disk.
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("metadata.json", METADATA.as_bytes()),
        ("box.img", b"QFI\xfb"),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, name, data).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    std::fs::write(Path::new(&out).join("archive/seed-tar"), &tar).unwrap();
    std::fs::write(Path::new(&out).join("header/seed-tar"), &tar).unwrap();
}
