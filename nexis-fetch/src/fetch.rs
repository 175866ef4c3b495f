//! Inputs into the store: [`Fetcher`], what `nexis fetch`, `nexis lock` and evaluation
//! use.
//!
//! A git input is fetched into the git cache (`/nexis/var/nexis/cache/git/`) and its
//! commit checked out; an archive is downloaded (hashed while it streams) and unpacked
//! safely; a plain file is downloaded. The tree then becomes a content-addressed store
//! path named `source` (a plain file keeps its file name) through
//! [`Store::add_owned_tree`], atomically and without a copy: the tree is fetched into the
//! store's `.tmp/` and made canonical where it is. What was fetched is described as a [`LockedInput`]
//! for `nexis.lock`.
//!
//! [`Fetcher::realise`] goes the other way: given a locked input, it returns its store
//! path without any network when the path is valid, and otherwise fetches exactly what
//! was locked and checks that the tree has the locked hash.

use std::path::PathBuf;

use nexis_store::{AddError, ContentKind, PathError, Store, StoreError, StorePath};

use crate::git::{GitError, GitProgress, GitSource, fetch_git, fetch_git_with_progress};
use crate::hash::{Hash, HashAlgo};
use crate::http::{DownloadError, Downloader, Progress};
use crate::lock::{LockedInput, LockedSource};
use crate::reference::{InputRef, InputRefError, UrlKind};
use crate::unpack::{Limits, UnpackError, unpack_file};

/// The store path name of fetched trees (a plain file keeps its own name).
pub const SOURCE_NAME: &str = "source";

/// Fetching an input failed; nothing was added to the store.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The reference (from a lock's `original`) does not parse.
    #[error(transparent)]
    Reference(#[from] InputRefError),
    /// A `path:` input is not fetched: it is read where it is.
    #[error("`{input}` is a path input: it is read in place, not fetched")]
    PathInput {
        /// The reference.
        input: String,
    },
    /// Fetching from git failed.
    #[error("cannot fetch `{input}`")]
    Git {
        /// The reference.
        input: String,
        /// Why.
        #[source]
        source: Box<GitError>,
    },
    /// Downloading failed.
    #[error("cannot fetch `{input}`")]
    Download {
        /// The reference.
        input: String,
        /// Why.
        #[source]
        source: Box<DownloadError>,
    },
    /// Unpacking the archive failed.
    #[error("cannot unpack `{input}`")]
    Unpack {
        /// The reference.
        input: String,
        /// Why.
        #[source]
        source: Box<UnpackError>,
    },
    /// Adding the tree to the store failed.
    #[error("cannot add `{input}` to the store")]
    Add {
        /// The reference.
        input: String,
        /// Why.
        #[source]
        source: Box<AddError>,
    },
    /// The tree is not the one pinned by `hash=` or by the lock.
    #[error(
        "`{input}` is not what {pinned_by} says: its tree hash is {actual}, expected {expected}"
    )]
    TreeHash {
        /// The reference.
        input: String,
        /// `hash=` or `nexis.lock`.
        pinned_by: &'static str,
        /// The pinned hash.
        expected: Hash,
        /// The hash found.
        actual: Hash,
    },
    /// A tree hash pinned with another algorithm than blake3.
    #[error(
        "`{input}`: a tree is pinned by its blake3 tree hash (`blake3-…`), not {algo}; for a file's sha256, pin an archive URL"
    )]
    TreeHashAlgo {
        /// The reference.
        input: String,
        /// The algorithm given.
        algo: HashAlgo,
    },
    /// The lock entry does not fit its `original` reference.
    #[error(
        "the lock entry for `{input}` is of type {locked}, the reference is a {reference} input"
    )]
    LockMismatch {
        /// The reference.
        input: String,
        /// The lock's type.
        locked: &'static str,
        /// The reference's kind.
        reference: &'static str,
    },
    /// The input gives no valid store path name.
    #[error(transparent)]
    Name(#[from] PathError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An input fetched and added to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Its store path.
    pub path: StorePath,
    /// What to record in `nexis.lock`.
    pub locked: LockedInput,
}

/// What a fetch is doing, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchEvent {
    /// Fetching from git: connecting and negotiating.
    Git,
    /// Receiving a git pack.
    GitObjects {
        /// Objects received.
        objects: u64,
        /// Objects the pack holds, once known.
        total: Option<u64>,
        /// Bytes received.
        bytes: u64,
    },
    /// Downloading: bytes received so far, and the total when the server said.
    Download {
        /// Bytes received.
        received: u64,
        /// `Content-Length`, if given.
        total: Option<u64>,
    },
    /// Unpacking the downloaded archive.
    Unpacking,
    /// Adding the tree to the store.
    Adding,
}

