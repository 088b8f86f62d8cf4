//! Provisioners on a real guest: shell (inline, script file, arguments,
//! environment, as root or not), file uploads (file and folder, modes kept),
//! a failing step, `run = "always"`, `env provision --with`, the log;
//! triggers (host commands and guest scripts around up, reload, provision
//! and halt) on the same machine.

mod common;

use common::{GuestSlot, TestProject, text};
use std::os::unix::fs::PermissionsExt;

const ENVFILE: &str = r#"
[defaults]
box = "debian-12"
provision = [
  { type = "shell", name = "once", inline = "echo x >> /var/tmp/once; echo provisioned-$GREETING", env = { GREETING = "hi there" } },
]

[machines.p]
ssh = { forward_agent = true }
provision = [
  { type = "shell", name = "agent", inline = "ssh-add -l > /tmp/agent-keys 2>&1 || true", privileged = false },
  { type = "shell", name = "as-user", inline = "id -un > /tmp/who-user", privileged = false },
  { type = "shell", name = "script", path = "scripts/setup.sh", args = ["one", "two words"] },
  { type = "file", name = "conf", source = "files/app.conf", destination = "/etc/app.conf", privileged = true },
  { type = "file", name = "site", source = "site", destination = "~/site" },
  { type = "shell", name = "boots", run = "always", inline = "echo boot >> /var/tmp/boots" },
  { type = "shell", name = "broken", run = "never", inline = "echo about to fail; exit 7" },
]

[[triggers]]
name = "stamp"
when = "before"
on = ["up", "reload"]
run = "echo \"$ENV_TRIGGER_ACTION $ENV_MACHINE\" >> host-trail"

[[triggers]]
name = "guest-side"
when = "after"
on = ["up", "provision"]
info = "recording in the guest"
run_remote = "echo \"$ENV_TRIGGER_WHEN $ENV_TRIGGER_ACTION\" >> /var/tmp/trail; id -un > /var/tmp/trigger-user"

[[triggers]]
name = "gate"
when = "before"
on = ["halt"]
run = "test ! -e block-halt"
"#;

