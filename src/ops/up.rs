//! Machine lifecycle: create, boot, halt, destroy. The side-effecting edge
//! that runs `qemu-img`, QEMU and ssh according to plans built by pure code.

use crate::backend::network;
use crate::backend::qemu::accel;
use crate::backend::qemu::args::{self as qemu, Boot, Forward, VmSpec};
use crate::backend::qemu::ports;
use crate::backend::qemu::qmp;
use crate::boxes::{Store, StoredBox};
use crate::envfile::folders::FolderKind;
use crate::envfile::{Accel, Machine};
use crate::guest::provisioner as provision;
use crate::guest::ssh;
use crate::machine::project::Project;
use crate::machine::{MachineDir, MachineState, Status};
use crate::util::ui;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a guest gets to power off after the ACPI button.
pub const POWERDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long QEMU gets to exit after `quit` before it is killed.
const QUIT_GRACE: Duration = Duration::from_secs(3);
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
}

/// Brings a machine up: creates it if needed, boots it if not running, waits
/// until SSH works with the machine's own key, and provisions it.
pub fn up(project: &Project, machine: &Machine, store: &Store, options: &UpOptions) -> Result<()> {
    let booted = up_boot(project, machine, store, options)?;
    up_provision(project, machine, options, booted)
}

/// The boot half of `up`: create, boot, wait for SSH, set name and network.
/// Returns whether the machine was booted (false: it was running already).
pub fn up_boot(
    project: &Project,
    machine: &Machine,
    store: &Store,
    options: &UpOptions,
) -> Result<bool> {
    let dir = project.machine_dir(&machine.name);
    let plan = network::plan(&project.envfile, &project.state_dir)?;
    let me = plan
        .machines
        .iter()
        .find(|m| m.name == machine.name)
        .context("machine missing from the network plan")?;
    let booted = match dir.status()? {
        Status::Running { .. } if dir.ssh_config().exists() => {
            ui::step(&machine.name, "already running");
            false
        }
        Status::Running { .. } => {
            // An earlier `up` died between starting QEMU and SSH set-up.
            ui::step(&machine.name, "running, finishing an interrupted `up`");
            record(&dir, "up", |state| {
                let port = state
                    .ssh_port
                    .context("no SSH port recorded: `env destroy` it and `env up` again")?;
                let accel = state.accel.unwrap_or(qemu::Accelerator::Tcg);
                await_ssh(&dir, machine, state, port, accel, Instant::now())
            })?;
            true
        }
        status => {
            if status == Status::NotCreated {
                create(&dir, machine, store)?;
            }
            let nic = plan
                .segment
                .zip(me.ip)
                .map(|(segment, _)| qemu::PrivateNic {
                    group: segment.group,
                    port: segment.port,
                    mac: me.mac.clone(),
                });
            record(&dir, "up", |state| boot(&dir, machine, state, options, nic))?;
            true
        }
    };
    if booted {
        record(&dir, "up", |state| {
            configure_guest(&dir, me, &plan, &machine.folders, &machine.disks)?;
            sync_folders(&dir, machine, &state.ssh_user)
        })?;
        if project.envfile.logs_forward {
            start_journal_forward(&dir, None);
        }
    }
    Ok(booted)
}

/// Starts streaming the guest's journal; a failure is reported, not fatal
/// (the machine works without it).
pub fn start_journal_forward(dir: &MachineDir, since_unix_secs: Option<u64>) {
    if let Err(e) = crate::ops::logs::start_forward(dir, since_unix_secs) {
        ui::step(&dir.name, &format!("journal not forwarded: {e:#}"));
    }
}

