//! `env upload` and `env download`: files and folders to and from a
//! running machine over its open SSH connection, as tar streams (no sftp
//! server needed in the guest, modes kept, any size streamed through
//! temporary files). What comes back from a guest is unpacked with the
//! checks boxes get (no absolute paths, no `..`, no link leading out, no
//! device files) into a staging folder, then moved into place.

use crate::machine::MachineDir;
use crate::ops::Ctx;
use crate::util::shell::shell_quote;
use anyhow::{Context, Result, bail};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a copy lands: inside `dest` when it is a folder there (keeping
/// `name`), else as `dest` itself: `(folder, name)`. As `cp -r` does.
pub fn landing(dest: &str, dest_is_dir: bool, name: &str) -> (String, String) {
    let dest = match dest.trim_end_matches('/') {
        "" => "/",
        d => d,
    };
    if dest_is_dir {
        return (dest.to_string(), name.to_string());
    }
    match dest.rsplit_once('/') {
        Some(("", last)) => ("/".into(), last.into()),
        Some((parent, last)) => (parent.into(), last.into()),
        None => (".".into(), dest.into()),
    }
}

/// Copies `src` (a file or folder of the host) into the machine at `dest`
/// (a folder there, or the new name); returns the bytes sent.
pub fn upload(ctx: &Ctx, dir: &MachineDir, src: &Path, dest: &str) -> Result<u64> {
    ctx.running_state(dir)?;
    let meta = std::fs::metadata(src).with_context(|| format!("cannot read {}", src.display()))?;
    let name = src
        .canonicalize()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("upload a file or folder, not /")?;
    let probe = ctx.guest.run(
        dir,
        &format!("test -d {}", shell_quote(dest)),
        &[],
        Some(Duration::from_secs(60)),
    )?;
    let (folder, target) = landing(dest, probe.status.success(), &name);
    let mut archive = tempfile::tempfile().context("cannot make a temporary file")?;
    {
        let mut builder = tar::Builder::new(&mut archive);
        builder.follow_symlinks(false);
        match meta.is_dir() {
            true => builder.append_dir_all(&target, src),
            false => builder.append_path_with_name(src, &target),
        }
        .with_context(|| format!("cannot pack {}", src.display()))?;
        builder.finish()?;
    }
    let size = archive.seek(SeekFrom::End(0))?;
    archive.seek(SeekFrom::Start(0))?;
    let remote = format!(
        "mkdir -p -- {folder} && tar --no-same-owner -C {folder} -xf -",
        folder = shell_quote(&folder)
    );
    let sink = std::fs::File::create("/dev/null")?;
    let (status, stderr) = ctx.guest.stream(dir, &remote, archive, sink)?;
    if !status.success() {
        bail!(
            "cannot write {} on `{}`: {stderr}",
            Path::new(&folder).join(&target).display(),
            dir.name
        );
    }
    Ok(size)
}

/// Copies `src` (a file or folder in the machine) to `dest` on the host
/// (into it when it is a folder, else as that name); returns the path
/// written.
pub fn download(ctx: &Ctx, dir: &MachineDir, src: &str, dest: &Path) -> Result<PathBuf> {
    ctx.running_state(dir)?;
    let (folder, name) = landing(src, false, "");
    if name.is_empty() || name == "." || name == ".." {
        bail!("download a file or folder by its path, not `{src}`");
    }
    let target = match dest.is_dir() {
        true => dest.join(&name),
        false => dest.to_path_buf(),
    };
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if target.is_dir() {
        bail!(
            "{} is a folder already: remove it, or download into another place",
            target.display()
        );
    }
    let staging = tempfile::Builder::new()
        .prefix(".env-download-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    let mut archive = tempfile::tempfile_in(staging.path())?;
    let remote = format!(
        "cd -- {} && tar -cf - -- {}",
        shell_quote(&folder),
        shell_quote(&name)
    );
    let input = std::fs::File::open("/dev/null")?;
    let (status, stderr) = ctx
        .guest
        .stream(dir, &remote, input, archive.try_clone()?)?;
    if !status.success() {
        bail!("cannot read {src} on `{}`: {stderr}", dir.name);
    }
    archive.seek(SeekFrom::Start(0))?;
    let unpacked = staging.path().join("unpacked");
    std::fs::create_dir(&unpacked)?;
    crate::boxes::archive::unpack_tar_reader(std::io::BufReader::new(archive), &unpacked)
        .with_context(|| format!("what `{}` sent for {src} was refused", dir.name))?;
    let got = unpacked.join(&name);
    if std::fs::symlink_metadata(&got).is_err() {
        bail!("`{}` sent no {name}", dir.name);
    }
    std::fs::rename(&got, &target).with_context(|| format!("cannot write {}", target.display()))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::landing;

    #[test]
    fn a_copy_lands_inside_a_folder_or_as_the_name_given() {
        let l = |dest: &str, is_dir: bool| landing(dest, is_dir, "site");
        assert_eq!(l("/srv", true), ("/srv".into(), "site".into()));
        assert_eq!(l("/srv/", true), ("/srv".into(), "site".into()));
        assert_eq!(l("/srv/www", false), ("/srv".into(), "www".into()));
        assert_eq!(l("/www", false), ("/".into(), "www".into()));
        assert_eq!(l("/", true), ("/".into(), "site".into()));
        assert_eq!(l("notes.txt", false), (".".into(), "notes.txt".into()));
        assert_eq!(
            l("dir/notes.txt", false),
            ("dir".into(), "notes.txt".into())
        );
    }
}
