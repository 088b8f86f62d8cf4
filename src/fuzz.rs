//! Fuzz targets: each feeds one untrusted (or mistyped) input to the
//! parsers that read it. They may refuse it; they must not panic, hang or
//! wrap. The property tests (`robustness.rs`) and the coverage-guided runs
//! of AFL++ (`--features fuzzing`, `env __fuzz TARGET < input`;
//! docs/testing.md) call the same functions.

use std::path::Path;

/// One fuzz target: takes any bytes.
pub type Target = fn(&[u8]);

/// The targets, by the name `env __fuzz` takes.
pub const TARGETS: &[(&str, Target)] = &[
    ("envfile", envfile),
    ("spec", spec_file),
    ("catalog", catalog_and_metadata),
    ("header", headers),
    ("archive", archive),
    ("output", guest_and_helper_output),
];

/// An Envfile's text.
pub fn envfile(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let Ok(dir) = tempfile::tempdir() else { return };
    let _ = std::fs::create_dir_all(dir.path().join("src"));
    let _ = crate::envfile::read::parse(&dir.path().join("Envfile"), &text);
}

/// A spec file's text.
pub fn spec_file(input: &[u8]) {
    let _ = crate::spec::parse::parse(Path::new("t.toml"), &String::from_utf8_lossy(input));
}

/// A catalog or a box's metadata (JSON), and a URL resolved against itself.
pub fn catalog_and_metadata(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    if let Ok(catalog) = serde_json::from_str::<crate::boxes::catalog::Catalog>(&text) {
        let _ = crate::boxes::catalog::pick(&catalog, None);
    }
    if let Ok(meta) = serde_json::from_str::<crate::boxes::metadata::Metadata>(&text) {
        let _ = meta.check(Path::new("/nonexistent-env-box"));
        let _ = meta.disk_files();
    }
    let _ = crate::boxes::catalog::Location::parse(&text).join(&text);
}

/// The first bytes of a download or a disk image, and a disk image's
/// first sector read through its qcow2 tables.
pub fn headers(input: &[u8]) {
    let _ = crate::boxes::archive::detect(input);
    let _ = crate::boxes::image::check_header(input);
    let mut qcow2 = b"QFI\xfb".to_vec();
    qcow2.extend_from_slice(input);
    let _ = crate::boxes::image::check_header(&qcow2);
    let _ = crate::boxes::image::qcow2_virtual_size(&qcow2);
    // The first sector is read through the image's own (hostile) tables.
    if let Ok(file) = tempfile::NamedTempFile::new()
        && std::fs::write(file.path(), &qcow2).is_ok()
    {
        let _ = crate::boxes::image::first_sector(file.path());
    }
}

/// A whole box archive, unpacked into a throw-away folder.
pub fn archive(input: &[u8]) {
    let Ok(dest) = tempfile::tempdir() else {
        return;
    };
    let _ = crate::boxes::archive::unpack_reader(input, dest.path());
}

/// What guests and helpers print: the spec script's framed output,
/// qemu-img's snapshot JSON, QEMU's messages, and the small value parsers.
pub fn guest_and_helper_output(input: &[u8]) {
    let token = "envFtest";
    let mut framed = format!("@@{token} 0 k\n").into_bytes();
    framed.extend_from_slice(input);
    let _ = crate::spec::script::parse_output(&framed, token);
    let _ = crate::spec::script::parse_output(input, token);
    let text = String::from_utf8_lossy(input);
    let _ = crate::backend::qemu::img::parse_snapshots(&text);
    let _ = crate::backend::qemu::ports::taken_forward(&text);
    let _ = crate::util::version::Constraint::parse_box(&text);
    let _ = crate::util::version::Constraint::parse_package(&text);
    let _ = crate::util::size::parse_size(&text);
    let _ = crate::util::duration::parse_duration(&text);
    let _ = crate::util::names::check_user_name(&text);
}

/// `env __fuzz TARGET`: runs one target on standard input (what AFL++
/// drives); exit 2 for an unknown target.
#[cfg(feature = "fuzzing")]
pub fn main_with(target: &str) -> i32 {
    use std::io::Read;
    let Some((_, run)) = TARGETS.iter().find(|(name, _)| *name == target) else {
        let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("env __fuzz: targets are {}", names.join(", "));
        return 2;
    };
    let mut input = Vec::new();
    if std::io::stdin().read_to_end(&mut input).is_err() {
        return 2;
    }
    run(&input);
    0
}