/// The provisioning half of `up`: the first boot runs the provisioners, later
/// boots the `always` ones, as `--provision`/`--no-provision` say.
pub fn up_provision(
    project: &Project,
    machine: &Machine,
    options: &UpOptions,
    booted: bool,
) -> Result<()> {
    let dir = project.machine_dir(&machine.name);
    let state = dir.load_state()?.context("machine state vanished")?;
    let selection = match options.provision {
        Some(false) => None,
        Some(true) => Some(provision::Selection::Normal),
        None if !state.provisioned => Some(provision::Selection::Normal),
        None if booted => Some(provision::Selection::AlwaysOnly),
        None => None,
    };
    match selection {
        Some(selection) => provision_machine(project, machine, &selection).map(drop),
        None => Ok(()),
    }
}

/// Names the guest, sets its private address and writes every machine's
/// name into its `/etc/hosts`: one SSH round trip, as root.
fn configure_guest(
    dir: &MachineDir,
    me: &network::MachineNet,
    plan: &network::Plan,
    folders: &[crate::envfile::folders::Folder],
    disks: &[crate::envfile::disks::Disk],
) -> Result<()> {
    let script =
        network::guest_script(me, plan) + &mount_script(folders) + &disk_mount_script(disks);
    ssh::run_root_script(
        &dir.ssh_config(),
        &dir.name,
        &script,
        &format!("cannot set the name and network of `{}`", me.name),
    )?;
    Ok(())
}

/// Creates the machine's data disks that do not exist yet (kept ones are
/// found again after a destroy).
fn create_data_disks(dir: &MachineDir, machine: &Machine) -> Result<()> {
    for disk in &machine.disks {
        let path = dir.data_disk(disk);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        crate::util::process::run_checked(
            Command::new("qemu-img")
                .args(["create", "-q", "-f", disk.format.name()])
                .arg(&path)
                .arg(format!("{}M", disk.size.mib)),
            "cannot run qemu-img (install qemu-utils)",
            &format!("cannot create disk `{}` of `{}`", disk.name, machine.name),
        )?;
    }
    Ok(())
}

/// Guest commands formatting (on first use only) and mounting data disks.
pub fn disk_mount_script(disks: &[crate::envfile::disks::Disk]) -> String {
    let mut s = String::new();
    for d in disks {
        let Some(mount) = &d.mount else { continue };
        let mount = crate::util::shell::shell_quote(mount);
        s.push_str(&format!(
            "dev=/dev/disk/by-id/virtio-env-{name}\ni=0; while [ ! -b \"$dev\" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done\n\
             [ -b \"$dev\" ] || {{ echo \"disk {name} did not appear at $dev\" >&2; exit 1; }}\n\
             blkid \"$dev\" >/dev/null 2>&1 || mkfs.ext4 -q -L {name} \"$dev\"\n\
             mkdir -p {mount}\nmountpoint -q {mount} || mount \"$dev\" {mount}\n",
            name = d.name
        ));
    }
    s
}

/// msize of 9p mounts: large requests make reads and writes fast.
const NINEP_MSIZE: u32 = 512 * 1024;

/// Guest commands mounting the 9p folders (tags by position, as in `vm_spec`).
pub fn mount_script(folders: &[crate::envfile::folders::Folder]) -> String {
    let mut s = String::new();
    for (i, f) in folders
        .iter()
        .enumerate()
        .filter(|(_, f)| f.kind == FolderKind::NineP)
    {
        let guest = crate::util::shell::shell_quote(&f.guest);
        s.push_str(&format!(
            "modprobe -a 9pnet_virtio 9p 2>/dev/null || true\nmkdir -p {guest}\nmountpoint -q {guest} || mount -t 9p -o trans=virtio,version=9p2000.L,msize={NINEP_MSIZE},cache=none{ro} {tag} {guest}\n",
            ro = if f.readonly { ",ro" } else { "" },
            tag = qemu::share_tag(i)
        ));
    }
    s
}

