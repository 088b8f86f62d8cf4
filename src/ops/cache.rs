//! The provisioning cache in operations: after a machine provisions
//! successfully, `keep` snapshots it (VM state and box disks) into the
//! cache under a key of everything provisioning reads; the next `up` of a
//! machine with the same key `restore`s that snapshot instead of booting
//! and provisioning. Opt-in (`--cache`, `[cache] enabled`): a cached pass
//! cannot see what provisioning fetches at run time.

use crate::backend::{DiskRef, SnapshotOp};
use crate::boxes::{Store, StoredBox};
use crate::envfile::Machine;
use crate::machine::cache::key::{KeyContext, key};
use crate::machine::cache::{self, Cache, Entry, SNAPSHOT_TAG};
use crate::machine::project::Project;
use crate::machine::state::{Accelerator, CacheOrigin};
use crate::machine::{MachineDir, Status};
use crate::ops::Ctx;
use crate::util::ui;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::time::{Duration, Instant};

/// The files of a machine's folder an entry holds besides its box disks:
/// the per-machine key, the pinned host key, the host key env made and the
/// UEFI variables (those that exist).
fn kept_files(dir: &MachineDir) -> Vec<std::path::PathBuf> {
    let key = dir.key();
    let host_key = dir.host_key();
    vec![
        key.with_extension("pub"),
        key,
        dir.known_hosts(),
        host_key.with_extension("pub"),
        host_key,
        dir.uefi_vars(),
    ]
}

/// Why a machine cannot be cached, if it cannot.
pub fn not_cacheable(machine: &Machine) -> Option<&'static str> {
    if machine.folders.iter().any(|f| f.kind.is_live()) {
        return Some(
            "it shares 9p or virtiofs folders, and QEMU cannot save a VM state while one is attached (type = \"rsync\" folders can be cached)",
        );
    }
    if !machine.disks.is_empty() {
        return Some("it has data disks, which the cache does not hold");
    }
    None
}

/// The key of `machine` booting from `stored` under the accelerator asked
/// for.
fn key_for(
    project: &Project,
    machine: &Machine,
    stored: &StoredBox,
    accel: &str,
) -> Result<String> {
    let context = KeyContext {
        project_dir: &project.envfile.dir,
        box_name: &stored.name,
        box_version: &stored.version,
        box_dir: &stored.dir,
        accel,
        private_subnet: project.envfile.private_subnet,
        peers: project
            .envfile
            .machines
            .iter()
            .map(|m| (m.name.clone(), m.ip))
            .collect(),
    };
    key(machine, &context)
        .with_context(|| format!("cannot make the cache key of `{}`", machine.name))
}

fn short(key: &str) -> &str {
    &key[..12.min(key.len())]
}

/// A machine folder made from a cache entry, ready to start from the
/// entry's VM state.
#[derive(Debug)]
pub struct Prepared {
    /// The entry.
    pub entry: Entry,
    /// The accelerator the VM state was saved under (it loads under that
    /// one only).
    pub accel: crate::envfile::Accel,
    /// When restoring began.
    pub started: Instant,
}

/// Makes the folder of `machine` (not created) from its cache entry when
/// there is a usable one: disks, keys and state copied from the entry
/// (staged, then renamed into place). `None` when there is none (said in
/// one line when there is one that cannot be used).
pub fn prepare(
    project: &Project,
    machine: &Machine,
    store: &Store,
    accel: crate::envfile::Accel,
) -> Result<Option<Prepared>> {
    let Ok(stored) = store.find(&machine.boxref.name, machine.boxref.version.as_deref()) else {
        return Ok(None);
    };
    if not_cacheable(&crate::ops::with_chosen_folders(machine, &stored.dir).0).is_some() {
        return Ok(None);
    }
    let key = key_for(project, machine, &stored, &accel.to_string())?;
    let cache = Cache::open()?;
    let _lock = cache.lock(false)?;
    let entry = match cache.get(&key) {
        Ok(Some(entry)) => entry,
        Ok(None) => {
            ui::step(
                &machine.name,
                &format!("cache: no entry for key {}: provisioning", short(&key)),
            );
            return Ok(None);
        }
        Err(damaged) => {
            ui::step(
                &machine.name,
                &format!("cache: entry {} ignored: {}", short(&key), damaged.why),
            );
            return Ok(None);
        }
    };
    if entry.box_dir != stored.dir || !cache::box_present(&entry.box_dir) {
        ui::step(
            &machine.name,
            &format!("cache: entry {} ignored: its box is gone", short(&key)),
        );
        return Ok(None);
    }
    let started = Instant::now();
    let dir = project.machine_dir(&machine.name);
    make_folder(store, &stored, &cache, &entry, &dir)?;
    let accel = match entry.accel.as_str() {
        "kvm" => crate::envfile::Accel::Kvm,
        _ => crate::envfile::Accel::Tcg,
    };
    Ok(Some(Prepared {
        entry,
        accel,
        started,
    }))
}

