//! Receiving paths from outside (an export stream, a binary cache): verify everything,
//! then make the whole batch valid at once.
//!
//! A [`Receiver`] holds the GC lock (shared) from [`Store::receive`] until it is committed
//! or dropped. Each path offered to it ([`Receiver::add`], or
//! [`Receiver::add_compressed`] for an archive file of a binary cache) is checked, before
//! a byte of it is written, for:
//!
//! 1. being needed: a path valid already, or offered before, is skipped unread;
//! 2. its references: each is the path itself, valid, or received earlier in the batch;
//! 3. its content address, when it has one: the path is the one its tree hash and
//!    references give;
//! 4. a signature by a trusted key, when [`Trust::require_signatures`] is set.
//!
//! Its archive is then unpacked into a private directory under `.tmp/` (canonical: modes
//! 0444/0555, mtime 1), and the tree hash and archive size found are compared with the
//! info's. [`Receiver::commit`] takes the paths' locks (in sorted order, so that two
//! receivers never deadlock), syncs the filesystem once, renames each tree into place
//! and registers them all in one transaction. Dropping a receiver without committing
//! removes everything it unpacked: the store is left as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use crate::add::now;
use crate::archive::{ArchiveError, Limits, unpack_archive};
use crate::cache::CacheInfo;
use crate::db::{DbError, PathInfo};
use crate::gc::remove_tree;
use crate::path::{ContentKind, StorePath};
use crate::sign::{PublicKey, trusted_by};
use crate::store::{Store, StoreError};

/// Which signatures make a received path acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    /// Keys whose signature is enough.
    pub keys: Vec<PublicKey>,
    /// Refuse paths no trusted key signed (the default). Without it, the content is
    /// still checked against the info's tree hash and content address.
    pub require_signatures: bool,
}

impl Default for Trust {
    fn default() -> Trust {
        Trust {
            keys: Vec::new(),
            require_signatures: true,
        }
    }
}

impl Trust {
    /// Trust `keys`, requiring a signature by one of them.
    pub fn new(keys: Vec<PublicKey>) -> Trust {
        Trust {
            keys,
            require_signatures: true,
        }
    }

    /// Accept paths without a trusted signature (content checks still apply).
    pub fn unsigned() -> Trust {
        Trust {
            keys: Vec::new(),
            require_signatures: false,
        }
    }

    /// Whether `info` carries a signature by a trusted key, when one is required.
    pub fn check(&self, info: &PathInfo) -> Result<(), ReceiveError> {
        if !self.require_signatures || trusted_by(info, &self.keys).is_some() {
            return Ok(());
        }
        let signed_by: BTreeSet<String> = info
            .signatures
            .iter()
            .map(|s| s.split_once(':').map_or(s.as_str(), |(n, _)| n).to_owned())
            .collect();
        Err(ReceiveError::Untrusted {
            path: info.path.clone(),
            trusted: self.keys.iter().map(|k| k.name().to_owned()).collect(),
            signed_by: signed_by.into_iter().collect(),
        })
    }
}

/// Names for a message: `a, b`, or `none`.
fn names(list: &[String]) -> String {
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}

fn hex(hash: &[u8; 32]) -> String {
    blake3::Hash::from_bytes(*hash).to_hex().to_string()
}

/// A file's size and blake3 hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// Its size in bytes.
    pub size: u64,
    /// blake3 of its bytes.
    pub hash: [u8; 32],
}

impl std::fmt::Display for FileDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes with hash blake3:{}",
            self.size,
            hex(&self.hash)
        )
    }
}

