//! `env up` of one machine: create it (box fetched if missing, disks made
//! by the backend), boot it, wait for SSH, name it and mount its disks and
//! folders, start the journal stream, provision it. Each step's outcome is
//! recorded in the machine's state.

use crate::backend::{BootRequest, network};
use crate::boxes::{Store, registry};
use crate::envfile::model::ACCEL_VAR;
use crate::envfile::{Accel, Machine};
use crate::guest::provisioner::Selection;
use crate::guest::{cloudinit, run_root_script, scripts, ssh};
use crate::machine::cache::SNAPSHOT_TAG;
use crate::machine::project::Project;
use crate::machine::state::Accelerator;
use crate::machine::{MachineDir, MachineState, Status};
use crate::ops::provision::provision_machine;
use crate::ops::suspend::{self, SUSPEND_TAG};
use crate::ops::{Ctx, cache, paused_message, record};
use crate::util::ui;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::time::{Duration, Instant};

/// Default login user of boxes that do not name one (Vagrant's convention).
pub const DEFAULT_USER: &str = "vagrant";

/// Options of `env up`.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// `--accel`, overriding `ENV_ACCEL` and the Envfile.
    pub accel: Option<Accel>,
    /// `--provision` (Some(true)) or `--no-provision` (Some(false)); by
    /// default provisioners run at the first boot, `always` ones at every boot.
    pub provision: Option<bool>,
    /// What the provisioning cache does.
    pub cache: CacheMode,
}

/// What the provisioning cache does in an `up`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CacheMode {
    /// Nothing (the default: a cached pass could hide an upstream change).
    #[default]
    Off,
    /// Restore a machine being created from its entry; keep a machine
    /// once its first provisioning succeeds.
    RestoreAndKeep,
    /// Restore only: the caller keeps it later (`env test --idempotent`
    /// after the second provisioning).
    RestoreOnly,
}

/// How a machine came to be running in an `up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Came {
    /// It was running already.
    AlreadyRunning,
    /// It booted.
    Booted,
    /// It started from a provisioning cache entry (provisioned already).
    Restored,
    /// It was suspended and runs on where it was.
    Resumed,
}

/// The accelerator asked for: the command line, else `ENV_ACCEL`, else the
/// Envfile.
pub fn requested_accel(flag: Option<Accel>, envfile: Accel) -> Result<Accel> {
    if let Some(a) = flag {
        return Ok(a);
    }
    match std::env::var(ACCEL_VAR) {
        Ok(v) if !v.is_empty() => Accel::parse(&v).map_err(|e| anyhow::anyhow!("{ACCEL_VAR}: {e}")),
        _ => Ok(envfile),
    }
}

/// Brings a machine up: creates it if needed, boots it if not running, waits
/// until SSH works with the machine's own key, and provisions it.
pub fn up(
    ctx: &Ctx,
    project: &Project,
    machine: &Machine,
    store: &Store,
    options: &UpOptions,
) -> Result<()> {
    let came = up_boot(ctx, project, machine, store, options)?;
    up_provision(ctx, project, machine, store, options, came)
}

