//! Shared folders on a real guest: 9p and virtio-fs both ways (files the
//! guest writes belong to the host user), read-only 9p and virtio-fs, rsync
//! with excludes, `env rsync` and `env rsync --watch`, and the live
//! snapshot refused while a live folder is attached.

mod common;

use common::{GuestSlot, TestProject, text};
use std::os::unix::fs::MetadataExt;

#[test]
fn ninep_and_rsync_folders() {
    let _slot = GuestSlot::take();
    let p = TestProject::with_box(
        r#"
[defaults]
box = "debian-12"
folders = [
  { host = "shared", guest = "/srv/shared" },
  { host = "docs", guest = "/srv/docs", readonly = true },
  { host = "app", guest = "/opt/app", type = "rsync", exclude = ["*.log", "tmp/"] },
  { host = "fs", guest = "/srv/fs", type = "virtiofs" },
  { host = "fsdocs", guest = "/srv/fsdocs", type = "virtiofs", readonly = true },
]
"#,
    );
    let root = p.dir.path();
    for dir in ["shared", "docs", "app/tmp", "app/lib", "fs/deep", "fsdocs"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("shared/from-host.txt"), "host says hi\n").unwrap();
    std::fs::write(root.join("docs/readme.txt"), "read me\n").unwrap();
    std::fs::write(root.join("app/main.py"), "print('app')\n").unwrap();
    std::fs::write(root.join("app/lib/util.py"), "X = 1\n").unwrap();
    std::fs::write(root.join("app/debug.log"), "noise\n").unwrap();
    std::fs::write(root.join("app/tmp/scratch"), "noise\n").unwrap();
    std::fs::write(root.join("fs/deep/from-host.txt"), "virtiofs hi\n").unwrap();
    std::fs::write(root.join("fsdocs/readme.txt"), "read me too\n").unwrap();

    let out = p.env(&["up"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(text(&out).1.contains("rsynced"), "{}", text(&out).1);
    // No type: `auto`, 9p on env's own box, said in one line.
    assert!(
        text(&out)
            .1
            .contains("folder /srv/shared: 9p (env boots the box's own kernel, which has 9p)"),
        "{}",
        text(&out).1
    );
    let check = |cmd: &str| p.ok(&["ssh", "--", cmd]);

    // 9p: host to guest, live.
    assert_eq!(check("cat /srv/shared/from-host.txt"), "host says hi\n");
    std::fs::write(root.join("shared/later.txt"), "written after boot\n").unwrap();
    assert_eq!(check("cat /srv/shared/later.txt"), "written after boot\n");
    // Guest to host; the file belongs to the host user, whoever wrote it in the guest.
    check("echo from guest | sudo tee /srv/shared/from-guest.txt >/dev/null");
    let written = root.join("shared/from-guest.txt");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "from guest\n");
    assert_eq!(std::fs::metadata(&written).unwrap().uid(), host_uid());
    assert!(check("mount").contains("/srv/shared type 9p"));

    // Read-only 9p.
    assert_eq!(check("cat /srv/docs/readme.txt"), "read me\n");
    let out = p.env(&["ssh", "--", "sudo touch /srv/docs/nope"]);
    assert!(!out.status.success(), "a read-only folder was written");
    assert!(!root.join("docs/nope").exists());

    // virtio-fs: both ways, live; the guest's writes belong to the host user.
    assert!(
        check("mount").contains("/srv/fs type virtiofs"),
        "{}",
        check("mount")
    );
    assert_eq!(check("cat /srv/fs/deep/from-host.txt"), "virtiofs hi\n");
    std::fs::write(root.join("fs/later.txt"), "after boot\n").unwrap();
    assert_eq!(check("cat /srv/fs/later.txt"), "after boot\n");
    check(
        "echo from guest | sudo tee /srv/fs/deep/from-guest.txt >/dev/null && sudo mkdir /srv/fs/made",
    );
    let written = root.join("fs/deep/from-guest.txt");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "from guest\n");
    assert_eq!(std::fs::metadata(&written).unwrap().uid(), host_uid());
    assert!(root.join("fs/made").is_dir());
    assert_eq!(check("cat /srv/fsdocs/readme.txt"), "read me too\n");
    let out = p.env(&["ssh", "--", "sudo touch /srv/fsdocs/nope"]);
    assert!(
        !out.status.success(),
        "a read-only virtio-fs folder was written"
    );
    assert!(!root.join("fsdocs/nope").exists());

    // No VM state can be saved while a live folder is attached: a clear no.
    let out = p.env(&["snapshot", "save", "s1"]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("9p or virtiofs folders"),
        "{}",
        text(&out).1
    );

    // rsync: copied with excludes, owned by the SSH user; `env rsync` updates.
    assert_eq!(check("cat /opt/app/main.py"), "print('app')\n");
    assert_eq!(check("cat /opt/app/lib/util.py"), "X = 1\n");
    assert_eq!(check("stat -c %U /opt/app/main.py"), "vagrant\n");
    let out = p.env(&[
        "ssh",
        "--",
        "test -e /opt/app/debug.log || test -e /opt/app/tmp/scratch",
    ]);
    assert_eq!(out.status.code(), Some(1), "excluded files were copied");
    std::fs::write(root.join("app/main.py"), "print('v2')\n").unwrap();
    std::fs::remove_file(root.join("app/lib/util.py")).unwrap();
    p.ok(&["rsync"]);
    assert_eq!(check("cat /opt/app/main.py"), "print('v2')\n");
    assert_eq!(
        p.env(&["ssh", "--", "test -e /opt/app/lib/util.py"])
            .status
            .code(),
        Some(1),
        "deleted on the host, deleted in the guest"
    );

    // `env rsync --watch`: each change copied within moments, changes to
    // excluded files ignored, deletions followed.
    let mut watcher = p
        .cmd(&["rsync", "--watch"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (said_tx, said) = std::sync::mpsc::channel();
    let stderr = watcher.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = said_tx.send(line);
        }
    });
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("watching")) {
        let line = said
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the watcher did not start: {lines:?}"));
        lines.push(line);
    }
    let eventually = |cmd: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !p.env(&["ssh", "--", cmd]).status.success() {
            assert!(std::time::Instant::now() < deadline, "never true: {cmd}");
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    };
    std::fs::write(root.join("app/trace.log"), "noise\n").unwrap();
    std::fs::write(root.join("app/lib/watched.py"), "Y = 2\n").unwrap();
    eventually("grep -q 'Y = 2' /opt/app/lib/watched.py");
    std::fs::remove_file(root.join("app/main.py")).unwrap();
    eventually("test ! -e /opt/app/main.py");
    assert_eq!(
        p.env(&["ssh", "--", "test -e /opt/app/trace.log"])
            .status
            .code(),
        Some(1),
        "an excluded file was copied"
    );
    let _ = watcher.kill();
    let _ = watcher.wait();
}

fn host_uid() -> u32 {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