/// A received path failed verification, or could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// No trusted key signed the path, and signatures are required.
    #[error(
        "{path} is not signed by a trusted key (trusted keys: {}; signatures by: {})",
        names(trusted),
        names(signed_by)
    )]
    Untrusted {
        /// The path.
        path: StorePath,
        /// The names of the keys tried.
        trusted: Vec<String>,
        /// The names of the keys that did sign it (their signatures were not accepted).
        signed_by: Vec<String>,
    },
    /// The path is not the one its content address and references give.
    #[error(
        "{path} does not match its content address: its tree hash and references give {computed}"
    )]
    ContentAddress {
        /// The path claimed.
        path: StorePath,
        /// The path its tree hash and references give.
        computed: StorePath,
    },
    /// The content address names another tree than the tree hash.
    #[error(
        "{path}: content address {content_address} does not name its tree hash blake3:{tree_hash}"
    )]
    ContentAddressHash {
        /// The path.
        path: StorePath,
        /// Its content address.
        content_address: String,
        /// Its tree hash (hex).
        tree_hash: String,
    },
    /// A content address of a form this version cannot check.
    #[error(
        "{path}: cannot check content address `{content_address}` (expected source:blake3:<hex> or text:blake3:<hex>)"
    )]
    UnknownContentAddress {
        /// The path.
        path: StorePath,
        /// Its content address.
        content_address: String,
    },
    /// A reference that is neither valid nor received before the path.
    #[error("{path} refers to {reference}, which is neither valid nor received before it")]
    MissingReference {
        /// The path.
        path: StorePath,
        /// The reference.
        reference: StorePath,
    },
    /// The archive does not unpack (malformed, truncated, unreadable).
    #[error("cannot unpack the archive of {path}")]
    Unpack {
        /// The path.
        path: StorePath,
        /// Why.
        #[source]
        source: Box<ArchiveError>,
    },
    /// The unpacked tree is not the one the info describes.
    #[error("{path}: the archive holds tree blake3:{actual}, its info says blake3:{expected}")]
    TreeHash {
        /// The path.
        path: StorePath,
        /// The tree hash the info gives (hex).
        expected: String,
        /// The tree hash found (hex).
        actual: String,
    },
    /// The archive is not as long as the info says.
    #[error("{path}: the archive is {actual} bytes, its info says {expected}")]
    ArchiveSize {
        /// The path.
        path: StorePath,
        /// The size the info gives.
        expected: u64,
        /// The size found.
        actual: u64,
    },
    /// The info names no archive file (`add_compressed` needs one).
    #[error("the info of {path} names no archive file")]
    NoArchiveFile {
        /// The path.
        path: StorePath,
    },
    /// The compressed archive file is not the one the info describes.
    #[error("{path}: the archive file {url} is {actual}; its info says {expected}")]
    FileHash {
        /// The path.
        path: StorePath,
        /// The file's URL.
        url: String,
        /// What the info gives.
        expected: Box<FileDigest>,
        /// What was found (at most one byte more than expected is read).
        actual: Box<FileDigest>,
    },
    /// The archive file holds more than the archive.
    #[error("{path}: the archive file {url} holds bytes after the archive")]
    TrailingData {
        /// The path.
        path: StorePath,
        /// The file's URL.
        url: String,
    },
    /// Reading the compressed archive file failed.
    #[error("cannot read the archive file {url} of {path}")]
    ReadFile {
        /// The path.
        path: StorePath,
        /// The file's URL.
        url: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<DbError> for ReceiveError {
    fn from(e: DbError) -> ReceiveError {
        ReceiveError::Store(e.into())
    }
}

/// Check a path against its content address, if it has one.
pub(crate) fn check_content_address(info: &PathInfo) -> Result<(), ReceiveError> {
    let Some(ca) = &info.content_address else {
        return Ok(());
    };
    let unknown = || ReceiveError::UnknownContentAddress {
        path: info.path.clone(),
        content_address: ca.clone(),
    };
    let (text, hex_digest) = if let Some(h) = ca.strip_prefix("source:blake3:") {
        (false, h)
    } else if let Some(h) = ca.strip_prefix("text:blake3:") {
        (true, h)
    } else {
        return Err(unknown());
    };
    if hex_digest.len() != 64
        || !hex_digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(unknown());
    }
    let digest = blake3::Hash::from_hex(hex_digest).map_err(|_| unknown())?;
    if *digest.as_bytes() != info.tree_hash {
        return Err(ReceiveError::ContentAddressHash {
            path: info.path.clone(),
            content_address: ca.clone(),
            tree_hash: hex(&info.tree_hash),
        });
    }
    let references: Vec<StorePath> = info.references.iter().cloned().collect();
    let kind = if text {
        ContentKind::Text {
            references: &references,
        }
    } else {
        ContentKind::Source {
            references: &references,
        }
    };
    let computed = StorePath::new(&kind, &info.tree_hash, info.path.name())
        .expect("the name is valid: it is the name of a store path");
    if computed != info.path {
        return Err(ReceiveError::ContentAddress {
            path: info.path.clone(),
            computed,
        });
    }
    Ok(())
}

