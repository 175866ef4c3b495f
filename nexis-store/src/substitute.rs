//! Substituting: making paths valid from binary caches, closure included.
//!
//! The walk is written once, against [`CacheSource`], the two things a binary cache
//! gives: a path's info file and its archive file. Two backends implement it: a cache on
//! a directory ([`DirCache`], here) and caches over HTTP(S) (nexis-fetch's
//! `Substituter`, which also handles going on to the next cache when one is down).
//!
//! [`Store::substitute_from`]:
//!
//! 1. reads the info of each wanted path (not valid, not seen yet) and of its
//!    references, transitively, and checks each with [`CacheInfo::verify`] (a trusted
//!    signature, the content address) before any archive is read;
//! 2. leaves out the paths no cache has, and those whose closure needs one of them
//!    (or refuses the whole batch, when every path is required);
//! 3. streams each archive file, references first, through
//!    [`Receiver::add_compressed`](crate::Receiver::add_compressed), which checks the
//!    file's hash and size while decompressing and the tree hash while unpacking;
//! 4. commits: the paths become valid together, or none does.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::cache::{CacheError, CacheInfo, check_cache_dir, local_file, read_info};
use crate::path::StorePath;
use crate::receive::{Trust, references_first};
use crate::store::Store;

/// Where substitution (and repair) read a binary cache: its info files and archive
/// files. Implemented by [`DirCache`] and by nexis-fetch's HTTP substituter.
pub trait CacheSource {
    /// What can go wrong reading it; the store's own failures come as [`CacheError`].
    type Error: From<CacheError> + std::error::Error + 'static;

    /// The info of `path`, or `None` when the source does not have it. A returned info
    /// describes `path` and names its archive file (the four archive-file keys).
    fn info(&mut self, path: &StorePath) -> Result<Option<CacheInfo>, Self::Error>;

    /// The archive file of `info` (an info this source returned), to be read once.
    /// Its hash and size are checked by the reader.
    fn archive(&mut self, info: &CacheInfo) -> Result<Box<dyn Read + '_>, Self::Error>;

    /// The caches asked, for messages (directories or URLs).
    fn caches(&self) -> Vec<String>;

    /// The cache the info of `path` came from, for messages.
    fn cache_of(&self, path: &StorePath) -> String;
}

/// What [`Store::substitute_from`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubstituteReport {
    /// Paths made valid, references first.
    pub substituted: Vec<StorePath>,
    /// Paths (asked for, or in the closure of one asked for) that no cache has, in path
    /// order.
    pub missing: Vec<StorePath>,
    /// Paths a cache has that were left out because a path of their closure is missing,
    /// in path order.
    pub incomplete: Vec<StorePath>,
}

/// A binary cache on a directory (the layout [`Store::copy_to_cache`] writes). Its
/// `nexis-cache-info` is checked before the first info is read.
#[derive(Debug, Clone)]
pub struct DirCache {
    dir: PathBuf,
    checked: bool,
}

impl DirCache {
    /// The cache in `dir` (not read yet).
    pub fn new(dir: impl Into<PathBuf>) -> DirCache {
        DirCache {
            dir: dir.into(),
            checked: false,
        }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Check its `nexis-cache-info`: it must exist and name this store directory.
    pub fn check(&mut self) -> Result<(), CacheError> {
        if !self.checked {
            check_cache_dir(&self.dir)?;
            self.checked = true;
        }
        Ok(())
    }

    fn info_file(&self, path: &StorePath) -> PathBuf {
        self.dir.join(format!("{}.info", path.hash_part()))
    }
}

impl CacheSource for DirCache {
    type Error = CacheError;

    fn info(&mut self, path: &StorePath) -> Result<Option<CacheInfo>, CacheError> {
        self.check()?;
        let Some((file, info)) = read_info(&self.dir, path)? else {
            return Ok(None);
        };
        if info.file.is_none() {
            return Err(CacheError::NoArchiveFile { file });
        }
        Ok(Some(info))
    }