/// The boot half of `up`: create (or restore from the provisioning
/// cache), boot, wait for SSH, set name and network.
pub fn up_boot(
    ctx: &Ctx,
    project: &Project,
    machine: &Machine,
    store: &Store,
    options: &UpOptions,
) -> Result<Came> {
    let dir = project.machine_dir(&machine.name);
    let plan = network::plan(&project.envfile, &project.state_dir)?;
    let me = plan
        .machines
        .iter()
        .find(|m| m.name == machine.name)
        .context("machine missing from the network plan")?;
    let came = match ctx.status(&dir)? {
        Status::Running if dir.ssh_config().exists() => {
            match ctx.backend.paused(&dir) {
                None => ui::step(&machine.name, "already running"),
                Some(why) => resume_paused(ctx, &dir, &why)?,
            }
            Came::AlreadyRunning
        }
        Status::Running => {
            // An earlier `up` died between starting the machine and SSH set-up.
            ui::step(&machine.name, "running, finishing an interrupted `up`");
            record(&dir, "up", |state| {
                let endpoint = state
                    .ssh_endpoint()
                    .context("no SSH port recorded: `env destroy` it and `env up` again")?;
                let accel = state.accel.unwrap_or(Accelerator::Tcg);
                await_ssh(ctx, &dir, machine, state, &endpoint, accel, Instant::now())
            })?;
            Came::Booted
        }
        Status::Suspended => {
            resume(
                ctx,
                &dir,
                machine,
                plan.link_of(&machine.name).filter(|_| me.ip.is_some()),
            )?;
            Came::Resumed
        }
        status => {
            let accel = requested_accel(options.accel, machine.accel)?;
            let link = plan.link_of(&machine.name).filter(|_| me.ip.is_some());
            let restored = match status == Status::NotCreated && options.cache != CacheMode::Off {
                true => restore(ctx, project, machine, store, accel, link.clone())?,
                false => false,
            };
            if restored {
                Came::Restored
            } else {
                if ctx.status(&dir)? == Status::NotCreated {
                    create(ctx, &dir, machine, store, &project.envfile.dir)?;
                }
                let state = dir.load_state()?.context("machine state vanished")?;
                let (machine, notes) = crate::ops::with_chosen_folders(machine, &state.box_dir);
                for note in notes {
                    ui::step(&machine.name, &note);
                }
                record(&dir, "up", |state| {
                    boot(ctx, &dir, &machine, state, accel, link, None)
                })?;
                Came::Booted
            }
        }
    };
    if came != Came::AlreadyRunning {
        let machine = &crate::ops::created_machine(machine, &dir);
        record(&dir, "up", |state| {
            if uses_cloud_init(state) {
                let bar = ui::spinner(&machine.name, "waiting for cloud-init to finish");
                let waited = run_root_script(
                    ctx.guest,
                    &dir,
                    cloudinit::WAIT_SCRIPT,
                    &format!("cloud-init did not finish on `{}`", machine.name),
                );
                bar.finish_and_clear();
                waited?;
            }
            let proxy = guest_proxy(ctx, machine);
            let script = scripts::name_and_network(me, &plan)
                + &scripts::mount_script(&machine.folders)
                + &scripts::disk_mount_script(&machine.disks)
                + &crate::guest::proxy::script(proxy.as_ref());
            run_root_script(
                ctx.guest,
                &dir,
                &script,
                &format!("cannot set the name and network of `{}`", me.name),
            )?;
            if proxy.is_some() {
                // Sessions read /etc/environment when the connection opens:
                // the next one opens anew and has the proxy.
                ctx.guest.disconnect(&dir);
            }
            ctx.guest.sync_folders(&dir, machine, &state.ssh_user)
        })?;
        if project.envfile.logs_forward {
            start_journal(ctx, &dir, None);
        }
        start_port_watch(ctx, &dir, machine);
    }
    Ok(came)
}

/// Starts `machine` from its provisioning cache entry, if it has one:
/// whether it did. A restore that fails is said, its machine removed, and
/// the caller boots as usual.
fn restore(
    ctx: &Ctx,
    project: &Project,
    machine: &Machine,
    store: &Store,
    accel: Accel,
    link: Option<network::PrivateLink>,
) -> Result<bool> {
    let Some(prepared) = cache::prepare(project, machine, store, accel)? else {
        return Ok(false);
    };
    let dir = project.machine_dir(&machine.name);
    let machine = &crate::ops::created_machine(machine, &dir);
    let started = record(&dir, "up", |state| {
        boot(
            ctx,
            &dir,
            machine,
            state,
            prepared.accel,
            link,
            Some(SNAPSHOT_TAG),
        )
    })
    .and_then(|()| {
        ctx.backend
            .set_guest_clock(&dir)
            .context("cannot set the restored guest's clock")
    });
    match started {
        Ok(()) => {
            cache::restored(machine, &prepared);
            Ok(true)
        }
        Err(e) => {
            ui::step(
                &machine.name,
                &format!("cache: starting from the entry failed, booting instead: {e:#}"),
            );
            crate::ops::down::destroy(ctx, project, &machine.name, store, false)?;
            Ok(false)
        }
    }
}

/// The proxy `machine`'s guest gets: the Envfile's, or the host's
/// variables now (`inherit`, a proxy on the host's loopback reached where
/// the guest sees the host). Says when `inherit` finds nothing.
fn guest_proxy(ctx: &Ctx, machine: &Machine) -> Option<crate::envfile::proxy::ProxyTable> {
    let setting = machine.proxy.as_ref()?;
    let lookup = |name: &str| std::env::var(name).ok();
    let proxy = crate::envfile::proxy::effective(setting, &lookup, ctx.backend.host_from_guest());
    if proxy.is_none() {
        ui::step(
            &machine.name,
            "proxy = \"inherit\", but this shell sets no http_proxy or https_proxy: the guest gets none",
        );
    }
    proxy
}

