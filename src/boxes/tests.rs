use super::*;

/// Writes a small valid box archive (fake disk) and returns its path.
pub(crate) fn fake_box(dir: &Path, version: Option<&str>) -> PathBuf {
    let path = dir.join(format!("fake-{}.box", version.unwrap_or("none")));
    let mut builder = tar::Builder::new(fs::File::create(&path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, data).unwrap();
    };
    add(
        "metadata.json",
        br#"{"provider":"libvirt","format":"qcow2","virtual_size":1}"#,
    );
    add("box.img", &super::image::empty_qcow2_header());
    if let Some(v) = version {
        add("info.json", format!(r#"{{"version":"{v}"}}"#).as_bytes());
    }
    builder.finish().unwrap();
    path
}

#[test]
fn add_list_find_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::at(tmp.path().join("boxes"));
    let b = store
        .add_archive(
            &fake_box(tmp.path(), Some("1.2.0")),
            "org/deb",
            None,
            false,
            &mut |_| {},
        )
        .unwrap();
    assert_eq!((b.name.as_str(), b.version.as_str()), ("org/deb", "1.2.0"));
    assert!(b.dir.ends_with("org-VAGRANTSLASH-deb/1.2.0"));
    store
        .add_archive(
            &fake_box(tmp.path(), Some("1.10.0")),
            "org/deb",
            None,
            false,
            &mut |_| {},
        )
        .unwrap();
    store
        .add_archive(
            &fake_box(tmp.path(), None),
            "plain",
            None,
            false,
            &mut |_| {},
        )
        .unwrap();

    let listed: Vec<_> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|b| format!("{}@{}", b.name, b.version))
        .collect();
    assert_eq!(listed, ["org/deb@1.2.0", "org/deb@1.10.0", "plain@0"]);
    assert_eq!(store.find("org/deb", None).unwrap().version, "1.10.0");
    assert_eq!(
        store.find("org/deb", Some("1.2.0")).unwrap().version,
        "1.2.0"
    );
    assert!(
        store
            .find("nope", None)
            .unwrap_err()
            .to_string()
            .contains("env box add")
    );

    let removed = store.remove("org/deb", Some("1.2.0"), false).unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(store.list().unwrap().len(), 2);
    assert!(store.remove("nope", None, false).is_err());
}

#[test]
fn adding_twice_needs_force() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::at(tmp.path().join("boxes"));
    let archive = fake_box(tmp.path(), None);
    store
        .add_archive(&archive, "a", None, false, &mut |_| {})
        .unwrap();
    let err = store
        .add_archive(&archive, "a", None, false, &mut |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("--force"), "{err}");
    store
        .add_archive(&archive, "a", None, true, &mut |_| {})
        .unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn a_bad_archive_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::at(tmp.path().join("boxes"));
    let bad = tmp.path().join("bad.box");
    fs::write(&bad, "garbage").unwrap();
    assert!(
        store
            .add_archive(&bad, "a", None, false, &mut |_| {})
            .is_err()
    );
    let leftovers: Vec<_> = fs::read_dir(tmp.path().join("boxes"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != ".lock")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(
        store
            .add_archive(&bad, "../x", None, false, &mut |_| {})
            .is_err()
    );
}

#[test]
fn boxes_in_use_are_kept_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::at(tmp.path().join("boxes"));
    let b = store
        .add_archive(&fake_box(tmp.path(), None), "a", None, false, &mut |_| {})
        .unwrap();
    let machine = tmp.path().join("machine");
    fs::create_dir_all(&machine).unwrap();
    fs::write(machine.join("disk.qcow2"), "").unwrap();
    store.add_user(&b, &machine).unwrap();
    assert_eq!(store.users("a", "0"), std::slice::from_ref(&machine));
    let err = store.remove("a", None, false).unwrap_err();
    assert!(err.to_string().contains("used by 1 machine"), "{err}");
    store.remove_user("a", "0", &machine);
    store.remove("a", None, false).unwrap();
}

#[test]
fn names() {
    for ok in ["debian-12", "org/box", "a.b_c"] {
        check_name(ok).unwrap();
    }
    for bad in ["", "a/b/c", "..", "a/..", "a b", "/a", "a/"] {
        assert!(check_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn staging_left_by_a_killed_env_is_removed_and_a_live_ones_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::at(tmp.path().join("boxes"));
    fs::create_dir_all(&store.root).unwrap();
    // A pid that cannot be running (above the kernel's pid_max).
    let dead = store.root.join(".incoming-4194305-abc");
    let old_release = store.root.join(".incoming-xyz");
    let removing = store.root.join(".removing-abc");
    let live = store
        .root
        .join(format!(".incoming-{}-mine", std::process::id()));
    for dir in [&dead, &old_release, &removing, &live] {
        fs::create_dir_all(dir.join("box")).unwrap();
    }
    // Folders without a pid count as abandoned once a day old.
    let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 24 * 3600);
    for dir in [&old_release, &removing] {
        fs::File::open(dir).unwrap().set_modified(day_ago).unwrap();
    }
    let fresh = store.root.join(".removing-fresh");
    fs::create_dir_all(&fresh).unwrap();
    let staging = store.staging().unwrap();
    assert!(!dead.exists() && !old_release.exists() && !removing.exists());
    assert!(live.exists(), "a running env's staging stays");
    assert!(fresh.exists(), "a fresh one without a pid may be in use");
    assert!(staging.path().exists());
}

#[test]
fn hostile_names_and_versions_are_refused() {
    for bad in [
        ".hidden",
        ".users",
        "-x",
        "org-VAGRANTSLASH-name",
        "a/.b",
        "a b",
    ] {
        assert!(check_name(bad).is_err(), "{bad:?}");
    }
    check_name("org/name").unwrap();
    for bad in ["", "1\n2", "-1", ".1", &"1".repeat(65), ">= 12"] {
        assert!(check_version(bad).is_err(), "{bad:?}");
    }
    for good in ["1", "12.0.0", "1.0-20261203T101010Z", "2+build.1"] {
        check_version(good).unwrap();
    }
}
