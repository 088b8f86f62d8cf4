//! Safe unpacking of box archives (tar, zip; compressed or not) and bare
//! disk images: nothing lands outside the target folder, whatever the
//! archive says.
//! (Over 600 lines: half of it is the hostile archives the unpacker is
//! tested with, kept beside the checks they test.)

use anyhow::{Context, Result, bail};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

/// What a download holds, told from its first (decompressed) bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// A tar (possibly compressed).
    Tar,
    /// A zip, read entry by entry as it arrives.
    Zip,
    /// A bare disk image as distributions publish them (qcow2, or raw with
    /// a partition table): it becomes the box's `box.img`.
    Image,
}

/// Tells what the first 512 bytes of a (decompressed) stream start.
pub fn detect(head: &[u8]) -> Result<ArchiveFormat> {
    if head.len() >= 262 && &head[257..262] == b"ustar" {
        Ok(ArchiveFormat::Tar)
    } else if head.starts_with(b"PK\x03\x04") {
        Ok(ArchiveFormat::Zip)
    } else if head.starts_with(b"QFI\xfb") || (head.len() >= 512 && head[510..512] == [0x55, 0xaa])
    {
        Ok(ArchiveFormat::Image)
    } else {
        bail!(
            "not a box archive or disk image (expected tar or zip, or a qcow2 or partitioned raw disk image; gzip, zstd, xz or bzip2 compressed or not)"
        )
    }
}

/// Checks an entry's path: relative, no `..`, no root or prefix. Returns the
/// normalized relative path (without `.` components).
pub fn safe_relative_path(path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => bail!("`{}` leaves the box folder (`..`)", path.display()),
            Component::RootDir | Component::Prefix(_) => {
                bail!("`{}` is an absolute path", path.display())
            }
        }
    }
    Ok(out)
}

/// Checks that a symlink at `link` (relative to the box folder) pointing to
/// `target` stays inside the box folder.
pub fn safe_link_target(link: &Path, target: &Path) -> Result<()> {
    if target.is_absolute() {
        bail!(
            "link `{}` points to the absolute path `{}`",
            link.display(),
            target.display()
        );
    }
    let mut depth: i64 = link.parent().map_or(0, |p| p.components().count() as i64);
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            bail!(
                "link `{}` points outside the box folder (`{}`)",
                link.display(),
                target.display()
            );
        }
    }
    Ok(())
}

/// Unpacks the archive at `archive` into the existing, empty folder `dest`,
/// calling `progress` with the bytes read so far. Rejects absolute paths,
/// `..`, links leading outside, and device files, fifos and sockets. A bare
/// disk image becomes `dest/box.img`.
pub fn unpack(archive: &Path, dest: &Path, progress: &mut (dyn FnMut(u64) + Send)) -> Result<()> {
    let file = File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let counted = CountingReader {
        inner: BufReader::with_capacity(1 << 20, file),
        count: 0,
        progress,
    };
    unpack_reader(counted, dest).with_context(|| format!("cannot unpack {}", archive.display()))
}

/// Unpacks an archive (or takes a disk image) arriving on `reader`, a
/// download in progress, into the existing, empty folder `dest`, with the
/// same checks as [`unpack`]; then checks where every link really leads.
pub fn unpack_reader(reader: impl Read + Send, dest: &Path) -> Result<()> {
    with_payload(reader, |format, whole| {
        let mut budget = Budget::for_folder(dest);
        match format {
            ArchiveFormat::Zip => unpack_zip(whole, dest, &mut budget)?,
            ArchiveFormat::Tar => unpack_tar(tar::Archive::new(whole), dest, &mut budget)?,
            ArchiveFormat::Image => take_image(whole, dest, &mut budget)?,
        }
        check_links(dest)
    })
}

/// Unpacks a plain tar stream (no compression, nothing else taken) into the
/// existing, empty folder `dest` with the checks of [`unpack`]: what a
/// guest sends back (`env download`) is held to the same rules as a box.
pub fn unpack_tar_reader(reader: impl Read, dest: &Path) -> Result<()> {
    let mut budget = Budget::for_folder(dest);
    unpack_tar(tar::Archive::new(reader), dest, &mut budget)?;
    check_links(dest)
}

