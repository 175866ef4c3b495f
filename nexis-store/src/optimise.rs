//! Deduplicating paths after the fact: `optimise`.
//!
//! Adding a path already links each of its files to the one inode per distinct file kept
//! under `.links/` (named by the base-32 file-node hash: content and executable bit, see
//! `docs/store.md`). `optimise` does the same for files that are not linked yet (added
//! by an older nexis, unpacked by an import, or whose link could not be made at the
//! time): a file whose inode is already a `.links/` entry is skipped without being read;
//! any other is hashed, and then either becomes the entry for its content, or is replaced
//! (hard link under a scratch name, then `rename` over it: atomic) by the existing entry.
//!
//! Replacing a file changes its directory, so the directory is made writable for the
//! moment and then given back mode 0555 and mtime 1. A crash in that moment leaves the
//! path's content intact but its directory with a non-canonical mode or mtime, which
//! `verify` reports. Each path is optimised under the GC lock (shared) after checking it
//! is still valid, so a collection never deletes a path while its files are replaced.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirEntryExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use rayon::prelude::*;

use crate::hash::file_hash;
use crate::path::StorePath;
use crate::store::{Store, StoreError, io_err};

/// What `optimise` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptimiseReport {
    /// Valid paths looked at.
    pub paths: usize,
    /// Regular files looked at.
    pub files: u64,
    /// Files that were already a `.links/` entry's inode (not read).
    pub already_linked: u64,
    /// Files that became the `.links/` entry for their content.
    pub new_links: u64,
    /// Files replaced by a hard link to an identical file.
    pub replaced: u64,
    /// Bytes of file content freed by the replacements.
    pub bytes_saved: u64,
}

/// Progress of `optimise`, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptimiseProgress {
    /// Paths done.
    pub done: usize,
    /// Paths to do.
    pub total: usize,
}

/// Numbers scratch names.
static SCRATCH: AtomicU64 = AtomicU64::new(0);

/// A file to replace by the `.links/` entry `link`.
struct Replace {
    file: PathBuf,
    link: PathBuf,
    size: u64,
    /// The file's inode has no other name: replacing it frees its content.
    last_name: bool,
}

impl Store {
    /// Hard-link every identical file of every valid path to one copy; report what was
    /// done and the bytes saved.
    pub fn optimise(
        &self,
        progress: &(dyn Fn(OptimiseProgress) + Sync),
    ) -> Result<OptimiseReport, StoreError> {
        let links = self.store_dir().join(".links");
        // Inodes that are entries already (the listing gives them without a stat each).
        let mut linked = HashSet::new();
        for entry in fs::read_dir(&links).map_err(io_err(&links))? {
            linked.insert(entry.map_err(io_err(&links))?.ino());
        }
        let paths = self.with_db(|db| db.all_valid())?;
        let mut report = OptimiseReport::default();
        let scratch = self.temp_dir()?;
        let result = paths.iter().enumerate().try_for_each(|(i, path)| {
            self.optimise_path(path, &links, &linked, &scratch, &mut report)?;
            progress(OptimiseProgress {
                done: i + 1,
                total: paths.len(),
            });
            Ok(())
        });
        let removed = crate::gc::remove_tree(&scratch);
        result.and(removed)?;
        Ok(report)
    }

