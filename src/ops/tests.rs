//! Operations against the fake backend and guest: the order of `up`'s
//! steps, parallel `up` with `depends_on` and failures, `halt`'s fallbacks,
//! `destroy` of a machine whose hypervisor is gone. No QEMU, no SSH.

use super::down::{destroy, halt};
use super::parallel::up_all;
use super::up::{UpOptions, up};
use super::{Ctx, snapshot, suspend};
use crate::backend::fake::{Calls, FakeBackend};
use crate::boxes::Store;
use crate::guest::fake::FakeGuest;
use crate::machine::Status;
use crate::machine::project::Project;
use std::path::Path;

/// A project in a temporary folder with a box `fake` in a store beside it.
struct World {
    _tmp: tempfile::TempDir,
    project: Project,
    store: Store,
    calls: Calls,
    backend: FakeBackend,
    guest: FakeGuest,
}

impl World {
    fn new(envfile: &str) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("Envfile");
        std::fs::write(&path, envfile).unwrap();
        let envfile = crate::envfile::read::parse(&path, envfile).unwrap();
        let project = Project {
            state_dir: tmp.path().join(".envstate"),
            envfile,
        };
        let store = Store::at(tmp.path().join("boxes"));
        let archive = crate::boxes::tests::fake_box(tmp.path(), Some("1.0"));
        store
            .add_archive(&archive, "fake", None, false, &mut |_| {})
            .unwrap();
        let calls = Calls::default();
        World {
            _tmp: tmp,
            project,
            store,
            backend: FakeBackend::new(calls.clone()),
            guest: FakeGuest::new(calls.clone()),
            calls,
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            backend: &self.backend,
            guest: &self.guest,
        }
    }

    /// The calls so far, and forgets them.
    fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    fn status(&self, name: &str) -> Status {
        self.ctx().status(&self.project.machine_dir(name)).unwrap()
    }

    fn up(&self, name: &str) -> anyhow::Result<()> {
        let machine = self.project.envfile.machine(name).unwrap();
        up(
            &self.ctx(),
            &self.project,
            machine,
            &self.store,
            &UpOptions::default(),
        )
    }
}

const ONE: &str = r#"
[defaults]
box = "fake"
[machines.web]
[[machines.web.provision]]
name = "setup"
type = "shell"
inline = "true"
"#;

#[test]
fn up_creates_boots_waits_configures_then_provisions_in_that_order() {
    let w = World::new(ONE);
    w.up("web").unwrap();
    assert_eq!(
        w.take_calls(),
        [
            "create_disks web",
            "start web",
            "wait_ready kvm1.example:40022 via ops@kvm1.example",
            "connect web kvm1.example:40022 via ops@kvm1.example",
            "run web sudo -n sh -s",
            "sync_folders web as vagrant",
            "provision web setup",
        ]
    );
    assert_eq!(w.status("web"), Status::Running);
    let state = w.project.machine_dir("web").load_state().unwrap().unwrap();
    let endpoint = state.ssh_endpoint().unwrap();
    assert_eq!(
        endpoint.host, "kvm1.example",
        "the backend's endpoint is kept"
    );
    assert_eq!(endpoint.jump.as_deref(), Some("ops@kvm1.example"));
    assert!(state.provisioned && state.running && state.last_error.is_none());

    // Up again: running and provisioned, nothing to do.
    w.up("web").unwrap();
    assert!(w.take_calls().is_empty());
}

#[test]
fn a_machine_that_dies_while_booting_is_stopped_and_recorded() {
    let w = World::new(ONE);
    w.backend.die_in_boot.lock().unwrap().insert("web".into());
    let err = w.up("web").unwrap_err().to_string();
    assert!(
        err.contains("did not answer SSH") && err.contains("stopped in the fake"),
        "{err}"
    );
    let calls = w.take_calls();
    assert_eq!(
        calls[calls.len() - 2..],
        ["disconnect web", "stop web"],
        "{calls:?}"
    );
    assert!(!calls.iter().any(|c| c.starts_with("provision")));
    let state = w.project.machine_dir("web").load_state().unwrap().unwrap();
    assert!(!state.running);
    assert!(state.last_error.unwrap().contains("did not answer SSH"));
    assert_eq!(w.status("web"), Status::Halted);
}

const THREE: &str = r#"
[defaults]
box = "fake"
[machines.db]
[[machines.db.provision]]
name = "db-setup"
type = "shell"
inline = "true"
[machines.app]
depends_on = ["db"]
[[machines.app.provision]]
name = "app-setup"
type = "shell"
inline = "true"
[machines.cache]
"#;