/// Runs `f` on what a stream holds, decompressed, with its kind: the
/// compression is told from the first bytes, then the payload from the
/// first decompressed ones.
fn with_payload<T>(
    mut reader: impl Read + Send,
    f: impl FnOnce(ArchiveFormat, &mut dyn Read) -> Result<T>,
) -> Result<T> {
    let mut head = vec![0u8; 512];
    let filled = read_up_to(&mut reader, &mut head)?;
    head.truncate(filled);
    let compression = super::compress::detect(&head);
    let whole = std::io::Cursor::new(head).chain(reader);
    super::compress::with_decoder(compression, whole, |plain| {
        let mut head = vec![0u8; 512];
        let filled = read_up_to(plain, &mut head)?;
        head.truncate(filled);
        let format = detect(&head)?;
        f(format, &mut std::io::Cursor::new(head).chain(plain))
    })
}

/// Name of a box's (first) disk.
pub const BOX_IMAGE: &str = "box.img";

/// Writes a bare disk image to `dest/box.img`, within the budget (the free
/// space; a qcow2 image also within what its header declares).
fn take_image(mut image: impl Read, dest: &Path, budget: &mut Budget) -> Result<()> {
    let path = dest.join(BOX_IMAGE);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut first = true;
    loop {
        let n = image.read(&mut buf).context("cannot read the disk image")?;
        if n == 0 {
            break;
        }
        if first {
            first = false;
            if let Ok(super::image::ImageFormat::Qcow2) = super::image::check_header(&buf[..n])
                && let Some(size) = super::image::qcow2_virtual_size(&buf[..n])
            {
                budget.declared_bytes(size, "its qcow2 header declares");
            }
        }
        budget.take(Path::new(BOX_IMAGE), n as u64)?;
        std::io::Write::write_all(&mut out, &buf[..n])
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// How much an archive may unpack to: the free space of the folder it
/// unpacks into (less a reserve), and, once its `metadata.json` has come,
/// what the box declares (its disks' virtual size, plus room for boot files).
/// A compression bomb stops at the cap, not at a full disk.
struct Budget {
    used: u64,
    limit: u64,
    /// What sets the limit, for the message.
    reason: String,
}

/// Space left free on the store's filesystem, whatever a box declares.
const FREE_RESERVE: u64 = 512 << 20;

/// Room in a qcow2 file beside the data its header declares (its tables).
const IMAGE_TABLES_ROOM: u64 = 64 << 20;

/// Room beside the disks a box declares: kernel, initrd, Vagrantfile, info.
const BOOT_FILES_ROOM: u64 = 512 << 20;

impl Budget {
    fn for_folder(dest: &Path) -> Budget {
        let free = crate::util::fs::free_space(dest).unwrap_or(u64::MAX);
        Budget {
            used: 0,
            limit: free.saturating_sub(FREE_RESERVE),
            reason: format!(
                "the free space of {} ({} free, {} of it kept free)",
                dest.display(),
                crate::util::ui::human_bytes(free),
                crate::util::ui::human_bytes(FREE_RESERVE)
            ),
        }
    }

    /// Counts an entry of `size` bytes; an error when it would pass the cap.
    fn take(&mut self, name: &Path, size: u64) -> Result<()> {
        self.used = self.used.saturating_add(size);
        if self.used > self.limit {
            bail!(
                "the archive unpacks to more than {} (at `{}`): more than {}",
                crate::util::ui::human_bytes(self.limit),
                name.display(),
                self.reason
            );
        }
        Ok(())
    }

    /// Narrows the cap to `bytes` (and a margin for an image's own tables),
    /// which `what` declares.
    fn declared_bytes(&mut self, bytes: u64, what: &str) {
        let declared = bytes
            .saturating_add(bytes / 8)
            .saturating_add(IMAGE_TABLES_ROOM);
        if declared < self.limit {
            self.limit = declared;
            self.reason = format!("what {what} ({})", crate::util::ui::human_bytes(bytes));
        }
    }

    /// Narrows the cap to what `metadata.json` (just unpacked) declares.
    fn declared(&mut self, metadata: &Path) {
        let Ok(text) = std::fs::read_to_string(metadata) else {
            return;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            return;
        };
        let Some(gib) = v.get("virtual_size").and_then(|s| s.as_u64()) else {
            return;
        };
        let disks = v
            .get("disks")
            .and_then(|d| d.as_array())
            .map_or(1, |d| d.len().max(1)) as u64;
        let declared = gib
            .saturating_mul(1 << 30)
            .saturating_mul(disks)
            .saturating_add(BOOT_FILES_ROOM);
        if declared < self.limit {
            self.limit = declared;
            self.reason = format!("its metadata declares ({gib} GiB per disk)");
        }
    }
}

/// Every link under `dest`, resolved through the links before it, must land
/// on something inside `dest`; no file or folder stays writable by others. Each target is checked as text when it is
/// unpacked, but a chain (`x -> .`, then `x/x/x/y -> ../../..`) is only
/// caught by resolving it; a dangling link is refused too (it could come to
/// lead anywhere).
pub fn check_links(dest: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let root = dest
        .canonicalize()
        .with_context(|| format!("cannot read {}", dest.display()))?;
    let mut pending = vec![root.clone()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_symlink() {
                let shown = path
                    .strip_prefix(&root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                match path.canonicalize() {
                    Ok(real) if real.starts_with(&root) => {}
                    Ok(_) => bail!("link `{shown}` leads outside the box folder"),
                    Err(_) => bail!("link `{shown}` leads nowhere (or in a circle)"),
                }
                continue;
            }
            // Archive modes are the box's: nothing in the store stays
            // writable by other users, whatever the archive said.
            let mode = entry.metadata()?.permissions().mode();
            if mode & 0o022 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !0o022))?;
            }
            if kind.is_dir() {
                pending.push(path);
            }
        }
    }
    Ok(())
}

