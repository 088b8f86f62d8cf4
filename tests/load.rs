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
        assert!(out.status.success(), "command {i} failed: {stderr}");
        match i % 5 {
            0 => assert!(stdout.contains("\"running\""), "{i}: {stdout}"),
            1 => assert!(stdout.contains("1 passed"), "{i}: {stdout}"),
            _ => assert_eq!(stdout, format!("n{i}\n"), "{i}"),
        }
    }
    p.ok(&["destroy", "-f"]);
}