/// Starts a suspended machine from its saved state, under the accelerator
/// it was saved under (a VM state does not move between them).
fn resume(
    ctx: &Ctx,
    dir: &MachineDir,
    machine: &Machine,
    link: Option<network::PrivateLink>,
) -> Result<()> {
    let state = dir.load_state()?.context("machine state vanished")?;
    let accel = match state.accel {
        Some(Accelerator::Kvm) => Accel::Kvm,
        _ => Accel::Tcg,
    };
    let machine = &crate::ops::created_machine(machine, dir);
    ui::step(&machine.name, "resuming where it was suspended");
    record(dir, "resume", |state| {
        boot(ctx, dir, machine, state, accel, link, Some(SUSPEND_TAG))
    })
    .and_then(|()| suspend::resumed(ctx, dir, machine))
    .with_context(|| {
        format!(
            "cannot resume `{0}` from its saved state (`env halt {0}` discards it: the disks \
             keep what was synced when it was suspended, and `env up {0}` boots them)",
            machine.name
        )
    })
}

/// Lets a machine the hypervisor paused (its disk found the host full) run
/// again; when the write fails again at once, says so and leaves it paused.
fn resume_paused(ctx: &Ctx, dir: &MachineDir, why: &str) -> Result<()> {
    ui::step(&dir.name, &format!("paused by {why}: resuming"));
    ctx.backend.resume(dir)?;
    // A retried write that fails again pauses the guest within moments.
    std::thread::sleep(Duration::from_secs(1));
    if let Some(again) = ctx.backend.paused(dir) {
        bail!("{}", paused_message(&dir.name, &again));
    }
    ui::step(&dir.name, "running again");
    Ok(())
}

/// Starts the automatic port forwarding watcher when the machine asks for
/// it; a failure is reported, not fatal.
pub fn start_port_watch(ctx: &Ctx, dir: &MachineDir, machine: &Machine) {
    let Some(auto) = &machine.ports_auto else {
        return;
    };
    let mut skip = auto.exclude.clone();
    skip.push((machine.ssh_guest_port, machine.ssh_guest_port));
    skip.extend(machine.ports.iter().map(|p| (p.guest, p.guest)));
    let settings = crate::guest::ports_auto::WatchSettings {
        host_ip: auto.host_ip,
        skip,
    };
    if let Err(e) = ctx.guest.start_port_watch(dir, &settings) {
        ui::step(
            &dir.name,
            &format!("ports not forwarded automatically: {e:#}"),
        );
    }
}

/// Starts streaming the guest's journal; a failure is reported, not fatal
/// (the machine works without it).
pub fn start_journal(ctx: &Ctx, dir: &MachineDir, since_unix_secs: Option<u64>) {
    if let Err(e) = ctx.guest.start_journal(dir, since_unix_secs) {
        ui::step(&dir.name, &format!("journal not forwarded: {e:#}"));
    }
}

/// The provisioning half of `up`: the first boot runs the provisioners, later
/// boots the `always` ones, as `--provision`/`--no-provision` say.
pub fn up_provision(
    ctx: &Ctx,
    project: &Project,
    machine: &Machine,
    store: &Store,
    options: &UpOptions,
    came: Came,
) -> Result<()> {
    let dir = project.machine_dir(&machine.name);
    let state = dir.load_state()?.context("machine state vanished")?;
    let booted = came != Came::AlreadyRunning;
    let selection = match options.provision {
        Some(false) => None,
        // A machine from the cache was provisioned before it was kept.
        _ if came == Came::Restored => Some(Selection::AlwaysOnly),
        Some(true) => Some(Selection::Normal),
        // A resumed machine runs on: nothing started anew.
        None if came == Came::Resumed => None,
        None if !state.provisioned => Some(Selection::Normal),
        None if booted => Some(Selection::AlwaysOnly),
        None => None,
    };
    match selection {
        Some(selection) => {
            provision_machine(ctx, project, machine, &selection)?;
            let first = !state.provisioned && selection == Selection::Normal;
            if first && came == Came::Booted && options.cache == CacheMode::RestoreAndKeep {
                let accel = requested_accel(options.accel, machine.accel)?;
                cache::keep(ctx, project, machine, store, accel, false);
            }
            Ok(())
        }
        // Booted again without provisioning: its services start anew.
        None if booted && came != Came::Resumed => {
            crate::ops::provision::wait_ready(ctx, &dir, machine)
        }
        None => Ok(()),
    }
}

