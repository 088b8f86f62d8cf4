//! The cache's key (what changes it and what does not), its entries
//! (committed whole, damage noticed) and pruning.

use super::key::{KeyContext, key};
use super::*;
use crate::envfile::Machine;
use std::path::Path;

fn project(text: &str) -> (tempfile::TempDir, Machine) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
    std::fs::create_dir_all(dir.path().join("box")).unwrap();
    std::fs::write(dir.path().join("box/metadata.json"), "{}").unwrap();
    std::fs::write(dir.path().join("scripts/setup.sh"), "echo one\n").unwrap();
    std::fs::create_dir_all(dir.path().join("site/css")).unwrap();
    std::fs::write(dir.path().join("site/index.html"), "hello").unwrap();
    std::fs::write(dir.path().join("site/css/a.css"), "body{}").unwrap();
    let path = dir.path().join("Envfile");
    std::fs::write(&path, text).unwrap();
    let envfile = crate::envfile::load(&path).unwrap();
    (dir, envfile.machines[0].clone())
}

const ENVFILE: &str = r#"
[machines.web]
box = "debian-12"
provision = [
  { type = "shell", path = "scripts/setup.sh" },
  { type = "shell", inline = "echo two" },
  { type = "file", source = "site", destination = "/srv/site" },
]
specs = ["specs/web.toml"]
"#;

fn key_of(dir: &Path, machine: &Machine) -> String {
    let box_dir = dir.join("box");
    key(
        machine,
        &KeyContext {
            project_dir: dir,
            box_name: "debian-12",
            box_version: "1.0.0",
            box_dir: &box_dir,
            accel: "auto",
            private_subnet: None,
            peers: vec![("web".into(), None)],
        },
    )
    .unwrap()
}

