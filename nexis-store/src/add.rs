//! Adding trees to the store.
//!
//! A source is first scanned (refusing special files) and hashed where it is — files in
//! parallel, large files with blake3's multi-threaded mode — which names its store path.
//! Under that path's lock, a path valid already is done with: nothing is written, and a
//! second process adding the same tree at the same time waits for the first and then
//! finds it valid, so the copy is made once. Otherwise the tree is copied into `.tmp/`
//! on the store's filesystem (small files through memory, large ones by the kernel's
//! copy, then hashed from the page cache), files in parallel. While copying, each file
//! is made canonical (mode 0444 or 0555, mtime 1) and deduplicated: identical files
//! (same content and executable bit) become hard links to one inode kept under
//! `.links/`. The copy's hash must be the source's (else the source changed while it
//! was added, and nothing is installed). Then directories are made read-only, the
//! filesystem is synced, and the tree is renamed to its final name and registered in
//! one transaction. Given candidate references, the source is scanned for them
//! ([`RefScanner`]) and those found become part of the path's fingerprint and its
//! registration.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use crate::db::{DbError, PathInfo};
use crate::gc::remove_tree;
use crate::hash::{DirHasher, LARGE_FILE, file_hash, symlink_hash};
use crate::path::{ContentKind, PathError, StorePath, check_name};
use crate::refs::RefScanner;
use crate::store::{Store, StoreError, io_err};

/// Adding a tree failed.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// A file of a kind the store cannot hold.
    #[error("{path}: {kind} cannot be stored (only regular files, directories and symlinks)")]
    Unsupported {
        /// The offending file.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// The name is not a valid store path name.
    #[error(transparent)]
    Name(#[from] PathError),
    /// A source file changed size while it was being added.
    #[error("{0}: changed while it was being added")]
    Changed(PathBuf),
    /// A tree given to [`Store::add_owned_tree`] is not in the store's `.tmp/`.
    #[error("{0}: only a tree inside the store's .tmp/ can be given to the store")]
    NotOwned(PathBuf),
    /// The source has no usable file name to take the name from.
    #[error("{0}: cannot take a store path name from it; give one")]
    NoName(PathBuf),
    /// Filesystem or database failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<crate::db::DbError> for AddError {
    fn from(e: crate::db::DbError) -> AddError {
        AddError::Store(e.into())
    }
}

/// What adding a tree did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The store path.
    pub path: StorePath,
    /// Its tree hash.
    pub tree_hash: [u8; 32],
    /// Size of its canonical archive.
    pub archive_size: u64,
    /// Regular files in it.
    pub files: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Bytes not stored again because identical files were already in the store.
    pub deduplicated: u64,
    /// It was valid already: nothing was written.
    pub already_valid: bool,
}

impl Added {
    /// A path found valid: nothing written.
    fn unwritten(path: StorePath, source: &crate::hash::TreeInfo) -> Added {
        Added {
            path,
            tree_hash: source.hash,
            archive_size: source.archive_size,
            files: source.files,
            bytes: source.bytes,
            deduplicated: 0,
            already_valid: true,
        }
    }

    /// What the database records for the path, content-addressed by its tree hash.
    fn path_info(&self, references: BTreeSet<StorePath>, registered: i64) -> PathInfo {
        PathInfo {
            path: self.path.clone(),
            tree_hash: self.tree_hash,
            archive_size: self.archive_size,
            registered,
            deriver: None,
            content_address: Some(format!(
                "source:blake3:{}",
                blake3::Hash::from_bytes(self.tree_hash).to_hex()
            )),
            references,
            signatures: BTreeSet::new(),
        }
    }
}

/// A regular file of the scanned source tree.
struct FileNode {
    src: PathBuf,
    size: u64,
    executable: bool,
}

/// A node of the scanned source tree.
enum Node {
    File(FileNode),
    Symlink { target: Vec<u8> },
    Dir { entries: Vec<(Vec<u8>, Node)> },
}