fn up_three(w: &World) -> anyhow::Result<()> {
    let machines: Vec<_> = w.project.envfile.machines.iter().collect();
    up_all(
        &w.ctx(),
        &w.project,
        &machines,
        &w.store,
        &UpOptions::default(),
        3,
    )
}

#[test]
fn parallel_up_provisions_a_dependant_after_what_it_depends_on() {
    let w = World::new(THREE);
    up_three(&w).unwrap();
    let calls = w.take_calls();
    let at = |call: &str| calls.iter().position(|c| c == call).expect(call);
    assert!(at("provision db db-setup") < at("provision app app-setup"));
    for m in ["db", "app", "cache"] {
        assert_eq!(w.status(m), Status::Running, "{m}");
    }
}

#[test]
fn parallel_up_reports_a_failure_and_skips_its_dependant() {
    let w = World::new(THREE);
    w.backend.fail_start.lock().unwrap().insert("db".into());
    let err = format!("{:#}", up_three(&w).unwrap_err());
    assert!(
        err.contains("db: ") && err.contains("refuses to start"),
        "{err}"
    );
    assert!(
        err.contains("app: not finished: machine `db` it depends on did not come up"),
        "{err}"
    );
    let calls = w.take_calls();
    assert!(
        !calls.iter().any(|c| c.starts_with("provision app")),
        "{calls:?}"
    );
    assert_ne!(w.status("db"), Status::Running);
}

#[test]
fn parallel_up_reports_a_provisioning_failure_for_the_machine() {
    let w = World::new(THREE);
    w.guest.fail_provision.lock().unwrap().insert("db".into());
    let err = format!("{:#}", up_three(&w).unwrap_err());
    assert!(err.contains("db: provisioner `db-setup` failed"), "{err}");
    assert!(err.contains("app: not finished"), "{err}");
    let state = w.project.machine_dir("db").load_state().unwrap().unwrap();
    assert!(!state.provisioned);
    assert!(state.last_error.unwrap().contains("db-setup"));
}

#[test]
fn halt_asks_the_guest_first_then_stops_the_machine() {
    let w = World::new(ONE);
    w.up("web").unwrap();
    w.take_calls();
    halt(&w.ctx(), &w.project, "web", false).unwrap();
    assert_eq!(
        w.take_calls(),
        ["stop_journal web", "disconnect web", "power_off web"]
    );
    assert_eq!(w.status("web"), Status::Halted);

    // A guest that ignores the power button is stopped by the backend.
    let mut w = World::new(ONE);
    w.backend.guests_power_off = false;
    w.up("web").unwrap();
    w.take_calls();
    halt(&w.ctx(), &w.project, "web", false).unwrap();
    assert_eq!(
        w.take_calls(),
        [
            "stop_journal web",
            "disconnect web",
            "power_off web",
            "stop web"
        ]
    );
    assert_eq!(w.status("web"), Status::Halted);

    // --force: no question to the guest.
    w.up("web").unwrap();
    w.take_calls();
    halt(&w.ctx(), &w.project, "web", true).unwrap();
    assert_eq!(
        w.take_calls(),
        ["stop_journal web", "disconnect web", "stop web"]
    );
    let state = w.project.machine_dir("web").load_state().unwrap().unwrap();
    assert!(!state.running && state.last_action == "halt");

    // Halting a halted machine, or one never created, is fine.
    halt(&w.ctx(), &w.project, "web", false).unwrap();
    let w = World::new(ONE);
    halt(&w.ctx(), &w.project, "web", false).unwrap();
    assert!(w.take_calls().is_empty());
}

#[test]
fn destroy_works_when_the_machine_is_already_gone() {
    let w = World::new(ONE);
    w.up("web").unwrap();
    w.backend.vanish("web");
    assert_eq!(w.status("web"), Status::Died);
    w.take_calls();
    destroy(&w.ctx(), &w.project, "web", &w.store, false).unwrap();
    assert_eq!(
        w.take_calls(),
        ["stop_journal web", "disconnect web", "remove web"]
    );
    assert_eq!(w.status("web"), Status::NotCreated);
    assert!(!w.project.machine_dir("web").root.exists());
    let archived =
        crate::ops::logs::runs(&crate::ops::logs::archive_dir(&w.project.state_dir, "web"));
    assert_eq!(archived.len(), 1, "its state is archived with the logs");
    // Destroying it again says so and succeeds.
    destroy(&w.ctx(), &w.project, "web", &w.store, false).unwrap();
    assert!(w.take_calls().is_empty());
}