    fn optimise_path(
        &self,
        path: &StorePath,
        links: &Path,
        linked: &HashSet<u64>,
        scratch: &Path,
        report: &mut OptimiseReport,
    ) -> Result<(), StoreError> {
        let _gc = self.lock_gc(false)?;
        if !self.with_db(|db| db.is_valid(path))? {
            return Ok(());
        }
        report.paths += 1;
        let root = self.physical(path);
        let mut files = Vec::new();
        regular_files(&root, &mut files)?;
        let count = files.len() as u64;
        let todo: Vec<(PathBuf, fs::Metadata)> = files
            .into_iter()
            .filter(|(_, meta)| !linked.contains(&meta.ino()))
            .collect();
        report.files += count;
        report.already_linked += count - todo.len() as u64;
        let new_links = AtomicU64::new(0);
        let replace: Vec<Replace> = todo
            .par_iter()
            .filter_map(|(file, meta)| link_or_plan(file, meta, links, &new_links).transpose())
            .collect::<Result<_, _>>()?;
        report.new_links += new_links.load(Ordering::Relaxed);

        // Replace files directory by directory, each made writable only meanwhile.
        let mut by_dir: BTreeMap<PathBuf, Vec<Replace>> = BTreeMap::new();
        for r in replace {
            let dir = r.file.parent().unwrap_or(Path::new("/")).to_owned();
            by_dir.entry(dir).or_default().push(r);
        }
        for (dir, files) in by_dir {
            // The store directory itself (a path that is a single file) keeps its mode.
            let inside = dir != self.store_dir();
            if inside {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                    .map_err(io_err(&dir))?;
            }
            let result = files.iter().try_for_each(|r| -> Result<(), StoreError> {
                let tmp = scratch.join(format!("link-{}", SCRATCH.fetch_add(1, Ordering::Relaxed)));
                match fs::hard_link(&r.link, &tmp) {
                    Ok(()) => {}
                    // Collected meanwhile, or too many links: keep the file as it is.
                    Err(_) => return Ok(()),
                }
                fs::rename(&tmp, &r.file).map_err(io_err(&r.file))?;
                report.replaced += 1;
                if r.last_name {
                    report.bytes_saved += r.size;
                }
                Ok(())
            });
            if inside {
                canonical_dir(&dir)?;
            }
            result?;
        }
        Ok(())
    }
}

/// Give a store directory back its canonical mtime and mode.
fn canonical_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.set_modified(UNIX_EPOCH + Duration::from_secs(1)))
        .map_err(io_err(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).map_err(io_err(dir))
}

/// Every regular file under `root` (not following symlinks), with its metadata.
fn regular_files(root: &Path, out: &mut Vec<(PathBuf, fs::Metadata)>) -> Result<(), StoreError> {
    let mut stack = vec![root.to_owned()];
    while let Some(p) = stack.pop() {
        let meta = fs::symlink_metadata(&p).map_err(io_err(&p))?;
        if meta.is_file() {
            out.push((p, meta));
        } else if meta.is_dir() {
            for entry in fs::read_dir(&p).map_err(io_err(&p))? {
                stack.push(entry.map_err(io_err(&p))?.path());
            }
        }
    }
    Ok(())
}

/// Hash a file not yet linked and make it its content's `.links/` entry, or, when the
/// entry exists already, say that the file is to be replaced by it.
fn link_or_plan(
    file: &Path,
    meta: &fs::Metadata,
    links: &Path,
    new_links: &AtomicU64,
) -> Result<Option<Replace>, StoreError> {
    let executable = meta.permissions().mode() & 0o111 != 0;
    let mut hasher = blake3::Hasher::new();
    if meta.len() >= crate::hash::LARGE_FILE {
        hasher.update_mmap_rayon(file).map_err(io_err(file))?;
    } else {
        hasher
            .update_reader(File::open(file).map_err(io_err(file))?)
            .map_err(io_err(file))?;
    }
    let node = file_hash(executable, meta.len(), hasher.finalize().as_bytes());
    let link = links.join(crate::base32::encode(&node));
    match fs::hard_link(file, &link) {
        Ok(()) => {
            new_links.fetch_add(1, Ordering::Relaxed);
            Ok(None)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let Ok(entry) = fs::metadata(&link) else {
                return Ok(None);
            };
            if entry.ino() == meta.ino() || entry.len() != meta.len() {
                return Ok(None);
            }
            Ok(Some(Replace {
                file: file.to_owned(),
                link,
                size: meta.len(),
                last_name: meta.nlink() == 1,
            }))
        }
        // Too many links, or the like: this file stays as it is.
        Err(_) => Ok(None),
    }
}