    fn archive(&mut self, info: &CacheInfo) -> Result<Box<dyn Read + '_>, CacheError> {
        let info_file = self.info_file(&info.path);
        let file = info
            .file
            .as_ref()
            .ok_or_else(|| CacheError::NoArchiveFile {
                file: info_file.clone(),
            })?;
        let archive = local_file(&self.dir, &info_file, &file.url)?;
        let f = File::open(&archive).map_err(|source| CacheError::Io {
            action: "open",
            path: archive,
            source,
        })?;
        Ok(Box::new(f))
    }

    fn caches(&self) -> Vec<String> {
        vec![self.dir.display().to_string()]
    }

    fn cache_of(&self, _: &StorePath) -> String {
        self.dir.display().to_string()
    }
}

impl Store {
    /// Make `paths` valid from `source`, with their closure (see the module
    /// documentation). Paths valid already are skipped unread. A path `source` does not
    /// have is reported in [`SubstituteReport::missing`], and the paths needing it in
    /// [`SubstituteReport::incomplete`]; with `require_all`, it is refused instead
    /// ([`CacheError::NotInCache`]) before any archive is read. Untrusted or damaged
    /// paths are refused, and then nothing becomes valid.
    pub fn substitute_from<S: CacheSource + ?Sized>(
        &self,
        source: &mut S,
        paths: &[StorePath],
        trust: &Trust,
        require_all: bool,
    ) -> Result<SubstituteReport, S::Error> {
        let mut receiver = self.receive(trust).map_err(CacheError::from)?;
        let mut found: BTreeMap<StorePath, CacheInfo> = BTreeMap::new();
        let mut missing: BTreeSet<StorePath> = BTreeSet::new();
        let mut queue: VecDeque<StorePath> = paths.iter().cloned().collect();
        while let Some(p) = queue.pop_front() {
            if found.contains_key(&p)
                || missing.contains(&p)
                || !receiver.wants(&p).map_err(CacheError::from)?
            {
                continue;
            }
            let Some(info) = source.info(&p)? else {
                missing.insert(p);
                continue;
            };
            info.verify(trust).map_err(CacheError::from)?;
            queue.extend(info.references.iter().filter(|r| **r != p).cloned());
            found.insert(p, info);
        }
        if require_all && let Some(path) = missing.first() {
            return Err(CacheError::NotInCache {
                path: path.clone(),
                caches: source.caches(),
            }
            .into());
        }
        let order = references_first(&found, |info| &info.references);
        let mut incomplete: BTreeSet<StorePath> = BTreeSet::new();
        for p in &order {
            let refs = &found[p].references;
            if refs
                .iter()
                .any(|r| missing.contains(r) || incomplete.contains(r))
            {
                incomplete.insert(p.clone());
            }
        }
        for p in order.iter().filter(|p| !incomplete.contains(*p)) {
            let info = &found[p];
            let mut file = source.archive(info)?;
            receiver
                .add_compressed(info, &mut file)
                .map_err(CacheError::from)?;
        }
        // The requested paths that were valid already are kept too (the GC lock is
        // still held).
        let valid: Vec<StorePath> = paths
            .iter()
            .filter(|p| !found.contains_key(*p) && !missing.contains(*p))
            .cloned()
            .collect();
        self.add_temp_roots(&valid).map_err(CacheError::from)?;
        Ok(SubstituteReport {
            substituted: receiver.commit().map_err(CacheError::from)?,
            missing: missing.into_iter().collect(),
            incomplete: incomplete.into_iter().collect(),
        })
    }

    /// Make `paths` valid from the binary cache in `dir`, with their closure: read the
    /// info files of the paths not valid here, refuse any path `trust` does not accept
    /// (or the cache lacks) before reading an archive, then read each archive (references
    /// first), checking its file hash and size while decompressing and its tree hash
    /// while unpacking, and register them all in one batch. Returns the paths made valid,
    /// references first.
    pub fn substitute_from_dir(
        &self,
        dir: &Path,
        paths: &[StorePath],
        trust: &Trust,
    ) -> Result<Vec<StorePath>, CacheError> {
        let mut cache = DirCache::new(dir);
        cache.check()?;
        Ok(self
            .substitute_from(&mut cache, paths, trust, true)?
            .substituted)
    }
}
