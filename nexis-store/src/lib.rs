//! The NexisOS content-addressed store.
//!
//! Owns store paths (`/nexis/store/<hash>-<name>`), the canonical archive format,
//! blake3 hashing, the SQLite metadata database, references and closures, GC roots and
//! garbage collection, deduplication, verification and repair, export/import, Ed25519
//! signatures and the binary-cache layout. Every write is atomic: build into a temporary
//! path in the store's filesystem, fsync, rename, then register in one transaction.
//!
//! Built so far: store paths and their fingerprints ([`StorePath`], `docs/store.md`);
//! the tree hash ([`hash_path`]) and the canonical archive ([`write_archive`],
//! [`read_archive`] with a [`Visitor`], [`unpack_archive`], [`list_archive`],
//! `docs/archive.md`); the metadata database ([`Db`]); adding trees atomically with
//! deduplication and references ([`Store::add_path`],
//! [`Store::add_path_with_references`]), many at once in one batch ([`Store::add_paths`]);
//! GC roots, temp roots and crash-safe garbage
//! collection ([`Store::collect_garbage`]); reference scanning ([`RefScanner`]); Ed25519
//! keys and signatures ([`SecretKey`], [`PublicKey`]); export streams ([`Store::export`],
//! [`Store::import`]) and binary caches ([`Store::copy_to_cache`] to a directory,
//! [`Store::substitute_from`] from any [`CacheSource`] — a [`DirCache`] here, HTTP in
//! nexis-fetch —, the info file [`CacheInfo`]), both received through a
//! [`Receiver`] that verifies every path (tree hash, content address, a signature by a
//! [`Trust`]ed key) before the batch becomes valid in one transaction; checking the
//! store against its database ([`Store::verify`], a [`VerifyReport`] of [`Problem`]s);
//! deduplicating paths added before ([`Store::optimise`]); reading inside valid paths
//! ([`Store::list`], [`Store::open_file`]); repairing it ([`Store::repair`]: canonical
//! modes in place, damaged or missing paths restored from a binary cache).
//!
//! ```
//! let root = tempfile::tempdir()?;
//! let src = tempfile::tempdir()?;
//! std::fs::write(src.path().join("hello.txt"), "hello\n")?;
//! let store = nexis_store::Store::open(root.path())?;
//! let added = store.add_path(&src.path().join("hello.txt"), None)?;
//! assert!(added.path.to_string().starts_with("/nexis/store/"));
//! assert_eq!(nexis_store::hash_path(&store.physical(&added.path))?.hash, added.tree_hash);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod add;
mod archive;
mod base32;
mod browse;
mod cache;
mod db;
mod export;
mod gc;
mod hash;
mod optimise;
mod path;
mod receive;
mod refs;
mod repair;
mod sign;
mod store;
mod substitute;
mod verify;
mod walk;

pub use add::{AddError, Added};
pub use archive::{
    ArchiveError, Entry, EntryKind, LimitKind, Limits, Listing, MAGIC as ARCHIVE_MAGIC,
    MAX_ENTRY_NAME_LEN, MAX_TARGET_LEN, Malformation, Visitor, list_archive, read_archive,
    remove_tree, unpack_archive, write_archive,
};
pub use base32::{ALPHABET as BASE32_ALPHABET, decode as base32_decode, encode as base32_encode};
pub use browse::{BrowseError, StoreEntry, StoreEntryKind};
pub use cache::{
    ArchiveFile, CACHE_INFO_FILE, CacheError, CacheInfo, CacheMeta, Compression, CopyReport,
    DEFAULT_PRIORITY, Encoder, GZIP_MAGIC, InfoError, InfoProblem, MAX_INFO_LEN, MAX_INFO_LINE_LEN,
    MAX_INFO_LINES, UnknownCompression, ZSTD_MAGIC, is_relative_cache_url,
};
pub use db::{DanglingRef, Db, DbError, PathInfo};
pub use export::{EXPORT_MAGIC, ExportError, ImportError, MAX_EXPORT_PATHS};
pub use gc::{GcOptions, GcProgress, GcReport};
pub use hash::{TreeInfo, hash_path};
pub use optimise::{OptimiseProgress, OptimiseReport};
pub use path::{
    ContentKind, HASH_BYTES, HASH_CHARS, MAX_NAME_LEN, PathError, STORE_DIR, StorePath, check_name,
    fingerprint,
};
pub use receive::{FileDigest, ReceiveError, Receiver, Trust};
pub use refs::RefScanner;
pub use repair::RepairReport;
pub use sign::{PublicKey, SecretKey, SignError, fingerprint as signing_fingerprint, trusted_by};
pub use store::{Store, StoreError, error_chain, human_bytes};
pub use substitute::{CacheSource, DirCache, SubstituteReport};
pub use verify::{Problem, VerifyProgress, VerifyReport};
