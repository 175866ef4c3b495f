//! Garbage collection: roots, marking through the database, and crash-safe sweeping.
//!
//! Roots are the symlinks under `gcroots/` (followed once more when they point outside
//! the store, as `result` links do; such links are pruned when their target is gone),
//! the symlinks under `profiles/`, and the temp roots of running processes. Marking is
//! one recursive query over the reference table: the cost is the live closure plus one
//! pass over the table of valid paths, never a walk of the store's directories. Sweeping:
//!
//! 1. write the paths to delete to `gc-journal` and sync it;
//! 2. forget them in the database, in one transaction;
//! 3. move each into `.trash/` with one rename and delete it there, paths in parallel;
//! 4. remove the journal.
//!
//! A crash before 2 changes nothing; after 2 the next collection finishes 3 and 4 from the
//! journal. A valid path is never missing its files, and no path a root reaches is ever
//! touched.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::path::{STORE_DIR, StorePath};
use crate::store::{Store, StoreError, io_err};

/// What to collect.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcOptions {
    /// Report what would be deleted, delete nothing.
    pub dry_run: bool,
    /// Stop once this many bytes (archive sizes) are freed.
    pub max_freed: Option<u64>,
}

/// What a collection did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Paths deleted, in deletion order.
    pub deleted: Vec<StorePath>,
    /// Sum of their archive sizes.
    pub bytes_freed: u64,
    /// Paths kept alive by roots.
    pub live: usize,
}

/// Progress of a collection, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub enum GcProgress {
    /// Marking done: this many live and dead paths.
    Marked {
        /// Reachable from roots.
        live: usize,
        /// To delete.
        dead: usize,
    },
    /// One more path deleted out of `total`.
    Deleted {
        /// Done so far.
        done: usize,
        /// To do.
        total: usize,
    },
}

impl Store {
    /// Every root and where it comes from (the link or temp-roots file naming it).
    pub fn roots(&self) -> Result<BTreeMap<StorePath, BTreeSet<PathBuf>>, StoreError> {
        let mut roots: BTreeMap<StorePath, BTreeSet<PathBuf>> = BTreeMap::new();
        let mut add = |p: StorePath, from: &Path| {
            roots.entry(p).or_default().insert(from.to_owned());
        };
        for dir in ["gcroots", "profiles"] {
            let mut links = Vec::new();
            walk_links(&self.state_dir().join(dir), &mut links)?;
            // One `readlink` or two per root, in parallel: there may be many.
            let targets: Vec<Result<Option<StorePath>, StoreError>> =
                links.par_iter().map(|l| self.link_target(l)).collect();
            for (link, target) in links.into_iter().zip(targets) {
                match target? {
                    Some(p) => add(p, &link),
                    None if dir == "gcroots" && !self.exists_logical(&link)? => {
                        // An indirect root whose `result` link is gone: prune it.
                        let _ = fs::remove_file(&link);
                    }
                    None => {}
                }
            }
        }
        let temp = self.state_dir().join("temproots");
        for entry in fs::read_dir(&temp).map_err(io_err(&temp))? {
            let file = entry.map_err(io_err(&temp))?.path();
            let Ok(mut f) = File::open(&file) else {
                continue;
            };
            if f.try_lock().is_ok() {
                // Nobody holds it: its process is gone.
                let _ = fs::remove_file(&file);
                continue;
            }
            let mut text = String::new();
            f.read_to_string(&mut text).map_err(io_err(&file))?;
            for line in text.lines() {
                if let Ok(p) = StorePath::parse(line) {
                    add(p, &file);
                }
            }
        }
        Ok(roots)
    }

