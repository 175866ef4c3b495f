//! Export and import: a closure of store paths as one stream (`docs/store.md`, "Export
//! format").
//!
//! ```text
//! stream   = "nexis-export-v2\n"  u64 count  manifest  archives
//! manifest = (u64 info_len  info){count}
//! archives = (u64 archive_len  archive){count}      (in manifest order)
//! ```
//!
//! Integers are u64 little-endian; `info` is the path's info text ([`CacheInfo`] without
//! the archive-file keys), `archive` its canonical archive, exactly `archive_len` bytes
//! (the info's `ArchiveSize`). Paths come references first. The whole stream may be
//! compressed with zstd or gzip; the importer tells by the first bytes.
//!
//! The manifest comes first so that an importer knows every path before any archive:
//! it refuses untrusted paths before reading content, and when it holds every path
//! already it stops after the manifest (a metadata-only no-op, whatever the archives
//! weigh).
//!
//! Importing goes through a [`Receiver`](crate::Receiver): every path is verified
//! (content, content address, signature) before any becomes valid, and all become valid
//! in one transaction.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use crate::archive::{ArchiveError, write_archive};
use crate::cache::{CacheInfo, Compression, InfoError, MAX_INFO_LEN};
use crate::db::PathInfo;
use crate::path::StorePath;
use crate::receive::{ReceiveError, Trust, references_first};
use crate::store::{Store, StoreError};

/// The 16 bytes an export stream starts with (after decompression).
pub const EXPORT_MAGIC: &[u8; 16] = b"nexis-export-v2\n";

/// At most this many paths in one stream.
pub const MAX_EXPORT_PATHS: u64 = 1 << 20;

fn hex(hash: &[u8; 32]) -> String {
    blake3::Hash::from_bytes(*hash).to_hex().to_string()
}

