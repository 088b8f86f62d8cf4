//! `env package`: baking a machine into a box (the AMI-building step of
//! immutable infrastructure). The guest is cleaned of what makes it one
//! machine (SSH host keys, machine-id, the per-machine key, DHCP leases,
//! logs, env's network settings), halted, its overlay flattened into a
//! standalone compressed qcow2, and packed with the source box's metadata,
//! so that every machine made from it starts fresh.

use crate::boxes::Store;
use crate::envfile::Machine;
use crate::guest::ssh::keys;
use crate::guest::{ROOT_SCRIPT_LIMIT, run_root_script, scripts};
use crate::machine::project::Project;
use crate::machine::{MachineDir, Status};
use crate::ops::{Ctx, down};
use crate::util::ui;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// What a package run needs from the guest before it halts: its package
/// manifest, then the clean-up.
fn prepare_guest(ctx: &Ctx, dir: &MachineDir, script: &str) -> Result<String> {
    let packages = ctx.guest.run(
        dir,
        "dpkg-query -W -f='${Package} ${Version}\\n' 2>/dev/null || true",
        &[],
        Some(ROOT_SCRIPT_LIMIT),
    )?;
    run_root_script(
        ctx.guest,
        dir,
        script,
        &format!("cleaning `{}` for packaging failed", dir.name),
    )?;
    Ok(String::from_utf8_lossy(&packages.stdout).into_owned())
}

/// The name and version a baked box carries in its `info.json` (what
/// `env box catalog` and `env box add` read).
#[derive(Debug, Clone, Default)]
pub struct BoxIdentity {
    /// Default: the source box's name.
    pub name: Option<String>,
    /// Default: the source box's version and the time (`1.0.0-TIME`).
    pub version: Option<String>,
}