/// Says a restore worked and marks its entry used.
pub fn restored(machine: &Machine, prepared: &Prepared) {
    if let Ok(cache) = Cache::open() {
        let _ = cache.touch(&prepared.entry);
    }
    ui::step(
        &machine.name,
        &format!(
            "restored from the provisioning cache in {:.1} s (key {}, kept {}): provisioning skipped",
            prepared.started.elapsed().as_secs_f64(),
            short(&prepared.entry.key),
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + Duration::from_secs(prepared.entry.created)
            )
        ),
    );
}

/// The machine's folder from the entry's files.
fn make_folder(
    store: &Store,
    stored: &StoredBox,
    cache: &Cache,
    entry: &Entry,
    dir: &MachineDir,
) -> Result<()> {
    let parent = dir.root.parent().context("state folder has no parent")?;
    std::fs::create_dir_all(parent)?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}-", dir.name))
        .tempdir_in(parent)?;
    crate::util::fs::make_private(staging.path())?;
    for file in &entry.files {
        std::fs::copy(
            cache.dir(&entry.key).join(&file.name),
            staging.path().join(&file.name),
        )
        .with_context(|| format!("cannot copy {} from the cache", file.name))?;
    }
    let staged = MachineDir {
        name: dir.name.clone(),
        root: staging.path().to_path_buf(),
    };
    let mut state = staged
        .load_state()?
        .context("the entry has no machine state")?;
    state.running = false;
    state.ssh_port = None;
    state.ssh_host = None;
    state.forwards.clear();
    state.last_action = "create".into();
    state.last_error = None;
    state.from_cache = Some(CacheOrigin {
        key: entry.key.clone(),
        idempotent: entry.idempotent,
    });
    staged.save_state(&state)?;
    if dir.root.exists() {
        std::fs::remove_dir_all(&dir.root)?;
    }
    std::fs::rename(staging.keep(), &dir.root)
        .with_context(|| format!("cannot create {}", dir.root.display()))?;
    store.add_user(stored, &dir.root)?;
    Ok(())
}

/// Keeps a provisioned, running `machine` in the cache (unless it cannot
/// be cached, or an entry with its key is there already): a live snapshot
/// of its box disks, copied while the guest is paused, then removed from
/// the machine. A failure is reported, never fatal: the machine is fine.
pub fn keep(
    ctx: &Ctx,
    project: &Project,
    machine: &Machine,
    store: &Store,
    accel: crate::envfile::Accel,
    idempotent: bool,
) {
    let dir = project.machine_dir(&machine.name);
    if let Some(why) = not_cacheable(&crate::ops::created_machine(machine, &dir)) {
        ui::step(&machine.name, &format!("cache: not kept: {why}"));
        return;
    }
    let started = Instant::now();
    match keep_machine(ctx, project, machine, store, accel, idempotent) {
        Ok(Some(entry)) => ui::step(
            &machine.name,
            &format!(
                "kept in the provisioning cache in {:.1} s (key {}, {})",
                started.elapsed().as_secs_f64(),
                short(&entry.key),
                ui::human_bytes(entry.size())
            ),
        ),
        Ok(None) => {}
        Err(e) => ui::step(&machine.name, &format!("cache: not kept: {e:#}")),
    }
}

