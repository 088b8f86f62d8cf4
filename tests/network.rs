//! Names and the private network: machines of one Envfile reach each other
//! by name; another project's machines are on another segment.

mod common;

use common::{GuestSlot, TestProject, text};

#[test]
fn machines_reach_each_other_by_name_and_projects_are_isolated() {
    let _slot = GuestSlot::take();
    let a = TestProject::with_box(
        "[defaults]\nbox = \"debian-12\"\nmemory = \"512M\"\n[machines.web]\n[machines.db]\n",
    );
    a.ok(&["up"]);
    assert_eq!(a.ok(&["ssh", "web", "--", "hostname"]), "web\n");
    assert_eq!(a.ok(&["ssh", "db", "--", "hostname"]), "db\n");
    let db = a.ok(&["ssh", "web", "--", "getent hosts db"]);
    let db_ip = db.split_whitespace().next().unwrap().to_string();
    assert!(db_ip.starts_with("10.251."), "{db}");
    let out = a.env(&["ssh", "web", "--", "ping -c1 -W5 db"]);
    assert!(
        out.status.success(),
        "web pings db: {}{}",
        text(&out).0,
        text(&out).1
    );
    let out = a.env(&["ssh", "db", "--", "ping -c1 -W5 web"]);
    assert!(out.status.success(), "db pings web");
    // Only env's block of /etc/hosts changed.
    let hosts = a.ok(&["ssh", "web", "--", "cat /etc/hosts"]);
    assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
    assert_eq!(hosts.matches("# BEGIN env hosts").count(), 1, "{hosts}");
    assert!(hosts.contains("127.0.1.1\tweb\n"));

    // Another project on the same addresses cannot reach the first one.
    let subnet = format!("{}.0", db_ip.rsplit_once('.').unwrap().0);
    let b = TestProject::with_box(&format!(
        "[defaults]\nbox = \"debian-12\"\nmemory = \"512M\"\nprivate_subnet = \"{subnet}\"\n[machines.other]\nip = \"{}.99\"\n",
        db_ip.rsplit_once('.').unwrap().0
    ));
    b.ok(&["up"]);
    let out = b.env(&["ssh", "--", &format!("ping -c2 -W2 {db_ip}")]);
    assert!(
        !out.status.success(),
        "another project's machine reached {db_ip}"
    );
}
