//! Substitutes from binary caches over HTTP(S) (and `file://`): the HTTP backend of
//! nexis-store's closure walk.
//!
//! A [`Substituter`] holds the ordered cache URLs of the configuration and a
//! [`Downloader`] tuned for caches ([`Substituter::default_options`]: a short connect
//! timeout, an idle timeout, one retry). [`Substituter::substitute`] runs
//! [`Store::substitute_from`] over a [`Caches`], which for each wanted path asks the
//! caches for `<base>/<hash part>.info` and remembers which one had it, so the archive
//! comes from the same cache. Before the first question, every cache's
//! `nexis-cache-info` is read: `StoreDir` must be `/nexis/store`, and caches are asked by
//! their `Priority` (lower first, 50 when absent), in configured order among equals. A cache that cannot be
//! reached (refused, timed out, a 5xx after the retry), or is no binary cache for this
//! store, gets one warning and is not asked again in the run; that is not an error.
//!
//! Everything else is: an info file that does not parse or describes another path, an
//! untrusted path, an archive `URL` that is not relative to the cache base
//! ([`is_relative_cache_url`]), an archive that cannot be downloaded or is not the one its
//! info describes. The archive body is streamed straight into
//! [`Receiver::add_compressed`](nexis_store::Receiver::add_compressed), which hashes it
//! as it decompresses; nothing becomes valid until every path has been checked.

use nexis_store::error_chain as chain;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::time::Duration;

use nexis_store::{
    CACHE_INFO_FILE, CacheError, CacheInfo, CacheMeta, CacheSource, DEFAULT_PRIORITY, MAX_INFO_LEN,
    STORE_DIR, Store, StorePath, SubstituteReport, Trust, is_relative_cache_url,
};

use crate::http::{DownloadError, DownloadOptions, Downloader};

/// Substitution from binary caches failed.
#[derive(Debug, thiserror::Error)]
pub enum SubstituteError {
    /// A cache URL is neither `http://`, `https://` nor `file:///absolute/path`.
    #[error("`{url}` is not a binary cache URL: {reason}")]
    BadCacheUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An info file describes another path than the one it was fetched for.
    #[error("{url} describes {found}, not {expected}")]
    WrongPath {
        /// The info file's URL.
        url: String,
        /// The path looked up.
        expected: StorePath,
        /// The path it names.
        found: StorePath,
    },
    /// An info file names no archive file.
    #[error("{url} names no archive file (URL, Compression, FileHash, FileSize)")]
    NoArchiveFile {
        /// The info file's URL.
        url: String,
    },
    /// An info file's archive `URL` is not a relative path inside the cache.
    #[error("{url}: archive URL `{archive}` is not a relative path inside the cache")]
    BadArchiveUrl {
        /// The info file's URL.
        url: String,
        /// The archive URL it gives.
        archive: String,
    },
    /// The archive file an info names is not in the cache.
    #[error("the archive file of {path} is not in the cache: {url} does not exist")]
    ArchiveMissing {
        /// The path.
        path: StorePath,
        /// The archive file's URL.
        url: String,
    },
    /// The archive file could not be downloaded (after the retries).
    #[error("cannot download the archive file of {path}")]
    Archive {
        /// The path.
        path: StorePath,
        /// Why.
        #[source]
        source: Box<DownloadError>,
    },
    /// What was read is refused (untrusted, damaged, an info that does not parse), or the
    /// store failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Ordered binary caches to substitute from; see the module documentation.
#[derive(Debug, Clone)]
pub struct Substituter {
    /// Base URLs, without a trailing `/`.
    caches: Vec<String>,
    downloader: Downloader,
    require_all: bool,
}

impl Substituter {
    /// Download options for binary caches: connect within 5 s, no more than 15 s without
    /// data, one retry after 250 ms — a cache that is down costs seconds, not minutes.
    pub fn default_options() -> DownloadOptions {
        DownloadOptions {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(15),
            retries: 1,
            ..DownloadOptions::default()
        }
    }

    /// Substitute from `urls`, asked in this order, with [`Substituter::default_options`].
    pub fn new<U: AsRef<str>>(urls: &[U]) -> Result<Substituter, SubstituteError> {
        Substituter::with_options(urls, Substituter::default_options())
    }