fn keep_machine(
    ctx: &Ctx,
    project: &Project,
    machine: &Machine,
    store: &Store,
    accel: crate::envfile::Accel,
    idempotent: bool,
) -> Result<Option<Entry>> {
    let dir = project.machine_dir(&machine.name);
    if ctx.status(&dir)? != Status::Running {
        bail!("`{}` is not running", machine.name);
    }
    let state = dir.load_state()?.context("machine state vanished")?;
    let stored = store.find(&state.box_name, Some(&state.box_version))?;
    let key = key_for(project, machine, &stored, &accel.to_string())?;
    let cache = Cache::open()?;
    match cache.get(&key) {
        Ok(Some(_)) => return Ok(None),
        Ok(None) => {}
        // A damaged entry with this key gives way to a whole one.
        Err(_) => {
            let _lock = cache.lock(true)?;
            cache.remove(&key)?;
        }
    }
    let disks: Vec<DiskRef> = (0..ctx.backend.box_disk_count(&dir))
        .map(DiskRef::Box)
        .collect();
    // A machine restored from the cache holds the cache's snapshot already.
    if ctx
        .backend
        .snapshots(&dir, DiskRef::Box(0))?
        .iter()
        .any(|s| s.name == SNAPSHOT_TAG)
    {
        ctx.backend
            .snapshot(&dir, SnapshotOp::Delete, SNAPSHOT_TAG, &disks, true)?;
    }
    let _ = ctx
        .guest
        .run(&dir, "sync", &[], Some(Duration::from_secs(60)));
    ctx.backend
        .snapshot(&dir, SnapshotOp::Save, SNAPSHOT_TAG, &disks, true)
        .context("cannot snapshot the machine")?;
    let staging = cache.stage()?;
    let copied = copy_paused(ctx, &dir, staging.path());
    // The machine's own disks need not carry the cache's VM state on.
    let deleted = ctx
        .backend
        .snapshot(&dir, SnapshotOp::Delete, SNAPSHOT_TAG, &disks, true);
    copied?;
    deleted?;
    for file in kept_files(&dir).into_iter().filter(|f| f.exists()) {
        let name = file.file_name().context("a file without a name")?;
        std::fs::copy(&file, staging.path().join(name))?;
    }
    let mut kept_state = state.clone();
    kept_state.provisioned = true;
    kept_state.from_cache = None;
    crate::util::fs::write_atomic(
        &staging.path().join("state.json"),
        serde_json::to_string_pretty(&kept_state)?.as_bytes(),
    )?;
    let entry = Entry {
        key,
        machine: machine.name.clone(),
        project: project.envfile.dir.clone(),
        box_name: stored.name.clone(),
        box_version: stored.version.clone(),
        box_dir: stored.dir.clone(),
        accel: match state.accel {
            Some(Accelerator::Kvm) => "kvm".into(),
            _ => "tcg".into(),
        },
        idempotent,
        created: 0,
        last_used: 0,
        files: Vec::new(),
    };
    let entry = cache.commit(staging, entry)?;
    prune(&cache, store, project_max_bytes(project)?, &machine.name);
    Ok(Some(entry))
}

/// Copies the machine's box disks into `to` while its guest is paused
/// (the copies are whole), letting it run on whatever happens.
fn copy_paused(ctx: &Ctx, dir: &MachineDir, to: &Path) -> Result<()> {
    ctx.backend.pause(dir)?;
    let copied = dir.box_disks().iter().try_for_each(|disk| {
        let name = disk.file_name().context("a disk without a name")?;
        std::fs::copy(disk, to.join(name))
            .map(drop)
            .with_context(|| format!("cannot copy {}", disk.display()))
    });
    let resumed = ctx.backend.resume(dir);
    copied?;
    resumed
}

fn project_max_bytes(project: &Project) -> Result<u64> {
    cache::max_bytes(project.envfile.cache.max_size.map(|s| s.bytes()))
}

/// Removes damaged entries, those whose box is gone, and the least
/// recently used past `max_bytes`, each said in one line.
pub fn prune(cache: &Cache, store: &Store, max_bytes: u64, who: &str) -> Vec<(String, String)> {
    let Ok(_lock) = cache.lock(true) else {
        return Vec::new();
    };
    let Ok((entries, damaged)) = cache.list() else {
        return Vec::new();
    };
    let gone = |e: &Entry| {
        !cache::box_present(&e.box_dir)
            || store
                .find(&e.box_name, Some(&e.box_version))
                .map_or(true, |b| b.dir != e.box_dir)
    };
    let plan = cache::prune_plan(&entries, &damaged, max_bytes, &gone);
    for (key, why) in &plan {
        if cache.remove(key).is_ok() {
            ui::step(who, &format!("cache: entry {} removed: {why}", short(key)));
        }
    }
    plan
}
