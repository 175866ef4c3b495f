//! The system toplevel: one store path per generation holding `etc/` (every file the
//! generation puts under `/etc`), `sw/` (the system packages as one symlink forest) and
//! `manifest.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nexis_config::SystemSpec;
use nexis_store::{Store, StorePath, remove_tree};

use crate::manifest::{
    EtcEntry, EtcKind, MANIFEST_FILE, MANIFEST_VERSION, Manifest, ManifestPackage,
};

/// A package of the system profile: its id, version and output path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemPackage {
    /// `input#name`.
    pub id: String,
    /// Its version.
    pub version: String,
    /// Its output.
    pub path: StorePath,
}

/// The toplevel could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ToplevelError {
    /// Two packages provide the same file in `sw/`.
    #[error(
        "packages {first} and {second} both provide sw/{file}; remove one of them from the system packages"
    )]
    Collision {
        /// The file, relative to the profile.
        file: String,
        /// One package.
        first: String,
        /// The other.
        second: String,
    },
    /// A declared file's source cannot be read.
    #[error("/etc/{file}: cannot read its source {}", source_path.display())]
    Source {
        /// The file under `/etc`.
        file: String,
        /// Its source.
        source_path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing the tree failed.
    #[error("writing the system toplevel at {}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The store failed.
    #[error("adding the system toplevel to the store")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ToplevelError + '_ {
    move |source| ToplevelError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What goes into one file under `/etc`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    /// Bytes.
    Text(Vec<u8>),
    /// A symbolic link to this target.
    Link(String),
}

/// A file under `/etc` with its owner and mode.
#[derive(Debug, Clone)]
struct EtcFile {
    content: Content,
    mode: u32,
    owner: String,
    group: String,
}

impl EtcFile {
    fn text(content: impl Into<Vec<u8>>) -> EtcFile {
        EtcFile {
            content: Content::Text(content.into()),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
        }
    }
}

/// Every file the system puts under `/etc`, by path relative to `/etc`: the ones derived
/// from `[system]` and `[network]`, and the declared `[files."/etc/…"]`.
fn etc_files(spec: &SystemSpec) -> Result<BTreeMap<String, EtcFile>, ToplevelError> {
    let mut out = BTreeMap::new();
    let s = &spec.system;
    out.insert(
        "hostname".into(),
        EtcFile::text(format!("{}\n", s.hostname.value)),
    );
    let mut hosts = format!(
        "127.0.0.1 localhost\n::1 localhost\n127.0.1.1 {}\n",
        s.hostname.value
    );
    for (addr, names) in &spec.network.hosts {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let _ = writeln!(hosts, "{} {}", addr.value, names.join(" "));
    }
    out.insert("hosts".into(), EtcFile::text(hosts));
    out.insert(
        "localtime".into(),
        EtcFile {
            content: Content::Link(format!("/usr/share/zoneinfo/{}", s.timezone.value)),
            ..EtcFile::text("")
        },
    );
    out.insert(
        "timezone".into(),
        EtcFile::text(format!("{}\n", s.timezone.value)),
    );
    out.insert(
        "locale.conf".into(),
        EtcFile::text(format!("LANG={}\n", s.locale.value)),
    );
    out.insert(
        "vconsole.conf".into(),
        EtcFile::text(format!("KEYMAP={}\n", s.keymap.value)),
    );
    if !spec.network.nameservers.is_empty() {
        let mut text = String::new();
        for ns in &spec.network.nameservers {
            let _ = writeln!(text, "nameserver {}", ns.value);
        }
        out.insert("resolv.conf".into(), EtcFile::text(text));
    }
    for (path, file) in &spec.files {
        let Some(rel) = path.value.strip_prefix("/etc/") else {
            continue;
        };
        let content = match (&file.text, &file.source) {
            (Some(text), _) => text.value.clone().into_bytes(),
            (None, Some(src)) => fs::read(&src.value).map_err(|source| ToplevelError::Source {
                file: rel.to_owned(),
                source_path: PathBuf::from(&src.value),
                source,
            })?,
            (None, None) => Vec::new(),
        };
        out.insert(
            rel.to_owned(),
            EtcFile {
                content: Content::Text(content),
                mode: file.mode.as_ref().map_or(0o644, |m| m.value.0),
                owner: file
                    .owner
                    .as_ref()
                    .map_or("root", |o| o.value.as_str())
                    .to_owned(),
                group: file
                    .group
                    .as_ref()
                    .map_or("root", |g| g.value.as_str())
                    .to_owned(),
            },
        );
    }
    Ok(out)
}

/// How an `/etc` file is put in place: a link into the generation unless the store's
/// read-only `root:root 0444/0555` copy would not do.
fn kind_of(file: &EtcFile) -> EtcKind {
    match file.content {
        Content::Link(_) => EtcKind::Symlink,
        Content::Text(_) => {
            let plain = file.owner == "root"
                && file.group == "root"
                && (file.mode == 0o644
                    || file.mode == 0o444
                    || file.mode == 0o755
                    || file.mode == 0o555);
            if plain { EtcKind::Link } else { EtcKind::Real }
        }
    }
}