/// Order `nodes` so that every node comes after the nodes it refers to (among `nodes`;
/// self-references and references outside are ignored). Deterministic: ties go in path
/// order. Nodes in a reference cycle (which nexis never makes) come in path order.
pub(crate) fn references_first<T>(
    nodes: &BTreeMap<StorePath, T>,
    refs: impl Fn(&T) -> &BTreeSet<StorePath>,
) -> Vec<StorePath> {
    let mut out = Vec::with_capacity(nodes.len());
    // 1: on the stack; 2: done.
    let mut state: BTreeMap<&StorePath, u8> = BTreeMap::new();
    for root in nodes.keys() {
        if state.contains_key(root) {
            continue;
        }
        state.insert(root, 1);
        let mut stack: Vec<(&StorePath, Vec<&StorePath>)> = vec![(
            root,
            refs(&nodes[root])
                .iter()
                .filter(|r| *r != root && nodes.contains_key(*r))
                .rev()
                .collect(),
        )];
        while let Some((node, pending)) = stack.last_mut() {
            if let Some(next) = pending.pop() {
                let (next, _) = nodes.get_key_value(next).expect("filtered to nodes");
                if !state.contains_key(next) {
                    state.insert(next, 1);
                    let children = refs(&nodes[next])
                        .iter()
                        .filter(|r| *r != next && nodes.contains_key(*r))
                        .rev()
                        .collect();
                    stack.push((next, children));
                }
            } else {
                let node = *node;
                state.insert(node, 2);
                out.push(node.clone());
                stack.pop();
            }
        }
    }
    out
}

/// A path unpacked and verified, waiting for the commit.
#[derive(Debug)]
struct Prepared {
    info: PathInfo,
    /// Private directory under `.tmp/`; the tree is at `tmp/t`.
    tmp: PathBuf,
}

/// Verifies received paths and makes them valid together (see the module docs).
#[derive(Debug)]
pub struct Receiver<'s> {
    store: &'s Store,
    trust: Trust,
    _gc: File,
    prepared: Vec<Prepared>,
    in_batch: BTreeSet<StorePath>,
    /// Every path offered, in order, once.
    offered: Vec<StorePath>,
    offered_set: BTreeSet<StorePath>,
}

impl Store {
    /// Start receiving paths, accepting those `trust` accepts. Holds the GC lock (shared)
    /// until the receiver is committed or dropped.
    pub fn receive(&self, trust: &Trust) -> Result<Receiver<'_>, StoreError> {
        Ok(Receiver {
            store: self,
            trust: trust.clone(),
            _gc: self.lock_gc(false)?,
            prepared: Vec::new(),
            in_batch: BTreeSet::new(),
            offered: Vec::new(),
            offered_set: BTreeSet::new(),
        })
    }
}

/// A reader that hashes (blake3) and counts what is read through it, and keeps the
/// first error of the reader it wraps (a broken connection, a timeout), so that it is
/// reported as what it is rather than as whatever the decompressor made of it.
struct HashingReader<R> {
    inner: R,
    hasher: blake3::Hasher,
    len: u64,
    error: Option<io::Error>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.error.is_some() {
            return Err(io::Error::other("the archive file could not be read"));
        }
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.len += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let kind = e.kind();
                self.error = Some(e);
                Err(io::Error::new(kind, "the archive file could not be read"))
            }
        }
    }
}

