//! `env box ...`: the box store from the command line.

use crate::boxes::{self, Store};
use crate::util::ui;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

/// `env box ...`.
#[derive(Debug, Subcommand)]
pub enum BoxCommand {
    /// Build a box from a recipe in boxes/NAME (needs root and mmdebstrap).
    Build(BuildArgs),
    /// Add a box from a .box file or URL, a catalog (Vagrant's box metadata JSON),
    /// an unpacked box folder (such as one in Vagrant's own store), a
    /// distribution's disk image (qcow2 or raw, compressed or not), or an
    /// image index name (`env box search`).
    Add {
        /// A .box, catalog or disk image (path, file:// or http(s):// URL), a
        /// box folder, an image index name (`ubuntu-24.04`), or a Vagrant
        /// registry name (`generic/ubuntu2204`; the server is ENV_BOX_SERVER,
        /// else Vagrant's public registry).
        source: String,
        /// Name in the store (default: the catalog's, the one in Vagrant's store,
        /// or the file name without .box).
        #[arg(long)]
        name: Option<String>,
        /// Catalogs: a version constraint (`1.2.0`, `>= 1.0, < 2`, `~> 1.2`);
        /// a .box: the version to record (default: its info.json, else 0).
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
        /// Expected digest, TYPE:HEX (sha1, sha256, sha384, sha512); a catalog's is used otherwise.
        #[arg(long, value_name = "TYPE:HEX")]
        checksum: Option<String>,
        /// Replace the same name and version.
        #[arg(short, long)]
        force: bool,
    },
    /// List the image index: distributions' cloud images by short name.
    Search {
        /// Only entries whose name or description contains this.
        text: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List the boxes in the store.
    List {
        /// Show each box's info and package manifest size.
        #[arg(short = 'i', long)]
        info: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Check each box against its catalog for newer versions.
    Outdated {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Add the newer versions the catalogs offer (within each box's constraint).
    Update {
        /// Only this box.
        name: Option<String>,
    },
    /// Remove old versions: keeps the newest of each box and any a machine uses.
    Prune {
        /// Only say what would be removed.
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Write catalogs (NAME.json) for the .box files of a folder, to serve it.
    Catalog {
        /// The folder of .box files.
        dir: PathBuf,
        /// Where the folder is served (https://host/boxes/): box URLs are
        /// written absolute, as Vagrant needs them (it takes a relative URL
        /// for a local path). Without it URLs are relative to the catalog.
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
    },
    /// Remove a box from the store.
    Remove {
        /// Box name.
        name: String,
        /// Only this version.
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
        /// Remove even if machines use it.
        #[arg(short, long)]
        force: bool,
    },
}

/// `env box build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Recipe name (boxes/NAME).
    pub name: String,
    /// Write the box here instead of adding it to the store.
    #[arg(short, long, value_name = "FILE.box")]
    pub output: Option<PathBuf>,
}

/// Runs one `env box` command.
pub fn run(command: BoxCommand) -> Result<i32> {
    match command {
        BoxCommand::Build(args) => {
            let recipe = boxes::build::find_recipe(&args.name, &std::env::current_dir()?)?;
            match args.output {
                Some(output) => {
                    boxes::build::run_recipe(&recipe, &output)?;
                    println!("built {}", output.display());
                }
                None => {
                    let store = Store::open()?;
                    let dir = crate::util::paths::data_home()?;
                    std::fs::create_dir_all(&dir)?;
                    let tmp = tempfile::Builder::new()
                        .prefix(".build-")
                        .tempdir_in(&dir)?;
                    let output = tmp.path().join(format!("{}.box", args.name));
                    boxes::build::run_recipe(&recipe, &output)?;
                    let b = add_with_progress(&store, &output, &args.name, None, true)?;
                    println!("built and added {} version {}", b.name, b.version);
                }
            }
            Ok(0)
        }
        BoxCommand::Add {
            source,
            name,
            version,
            checksum,
            force,
        } => {
            let store = Store::open()?;
            let index_entry = (!looks_like_a_place(&source))
                .then(|| boxes::index::Index::load(Some(&std::env::current_dir()?)))
                .transpose()?
                .and_then(|index| index.get(&source).cloned());
            if let Some(entry) = index_entry {
                let b = boxes::from_index::add_from_index(
                    &store,
                    name.as_deref().unwrap_or(&source),
                    &entry,
                    force,
                )?;
                println!(
                    "added {} version {} ({}) from the image index",
                    b.name,
                    b.version,
                    ui::human_bytes(b.size)
                );
                return Ok(0);
            }
            // `owner/name` that is no file here: Vagrant's registry.
            let source =
                match boxes::registry::is_registry_name(&source) && !Path::new(&source).exists() {
                    true => {
                        let server = boxes::registry::server(None);
                        ui::line(&format!("{source}: from the box registry {server}"));
                        boxes::registry::catalog_url(&server, &source)
                    }
                    false => source,
                };
            let request = boxes::fetch::AddRequest {
                source,
                name,
                version,
                checksum: checksum
                    .as_deref()
                    .map(boxes::digest::Checksum::parse)
                    .transpose()?,
                force,
                image: Default::default(),
            };
            let b = boxes::fetch::add(&store, &request)?;
            println!(
                "added {} version {} ({})",
                b.name,
                b.version,
                ui::human_bytes(b.size)
            );
            Ok(0)
        }
        BoxCommand::Search { text, json } => search(text.as_deref(), json),
        BoxCommand::Outdated { json } => {
            let checks = boxes::maintain::outdated(&Store::open()?, None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&checks)?);
                return Ok(0);
            }
            let mut rows = vec![vec![
                "NAME".to_string(),
                "CURRENT".into(),
                "LATEST".into(),
                "STATUS".into(),
            ]];
            for f in &checks {
                rows.push(vec![
                    f.name.clone(),
                    f.current.clone(),
                    f.latest.clone().unwrap_or_else(|| "-".into()),
                    match (&f.note, f.outdated()) {
                        (Some(note), _) => note.clone(),
                        (None, true) => "newer version available: `env box update`".into(),
                        (None, false) => "up to date".into(),
                    },
                ]);
            }
            print!("{}", ui::table(&rows));
            Ok(0)
        }
        BoxCommand::Update { name } => {
            let added = boxes::maintain::update(&Store::open()?, name.as_deref())?;
            if added.is_empty() {
                println!("every box is up to date");
            }
            for b in added {
                println!("added {} version {}", b.name, b.version);
            }
            Ok(0)
        }
        BoxCommand::Prune { dry_run } => {
            let plan = boxes::maintain::prune(&Store::open()?, dry_run)?;
            for item in &plan {
                let verb = match (item.remove, dry_run) {
                    (true, true) => "would remove",
                    (true, false) => "removed",
                    (false, _) => "kept",
                };
                println!("{verb} {} {} ({})", item.name, item.version, item.reason);
            }
            Ok(0)
        }
        BoxCommand::Catalog { dir, base_url } => {
            for path in boxes::maintain::write_catalogs(&dir, base_url.as_deref())? {
                println!("wrote {}", path.display());
            }
            Ok(0)
        }
        BoxCommand::List { info, json } => {
            let boxes = Store::open()?.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&boxes)?);
                return Ok(0);
            }
            if boxes.is_empty() {
                println!("no boxes: `env box add FILE --name NAME` or `env box build debian-12`");
                return Ok(0);
            }
            let mut rows = vec![vec![
                "NAME".to_string(),
                "VERSION".into(),
                "PROVIDER".into(),
                "ARCH".into(),
                "SIZE".into(),
            ]];
            for b in &boxes {
                rows.push(vec![
                    b.name.clone(),
                    b.version.clone(),
                    b.metadata.provider.clone(),
                    b.info
                        .as_ref()
                        .and_then(|i| i.get("architecture"))
                        .and_then(|a| a.as_str())
                        .unwrap_or("amd64")
                        .to_string(),
                    ui::human_bytes(b.size),
                ]);
            }
            print!("{}", ui::table(&rows));
            if info {
                for b in &boxes {
                    println!("\n{} {}:", b.name, b.version);
                    if let Some(serde_json::Value::Object(map)) = &b.info {
                        for (k, v) in map {
                            println!(
                                "  {k}: {}",
                                v.as_str()
                                    .map(String::from)
                                    .unwrap_or_else(|| v.to_string())
                            );
                        }
                    }
                    if let Some(packages) = b.packages() {
                        println!(
                            "  manifest: {} packages ({}/packages.txt)",
                            packages.lines().count(),
                            b.dir.display()
                        );
                    }
                }
            }
            Ok(0)
        }
        BoxCommand::Remove {
            name,
            version,
            force,
        } => {
            for b in Store::open()?.remove(&name, version.as_deref(), force)? {
                println!("removed {} version {}", b.name, b.version);
            }
            Ok(0)
        }
    }
}