/// Copies the machine's rsync folders into the guest (host to guest; files
/// gone from the host go from the guest too), owned by the SSH user.
pub fn sync_folders(dir: &MachineDir, machine: &Machine, user: &str) -> Result<()> {
    for f in machine
        .folders
        .iter()
        .filter(|f| f.kind == FolderKind::Rsync)
    {
        let started = Instant::now();
        let mut cmd = Command::new("rsync");
        cmd.args(["-a", "--delete", "--exclude", "/.envstate/"])
            .arg(format!("--chown={user}:{user}"))
            .arg("-e")
            .arg(format!(
                "ssh -F {}",
                crate::util::shell::shell_quote(&dir.ssh_config().to_string_lossy())
            ))
            .arg(format!(
                "--rsync-path=sudo mkdir -p {} && sudo rsync",
                crate::util::shell::shell_quote(&f.guest)
            ));
        for pattern in &f.exclude {
            cmd.arg("--exclude").arg(pattern);
        }
        cmd.arg(format!("{}/", f.host.display()))
            .arg(format!("{}:{}/", dir.name, f.guest));
        crate::util::process::run_checked(
            &mut cmd,
            "cannot run rsync (install rsync)",
            &format!(
                "rsync of {} to {}:{} failed",
                f.host.display(),
                dir.name,
                f.guest
            ),
        )?;
        ui::step(
            &machine.name,
            &format!(
                "rsynced {} to {} in {:.1} s",
                f.host.display(),
                f.guest,
                started.elapsed().as_secs_f64()
            ),
        );
    }
    Ok(())
}

/// Runs a machine's provisioners (`env provision`, and `up`), recording the
/// outcome in its state.
pub fn provision_machine(
    project: &Project,
    machine: &Machine,
    selection: &provision::Selection,
) -> Result<Vec<provision::StepReport>> {
    let dir = project.machine_dir(&machine.name);
    dir.running_state()?;
    let chosen = provision::select(&machine.provisioners, selection)?;
    let inventory = if chosen.iter().any(|p| p.action_kind() == "ansible") {
        Some(write_inventory(project, machine)?)
    } else {
        None
    };
    let mut steps = Vec::new();
    record(&dir, "provision", |state| {
        steps = provision::run(&dir, &chosen, inventory.as_deref())?;
        if *selection == provision::Selection::Normal {
            state.provisioned = true;
        }
        Ok(())
    })?;
    Ok(steps)
}

/// Writes the Ansible inventory of the project's running machines (with the
/// groups of `machine`'s ansible provisioners) to `.envstate/ansible/`.
fn write_inventory(project: &Project, machine: &Machine) -> Result<std::path::PathBuf> {
    let mut hosts = Vec::new();
    for m in &project.envfile.machines {
        let dir = project.machine_dir(&m.name);
        if let (Status::Running { .. }, Some(state)) = (dir.status()?, dir.load_state()?)
            && dir.ssh_config().exists()
        {
            hosts.push(crate::guest::ansible::Host {
                name: m.name.clone(),
                user: state.ssh_user,
                ssh_config: dir.ssh_config(),
            });
        }
    }
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for p in &machine.provisioners {
        if let crate::envfile::provisioners::Action::Ansible { groups: g, .. } = &p.action {
            for (name, members) in g {
                if !groups.iter().any(|(n, _)| n == name) {
                    groups.push((name.clone(), members.clone()));
                }
            }
        }
    }
    let folder = project.state_dir.join("ansible");
    std::fs::create_dir_all(&folder)?;
    // One file per machine: machines provisioning in parallel do not race.
    let path = folder.join(format!("{}.ini", machine.name));
    crate::util::fs::write_atomic(
        &path,
        crate::guest::ansible::render_inventory(&hosts, &groups).as_bytes(),
    )?;
    Ok(path)
}

/// Runs `action` on the machine's state and saves the state with the action's
/// name and outcome, whether it failed or not.
fn record(
    dir: &MachineDir,
    action: &str,
    f: impl FnOnce(&mut MachineState) -> Result<()>,
) -> Result<()> {
    let mut state = dir.load_state()?.context("machine state vanished")?;
    let result = f(&mut state);
    state.last_action = action.into();
    state.last_error = result.as_ref().err().map(|e| format!("{e:#}"));
    dir.save_state(&state)?;
    result
}