impl Receiver<'_> {
    /// Whether `path` still has to be received: neither valid nor in this batch.
    pub fn wants(&self, path: &StorePath) -> Result<bool, ReceiveError> {
        Ok(!self.in_batch.contains(path) && !self.store.with_db(|db| db.is_valid(path))?)
    }

    /// Record `path` as part of this batch without receiving anything for it (it is
    /// valid already, or offered before): [`Receiver::commit`] keeps it as a temp root
    /// and lists it.
    pub fn offer(&mut self, path: &StorePath) {
        if self.offered_set.insert(path.clone()) {
            self.offered.push(path.clone());
        }
    }

    /// The checks that need no content: references, content address, signature.
    fn check(&self, info: &CacheInfo) -> Result<PathInfo, ReceiveError> {
        let path_info = info.to_path_info();
        for r in &info.references {
            if *r != info.path
                && !self.in_batch.contains(r)
                && !self.store.with_db(|db| db.is_valid(r))?
            {
                return Err(ReceiveError::MissingReference {
                    path: info.path.clone(),
                    reference: r.clone(),
                });
            }
        }
        check_content_address(&path_info)?;
        self.trust.check(&path_info)?;
        Ok(path_info)
    }

    /// Offer a path with its (uncompressed) canonical archive. Returns `false`, without
    /// reading `archive`, when the path is valid already or was offered before; the
    /// caller skips the archive. Otherwise checks the info, unpacks the archive (reading
    /// at most the info's archive size) and checks the tree hash and size found.
    pub fn add(&mut self, info: &CacheInfo, archive: &mut dyn Read) -> Result<bool, ReceiveError> {
        self.offer(&info.path);
        if !self.wants(&info.path)? {
            return Ok(false);
        }
        let path_info = self.check(info)?;
        self.unpack(path_info, archive)?;
        Ok(true)
    }

    /// Offer a path with its compressed archive file as a binary cache serves it (the
    /// info's `URL` names it; `file` reads it). Like [`Receiver::add`], and the file's
    /// size and blake3 hash are checked as it is read: a file that is not the one the
    /// info describes is refused with [`ReceiveError::FileHash`], whatever else is wrong
    /// with it. Returns `false` without reading when the path is not needed.
    pub fn add_compressed(
        &mut self,
        info: &CacheInfo,
        file: &mut dyn Read,
    ) -> Result<bool, ReceiveError> {
        self.offer(&info.path);
        if !self.wants(&info.path)? {
            return Ok(false);
        }
        self.prepare_compressed(info, file).map(|()| true)
    }

    /// Check `info`, then unpack and verify its compressed archive file into `.tmp/` as
    /// [`Receiver::add_compressed`] does, whether or not the path is valid (repair
    /// replaces valid paths).
    pub(crate) fn prepare_compressed(
        &mut self,
        info: &CacheInfo,
        file: &mut dyn Read,
    ) -> Result<(), ReceiveError> {
        let Some(af) = &info.file else {
            return Err(ReceiveError::NoArchiveFile {
                path: info.path.clone(),
            });
        };
        let path_info = self.check(info)?;
        let read_err = |source| ReceiveError::ReadFile {
            path: info.path.clone(),
            url: af.url.clone(),
            source,
        };
        // One byte more than the info says, so that a longer file is noticed.
        let mut hashing = HashingReader {
            inner: file.take(af.file_size.saturating_add(1)),
            hasher: blake3::Hasher::new(),
            len: 0,
            error: None,
        };
        let result = match af.compression.decoder(&mut hashing) {
            Ok(mut decoder) => self.unpack(path_info, &mut decoder).and_then(|()| {
                // The archive must be all the file holds.
                let mut probe = [0u8; 1];
                match decoder.read(&mut probe) {
                    Ok(0) => Ok(()),
                    Ok(_) => {
                        self.discard_last();
                        Err(ReceiveError::TrailingData {
                            path: info.path.clone(),
                            url: af.url.clone(),
                        })
                    }
                    Err(e) => {
                        self.discard_last();
                        Err(read_err(e))
                    }
                }
            }),
            Err(e) => Err(read_err(e)),
        };
        // Read what the decompressor left, so the whole file is hashed.
        let drained = io::copy(&mut hashing, &mut io::sink());
        // A file that could not be read whole has no hash to compare.
        if let Some(e) = hashing.error.take() {
            if result.is_ok() {
                self.discard_last();
            }
            return Err(read_err(e));
        }
        let hash = *hashing.hasher.finalize().as_bytes();
        if hash != af.file_hash || hashing.len != af.file_size {
            if result.is_ok() {
                self.discard_last();
            }
            return Err(ReceiveError::FileHash {
                path: info.path.clone(),
                url: af.url.clone(),
                expected: Box::new(FileDigest {
                    size: af.file_size,
                    hash: af.file_hash,
                }),
                actual: Box::new(FileDigest {
                    size: hashing.len,
                    hash,
                }),
            });
        }
        if let Err(e) = drained {
            if result.is_ok() {
                self.discard_last();
            }
            return Err(read_err(e));
        }
        result
    }

    /// Take the prepared trees (each at `DIR/t`, with its info) out of the receiver,
    /// which then no longer removes them: the caller does.
    pub(crate) fn take_prepared(&mut self) -> Vec<(PathInfo, PathBuf)> {
        self.in_batch.clear();
        std::mem::take(&mut self.prepared)
            .into_iter()
            .map(|p| (p.info, p.tmp))
            .collect()
    }

    /// Remove the path prepared last.
    fn discard_last(&mut self) {
        if let Some(p) = self.prepared.pop() {
            self.in_batch.remove(&p.info.path);
            let _ = remove_tree(&p.tmp);
        }
    }

    /// Unpack into `.tmp/` and compare with the info.
    fn unpack(&mut self, info: PathInfo, archive: &mut dyn Read) -> Result<(), ReceiveError> {
        let tmp = self.store.temp_dir()?;
        let fail = |e: ReceiveError| {
            let _ = remove_tree(&tmp);
            Err(e)
        };
        let mut limited = archive.take(info.archive_size);
        let tree = match unpack_archive(&mut limited, &tmp.join("t"), &Limits::DEFAULT) {
            Ok(t) => t,
            Err(source) => {
                return fail(ReceiveError::Unpack {
                    path: info.path.clone(),
                    source: Box::new(source),
                });
            }
        };
        if tree.hash != info.tree_hash {
            return fail(ReceiveError::TreeHash {
                path: info.path.clone(),
                expected: hex(&info.tree_hash),
                actual: hex(&tree.hash),
            });
        }
        if tree.archive_size != info.archive_size {
            return fail(ReceiveError::ArchiveSize {
                path: info.path.clone(),
                expected: info.archive_size,
                actual: tree.archive_size,
            });
        }
        self.in_batch.insert(info.path.clone());
        self.prepared.push(Prepared { info, tmp });
        Ok(())
    }

    /// Make every received path valid: lock them, rename them into place and register
    /// them in one transaction; record every offered path as a temp root of this process.
    /// Returns the offered paths, in the order offered.
    pub fn commit(mut self) -> Result<Vec<StorePath>, ReceiveError> {
        if !self.prepared.is_empty() {
            let mut order: Vec<&StorePath> = self.prepared.iter().map(|p| &p.info.path).collect();
            order.sort();
            let _locks = order
                .iter()
                .map(|p| self.store.lock_path(p))
                .collect::<Result<Vec<File>, StoreError>>()?;
            let mut batch = Vec::new();
            let mut infos = Vec::new();
            let registered = now();
            for p in &self.prepared {
                // Another process may have made it valid meanwhile.
                if self.store.with_db(|db| db.is_valid(&p.info.path))? {
                    continue;
                }
                batch.push((p.tmp.join("t"), p.info.path.clone()));
                infos.push(PathInfo {
                    registered,
                    ..p.info.clone()
                });
            }
            let installed = self
                .store
                .install(&batch)
                .map_err(ReceiveError::from)
                .and_then(|()| Ok(self.store.with_db(|db| db.register(&infos))?));
            if let Err(e) = installed {
                // Whatever was renamed into place is not valid: take it away again.
                for (tree, path) in &batch {
                    if !tree.exists() {
                        let _ = remove_tree(&self.store.physical(path));
                    }
                }
                return Err(e);
            }
        }
        self.store.add_temp_roots(&self.offered)?;
        for p in std::mem::take(&mut self.prepared) {
            let _ = remove_tree(&p.tmp);
        }
        Ok(std::mem::take(&mut self.offered))
    }
}

