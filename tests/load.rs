//! Load on one running machine: 50 `env status`, `env ssh -- CMD` and
//! `env verify` at once, every one correct. sshd lets one connection carry
//! 10 sessions (MaxSessions); sessions past that are refused by the master
//! connection and ssh opens a connection of its own instead, so none fails.

mod common;

use common::{GuestSlot, TestProject, text};

#[test]
fn fifty_commands_at_once_all_answer_right() {
    let _slot = GuestSlot::take();
    let p = TestProject::with_box("[machines.m]\nbox = \"debian-12\"\nspecs = [\"spec.toml\"]\n");
    std::fs::write(
        p.dir.path().join("spec.toml"),
        "[file.\"/etc/hostname\"]\nexists = true\ncontains = [\"m\"]\n",
    )
    .unwrap();
    p.ok(&["up"]);
    let results: Vec<(usize, std::process::Output)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let p = &p;
                scope.spawn(move || {
                    let out = match i % 5 {
                        0 => p.env(&["status", "--json"]),
                        1 => p.env(&["verify"]),
                        _ => p.env(&["ssh", "--", "echo", &format!("n{i}")]),
                    };
                    (i, out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, out) in &results {
        let (stdout, stderr) = text(out);
        assert!(
            out.status.success(),
            "command {i} failed ({}): {stderr}\n{stdout}",
            out.status
        );
        match i % 5 {
            0 => assert!(stdout.contains("\"running\""), "{i}: {stdout}"),
            1 => assert!(stdout.contains("1 passed"), "{i}: {stdout}"),
            _ => assert_eq!(stdout, format!("n{i}\n"), "{i}"),
        }
    }
    p.ok(&["destroy", "-f"]);
}

#[test]
fn two_projects_come_up_at_once_on_one_box_store() {
    let _slots = (GuestSlot::take(), GuestSlot::take());
    let a = TestProject::with_box("[machines.a]\nbox = \"debian-12\"\n");
    let b = TestProject::with_box("[machines.b]\nbox = \"debian-12\"\n");
    let (out_a, out_b) = std::thread::scope(|scope| {
        let ua = scope.spawn(|| a.env(&["up"]));
        let ub = scope.spawn(|| b.env(&["up"]));
        (ua.join().unwrap(), ub.join().unwrap())
    });
    assert!(out_a.status.success(), "{}", text(&out_a).1);
    assert!(out_b.status.success(), "{}", text(&out_b).1);
    assert_eq!(a.ok(&["ssh", "--", "hostname"]), "a\n");
    assert_eq!(b.ok(&["ssh", "--", "hostname"]), "b\n");
    // Both use the box: removing it is refused while they exist.
    let removed = a.env(&["box", "remove", "debian-12"]);
    assert!(!removed.status.success(), "{}", text(&removed).1);
    a.ok(&["destroy", "-f"]);
    b.ok(&["destroy", "-f"]);
}