    /// Substitute from `urls`, asked in this order, with these download options.
    pub fn with_options<U: AsRef<str>>(
        urls: &[U],
        options: DownloadOptions,
    ) -> Result<Substituter, SubstituteError> {
        let caches = urls
            .iter()
            .map(|u| cache_base(u.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Substituter {
            caches,
            downloader: Downloader::new(options),
            require_all: false,
        })
    }

    /// With `true`, a path no cache has is an error ([`CacheError::NotInCache`], inside
    /// [`SubstituteError::Cache`]) raised before any archive is downloaded, rather than
    /// a line of [`SubstituteReport::missing`]. Default `false`.
    #[must_use]
    pub fn require_all(mut self, yes: bool) -> Substituter {
        self.require_all = yes;
        self
    }

    /// The caches' base URLs, in order, without a trailing `/`.
    pub fn urls(&self) -> &[String] {
        &self.caches
    }

    /// A run over the caches, for [`Store::substitute_from`] or
    /// [`Store::repair_from`]: it remembers which caches are down and which cache had
    /// which path. `warn` gets one line per cache skipped.
    pub fn caches<'a>(&'a self, warn: &'a dyn Fn(&str)) -> Caches<'a> {
        Caches {
            substituter: self,
            warn,
            state: vec![State::Unchecked; self.caches.len()],
            priority: vec![DEFAULT_PRIORITY; self.caches.len()],
            order: None,
            origin: BTreeMap::new(),
        }
    }

    /// Make `paths` valid from the caches, with their closure: each path's info from the
    /// first cache that has it, checked against `trust` before any archive is
    /// downloaded, then each archive streamed from that cache and checked while it is
    /// unpacked; all become valid together. Paths no cache has are reported (or refused,
    /// see [`Substituter::require_all`]); a cache that is down is skipped after one
    /// `warn`ing.
    pub fn substitute(
        &self,
        store: &Store,
        paths: &[StorePath],
        trust: &Trust,
        warn: &dyn Fn(&str),
    ) -> Result<SubstituteReport, SubstituteError> {
        store.substitute_from(&mut self.caches(warn), paths, trust, self.require_all)
    }
}

/// A cache URL checked and without its trailing `/`.
fn cache_base(url: &str) -> Result<String, SubstituteError> {
    let bad = |reason| SubstituteError::BadCacheUrl {
        url: url.to_owned(),
        reason,
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("expected `http://`, `https://` or `file:///DIR`"))?;
    match scheme {
        "http" | "https" => {
            if rest.is_empty() || rest.starts_with('/') {
                return Err(bad("no host"));
            }
        }
        "file" => {
            if !rest.starts_with('/') {
                return Err(bad("a file URL needs an absolute path: file:///DIR"));
            }
        }
        _ => return Err(bad("expected `http://`, `https://` or `file:///DIR`")),
    }
    if url.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("no query, fragment or spaces"));
    }
    let base = url.trim_end_matches('/');
    if base.len() <= scheme.len() + "://".len() {
        return Err(bad("no host or path"));
    }
    Ok(base.to_owned())
}

/// What is known of a cache in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not asked yet: its `nexis-cache-info` is read first.
    Unchecked,
    /// A binary cache for this store.
    Up,
    /// Unreachable or not a cache for this store: warned about once, not asked again.
    Down,
}

/// One run over a [`Substituter`]'s caches (see [`Substituter::caches`]); the HTTP
/// [`CacheSource`].
pub struct Caches<'a> {
    substituter: &'a Substituter,
    warn: &'a dyn Fn(&str),
    state: Vec<State>,
    /// Each cache's `Priority`, once its info file is read.
    priority: Vec<u32>,
    /// The order caches are asked in, once every info file was read.
    order: Option<Vec<usize>>,
    /// Which cache gave each path's info.
    origin: BTreeMap<StorePath, usize>,
}

impl fmt::Debug for Caches<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caches")
            .field("caches", &self.substituter.caches)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Caches<'_> {
    /// The caches skipped in this run so far (unreachable, or not a binary cache for
    /// this store).
    pub fn down(&self) -> Vec<&str> {
        self.state
            .iter()
            .zip(&self.substituter.caches)
            .filter(|(s, _)| **s == State::Down)
            .map(|(_, url)| url.as_str())
            .collect()
    }

    fn skip(&mut self, cache: usize, why: &str) {
        self.state[cache] = State::Down;
        (self.warn)(&format!(
            "binary cache {} {why}; skipping it",
            self.substituter.caches[cache]
        ));
    }

    /// `<base>/<rest>` of one cache, as a small document (at most [`MAX_INFO_LEN`]
    /// bytes): its bytes, `None` when it does not exist, or why it could not be read.
    fn document(&self, cache: usize, rest: &str) -> Result<Option<Vec<u8>>, DownloadError> {
        let url = format!("{}/{rest}", self.substituter.caches[cache]);
        match self.substituter.downloader.get(&url, MAX_INFO_LEN as u64)? {
            Some(body) => body.read_to_vec().map(Some),
            None => Ok(None),
        }
    }

    /// Whether the cache may be asked: its `nexis-cache-info` is read the first time.
    fn usable(&mut self, cache: usize) -> bool {
        match self.state[cache] {
            State::Up => return true,
            State::Down => return false,
            State::Unchecked => {}
        }
        let origin = format!("{}/{CACHE_INFO_FILE}", self.substituter.caches[cache]);
        match self.document(cache, CACHE_INFO_FILE) {
            Err(e) => self.skip(cache, &format!("is not reachable ({})", chain(&e))),
            Ok(None) => self.skip(cache, &format!("is not a binary cache (no {origin})")),
            Ok(Some(text)) => match CacheMeta::parse(&text, &origin) {
                Err(e) => self.skip(cache, &format!("is not a binary cache ({e})")),
                Ok(meta) if meta.store_dir != STORE_DIR => self.skip(
                    cache,
                    &format!(
                        "is for the store {}, not {STORE_DIR}",
                        meta.store_dir.escape_debug()
                    ),
                ),
                Ok(meta) => {
                    self.state[cache] = State::Up;
                    self.priority[cache] = meta.priority;
                }
            },
        }
        self.state[cache] == State::Up
    }

    /// The caches in the order they are asked: by priority, then as configured. Every
    /// cache's info file is read the first time.
    fn order(&mut self) -> Vec<usize> {
        if let Some(order) = &self.order {
            return order.clone();
        }
        let mut order: Vec<usize> = (0..self.substituter.caches.len())
            .filter(|&c| self.usable(c))
            .collect();
        order.sort_by_key(|&c| (self.priority[c], c));
        self.order = Some(order.clone());
        order
    }
}