/// Fetches inputs into one store.
pub struct Fetcher<'s> {
    store: &'s Store,
    http: Downloader,
    git_cache: PathBuf,
    progress: Option<Box<dyn Fn(FetchEvent) + Sync + 's>>,
}

impl std::fmt::Debug for Fetcher<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("store", &self.store.root())
            .field("git_cache", &self.git_cache)
            .finish_non_exhaustive()
    }
}

impl<'s> Fetcher<'s> {
    /// A fetcher for `store`, with default download options and the git cache under the
    /// store's state directory (`/nexis/var/nexis/cache/git`).
    pub fn new(store: &'s Store) -> Fetcher<'s> {
        Fetcher::with_downloader(store, Downloader::default())
    }

    /// A fetcher that downloads with `http`.
    pub fn with_downloader(store: &'s Store, http: Downloader) -> Fetcher<'s> {
        Fetcher {
            store,
            http,
            git_cache: store.state_dir().join("cache/git"),
            progress: None,
        }
    }

    /// Report what each fetch is doing to `progress` (a progress bar); a locked input
    /// whose path is valid reports nothing.
    #[must_use]
    pub fn with_progress(mut self, progress: impl Fn(FetchEvent) + Sync + 's) -> Fetcher<'s> {
        self.progress = Some(Box::new(progress));
        self
    }

    fn report(&self, event: FetchEvent) {
        if let Some(p) = &self.progress {
            p(event);
        }
    }

    /// The store this fetcher adds to.
    pub fn store(&self) -> &'s Store {
        self.store
    }

    /// Fetch `original` (an input reference, not `path:`) as it is now — a git ref at
    /// its current commit — and add it to the store.
    pub fn fetch(&self, original: &str) -> Result<Fetched, FetchError> {
        let reference: InputRef = original.parse()?;
        self.fetch_ref(original, &reference, None)
    }

    /// The store path of a locked input: a DB lookup when it is valid, otherwise a fetch
    /// of exactly what was locked, whose tree must have the locked hash.
    pub fn realise(&self, locked: &LockedInput) -> Result<StorePath, FetchError> {
        let reference: InputRef = locked.original.parse()?;
        let path = store_path(&locked.tree_hash, &store_name(&reference))?;
        if self
            .store
            .with_db(|db| db.is_valid(&path))
            .map_err(StoreError::from)?
        {
            self.store.add_temp_root(&path)?;
            return Ok(path);
        }
        Ok(self
            .fetch_ref(&locked.original, &reference, Some(locked))?
            .path)
    }

    fn fetch_ref(
        &self,
        original: &str,
        reference: &InputRef,
        locked: Option<&LockedInput>,
    ) -> Result<Fetched, FetchError> {
        let tmp_base = self.store.store_dir().join(".tmp");
        let tmp = tempfile::Builder::new()
            .prefix("fetch-")
            .tempdir_in(&tmp_base)
            .map_err(|e| StoreError::Io {
                path: tmp_base.clone(),
                source: e,
            })?;
        let tree = tmp.path().join(SOURCE_NAME);
        let mismatch =
            |locked_kind: &'static str, reference_kind: &'static str| FetchError::LockMismatch {
                input: original.to_owned(),
                locked: locked_kind,
                reference: reference_kind,
            };
        let (source, name, pinned_tree) = match reference {
            InputRef::Path(_) => {
                return Err(FetchError::PathInput {
                    input: original.to_owned(),
                });
            }
            InputRef::Git(git) => {
                // A lock pins the commit: it is fetched by its id alone (from the git
                // cache when it is there, without any network), since the ref it was
                // taken from may have moved on since.
                let (rev, git_ref) = match locked.map(|l| &l.source) {
                    None => (
                        git.rev.as_ref().map(ToString::to_string),
                        git.git_ref.as_ref().map(|r| r.as_str().to_owned()),
                    ),
                    Some(LockedSource::Git { rev, .. }) => (Some(rev.clone()), None),
                    Some(other) => return Err(mismatch(other.kind(), "git")),
                };
                let url = git.url.to_string();
                self.report(FetchEvent::Git);
                let source = GitSource {
                    url: &url,
                    reference: git_ref.as_deref(),
                    rev: rev.as_deref(),
                    shallow: git.shallow,
                    submodules: git.submodules,
                };
                let fetched = match &self.progress {
                    None => fetch_git(&source, &self.git_cache, &tree),
                    Some(report) => fetch_git_with_progress(
                        &source,
                        &|p: GitProgress| {
                            report(FetchEvent::GitObjects {
                                objects: p.objects,
                                total: p.total_objects,
                                bytes: p.bytes,
                            });
                        },
                        &self.git_cache,
                        &tree,
                    ),
                }
                .map_err(|e| FetchError::Git {
                    input: original.to_owned(),
                    source: Box::new(e),
                })?;
                let source = LockedSource::Git {
                    url,
                    reference: fetched.reference,
                    rev: fetched.rev,
                    last_modified: fetched.commit_time,
                    submodules: git.submodules,
                };
                (source, SOURCE_NAME.to_owned(), git.hash)
            }
            InputRef::Url(input) => {
                let expected = match locked.map(|l| &l.source) {
                    None => input.hash,
                    Some(LockedSource::Url { file_hash, .. }) => Some(*file_hash),
                    Some(other) => return Err(mismatch(other.kind(), "URL")),
                };
                let url = input.url.to_string();
                let kind = input.kind();
                let download = tmp.path().join("download");
                let done = self
                    .http
                    .download_to_file(
                        &[url.as_str()],
                        expected.as_ref(),
                        &download,
                        &|p: Progress<'_>| {
                            self.report(FetchEvent::Download {
                                received: p.received,
                                total: p.total,
                            });
                        },
                    )
                    .map_err(|e| FetchError::Download {
                        input: original.to_owned(),
                        source: Box::new(e),
                    })?;
                let algo = expected.map_or(HashAlgo::Sha256, |h| h.algo);
                let (unpack, name) = match kind {
                    UrlKind::Archive(kind) => {
                        self.report(FetchEvent::Unpacking);
                        unpack_file(kind, &download, &tree, &Limits::DEFAULT).map_err(|e| {
                            FetchError::Unpack {
                                input: original.to_owned(),
                                source: Box::new(e),
                            }
                        })?;
                        (true, store_name(reference))
                    }
                    UrlKind::File => {
                        std::fs::rename(&download, &tree).map_err(|e| StoreError::Io {
                            path: tree.clone(),
                            source: e,
                        })?;
                        (false, store_name(reference))
                    }
                };
                let source = LockedSource::Url {
                    url,
                    file_hash: done.hash(algo),
                    unpack,
                };
                (source, name, None)
            }
        };
        self.report(FetchEvent::Adding);
        // The tree is ours, in the store's `.tmp/`: it is moved into the store, not copied.
        let added = self
            .store
            .add_owned_tree(&tree, &name)
            .map_err(|e| FetchError::Add {
                input: original.to_owned(),
                source: Box::new(e),
            })?;
        let tree_hash = Hash {
            algo: HashAlgo::Blake3,
            digest: added.tree_hash,
        };
        let pins = [
            (pinned_tree, "its `hash=`"),
            (locked.map(|l| l.tree_hash), "nexis.lock"),
        ];
        for (pin, pinned_by) in pins {
            let Some(expected) = pin else { continue };
            if expected.algo != HashAlgo::Blake3 {
                return Err(FetchError::TreeHashAlgo {
                    input: original.to_owned(),
                    algo: expected.algo,
                });
            }
            if expected != tree_hash {
                return Err(FetchError::TreeHash {
                    input: original.to_owned(),
                    pinned_by,
                    expected,
                    actual: tree_hash,
                });
            }
        }
        Ok(Fetched {
            path: added.path,
            locked: LockedInput {
                original: original.to_owned(),
                source,
                tree_hash,
            },
        })
    }
}

/// The name of an input's store path: a plain file's name, else `source`.
fn store_name(reference: &InputRef) -> String {
    match reference {
        InputRef::Url(u) if u.kind() == UrlKind::File => u.url.file_name(),
        _ => SOURCE_NAME.to_owned(),
    }
}

/// The content-addressed store path of a tree with this hash and name.
fn store_path(tree_hash: &Hash, name: &str) -> Result<StorePath, PathError> {
    StorePath::new(
        &ContentKind::Source { references: &[] },
        &tree_hash.digest,
        name,
    )
}
