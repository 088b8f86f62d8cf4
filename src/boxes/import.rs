//! Adding an unpacked box folder, such as a box in Vagrant's own store
//! (`~/.vagrant.d/boxes/NAME/VERSION/[ARCH/]libvirt/`), so boxes a user
//! already has for Vagrant need no second download.

use super::{Store, StoredBox};
use anyhow::{Context, Result, bail};
use std::path::Path;

/// Name and version of a box folder in Vagrant's store layout:
/// `.../boxes/NAME/VERSION/libvirt` (Vagrant 2.3) or
/// `.../boxes/NAME/VERSION/ARCH/libvirt` (2.4), with `/` in names stored as
/// `-VAGRANTSLASH-`. None for folders laid out otherwise.
pub fn vagrant_store_identity(folder: &Path) -> Option<(String, String)> {
    let parts: Vec<String> = folder
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let boxes = parts.iter().rposition(|p| p == "boxes")?;
    let rest = &parts[boxes + 1..];
    let (name, version) = match rest {
        [name, version, _provider] => (name, version),
        [name, version, _arch, _provider] => (name, version),
        _ => return None,
    };
    if !version.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some((name.replace("-VAGRANTSLASH-", "/"), version.clone()))
}

/// Copies the unpacked box in `folder` into the store as `name` (default:
/// from Vagrant's store layout, else the folder's name) at `version`
/// (default: from the layout, else its info.json). Only plain files and
/// folders are copied; a link is refused, so nothing outside is read.
pub fn add_folder(
    store: &Store,
    folder: &Path,
    name: Option<&str>,
    version: Option<&str>,
    force: bool,
) -> Result<StoredBox> {
    let identity = vagrant_store_identity(&std::path::absolute(folder)?);
    let name = match (name, &identity) {
        (Some(n), _) => n.to_string(),
        (None, Some((n, _))) => n.clone(),
        (None, None) => folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("cannot derive a box name from the folder: pass --name")?,
    };
    let version = version.map(String::from).or(identity.map(|(_, v)| v));
    let staging = store.staging()?;
    copy_tree(folder, staging.path())
        .with_context(|| format!("cannot copy the box in {}", folder.display()))?;
    super::archive::check_links(staging.path())?;
    store.add_staged(
        staging,
        &folder.display().to_string(),
        &name,
        version.as_deref(),
        force,
        &super::bare::ImageHints::default(),
    )
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            std::fs::create_dir(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        } else {
            bail!(
                "`{}` is not a plain file or folder: a box folder may hold only those",
                entry.path().display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vagrant_store_layouts_give_name_and_version() {
        assert_eq!(
            vagrant_store_identity(Path::new(
                "/home/u/.vagrant.d/boxes/generic-VAGRANTSLASH-debian12/4.3.12/amd64/libvirt"
            )),
            Some(("generic/debian12".into(), "4.3.12".into()))
        );
        assert_eq!(
            vagrant_store_identity(Path::new("/v/boxes/team-VAGRANTSLASH-base/1.2.0/libvirt")),
            Some(("team/base".into(), "1.2.0".into()))
        );
        assert_eq!(
            vagrant_store_identity(Path::new("/v/boxes/local/0/libvirt")),
            Some(("local".into(), "0".into()))
        );
        assert_eq!(vagrant_store_identity(Path::new("/srv/mybox")), None);
        assert_eq!(
            vagrant_store_identity(Path::new("/v/boxes/a/notaversion/libvirt")),
            None
        );
    }

    #[test]
    fn links_in_a_box_folder_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let from = tmp.path().join("box");
        std::fs::create_dir_all(&from).unwrap();
        std::fs::write(from.join("metadata.json"), "{}").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", from.join("box.img")).unwrap();
        let to = tmp.path().join("copy");
        std::fs::create_dir_all(&to).unwrap();
        let err = copy_tree(&from, &to).unwrap_err();
        assert!(err.to_string().contains("not a plain file"), "{err}");
    }
}