/// Calls `f` with each entry's (checked) path and contents until it returns
/// false: reading one file of a box without unpacking it.
pub fn each_entry(
    archive: &Path,
    f: &mut dyn FnMut(&Path, &mut dyn Read) -> Result<bool>,
) -> Result<()> {
    let raw = BufReader::new(
        File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?,
    );
    with_payload(raw, |format, mut whole| {
        match format {
            ArchiveFormat::Zip => {
                while let Some(mut file) = next_zip_entry(&mut whole)? {
                    let name = file.name().context("bad zip entry name")?.into_owned();
                    let path = safe_relative_path(Path::new(&name))?;
                    if !f(&path, &mut file)? {
                        break;
                    }
                }
            }
            ArchiveFormat::Tar => {
                let mut tar = tar::Archive::new(whole);
                for entry in tar.entries()? {
                    let mut entry = entry?;
                    let path = safe_relative_path(&entry.path()?)?;
                    if !f(&path, &mut entry)? {
                        break;
                    }
                }
            }
            // A bare image holds one file: the disk.
            ArchiveFormat::Image => {
                f(Path::new(BOX_IMAGE), &mut whole)?;
            }
        }
        Ok(())
    })
    .with_context(|| format!("{}", archive.display()))
}

/// Fills `buf` as far as the stream goes; returns how much it filled.
fn read_up_to<R: Read + ?Sized>(source: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = source.read(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

fn unpack_tar<R: Read>(
    mut archive: tar::Archive<R>,
    dest: &Path,
    budget: &mut Budget,
) -> Result<()> {
    archive.set_preserve_permissions(false);
    archive.set_unpack_xattrs(false);
    let mut seen = std::collections::HashSet::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw_path = entry.path()?.into_owned();
        let path = safe_relative_path(&raw_path)?;
        if path.as_os_str().is_empty() {
            continue;
        }
        // A second entry of the same name would silently replace the first
        // (what was checked is not what is used): refused, as zip does.
        if entry.header().entry_type() != tar::EntryType::Directory && !seen.insert(path.clone()) {
            bail!("`{}` is in the archive twice", raw_path.display());
        }
        let kind = entry.header().entry_type();
        match kind {
            // GNU sparse entries are regular files whose holes are not stored
            // (GNU tar --sparse, and the tar crate for sparse disk images).
            tar::EntryType::Regular
            | tar::EntryType::Continuous
            | tar::EntryType::GNUSparse
            | tar::EntryType::Directory => {}
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .context("symlink without target")?
                    .into_owned();
                safe_link_target(&path, &target)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()?
                    .context("hard link without target")?
                    .into_owned();
                safe_relative_path(&target)?;
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            other => bail!(
                "`{}` is a {:?} entry: boxes may hold only files, folders and links",
                raw_path.display(),
                other
            ),
        }
        budget.take(&path, entry.size())?;
        // unpack_in re-checks the path and refuses to write through links
        // that lead outside `dest`.
        if !entry.unpack_in(dest)? {
            bail!(
                "`{}` would be written outside the box folder",
                raw_path.display()
            );
        }
        if path == Path::new("metadata.json") {
            budget.declared(&dest.join("metadata.json"));
        }
    }
    Ok(())
}

/// The next entry of a zip read from the front (local headers), or None at
/// the central directory.
fn next_zip_entry<R: Read>(raw: &mut R) -> Result<Option<zip::read::ZipFile<'_, R>>> {
    zip::read::read_zipfile_from_stream(raw).context("bad zip archive")
}

