//! Every resource type judged from facts (pass and fail cases, without a
//! guest), and a compiled script run by the host's `sh` end to end.
//! (Over 600 lines because it holds every resource type's cases side by
//! side, one short test each: a reader scans it rather than reads it.)

use super::check::Check;
use super::facts::Facts;
use super::judge::{Outcome, Verdict, current_values, judge, literal};
use super::matchers::Pattern;
use super::{parse as model, script};
use script::{compile, distribute, new_token, parse_output};
use std::path::Path;

fn one(text: &str, fields: &[(&str, &str)], shared: &[(&str, &str)]) -> Outcome {
    let spec = model::parse(Path::new("t.toml"), text).unwrap();
    let mut facts = Facts::default();
    facts.checks.insert(
        0,
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect(),
    );
    for (k, v) in shared {
        facts.shared.insert(k.to_string(), v.as_bytes().to_vec());
    }
    judge(0, &spec.checks[0], &facts)
}

fn passes(text: &str, fields: &[(&str, &str)], shared: &[(&str, &str)]) -> bool {
    let o = one(text, fields, shared);
    assert_ne!(o.verdict, Verdict::Error, "{o:?}");
    o.verdict == Verdict::Pass
}

#[test]
fn package() {
    const DB: &str = "Package: python3\nStatus: install ok installed\nArchitecture: amd64\nVersion: 3.11.2-1+b1\n\nPackage: nginx\nStatus: deinstall ok config-files\nVersion: 1.22.1-9\n";
    let dpkg = [("/var/lib/dpkg/status", DB)];
    let m = [("manager", "dpkg")];
    assert!(passes(
        "[package.python3]\ninstalled = true\nversion = \"3.11.2\"",
        &m,
        &dpkg
    ));
    assert!(passes(
        "[package.\"python3:amd64\"]\ninstalled = true",
        &m,
        &dpkg
    ));
    assert!(!passes(
        "[package.\"python3:i386\"]\ninstalled = true",
        &m,
        &dpkg
    ));
    assert!(
        passes("[package.nginx]\ninstalled = false", &m, &dpkg),
        "config files only"
    );
    assert!(passes("[package.nope]\ninstalled = false", &m, &dpkg));
    let facts = [("installed", "1"), ("version", "3.11.2-1+b1")];
    assert!(passes(
        "[package.python3]\ninstalled = true\nversion = \">= 3.11, < 4\"",
        &facts,
        &[]
    ));
    assert!(!passes(
        "[package.python3]\nversion = \">= 3.12\"",
        &facts,
        &[]
    ));
    let epoch = [("installed", "1"), ("version", "1:9.2p1-2")];
    assert!(
        passes(
            "[package.openssh-server]\nversion = \"> 10.0\"",
            &epoch,
            &[]
        ),
        "an epoch outranks the rest"
    );
    let absent = [("installed", "0"), ("version", "")];
    assert!(passes("[package.nginx]\ninstalled = false", &absent, &[]));
    let o = one("[package.nginx]\nversion = \"1.0\"", &absent, &[]);
    assert_eq!(o.assertions[0].found, "not installed");
}

#[test]
fn service() {
    let running = [
        ("enabled_rc", "0"),
        ("enabled", "enabled"),
        ("active", "active"),
    ];
    assert!(passes(
        "[service.ssh]\nenabled = true\nrunning = true",
        &running,
        &[]
    ));
    let stopped = [
        ("enabled_rc", "1"),
        ("enabled", "disabled"),
        ("active", "inactive"),
    ];
    assert!(!passes("[service.ssh]\nrunning = true", &stopped, &[]));
    assert!(passes(
        "[service.ssh]\nenabled = false\nrunning = false",
        &stopped,
        &[]
    ));
}

const TCP: &str = "  sl  local_address rem_address   st\n   0: 0100007F:0050 00000000:0000 0A\n   1: 00000000:0016 00000000:0000 0A\n   2: 0100007F:1F90 0100007F:C350 01\n";
const TCP6: &str = "  sl  local_address                         remote_address  st\n   0: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A\n";
const UDP: &str = "  sl  local_address rem_address   st\n   0: 00000000:0035 00000000:0000 07\n";