#[test]
fn a_corrupt_state_file_is_refused_untouched_and_destroy_still_cleans_up() {
    let w = World::new(ONE);
    w.up("web").unwrap();
    let dir = w.project.machine_dir("web");
    std::fs::write(dir.state_file(), "{\"format\": 1, \"box\":").unwrap();
    let err = format!(
        "{:#}",
        w.ctx().status(&dir).and(dir.load_state()).unwrap_err()
    );
    assert!(err.contains("state.json is corrupt"), "{err}");
    assert!(err.contains("`env destroy web`"), "{err}");
    let err = format!("{:#}", w.up("web").unwrap_err());
    assert!(err.contains("is corrupt"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.state_file()).unwrap(),
        "{\"format\": 1, \"box\":",
        "refused, never rewritten"
    );
    w.take_calls();
    destroy(&w.ctx(), &w.project, "web", &w.store, false).unwrap();
    assert!(w.take_calls().contains(&"remove web".to_string()));
    assert!(!dir.root.exists());
    let runs = crate::ops::logs::runs(&crate::ops::logs::archive_dir(&w.project.state_dir, "web"));
    let kept = std::fs::read_to_string(runs[0].join("state.json")).unwrap();
    assert_eq!(
        kept, "{\"format\": 1, \"box\":",
        "the file is kept with the logs"
    );
}

#[test]
fn a_live_snapshot_syncs_the_guest_then_asks_the_backend() {
    let w = World::new(ONE);
    w.up("web").unwrap();
    w.take_calls();
    let machine = w.project.envfile.machine("web").unwrap();
    snapshot::save(&w.ctx(), &w.project, machine, "clean", false).unwrap();
    assert_eq!(
        w.take_calls(),
        ["run web sync", "snapshot Save clean 1 live=true web"]
    );
    halt(&w.ctx(), &w.project, "web", true).unwrap();
    w.take_calls();
    snapshot::delete(&w.ctx(), &w.project, machine, "clean", false).unwrap_err();
    assert!(w.take_calls().is_empty(), "no disk holds it: nothing asked");
    assert!(Path::new(&w.project.state_dir).exists());
}

/// `state.json` as the release before the restructure wrote it (no format
/// field, no SSH host): a halted machine of that release comes up, halts
/// and is destroyed by this one.
const FORMAT_0_STATE: &str = include_str!("../../tests/fixtures/state-format-0.json");

#[test]
fn a_machine_from_the_release_before_works_on() {
    let w = World::new(ONE);
    let dir = w.project.machine_dir("web");
    std::fs::create_dir_all(&dir.root).unwrap();
    let mut old: serde_json::Value = serde_json::from_str(FORMAT_0_STATE).unwrap();
    let stored = w.store.find("fake", None).unwrap();
    old["box_dir"] = serde_json::json!(stored.dir);
    std::fs::write(dir.state_file(), old.to_string()).unwrap();
    std::fs::write(dir.disk(), "fake disk").unwrap();
    let state = dir.load_state().unwrap().unwrap();
    assert_eq!(state.format, 0);
    assert_eq!(state.ssh_endpoint().unwrap().to_string(), "127.0.0.1:40111");
    assert_eq!(w.status("web"), Status::Halted);

    w.up("web").unwrap();
    let calls = w.take_calls();
    assert_eq!(calls[0], "start web", "no new disks: {calls:?}");
    assert!(
        !calls.iter().any(|c| c == "provision web setup"),
        "provisioned by the old release: {calls:?}"
    );
    assert_eq!(w.status("web"), Status::Running);
    halt(&w.ctx(), &w.project, "web", false).unwrap();
    assert_eq!(w.status("web"), Status::Halted);
    destroy(&w.ctx(), &w.project, "web", &w.store, false).unwrap();
    assert_eq!(w.status("web"), Status::NotCreated);
}