/// A system toplevel added to the store.
#[derive(Debug, Clone)]
pub struct Toplevel {
    /// Its store path.
    pub path: StorePath,
    /// Its manifest.
    pub manifest: Manifest,
}

/// Make the toplevel of `spec` with `packages` as the system profile and add it to the
/// store, named `nexis-system-HOSTNAME`. The same system gives the same path.
pub fn build_toplevel(
    store: &Store,
    spec: &SystemSpec,
    packages: &[SystemPackage],
) -> Result<Toplevel, ToplevelError> {
    let scratch = store
        .temp_dir()
        .map_err(|e| ToplevelError::Store(Box::new(e)))?;
    let result = (|| {
        let top = scratch.join("toplevel");
        fs::create_dir(&top).map_err(io_at(&top))?;
        let files = etc_files(spec)?;
        let etc = top.join("etc");
        let mut entries = BTreeMap::new();
        for (rel, file) in &files {
            let dest = etc.join(rel);
            let parent = dest.parent().expect("below etc");
            fs::create_dir_all(parent).map_err(io_at(parent))?;
            let hash = match &file.content {
                Content::Text(bytes) => {
                    fs::write(&dest, bytes).map_err(io_at(&dest))?;
                    blake3::hash(bytes).to_hex().to_string()
                }
                Content::Link(target) => {
                    symlink(target, &dest).map_err(io_at(&dest))?;
                    blake3::hash(target.as_bytes()).to_hex().to_string()
                }
            };
            entries.insert(
                rel.clone(),
                EtcEntry {
                    kind: kind_of(file),
                    hash,
                    mode: format!("{:04o}", file.mode),
                    owner: file.owner.clone(),
                    group: file.group.clone(),
                },
            );
        }
        fs::create_dir_all(&etc).map_err(io_at(&etc))?;
        let sw = top.join("sw");
        profile(store, packages, &sw)?;
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            hostname: spec.system.hostname.value.clone(),
            packages: packages
                .iter()
                .map(|p| {
                    (
                        p.id.clone(),
                        ManifestPackage {
                            version: p.version.clone(),
                            path: p.path.clone(),
                        },
                    )
                })
                .collect(),
            etc: entries,
        };
        let file = top.join(MANIFEST_FILE);
        fs::write(&file, manifest.to_json()).map_err(io_at(&file))?;
        let candidates: Vec<StorePath> = packages.iter().map(|p| p.path.clone()).collect();
        let name = format!("nexis-system-{}", spec.system.hostname.value);
        let added = store
            .add_path_with_references(&top, Some(&name), &candidates)
            .map_err(|e| ToplevelError::Store(Box::new(e)))?;
        Ok(Toplevel {
            path: added.path,
            manifest,
        })
    })();
    let _ = remove_tree(&scratch);
    result
}

/// Make `dir` the union of the packages' trees: directories are merged, each file or
/// link becomes a link to the package's own (logical) path. Two packages with the same
/// file are an error naming both.
fn profile(store: &Store, packages: &[SystemPackage], dir: &Path) -> Result<(), ToplevelError> {
    fs::create_dir(dir).map_err(io_at(dir))?;
    let mut owners: BTreeMap<PathBuf, &str> = BTreeMap::new();
    for pkg in packages {
        let root = store.physical(&pkg.path);
        let logical = PathBuf::from(pkg.path.to_string());
        if !root.is_dir() {
            continue;
        }
        merge(&root, &logical, dir, Path::new(""), &pkg.id, &mut owners)?;
    }
    Ok(())
}

fn merge<'a>(
    src: &Path,
    logical: &Path,
    dest: &Path,
    rel: &Path,
    id: &'a str,
    owners: &mut BTreeMap<PathBuf, &'a str>,
) -> Result<(), ToplevelError> {
    let mut names = BTreeSet::new();
    for entry in fs::read_dir(src.join(rel)).map_err(io_at(&src.join(rel)))? {
        names.insert(entry.map_err(io_at(src))?.file_name());
    }
    for name in names {
        let r = rel.join(&name);
        let meta = fs::symlink_metadata(src.join(&r)).map_err(io_at(&src.join(&r)))?;
        let target = dest.join(&r);
        if meta.is_dir() {
            match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(collision(&r, owners, id)),
                Err(_) => fs::create_dir(&target).map_err(io_at(&target))?,
            }
            owners.entry(r.clone()).or_insert(id);
            merge(src, logical, dest, &r, id, owners)?;
        } else {
            if fs::symlink_metadata(&target).is_ok() {
                return Err(collision(&r, owners, id));
            }
            symlink(logical.join(&r), &target).map_err(io_at(&target))?;
            owners.insert(r, id);
        }
    }
    Ok(())
}

fn collision(rel: &Path, owners: &BTreeMap<PathBuf, &str>, id: &str) -> ToplevelError {
    ToplevelError::Collision {
        file: rel.display().to_string(),
        first: owners
            .get(rel)
            .copied()
            .unwrap_or("another package")
            .to_owned(),
        second: id.to_owned(),
    }
}