#[test]
fn port_reads_proc_net_and_counts_dual_stack() {
    let shared = [
        ("/proc/net/tcp", TCP),
        ("/proc/net/tcp6", TCP6),
        ("/proc/net/udp", UDP),
    ];
    let seen = [("seen", "1")];
    assert!(passes(
        "[port.\"tcp:80\"]\nlistening = true\naddresses = [\"127.0.0.1\"]",
        &seen,
        &shared
    ));
    assert!(passes(
        "[port.\"22\"]\nlistening = true\naddresses = [\"0.0.0.0\"]",
        &seen,
        &shared
    ));
    // 8000 listens on tcp6 `::` only: a tcp check passes (dual stack).
    assert!(passes(
        "[port.\"tcp:8000\"]\nlistening = true\naddresses = [\"0.0.0.0\"]",
        &seen,
        &shared
    ));
    assert!(passes(
        "[port.\"tcp6:8000\"]\nlistening = true",
        &seen,
        &shared
    ));
    assert!(!passes(
        "[port.\"tcp6:80\"]\nlistening = true",
        &seen,
        &shared
    ));
    // 8080 is an established connection, not a listener.
    assert!(passes(
        "[port.\"tcp:8080\"]\nlistening = false",
        &seen,
        &shared
    ));
    assert!(passes(
        "[port.\"udp:53\"]\nlistening = true",
        &seen,
        &shared
    ));
    assert!(!passes(
        "[port.\"udp:80\"]\nlistening = true",
        &seen,
        &shared
    ));
    assert!(!passes(
        "[port.\"tcp:80\"]\naddresses = [\"0.0.0.0\"]",
        &seen,
        &shared
    ));
}

#[test]
fn file() {
    let facts = [
        ("exists", "1"),
        ("stat", "regular file|644|root|adm|1234"),
        ("contents", "user www-data;\nworker_processes auto;\n"),
        ("sha256", "ABCDEF"),
    ];
    let spec = "[file.\"/etc/x\"]\nexists = true\ntype = \"file\"\nmode = \"0644\"\nowner = \"root\"\ngroup = \"adm\"\nsize = \"> 1000\"\ncontains = [\"worker\", \"/^user www-data;$/\", \"!debug\"]\nsha256 = \"abcdef\"";
    let o = one(spec, &facts, &[]);
    assert_eq!(o.verdict, Verdict::Pass, "{o:?}");
    assert!(passes("[file.\"/etc/x\"]\nmode = \"644\"", &facts, &[]));
    let o = one(
        "[file.\"/etc/x\"]\nmode = \"0600\"\ncontains = [\"worker\", \"debug\"]",
        &facts,
        &[],
    );
    assert_eq!(o.verdict, Verdict::Fail);
    assert_eq!(o.assertions[0].found, "0644");
    assert!(!o.assertions[1].passed);
    assert!(
        o.assertions[1].found.starts_with("not matching debug"),
        "{}",
        o.assertions[1].found
    );
    let missing = [("exists", "0")];
    assert!(passes("[file.\"/nope\"]\nexists = false", &missing, &[]));
    let o = one("[file.\"/nope\"]\nmode = \"0644\"", &missing, &[]);
    assert_eq!(
        (o.verdict, o.assertions[0].found.as_str()),
        (Verdict::Fail, "no such file")
    );
    let link = [
        ("exists", "1"),
        ("stat", "symbolic link|777|root|root|7"),
        ("link", "/usr/bin/python3.11"),
    ];
    assert!(passes(
        "[file.\"/usr/bin/python3\"]\ntype = \"symlink\"\nlink_target = \"/python3\\\\.\\\\d+$/\"",
        &link,
        &[]
    ));
}

#[test]
fn command() {
    let facts = [("exit_status", "0"), ("stdout", "Linux\n"), ("stderr", "")];
    assert!(passes(
        "[command.\"uname\"]\nexit_status = 0\nstdout = [\"Linux\"]\nstderr = [\"!/./\"]",
        &facts,
        &[]
    ));
    assert!(!passes(
        "[command.\"uname\"]\nexit_status = \"!= 0\"",
        &facts,
        &[]
    ));
    let slow = [("exit_status", "124"), ("stdout", ""), ("stderr", "")];
    let o = one(
        "[command.\"sleep 9\"]\nexit_status = 0\ntimeout = 1",
        &slow,
        &[],
    );
    assert_eq!(o.verdict, Verdict::Fail);
    assert!(o.assertions[0].found.contains("timed out after 1 s"));
}

