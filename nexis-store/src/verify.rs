//! Checking the store against its database: `verify`.
//!
//! Each valid path is hashed again ([`hash_path`](crate::hash_path), paths in parallel
//! and files within a path in parallel) and its tree hash and archive size compared
//! with the database's. A path the database holds but the disk does not is *missing*;
//! a file or directory whose mode or mtime is not the canonical one (files 0444 or 0555,
//! directories 0555, mtime 1: nothing writable, no setuid, setgid or sticky bit) is
//! reported with what it has. Rows of the reference table naming a path the database
//! does not hold are *dangling* (the schema's foreign keys make them impossible; checked
//! anyway, since a database can be damaged or edited by hand).
//!
//! Verification reads and never writes, and takes no lock: a path a concurrent garbage
//! collection removes while it is being checked is no longer valid when its problem is
//! confirmed, and is then left out of the report (a collection forgets a path before it
//! touches its files, so a path still valid after its check is really as found).

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::archive::ArchiveError;
use crate::db::DanglingRef;
use crate::path::StorePath;
use crate::store::{Store, StoreError};

/// Progress of a verification, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyProgress {
    /// Paths checked so far.
    pub done: usize,
    /// Paths to check.
    pub total: usize,
}

/// What verification found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Valid paths checked.
    pub checked: usize,
    /// Everything wrong, in path order (dangling references last).
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One thing wrong with the store.
#[derive(Debug)]
pub enum Problem {
    /// A path given to check is not valid in the database.
    NotValid {
        /// The path.
        path: StorePath,
    },
    /// A valid path is not on disk.
    Missing {
        /// The path.
        path: StorePath,
    },
    /// A valid path's content is not what the database recorded.
    Mismatch {
        /// The path.
        path: StorePath,
        /// Tree hash recorded in the database.
        expected_hash: [u8; 32],
        /// Tree hash of what is on disk.
        actual_hash: [u8; 32],
        /// Archive size recorded in the database.
        expected_size: u64,
        /// Archive size of what is on disk.
        actual_size: u64,
    },
    /// A valid path could not be hashed: a file is unreadable, or of a kind the store
    /// cannot hold.
    Unreadable {
        /// The path.
        path: StorePath,
        /// Why.
        error: ArchiveError,
    },
    /// A file or directory of a valid path has a non-canonical mode or mtime.
    Metadata {
        /// The path.
        path: StorePath,
        /// The file or directory (physical).
        file: PathBuf,
        /// Its permission bits (`mode & 0o7777`).
        mode: u32,
        /// The canonical permission bits.
        expected_mode: u32,
        /// Its mtime, seconds since the epoch (canonical: 1).
        mtime: i64,
    },
    /// A reference row names a path the database does not hold.
    Dangling(DanglingRef),
}

impl Problem {
    /// The store path the problem is about (the referrer for a dangling reference, when
    /// the database still knows it).
    pub fn path(&self) -> Option<&StorePath> {
        match self {
            Problem::NotValid { path }
            | Problem::Missing { path }
            | Problem::Mismatch { path, .. }
            | Problem::Unreadable { path, .. }
            | Problem::Metadata { path, .. } => Some(path),
            Problem::Dangling(d) => d.referrer.as_ref(),
        }
    }

    /// A short name of the kind of problem: `not-valid`, `missing`, `hash-mismatch`,
    /// `unreadable`, `metadata`, `dangling-reference`.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::NotValid { .. } => "not-valid",
            Problem::Missing { .. } => "missing",
            Problem::Mismatch { .. } => "hash-mismatch",
            Problem::Unreadable { .. } => "unreadable",
            Problem::Metadata { .. } => "metadata",
            Problem::Dangling(_) => "dangling-reference",
        }
    }
}

fn hex(hash: &[u8; 32]) -> impl fmt::Display {
    blake3::Hash::from_bytes(*hash).to_hex()
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotValid { path } => write!(f, "{path} is not valid in the store"),
            Problem::Missing { path } => write!(f, "{path} is valid but missing on disk"),
            Problem::Mismatch {
                path,
                expected_hash,
                actual_hash,
                expected_size,
                actual_size,
            } => {
                write!(f, "{path} was modified:")?;
                if expected_hash != actual_hash {
                    write!(
                        f,
                        " tree hash blake3:{} (expected blake3:{})",
                        hex(actual_hash),
                        hex(expected_hash)
                    )?;
                }
                if expected_size != actual_size {
                    write!(f, " archive size {actual_size} (expected {expected_size})")?;
                }
                Ok(())
            }
            Problem::Unreadable { path, error } => write!(f, "{path} cannot be hashed: {error}"),
            Problem::Metadata {
                file,
                mode,
                expected_mode,
                mtime,
                ..
            } => {
                write!(f, "{}:", file.display())?;
                if mode != expected_mode {
                    write!(f, " mode {mode:04o} (expected {expected_mode:04o}")?;
                    if mode & 0o222 != 0 {
                        f.write_str(", writable")?;
                    }
                    if mode & 0o7000 != 0 {
                        f.write_str(", setuid/setgid/sticky")?;
                    }
                    f.write_str(")")?;
                }
                if *mtime != 1 {
                    write!(f, " mtime {mtime} (expected 1)")?;
                }
                Ok(())
            }
            Problem::Dangling(d) => d.fmt(f),
        }
    }
}