#[test]
fn suspend_saves_then_stops_and_up_resumes_from_the_saved_state() {
    let w = World::new(ONE);
    let machine = w.project.envfile.machine("web").unwrap();
    w.up("web").unwrap();
    w.take_calls();
    suspend::suspend(&w.ctx(), &w.project, machine).unwrap();
    assert_eq!(
        w.take_calls(),
        [
            "run web sync",
            "snapshot Save env-suspend 1 live=true web",
            "stop_journal web",
            "disconnect web",
            "stop web",
        ]
    );
    assert_eq!(w.status("web"), Status::Suspended);
    // Commands that need the guest say how to get it back.
    let err = w.ctx().running_state(&w.project.machine_dir("web"));
    assert!(format!("{:#}", err.unwrap_err()).contains("`env resume web`"));
    // `up` resumes: from the saved state, clock set, state deleted, no
    // provisioning, no readiness wait for services that never stopped.
    w.up("web").unwrap();
    assert_eq!(
        w.take_calls(),
        [
            "start from env-suspend web",
            "wait_ready kvm1.example:40022 via ops@kvm1.example",
            "connect web kvm1.example:40022 via ops@kvm1.example",
            "set_guest_clock web",
            "snapshot Delete env-suspend 1 live=true web",
            "run web sudo -n sh -s",
            "sync_folders web as vagrant",
        ]
    );
    assert_eq!(w.status("web"), Status::Running);
    let state = w.project.machine_dir("web").load_state().unwrap().unwrap();
    assert!(!state.suspended && state.running);

    // Halt of a suspended machine throws the state away: the next up boots.
    suspend::suspend(&w.ctx(), &w.project, machine).unwrap();
    halt(&w.ctx(), &w.project, "web", false).unwrap();
    assert_eq!(w.status("web"), Status::Halted);
    w.take_calls();
    w.up("web").unwrap();
    assert_eq!(w.take_calls()[0], "start web");
}

#[test]
fn machines_with_live_folders_or_raw_disks_are_not_suspended() {
    let w = World::new(
        r#"
[defaults]
box = "fake"
[machines.shares]
folders = [{ host = ".", guest = "/p", type = "9p", readonly = true }]
[machines.raw]
disks = [{ name = "db", size = "1G", format = "raw" }]
"#,
    );
    for (name, why) in [("shares", "9p or virtiofs"), ("raw", "`db` is a raw image")] {
        w.up(name).unwrap();
        w.take_calls();
        let machine = w.project.envfile.machine(name).unwrap();
        let err = suspend::suspend(&w.ctx(), &w.project, machine).unwrap_err();
        assert!(format!("{err:#}").contains(why), "{err:#}");
        assert_eq!(w.take_calls(), Vec::<String>::new(), "nothing done");
        assert_eq!(w.status(name), Status::Running);
    }
}

#[test]
fn triggers_run_host_commands_and_guest_scripts_around_a_command() {
    use crate::envfile::triggers::TriggerAction;
    let w = World::new(
        r#"
[defaults]
box = "fake"
[machines.web]
[machines.db]

[[triggers]]
name = "note"
when = "before"
on = ["up"]
run = "echo \"$ENV_TRIGGER_WHEN $ENV_TRIGGER_ACTION $ENV_MACHINE\" >> trail"

[[triggers]]
name = "check"
when = "after"
on = ["up"]
machines = ["web"]
run = "echo after >> trail"
run_remote = "true"

[[triggers]]
name = "flaky"
when = "after"
on = ["up"]
run = "exit 3"
on_error = "continue"
"#,
    );
    let web = w.project.envfile.machine("web").unwrap();
    let db = w.project.envfile.machine("db").unwrap();
    super::triggers::around(&w.ctx(), &w.project, &[web, db], TriggerAction::Up, || {
        w.up("web")?;
        w.up("db")
    })
    .unwrap();
    let trail = std::fs::read_to_string(w.project.envfile.dir.join("trail")).unwrap();
    assert_eq!(trail, "before up web\nbefore up db\nafter\n");
    let calls = w.take_calls();
    assert_eq!(calls[0], "create_disks web", "before triggers run first");
    assert!(
        calls.contains(&"provision web trigger:check".to_string()),
        "{calls:?}"
    );
    let log = std::fs::read_to_string(super::triggers::log_path(&w.project)).unwrap();
    assert!(
        log.contains("trigger `flaky` (host command) FAILED"),
        "{log}"
    );

    // A failing `before` trigger stops the command: nothing is done.
    let w = World::new(
        "[defaults]\nbox = \"fake\"\n[[triggers]]\nwhen = \"before\"\non = [\"halt\"]\nrun = \"echo no >&2; exit 1\"\n",
    );
    w.up("default").unwrap();
    w.take_calls();
    let machine = w.project.envfile.machine("default").unwrap();
    let err = super::triggers::around(
        &w.ctx(),
        &w.project,
        &[machine],
        TriggerAction::Halt,
        || halt(&w.ctx(), &w.project, "default", false),
    )
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("trigger `trigger 1` (before halt) failed on `default`"),
        "{err}"
    );
    assert!(err.contains("exit status 1") && err.contains("no"), "{err}");
    assert!(w.take_calls().is_empty());
    assert_eq!(w.status("default"), Status::Running);
}