#[test]
fn user_and_group() {
    let facts = [
        ("passwd", "vagrant:x:1000:1000:,,,:/home/vagrant:/bin/bash"),
        ("groups", "vagrant sudo"),
    ];
    assert!(passes(
        "[user.vagrant]\nexists = true\nuid = 1000\ngid = 1000\ngroups = [\"sudo\"]\nhome = \"/home/vagrant\"\nshell = \"/bin/bash\"",
        &facts,
        &[]
    ));
    assert!(!passes(
        "[user.vagrant]\ngroups = [\"sudo\", \"docker\"]",
        &facts,
        &[]
    ));
    assert!(passes(
        "[user.nobody2]\nexists = false",
        &[("passwd", ""), ("groups", "")],
        &[]
    ));
    assert!(!passes(
        "[user.nobody2]\nuid = 1",
        &[("passwd", ""), ("groups", "")],
        &[]
    ));
    assert!(passes(
        "[group.sudo]\nexists = true\ngid = 27",
        &[("group", "sudo:x:27:vagrant")],
        &[]
    ));
    assert!(!passes(
        "[group.sudo]\ngid = 28",
        &[("group", "sudo:x:27:vagrant")],
        &[]
    ));
}

#[test]
fn process() {
    let shared = [
        (
            "procs",
            "    0 sshd\n 1000 python3\n 1000 python3\n    0 systemd-journald\n",
        ),
        (
            "/etc/passwd",
            "root:x:0:0::/root:/bin/sh\nweb:x:1000:1000::/srv:/bin/sh\n",
        ),
    ];
    let seen = [("seen", "1")];
    assert!(passes(
        "[process.python3]\nrunning = true\ncount = 2\nuser = \"web\"",
        &seen,
        &shared
    ));
    assert!(!passes(
        "[process.python3]\nuser = \"root\"",
        &seen,
        &shared
    ));
    assert!(
        passes("[process.systemd-journald]\nrunning = true", &seen, &shared),
        "names cut at 15"
    );
    assert!(!passes("[process.nginx]\nrunning = true", &seen, &shared));
    assert!(passes("[process.nginx]\ncount = 0", &seen, &shared));
}

#[test]
fn kernel_param_and_module() {
    assert!(passes(
        "[kernel_param.\"net.ipv4.tcp_rmem\"]\nvalue = \"4096 131072 6291456\"",
        &[("value", "4096\t131072\t6291456\n")],
        &[]
    ));
    assert!(!passes(
        "[kernel_param.\"net.ipv4.ip_forward\"]\nvalue = 1",
        &[("value", "0")],
        &[]
    ));
    let o = one(
        "[kernel_param.\"no.such\"]\nvalue = 1",
        &[("error", "no such kernel parameter")],
        &[],
    );
    assert_eq!(o.verdict, Verdict::Error);
    let modules = [
        (
            "/proc/modules",
            "virtio_net 61440 0 - Live 0x0\n9pnet 90112 1 9p, Live 0x0\n",
        ),
        (
            "/lib/modules/6.1.0/modules.builtin",
            "kernel/fs/ext4/ext4.ko\n",
        ),
    ];
    let seen = [("seen", "1")];
    assert!(passes(
        "[kernel_module.virtio_net]\nloaded = true",
        &seen,
        &modules
    ));
    assert!(passes(
        "[kernel_module.virtio-net]\nloaded = true",
        &seen,
        &modules
    ));
    assert!(
        passes("[kernel_module.ext4]\nloaded = true", &seen, &modules),
        "built in"
    );
    assert!(!passes(
        "[kernel_module.nf_tables]\nloaded = true",
        &seen,
        &modules
    ));
}

#[test]
fn mount() {
    let shared = [(
        "/proc/mounts",
        "/dev/vda / ext4 rw,relatime 0 0\nenv0 /srv/my\\040share 9p rw,sync 0 0\n",
    )];
    let seen = [("seen", "1")];
    assert!(passes(
        "[mount.\"/\"]\nexists = true\nfilesystem = \"ext4\"\noptions = [\"rw\"]\nsource = \"/dev/vda\"",
        &seen,
        &shared
    ));
    assert!(passes(
        "[mount.\"/srv/my share\"]\nfilesystem = \"9p\"",
        &seen,
        &shared
    ));
    assert!(!passes("[mount.\"/\"]\noptions = [\"ro\"]", &seen, &shared));
    assert!(!passes("[mount.\"/data\"]\nexists = true", &seen, &shared));
}