/// Creates the machine's state folder and its disk: a qcow2 overlay on the
/// box image (instant, whatever the box's size). Leaves nothing on failure.
fn create(dir: &MachineDir, machine: &Machine, store: &Store) -> Result<()> {
    let wanted = machine.boxref.version.as_deref();
    let stored = match (
        store.find(&machine.boxref.name, wanted),
        &machine.boxref.url,
    ) {
        (Ok(b), _) => b,
        // Missing, with a place to fetch it from: fetch it.
        (Err(_), Some(url)) => {
            ui::step(
                &machine.name,
                &format!(
                    "box `{}` is not in the store: fetching {url}",
                    machine.boxref.name
                ),
            );
            let request = crate::boxes::fetch::AddRequest {
                source: url.clone(),
                name: Some(machine.boxref.name.clone()),
                version: wanted.map(String::from),
                checksum: machine.boxref.checksum.clone(),
                force: false,
            };
            crate::boxes::fetch::add(store, &request).with_context(|| {
                format!("cannot fetch the box of `{}` from {url}", machine.name)
            })?;
            store.find(&machine.boxref.name, wanted)?
        }
        (Err(e), None) => return Err(e),
    };
    std::fs::create_dir_all(dir.root.parent().context("state folder has no parent")?)?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}-", machine.name))
        .tempdir_in(dir.root.parent().unwrap_or(Path::new(".")))?;
    let staged = MachineDir {
        name: dir.name.clone(),
        root: staging.path().to_path_buf(),
    };
    create_overlays(&stored, &staged, machine)?;
    if stored
        .metadata
        .env
        .as_ref()
        .is_some_and(|e| e.ssh_host_key_fw_cfg)
    {
        ssh::ensure_keypair(&staged.host_key(), "env host key")?;
    }
    let user = machine
        .ssh_user
        .clone()
        .or_else(|| {
            stored
                .metadata
                .env
                .as_ref()
                .and_then(|e| e.ssh_user.clone())
        })
        .unwrap_or_else(|| DEFAULT_USER.into());
    staged.save_state(&MachineState {
        box_name: stored.name.clone(),
        box_version: stored.version.clone(),
        box_dir: stored.dir.clone(),
        accel: None,
        ssh_user: user,
        ssh_port: None,
        forwards: Vec::new(),
        key_inserted: false,
        provisioned: false,
        running: false,
        last_action: "create".into(),
        last_error: None,
    })?;
    if dir.root.exists() {
        // Leftovers of a machine whose disk is gone: replace them.
        std::fs::remove_dir_all(&dir.root)?;
    }
    std::fs::rename(staging.keep(), &dir.root)
        .with_context(|| format!("cannot create {}", dir.root.display()))?;
    store.add_user(&stored, &dir.root)?;
    Ok(())
}

/// `qemu-img create` of an overlay on each of the box's disks; the root
/// disk's is grown to the Envfile's disk size.
fn create_overlays(stored: &StoredBox, dir: &MachineDir, machine: &Machine) -> Result<()> {
    let box_gib = stored.metadata.virtual_size.unwrap_or(0);
    for (index, file) in stored.metadata.disk_files().iter().enumerate() {
        let mut cmd = Command::new("qemu-img");
        cmd.args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(stored.dir.join(file))
            .arg(dir.box_disk(index));
        if let (0, Some(size)) = (index, machine.disk) {
            if size.bytes() < box_gib * 1024 * 1024 * 1024 {
                bail!(
                    "machine `{}`: disk {} is smaller than the box's {} GiB: disks can grow, not shrink",
                    machine.name,
                    size,
                    box_gib
                );
            }
            cmd.arg(format!("{}M", size.mib));
        }
        crate::util::process::run_checked(
            &mut cmd,
            "cannot run qemu-img (install qemu-utils)",
            &format!("qemu-img create failed for the box's {}", file.display()),
        )?;
    }
    Ok(())
}