impl Drop for Receiver<'_> {
    fn drop(&mut self) {
        for p in &self.prepared {
            let _ = remove_tree(&p.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(name: &str) -> StorePath {
        StorePath::new(
            &ContentKind::Source { references: &[] },
            blake3::hash(name.as_bytes()).as_bytes(),
            name,
        )
        .unwrap()
    }

    #[test]
    fn references_come_first() {
        let (a, b, c, d) = (sp("a"), sp("b"), sp("c"), sp("d"));
        let mut nodes: BTreeMap<StorePath, BTreeSet<StorePath>> = BTreeMap::new();
        nodes.insert(a.clone(), [b.clone(), c.clone(), a.clone()].into());
        nodes.insert(b.clone(), [c.clone(), sp("outside")].into());
        nodes.insert(c.clone(), BTreeSet::new());
        nodes.insert(d.clone(), [a.clone()].into());
        let order = references_first(&nodes, |r| r);
        let pos = |p: &StorePath| order.iter().position(|o| o == p).unwrap();
        assert_eq!(order.len(), 4);
        assert!(pos(&c) < pos(&b) && pos(&b) < pos(&a) && pos(&a) < pos(&d));
        // A cycle still gives every node once.
        nodes.insert(c.clone(), [a.clone()].into());
        assert_eq!(references_first(&nodes, |r| r).len(), 4);
    }

    #[test]
    fn untrusted_message_names_path_and_keys() {
        let key = crate::SecretKey::generate("mine").unwrap();
        let other = crate::SecretKey::generate("theirs").unwrap();
        let mut info = crate::cache::CacheInfo {
            path: sp("x"),
            file: None,
            tree_hash: [0; 32],
            archive_size: 8,
            references: BTreeSet::new(),
            deriver: None,
            content_address: None,
            signatures: BTreeSet::new(),
        }
        .to_path_info();
        info.signatures.insert(other.sign(&info));
        let e = Trust::new(vec![key.public()]).check(&info).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{} is not signed by a trusted key (trusted keys: mine; signatures by: theirs)",
                info.path
            )
        );
        assert!(Trust::unsigned().check(&info).is_ok());
        assert!(Trust::new(vec![other.public()]).check(&info).is_ok());
    }
}