#[test]
fn http() {
    let ok = [
        ("status", "200"),
        ("headers", "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n"),
        ("body", "<h1>hello</h1>"),
    ];
    assert!(passes(
        "[http.\"http://localhost/\"]\nstatus = 200\nbody = [\"hello\"]\nheaders = [\"Content-Type: text/html\"]",
        &ok,
        &[]
    ));
    assert!(!passes(
        "[http.\"http://localhost/\"]\nbody = [\"goodbye\"]",
        &ok,
        &[]
    ));
    let raw = [(
        "raw",
        "HTTP/1.0 404 File not found\r\nServer: SimpleHTTP\r\nContent-Type: text/html\r\n\r\n<p>nope</p>",
    )];
    assert!(passes(
        "[http.\"http://localhost/x\"]\nstatus = 404\nbody = [\"nope\"]\nheaders = [\"Server: SimpleHTTP\"]",
        &raw,
        &[]
    ));
    assert!(!passes(
        "[http.\"http://localhost/x\"]\nstatus = 200",
        &raw,
        &[]
    ));
    let refused_raw = [("raw", ""), ("error", "bash: connect: Connection refused")];
    let o = one(
        "[http.\"http://localhost:9/\"]\nstatus = 200",
        &refused_raw,
        &[],
    );
    assert!(
        o.assertions[0].found.contains("Connection refused"),
        "{o:?}"
    );
    let refused = [("status", "000"), ("error", "curl: (7) Failed to connect")];
    let o = one(
        "[http.\"http://localhost:9/\"]\nstatus = 200",
        &refused,
        &[],
    );
    assert_eq!(o.verdict, Verdict::Fail);
    assert!(o.assertions[0].found.contains("Failed to connect"), "{o:?}");
}

#[test]
fn dns_addr_interface() {
    let answer = [
        ("rc", "0"),
        (
            "answer",
            "127.0.0.1 STREAM localhost\n127.0.0.1 DGRAM\n::1 STREAM\n",
        ),
    ];
    assert!(passes(
        "[dns.localhost]\nresolvable = true\naddresses = [\"127.0.0.1\", \"::1\"]",
        &answer,
        &[]
    ));
    assert!(!passes(
        "[dns.localhost]\naddresses = [\"10.0.0.1\"]",
        &answer,
        &[]
    ));
    assert!(passes(
        "[dns.\"nope.invalid\"]\nresolvable = false",
        &[("rc", "2"), ("answer", "")],
        &[]
    ));
    assert!(passes(
        "[addr.\"tcp://127.0.0.1:22\"]\nreachable = true",
        &[("rc", "0")],
        &[]
    ));
    assert!(!passes(
        "[addr.\"tcp://127.0.0.1:9\"]\nreachable = true",
        &[("rc", "1")],
        &[]
    ));
    let eth0 = [
        ("exists", "1"),
        ("mtu", "1500"),
        (
            "addrs",
            "2: eth0    inet 10.0.2.15/24 brd 10.0.2.255 scope global eth0\n2: eth0    inet6 fe80::1/64 scope link\n",
        ),
    ];
    assert!(passes(
        "[interface.eth0]\nexists = true\nmtu = 1500\naddresses = [\"10.0.2.15/24\", \"fe80::1\"]",
        &eth0,
        &[]
    ));
    assert!(!passes(
        "[interface.eth0]\naddresses = [\"10.0.2.16\"]",
        &eth0,
        &[]
    ));
    assert!(passes(
        "[interface.eth9]\nexists = false",
        &[("exists", "0")],
        &[]
    ));
}

