//! The tree hash: the store's content digest, a Merkle hash over a file tree.
//!
//! Each node's hash depends only on its kind, its content and its children's hashes, so
//! files are hashed in parallel and large files with blake3's own parallelism. The exact
//! bytes are in `docs/archive.md`.

/// Domain prefix of every node hash.
const PREFIX: &[u8] = b"nexis-tree-v1\0";

/// Files at least this large are hashed with blake3's multi-threaded mode.
pub(crate) const LARGE_FILE: u64 = 1 << 20;

/// Hash of a regular file node, from its content hash.
pub fn file_node(executable: bool, size: u64, content: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(PREFIX);
    h.update(b"file\0");
    h.update(&[u8::from(executable)]);
    h.update(&size.to_le_bytes());
    h.update(content);
    *h.finalize().as_bytes()
}

/// Hash of a symlink node.
pub fn symlink_node(target: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(PREFIX);
    h.update(b"symlink\0");
    h.update(&(target.len() as u64).to_le_bytes());
    h.update(target);
    *h.finalize().as_bytes()
}

/// Hash of a directory node from its entries, which must be in strictly increasing
/// bytewise name order.
pub fn dir_node<'a>(entries: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8; 32])>) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(PREFIX);
    h.update(b"dir\0");
    h.update(&(entries.len() as u64).to_le_bytes());
    for (name, child) in entries {
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name);
        h.update(child);
    }
    *h.finalize().as_bytes()
}