    /// The store path a root link leads to: directly, or through one more link outside
    /// the store (`gcroots/auto/x -> /home/u/result -> /nexis/store/…`). That link is
    /// looked for in the root's namespace first, then (with `--root`) on the host, where
    /// a build run with `--root DIR` puts its `result` links, pointing at
    /// `DIR/nexis/store/…`.
    fn link_target(&self, link: &Path) -> Result<Option<StorePath>, StoreError> {
        let mut target = fs::read_link(link).map_err(io_err(link))?;
        for _ in 0..2 {
            if let Some(p) = self.store_path_of(&target) {
                return Ok(Some(p));
            }
            let next = self
                .places_of(&target)
                .into_iter()
                .find_map(|place| fs::read_link(place).ok());
            match next {
                Some(next) => target = next,
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    fn exists_logical(&self, link: &Path) -> Result<bool, StoreError> {
        let target = fs::read_link(link).map_err(io_err(link))?;
        Ok(self
            .places_of(&target)
            .iter()
            .any(|p| fs::symlink_metadata(p).is_ok()))
    }

    /// Where an absolute path named by a root may be: in the root's namespace, and on
    /// the host when the root is not `/`.
    fn places_of(&self, logical: &Path) -> Vec<PathBuf> {
        match logical.strip_prefix("/") {
            Ok(rel) if self.root() != Path::new("/") => {
                vec![self.root().join(rel), logical.to_owned()]
            }
            Ok(rel) => vec![self.root().join(rel)],
            Err(_) => vec![logical.to_owned()],
        }
    }

    /// The store path `target` is in: under the logical store directory, or under this
    /// store's physical one.
    fn store_path_of(&self, target: &Path) -> Option<StorePath> {
        store_path_of(target).or_else(|| {
            let rest = target.strip_prefix(self.store_dir()).ok()?;
            let first = rest.components().next()?;
            StorePath::from_base_name(first.as_os_str().to_str()?).ok()
        })
    }

    /// Register `link` (e.g. a `result` symlink created by a build) as an indirect GC
    /// root named `name` under `gcroots/auto/`.
    pub fn add_indirect_root(&self, name: &str, link: &Path) -> Result<(), StoreError> {
        let dir = self.state_dir().join("gcroots/auto");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let at = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(link, &tmp).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &at).map_err(io_err(&at))
    }

    /// Collect garbage: delete every valid path no root reaches.
    pub fn collect_garbage(
        &self,
        options: GcOptions,
        progress: &(dyn Fn(GcProgress) + Sync),
    ) -> Result<GcReport, StoreError> {
        let _gc = self.lock_gc(true)?;
        self.finish_interrupted()?;
        let roots: Vec<StorePath> = self.roots()?.into_keys().collect();
        let (live, dead) = self.with_db(|db| db.dead_paths(&roots))?;
        progress(GcProgress::Marked {
            live,
            dead: dead.len(),
        });
        // Delete referrers before what they refer to, so that every batch leaves the
        // database consistent even when `max_freed` stops early.
        let order = referrers_first(self, &dead)?;
        let mut report = GcReport {
            live,
            ..GcReport::default()
        };
        for (path, size) in order {
            if options
                .max_freed
                .is_some_and(|max| report.bytes_freed >= max)
            {
                break;
            }
            report.bytes_freed += size;
            report.deleted.push(path);
        }
        if options.dry_run || report.deleted.is_empty() {
            return Ok(report);
        }
        let journal = self.state_dir().join("gc-journal");
        write_journal(&journal, &report.deleted)?;
        self.with_db(|db| db.invalidate(&report.deleted))?;
        self.sweep(&report.deleted, progress)?;
        fs::remove_file(&journal).map_err(io_err(&journal))?;
        Ok(report)
    }

    /// Finish a collection that was interrupted after it changed the database.
    fn finish_interrupted(&self) -> Result<(), StoreError> {
        let journal = self.state_dir().join("gc-journal");
        let text = match fs::read_to_string(&journal) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err(&journal)(e)),
        };
        let mut gone = Vec::new();
        for line in text.lines() {
            if let Ok(p) = StorePath::parse(line)
                && !self.with_db(|db| db.is_valid(&p))?
            {
                gone.push(p);
            }
        }
        self.sweep(&gone, &|_| {})?;
        let _ = fs::remove_file(&journal);
        // Anything left in the trash by an interrupted sweep.
        let trash = self.store_dir().join(".trash");
        let leftovers: Vec<PathBuf> = fs::read_dir(&trash)
            .map_err(io_err(&trash))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        let links = self.store_dir().join(".links");
        leftovers
            .par_iter()
            .try_for_each(|p| remove_garbage(p, &links))
    }

    /// Move each path (already invalid) into the trash with one rename and delete it
    /// there; paths in parallel.
    fn sweep(
        &self,
        paths: &[StorePath],
        progress: &(dyn Fn(GcProgress) + Sync),
    ) -> Result<(), StoreError> {
        let trash = self.store_dir().join(".trash");
        let links = self.store_dir().join(".links");
        let total = paths.len();
        let done = std::sync::atomic::AtomicUsize::new(0);
        paths.par_iter().try_for_each(|p| {
            let from = self.physical(p);
            let to = trash.join(p.base_name());
            match fs::rename(&from, &to) {
                Ok(()) => remove_garbage(&to, &links)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&from)(e)),
            }
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(GcProgress::Deleted { done: n, total });
            Ok(())
        })
    }
}