/// Exporting failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A path to export is not valid.
    #[error("{path} is not valid in the store")]
    NotValid {
        /// The path.
        path: StorePath,
    },
    /// Archiving a path into the stream failed (reading it, or writing the stream).
    #[error("cannot export {path}")]
    Archive {
        /// The path.
        path: StorePath,
        /// Why.
        #[source]
        source: Box<ArchiveError>,
    },
    /// A valid path's files no longer match the database.
    #[error(
        "{path} changed on disk: its archive is {actual_size} bytes with tree hash blake3:{actual}, the database says {expected_size} bytes, blake3:{expected}"
    )]
    Changed {
        /// The path.
        path: StorePath,
        /// The recorded tree hash (hex).
        expected: String,
        /// The tree hash found (hex).
        actual: String,
        /// The recorded archive size.
        expected_size: u64,
        /// The archive size found.
        actual_size: u64,
    },
    /// Writing the stream failed.
    #[error("cannot write the export stream")]
    Write {
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Importing failed; the store is as it was.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading (or decompressing) the stream failed.
    #[error("cannot read the export stream at byte {offset} (after decompression)")]
    Read {
        /// Bytes of the decompressed stream read before.
        offset: u64,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The stream is not an export stream.
    #[error("not a nexis export stream: it does not start with `nexis-export-v2`")]
    BadMagic,
    /// The stream holds more paths than the format allows.
    #[error("export stream: {count} paths (at most {MAX_EXPORT_PATHS})")]
    TooManyPaths {
        /// The count given.
        count: u64,
    },
    /// The manifest names a path twice.
    #[error("export stream: {path} is in the manifest twice (entries {first} and {second})")]
    Duplicate {
        /// The path.
        path: StorePath,
        /// Its first entry, from 1.
        first: u64,
        /// The repeated entry.
        second: u64,
    },
    /// The stream ends early.
    #[error("export stream truncated at byte {offset}: expected {expected}")]
    Truncated {
        /// Where it ends (decompressed).
        offset: u64,
        /// What was expected.
        expected: &'static str,
    },
    /// An info text longer than the format allows.
    #[error("export stream: the info of entry {record} is {len} bytes (at most {MAX_INFO_LEN})")]
    InfoTooLong {
        /// The manifest entry, from 1.
        record: u64,
        /// The length given.
        len: u64,
    },
    /// An info text does not parse.
    #[error(transparent)]
    Info(#[from] InfoError),
    /// An archive's length differs from its info's `ArchiveSize`.
    #[error("export stream: archive {record} ({path}) is {actual} bytes, its info says {expected}")]
    ArchiveLength {
        /// The manifest entry, from 1.
        record: u64,
        /// Its path.
        path: StorePath,
        /// The info's `ArchiveSize`.
        expected: u64,
        /// The length before the archive.
        actual: u64,
    },
    /// Bytes after the last archive.
    #[error("export stream: bytes after the last archive at byte {offset}")]
    TrailingBytes {
        /// Where they start.
        offset: u64,
    },
    /// A record failed verification, or installing failed.
    #[error(transparent)]
    Receive(#[from] ReceiveError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A reader that counts the bytes read through it.
struct Counting<R> {
    inner: R,
    offset: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.offset += n as u64;
        Ok(n)
    }
}

impl<R: Read> Counting<R> {
    fn exact(&mut self, buf: &mut [u8], expected: &'static str) -> Result<(), ImportError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.read(&mut buf[filled..]) {
                Ok(0) => {
                    return Err(ImportError::Truncated {
                        offset: self.offset,
                        expected,
                    });
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ImportError::Read {
                        offset: self.offset,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    fn u64(&mut self, expected: &'static str) -> Result<u64, ImportError> {
        let mut b = [0; 8];
        self.exact(&mut b, expected)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// Read up to `buf.len()` bytes, fewer only at the end of the input.
fn read_head(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, ImportError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(ImportError::Read { offset: 0, source }),
        }
    }
    Ok(filled)
}

impl Store {
    /// The closure of `paths` (valid), references first, with what the database knows
    /// of each.
    pub(crate) fn closure_in_order(
        &self,
        paths: &[StorePath],
    ) -> Result<Vec<PathInfo>, StoreError> {
        let closure = self.with_db(|db| db.closure(paths))?;
        let mut infos = BTreeMap::new();
        for p in closure {
            if let Some(info) = self.with_db(|db| db.query(&p))? {
                infos.insert(p, info);
            }
        }
        let order = references_first(&infos, |i| &i.references);
        Ok(order
            .into_iter()
            .map(|p| infos.remove(&p).expect("ordered from the map"))
            .collect())
    }

    /// Write the closure of `paths` to `out` as an export stream compressed with
    /// `compression`; returns the paths written, references first. Holds the GC lock
    /// (shared) meanwhile. Each path is archived from disk and checked against the
    /// database as it is written.
    pub fn export(
        &self,
        paths: &[StorePath],
        out: impl Write,
        compression: Compression,
    ) -> Result<Vec<StorePath>, ExportError> {
        let _gc = self.lock_gc(false)?;
        for p in paths {
            if !self
                .with_db(|db| db.is_valid(p))
                .map_err(StoreError::from)?
            {
                return Err(ExportError::NotValid { path: p.clone() });
            }
        }
        let infos = self.closure_in_order(paths)?;
        let write = |source| ExportError::Write { source };
        let mut enc = compression.encoder(out).map_err(write)?;
        enc.write_all(EXPORT_MAGIC).map_err(write)?;
        enc.write_all(&(infos.len() as u64).to_le_bytes())
            .map_err(write)?;
        for info in &infos {
            let text = CacheInfo::from_path_info(info).to_text();
            enc.write_all(&(text.len() as u64).to_le_bytes())
                .map_err(write)?;
            enc.write_all(text.as_bytes()).map_err(write)?;
        }
        for info in &infos {
            enc.write_all(&info.archive_size.to_le_bytes())
                .map_err(write)?;
            let tree = write_archive(&self.physical(&info.path), &mut enc).map_err(|source| {
                ExportError::Archive {
                    path: info.path.clone(),
                    source: Box::new(source),
                }
            })?;
            if tree.hash != info.tree_hash || tree.archive_size != info.archive_size {
                return Err(ExportError::Changed {
                    path: info.path.clone(),
                    expected: hex(&info.tree_hash),
                    actual: hex(&tree.hash),
                    expected_size: info.archive_size,
                    actual_size: tree.archive_size,
                });
            }
        }
        enc.finish().and_then(|mut w| w.flush()).map_err(write)?;
        Ok(infos.into_iter().map(|i| i.path).collect())
    }

    /// Import an export stream (compressed with zstd or gzip, or not). The manifest is
    /// read first; the paths this store lacks are checked against `trust` before any
    /// archive is read, then received as [`Receiver`](crate::Receiver) does and made
    /// valid in one transaction. Archives of paths valid already are read through, not
    /// unpacked, and reading stops once every missing path is received: a stream of
    /// valid paths is read up to its manifest only and changes nothing in the store. On
    /// any error the store is left as it was. Returns the paths of the stream, in its
    /// order.
    pub fn import(&self, input: impl Read, trust: &Trust) -> Result<Vec<StorePath>, ImportError> {
        let mut input = input;
        let mut head = [0u8; 4];
        let n = read_head(&mut input, &mut head)?;
        let compression = Compression::detect(&head[..n]);
        let chained = io::Cursor::new(head[..n].to_vec()).chain(input);
        let decoder = compression
            .decoder(chained)
            .map_err(|source| ImportError::Read { offset: 0, source })?;
        let mut src = Counting {
            inner: decoder,
            offset: 0,
        };
        let mut magic = [0u8; 16];
        match src.exact(&mut magic, "the stream header") {
            Ok(()) if &magic == EXPORT_MAGIC => {}
            Ok(()) | Err(ImportError::Truncated { .. }) => return Err(ImportError::BadMagic),
            Err(e) => return Err(e),
        }
        let count = src.u64("the number of paths")?;
        if count > MAX_EXPORT_PATHS {
            return Err(ImportError::TooManyPaths { count });
        }
        let mut manifest: Vec<CacheInfo> = Vec::new();
        let mut seen: BTreeMap<StorePath, u64> = BTreeMap::new();
        for record in 1..=count {
            let len = src.u64("the length of an info")?;
            let len = match usize::try_from(len) {
                Ok(l) if l <= MAX_INFO_LEN => l,
                _ => return Err(ImportError::InfoTooLong { record, len }),
            };
            let mut text = vec![0u8; len];
            src.exact(&mut text, "an info")?;
            let info = CacheInfo::parse(&text, &format!("export manifest entry {record}"))?;
            if let Some(first) = seen.insert(info.path.clone(), record) {
                return Err(ImportError::Duplicate {
                    path: info.path,
                    first,
                    second: record,
                });
            }
            manifest.push(info);
        }

        let mut receiver = self.receive(trust)?;
        let mut wanted = Vec::with_capacity(manifest.len());
        for info in &manifest {
            let want = receiver.wants(&info.path)?;
            if want {
                // Refused before any content is read.
                info.verify(trust)?;
            }
            wanted.push(want);
        }
        let last_wanted = wanted.iter().rposition(|w| *w);
        for (i, info) in manifest.iter().enumerate() {
            if last_wanted.is_none_or(|l| i > l) {
                receiver.offer(&info.path);
                continue;
            }
            let record = i as u64 + 1;
            let archive_len = src.u64("the length of an archive")?;
            if archive_len != info.archive_size {
                return Err(ImportError::ArchiveLength {
                    record,
                    path: info.path.clone(),
                    expected: info.archive_size,
                    actual: archive_len,
                });
            }
            let mut archive = (&mut src).take(archive_len);
            if wanted[i] && receiver.add(info, &mut archive)? {
                continue;
            }
            receiver.offer(&info.path);
            // Valid already: read the archive through without unpacking it.
            match io::copy(&mut archive, &mut io::sink()) {
                Ok(n) if n == archive_len => {}
                Ok(_) => {
                    return Err(ImportError::Truncated {
                        offset: src.offset,
                        expected: "the rest of an archive",
                    });
                }
                Err(source) => {
                    return Err(ImportError::Read {
                        offset: src.offset,
                        source,
                    });
                }
            }
        }
        if last_wanted == Some(manifest.len() - 1) {
            // The whole stream was read: nothing may follow.
            let mut probe = [0u8; 1];
            let at = src.offset;
            match src.read(&mut probe) {
                Ok(0) => {}
                Ok(_) => return Err(ImportError::TrailingBytes { offset: at }),
                Err(source) => return Err(ImportError::Read { offset: at, source }),
            }
        }
        Ok(receiver.commit()?)
    }
}
