//! The NexisOS content-addressed store.
//!
//! Owns store paths (`/nexis/store/<hash>-<name>`), the canonical archive format,
//! blake3 hashing, the SQLite metadata database, references and closures, GC roots and
//! garbage collection, deduplication, verification and repair, export/import, Ed25519
//! signatures and the binary-cache layout. Every write is atomic: build into a temporary
//! path in the store's filesystem, fsync, rename, then register in one transaction.
//!
//! Built so far: store paths and their fingerprints ([`StorePath`]) and the base-32
//! encoding. The rest is filled by the store issue.

mod add;
mod base32;
mod db;
mod gc;
mod path;
mod store;
mod tree;

pub use add::{AddError, Added};
pub use base32::{ALPHABET as BASE32_ALPHABET, decode as base32_decode, encode as base32_encode};
pub use db::{Db, DbError, PathInfo};
pub use gc::{GcOptions, GcProgress, GcReport};
pub use path::{
    ContentKind, HASH_BYTES, HASH_CHARS, MAX_NAME_LEN, PathError, STORE_DIR, StorePath, check_name,
    fingerprint,
};
pub use store::{Store, StoreError};
pub use tree::{dir_node, file_node, symlink_node};