fn pad8(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

/// Scan a source tree (not following symlinks), sorted, refusing special files.
fn scan(path: &Path) -> Result<Node, AddError> {
    let meta = fs::symlink_metadata(path)
        .map_err(io_err(path))
        .map_err(AddError::Store)?;
    let ft = meta.file_type();
    if ft.is_file() {
        Ok(Node::File(FileNode {
            src: path.to_owned(),
            size: meta.len(),
            executable: meta.permissions().mode() & 0o111 != 0,
        }))
    } else if ft.is_symlink() {
        let target = fs::read_link(path).map_err(io_err(path))?;
        Ok(Node::Symlink {
            target: target.into_os_string().into_encoded_bytes(),
        })
    } else if ft.is_dir() {
        let mut names: Vec<_> = fs::read_dir(path)
            .map_err(io_err(path))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err(path))?;
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        let entries = names
            .into_iter()
            .map(|n| {
                let child = scan(&path.join(&n))?;
                Ok((n.into_encoded_bytes(), child))
            })
            .collect::<Result<_, AddError>>()?;
        Ok(Node::Dir { entries })
    } else {
        use std::os::unix::fs::FileTypeExt as _;
        let kind = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_block_device() || ft.is_char_device() {
            "a device node"
        } else {
            "this file type"
        };
        Err(AddError::Unsupported {
            path: path.to_owned(),
            kind,
        })
    }
}

/// Files to copy, with their destination, gathered from a scanned tree.
fn files<'a>(node: &'a Node, dest: &Path, out: &mut Vec<(&'a FileNode, PathBuf)>) {
    match node {
        Node::File(file) => out.push((file, dest.to_owned())),
        Node::Dir { entries } => {
            for (name, child) in entries {
                files(child, &dest.join(std::ffi::OsStr::from_bytes(name)), out);
            }
        }
        Node::Symlink { .. } => {}
    }
}

use std::os::unix::ffi::OsStrExt as _;

pub(crate) const MTIME: Duration = Duration::from_secs(1);

/// Paths installed under one set of locks by [`Store::add_paths`]: bounds the lock files
/// held open at once (each is a descriptor) while amortising the syncs over many paths.
pub(crate) const LOCK_CHUNK: usize = 512;

/// Subdirectories of a batch's temporary directory that its sources are spread over.
const SPREAD: usize = 64;

impl Store {
    /// Add the tree at `src` (a file, directory or symlink) as a content-addressed
    /// path named `name` (by default the last component of `src`).
    pub fn add_path(&self, src: &Path, name: Option<&str>) -> Result<Added, AddError> {
        self.add_path_with_references(src, name, &[])
    }

    /// Add the tree at `src` like [`Store::add_path`], recording as its references those
    /// of `candidates` (valid store paths) whose hash part occurs in it (see
    /// [`RefScanner`](crate::RefScanner)). The references are part of the path's
    /// fingerprint, so the same tree with other references is another path.
    pub fn add_path_with_references(
        &self,
        src: &Path,
        name: Option<&str>,
        candidates: &[StorePath],
    ) -> Result<Added, AddError> {
        let name = match name {
            Some(n) => n.to_owned(),
            None => src
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| AddError::NoName(src.to_owned()))?
                .to_owned(),
        };
        check_name(&name)?;
        let tree = scan(src)?;
        let source = crate::hash::hash_path(src).map_err(StoreError::from)?;
        let references = if candidates.is_empty() {
            BTreeSet::new()
        } else {
            RefScanner::new(candidates).scan_tree(src)?
        };
        let ref_list: Vec<StorePath> = references.iter().cloned().collect();
        let path = StorePath::new(
            &ContentKind::Source {
                references: &ref_list,
            },
            &source.hash,
            &name,
        )?;
        let _gc = self.lock_gc(false)?;
        // References must be valid: checked before anything is written.
        for reference in &ref_list {
            if !self.with_db(|db| db.is_valid(reference))? {
                return Err(DbError::MissingReference {
                    path,
                    reference: reference.clone(),
                }
                .into());
            }
        }
        let _lock = self.lock_path(&path)?;
        let mut added = Added::unwritten(path.clone(), &source);
        if self.with_db(|db| db.is_valid(&path))? {
            self.add_temp_root(&path)?;
            return Ok(added);
        }