#[test]
fn provisioners_run_in_order_stream_log_and_fail_clearly() {
    let _slot = GuestSlot::take();
    let p = TestProject::with_box(ENVFILE);
    let root = p.dir.path();
    std::fs::create_dir_all(root.join("scripts")).unwrap();
    std::fs::write(
        root.join("scripts/setup.sh"),
        "#!/bin/bash\nprintf '%s|' \"$@\" > /tmp/args\nid -un > /tmp/who\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("files")).unwrap();
    std::fs::write(root.join("files/app.conf"), "setting = 1\n").unwrap();
    std::fs::set_permissions(
        root.join("files/app.conf"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("site/bin")).unwrap();
    std::fs::write(root.join("site/index.html"), "<h1>site</h1>\n").unwrap();
    std::fs::write(root.join("site/bin/run"), "#!/bin/sh\necho run\n").unwrap();
    std::fs::set_permissions(
        root.join("site/bin/run"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();

    // An SSH agent of the test's own, holding a throwaway key: forwarded
    // (`ssh.forward_agent`) to provisioners and `env ssh` sessions.
    let agent = Agent::start(root);
    let out = p
        .cmd(&["up"])
        .env("SSH_AUTH_SOCK", &agent.socket)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let first_up = stderr.clone();
    assert!(
        stderr.contains("p: provisioned-hi there"),
        "output streams with the machine's name: {stderr}"
    );
    assert!(
        stderr.find("provisioning: once").unwrap() < stderr.find("provisioning: as-user").unwrap(),
        "defaults first"
    );
    assert!(
        !stderr.contains("provisioning: broken"),
        "run = never is skipped"
    );

    let check = |cmd: &str| p.ok(&["ssh", "--", cmd]);
    assert!(
        check("cat /tmp/agent-keys").contains(&agent.fingerprint),
        "a provisioner sees the forwarded agent"
    );
    let out = p
        .cmd(&["ssh", "--", "ssh-add -l"])
        .env("SSH_AUTH_SOCK", &agent.socket)
        .output()
        .unwrap();
    assert!(
        text(&out).0.contains(&agent.fingerprint),
        "{:?}",
        text(&out)
    );
    assert_eq!(check("cat /tmp/who"), "root\n", "privileged by default");
    assert_eq!(check("cat /tmp/who-user"), "vagrant\n");
    assert_eq!(check("cat /tmp/args"), "one|two words|");
    assert_eq!(check("sudo cat /etc/app.conf"), "setting = 1\n");
    assert_eq!(
        check("stat -c '%a %U' /etc/app.conf"),
        "640 root\n",
        "modes kept, owned by root"
    );
    assert_eq!(check("cat ~/site/index.html"), "<h1>site</h1>\n");
    assert_eq!(check("~/site/bin/run"), "run\n", "executable bit kept");
    assert_eq!(check("stat -c %U ~/site/index.html"), "vagrant\n");
    assert_eq!(check("wc -l < /var/tmp/boots"), "1\n");

    let log = std::fs::read_to_string(root.join(".envstate/machines/p/provision.log")).unwrap();
    assert!(
        log.contains("==> script (\"shell\")") || log.contains("==> script"),
        "{log}"
    );
    assert!(log.contains("provisioned-hi there"));
    assert!(
        log.lines().all(|l| l.starts_with("20")),
        "every line is timestamped: {log}"
    );

    // A failing step: its name, exit status and last output lines.
    let out = p.env(&["provision", "--with", "broken"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out).1;
    assert!(
        stderr.contains("provisioner `broken` (shell) failed on `p` with exit status 7"),
        "{stderr}"
    );
    assert!(stderr.contains("about to fail"), "{stderr}");
    assert!(
        p.status()[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("broken")
    );
    let out = p.env(&["provision", "--with", "nope"]);
    assert!(text(&out).1.contains("no provisioner named `nope`"));

    // A reboot runs only `always` provisioners; --provision runs them all again.
    p.ok(&["reload"]);
    assert_eq!(check("wc -l < /var/tmp/boots"), "2\n");
    assert_eq!(check("wc -l < /var/tmp/once"), "1\n");
    p.ok(&["up", "--provision"]);
    assert_eq!(check("wc -l < /var/tmp/once"), "2\n");
    p.ok(&["up", "--no-provision"]);
    assert_eq!(check("wc -l < /var/tmp/once"), "2\n");

    // Triggers: before up and reload on the host, after up (and after a
    // provision that succeeded: not the failed ones) in the guest as root.
    let host_trail = std::fs::read_to_string(root.join("host-trail")).unwrap();
    assert_eq!(host_trail, "up p\nreload p\nup p\nup p\n");
    assert_eq!(
        check("cat /var/tmp/trail"),
        "after up\nafter up\nafter up\n"
    );
    assert_eq!(check("cat /var/tmp/trigger-user"), "root\n");
    assert!(
        first_up.contains("trigger `guest-side` (after up): recording in the guest"),
        "{first_up}"
    );
    let log = std::fs::read_to_string(root.join(".envstate/triggers.log")).unwrap();
    assert!(
        log.contains("==> trigger `stamp` (host command) for p"),
        "{log}"
    );
    // A failing `before` trigger stops the command: the machine still runs.
    std::fs::write(root.join("block-halt"), "").unwrap();
    let out = p.env(&["halt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .contains("trigger `gate` (before halt) failed on `p`"),
        "{}",
        text(&out).1
    );
    assert_eq!(p.state_of("p"), "running");
}

#[test]
fn an_ansible_playbook_provisions_a_machine() {
    let _slot = GuestSlot::take();
    let p = TestProject::with_box(
        r#"
[defaults]
box = "debian-12"
[machines.web]
provision = [
  { type = "ansible", playbook = "ansible/site.yml", extra_vars = { greeting = "from ansible", port = 8080 }, groups = { app = ["web"] } },
]
"#,
    );
    std::fs::create_dir_all(p.dir.path().join("ansible")).unwrap();
    std::fs::write(
        p.dir.path().join("ansible/site.yml"),
        r#"- hosts: app
  become: true
  gather_facts: false
  tasks:
    - name: write a file
      copy:
        dest: /etc/env-ansible
        content: "{{ greeting }} on {{ port }} in {{ group_names | join(',') }}\n"
        mode: "0644"
"#,
    )
    .unwrap();
    let out = p.env(&["up"]);
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("web: TASK [write a file]"),
        "ansible's output streams: {stderr}"
    );
    assert_eq!(
        p.ok(&["ssh", "--", "cat /etc/env-ansible"]),
        "from ansible on 8080 in app\n"
    );
    let inventory =
        std::fs::read_to_string(p.dir.path().join(".envstate/ansible/web.ini")).unwrap();
    assert!(inventory.contains("[app]\nweb\n"), "{inventory}");
}

/// An `ssh-agent` on a socket in `dir`, holding one throwaway key; killed
/// when dropped.
struct Agent {
    socket: std::path::PathBuf,
    fingerprint: String,
    pid: String,
}

impl Agent {
    fn start(dir: &std::path::Path) -> Agent {
        use std::process::Command;
        let socket = dir.join("agent.sock");
        let out = Command::new("ssh-agent")
            .arg("-a")
            .arg(&socket)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        let pid = said
            .split("SSH_AGENT_PID=")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_else(|| panic!("ssh-agent said {said}"))
            .to_string();
        let key = dir.join("agent-key");
        let made = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "env-test-agent",
                "-f",
            ])
            .arg(&key)
            .status()
            .unwrap();
        assert!(made.success());
        let added = Command::new("ssh-add")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &socket)
            .output()
            .unwrap();
        assert!(added.status.success(), "{:?}", added);
        let listed = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(key.with_extension("pub"))
            .output()
            .unwrap();
        let fingerprint = String::from_utf8_lossy(&listed.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string();
        Agent {
            socket,
            fingerprint,
            pid,
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg(&self.pid).status();
    }
}