/// Bakes `machine` into a box at `output`; returns the box file.
pub fn package(
    ctx: &Ctx,
    project: &Project,
    machine: &Machine,
    store: &Store,
    output: &Path,
    identity: &BoxIdentity,
) -> Result<PathBuf> {
    // Checked before the guest is touched: a bad name changes nothing.
    if let Some(name) = &identity.name {
        crate::boxes::check_name(name).context("--name")?;
    }
    if let Some(version) = &identity.version {
        crate::boxes::check_version(version).context("--version")?;
    }
    let dir = project.machine_dir(&machine.name);
    let state = dir
        .load_state()?
        .filter(|_| ctx.backend.box_disk_count(&dir) > 0)
        .with_context(|| {
            format!(
                "machine `{}` is not created: `env up {}` first",
                machine.name, machine.name
            )
        })?;
    let source = store.find(&state.box_name, Some(&state.box_version))?;
    let env_boot = source.metadata.env.clone();
    let cloud_init = env_boot.as_ref().is_some_and(|e| e.cloud_init);
    // cloud-init installs each machine's host key from its seed, as fw_cfg
    // boxes get theirs: the baked one just goes.
    let env_host_keys = cloud_init || env_boot.as_ref().is_some_and(|e| e.ssh_host_key_fw_cfg);
    let status = ctx.status(&dir)?;
    let packages = match status {
        Status::Running => {
            ui::step(
                &machine.name,
                "cleaning machine-specific state for packaging",
            );
            // env's well-known key, and Vagrant's when Vagrant is installed:
            // the box then greets both tools as boxes made for them. A
            // cloud-init box gets no well-known key: cloud-init authorizes
            // each machine's own.
            let mut keys = Vec::new();
            if !cloud_init {
                keys.push(keys::WELL_KNOWN_PUBLIC_KEY.to_string());
                keys.extend(keys::vagrant_public_keys());
            }
            let script = scripts::clean_script(&state.ssh_user, &keys, env_host_keys);
            let packages = prepare_guest(ctx, &dir, &script)?;
            down::halt(ctx, project, &machine.name, false)?;
            packages
        }
        _ => bail!(
            "machine `{}` is {}: `env up {}` it first, so env can clean it before packaging",
            machine.name,
            status.word().replace('_', " "),
            machine.name
        ),
    };

    let work = tempfile::Builder::new()
        .prefix(".package-")
        .tempdir_in(
            output
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )
        .context("cannot create a folder beside the output")?;
    let started = std::time::Instant::now();
    // One image per box disk: the root disk as box.img (Vagrant's v1 form),
    // further disks under the names the source box gave them (the v2 form).
    let mut images: Vec<String> = Vec::new();
    let mut root_size = 0;
    for index in 0..ctx.backend.box_disk_count(&dir) {
        let name = match (index, source.metadata.disks.get(index)) {
            (0, _) => "box.img".to_string(),
            (_, Some(disk)) => disk.path.clone(),
            (i, None) => format!("disk{i}.img"),
        };
        ui::step(
            &machine.name,
            &format!("flattening disk {index} into a compressed qcow2 ({name})"),
        );
        let size = ctx
            .backend
            .export_disk(&dir, index, &work.path().join(&name))?;
        if index == 0 {
            root_size = size;
        }
        images.push(name);
    }
    let mut metadata: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(source.dir.join("metadata.json"))
            .context("cannot read the source box's metadata")?,
    )?;
    let virtual_gib = root_size.div_ceil(1 << 30);
    metadata["virtual_size"] = serde_json::json!(virtual_gib);
    metadata["format"] = serde_json::json!("qcow2");
    if let Some(obj) = metadata.as_object_mut() {
        obj.remove("disks");
    }
    if images.len() > 1 {
        metadata["disks"] = images
            .iter()
            .enumerate()
            .map(|(i, path)| {
                let mut disk = serde_json::json!({ "path": path });
                if let Some(name) = source.metadata.disks.get(i).and_then(|d| d.name.clone()) {
                    disk["name"] = serde_json::json!(name);
                }
                disk
            })
            .collect();
    }
    std::fs::write(
        work.path().join("metadata.json"),
        serde_json::to_string_pretty(&metadata)?,
    )?;
    let info = serde_json::json!({
        "name": identity.name.as_deref().unwrap_or(&state.box_name),
        "version": identity.version.clone().unwrap_or_else(|| format!("{}-{}", state.box_version, crate::ops::logs::run_name(std::time::SystemTime::now()))),
        "packaged_from": format!("{} ({}) of {}", machine.name, project.envfile.path.display(), state.box_name),
        "source_box": format!("{} {}", state.box_name, state.box_version),
        "built": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    });
    std::fs::write(
        work.path().join("info.json"),
        serde_json::to_string_pretty(&info)?,
    )?;
    let mut members = vec!["metadata.json".to_string(), "info.json".to_string()];
    if !packages.is_empty() {
        std::fs::write(work.path().join("packages.txt"), &packages)?;
        members.push("packages.txt".to_string());
    }
    members.extend(images);
    let mut extra: Vec<String> = Vec::new();
    if let Some(boot) = &env_boot {
        for f in [&boot.kernel, &boot.initrd].into_iter().flatten() {
            std::fs::copy(source.dir.join(f), work.path().join(f))
                .with_context(|| format!("cannot copy the box's {f}"))?;
            extra.push(f.clone());
        }
    }
    for f in ["Vagrantfile", "vmlinuz"] {
        if source.dir.join(f).is_file() && !extra.iter().any(|e| e == f) {
            std::fs::copy(source.dir.join(f), work.path().join(f))?;
            extra.push(f.to_string());
        }
    }
    let staged = work.path().join("out.box");
    {
        let file = std::fs::File::create(&staged)?;
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::fast(),
        ));
        // metadata.json first: readers find it without going through the disk.
        for name in members.into_iter().chain(extra) {
            tar.append_path_with_name(work.path().join(&name), &name)
                .with_context(|| format!("cannot pack {name}"))?;
        }
        tar.into_inner()?.finish()?.sync_all()?;
    }
    std::fs::rename(&staged, output)
        .with_context(|| format!("cannot write {}", output.display()))?;
    ui::step(
        &machine.name,
        &format!(
            "packaged into {} ({}) in {:.0} s",
            output.display(),
            ui::human_bytes(std::fs::metadata(output)?.len()),
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(output.to_path_buf())
}