fn add_with_progress(
    store: &Store,
    file: &Path,
    name: &str,
    version: Option<&str>,
    force: bool,
) -> Result<boxes::StoredBox> {
    let total = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let bar = ui::bytes_bar(total, &format!("adding {name} from {}", file.display()));
    let result = store.add_archive(file, name, version, force, &mut |n| bar.set_position(n));
    bar.finish_and_clear();
    result
}

/// Whether `source` names a file, folder or URL rather than an index name.
fn looks_like_a_place(source: &str) -> bool {
    source.contains('/') || source.contains("://") || Path::new(source).exists()
}

/// `env box search`.
fn search(text: Option<&str>, json: bool) -> Result<i32> {
    let index = boxes::index::Index::load(Some(&std::env::current_dir()?))?;
    let found = index.search(text);
    let arches = |e: &boxes::index::Entry| e.arches.keys().cloned().collect::<Vec<_>>();
    if json {
        let items: Vec<serde_json::Value> = found
            .iter()
            .map(|(name, e, origin)| {
                serde_json::json!({
                    "name": name,
                    "release": e.release,
                    "description": e.description,
                    "user": e.user,
                    "firmware": e.firmware.map(|f| f.name()),
                    "folders": e.folders,
                    "arches": arches(e),
                    "index": origin,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(0);
    }
    let mut rows = vec![vec![
        "NAME".to_string(),
        "RELEASE".into(),
        "FIRMWARE".into(),
        "USER".into(),
        "FOLDERS".into(),
        "DESCRIPTION".into(),
    ]];
    for (name, e, _) in &found {
        rows.push(vec![
            name.to_string(),
            e.release.clone(),
            e.firmware.map_or("-", |f| f.name()).to_string(),
            e.user.clone().unwrap_or_else(|| "-".into()),
            e.folders
                .as_ref()
                .map(|f| {
                    if f.is_empty() {
                        "rsync only".into()
                    } else {
                        f.join(",")
                    }
                })
                .unwrap_or_else(|| "unknown".into()),
            e.description.clone(),
        ]);
    }
    print!("{}", ui::table(&rows));
    if found.is_empty() {
        eprintln!("no image in the index matches: `env box search` lists them all");
        return Ok(1);
    }
    Ok(0)
}