impl Store {
    /// Check `paths` (or, given `None`, every valid path) against the database: content
    /// (tree hash and archive size), presence, canonical modes and mtimes, and the
    /// reference table. Paths are checked in parallel.
    pub fn verify(
        &self,
        paths: Option<&[StorePath]>,
        progress: &(dyn Fn(VerifyProgress) + Sync),
    ) -> Result<VerifyReport, StoreError> {
        let mut problems = Vec::new();
        let expected: Vec<(StorePath, [u8; 32], u64)> = match paths {
            None => self.with_db(|db| db.valid_hashes())?,
            Some(paths) => {
                let mut found = Vec::with_capacity(paths.len());
                for p in paths {
                    match self.with_db(|db| db.query(p))? {
                        Some(info) => found.push((p.clone(), info.tree_hash, info.archive_size)),
                        None => problems.push(Problem::NotValid { path: p.clone() }),
                    }
                }
                found
            }
        };
        let total = expected.len();
        let done = AtomicUsize::new(0);
        let found: Vec<Problem> = expected
            .par_iter()
            .flat_map_iter(|(path, hash, size)| {
                let found = self.check_path(path, hash, *size);
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress(VerifyProgress { done: n, total });
                found
            })
            .collect();
        // A problem counts only if its path is still valid: a concurrent collection may
        // have taken it while it was being read.
        for problem in found {
            let still = match problem.path() {
                Some(p) => self.with_db(|db| db.is_valid(p))?,
                None => true,
            };
            if still {
                problems.push(problem);
            }
        }
        let dangling = self.with_db(|db| db.dangling_references())?;
        problems.extend(
            dangling
                .into_iter()
                .filter(|d| match (paths, &d.referrer) {
                    (None, _) => true,
                    (Some(paths), Some(r)) => paths.contains(r),
                    (Some(_), None) => false,
                })
                .map(Problem::Dangling),
        );
        Ok(VerifyReport {
            checked: total,
            problems,
        })
    }

    /// Check one valid path's content and metadata.
    fn check_path(&self, path: &StorePath, hash: &[u8; 32], size: u64) -> Vec<Problem> {
        let physical = self.physical(path);
        match fs::symlink_metadata(&physical) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return vec![Problem::Missing { path: path.clone() }];
            }
            Err(source) => {
                return vec![Problem::Unreadable {
                    path: path.clone(),
                    error: ArchiveError::Io {
                        action: "inspect",
                        path: physical,
                        source,
                    },
                }];
            }
            Ok(_) => {}
        }
        let mut problems = Vec::new();
        match crate::hash::hash_path(&physical) {
            Ok(info) if info.hash == *hash && info.archive_size == size => {}
            Ok(info) => problems.push(Problem::Mismatch {
                path: path.clone(),
                expected_hash: *hash,
                actual_hash: info.hash,
                expected_size: size,
                actual_size: info.archive_size,
            }),
            Err(error) => problems.push(Problem::Unreadable {
                path: path.clone(),
                error,
            }),
        }
        check_metadata(path, &physical, &mut problems);
        problems
    }
}

/// The canonical permission bits of a file or directory with `mode`; `None` for what
/// has none (symlinks, and kinds the hash check already refuses).
pub(crate) fn canonical_mode(meta: &fs::Metadata) -> Option<u32> {
    let ft = meta.file_type();
    if ft.is_dir() {
        Some(0o555)
    } else if ft.is_file() {
        Some(if meta.permissions().mode() & 0o111 != 0 {
            0o555
        } else {
            0o444
        })
    } else {
        None
    }
}

/// Report every file and directory under `root` whose mode or mtime is not canonical.
/// Symlinks are not followed. Unreadable directories are left to the hash check, which
/// reports them.
fn check_metadata(path: &StorePath, root: &Path, problems: &mut Vec<Problem>) {
    let mut stack = vec![root.to_owned()];
    while let Some(file) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&file) else {
            continue;
        };
        let Some(expected_mode) = canonical_mode(&meta) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode != expected_mode || meta.mtime() != 1 {
            problems.push(Problem::Metadata {
                path: path.clone(),
                file: file.clone(),
                mode,
                expected_mode,
                mtime: meta.mtime(),
            });
        }
        if meta.is_dir()
            && let Ok(entries) = fs::read_dir(&file)
        {
            let mut children: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
            // Reported in name order: popped from the end.
            children.sort_unstable_by(|a, b| b.cmp(a));
            stack.extend(children);
        }
    }
}