        let tmp = self.temp_dir()?;
        let dest_root = tmp.join("t");
        let copied = self
            .copy_tree(&tree, &dest_root, &tmp)
            .and_then(|(hash, stats)| {
                if hash == source.hash {
                    Ok(stats)
                } else {
                    Err(AddError::Changed(src.to_owned()))
                }
            });
        let stats = match copied {
            Ok(stats) => stats,
            Err(e) => {
                let _ = remove_tree(&tmp);
                return Err(e);
            }
        };
        added.deduplicated = stats.deduplicated.load(Ordering::Relaxed);
        added.already_valid = false;
        self.install(&[(dest_root, path.clone())])?;
        remove_tree(&tmp)?;
        self.with_db(|db| db.register(&[added.path_info(references, now())]))?;
        self.add_temp_root(&path)?;
        Ok(added)
    }

    /// Add the tree at `src` as the content-addressed path `name` without copying it:
    /// `src` is the caller's own tree (a fetched checkout or unpacked archive) in this
    /// store's `.tmp/`, given up to the store. It is made canonical where it is (modes,
    /// mtimes, deduplication; each file read once, which gives the tree hash), then
    /// under the path's lock renamed into place. When the path is valid already, or on any error,
    /// `src` is removed: it is gone when this returns — except when it is not inside
    /// `.tmp/`, which is refused ([`AddError::NotOwned`]) and left alone.
    pub fn add_owned_tree(&self, src: &Path, name: &str) -> Result<Added, AddError> {
        // Anything else is not the store's to take (nor to remove).
        if !src.starts_with(self.store_dir().join(".tmp")) {
            return Err(AddError::NotOwned(src.to_owned()));
        }
        let result = self.add_owned(src, name);
        if fs::symlink_metadata(src).is_ok() {
            let _ = remove_tree(src);
        }
        result
    }

    fn add_owned(&self, src: &Path, name: &str) -> Result<Added, AddError> {
        check_name(name)?;
        // The tree is private to this process: it is made canonical first, then the path
        // is locked. (The GC lock covers the links made into `.links/` meanwhile.)
        let _gc = self.lock_gc(false)?;
        let (tree_hash, stats, deduplicated) = self.settle_owned(src)?;
        let path = StorePath::new(&ContentKind::Source { references: &[] }, &tree_hash, name)?;
        let mut added = Added {
            path,
            tree_hash,
            archive_size: stats.archive_size,
            files: stats.files,
            bytes: stats.bytes,
            deduplicated,
            already_valid: true,
        };
        let info = added.path_info(BTreeSet::new(), now());
        added.already_valid = self.install_owned(src, &info)?;
        if added.already_valid {
            added.deduplicated = 0;
        }
        Ok(added)
    }

    /// Register the tree at `src` as the build output `path`, the path its derivation
    /// names (input-addressed): `src` is the caller's own tree in this store's `.tmp/`
    /// (the build wrote it), given up to the store as by [`Store::add_owned_tree`]. It is
    /// made canonical in place; its references are those of `candidates` (and `path`
    /// itself) that its files name, plus `always`. Returns what was added and the
    /// references; when `path` was valid already, it is left as it was.
    pub fn add_output(
        &self,
        src: &Path,
        path: &StorePath,
        candidates: &BTreeSet<StorePath>,
        always: &BTreeSet<StorePath>,
    ) -> Result<(Added, BTreeSet<StorePath>), AddError> {
        if !src.starts_with(self.store_dir().join(".tmp")) {
            return Err(AddError::NotOwned(src.to_owned()));
        }
        let result = (|| {
            let _gc = self.lock_gc(false)?;
            let (tree_hash, stats, deduplicated) = self.settle_owned(src)?;
            let scanner = RefScanner::new(candidates.iter().chain([path]));
            let mut references = scanner.scan_tree(src)?;
            references.extend(always.iter().cloned());
            let mut added = Added {
                path: path.clone(),
                tree_hash,
                archive_size: stats.archive_size,
                files: stats.files,
                bytes: stats.bytes,
                deduplicated,
                already_valid: true,
            };
            let mut info = added.path_info(references.clone(), now());
            info.content_address = None;
            added.already_valid = self.install_owned(src, &info)?;
            Ok((added, references))
        })();
        if fs::symlink_metadata(src).is_ok() {
            let _ = remove_tree(src);
        }
        result
    }

    /// Make the owned tree at `src` canonical in place: modes, mtimes, deduplication
    /// (each file read once, which gives the tree hash). The caller holds the GC lock.
    fn settle_owned(&self, src: &Path) -> Result<([u8; 32], Stats, u64), AddError> {
        let tree = scan(src)?;
        let scratch = self.temp_dir()?;
        let settled = (|| {
            let links = self.store_dir().join(".links");
            let mut list = Vec::new();
            files(&tree, src, &mut list);
            let deduplicated = AtomicU64::new(0);
            let hashes: Vec<[u8; 32]> = list
                .par_iter()
                .map(|(node, _)| settle_in_place(node, &links, &scratch, &deduplicated))
                .collect::<Result<_, AddError>>()?;
            let mut stats = Stats::default();
            let hash = finish(&tree, src, &mut hashes.into_iter(), &mut stats)?;
            stats.archive_size += 16;
            Ok::<_, AddError>((hash, stats, deduplicated.load(Ordering::Relaxed)))
        })();
        let _ = remove_tree(&scratch);
        settled
    }

    /// Under the path's lock, rename the canonical tree `src` to `info.path` and register
    /// it, unless the path is valid already; `true` when it was. The caller holds the GC
    /// lock.
    fn install_owned(&self, src: &Path, info: &PathInfo) -> Result<bool, AddError> {
        let _lock = self.lock_path(&info.path)?;
        let valid = self.with_db(|db| db.is_valid(&info.path))?;
        if !valid {
            self.install(&[(src.to_owned(), info.path.clone())])?;
            self.with_db(|db| db.register(std::slice::from_ref(info)))?;
        }
        self.add_temp_root(&info.path)?;
        Ok(valid)
    }

    /// Add each of `sources` (files, directories or symlinks) as its own content-addressed
    /// path named after its last component, and return what was done for each, in order.
    ///
    /// One batch: every source is scanned and hashed before anything is written (a
    /// source the store cannot hold fails the whole call with nothing added), which
    /// names the paths; they are then taken in chunks of 512 in path order: their locks
    /// taken, the ones not valid yet copied (all their files in parallel), installed with
    /// one `syncfs` and one sync of the store directory, and registered in one
    /// transaction. The same source given twice is added once.
    pub fn add_paths<P: AsRef<Path> + Sync>(&self, sources: &[P]) -> Result<Vec<Added>, AddError> {
        let mut scanned = Vec::with_capacity(sources.len());
        for src in sources {
            let src = src.as_ref();
            let name = src
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| AddError::NoName(src.to_owned()))?
                .to_owned();
            check_name(&name)?;
            scanned.push((name, scan(src)?));
        }
        let hashed: Vec<crate::hash::TreeInfo> = sources
            .par_iter()
            .map(|src| crate::hash::hash_path(src.as_ref()).map_err(StoreError::from))
            .collect::<Result<_, _>>()?;
        let mut added = Vec::with_capacity(scanned.len());
        for ((name, _), source) in scanned.iter().zip(&hashed) {
            let path =
                StorePath::new(&ContentKind::Source { references: &[] }, &source.hash, name)?;
            added.push(Added::unwritten(path, source));
        }
        // Each distinct path once, in path order (the order locks are taken in).
        let mut order: Vec<usize> = (0..added.len()).collect();
        order.sort_by(|&a, &b| added[a].path.cmp(&added[b].path).then(a.cmp(&b)));
        order.dedup_by(|b, a| added[*a].path == added[*b].path);

        let _gc = self.lock_gc(false)?;
        for chunk in order.chunks(LOCK_CHUNK) {
            let _locks = chunk
                .iter()
                .map(|&i| self.lock_path(&added[i].path))
                .collect::<Result<Vec<File>, StoreError>>()?;
            let mut missing = Vec::new();
            for &i in chunk {
                if !self.with_db(|db| db.is_valid(&added[i].path))? {
                    missing.push(i);
                }
            }
            if !missing.is_empty() {
                let tmp = self.temp_dir()?;
                let result = self.add_missing(&scanned, sources, &mut added, &missing, &tmp);
                let cleaned = remove_tree(&tmp);
                result?;
                cleaned?;
            }
            let paths: Vec<StorePath> = chunk.iter().map(|&i| added[i].path.clone()).collect();
            self.add_temp_roots(&paths)?;
        }
        Ok(added)
    }

    /// Copy, check, install and register the trees `missing` (indices into `scanned`,
    /// `sources` and `added`, whose locks the caller holds with the GC lock); `tmp` is a
    /// private directory for them.
    fn add_missing<P: AsRef<Path>>(
        &self,
        scanned: &[(String, Node)],
        sources: &[P],
        added: &mut [Added],
        missing: &[usize],
        tmp: &Path,
    ) -> Result<(), AddError> {
        let links = self.store_dir().join(".links");
        // Spread over subdirectories: files are created in one directory one at a time
        // (under its lock), in different directories in parallel.
        for k in 0..missing.len().min(SPREAD) {
            let dir = tmp.join(format!("s{k}"));
            fs::create_dir(&dir).map_err(io_err(&dir))?;
        }
        let dests: Vec<PathBuf> = (0..missing.len())
            .map(|k| tmp.join(format!("s{}", k % SPREAD)).join(k.to_string()))
            .collect();
        let mut list = Vec::new();
        let mut owner = Vec::new();
        for (k, (&i, dest)) in missing.iter().zip(&dests).enumerate() {
            make_dirs(&scanned[i].1, dest)?;
            files(&scanned[i].1, dest, &mut list);
            owner.resize(list.len(), k);
        }
        let dedup: Vec<AtomicU64> = missing.iter().map(|_| AtomicU64::new(0)).collect();
        let hashes: Vec<[u8; 32]> = list
            .par_iter()
            .zip(&owner)
            .map(|((node, to), &k)| copy_file(node, to, &links, tmp, &dedup[k]))
            .collect::<Result<_, AddError>>()?;
        let mut hashes = hashes.into_iter();
        let registered = now();
        let mut batch = Vec::with_capacity(missing.len());
        let mut infos = Vec::with_capacity(missing.len());
        for (k, (&i, dest)) in missing.iter().zip(&dests).enumerate() {
            let mut stats = Stats::default();
            let tree_hash = finish(&scanned[i].1, dest, &mut hashes, &mut stats)?;
            let a = &mut added[i];
            if tree_hash != a.tree_hash {
                return Err(AddError::Changed(sources[i].as_ref().to_owned()));
            }
            a.deduplicated = dedup[k].load(Ordering::Relaxed);
            a.already_valid = false;
            batch.push((dest.clone(), a.path.clone()));
            infos.push(a.path_info(BTreeSet::new(), registered));
        }
        let installed = self
            .install(&batch)
            .and_then(|()| Ok(self.with_db(|db| db.register(&infos))?));
        if let Err(e) = installed {
            // What was renamed into place is not valid: take it away again.
            for (tree, path) in &batch {
                if !tree.exists() {
                    let _ = remove_tree(&self.physical(path));
                }
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// A fresh private directory under `.tmp/` (on the store's filesystem), for a tree the
    /// caller makes and then gives to the store ([`Store::add_owned_tree`],
    /// [`Store::add_output`]). The caller removes what it does not give.
    pub fn temp_dir(&self) -> Result<PathBuf, StoreError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = self.store_dir().join(".tmp");
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = base.join(format!("add-{}-{n}", std::process::id()));
            match fs::create_dir(&dir) {
                Ok(()) => return Ok(dir),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(&dir)(e)),
            }
        }
    }

    /// Sync the prepared trees and rename each into place (replacing a stray, invalid
    /// copy left by a crash): one `syncfs` and one sync of the store directory for the
    /// whole batch. The caller holds the paths' locks.
    pub(crate) fn install(&self, batch: &[(PathBuf, StorePath)]) -> Result<(), StoreError> {
        let store = File::open(self.store_dir()).map_err(io_err(self.store_dir()))?;
        rustix::fs::syncfs(&store).map_err(|e| io_err(self.store_dir())(e.into()))?;
        for (prepared, path) in batch {
            let dest = self.physical(path);
            if fs::symlink_metadata(&dest).is_ok() {
                let stray = self.store_dir().join(".trash").join(format!(
                    "stray-{}-{}",
                    std::process::id(),
                    path.base_name()
                ));
                fs::rename(&dest, &stray).map_err(io_err(&dest))?;
                remove_tree(&stray)?;
            }
            fs::rename(prepared, &dest).map_err(io_err(&dest))?;
        }
        store.sync_all().map_err(io_err(self.store_dir()))
    }

    /// Copy a scanned tree to `dest` canonically, returning its tree hash.
    /// `scratch` is a private directory beside `dest` for temporary names.
    fn copy_tree(
        &self,
        tree: &Node,
        dest: &Path,
        scratch: &Path,
    ) -> Result<([u8; 32], Stats), AddError> {
        let stats = Stats::default();
        make_dirs(tree, dest)?;
        let mut list = Vec::new();
        files(tree, dest, &mut list);
        let links = self.store_dir().join(".links");
        let hashes: Vec<[u8; 32]> = list
            .par_iter()
            .map(|(node, to)| copy_file(node, to, &links, scratch, &stats.deduplicated))
            .collect::<Result<_, AddError>>()?;
        let mut it = hashes.into_iter();
        let mut stats = stats;
        let hash = finish(tree, dest, &mut it, &mut stats)?;
        stats.archive_size += 16;
        Ok((hash, stats))
    }
}

