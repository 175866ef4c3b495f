//! Repairing the store: `repair`.
//!
//! Repair starts from [`verify`](Store::verify) and fixes what it can:
//!
//! - a file or directory whose content is right but whose mode or mtime is not canonical
//!   is made canonical again in place (no cache needed);
//! - a valid path that is missing, modified or unreadable is fetched again from a binary
//!   cache (a [`CacheSource`]: a directory, or HTTP through nexis-fetch): its archive file is
//!   checked against the cache's info (file hash and size) and the unpacked tree against
//!   **this store's database** (tree hash and archive size), so no signature is needed —
//!   the database already says what the path must hold. The good tree is prepared in
//!   `.tmp/`, synced, and swapped with the damaged one in one atomic exchange
//!   (`renameat2(RENAME_EXCHANGE)`), so at every instant the path is either the damaged
//!   tree or the good one, never absent; the damaged tree is then deleted.
//!
//! What cannot be fixed stays in the report: paths not valid, dangling reference rows,
//! paths the cache lacks or holds with other content.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::archive::remove_tree;
use crate::cache::{CacheError, CacheInfo};
use crate::path::StorePath;
use crate::receive::{FileDigest, ReceiveError, Trust};
use crate::store::{Store, StoreError, error_chain, io_err};
use crate::substitute::{CacheSource, DirCache};
use crate::verify::{Problem, VerifyReport};

/// What [`Store::repair`] did.
#[derive(Debug, Default)]
pub struct RepairReport {
    /// Valid paths checked.
    pub checked: usize,
    /// Paths restored from the binary cache, in path order.
    pub restored: Vec<StorePath>,
    /// Files and directories whose mode and mtime were made canonical again.
    pub canonicalised: Vec<PathBuf>,
    /// What is still wrong, with why it could not be repaired.
    pub unrepaired: Vec<(Problem, String)>,
}

impl RepairReport {
    /// Whether everything found was repaired.
    pub fn is_clean(&self) -> bool {
        self.unrepaired.is_empty()
    }
}

impl Store {
    /// Verify `paths` (or, given `None`, every valid path) and repair what is wrong:
    /// modes and mtimes in place, content from the binary cache in `cache` (a directory)
    /// when one is given. See the module documentation.
    pub fn repair(
        &self,
        paths: Option<&[StorePath]>,
        cache: Option<&Path>,
    ) -> Result<RepairReport, StoreError> {
        match cache {
            Some(dir) => self.repair_from(paths, Some(&mut DirCache::new(dir))),
            None => self.repair_from(paths, None::<&mut DirCache>),
        }
    }