impl CacheSource for Caches<'_> {
    type Error = SubstituteError;

    fn info(&mut self, path: &StorePath) -> Result<Option<CacheInfo>, SubstituteError> {
        for cache in self.order() {
            if !self.usable(cache) {
                continue;
            }
            let name = format!("{}.info", path.hash_part());
            let text = match self.document(cache, &name) {
                Ok(Some(text)) => text,
                Ok(None) => continue,
                Err(e) => {
                    self.skip(cache, &format!("is not reachable ({})", chain(&e)));
                    continue;
                }
            };
            let url = format!("{}/{name}", self.substituter.caches[cache]);
            let info = CacheInfo::parse(&text, &url).map_err(CacheError::from)?;
            if info.path != *path {
                return Err(SubstituteError::WrongPath {
                    url,
                    expected: path.clone(),
                    found: info.path,
                });
            }
            let Some(file) = &info.file else {
                return Err(SubstituteError::NoArchiveFile { url });
            };
            if !is_relative_cache_url(&file.url) {
                return Err(SubstituteError::BadArchiveUrl {
                    url,
                    archive: file.url.clone(),
                });
            }
            self.origin.insert(path.clone(), cache);
            return Ok(Some(info));
        }
        Ok(None)
    }

    fn archive(&mut self, info: &CacheInfo) -> Result<Box<dyn Read + '_>, SubstituteError> {
        let cache = *self
            .origin
            .get(&info.path)
            .expect("archive is asked for paths whose info this source gave");
        let file = info
            .file
            .as_ref()
            .expect("info refuses infos without an archive file");
        let url = format!("{}/{}", self.substituter.caches[cache], file.url);
        // One byte more than the info says, so that the receiver sees a longer file as
        // the wrong file it is.
        let limit = file.file_size.saturating_add(1);
        match self.substituter.downloader.get(&url, limit) {
            Ok(Some(body)) => Ok(Box::new(body)),
            Ok(None) => Err(SubstituteError::ArchiveMissing {
                path: info.path.clone(),
                url,
            }),
            Err(source) => Err(SubstituteError::Archive {
                path: info.path.clone(),
                source: Box::new(source),
            }),
        }
    }

    fn caches(&self) -> Vec<String> {
        self.substituter
            .caches
            .iter()
            .zip(&self.state)
            .map(|(url, state)| match state {
                State::Down => format!("{url} (skipped)"),
                State::Up | State::Unchecked => url.clone(),
            })
            .collect()
    }

    fn cache_of(&self, path: &StorePath) -> String {
        self.origin
            .get(path)
            .map_or_else(String::new, |&c| self.substituter.caches[c].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_urls_are_checked_and_trimmed() {
        assert_eq!(
            cache_base("https://cache.example.org/").unwrap(),
            "https://cache.example.org"
        );
        assert_eq!(
            cache_base("http://127.0.0.1:8080/nexis").unwrap(),
            "http://127.0.0.1:8080/nexis"
        );
        assert_eq!(
            cache_base("file:///srv/cache/").unwrap(),
            "file:///srv/cache"
        );
        for bad in [
            "cache.example.org",
            "ftp://cache.example.org",
            "https://",
            "https:///x",
            "file://host/x",
            "file:///",
            "https://h/x?y=1",
            "https://h/a b",
        ] {
            let e = cache_base(bad).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("`{bad}` is not a binary cache URL")),
                "{e}"
            );
        }
    }
}