#[test]
fn current_values_read_back_as_passing_checks() {
    let spec = model::parse(Path::new("t.toml"), "[file.\"/srv/www/\"]\nexists = true").unwrap();
    let mut facts = Facts::default();
    facts.checks.insert(
        0,
        [("exists", "1"), ("stat", "directory|755|root|root|4096")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect(),
    );
    let values = current_values(0, &spec.checks[0], &facts);
    let names: Vec<&str> = values.iter().map(|(a, _)| *a).collect();
    assert_eq!(names, ["exists", "type", "mode", "owner", "group"]);
    assert_eq!(values[2].1.as_str(), Some("0755"));
    assert_eq!(literal("/srv/www/"), "/^/srv/www/$/");
    assert!(
        Pattern::parse(&literal("/srv/www/"))
            .unwrap()
            .equals("/srv/www/")
    );
    assert!(Pattern::parse(&literal("!x")).unwrap().equals("!x"));
    assert_eq!(literal("/home/vagrant"), "/home/vagrant");
}

#[test]
fn missing_facts_are_errors_not_passes() {
    let spec = model::parse(Path::new("t.toml"), "[file.\"/x\"]\nexists = false").unwrap();
    let o = judge(0, &spec.checks[0], &Facts::default());
    assert_eq!(o.verdict, Verdict::Error);
}

#[test]
fn the_script_gathers_facts_in_one_run() {
    let s = spec(
        r#"
[command."echo \"it's\"; echo err >&2; exit 3"]
exit_status = 3
[file."/etc/hostname"]
exists = true
contains = "/./"
[file."/nonexistent/x"]
exists = false
[kernel_param."kernel.ostype"]
value = "Linux"
[mount."/"]
exists = true
[user.root]
uid = 0
[group.root]
gid = 0
[process.nothing-like-this]
running = false
[file."/etc/passwd"]
sha256 = "/./"
"#,
    );
    let checks: Vec<&Check> = s.checks.iter().collect();
    let ids: Vec<usize> = (0..checks.len()).collect();
    let script = compile(&checks, &ids, "envFx");
    assert_eq!(
        script.matches("(\n").count(),
        1,
        "only the command runs alone"
    );
    assert_eq!(script.matches("awk ").count(), 1, "one awk reads the files");
    let facts = run_here(&checks, &ids);
    assert_eq!(facts.checks[&0]["exit_status"], b"3");
    assert_eq!(facts.checks[&0]["stdout"], b"it's\n");
    assert_eq!(facts.checks[&0]["stderr"], b"err\n");
    assert_eq!(facts.checks[&1]["exists"], b"1");
    assert!(facts.checks[&1].contains_key("contents"));
    assert!(
        String::from_utf8_lossy(&facts.checks[&1]["stat"]).starts_with("regular"),
        "{:?}",
        facts.checks[&1]
    );
    assert_eq!(facts.checks[&2]["exists"], b"0");
    // Checks come grouped by resource type: the third file is check 3.
    assert_eq!(facts.checks[&3]["sha256"].len(), 64);
    assert_eq!(facts.checks[&4]["value"], b"Linux");
    assert!(facts.shared.contains_key("/proc/mounts"));
    assert!(String::from_utf8_lossy(&facts.checks[&6]["passwd"]).starts_with("root:"));
    assert!(String::from_utf8_lossy(&facts.checks[&7]["group"]).starts_with("root:"));
    assert!(facts.shared.contains_key("procs"));
    for (id, check) in checks.iter().enumerate() {
        let outcome = judge(id, check, &facts);
        assert_eq!(outcome.verdict, Verdict::Pass, "{outcome:?}");
    }
}

use std::process::Command;

fn spec(text: &str) -> crate::spec::check::Spec {
    model::parse(Path::new("t.toml"), text).unwrap()
}

/// Runs a compiled script with the host's sh (it is POSIX shell).
fn run_here(checks: &[&Check], ids: &[usize]) -> Facts {
    use std::io::Write;
    let token = new_token();
    let mut child = Command::new("sh")
        .arg("-s")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(compile(checks, ids, &token).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut facts = parse_output(&out.stdout, &token);
    distribute(checks, ids, &mut facts);
    facts
}

#[test]
fn frames_survive_any_content() {
    let t = "envFabc";
    let out = b"banner\n@@envFabc 0 stdout\na\n@@env\n\n@@envFabc-end\n@@envFabc _ /proc/mounts\nx y\n\n@@envFabc-end\ngarbage@@envFabc 1 rc\n0\n@@envFabc-end\n";
    let facts = parse_output(out, t);
    assert_eq!(facts.checks[&0]["stdout"], b"a\n@@env\n");
    assert_eq!(facts.shared["/proc/mounts"], b"x y\n");
    assert_eq!(facts.checks[&1]["rc"], b"0");
    // A cut-off frame keeps what arrived; another run's token is ignored.
    let facts = parse_output(b"@@envFzzz 3 x\nq\n@@envFzzz-end\n@@envFabc 2 x\nabc", t);
    assert_eq!(facts.checks[&2]["x"], b"abc");
    assert!(!facts.checks.contains_key(&3));
    assert_ne!(new_token(), new_token());
}

#[test]
fn names_are_quoted_not_run() {
    let s = spec("[file.\"/tmp/$(touch /tmp/env-pwned)\"]\nexists = false\n");
    let checks: Vec<&Check> = s.checks.iter().collect();
    let facts = run_here(&checks, &[0]);
    assert_eq!(facts.checks[&0]["exists"], b"0");
    assert!(!Path::new("/tmp/env-pwned").exists());
}