/// The store path a link target names, if it points into the store.
fn store_path_of(target: &Path) -> Option<StorePath> {
    let rest = target.strip_prefix(STORE_DIR).ok()?;
    let first = rest.components().next()?;
    StorePath::from_base_name(first.as_os_str().to_str()?).ok()
}

/// All symlinks below `dir` (not following them).
fn walk_links(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let kind = entry.file_type().map_err(io_err(&entry.path()))?;
        if kind.is_symlink() {
            out.push(entry.path());
        } else if kind.is_dir() {
            walk_links(&entry.path(), out)?;
        }
    }
    Ok(())
}

/// Order dead paths so that each comes after every dead path referring to it.
fn referrers_first(
    store: &Store,
    dead: &[(StorePath, u64)],
) -> Result<Vec<(StorePath, u64)>, StoreError> {
    let paths: Vec<StorePath> = dead.iter().map(|(p, _)| p.clone()).collect();
    let edges = store.with_db(|db| db.references_among(&paths))?;
    let index: BTreeMap<&StorePath, usize> =
        paths.iter().enumerate().map(|(i, p)| (p, i)).collect();
    let mut pending = vec![0usize; dead.len()];
    let mut refs: Vec<Vec<usize>> = vec![Vec::new(); dead.len()];
    for (from, to) in &edges {
        let (Some(&f), Some(&t)) = (index.get(from), index.get(to)) else {
            continue;
        };
        refs[f].push(t);
        pending[t] += 1;
    }
    let mut ready: Vec<usize> = (0..dead.len()).rev().filter(|&i| pending[i] == 0).collect();
    let mut placed = vec![false; dead.len()];
    let mut out = Vec::with_capacity(dead.len());
    while let Some(i) = ready.pop() {
        placed[i] = true;
        out.push(dead[i].clone());
        for &t in &refs[i] {
            pending[t] -= 1;
            if pending[t] == 0 {
                ready.push(t);
            }
        }
    }
    // Dead paths in a reference cycle (not made by nexis, but a database could hold one)
    // go last, together.
    out.extend(
        dead.iter()
            .zip(&placed)
            .filter(|(_, placed)| !**placed)
            .map(|(d, _)| d.clone()),
    );
    Ok(out)
}

fn write_journal(journal: &Path, paths: &[StorePath]) -> Result<(), StoreError> {
    let f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(journal)
        .map_err(io_err(journal))?;
    let mut out = std::io::BufWriter::new(f);
    for p in paths {
        writeln!(out, "{p}").map_err(io_err(journal))?;
    }
    let f = out
        .into_inner()
        .map_err(|e| io_err(journal)(e.into_error()))?;
    f.sync_all().map_err(io_err(journal))
}

/// Remove a dead path's tree, and the dedup links of files it was the last user of
/// (a file with two links whose other link is its `.links/` entry). The cost is the size
/// of the garbage, never of the store.
fn remove_garbage(path: &Path, links: &Path) -> Result<(), StoreError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(path)(e)),
    };
    if meta.is_dir() {
        if meta.permissions().mode() & 0o700 != 0o700 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io_err(path))?;
        }
        for entry in fs::read_dir(path).map_err(io_err(path))? {
            remove_garbage(&entry.map_err(io_err(path))?.path(), links)?;
        }
        return fs::remove_dir(path).map_err(io_err(path));
    }
    if meta.is_file() && meta.nlink() >= 2 {
        // Unlink first, then look at the count: whoever leaves only the `.links/` entry
        // behind removes it, however the deletions interleave.
        let file = File::open(path).map_err(io_err(path))?;
        fs::remove_file(path).map_err(io_err(path))?;
        let now = file.metadata().map_err(io_err(path))?;
        if now.nlink() == 1 {
            let executable = now.permissions().mode() & 0o111 != 0;
            let mut h = blake3::Hasher::new();
            if h.update_reader(&file).is_ok() {
                let node = crate::hash::file_hash(executable, now.len(), h.finalize().as_bytes());
                let link = links.join(crate::base32::encode(&node));
                if fs::symlink_metadata(&link)
                    .is_ok_and(|l| l.ino() == now.ino() && l.dev() == now.dev())
                {
                    let _ = fs::remove_file(&link);
                }
            }
        }
        return Ok(());
    }
    fs::remove_file(path).map_err(io_err(path))
}

/// Remove a tree whose directories may be read-only (store paths are); nothing to do
/// when it is already gone.
pub(crate) fn remove_tree(path: &Path) -> Result<(), StoreError> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    crate::archive::remove_tree(path).map_err(StoreError::from)
}