#[derive(Debug, Default)]
struct Stats {
    archive_size: u64,
    files: u64,
    bytes: u64,
    deduplicated: AtomicU64,
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Create the directories and symlinks (writable for now).
fn make_dirs(node: &Node, dest: &Path) -> Result<(), AddError> {
    match node {
        Node::Dir { entries } => {
            fs::create_dir(dest).map_err(io_err(dest))?;
            for (name, child) in entries {
                make_dirs(child, &dest.join(std::ffi::OsStr::from_bytes(name)))?;
            }
        }
        Node::Symlink { target } => {
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), dest)
                .map_err(io_err(dest))?;
        }
        Node::File(_) => {}
    }
    Ok(())
}

/// Copy one file, make it canonical, deduplicate it; return its node hash.
///
/// A small file is read into memory and hashed first: when its content is in `.links/`
/// already, the copy is that entry, linked, and nothing is written. Otherwise it is
/// written through one descriptor (created with its final mode, mtime set on the
/// descriptor) and becomes the entry.
fn copy_file(
    node: &FileNode,
    to: &Path,
    links: &Path,
    scratch: &Path,
    deduplicated: &AtomicU64,
) -> Result<[u8; 32], AddError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let FileNode {
        src,
        size,
        executable,
    } = node;
    let mode = if *executable { 0o555 } else { 0o444 };
    let (hash, file) = if *size >= LARGE_FILE {
        // The kernel copies (no pass through user space); the copy is then hashed in
        // chunks, each with blake3's multi-threaded mode while the next is read, so what
        // is hashed is what is stored, and memory stays two chunks whatever the size.
        fs::copy(src, to).map_err(io_err(src))?;
        hash_file(to, *size, *executable)?
    } else {
        let data = fs::read(src).map_err(io_err(src))?;
        if data.len() as u64 != *size {
            return Err(AddError::Changed(src.clone()));
        }
        let hash = file_hash(*executable, *size, blake3::hash(&data).as_bytes());
        let link = links.join(crate::base32::encode(&hash));
        if fs::hard_link(&link, to).is_ok() {
            if fs::symlink_metadata(to).is_ok_and(|m| m.len() == *size) {
                deduplicated.fetch_add(*size, Ordering::Relaxed);
                return Ok(hash);
            }
            // Not what its name says (a damaged store): copy after all.
            fs::remove_file(to).map_err(io_err(to))?;
        }
        let mut f = File::options()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(to)
            .map_err(io_err(to))?;
        f.write_all(&data).map_err(io_err(to))?;
        (hash, f)
    };
    settle(&file, to, mode, &hash, *size, links, scratch, deduplicated)?;
    Ok(hash)
}