/// fw_cfg name of the SSH host key env makes for a machine.
pub const HOST_KEY_FW_CFG: &str = "opt/org.env/ssh_host_ed25519_key";

/// The host key entry, when the box installs keys passed this way.
fn host_key_fw_cfg(
    dir: &MachineDir,
    meta: &crate::boxes::metadata::Metadata,
) -> Vec<(String, std::path::PathBuf)> {
    let supported = meta.env.as_ref().is_some_and(|e| e.ssh_host_key_fw_cfg);
    if supported && dir.host_key().exists() {
        vec![(HOST_KEY_FW_CFG.into(), dir.host_key())]
    } else {
        Vec::new()
    }
}

/// The first NIC's address under QEMU user networking (always this one).
pub const USER_NET_GUEST_ADDRESS: &str = "10.0.2.15/24";

/// Adds `env.ip=` to a kernel command line: env's initrd sets that address
/// before systemd starts, so SSH answers without waiting for DHCP. Kernels
/// and initrds that do not know it ignore it.
pub fn with_user_net_address(cmdline: String) -> String {
    format!("{cmdline} env.ip={USER_NET_GUEST_ADDRESS}")
}

/// The boot plan of a machine from its box's metadata.
pub fn vm_spec(
    dir: &MachineDir,
    machine: &Machine,
    state: &MachineState,
    meta: &crate::boxes::metadata::Metadata,
    accel: qemu::Accelerator,
    forwards: Vec<Forward>,
    private_nic: Option<qemu::PrivateNic>,
) -> Result<VmSpec> {
    let boot = match meta.env.as_ref().and_then(|e| e.kernel.as_ref()) {
        Some(kernel) => Boot::Kernel {
            kernel: state.box_dir.join(kernel),
            initrd: meta
                .env
                .as_ref()
                .and_then(|e| e.initrd.as_ref())
                .map(|i| state.box_dir.join(i)),
            cmdline: with_user_net_address(
                meta.env
                    .as_ref()
                    .and_then(|e| e.cmdline.clone())
                    .unwrap_or_else(|| "root=/dev/vda rw console=ttyS0".into()),
            ),
        },
        None => Boot::Disk,
    };
    Ok(VmSpec {
        name: machine.name.clone(),
        accel,
        cpus: machine.cpus,
        memory_mib: machine.memory.mib,
        disks: dir.box_disks(),
        boot,
        qmp_socket: dir.qmp_socket()?,
        qga_socket: dir.qga_socket()?,
        console_log: dir.console_log(),
        pidfile: dir.pidfile(),
        forwards,
        private_nic,
        data_disks: machine
            .disks
            .iter()
            .map(|d| qemu::DataDisk {
                name: d.name.clone(),
                path: dir.data_disk(d),
                format: d.format.name().into(),
            })
            .collect(),
        shares: machine
            .folders
            .iter()
            .enumerate()
            .filter(|(_, f)| f.kind == FolderKind::NineP)
            .map(|(i, f)| qemu::Share {
                tag: qemu::share_tag(i),
                path: f.host.clone(),
                readonly: f.readonly,
            })
            .collect(),
        fw_cfg: host_key_fw_cfg(dir, meta),
        extra: machine.qemu_args.clone(),
    })
}

