//! The tree hash: the store's content digest, a Merkle hash over a file tree.
//!
//! A node's hash depends only on its kind, its content and its children's hashes, so the
//! files of a tree are hashed in parallel (rayon) and a large file's content with blake3's
//! own multi-threaded mode. The hashed bytes (all integers u64 little-endian):
//!
//! ```text
//! file     blake3("nexis-tree-v1\0file\0"    exec(1 byte: 0|1)  size  blake3(content))
//! symlink  blake3("nexis-tree-v1\0symlink\0" len  target)
//! dir      blake3("nexis-tree-v1\0dir\0"     count  { name_len  name  child_hash }*)
//! ```
//!
//! Directory entries are in strictly increasing bytewise order of their names. A worked
//! example is in `docs/archive.md`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use rayon::prelude::*;

use crate::archive::{self, ArchiveError};
use crate::walk::{self, Opened};

/// Domain prefix of every node's hashed bytes: the format's name and version.
pub(crate) const PREFIX: &[u8] = b"nexis-tree-v1\0";

/// Files at least this large have their content hashed with blake3's multi-threaded mode.
pub(crate) const LARGE_FILE: u64 = 1 << 20;

/// What hashing, archiving or unpacking a tree found out about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TreeInfo {
    /// The tree hash of the root.
    pub hash: [u8; 32],
    /// Size in bytes of the tree's canonical archive, header included.
    pub archive_size: u64,
    /// Nodes in the tree: files, symlinks and directories, the root included.
    pub entries: u64,
    /// Regular files in the tree.
    pub files: u64,
    /// Bytes of regular-file content in the tree.
    pub bytes: u64,
}

impl TreeInfo {
    /// The tree hash as 64 lower-case hex digits.
    pub fn hash_hex(&self) -> String {
        blake3::Hash::from_bytes(self.hash).to_hex().to_string()
    }
}

/// Hash of a regular file node, from the blake3 hash of its content.
pub(crate) fn file_hash(executable: bool, size: u64, content_hash: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(PREFIX)
        .update(b"file\0")
        .update(&[u8::from(executable)])
        .update(&size.to_le_bytes())
        .update(content_hash);
    *h.finalize().as_bytes()
}

/// Hash of a symlink node.
pub(crate) fn symlink_hash(target: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(PREFIX)
        .update(b"symlink\0")
        .update(&(target.len() as u64).to_le_bytes())
        .update(target);
    *h.finalize().as_bytes()
}

/// Hash of a directory node, fed one entry at a time (in strictly increasing name order:
/// the caller's duty), so that nothing about earlier entries needs to be kept.
#[derive(Debug, Clone)]
pub(crate) struct DirHasher(blake3::Hasher);

impl DirHasher {
    /// A directory with `entries` entries.
    pub(crate) fn new(entries: u64) -> DirHasher {
        let mut h = blake3::Hasher::new();
        h.update(PREFIX)
            .update(b"dir\0")
            .update(&entries.to_le_bytes());
        DirHasher(h)
    }

    /// The next entry: its name and its node's hash.
    pub(crate) fn entry(&mut self, name: &[u8], child: &[u8; 32]) {
        self.0
            .update(&(name.len() as u64).to_le_bytes())
            .update(name)
            .update(child);
    }

    /// The directory's hash.
    pub(crate) fn finish(&self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

/// One node's hash and totals, as the walkers build them bottom-up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeSummary {
    pub(crate) hash: [u8; 32],
    /// Bytes of the node's encoding in the archive stream (header excluded).
    pub(crate) size: u64,
    pub(crate) entries: u64,
    pub(crate) files: u64,
    pub(crate) bytes: u64,
}

impl NodeSummary {
    pub(crate) fn file(executable: bool, size: u64, content_hash: &[u8; 32]) -> NodeSummary {
        NodeSummary {
            hash: file_hash(executable, size, content_hash),
            size: archive::file_node_len(size),
            entries: 1,
            files: 1,
            bytes: size,
        }
    }

    pub(crate) fn symlink(target: &[u8]) -> NodeSummary {
        NodeSummary {
            hash: symlink_hash(target),
            size: archive::symlink_node_len(target.len() as u64),
            entries: 1,
            files: 0,
            bytes: 0,
        }
    }

    /// An empty directory; its hash is filled by [`NodeSummary::finish_dir`].
    pub(crate) fn dir() -> NodeSummary {
        NodeSummary {
            hash: [0; 32],
            size: archive::DIR_HEADER_LEN,
            entries: 1,
            files: 0,
            bytes: 0,
        }
    }

    /// Count a child named `name` into this directory's totals.
    pub(crate) fn add_child(&mut self, name: &[u8], child: &NodeSummary) {
        self.size += archive::string_len(name.len() as u64) + child.size;
        self.entries += child.entries;
        self.files += child.files;
        self.bytes += child.bytes;
    }

