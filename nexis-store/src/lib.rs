//! The NexisOS content-addressed store.
//!
//! Owns store paths (`/nexis/store/<hash>-<name>`), the canonical archive format,
//! blake3 hashing, the SQLite metadata database, references and closures, GC roots and
//! garbage collection, deduplication, verification and repair, export/import, Ed25519
//! signatures and the binary-cache layout. Every write is atomic: build into a temporary
//! path in the store's filesystem, fsync, rename, then register in one transaction.
//!
//! This crate is filled by the store issue; nothing is implemented yet.
