//! The `docker` provisioner on a real guest (boxes/debian-12-docker: the
//! debian-12 box with Debian's docker.io, so the run does not install it
//! from a mirror): an image built `FROM scratch` from the project (a static
//! busybox taken from the guest: no registry is reachable here), a
//! container run from it with a published port reached from the host, the
//! spec resources for containers and images, a second run changing
//! nothing, and a changed setting recreating the container.

mod common;

use common::{GuestSlot, TestProject, recipe_box, text};
use std::io::{Read, Write};

const DOCKERFILE: &str = "FROM scratch
COPY busybox /busybox
COPY index.html /www/index.html
ENTRYPOINT [\"/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]
";

const SPEC: &str = r#"
[docker_container.hello]
running = true
image = "hello:1"
restart = "always"
ports = ["8080"]

[docker_image."hello:1"]
exists = true

[docker_container.nope]
exists = false
"#;

fn envfile(port: u16, greeting: &str) -> String {
    format!(
        r#"[machines.dk]
box = "docker"
memory = "1G"
ports = [{{ guest = 8080, host = {port} }}]
specs = ["docker.toml"]
provision = [
  {{ type = "docker", name = "containers", images = [{{ tag = "hello:1", build = "hello" }}], containers = [{{ name = "hello", image = "hello:1", ports = ["8080:8080"], env = {{ GREETING = "{greeting}" }} }}] }},
]
"#
    )
}

fn get(port: u16) -> String {
    let mut body = String::new();
    for _ in 0..50 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let _ = s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n");
            body.clear();
            let _ = s.read_to_string(&mut body);
            if body.contains("200") {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    body
}

#[test]
fn images_build_and_containers_run_idempotently() {
    let _slot = GuestSlot::take();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = TestProject::new(&envfile(port, "hi"));
    let root = p.dir.path();
    std::fs::create_dir_all(root.join("hello")).unwrap();
    std::fs::write(root.join("hello/Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(root.join("hello/index.html"), "hello from a container\n").unwrap();
    std::fs::write(root.join("docker.toml"), SPEC).unwrap();
    let docker_box = recipe_box("debian-12-docker");
    p.ok(&[
        "box",
        "add",
        docker_box.to_str().unwrap(),
        "--name",
        "docker",
    ]);
    p.ok(&["up", "--no-provision"]);
    // The image's one program: the guest's static busybox.
    p.ok(&["download", "/bin/busybox", "hello/busybox"]);

    let out = p.env(&["provision"]);
    let said = text(&out).1;
    assert!(out.status.success(), "{said}");
    assert!(said.contains("image hello:1: built"), "{said}");
    assert!(said.contains("container hello: started"), "{said}");
    assert!(get(port).contains("hello from a container"));

    let out = p.env(&["verify", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["totals"]["passed"], 3, "{report:#}");

    // Again: nothing to do, and the step says it changed nothing.
    let said = text(&p.env(&["provision"])).1;
    assert!(said.contains("image hello:1: unchanged"), "{said}");
    assert!(said.contains("container hello: unchanged"), "{said}");
    let log = std::fs::read_to_string(root.join(".envstate/machines/dk/provision.log")).unwrap();
    assert!(log.trim_end().ends_with(", unchanged"), "{log}");

    // A changed setting: the container is made again, from the same image.
    std::fs::write(root.join("Envfile"), envfile(port, "hello")).unwrap();
    let said = text(&p.env(&["provision"])).1;
    assert!(said.contains("image hello:1: unchanged"), "{said}");
    assert!(said.contains("container hello: started"), "{said}");
    let env_now = p.ok(&[
        "ssh",
        "--",
        "sudo docker inspect -f '{{.Config.Env}}' hello",
    ]);
    assert!(env_now.contains("GREETING=hello"), "{env_now}");
    assert!(get(port).contains("hello from a container"));
}