    pub(crate) fn into_info(self) -> TreeInfo {
        TreeInfo {
            hash: self.hash,
            archive_size: archive::MAGIC.len() as u64 + self.size,
            entries: self.entries,
            files: self.files,
            bytes: self.bytes,
        }
    }
}

/// Hash the tree at `path` (a file, a directory or a symlink, which is not followed).
///
/// Files are hashed in parallel, and files of at least 1 MiB with blake3's multi-threaded
/// mode. Device nodes, sockets and FIFOs are refused, as are trees deeper than
/// [`Limits::DEFAULT`](crate::Limits::DEFAULT) allows (so that whatever hashes also
/// unpacks). The result equals what [`write_archive`](crate::write_archive) returns for
/// the same tree.
pub fn hash_path(path: &Path) -> Result<TreeInfo, ArchiveError> {
    let root = walk::open_root(path)?;
    Ok(hash_node(root, path, 0, 0)?.into_info())
}

/// Directories this deep and deeper are hashed one node at a time rather than by
/// recursing in parallel, which keeps the stack of rayon's threads bounded (their work
/// stealing stacks tasks on top of each other). Files are still hashed in parallel within
/// the directories above.
const PARALLEL_DEPTH: u64 = 12;

/// Hash an opened node at `path`, `depth` levels and `rel_len` bytes of relative path
/// below the root.
fn hash_node(
    node: Opened,
    path: &Path,
    depth: u64,
    rel_len: u64,
) -> Result<NodeSummary, ArchiveError> {
    if depth >= PARALLEL_DEPTH && matches!(node, Opened::Dir(_)) {
        return archive::hash_sequential(node, path, depth, rel_len);
    }
    match node {
        Opened::File {
            mut file,
            executable,
            size,
        } => {
            let mut buf = Vec::new();
            let content = walk::read_content(&mut file, size, path, &mut buf, |_| Ok(()))?;
            Ok(NodeSummary::file(executable, size, &content))
        }
        Opened::Symlink(target) => Ok(NodeSummary::symlink(&target)),
        Opened::Dir(mut dir) => {
            let names = walk::read_dir_sorted(&mut dir, path)?;
            let fd = walk::dir_fd(&dir, path)?;
            let children = names
                .par_iter()
                .map(|(name, hint)| {
                    let child_path = path.join(OsStr::from_bytes(name.to_bytes()));
                    let child_rel = walk::check_child(depth, rel_len, name, &child_path)?;
                    let opened = walk::open(fd, name.as_c_str(), *hint, &child_path)?;
                    hash_node(opened, &child_path, depth + 1, child_rel)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut summary = NodeSummary::dir();
            let mut hasher = DirHasher::new(names.len() as u64);
            for ((name, _), child) in names.iter().zip(&children) {
                hasher.entry(name.to_bytes(), &child.hash);
                summary.add_child(name.to_bytes(), child);
            }
            summary.hash = hasher.finish();
            Ok(summary)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_kinds_and_fields_separate_hashes() {
        let c = *blake3::hash(b"x").as_bytes();
        let plain = file_hash(false, 1, &c);
        assert_ne!(plain, file_hash(true, 1, &c));
        assert_ne!(plain, file_hash(false, 2, &c));
        assert_ne!(plain, file_hash(false, 1, blake3::hash(b"y").as_bytes()));
        assert_ne!(symlink_hash(b"x"), symlink_hash(b"y"));
        assert_ne!(DirHasher::new(0).finish(), DirHasher::new(1).finish());

        // A directory entry's name and hash are length-delimited: moving a byte from the
        // name into nothing else cannot give the same encoding.
        let mut a = DirHasher::new(1);
        a.entry(b"ab", &plain);
        let mut b = DirHasher::new(1);
        b.entry(b"a", &plain);
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn file_hash_is_the_documented_encoding() {
        let content = *blake3::hash(b"hi\n").as_bytes();
        let mut bytes = b"nexis-tree-v1\0file\0\x01".to_vec();
        bytes.extend_from_slice(&3u64.to_le_bytes());
        bytes.extend_from_slice(&content);
        assert_eq!(
            file_hash(true, 3, &content),
            *blake3::hash(&bytes).as_bytes()
        );
    }

    #[test]
    fn summaries_add_up() {
        let mut dir = NodeSummary::dir();
        let file = NodeSummary::file(false, 3, &[0; 32]);
        dir.add_child(b"hello", &file);
        // dir tag + count, name string (8 + 8), file tag + size + padded content (8 + 8 + 8).
        assert_eq!(dir.size, 16 + 16 + 24);
        assert_eq!((dir.entries, dir.files, dir.bytes), (2, 1, 3));
        assert_eq!(dir.into_info().archive_size, 16 + 56);
    }
}
