//! Fetching boxes over a real HTTP server on 127.0.0.1: by URL with a
//! checksum, from a catalog with a version constraint, a checksum mismatch
//! (nothing installed), a download cut off and resumed, a server that goes
//! silent (given up on, then resumed), a resume answered from the wrong
//! byte (started over, not corrupted), an archive with a
//! path-traversal entry (rejected), and `env up` fetching the box it lacks.

mod common;

use common::http::Server;
use common::{GuestSlot, TestProject, sha256, text, tiny_box};

fn listed(p: &TestProject) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(&p.ok(&["box", "list", "--json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A project with its own empty box store.
fn project() -> (TestProject, tempfile::TempDir) {
    let store = tempfile::tempdir().unwrap();
    let mut p = TestProject::new("[machines.m]\nbox = \"x\"\n");
    p.home = store.path().to_path_buf();
    (p, store)
}

#[test]
fn add_by_url_with_a_checksum_and_a_mismatch_installs_nothing() {
    let server = Server::start();
    let files = tempfile::tempdir().unwrap();
    let b = tiny_box(files.path(), "tiny", "1.0.0");
    let url = server.serve("tiny.box", b.clone());
    let (p, _store) = project();

    let wrong = format!("sha256:{}", "0".repeat(64));
    let out = p.env(&["box", "add", &url, "--checksum", &wrong]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    assert!(
        stderr.contains(&wrong) && stderr.contains(&sha256(&b)),
        "both digests: {stderr}"
    );
    assert!(listed(&p).is_empty(), "nothing installed");
    let downloads = p.home.join("boxes/.downloads");
    assert!(
        std::fs::read_dir(&downloads).map_or(true, |mut d| d.next().is_none()),
        "no download left behind"
    );

    let good = format!("sha256:{}", sha256(&b));
    let out = p.env(&["box", "add", &url, "--checksum", &good]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(listed(&p), [("tiny".to_string(), "1.0.0".to_string())]);
}

#[test]
fn a_catalog_with_a_constraint_picks_the_newest_match() {
    let server = Server::start();
    let files = tempfile::tempdir().unwrap();
    let mut versions = Vec::new();
    for v in ["1.0.0", "1.5.0", "2.0.0"] {
        let b = tiny_box(files.path(), "team-deb", v);
        server.serve(&format!("team-deb-{v}.box"), b.clone());
        versions.push(serde_json::json!({
            "version": v,
            "providers": [
                {"name": "virtualbox", "url": format!("vb-{v}.box")},
                {"name": "libvirt", "url": format!("team-deb-{v}.box"), "architecture": "amd64",
                 "checksum_type": "sha256", "checksum": sha256(&b)}
            ]
        }));
    }
    let catalog = files.path().join("catalog.json");
    std::fs::write(
        &catalog,
        serde_json::json!({"name": "team/deb", "versions": versions}).to_string(),
    )
    .unwrap();
    let url = server.serve("catalog.json", catalog);
    let (p, _store) = project();
    p.ok(&["box", "add", &url, "--version", "~> 1.0"]);
    assert_eq!(listed(&p), [("team/deb".to_string(), "1.5.0".to_string())]);
    p.ok(&["box", "add", &url]);
    assert!(listed(&p).contains(&("team/deb".to_string(), "2.0.0".to_string())));
    let out = p.env(&["box", "add", &url, "--version", ">= 3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("offers 1.0.0, 1.5.0, 2.0.0"),
        "{}",
        text(&out).1
    );
}

/// A download of box `name` interrupted half way by `interrupt` (the
/// server's `cut_next` or `reset_next`): the first `box add` fails saying a
/// rerun resumes, installing nothing; the rerun resumes from the half with
/// a Range request and installs the box. Returns the URL and the first
/// error.
fn interrupted_download_resumes(name: &str, interrupt: fn(&Server, &str, u64)) -> (String, String) {
    let server = Server::start();
    let files = tempfile::tempdir().unwrap();
    let b = tiny_box(files.path(), name, "1.0.0");
    let size = std::fs::metadata(&b).unwrap().len();
    let file = format!("{name}.box");
    let url = server.serve(&file, b.clone());
    interrupt(&server, &file, size / 2);
    let (p, _store) = project();
    let checksum = format!("sha256:{}", sha256(&b));
    let out = p.env(&["box", "add", &url, "--checksum", &checksum]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("run the command again to resume"),
        "{stderr}"
    );
    assert!(listed(&p).is_empty());
    let out = p.env(&["box", "add", &url, "--checksum", &checksum]);
    assert!(out.status.success(), "{}", text(&out).1);
    let seen = server.seen();
    let resumed = seen.last().unwrap();
    assert_eq!(
        resumed.range.as_deref(),
        Some(format!("bytes={}-", size / 2).as_str()),
        "{seen:?}"
    );
    assert_eq!(listed(&p), [(name.to_string(), "1.0.0".to_string())]);
    (url, stderr)
}

#[test]
fn a_download_cut_in_the_middle_resumes() {
    interrupted_download_resumes("cut", Server::cut_next);
}

#[test]
fn a_download_reset_by_the_server_resumes() {
    let (url, stderr) = interrupted_download_resumes("reset", Server::reset_next);
    assert!(stderr.contains(&url), "names the URL: {stderr}");
}

#[test]
fn a_server_gone_silent_is_given_up_on_and_the_download_resumes() {
    let server = Server::start();
    let files = tempfile::tempdir().unwrap();
    let b = tiny_box(files.path(), "stall", "1.0.0");
    let size = std::fs::metadata(&b).unwrap().len();
    let url = server.serve("stall.box", b.clone());
    server.stall_next("stall.box", size / 3);
    let (p, _store) = project();
    let checksum = format!("sha256:{}", sha256(&b));
    let out = p
        .cmd(&["box", "add", &url, "--checksum", &checksum])
        .env("ENV_DOWNLOAD_STALL", "2s")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("was cut off") && stderr.contains("run the command again to resume"),
        "{stderr}"
    );
    assert!(listed(&p).is_empty());
    let out = p.env(&["box", "add", &url, "--checksum", &checksum]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(
        server.seen().last().unwrap().range.as_deref(),
        Some(format!("bytes={}-", size / 3).as_str())
    );
    assert_eq!(listed(&p), [("stall".to_string(), "1.0.0".to_string())]);
}

#[test]
fn a_stall_limit_that_is_no_duration_is_refused() {
    let (p, _store) = project();
    let out = p
        .cmd(&["box", "add", "http://127.0.0.1:9/x.box"])
        .env("ENV_DOWNLOAD_STALL", "forever")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ENV_DOWNLOAD_STALL") && stderr.contains("`forever` is not a duration"),
        "{stderr}"
    );
}

#[test]
fn a_resume_answered_from_the_wrong_byte_starts_over() {
    let server = Server::start();
    let files = tempfile::tempdir().unwrap();
    let b = tiny_box(files.path(), "misrange", "1.0.0");
    let size = std::fs::metadata(&b).unwrap().len();
    let url = server.serve("misrange.box", b.clone());
    server.cut_next("misrange.box", size / 2);
    let (p, _store) = project();
    let checksum = format!("sha256:{}", sha256(&b));
    assert_eq!(
        p.env(&["box", "add", &url, "--checksum", &checksum])
            .status
            .code(),
        Some(1)
    );
    server.misrange_next("misrange.box");
    let out = p.env(&["box", "add", &url, "--checksum", &checksum]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("downloading from the start"), "{stderr}");
    let seen = server.seen();
    let ranges: Vec<_> = seen.iter().map(|s| s.range.clone()).collect();
    assert_eq!(
        ranges[ranges.len() - 2..],
        [Some(format!("bytes={}-", size / 2)), None],
        "{seen:?}"
    );
    assert_eq!(listed(&p), [("misrange".to_string(), "1.0.0".to_string())]);
}

#[test]
fn an_archive_escaping_its_folder_is_rejected() {
    let server = Server::start();
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("evil.box");
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::fast(),
    ));
    let mut header = tar::Header::new_gnu();
    let data = b"owned";
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    // Written raw: the tar crate refuses to build `..` paths itself.
    header.as_gnu_mut().unwrap().name[..14].copy_from_slice(b"../../escaped\0");
    header.set_cksum();
    tar.append(&header, &data[..]).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    let url = server.serve("evil.box", path);
    let (p, _store) = project();
    let out = p.env(&["box", "add", &url, "--name", "evil"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(".."), "{stderr}");
    assert!(listed(&p).is_empty());
    assert!(!p.home.join("escaped").exists() && !p.home.join("boxes/escaped").exists());
}

#[test]
fn up_fetches_the_box_it_lacks() {
    let _slot = GuestSlot::take();
    let server = Server::start();
    let url = server.serve("debian-12.box", common::test_box());
    let (p, _store) = project();
    // The host's HTTP proxy (the test server, which answers absolute URLs
    // as a proxy does) carries the download of a host that does not exist
    // without it, and `proxy = "inherit"` gives it to the guest.
    let via_proxy = |args: &[&str]| {
        p.cmd(args)
            .env("http_proxy", &server.base)
            .env("https_proxy", &server.base)
            .env_remove("no_proxy")
            .env_remove("NO_PROXY")
            .output()
            .unwrap()
    };
    let envfile = |checksum: &str| {
        std::fs::write(
            p.dir.path().join("Envfile"),
            format!(
                "[machines.m]\nbox = \"fetched\"\nbox_url = \"http://boxes.example/debian-12.box\"\nbox_version = \">= 12\"\nbox_checksum = \"sha256:{checksum}\"\nproxy = \"inherit\"\n"
            ),
        )
        .unwrap();
    };
    // A wrong box_checksum: nothing installed, no machine.
    envfile(&"0".repeat(64));
    let out = via_proxy(&["up"]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("checksum mismatch"),
        "{}",
        text(&out).1
    );
    assert!(listed(&p).is_empty());
    assert_eq!(p.state_of("m"), "not_created");
    let digest = std::process::Command::new("sha256sum")
        .arg(common::test_box())
        .output()
        .unwrap();
    envfile(
        String::from_utf8_lossy(&digest.stdout)
            .split_whitespace()
            .next()
            .unwrap(),
    );
    let out = via_proxy(&["up"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(text(&out).1.contains("fetching"), "{}", text(&out).1);
    assert!(
        server
            .targets()
            .contains(&"http://boxes.example/debian-12.box".to_string()),
        "{:?}",
        server.targets()
    );
    assert_eq!(p.ok(&["ssh", "--", "echo", "fetched"]), "fetched\n");
    assert_eq!(listed(&p)[0].0, "fetched");
    // The guest has the host's proxy, its loopback address made the host's
    // address from the guest: in every login, and for apt, whose requests
    // reach the proxy on the host.
    let port = server.base.rsplit(':').next().unwrap();
    assert_eq!(
        p.ok(&["ssh", "--", "echo $http_proxy $HTTPS_PROXY"]),
        format!("http://10.0.2.2:{port} http://10.0.2.2:{port}\n")
    );
    let before = server.targets().len();
    let _ = p.env(&["ssh", "--", "sudo apt-get -o Acquire::Retries=0 update"]);
    let from_guest = server.targets()[before..].to_vec();
    assert!(
        from_guest
            .iter()
            .any(|t| t.contains("dists/") || t.ends_with(":443")),
        "apt in the guest went through the proxy: {from_guest:?}"
    );
    p.ok(&["destroy", "-f"]);

    // A registry name with the Envfile's registry: fetched and booted.
    let digest = sha256(&common::test_box());
    let catalog = p.dir.path().join("registry-catalog.json");
    std::fs::write(
        &catalog,
        registry_catalog("team/debian", &url, &digest, &url),
    )
    .unwrap();
    server.serve("registry/team/debian", catalog);
    std::fs::write(
        p.dir.path().join("Envfile"),
        format!(
            "[machines.m]\nbox = \"team/debian\"\nbox_server = \"{}/registry\"\n",
            server.base
        ),
    )
    .unwrap();
    let out = p.env(&["up"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(
        text(&out).1.contains("from the registry"),
        "{}",
        text(&out).1
    );
    assert_eq!(p.ok(&["ssh", "--", "echo", "registry"]), "registry\n");
    assert!(listed(&p).contains(&("team/debian".to_string(), "1.0.0".to_string())));
    p.ok(&["destroy", "-f"]);
}

#[test]
fn outdated_update_prune_and_a_served_catalog() {
    let server = Server::start();
    let files = tempfile::tempdir().unwrap();
    let served = files.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let old = tiny_box(files.path(), "team/base", "1.0.0");
    std::fs::copy(&old, served.join("base-1.0.0.box")).unwrap();
    // `env box catalog DIR` writes team-base.json for the folder.
    let (p, _store) = project();
    let out = p.ok(&["box", "catalog", served.to_str().unwrap()]);
    assert!(out.contains("team-base.json"), "{out}");
    let url = server.serve("team-base.json", served.join("team-base.json"));
    server.serve("base-1.0.0.box", served.join("base-1.0.0.box"));
    p.ok(&["box", "add", &url, "--version", "< 3"]);
    let fresh: serde_json::Value =
        serde_json::from_str(&p.ok(&["box", "outdated", "--json"])).unwrap();
    assert_eq!(fresh[0]["current"], "1.0.0");
    assert_eq!(fresh[0]["latest"], "1.0.0");

    // A newer version appears in the folder; one beyond the constraint too.
    for v in ["1.1.0", "3.0.0"] {
        let b = tiny_box(files.path(), "team/base", v);
        std::fs::copy(&b, served.join(format!("base-{v}.box"))).unwrap();
        server.serve(
            &format!("base-{v}.box"),
            served.join(format!("base-{v}.box")),
        );
    }
    p.ok(&["box", "catalog", served.to_str().unwrap()]);
    let out = p.ok(&["box", "outdated"]);
    assert!(
        out.contains("1.1.0") && out.contains("newer version available"),
        "{out}"
    );
    assert!(!out.contains("3.0.0"), "the constraint holds: {out}");
    p.ok(&["box", "update"]);
    let versions: Vec<String> = listed(&p).into_iter().map(|(_, v)| v).collect();
    assert_eq!(versions, ["1.0.0", "1.1.0"]);
    assert!(p.ok(&["box", "outdated"]).contains("up to date"));

    // prune: -n only tells; then the old version goes, the newest stays.
    let out = p.ok(&["box", "prune", "-n"]);
    assert!(out.contains("would remove team/base 1.0.0"), "{out}");
    assert_eq!(listed(&p).len(), 2);
    p.ok(&["box", "prune"]);
    let versions: Vec<String> = listed(&p).into_iter().map(|(_, v)| v).collect();
    assert_eq!(versions, ["1.1.0"]);
}

/// Vagrant itself (Debian's package, as scripts/install-host-deps.sh installs
/// it) adds a box through a catalog `env box catalog --base-url` wrote, with
/// a version constraint, checking the sha256 env computed; env then adds the
/// box from Vagrant's store.
/// A catalog of `name` as a registry serves it: versions with boxes for
/// several providers and architectures, the libvirt amd64 one not the newest.
fn registry_catalog(name: &str, libvirt_amd64: &str, sha256_hex: &str, other: &str) -> String {
    format!(
        r#"{{"name": "{name}", "versions": [
  {{"version": "1.0.0", "providers": [
    {{"name": "libvirt", "url": "{libvirt_amd64}", "checksum_type": "sha256", "checksum": "{sha256_hex}", "architecture": "amd64"}}]}},
  {{"version": "1.1.0", "providers": [
    {{"name": "libvirt", "url": "{other}", "architecture": "arm64"}},
    {{"name": "virtualbox", "url": "{other}", "architecture": "amd64"}}]}}
]}}"#
    )
}

/// `owner/name` boxes through the registry API Vagrant uses: Vagrant
/// 2.3.4 itself adds the box from the local registry (`VAGRANT_SERVER_URL`),
/// so the shape of the API is Vagrant's, and env adds the same name from the
/// same server (`ENV_BOX_SERVER`), picking the libvirt box for this host's
/// architecture.
#[test]
fn registry_names_resolve_as_vagrant_resolves_them() {
    let server = Server::start();
    let files = tempfile::tempdir().unwrap();
    let b = tiny_box(files.path(), "acme/deb", "1.0.0");
    let box_url = server.serve("boxes/deb-1.0.0-libvirt-amd64.box", b.clone());
    let catalog = files.path().join("deb.json");
    std::fs::write(
        &catalog,
        registry_catalog(
            "acme/deb",
            &box_url,
            &sha256(&b),
            &format!("{}/missing.box", server.base),
        ),
    )
    .unwrap();
    server.serve("registry/acme/deb", catalog);
    let registry = format!("{}/registry", server.base);

    let vagrant_home = files.path().join("vagrant-home");
    let out = std::process::Command::new("vagrant")
        // Vagrant 2.3 knows no architectures: it would take 1.1.0's arm64 box.
        .args([
            "box",
            "add",
            "acme/deb",
            "--provider",
            "libvirt",
            "--box-version",
            "1.0.0",
        ])
        .env("VAGRANT_HOME", &vagrant_home)
        .env("VAGRANT_SERVER_URL", &registry)
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .current_dir(files.path())
        .output()
        .expect("vagrant (apt-get install vagrant: scripts/install-host-deps.sh)");
    assert!(
        out.status.success(),
        "vagrant: {}\n{}",
        text(&out).0,
        text(&out).1
    );
    assert!(
        vagrant_home
            .join("boxes/acme-VAGRANTSLASH-deb/1.0.0/libvirt")
            .is_dir()
    );

    let (p, _store) = project();
    let out = p
        .cmd(&["box", "add", "acme/deb"])
        .env("ENV_BOX_SERVER", &registry)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(listed(&p), [("acme/deb".to_string(), "1.0.0".to_string())]);
    let asked: Vec<String> = server
        .seen()
        .into_iter()
        .map(|s| s.path)
        .filter(|p| p.starts_with("/registry/"))
        .collect();
    assert!(asked.len() >= 2, "both asked the registry: {asked:?}");

    // A hostile registry answer naming a file of this host is refused
    // (the catalog rules: over HTTP, boxes over HTTP(S) only).
    let evil = files.path().join("evil.json");
    std::fs::write(
        &evil,
        registry_catalog(
            "acme/evil",
            "file:///etc/hostname",
            &"0".repeat(64),
            "/etc/hostname",
        ),
    )
    .unwrap();
    server.serve("registry/acme/evil", evil);
    let out = p
        .cmd(&["box", "add", "acme/evil"])
        .env("ENV_BOX_SERVER", &registry)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("a file on this host"),
        "{:?}",
        text(&out)
    );
    assert_eq!(listed(&p).len(), 1, "nothing added");

    // A name the registry does not know: the error names the URL.
    let out = p
        .cmd(&["box", "add", "acme/nope"])
        .env("ENV_BOX_SERVER", &registry)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("/registry/acme/nope"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn vagrant_adds_boxes_from_a_catalog_env_wrote() {
    let server = Server::start();
    let files = tempfile::tempdir().unwrap();
    let served = files.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    for v in ["1.2.0", "2.0.0"] {
        let b = tiny_box(files.path(), "team/base", v);
        std::fs::copy(&b, served.join(format!("base-{v}.box"))).unwrap();
        server.serve(
            &format!("base-{v}.box"),
            served.join(format!("base-{v}.box")),
        );
    }
    let (p, _store) = project();
    p.ok(&[
        "box",
        "catalog",
        served.to_str().unwrap(),
        "--base-url",
        &server.base,
    ]);
    let catalog: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(served.join("team-base.json")).unwrap())
            .unwrap();
    assert_eq!(
        catalog["versions"][0]["providers"][0]["url"],
        format!("{}/base-1.2.0.box", server.base),
        "absolute URLs under --base-url"
    );
    let url = server.serve("team-base.json", served.join("team-base.json"));
    let vagrant_home = files.path().join("vagrant-home");
    let vagrant = |args: &[&str]| {
        let out = std::process::Command::new("vagrant")
            .args(args)
            .env("VAGRANT_HOME", &vagrant_home)
            .env("VAGRANT_CHECKPOINT_DISABLE", "1")
            .current_dir(files.path())
            .output()
            .expect("vagrant (apt-get install vagrant: scripts/install-host-deps.sh)");
        assert!(out.status.success(), "vagrant {args:?}: {}", text(&out).0);
        text(&out).0
    };
    vagrant(&["box", "add", &url, "--box-version", ">= 1, < 2"]);
    let list = vagrant(&["box", "list"]);
    assert!(list.contains("team/base (libvirt, 1.2.0"), "{list}");
    // And env reads the same catalog.
    p.ok(&["box", "add", &url, "--version", ">= 1, < 2"]);
    assert_eq!(listed(&p), [("team/base".to_string(), "1.2.0".to_string())]);

    // A box Vagrant already has is added from its store, no download.
    let (q, _other_store) = project();
    let in_vagrant = vagrant_home.join("boxes/team-VAGRANTSLASH-base/1.2.0/libvirt");
    assert!(in_vagrant.is_dir(), "Vagrant 2.3's store layout");
    q.ok(&["box", "add", in_vagrant.to_str().unwrap()]);
    assert_eq!(listed(&q), [("team/base".to_string(), "1.2.0".to_string())]);
}

#[test]
fn a_zstd_box_is_added() {
    let files = tempfile::tempdir().unwrap();
    let gz = tiny_box(files.path(), "zst", "1.0.0");
    // Repack as tar.zst with the zstd tool.
    let tar_path = files.path().join("zst.tar");
    let mut raw = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap()),
        &mut raw,
    )
    .unwrap();
    std::fs::write(&tar_path, raw).unwrap();
    let status = std::process::Command::new("zstd")
        .args(["-q", "-f"])
        .arg(&tar_path)
        .arg("-o")
        .arg(files.path().join("zst.box"))
        .status()
        .unwrap();
    assert!(status.success());
    let (p, _store) = project();
    let out = p.env(&["box", "add", files.path().join("zst.box").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(listed(&p), [("zst".to_string(), "1.0.0".to_string())]);
}

/// A zip box (as some Vagrant boxes are packed) over HTTP, unpacked as it
/// arrives, checksum checked.
#[test]
fn a_zip_box_is_added_by_url() {
    let files = tempfile::tempdir().unwrap();
    let gz = tiny_box(files.path(), "zipped", "1.0.0");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(&gz).unwrap(),
    ));
    let zip_path = files.path().join("zipped.box");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        zip.start_file(name, options).unwrap();
        std::io::copy(&mut entry, &mut zip).unwrap();
    }
    zip.finish().unwrap();
    let server = Server::start();
    let url = server.serve("zipped.box", zip_path.clone());
    let (p, _store) = project();
    let checksum = format!("sha256:{}", sha256(&zip_path));
    p.ok(&["box", "add", &url, "--checksum", &checksum]);
    assert_eq!(listed(&p), [("zipped".to_string(), "1.0.0".to_string())]);
}