/// Creates the machine's state folder and its disks. Leaves nothing on
/// failure: everything is made in a staging folder renamed at the end.
fn create(
    ctx: &Ctx,
    dir: &MachineDir,
    machine: &Machine,
    store: &Store,
    project_dir: &Path,
) -> Result<()> {
    let wanted = machine.boxref.version.as_deref();
    let stored = match (
        store.find(&machine.boxref.name, wanted),
        &machine.boxref.url,
    ) {
        (Ok(b), _) => b,
        // Missing, with a place to fetch it from: fetch it.
        (Err(_), Some(url)) => {
            fetch_missing(store, machine, url, url)?;
            store.find(&machine.boxref.name, wanted)?
        }
        // Missing, and an image index name: fetch the pinned image; a
        // registry name (`owner/name`): its box metadata from the registry.
        (Err(e), None) => {
            let index = crate::boxes::index::Index::load(Some(project_dir))?;
            match index.get(&machine.boxref.name) {
                Some(entry) => {
                    ui::step(
                        &machine.name,
                        &format!(
                            "box `{}` is not in the store: fetching release {} from the image index",
                            machine.boxref.name, entry.release
                        ),
                    );
                    crate::boxes::from_index::add_from_index(
                        store,
                        &machine.boxref.name,
                        entry,
                        false,
                    )?;
                }
                None if registry::is_registry_name(&machine.boxref.name) => {
                    let server = registry::server(machine.boxref.server.as_deref());
                    let catalog = registry::catalog_url(&server, &machine.boxref.name);
                    fetch_missing(store, machine, &catalog, &format!("the registry {server}"))?;
                }
                None => return Err(e),
            }
            store.find(&machine.boxref.name, wanted)?
        }
    };
    // From here until the machine is recorded as the box's user, no other
    // env may remove the box.
    let _store_lock = store.lock_shared()?;
    let stored = store.find(&stored.name, Some(&stored.version))?;
    std::fs::create_dir_all(dir.root.parent().context("state folder has no parent")?)?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}-", machine.name))
        .tempdir_in(dir.root.parent().unwrap_or(Path::new(".")))?;
    let staged = MachineDir {
        name: dir.name.clone(),
        root: staging.path().to_path_buf(),
    };
    // A machine's folder holds its disks and keys: the user's alone.
    crate::util::fs::make_private(&staged.root)?;
    ctx.backend.create_disks(&staged, &stored, machine)?;
    let env_boot = stored.metadata.env.as_ref();
    let cloud_init = env_boot.is_some_and(|e| e.cloud_init);
    if env_boot.is_some_and(|e| e.ssh_host_key_fw_cfg) || cloud_init {
        ssh::keys::ensure_keypair(&staged.host_key(), "env host key")?;
    }
    let user = machine
        .ssh_user
        .clone()
        .or_else(|| env_boot.and_then(|e| e.ssh_user.clone()))
        .unwrap_or_else(|| DEFAULT_USER.into());
    let mut state = MachineState::created(&stored.name, &stored.version, stored.dir.clone(), user);
    if cloud_init {
        // cloud-init authorizes the machine's own key from the first boot:
        // no well-known key is ever involved.
        ssh::keys::ensure_keypair(&staged.key(), "env machine key")?;
        state.key_inserted = true;
    }
    staged.save_state(&state)?;
    if dir.root.exists() {
        // Leftovers of a machine whose disk is gone: replace them.
        std::fs::remove_dir_all(&dir.root)?;
    }
    std::fs::rename(staging.keep(), &dir.root)
        .with_context(|| format!("cannot create {}", dir.root.display()))?;
    store.add_user(&stored, &dir.root)?;
    Ok(())
}

/// Adds the machine's missing box from `source` (a box or a catalog, as
/// `env box add` takes them), with its name, version constraint and
/// checksum, saying it fetches from `place`.
fn fetch_missing(store: &Store, machine: &Machine, source: &str, place: &str) -> Result<()> {
    ui::step(
        &machine.name,
        &format!(
            "box `{}` is not in the store: fetching it from {place}",
            machine.boxref.name
        ),
    );
    let request = crate::boxes::fetch::AddRequest {
        source: source.to_string(),
        name: Some(machine.boxref.name.clone()),
        version: machine.boxref.version.clone(),
        checksum: machine.boxref.checksum.clone(),
        force: false,
        image: Default::default(),
    };
    crate::boxes::fetch::add(store, &request)
        .map(drop)
        .with_context(|| {
            format!(
                "cannot fetch the box `{}` of `{}` from {place}",
                machine.boxref.name, machine.name
            )
        })
}