fn boot(
    dir: &MachineDir,
    machine: &Machine,
    state: &mut MachineState,
    options: &UpOptions,
    private_nic: Option<qemu::PrivateNic>,
) -> Result<()> {
    let requested = accel::requested(options.accel, machine.accel)?;
    let meta = crate::boxes::metadata::Metadata::load(&state.box_dir).with_context(|| {
        format!(
            "the box of machine `{}` is gone from the store",
            machine.name
        )
    })?;
    let probe_kernel = meta
        .env
        .as_ref()
        .and_then(|e| e.kernel.as_ref())
        .map(|k| state.box_dir.join(k));
    let accel = accel::resolve(requested, probe_kernel.as_deref())?;
    create_data_disks(dir, machine)?;
    let plan = || {
        ports::plan_forwards(
            &machine.name,
            &machine.ports,
            ports::is_free,
            ports::pick_free,
        )
    };
    let mut forwards = plan()?;
    let _ = std::fs::remove_file(dir.pidfile());

    let started = Instant::now();
    let mut ssh_forward = ports::ssh_forward(machine.ssh_guest_port)?;
    let mut attempt = 0;
    loop {
        let mut all = vec![ssh_forward.clone()];
        all.extend(forwards.iter().cloned());
        let spec = vm_spec(dir, machine, state, &meta, accel, all, private_nic.clone())?;
        match start_qemu(&spec) {
            Ok(()) => break,
            // Another process (another project's `up`, say) took a port
            // between our check and QEMU's bind: plan again. A fixed port
            // without auto_correct then fails with the planner's message.
            Err(e) if attempt < 3 && format!("{e:#}").contains("host forwarding rule") => {
                attempt += 1;
                let message = format!("{e:#}");
                // QEMU names the rule: `... host forwarding rule 'tcp:127.0.0.1:8080-:80'`.
                let rule = message
                    .split("host forwarding rule '")
                    .nth(1)
                    .and_then(|r| r.split('\'').next())
                    .unwrap_or("");
                if rule.contains(&format!(":{}-", ssh_forward.host_port)) {
                    ssh_forward = ports::ssh_forward(machine.ssh_guest_port)?;
                } else {
                    forwards = plan()?;
                }
            }
            Err(e) if accel == qemu::Accelerator::Kvm => {
                return Err(e.context(
                    "QEMU could not start under KVM: use --accel tcg (or ENV_ACCEL=tcg)",
                ));
            }
            Err(e) => return Err(e),
        }
    }
    state.accel = Some(accel);
    state.ssh_port = Some(ssh_forward.host_port);
    state.forwards = forwards;
    state.running = true;
    dir.save_state(state)?;

    await_ssh(dir, machine, state, ssh_forward.host_port, accel, started)
}