#[test]
fn the_key_changes_with_every_input_provisioning_reads() {
    let (dir, machine) = project(ENVFILE);
    let d = dir.path();
    let first = key_of(d, &machine);
    assert_eq!(first.len(), 64);
    assert_eq!(first, key_of(d, &machine), "the same inputs, the same key");

    // One byte of a script.
    std::fs::write(d.join("scripts/setup.sh"), "echo onE\n").unwrap();
    let script_changed = key_of(d, &machine);
    assert_ne!(first, script_changed);
    std::fs::write(d.join("scripts/setup.sh"), "echo one\n").unwrap();
    assert_eq!(
        first,
        key_of(d, &machine),
        "back to the same bytes, back to the key"
    );

    // A file deep in an uploaded folder, and its mode.
    std::fs::write(d.join("site/css/a.css"), "body{ }").unwrap();
    assert_ne!(first, key_of(d, &machine));
    std::fs::write(d.join("site/css/a.css"), "body{}").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        d.join("site/index.html"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    assert_ne!(first, key_of(d, &machine));
    std::fs::set_permissions(
        d.join("site/index.html"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    assert_eq!(first, key_of(d, &machine));

    // Settings that shape the guest, the box, the machine's name.
    let mut m = machine.clone();
    m.memory = crate::util::size::Size::mib(2048);
    assert_ne!(first, key_of(d, &m));
    let mut m = machine.clone();
    m.name = "web2".into();
    assert_ne!(first, key_of(d, &m));
    std::fs::write(d.join("box/metadata.json"), "{ }").unwrap();
    assert_ne!(first, key_of(d, &machine), "a box added again is a new box");
}

#[test]
fn what_provisioning_does_not_read_leaves_the_key() {
    let (dir, machine) = project(ENVFILE);
    let d = dir.path();
    let first = key_of(d, &machine);
    // Specs, readiness, ports and timeouts do not shape the guest.
    let mut m = machine.clone();
    m.specs = vec!["specs/other.toml".into()];
    m.boot_timeout = std::time::Duration::from_secs(1);
    m.ready_timeout = std::time::Duration::from_secs(1);
    assert_eq!(first, key_of(d, &m));
    // Nor do env's own state and Git's folder in the project.
    std::fs::create_dir_all(d.join("site/.git")).unwrap();
    std::fs::write(d.join("site/.git/HEAD"), "ref").unwrap();
    std::fs::create_dir_all(d.join("site/.envstate")).unwrap();
    std::fs::write(d.join("site/.envstate/x"), "y").unwrap();
    assert_eq!(first, key_of(d, &machine));
    // The same project in another folder, on the same stored box: the
    // same key (paths under the project are keyed relative to it).
    let (other, machine2) = project(ENVFILE);
    let context = |project_dir| KeyContext {
        project_dir,
        box_name: "debian-12",
        box_version: "1.0.0",
        box_dir: Path::new("/nonexistent-box"),
        accel: "auto",
        private_subnet: None,
        peers: vec![("web".into(), None)],
    };
    let box_dir = d.join("box");
    let here = KeyContext {
        box_dir: &box_dir,
        ..context(d)
    };
    let there = KeyContext {
        box_dir: &box_dir,
        ..context(other.path())
    };
    assert_eq!(
        key(&machine, &here).unwrap(),
        key(&machine2, &there).unwrap()
    );
}

fn entry(cache: &Cache, key: &str, size: usize, last_used: u64) -> Entry {
    let staging = cache.stage().unwrap();
    std::fs::write(staging.path().join("disk.qcow2"), vec![0u8; size]).unwrap();
    let made = cache
        .commit(
            staging,
            Entry {
                key: key.into(),
                machine: "web".into(),
                project: "/p".into(),
                box_name: "debian-12".into(),
                box_version: "1".into(),
                box_dir: "/store/debian-12".into(),
                accel: "tcg".into(),
                idempotent: false,
                created: 0,
                last_used: 0,
                files: Vec::new(),
            },
        )
        .unwrap();
    let mut used = made.clone();
    used.last_used = last_used;
    crate::util::fs::write_atomic(
        &cache.dir(key).join("entry.json"),
        serde_json::to_string(&used).unwrap().as_bytes(),
    )
    .unwrap();
    used
}

#[test]
fn entries_are_committed_whole_and_damage_is_noticed() {
    let root = tempfile::tempdir().unwrap();
    let cache = Cache::at(root.path().join("cache")).unwrap();
    let k = "a".repeat(64);
    assert_eq!(cache.get(&k).unwrap(), None);
    let e = entry(&cache, &k, 100, 5);
    assert_eq!(
        e.files,
        [EntryFile {
            name: "disk.qcow2".into(),
            size: 100
        }]
    );
    assert_eq!(cache.get(&k).unwrap().unwrap().size(), 100);
    // A staging folder left by a crash is no entry.
    let _left = cache.stage().unwrap().keep();
    assert_eq!(cache.list().unwrap().0.len(), 1);

    // A truncated disk: damaged, said why.
    std::fs::write(cache.dir(&k).join("disk.qcow2"), vec![0u8; 10]).unwrap();
    let why = cache.get(&k).unwrap_err().why;
    assert!(why.contains("10 bytes, not 100"), "{why}");
    std::fs::write(cache.dir(&k).join("entry.json"), "{").unwrap();
    assert!(cache.get(&k).unwrap_err().why.contains("damaged"));
    let (entries, damaged) = cache.list().unwrap();
    assert!(entries.is_empty() && damaged.len() == 1);
    cache.remove(&k).unwrap();
    assert_eq!(cache.get(&k).unwrap(), None);
    assert!(cache.remove("../x").is_err(), "only keys name folders");
}

#[test]
fn pruning_drops_damaged_orphaned_then_least_recently_used() {
    let root = tempfile::tempdir().unwrap();
    let cache = Cache::at(root.path().join("cache")).unwrap();
    let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
    let old = entry(&cache, &a, 300, 1);
    let mid = entry(&cache, &b, 300, 2);
    let mut gone = entry(&cache, &c, 300, 3);
    gone.box_name = "removed".into();
    let damaged = [Damaged {
        key: "d".repeat(64),
        why: "x".into(),
    }];
    let plan = prune_plan(
        &[old.clone(), mid.clone(), gone.clone()],
        &damaged,
        350,
        &|e| e.box_name == "removed",
    );
    let keys: Vec<&str> = plan.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, [&"d".repeat(64), &c, &a]);
    assert!(plan[1].1.contains("is gone") && plan[2].1.contains("size limit"));
    // Under the limit, only the unusable go.
    assert_eq!(prune_plan(&[old, mid], &[], 10_000, &|_| false), []);
}

#[test]
fn the_size_limit_comes_from_the_environment_first() {
    // Read without setting the variable (tests run in parallel).
    if std::env::var_os(MAX_SIZE_VAR).is_none() {
        assert_eq!(max_bytes(None).unwrap(), DEFAULT_MAX_BYTES);
        assert_eq!(max_bytes(Some(5)).unwrap(), 5);
    }
}
