//! Parsers of untrusted (or mistyped) input never panic: random and mutated
//! Envfiles, spec files, catalogs, box metadata, archive and disk headers,
//! the spec script's framed output, qemu-img's JSON and QEMU's and ssh's
//! messages, a bounded number of cases each (proptest; `PROPTEST_CASES`
//! raises it for a longer run, docs/testing.md). They may refuse; they must
//! not crash, hang or wrap.

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
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        let _ = crate::envfile::read::parse(&dir.path().join("Envfile"), &text);
    }

    #[test]
    fn spec_files(text in prop_oneof![mutated(SPEC), ".{0,300}"]) {
        let _ = crate::spec::parse::parse(Path::new("t.toml"), &text);
    }

    #[test]
    fn catalogs_and_metadata(text in prop_oneof![mutated(CATALOG), mutated(METADATA), ".{0,200}"]) {
        if let Ok(catalog) = serde_json::from_str::<crate::boxes::catalog::Catalog>(&text) {
            let _ = crate::boxes::catalog::pick(&catalog, None);
        }
        if let Ok(meta) = serde_json::from_str::<crate::boxes::metadata::Metadata>(&text) {
            let _ = meta.check(Path::new("/nonexistent-env-box"));
            let _ = meta.disk_files();
        }
        let _ = crate::boxes::catalog::Location::parse(&text).join(&text);
    }

    #[test]
    fn headers(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = crate::boxes::archive::detect(&bytes);
        let _ = crate::boxes::image::check_header(&bytes);
        let mut qcow2 = b"QFI\xfb".to_vec();
        qcow2.extend_from_slice(&bytes);
        let _ = crate::boxes::image::check_header(&qcow2);
    }

    #[test]
    fn archives(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let dest = tempfile::tempdir().unwrap();
        let _ = crate::boxes::archive::unpack_reader(&bytes[..], dest.path());
    }

    #[test]
    fn guest_and_helper_output(bytes in prop::collection::vec(any::<u8>(), 0..600), text in ".{0,200}") {
        let token = "envFtest";
        let mut framed = format!("@@{token} 0 k\n").into_bytes();
        framed.extend_from_slice(&bytes);
        let _ = crate::spec::script::parse_output(&framed, token);
        let _ = crate::spec::script::parse_output(&bytes, token);
        let _ = crate::backend::qemu::img::parse_snapshots(&text);
        let _ = crate::backend::qemu::ports::taken_forward(&text);
        let _ = crate::util::version::Constraint::parse_box(&text);
        let _ = crate::util::version::Constraint::parse_package(&text);
        let _ = crate::util::size::parse_size(&text);
        let _ = crate::util::duration::parse_duration(&text);
        let _ = crate::util::names::check_user_name(&text);
    }
}
