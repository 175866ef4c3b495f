//! The store on disk: its layout under a root, locks, and temporary roots.
//!
//! ```text
//! ROOT/nexis/store/                  store paths (read-only after registration)
//! ROOT/nexis/store/.links/           one hard-link target per distinct file content (dedup)
//! ROOT/nexis/store/.tmp/             paths being added (same filesystem: rename is atomic)
//! ROOT/nexis/store/.trash/           garbage on its way out (same filesystem)
//! ROOT/nexis/var/nexis/db/db.sqlite  metadata
//! ROOT/nexis/var/nexis/gcroots/      indirect GC roots (`result` links point here)
//! ROOT/nexis/var/nexis/profiles/     profiles and generations (GC roots)
//! ROOT/nexis/var/nexis/temproots/    one file per open store of a running process (PID-N): its temporary roots
//! ROOT/nexis/var/nexis/locks/        per-path locks, and the GC lock
//! ```
//!
//! Locking: adding a path holds its per-path lock (so two processes adding the same path
//! do the work once) and the GC lock *shared*; garbage collection holds the GC lock
//! *exclusive*. A process records every path it adds or uses in its temp-roots file
//! before releasing the GC lock, and keeps that file locked while it lives, so a
//! collection never removes what a running process still needs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::db::{Db, DbError};
use crate::path::{STORE_DIR, StorePath};

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path operated on.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The metadata database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Reading, writing or removing a tree failed.
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An open store under a root directory.
#[derive(Debug)]
#[allow(clippy::struct_field_names)] // `store_dir` is the store's directory, not a store.
pub struct Store {
    root: PathBuf,
    store_dir: PathBuf,
    state_dir: PathBuf,
    db: Mutex<Db>,
    temp_roots: Mutex<Option<TempRoots>>,
}

/// This process's temp-roots file, locked while the process lives.
#[derive(Debug)]
struct TempRoots {
    file: File,
    path: PathBuf,
}

impl Drop for TempRoots {
    fn drop(&mut self) {
        // Best effort: a file left behind by a crash is unlocked, so GC ignores and
        // removes it.
        let _ = fs::remove_file(&self.path);
    }
}

impl Store {
    /// Open the store under `root` (`/` for the running system), creating its
    /// directories and database when missing.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store_dir = root.join(STORE_DIR.trim_start_matches('/'));
        let state_dir = root.join("nexis/var/nexis");
        for dir in [
            store_dir.clone(),
            store_dir.join(".links"),
            store_dir.join(".tmp"),
            store_dir.join(".trash"),
            state_dir.join("db"),
            state_dir.join("gcroots"),
            state_dir.join("profiles"),
            state_dir.join("temproots"),
            state_dir.join("locks"),
        ] {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let db = Db::open(&state_dir.join("db/db.sqlite"))?;
        Ok(Store {
            root: root.to_owned(),
            store_dir,
            state_dir,
            db: Mutex::new(db),
            temp_roots: Mutex::new(None),
        })
    }

    /// The root the store lives under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The physical store directory, `ROOT/nexis/store`.
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The physical state directory, `ROOT/nexis/var/nexis`.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Where a store path lives on disk.
    pub fn physical(&self, path: &StorePath) -> PathBuf {
        self.store_dir.join(path.base_name())
    }

    /// Run `f` with the metadata database.
    pub fn with_db<T>(&self, f: impl FnOnce(&mut Db) -> T) -> T {
        let mut db = self
            .db
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut db)
    }

    /// Take the per-path lock of `path` (blocking): held while the path is being added.
    pub(crate) fn lock_path(&self, path: &StorePath) -> Result<File, StoreError> {
        self.lock_file(&path.hash_part(), true)
    }

    /// Take the build lock of the output `path` (blocking): held by whoever builds or
    /// substitutes it, so that two processes never make the same output at once. It is
    /// not the path lock that adding takes, so the holder can add the path.
    pub fn lock_build(&self, path: &StorePath) -> Result<File, StoreError> {
        self.lock_file(&format!("{}.build", path.hash_part()), true)
    }

    /// Take the activation lock (blocking): held while a generation is put in effect on
    /// this root, so that two switches never interleave.
    pub fn lock_activation(&self) -> Result<File, StoreError> {
        self.lock_file("activation", true)
    }

    /// Take the GC lock: shared for adding, exclusive for collecting.
    pub(crate) fn lock_gc(&self, exclusive: bool) -> Result<File, StoreError> {
        self.lock_file("gc", exclusive)
    }

    /// Open `locks/NAME` (made when missing) and lock it, exclusively or shared; the
    /// lock lasts as long as the returned file.
    fn lock_file(&self, name: &str, exclusive: bool) -> Result<File, StoreError> {
        let file = self.state_dir.join("locks").join(name);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&file)
            .map_err(io_err(&file))?;
        if exclusive {
            f.lock().map_err(io_err(&file))?;
        } else {
            f.lock_shared().map_err(io_err(&file))?;
        }
        Ok(f)
    }

    /// Record `path` as a temporary root of this process: it will not be collected while
    /// the process (more precisely, this `Store`) lives.
    pub fn add_temp_root(&self, path: &StorePath) -> Result<(), StoreError> {
        self.add_temp_roots(std::slice::from_ref(path))
    }

    /// Record `paths` as temporary roots of this process, with one write and one sync.
    pub fn add_temp_roots(&self, paths: &[StorePath]) -> Result<(), StoreError> {
        if paths.is_empty() {
            return Ok(());
        }
        let mut guard = self
            .temp_roots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            // One file per `Store` value: two of them in one process (two threads each
            // with its own store) must not wait for each other's lock.
            static INSTANCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let file = self
                .state_dir
                .join("temproots")
                .join(format!("{}-{n}", std::process::id()));
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)
                .map_err(io_err(&file))?;
            f.lock().map_err(io_err(&file))?;
            *guard = Some(TempRoots {
                file: f,
                path: file,
            });
        }
        let roots = guard.as_mut().expect("set above");
        let mut text = String::new();
        for path in paths {
            text.push_str(&path.to_string());
            text.push('\n');
        }
        roots
            .file
            .write_all(text.as_bytes())
            .map_err(io_err(&roots.path))?;
        roots.file.sync_data().map_err(io_err(&roots.path))
    }
}

/// An error and its causes on one line, `what failed: why: why that`: for reports that
/// list several failures (repair, substitution, fetching inputs).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// A size as people read it: `812 B`, `1.5 KiB`, `3.0 MiB` (binary units, one decimal).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut unit = 0;
    let mut scale: u128 = 1024;
    while unit + 1 < UNITS.len() && u128::from(bytes) >= scale * 1024 {
        unit += 1;
        scale *= 1024;
    }
    let tenths = u128::from(bytes) * 10 / scale;
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}
