//! `env package`: baking a machine into a box (the AMI-building step of
//! immutable infrastructure). The guest is cleaned of what makes it one
//! machine (SSH host keys, machine-id, the per-machine key, DHCP leases,
//! logs, env's network settings), halted, its overlay flattened into a
//! standalone compressed qcow2, and packed with the source box's metadata,
//! so that every machine made from it starts fresh.

use crate::boxes::Store;
use crate::envfile::Machine;
use crate::guest::ssh;
use crate::machine::Status;
use crate::machine::project::Project;
use crate::ops::up as lifecycle;
use crate::util::process::run_checked;
use crate::util::shell::shell_quote;
use crate::util::ui;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A systemd unit that makes SSH host keys at the first boot of a machine
/// whose box has none, before sshd starts (as cloud images do).
const HOST_KEYS_UNIT: &str = "[Unit]
Description=Make this machine's own SSH host keys (its box carries none)
DefaultDependencies=no
After=local-fs.target
Before=ssh.service sshd.service
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key
[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
[Install]
WantedBy=multi-user.target ssh.service sshd.service
";

/// The guest script that removes machine-specific state and authorizes the
/// first-contact public keys again. `env_host_keys`: the box gets its SSH
/// host key from env (or makes one) at each boot, so the baked one just
/// goes; otherwise a first-boot unit making new ones is installed with it,
/// where systemd and ssh-keygen are there to run it (else the keys stay).
pub fn clean_script(user: &str, first_contact_keys: &[String], env_host_keys: bool) -> String {
    let home = format!("$(getent passwd {} | cut -d: -f6)", shell_quote(user));
    let mut s = String::from("set -e\n");
    if env_host_keys {
        s.push_str("rm -f /etc/ssh/ssh_host_*\n");
    } else {
        s.push_str(&format!(
            "# every machine its own host keys: made at first boot\n\
             if [ -d /etc/systemd/system ] && [ -x /usr/bin/ssh-keygen ] && command -v systemctl >/dev/null; then\n\
             cat > /etc/systemd/system/env-ssh-host-keys.service <<'ENVEOF'\n{HOST_KEYS_UNIT}ENVEOF\n\
             systemctl enable env-ssh-host-keys.service >/dev/null 2>&1\n\
             rm -f /etc/ssh/ssh_host_*\n\
             fi\n"
        ));
    }
    s.push_str(&format!(
        "# the well-known first-contact keys again, instead of this machine's\n\
         h={home}\n\
         mkdir -p \"$h/.ssh\"\n\
         printf '%s\\n' {key} > \"$h/.ssh/authorized_keys\"\n\
         chmod 700 \"$h/.ssh\"; chmod 600 \"$h/.ssh/authorized_keys\"\n\
         chown -R {owner}: \"$h/.ssh\"\n\
         # a new machine-id at the next boot\n\
         : > /etc/machine-id\n\
         rm -f /var/lib/dbus/machine-id\n\
         # leases, env's network and name settings, logs, temporary files\n\
         rm -f /var/lib/dhcp/* /var/lib/systemd/network/* /etc/systemd/network/20-env-private.network\n\
         awk '/^# BEGIN env hosts/ {{ skip = 1; next }} skip && /^# END env hosts/ {{ skip = 0; next }} !skip' /etc/hosts > /etc/hosts.env-new && cat /etc/hosts.env-new > /etc/hosts && rm -f /etc/hosts.env-new\n\
         echo localhost > /etc/hostname\n\
         rm -rf /var/log/journal/* /tmp/* /var/tmp/* /root/.bash_history \"$h/.bash_history\"\n\
         find /var/log -type f -exec truncate -s 0 {{}} + 2>/dev/null || true\n\
         apt-get clean 2>/dev/null || true\n\
         # free blocks read as zeros: the flattened image shrinks\n\
         fstrim -a 2>/dev/null || true\n\
         sync\n",
        key = first_contact_keys
            .iter()
            .map(|k| shell_quote(k.trim()))
            .collect::<Vec<_>>()
            .join(" "),
        owner = shell_quote(user),
    ));
    s
}

/// What a package run needs from the guest before it halts.
fn prepare_guest(dir: &crate::machine::MachineDir, script: &str) -> Result<String> {
    let packages = ssh::command(&dir.ssh_config(), &dir.name)
        .arg("dpkg-query -W -f='${Package} ${Version}\\n' 2>/dev/null || true")
        .stdin(Stdio::null())
        .output()
        .context("cannot run ssh")?;
    ssh::run_root_script(
        &dir.ssh_config(),
        &dir.name,
        script,
        &format!("cleaning `{}` for packaging failed", dir.name),
    )?;
    Ok(String::from_utf8_lossy(&packages.stdout).into_owned())
}

/// Bakes `machine` into a box at `output`; returns the box file.
pub fn package(
    project: &Project,
    machine: &Machine,
    store: &Store,
    output: &Path,
) -> Result<PathBuf> {
    let dir = project.machine_dir(&machine.name);
    let state = dir
        .load_state()?
        .filter(|_| dir.disk().exists())
        .with_context(|| {
            format!(
                "machine `{}` is not created: `env up {}` first",
                machine.name, machine.name
            )
        })?;
    let source = store.find(&state.box_name, Some(&state.box_version))?;
    let env_boot = source.metadata.env.clone();
    let env_host_keys = env_boot.as_ref().is_some_and(|e| e.ssh_host_key_fw_cfg);
    let packages = match dir.status()? {
        Status::Running { .. } => {
            ui::step(
                &machine.name,
                "cleaning machine-specific state for packaging",
            );
            // env's well-known key, and Vagrant's when Vagrant is installed:
            // the box then greets both tools as boxes made for them.
            let mut keys = vec![crate::guest::ssh::WELL_KNOWN_PUBLIC_KEY.to_string()];
            keys.extend(crate::guest::ssh::vagrant_public_keys());
            let script = clean_script(&state.ssh_user, &keys, env_host_keys);
            let packages = prepare_guest(&dir, &script)?;
            lifecycle::halt(project, &machine.name, false)?;
            packages
        }
        _ => bail!(
            "machine `{}` is halted: `env up {}` it first, so env can clean it before packaging",
            machine.name,
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
    let overlays = dir.box_disks();
    let mut images: Vec<String> = Vec::new();
    for (index, overlay) in overlays.iter().enumerate() {
        let name = match (index, source.metadata.disks.get(index)) {
            (0, _) => "box.img".to_string(),
            (_, Some(disk)) => disk.path.clone(),
            (i, None) => format!("disk{i}.img"),
        };
        ui::step(
            &machine.name,
            &format!("flattening disk {index} into a compressed qcow2 ({name})"),
        );
        run_checked(
            Command::new("qemu-img")
                .args(["convert", "-c", "-O", "qcow2"])
                .arg(overlay)
                .arg(work.path().join(&name)),
            "cannot run qemu-img (install qemu-utils)",
            "flattening the disk failed",
        )?;
        images.push(name);
    }
    let mut metadata: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(source.dir.join("metadata.json"))
            .context("cannot read the source box's metadata")?,
    )?;
    let virtual_gib = image_virtual_size(&work.path().join("box.img"))?.div_ceil(1 << 30);
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
        "name": state.box_name,
        "version": format!("{}-{}", state.box_version, crate::ops::logs::run_name(std::time::SystemTime::now())),
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

fn image_virtual_size(image: &Path) -> Result<u64> {
    let out = run_checked(
        Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(image),
        "cannot run qemu-img (install qemu-utils)",
        "cannot read the flattened image",
    )?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["virtual-size"]
        .as_u64()
        .context("qemu-img reported no virtual size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clean_script_resets_what_makes_a_machine() {
        let keys = [
            "ssh-ed25519 AAAA well-known".to_string(),
            "ssh-rsa BBBB vagrant\n".to_string(),
        ];
        let s = clean_script("vagrant", &keys, true);
        assert!(s.contains("rm -f /etc/ssh/ssh_host_*"));
        assert!(s.contains(
            "printf '%s\\n' 'ssh-ed25519 AAAA well-known' 'ssh-rsa BBBB vagrant' > \"$h/.ssh/authorized_keys\""
        ), "{s}");
        assert!(s.contains(": > /etc/machine-id"));
        assert!(s.contains("/var/lib/dhcp/*"));
        assert!(s.contains("20-env-private.network"));
        assert!(s.contains("fstrim"));
        let other = clean_script("vagrant", &keys[..1], false);
        let (unit_at, remove_at) = (
            other.find("env-ssh-host-keys.service <<").unwrap(),
            other.find("rm -f /etc/ssh/ssh_host_*").unwrap(),
        );
        assert!(
            unit_at < remove_at && other.contains("ExecStart=/usr/bin/ssh-keygen -A"),
            "a box that does not make its own keys gets a first-boot unit before they go: {other}"
        );
        // The unit runs in the guest's shell: the whole script parses.
        let status = std::process::Command::new("sh")
            .args(["-n", "-c", &other])
            .status()
            .unwrap();
        assert!(status.success());
    }
}