/// Make the file `to` (open as `file`, content hash `hash`) canonical — `mode`, mtime 1 —
/// and deduplicate it: it becomes its content's entry in `links`, or is replaced by a
/// hard link to the entry already there (its size counted in `deduplicated`).
#[expect(
    clippy::too_many_arguments,
    reason = "one file's whole context, from two callers"
)]
fn settle(
    file: &File,
    to: &Path,
    mode: u32,
    hash: &[u8; 32],
    size: u64,
    links: &Path,
    scratch: &Path,
    deduplicated: &AtomicU64,
) -> Result<(), AddError> {
    file.set_modified(UNIX_EPOCH + MTIME).map_err(io_err(to))?;
    // Explicitly: a mode given at creation went through the umask.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err(to))?;
    // Dedup: one inode per (content, executable bit).
    let link = links.join(crate::base32::encode(hash));
    // Other failures (too many links, another filesystem) only lose the optimisation.
    if let Err(e) = fs::hard_link(to, &link)
        && e.kind() == io::ErrorKind::AlreadyExists
        && fs::metadata(&link).is_ok_and(|m| m.len() == size)
    {
        // Link the shared inode under a name no other file of the tree can have, then
        // rename it over the file.
        static N: AtomicU64 = AtomicU64::new(0);
        let tmp = scratch.join(format!(
            "dedup-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        if fs::hard_link(&link, &tmp).is_ok() {
            fs::rename(&tmp, to).map_err(io_err(to))?;
            deduplicated.fetch_add(size, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Open the file at `path` (read-only is enough: mode and mtime are set by the owner) and
/// hash it in chunks, each with blake3's multi-threaded mode while the next is read:
/// its node hash, and the open file.
fn hash_file(path: &Path, size: u64, executable: bool) -> Result<([u8; 32], File), AddError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut buf = Vec::new();
    let content = crate::walk::read_content(&mut file, size, path, &mut buf, |_| Ok(()))
        .map_err(StoreError::from)?;
    Ok((file_hash(executable, size, &content), file))
}

/// Make a file of an owned tree canonical where it is (see [`settle`]); return its node
/// hash.
fn settle_in_place(
    node: &FileNode,
    links: &Path,
    scratch: &Path,
    deduplicated: &AtomicU64,
) -> Result<[u8; 32], AddError> {
    let FileNode {
        src,
        size,
        executable,
    } = node;
    let (hash, file) = hash_file(src, *size, *executable)?;
    let mode = if *executable { 0o555 } else { 0o444 };
    settle(&file, src, mode, &hash, *size, links, scratch, deduplicated)?;
    Ok(hash)
}

/// Compute directory hashes bottom-up, make directories read-only with mtime 1, and sum
/// up the archive size.
fn finish(
    node: &Node,
    dest: &Path,
    file_hashes: &mut impl Iterator<Item = [u8; 32]>,
    stats: &mut Stats,
) -> Result<[u8; 32], AddError> {
    stats.archive_size += 8;
    Ok(match node {
        Node::File(FileNode { size, .. }) => {
            stats.files += 1;
            stats.bytes += size;
            stats.archive_size += 8 + pad8(*size);
            file_hashes.next().expect("one hash per file, in order")
        }
        Node::Symlink { target } => {
            stats.archive_size += 8 + pad8(target.len() as u64);
            symlink_hash(target)
        }
        Node::Dir { entries } => {
            stats.archive_size += 8;
            let mut dir = DirHasher::new(entries.len() as u64);
            for (name, child) in entries {
                stats.archive_size += 8 + pad8(name.len() as u64);
                let h = finish(
                    child,
                    &dest.join(std::ffi::OsStr::from_bytes(name)),
                    file_hashes,
                    stats,
                )?;
                dir.entry(name, &h);
            }
            let d = File::open(dest).map_err(io_err(dest))?;
            d.set_modified(UNIX_EPOCH + MTIME).map_err(io_err(dest))?;
            fs::set_permissions(dest, fs::Permissions::from_mode(0o555)).map_err(io_err(dest))?;
            dir.finish()
        }
    })
}