/// Starts the machine through the backend (from snapshot `resume`'s VM
/// state when given), records where it answers, and waits for SSH.
fn boot(
    ctx: &Ctx,
    dir: &MachineDir,
    machine: &Machine,
    state: &mut MachineState,
    accel: Accel,
    private_link: Option<network::PrivateLink>,
    resume: Option<&str>,
) -> Result<()> {
    let started = Instant::now();
    let seed = cloud_init_seed(dir, machine, state)?;
    let booted = ctx.backend.start(&BootRequest {
        dir,
        machine,
        state,
        accel,
        private_link,
        seed,
        resume_snapshot: resume,
    })?;
    state.accel = Some(booted.accel);
    state.booted_with = crate::machine::drift::boot_settings(machine);
    state.set_ssh_endpoint(Some(&booted.ssh));
    state.forwards = booted.forwards;
    state.running = true;
    dir.save_state(state)?;
    await_ssh(ctx, dir, machine, state, &booted.ssh, booted.accel, started)
}

/// Whether the machine's box configures itself with cloud-init.
fn uses_cloud_init(state: &MachineState) -> bool {
    crate::boxes::metadata::Metadata::load(&state.box_dir)
        .is_ok_and(|m| m.env.is_some_and(|e| e.cloud_init))
}

/// The NoCloud seed of a cloud-image machine: its user with its own key,
/// the host key env made, its name, and the project's user-data.
fn cloud_init_seed(
    dir: &MachineDir,
    machine: &Machine,
    state: &MachineState,
) -> Result<Option<crate::backend::SeedFiles>> {
    if !uses_cloud_init(state) {
        return Ok(None);
    }
    let read = |path: std::path::PathBuf| {
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let host_public = read(dir.host_key().with_extension("pub"))?;
    let mut authorized = vec![read(dir.key().with_extension("pub"))?];
    if let Some(own) = &machine.ssh_private_key
        && let Ok(public) = read(own.with_extension("pub"))
    {
        authorized.push(public);
    }
    let user_data = machine
        .cloud_init_user_data
        .as_deref()
        .map(cloudinit::read_user_data)
        .transpose()?;
    // The host key is made when the machine is: a new machine, a new
    // instance, and cloud-init runs its first-boot steps again.
    let instance_id = format!(
        "env-{}-{}",
        machine.name,
        crate::util::paths::short_hash(std::path::Path::new(host_public.trim()))
    );
    let input = cloudinit::SeedInput {
        name: &machine.name,
        instance_id: &instance_id,
        user: &state.ssh_user,
        authorized_keys: authorized,
        host_key: Some((read(dir.host_key())?, host_public)),
        user_data,
    };
    Ok(Some(cloudinit::seed_files(&input)))
}

/// Waits for the SSH banner until the boot timeout (counted from `started`),
/// then sets up SSH. On timeout the machine is stopped and the error names
/// the console log.
fn await_ssh(
    ctx: &Ctx,
    dir: &MachineDir,
    machine: &Machine,
    state: &mut MachineState,
    endpoint: &crate::backend::SshEndpoint,
    accel: Accelerator,
    started: Instant,
) -> Result<()> {
    let bar = ui::spinner(
        &machine.name,
        &format!("booting ({}, SSH on {endpoint})", accel_name(accel)),
    );
    let deadline = started + machine.boot_timeout;
    let waited = ctx
        .guest
        .wait_ready(endpoint, deadline, &mut || ctx.backend.still_running(dir));
    bar.finish_and_clear();
    if let Err(e) = waited {
        ctx.guest.disconnect(dir);
        ctx.backend.stop(dir);
        state.running = false;
        let mut message = format!(
            "machine `{}` did not answer SSH within {} s ({}): {e}. The console log is {}",
            machine.name,
            machine.boot_timeout.as_secs(),
            accel_name(accel),
            dir.console_log().display()
        );
        if accel == Accelerator::Kvm {
            message
                .push_str(". If KVM guests hang on this host, use --accel tcg (or ENV_ACCEL=tcg)");
        }
        anyhow::bail!(message);
    }
    ctx.guest
        .connect(dir, machine, state, endpoint, deadline)
        .with_context(|| format!("SSH to `{}` failed", machine.name))?;
    ui::step(
        &machine.name,
        &format!(
            "up in {:.1} s (SSH on {endpoint})",
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

fn accel_name(accel: Accelerator) -> &'static str {
    match accel {
        Accelerator::Kvm => "KVM",
        Accelerator::Tcg => "TCG",
    }
}