/// Unpacks a zip read from the front. Read this way a zip tells no file
/// modes, so every entry is a plain file or a folder (no links, no devices);
/// an entry is never written twice.
fn unpack_zip<R: Read>(mut raw: R, dest: &Path, budget: &mut Budget) -> Result<()> {
    while let Some(mut file) = next_zip_entry(&mut raw)? {
        let name = file.name().context("bad zip entry name")?.into_owned();
        let path = safe_relative_path(Path::new(&name))?;
        if path.as_os_str().is_empty() {
            continue;
        }
        let target = dest.join(&path);
        if file.is_dir() {
            std::fs::create_dir_all(&target)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .with_context(|| format!("cannot write `{name}` (twice in the archive?)"))?;
        // The declared size of a zip entry is the box's word: the copy is
        // cut at the budget whatever it says.
        let room = budget.limit.saturating_sub(budget.used);
        let copied = std::io::copy(&mut (&mut file).take(room.saturating_add(1)), &mut out)
            .with_context(|| format!("cannot unpack `{name}`"))?;
        budget.take(&path, copied)?;
        if path == Path::new("metadata.json") {
            budget.declared(&target);
        }
    }
    Ok(())
}

/// Counts bytes read, for progress reports.
struct CountingReader<'a, R> {
    inner: R,
    count: u64,
    progress: &'a mut (dyn FnMut(u64) + Send),
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        (self.progress)(self.count);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, tar::EntryType, Option<&str>)]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut builder = tar::Builder::new(file.reopen().unwrap());
        for (path, kind, link) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            let data: &[u8] = if *kind == tar::EntryType::Regular {
                b"hello"
            } else {
                b""
            };
            header.set_size(data.len() as u64);
            // Write raw names so that hostile paths reach the archive as-is.
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(target) = link {
                header.set_link_name(target).unwrap();
            }
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        builder.finish().unwrap();
        file
    }

    fn unpack_entries(
        entries: &[(&str, tar::EntryType, Option<&str>)],
    ) -> (tempfile::TempDir, Result<()>) {
        let archive = tar_with(entries);
        let dest = tempfile::tempdir().unwrap();
        let result = unpack(archive.path(), dest.path(), &mut |_| {});
        (dest, result)
    }

    #[test]
    fn plain_files_and_folders_unpack() {
        let (dest, result) = unpack_entries(&[
            ("dir/", tar::EntryType::Directory, None),
            ("dir/a.txt", tar::EntryType::Regular, None),
            ("./b.txt", tar::EntryType::Regular, None),
            ("dir/link", tar::EntryType::Symlink, Some("a.txt")),
        ]);
        result.unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.path().join("dir/a.txt")).unwrap(),
            "hello"
        );
        assert!(dest.path().join("b.txt").exists());
    }

    #[test]
    fn hostile_entries_are_rejected() {
        type Entry<'a> = (&'a str, tar::EntryType, Option<&'a str>);
        let cases: &[(&[Entry], &str)] = &[
            (&[("../evil", tar::EntryType::Regular, None)], ".."),
            (&[("/etc/evil", tar::EntryType::Regular, None)], "absolute"),
            (
                &[("link", tar::EntryType::Symlink, Some("/etc/passwd"))],
                "absolute",
            ),
            (
                &[("a/link", tar::EntryType::Symlink, Some("../../x"))],
                "outside",
            ),
            (&[("hard", tar::EntryType::Link, Some("../x"))], ".."),
            (&[("dev", tar::EntryType::Char, None)], "Char"),
            (&[("fifo", tar::EntryType::Fifo, None)], "Fifo"),
        ];
        for (entries, needle) in cases {
            let (dest, result) = unpack_entries(entries);
            let message = format!("{:#}", result.expect_err(needle));
            assert!(message.contains(needle), "{needle}: {message}");
            assert!(!dest.path().parent().unwrap().join("evil").exists());
        }
    }

    #[test]
    fn a_chain_of_links_cannot_lead_out_and_entries_come_once() {
        // Each target looks inside as text; resolved, `y` is the root.
        let (_dest, result) = unpack_entries(&[
            ("x", tar::EntryType::Symlink, Some(".")),
            ("x/x/x/y", tar::EntryType::Symlink, Some("../../..")),
        ]);
        let message = format!("{:#}", result.unwrap_err());
        assert!(message.contains("leads outside"), "{message}");
        let (_dest, result) =
            unpack_entries(&[("nowhere", tar::EntryType::Symlink, Some("missing/file"))]);
        assert!(format!("{:#}", result.unwrap_err()).contains("leads nowhere"));
        let (_dest, result) = unpack_entries(&[
            ("metadata.json", tar::EntryType::Regular, None),
            ("metadata.json", tar::EntryType::Regular, None),
        ]);
        assert!(format!("{:#}", result.unwrap_err()).contains("twice"));
    }

    #[test]
    fn an_archive_cannot_unpack_to_more_than_its_box_declares() {
        // metadata.json declares a 0 GiB disk; the next entry claims 600
        // MiB (a compression bomb's header): refused before a byte of it.
        let file = tempfile::NamedTempFile::new().unwrap();
        {
            let mut out = std::fs::File::create(file.path()).unwrap();
            use std::io::Write;
            let mut meta = tar::Header::new_gnu();
            let json = br#"{"provider":"libvirt","format":"qcow2","virtual_size":0}"#;
            meta.set_path("metadata.json").unwrap();
            meta.set_size(json.len() as u64);
            meta.set_mode(0o644);
            meta.set_cksum();
            out.write_all(meta.as_bytes()).unwrap();
            out.write_all(json).unwrap();
            out.write_all(&vec![0u8; 512 - json.len() % 512]).unwrap();
            let mut bomb = tar::Header::new_gnu();
            bomb.set_path("box.img").unwrap();
            bomb.set_size(600 << 20);
            bomb.set_mode(0o644);
            bomb.set_cksum();
            out.write_all(bomb.as_bytes()).unwrap();
        }
        let dest = tempfile::tempdir().unwrap();
        let err = format!(
            "{:#}",
            unpack(file.path(), dest.path(), &mut |_| {}).unwrap_err()
        );
        assert!(err.contains("unpacks to more than"), "{err}");
        assert!(!dest.path().join("box.img").exists());
    }

    #[test]
    fn a_link_cannot_be_written_through() {
        let (dest, result) = unpack_entries(&[
            ("dir", tar::EntryType::Symlink, Some(".")),
            ("dir/x", tar::EntryType::Regular, None),
        ]);
        result.unwrap();
        assert!(dest.path().join("x").exists());
    }

    #[test]
    fn archives_and_disk_images_are_told_apart_and_garbage_refused() {
        let mut tar_head = vec![0u8; 512];
        tar_head[257..262].copy_from_slice(b"ustar");
        assert_eq!(detect(&tar_head).unwrap(), ArchiveFormat::Tar);
        assert!(detect(b"hello").is_err());
        assert_eq!(detect(b"PK\x03\x04").unwrap(), ArchiveFormat::Zip);
        assert_eq!(detect(b"QFI\xfb\0\0\0\x03").unwrap(), ArchiveFormat::Image);
        let mut mbr = vec![0u8; 512];
        mbr[510..].copy_from_slice(&[0x55, 0xaa]);
        assert_eq!(detect(&mbr).unwrap(), ArchiveFormat::Image);
        // Raw bytes without a partition table are no disk env can boot.
        assert!(detect(&[0u8; 512]).is_err());
    }

    #[test]
    fn compressed_disk_images_become_the_box_disk() {
        let mut image = crate::boxes::image::empty_qcow2_header();
        image.resize(64 << 10, 0);
        image[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &image).unwrap();
        let gz = gz.finish().unwrap();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut std::io::Cursor::new(&image), &mut xz).unwrap();
        for bytes in [image.clone(), gz, xz] {
            let dest = tempfile::tempdir().unwrap();
            unpack_reader(&bytes[..], dest.path()).unwrap();
            assert_eq!(std::fs::read(dest.path().join(BOX_IMAGE)).unwrap(), image);
        }
    }

    #[test]
    fn a_disk_image_larger_than_its_header_declares_is_cut_off() {
        let mut image = crate::boxes::image::empty_qcow2_header();
        image[24..32].copy_from_slice(&(1u64 << 20).to_be_bytes());
        // Declares 1 MiB; brings far more than that and the margin.
        let bomb = std::io::Cursor::new(image).chain(std::io::repeat(0).take(1 << 30));
        let dest = tempfile::tempdir().unwrap();
        let err = unpack_reader(bomb, dest.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("qcow2 header declares"),
            "{err:#}"
        );
    }

    fn zip_with(entries: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        for (name, data) in entries {
            if name.ends_with('/') {
                zip.add_directory(*name, options).unwrap();
            } else {
                zip.start_file(*name, options).unwrap();
                std::io::Write::write_all(&mut zip, data).unwrap();
            }
        }
        zip.finish().unwrap();
        out.into_inner()
    }

    #[test]
    fn zip_boxes_unpack_as_they_arrive() {
        for method in [
            zip::CompressionMethod::Stored,
            zip::CompressionMethod::Deflated,
        ] {
            let bytes = zip_with(
                &[
                    ("metadata.json", br#"{"provider":"libvirt"}"#),
                    ("disks/", b""),
                    ("disks/box.img", &[7u8; 100_000]),
                ],
                method,
            );
            let dest = tempfile::tempdir().unwrap();
            unpack_reader(std::io::Cursor::new(bytes.clone()), dest.path()).unwrap();
            assert_eq!(
                std::fs::read(dest.path().join("disks/box.img")).unwrap(),
                vec![7u8; 100_000]
            );
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), &bytes).unwrap();
            let mut names = Vec::new();
            each_entry(file.path(), &mut |path, _| {
                names.push(path.display().to_string());
                Ok(true)
            })
            .unwrap();
            assert_eq!(names, ["metadata.json", "disks", "disks/box.img"]);
        }
    }

    #[test]
    fn hostile_zip_entries_are_rejected() {
        for (name, why) in [
            ("../evil", "leaves the box folder"),
            ("/etc/evil", "absolute path"),
            ("a/../../evil", "leaves the box folder"),
        ] {
            let bytes = zip_with(&[(name, b"x")], zip::CompressionMethod::Stored);
            let dest = tempfile::tempdir().unwrap();
            let err = unpack_reader(std::io::Cursor::new(bytes), dest.path()).unwrap_err();
            assert!(format!("{err:#}").contains(why), "{name}: {err:#}");
        }
        // The writer refuses a name twice: rename the second entry in place.
        let mut twice = zip_with(
            &[("box.img", b"one"), ("bix.img", b"two")],
            zip::CompressionMethod::Stored,
        );
        for i in 0..twice.len() - 7 {
            if &twice[i..i + 7] == b"bix.img" {
                twice[i + 1] = b'o';
            }
        }
        let dest = tempfile::tempdir().unwrap();
        assert!(unpack_reader(std::io::Cursor::new(twice), dest.path()).is_err());
        assert_eq!(std::fs::read(dest.path().join("box.img")).unwrap(), b"one");
    }

    #[test]
    fn gzip_archives_unpack() {
        let plain = tar_with(&[("a.txt", tar::EntryType::Regular, None)]);
        let gz = tempfile::NamedTempFile::new().unwrap();
        let mut enc =
            flate2::write::GzEncoder::new(gz.reopen().unwrap(), flate2::Compression::fast());
        std::io::copy(&mut File::open(plain.path()).unwrap(), &mut enc).unwrap();
        enc.finish().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let mut seen = 0;
        unpack(gz.path(), dest.path(), &mut |n| seen = n).unwrap();
        assert!(seen > 0);
        assert!(dest.path().join("a.txt").exists());
    }

    #[test]
    fn link_targets() {
        assert!(safe_link_target(Path::new("a/b"), Path::new("../c")).is_ok());
        assert!(safe_link_target(Path::new("a/b"), Path::new("../../c")).is_err());
        assert!(safe_link_target(Path::new("b"), Path::new("x/../../c")).is_err());
    }
}