    /// [`Store::repair`] restoring content from any [`CacheSource`] (the HTTP caches of
    /// nexis-fetch, say).
    pub fn repair_from<S: CacheSource + ?Sized>(
        &self,
        paths: Option<&[StorePath]>,
        mut cache: Option<&mut S>,
    ) -> Result<RepairReport, StoreError> {
        let VerifyReport { checked, problems } = self.verify(paths, &|_| {})?;
        let mut report = RepairReport {
            checked,
            ..RepairReport::default()
        };
        // Paths whose content is wrong are restored whole; metadata problems of those
        // paths are fixed by the restoration.
        let mut to_restore: Vec<StorePath> = problems
            .iter()
            .filter_map(|p| match p {
                Problem::Missing { path }
                | Problem::Mismatch { path, .. }
                | Problem::Unreadable { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect();
        to_restore.sort();
        to_restore.dedup();

        let mut restore_problems = Vec::new();
        for problem in problems {
            match &problem {
                Problem::Metadata {
                    path,
                    file,
                    expected_mode,
                    ..
                } if to_restore.binary_search(path).is_err() => {
                    match canonicalise(file, *expected_mode) {
                        Ok(()) => report.canonicalised.push(file.clone()),
                        Err(e) => report.unrepaired.push((problem, e.to_string())),
                    }
                }
                Problem::Metadata { .. } => {}
                Problem::Missing { .. } | Problem::Mismatch { .. } | Problem::Unreadable { .. } => {
                    restore_problems.push(problem);
                }
                Problem::NotValid { .. } => {
                    report
                        .unrepaired
                        .push((problem, "nothing to repair: not a valid path".into()));
                }
                Problem::Dangling(_) => report.unrepaired.push((
                    problem,
                    "the database is damaged; repair does not edit it".into(),
                )),
            }
        }
        for problem in restore_problems {
            let path = problem
                .path()
                .expect("content problems name a path")
                .clone();
            let why = match cache.as_deref_mut() {
                None => Some("no binary cache given to restore it from".to_owned()),
                Some(source) => match self.restore_from(source, &path) {
                    Ok(()) => None,
                    Err(e) => Some(error_chain(&e)),
                },
            };
            match why {
                None => {
                    if report.restored.last() != Some(&path) {
                        report.restored.push(path);
                    }
                }
                Some(why) => report.unrepaired.push((problem, why)),
            }
        }
        Ok(report)
    }

    /// Fetch `path` (valid) again from `source` and swap it with what the store holds.
    fn restore_from<S: CacheSource + ?Sized>(
        &self,
        source: &mut S,
        path: &StorePath,
    ) -> Result<(), S::Error> {
        let known = self
            .with_db(|db| db.query(path))
            .map_err(CacheError::from)?
            .ok_or_else(|| CacheError::NotValid { path: path.clone() })?;
        let Some(cached) = source.info(path)? else {
            return Err(CacheError::NotInCache {
                path: path.clone(),
                caches: source.caches(),
            }
            .into());
        };
        if cached.tree_hash != known.tree_hash || cached.archive_size != known.archive_size {
            return Err(CacheError::Differs {
                path: path.clone(),
                cache: source.cache_of(path),
                cached: Box::new(FileDigest {
                    size: cached.archive_size,
                    hash: cached.tree_hash,
                }),
                known: Box::new(FileDigest {
                    size: known.archive_size,
                    hash: known.tree_hash,
                }),
            }
            .into());
        }
        let file = cached
            .file
            .clone()
            .ok_or_else(|| CacheError::from(ReceiveError::NoArchiveFile { path: path.clone() }))?;
        // What the unpacked tree is checked against is this store's record; the cache
        // only says which file holds it.
        let info = CacheInfo {
            file: Some(file),
            ..CacheInfo::from_path_info(&known)
        };
        let mut receiver = self.receive(&Trust::unsigned()).map_err(CacheError::from)?;
        let mut f = source.archive(&cached)?;
        receiver
            .prepare_compressed(&info, &mut f)
            .map_err(CacheError::from)?;
        drop(f);
        let prepared = receiver.take_prepared();
        let result = (|| {
            let _lock = self.lock_path(path)?;
            for (_, tmp) in &prepared {
                self.swap_in(&tmp.join("t"), path)?;
            }
            Ok::<(), StoreError>(())
        })();
        for (_, tmp) in &prepared {
            let _ = remove_tree(tmp);
        }
        drop(receiver);
        Ok(result.map_err(CacheError::from)?)
    }

    /// Put the tree at `good` in place of `path`'s files (present or not) atomically,
    /// after syncing it; `good` is left holding what was there. The caller holds the
    /// path's lock.
    fn swap_in(&self, good: &Path, path: &StorePath) -> Result<(), StoreError> {
        let store = File::open(self.store_dir()).map_err(io_err(self.store_dir()))?;
        rustix::fs::syncfs(&store).map_err(|e| io_err(self.store_dir())(e.into()))?;
        let dest = self.physical(path);
        if fs::symlink_metadata(&dest).is_ok() {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                good,
                rustix::fs::CWD,
                &dest,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .map_err(|e| io_err(&dest)(e.into()))?;
        } else {
            fs::rename(good, &dest).map_err(io_err(&dest))?;
        }
        store.sync_all().map_err(io_err(self.store_dir()))
    }
}

/// Give `file` (in the store) its canonical mode and mtime.
fn canonicalise(file: &Path, mode: u32) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = fs::symlink_metadata(file).map_err(io_err(file))?;
    // Symlinks have no mode of their own; what verify reports is files and directories.
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    fs::set_permissions(file, fs::Permissions::from_mode(mode)).map_err(io_err(file))?;
    let f = File::open(file).map_err(io_err(file))?;
    f.set_modified(UNIX_EPOCH + crate::add::MTIME)
        .map_err(io_err(file))?;
    f.sync_all().map_err(io_err(file))
}
