//! System generations: `profiles/system-N-link` → a toplevel, and `profiles/system` →
//! the generation the machine boots (`docs/activation.md`). Profiles are GC roots.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use nexis_store::{Store, StorePath};

/// One generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// Its number, from 1.
    pub number: u32,
    /// Its toplevel.
    pub toplevel: StorePath,
    /// When it was made (seconds since the epoch: its link's time).
    pub created: i64,
}

/// A generation operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// The profiles folder could not be read or written.
    #[error("{}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No such generation.
    #[error("there is no generation {0}")]
    NoSuchGeneration(u32),
    /// The generation the machine boots cannot be deleted.
    #[error("generation {0} is the one the system boots; switch to another first")]
    Current(u32),
    /// A rollback with no generation before the current one.
    #[error("there is no generation before {0} to roll back to")]
    NothingBefore(u32),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> GenerationError + '_ {
    move |source| GenerationError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The system profile of one root.
#[derive(Debug, Clone)]
pub struct Profiles {
    dir: PathBuf,
}

/// The link naming the boot default.
const SYSTEM: &str = "system";

impl Profiles {
    /// The system profile of the store's root (`STATE/profiles`).
    pub fn new(store: &Store) -> Profiles {
        Profiles {
            dir: store.state_dir().join("profiles"),
        }
    }

    /// The profiles folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn link(&self, n: u32) -> PathBuf {
        self.dir.join(format!("system-{n}-link"))
    }

    /// Every generation, oldest first.
    pub fn list(&self) -> Result<Vec<Generation>, GenerationError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_at(&self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_at(&self.dir))?;
            let name = entry.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_prefix("system-"))
                .and_then(|n| n.strip_suffix("-link"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let target = fs::read_link(&path).map_err(io_at(&path))?;
            let Ok(toplevel) = StorePath::parse(&target.to_string_lossy()) else {
                continue;
            };
            let created = fs::symlink_metadata(&path).map_err(io_at(&path))?.mtime();
            out.push(Generation {
                number: n,
                toplevel,
                created,
            });
        }
        out.sort_by_key(|g| g.number);
        Ok(out)
    }

    /// The generation the machine boots, if any.
    pub fn current(&self) -> Result<Option<u32>, GenerationError> {
        let link = self.dir.join(SYSTEM);
        match fs::read_link(&link) {
            Ok(target) => Ok(target
                .to_str()
                .and_then(|n| n.strip_prefix("system-"))
                .and_then(|n| n.strip_suffix("-link"))
                .and_then(|n| n.parse().ok())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(&link)(e)),
        }
    }

    /// A generation by number.
    pub fn get(&self, n: u32) -> Result<Generation, GenerationError> {
        self.list()?
            .into_iter()
            .find(|g| g.number == n)
            .ok_or(GenerationError::NoSuchGeneration(n))
    }

    /// The generation for `toplevel`: the newest one if it is that toplevel already,
    /// else a new one numbered after the newest. It does not become the boot default.
    pub fn add(&self, toplevel: &StorePath) -> Result<Generation, GenerationError> {
        fs::create_dir_all(&self.dir).map_err(io_at(&self.dir))?;
        let all = self.list()?;
        if let Some(last) = all.last()
            && last.toplevel == *toplevel
        {
            return Ok(last.clone());
        }
        let n = all.last().map_or(1, |g| g.number + 1);
        replace_link(&self.link(n), Path::new(&toplevel.to_string()))?;
        self.get(n)
    }

    /// Make generation `n` the boot default (one rename).
    pub fn set_current(&self, n: u32) -> Result<(), GenerationError> {
        self.get(n)?;
        replace_link(
            &self.dir.join(SYSTEM),
            Path::new(&format!("system-{n}-link")),
        )
    }

    /// The generation before `n` (for a rollback).
    pub fn before(&self, n: u32) -> Result<Generation, GenerationError> {
        self.list()?
            .into_iter()
            .rev()
            .find(|g| g.number < n)
            .ok_or(GenerationError::NothingBefore(n))
    }

    /// The generations to delete to keep only the newest `keep` and those in `also`
    /// (the boot default and the running one, say), oldest first.
    pub fn beyond(&self, keep: usize, also: &[u32]) -> Result<Vec<u32>, GenerationError> {
        let mut numbers: Vec<u32> = self.list()?.iter().map(|g| g.number).collect();
        numbers.sort_unstable_by(|a, b| b.cmp(a));
        let mut old: Vec<u32> = numbers
            .into_iter()
            .skip(keep)
            .filter(|n| !also.contains(n))
            .collect();
        old.reverse();
        Ok(old)
    }

    /// Delete generations (not the boot default); their paths become garbage unless
    /// another root keeps them.
    pub fn delete(&self, numbers: &[u32]) -> Result<(), GenerationError> {
        let current = self.current()?;
        for &n in numbers {
            self.get(n)?;
            if current == Some(n) {
                return Err(GenerationError::Current(n));
            }
        }
        for &n in numbers {
            let link = self.link(n);
            fs::remove_file(&link).map_err(io_at(&link))?;
        }
        Ok(())
    }
}

/// Point `link` at `target` atomically: a new link beside it, renamed over it.
pub(crate) fn replace_link(link: &Path, target: &Path) -> Result<(), GenerationError> {
    crate::fsutil::replace_link(link, target).map_err(|source| GenerationError::Io {
        path: link.to_owned(),
        source,
    })
}