/// Waits for the SSH banner until the boot timeout (counted from `started`),
/// then sets up SSH. On timeout QEMU is stopped and the error names the
/// console log.
fn await_ssh(
    dir: &MachineDir,
    machine: &Machine,
    state: &mut MachineState,
    port: u16,
    accel: qemu::Accelerator,
    started: Instant,
) -> Result<()> {
    let bar = ui::spinner(
        &machine.name,
        &format!("booting ({}, SSH on 127.0.0.1:{port})", accel_name(accel)),
    );
    let deadline = started + machine.boot_timeout;
    let waited = ssh::wait_for_banner(port, deadline, || {
        if dir.qemu_pid().is_none() {
            bail!("QEMU exited during boot: {}", console_hint(dir));
        }
        Ok(())
    });
    bar.finish_and_clear();
    if let Err(e) = waited {
        kill_qemu(dir);
        state.running = false;
        let mut message = format!(
            "machine `{}` did not answer SSH within {} s ({}): {e}. The console log is {}",
            machine.name,
            machine.boot_timeout.as_secs(),
            accel_name(accel),
            dir.console_log().display()
        );
        if accel == qemu::Accelerator::Kvm {
            message
                .push_str(". If KVM guests hang on this host, use --accel tcg (or ENV_ACCEL=tcg)");
        }
        bail!(message);
    }
    connect(dir, machine, state, port, deadline)?;
    ui::step(
        &machine.name,
        &format!(
            "up in {:.1} s (SSH on 127.0.0.1:{port})",
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

fn accel_name(accel: qemu::Accelerator) -> &'static str {
    match accel {
        qemu::Accelerator::Kvm => "KVM",
        qemu::Accelerator::Tcg => "TCG",
    }
}

/// The last lines of the console log, for error messages.
fn console_hint(dir: &MachineDir) -> String {
    let text = std::fs::read_to_string(dir.console_log()).unwrap_or_default();
    let tail: Vec<&str> = text
        .lines()
        .rev()
        .take(5)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!(
        "see {} (last lines: {})",
        dir.console_log().display(),
        tail.join(" | ")
    )
}

/// Runs QEMU daemonized; its errors (before it detaches) become ours.
fn start_qemu(spec: &VmSpec) -> Result<()> {
    crate::util::process::run_checked(
        Command::new(qemu::QEMU_BINARY).args(qemu::qemu_args(spec)),
        &format!("cannot run {} (install qemu-system-x86)", qemu::QEMU_BINARY),
        "QEMU failed to start",
    )?;
    Ok(())
}

/// SSH set-up after the banner: first contact (pin the host key, replace the
/// well-known key) or a plain connection with the pinned key; writes the
/// ssh_config and leaves a master connection for later commands.
fn connect(
    dir: &MachineDir,
    machine: &Machine,
    state: &mut MachineState,
    port: u16,
    deadline: Instant,
) -> Result<()> {
    let mut target = ssh::target_for(dir, port, &state.ssh_user)?;
    ssh::close_master(&target.control_path);
    if !state.key_inserted {
        let identities = ssh::first_contact_identities(dir, machine.ssh_private_key.as_deref())?;
        let public = if machine.ssh_insert_key {
            Some(ssh::ensure_keypair(&dir.key(), "env machine key")?)
        } else {
            None
        };
        // A host key env made and passed in is pinned before the first
        // connection; otherwise the first key seen is pinned.
        let pinned = std::fs::read_to_string(dir.host_key().with_extension("pub")).ok();
        if let Some(host_public) = &pinned {
            crate::util::fs::write_atomic(
                &dir.known_hosts(),
                ssh::known_hosts_line(&target.host_key_alias, host_public).as_bytes(),
            )?;
        }
        let accepted = ssh::first_contact(
            &target,
            &identities,
            public.as_deref(),
            pinned.is_some(),
            deadline,
        )?;
        if machine.ssh_insert_key {
            state.key_inserted = true;
            ssh::remove_first_contact_keys(dir, None);
        } else {
            // Without a key of its own, env connects with the accepted one
            // (first contact runs again at every boot).
            ssh::remove_first_contact_keys(dir, Some(&accepted));
            target.identity = accepted;
        }
    }
    // Once env's key is in, it is the only one the guest takes, whatever
    // `insert_key` says now: the target's identity stays the machine key.
    crate::util::fs::write_atomic(&dir.ssh_config(), ssh::render_config(&target).as_bytes())?;
    if state.key_inserted || !machine.ssh_insert_key {
        // Opens the master connection now, checking the pinned host key.
        ssh::open_master(&dir.ssh_config(), &dir.name, deadline)
            .with_context(|| format!("SSH to `{}` failed", machine.name))?;
    }
    Ok(())
}

/// Halts a machine: ACPI power-down (unless `force`), then QMP `quit`, then
/// SIGKILL, each after a grace period.
pub fn halt(project: &Project, name: &str, force: bool) -> Result<()> {
    let dir = project.machine_dir(name);
    let status = dir.status()?;
    let Some(mut state) = dir.load_state()? else {
        ui::step(name, "not created");
        return Ok(());
    };
    crate::ops::logs::stop_forward(&dir);
    if let Status::Running { pid } = status {
        let started = Instant::now();
        if let Ok(control) = dir.control_path() {
            ssh::close_master(&control);
        }
        let qmp_socket = dir.qmp_socket()?;
        let graceful =
            !force && qmp::system_powerdown(&qmp_socket).is_ok() && wait_exit(pid, POWERDOWN_GRACE);
        if !graceful {
            if !force {
                ui::step(name, "the guest did not power off: stopping QEMU");
            }
            stop_qemu(&dir, pid);
        }
        ui::step(
            name,
            &format!("halted in {:.1} s", started.elapsed().as_secs_f64()),
        );
    } else {
        ui::step(name, "already halted");
    }
    let _ = std::fs::remove_file(dir.pidfile());
    state.running = false;
    state.last_action = "halt".into();
    state.last_error = None;
    dir.save_state(&state)
}

/// Destroys a machine: QEMU stopped, disk and state removed. Succeeds when
/// the machine is already gone or QEMU was killed by hand.
pub fn destroy(project: &Project, name: &str, store: &Store, purge_disks: bool) -> Result<()> {
    let dir = project.machine_dir(name);
    let kept = dir.kept_disks_dir();
    if purge_disks && kept.exists() {
        std::fs::remove_dir_all(&kept)
            .with_context(|| format!("cannot remove {}", kept.display()))?;
        ui::step(name, &format!("kept disks removed ({})", kept.display()));
    } else if kept.exists() {
        ui::step(
            name,
            &format!(
                "kept disks stay in {} (`env destroy --purge-disks` removes them)",
                kept.display()
            ),
        );
    }
    if !dir.root.exists() {
        ui::step(name, "not created");
        return Ok(());
    }
    crate::ops::logs::stop_forward(&dir);
    // The disk is about to be deleted: no need for QEMU to flush it, and
    // SIGKILL ends it at once (a QMP quit tears a 1 GiB guest down in ~1 s).
    if let Ok(control) = dir.control_path() {
        ssh::close_master(&control);
    }
    if let Some(pid) = dir.qemu_pid() {
        // SAFETY: kill(2) with a pid we checked is this machine's QEMU.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_exit(pid, QUIT_GRACE);
    }
    let state = dir.load_state().ok().flatten();
    if let Some(run) =
        crate::ops::logs::archive(&project.state_dir, &dir, project.envfile.logs_keep)?
    {
        ui::step(name, &format!("logs kept in {}", run.display()));
    }
    for socket in [dir.qmp_socket(), dir.qga_socket()].into_iter().flatten() {
        let _ = std::fs::remove_file(socket);
    }
    // Rename first: a destroy cut short never leaves a half-removed machine
    // that looks created.
    let trash = tempfile::Builder::new()
        .prefix(&format!(".destroying-{name}-"))
        .tempdir_in(dir.root.parent().context("state folder has no parent")?)?;
    std::fs::rename(&dir.root, trash.path().join("m"))
        .with_context(|| format!("cannot remove {}", dir.root.display()))?;
    if let Some(state) = state {
        store.remove_user(&state.box_name, &state.box_version, &dir.root);
    }
    drop(trash);
    ui::step(name, "destroyed");
    Ok(())
}

/// Stops QEMU if it runs (QMP quit, then SIGKILL) and closes SSH.
fn kill_qemu(dir: &MachineDir) {
    if let Ok(control) = dir.control_path() {
        ssh::close_master(&control);
    }
    if let Some(pid) = dir.qemu_pid() {
        stop_qemu(dir, pid);
    }
    let _ = std::fs::remove_file(dir.pidfile());
}

fn stop_qemu(dir: &MachineDir, pid: i32) {
    let quit_sent = dir
        .qmp_socket()
        .map(|s| qmp::quit(&s).is_ok())
        .unwrap_or(false);
    if !(quit_sent && wait_exit(pid, QUIT_GRACE)) {
        // SAFETY: kill(2) with a pid we checked is this machine's QEMU.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_exit(pid, QUIT_GRACE);
    }
}

/// Waits until process `pid` has exited; false on timeout.
fn wait_exit(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while crate::machine::state::process_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}
