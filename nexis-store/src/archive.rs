//! The canonical archive: a deterministic, streamed serialisation of a file tree, for
//! export, import and binary caches. `docs/archive.md` gives the bytes and an example.
//!
//! ```text
//! archive  = "nexis-archive-v1" node                      (nothing after the root node)
//! node     = u64 1  u64 size  content  pad                regular file
//!          | u64 2  u64 size  content  pad                executable file
//!          | u64 3  string(target)                        symlink
//!          | u64 4  u64 count  { string(name) node }*     directory
//! string   = u64 len  bytes  pad
//! pad      = zero bytes up to a multiple of 8
//! ```
//!
//! Integers are u64 little-endian. Names are 1..=255 bytes, neither `.` nor `..`, without
//! `/` or NUL, in strictly increasing bytewise order; symlink targets are 1..=4095 bytes
//! without NUL. There are no times, owners, permissions beyond the executable bit, or
//! extended attributes.
//!
//! One reader ([`read_archive`]) parses and validates a stream and reports it to a
//! [`Visitor`]; [`unpack_archive`] and [`list_archive`] are visitors. It computes the
//! tree hash as it goes, reads each byte once, and allocates nothing whose size the
//! stream chooses beyond the bounds of [`Limits`].

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::hash::{DirHasher, LARGE_FILE, NodeSummary, TreeInfo, file_hash, symlink_hash};
use crate::walk::{self, CHUNK, Opened};

/// The 16 bytes every archive starts with.
pub const MAGIC: &[u8; 16] = b"nexis-archive-v1";

const TAG_FILE: u64 = 1;
const TAG_EXECUTABLE: u64 = 2;
const TAG_SYMLINK: u64 = 3;
const TAG_DIRECTORY: u64 = 4;

/// Longest entry name, in bytes (`NAME_MAX`).
pub const MAX_ENTRY_NAME_LEN: usize = 255;

/// Longest symlink target, in bytes (`PATH_MAX` without its NUL).
pub const MAX_TARGET_LEN: usize = 4095;

/// Bytes of a directory node before its entries: tag and count.
pub(crate) const DIR_HEADER_LEN: u64 = 16;

/// Buffer between the reader and its input, and between the writer and its output.
const IO_BUF: usize = 64 * 1024;

/// Zero bytes that follow `len` bytes to reach a multiple of 8.
pub(crate) fn pad_len(len: u64) -> u64 {
    (8 - len % 8) % 8
}

/// Bytes of a string of `len` bytes: length, bytes, padding.
pub(crate) fn string_len(len: u64) -> u64 {
    8 + len + pad_len(len)
}

/// Bytes of a regular file node whose content is `size` bytes.
pub(crate) fn file_node_len(size: u64) -> u64 {
    16 + size + pad_len(size)
}

/// Bytes of a symlink node whose target is `len` bytes.
pub(crate) fn symlink_node_len(len: u64) -> u64 {
    8 + string_len(len)
}

/// Length of a child's relative path (`parent/name`, or `name` below the root).
pub(crate) fn child_rel_len(parent: u64, name: u64) -> u64 {
    if parent == 0 { name } else { parent + 1 + name }
}

/// Bounds on what reading an archive accepts. Each is checked before the entry that
/// would exceed it is reported or created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest entry: the root is at depth 0, its entries at 1.
    pub max_depth: u64,
    /// Most nodes in the tree, the root included.
    pub max_entries: u64,
    /// Most bytes of file content in the tree.
    pub max_bytes: u64,
    /// Longest relative path of an entry (`a/b/c`), in bytes.
    pub max_path_len: u64,
}

impl Limits {
    /// Depth 256, 2^24 entries, 1 TiB of content, paths of 4096 bytes. Hashing and
    /// archiving a tree refuse trees beyond these depth and path limits, so that every
    /// archive written unpacks with the defaults.
    pub const DEFAULT: Limits = Limits {
        max_depth: 256,
        max_entries: 1 << 24,
        max_bytes: 1 << 40,
        max_path_len: 4096,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

/// Which limit a tree or an archive exceeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// [`Limits::max_depth`].
    Depth,
    /// [`Limits::max_entries`].
    Entries,
    /// [`Limits::max_bytes`].
    Bytes,
    /// [`Limits::max_path_len`].
    PathLength,
    /// A symlink target longer than [`MAX_TARGET_LEN`].
    TargetLength,
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitKind::Depth => "depth",
            LimitKind::Entries => "entry count",
            LimitKind::Bytes => "total file size",
            LimitKind::PathLength => "path length",
            LimitKind::TargetLength => "symlink target length",
        })
    }
}

/// What is wrong with a malformed archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformation {
    /// The stream does not start with [`MAGIC`].
    #[error("it does not start with `nexis-archive-v1`")]
    BadMagic,
    /// A node tag other than 1 to 4.
    #[error("unknown node tag {0}")]
    UnknownTag(u64),
    /// Padding after a string or file content is not all zero.
    #[error("non-zero padding")]
    NonZeroPadding,
    /// An entry name of length 0.
    #[error("empty entry name")]
    EmptyName,
    /// An entry name longer than [`MAX_ENTRY_NAME_LEN`].
    #[error("entry name of {0} bytes (at most 255)")]
    NameTooLong(u64),
    /// An entry name that is `.` or `..` or holds `/` or NUL.
    #[error("`{}` is not a valid entry name", show(.0))]
    BadName(Vec<u8>),
    /// Two entries of a directory with the same name.
    #[error("duplicate entry `{}`", show(.0))]
    Duplicate(Vec<u8>),
    /// An entry whose name does not sort after the previous entry's.
    #[error("entry `{}` after `{}`: names must be in increasing bytewise order", show(.name), show(.previous))]
    Unsorted {
        /// The entry out of order.
        name: Vec<u8>,
        /// The entry before it.
        previous: Vec<u8>,
    },
    /// A symlink target of length 0.
    #[error("empty symlink target")]
    EmptyTarget,
    /// A symlink target longer than [`MAX_TARGET_LEN`].
    #[error("symlink target of {0} bytes (at most 4095)")]
    TargetTooLong(u64),
    /// A symlink target holding a NUL byte.
    #[error("symlink target `{}` holds a NUL byte", show(.0))]
    TargetWithNul(Vec<u8>),
    /// Bytes after the root node.
    #[error("bytes after the end of the root node")]
    TrailingBytes,
}

/// Bytes for a message: as text when they are UTF-8, escaped either way.
fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.escape_debug().to_string(),
        Err(_) => bytes.escape_ascii().to_string(),
    }
}

/// An entry's relative path for a message; the root is `.`.
fn show_entry(path: &Path) -> std::borrow::Cow<'_, str> {
    if path.as_os_str().is_empty() {
        ".".into()
    } else {
        path.to_string_lossy()
    }
}

/// Hashing, writing, reading or unpacking an archive failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A filesystem operation on the tree failed.
    #[error("cannot {action} `{}`", path.display())]
    Io {
        /// What was being done (`open`, `read`, `create directory`, …).
        action: &'static str,
        /// The file it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The tree holds a device node, socket or FIFO.
    #[error("`{}` is a {kind}; archives hold only regular files, directories and symlinks", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What it is (`fifo`, `socket`, `character device`, …).
        kind: &'static str,
    },
    /// A file changed size or type while it was being read.
    #[error("`{}` changed while it was being read", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// The tree is deeper, or has longer paths or symlink targets, than an archive may.
    #[error("`{}` exceeds the {what} limit of {limit}", path.display())]
    TreeLimit {
        /// The first file beyond the limit.
        path: PathBuf,
        /// Which limit.
        what: LimitKind,
        /// Its value.
        limit: u64,
    },
    /// Reading the archive stream failed.
    #[error("cannot read the archive at byte {offset}")]
    Read {
        /// Bytes of the stream read before the failure.
        offset: u64,
        /// The reader's error.
        #[source]
        source: io::Error,
    },
    /// Writing the archive stream failed.
    #[error("cannot write the archive")]
    Write {
        /// The writer's error.
        #[source]
        source: io::Error,
    },
    /// The archive ends before its root node does.
    #[error(
        "archive truncated at byte {offset} in `{}`: expected {expected}",
        show_entry(path)
    )]
    Truncated {
        /// Where the stream ends.
        offset: u64,
        /// The entry being read (relative; the root is empty).
        path: PathBuf,
        /// What was expected there.
        expected: &'static str,
    },
    /// The archive breaks a rule of the format.
    #[error("malformed archive at byte {offset} in `{}`: {what}", show_entry(path))]
    Malformed {
        /// Where the offending field starts.
        offset: u64,
        /// The entry being read, or for a bad name the directory holding it (relative;
        /// the root is empty).
        path: PathBuf,
        /// What is wrong.
        what: Malformation,
    },
    /// The archive exceeds one of the [`Limits`] it is read with.
    #[error(
        "archive exceeds the {what} limit of {limit} at byte {offset} in `{}`",
        show_entry(path)
    )]
    Limit {
        /// Where the field that exceeds it starts.
        offset: u64,
        /// The entry (relative; the root is empty).
        path: PathBuf,
        /// Which limit.
        what: LimitKind,
        /// Its value.
        limit: u64,
    },
}

fn write_err(source: io::Error) -> ArchiveError {
    ArchiveError::Write { source }
}

// ---------------------------------------------------------------------------------------
// Writing

/// Serialise the tree at `path` (a file, a directory or a symlink, which is not followed)
/// to `out`, and return its tree hash and sizes, computed while writing: each file is
/// read once.
///
/// The output is buffered here; `out` need not be. On error, `out` may hold part of an
/// archive.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let src = tempfile::tempdir()?;
/// std::fs::write(src.path().join("hello"), "hi\n")?;
/// let mut archive = Vec::new();
/// let info = nexis_store::write_archive(src.path(), &mut archive)?;
/// assert_eq!(info.archive_size, archive.len() as u64);
/// assert_eq!(info, nexis_store::hash_path(src.path())?);
///
/// let dest = tempfile::tempdir()?;
/// let copy = dest.path().join("copy");
/// let limits = nexis_store::Limits::default();
/// let unpacked = nexis_store::unpack_archive(&mut archive.as_slice(), &copy, &limits)?;
/// assert_eq!(unpacked, info);
/// assert_eq!(std::fs::read(copy.join("hello"))?, b"hi\n");
/// # nexis_store::remove_tree(&copy)?;
/// # Ok(())
/// # }
/// ```
pub fn write_archive(path: &Path, out: &mut impl Write) -> Result<TreeInfo, ArchiveError> {
    let root = walk::open_root(path)?;
    let mut w = Writer::new(BufWriter::with_capacity(IO_BUF, out));
    w.put(MAGIC)?;
    let summary = w.tree(root, path, 0, 0)?;
    w.out.flush().map_err(write_err)?;
    Ok(summary.into_info())
}

/// Hash an opened subtree one node at a time (for subtrees too deep to recurse into in
/// parallel): the archive writer, writing nowhere.
pub(crate) fn hash_sequential(
    node: Opened,
    path: &Path,
    depth: u64,
    rel_len: u64,
) -> Result<NodeSummary, ArchiveError> {
    Writer::new(io::sink()).tree(node, path, depth, rel_len)
}

/// Writes the archive of a tree, walking it with an explicit stack (trees may be deep).
struct Writer<W: Write> {
    out: W,
    /// Reused for file content.
    buf: Vec<u8>,
}

/// A directory being written.
struct WriteFrame {
    dir: rustix::fs::Dir,
    path: PathBuf,
    depth: u64,
    rel_len: u64,
    names: Vec<(std::ffi::CString, rustix::fs::FileType)>,
    /// Index of the next entry in `names`.
    next: usize,
    hasher: DirHasher,
    summary: NodeSummary,
}

impl<W: Write> Writer<W> {
    fn new(out: W) -> Writer<W> {
        Writer {
            out,
            buf: Vec::new(),
        }
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        self.out.write_all(bytes).map_err(write_err)
    }

    fn put_u64(&mut self, n: u64) -> Result<(), ArchiveError> {
        self.put(&n.to_le_bytes())
    }

    fn pad(&mut self, len: u64) -> Result<(), ArchiveError> {
        let n = usize::try_from(pad_len(len)).expect("less than 8");
        self.put(&[0; 8][..n])
    }

    fn put_string(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        self.put_u64(bytes.len() as u64)?;
        self.put(bytes)?;
        self.pad(bytes.len() as u64)
    }

    /// Write the tree rooted at the opened `node`, found at `path`, `depth` levels and
    /// `rel_len` bytes of relative path below the archive's root.
    fn tree(
        &mut self,
        node: Opened,
        path: &Path,
        depth: u64,
        rel_len: u64,
    ) -> Result<NodeSummary, ArchiveError> {
        let mut stack: Vec<WriteFrame> = Vec::new();
        let mut next = (node, path.to_owned(), depth, rel_len);
        loop {
            let (node, path, depth, rel_len) = next;
            let mut done = match node {
                Opened::File {
                    mut file,
                    executable,
                    size,
                } => {
                    self.put_u64(if executable { TAG_EXECUTABLE } else { TAG_FILE })?;
                    self.put_u64(size)?;
                    let out = &mut self.out;
                    let content =
                        walk::read_content(&mut file, size, &path, &mut self.buf, |chunk| {
                            out.write_all(chunk).map_err(write_err)
                        })?;
                    self.pad(size)?;
                    Some(NodeSummary::file(executable, size, &content))
                }
                Opened::Symlink(target) => {
                    self.put_u64(TAG_SYMLINK)?;
                    self.put_string(&target)?;
                    Some(NodeSummary::symlink(&target))
                }
                Opened::Dir(mut dir) => {
                    let names = walk::read_dir_sorted(&mut dir, &path)?;
                    self.put_u64(TAG_DIRECTORY)?;
                    self.put_u64(names.len() as u64)?;
                    stack.push(WriteFrame {
                        dir,
                        path,
                        depth,
                        rel_len,
                        hasher: DirHasher::new(names.len() as u64),
                        names,
                        next: 0,
                        summary: NodeSummary::dir(),
                    });
                    None
                }
            };
            // Enter the finished node into its parent, finish directories whose entries
            // are all written, and open the next entry.
            next = loop {
                let Some(top) = stack.last_mut() else {
                    return Ok(done.expect("the root is finished"));
                };
                if let Some(child) = done.take() {
                    let name = top.names[top.next - 1].0.to_bytes();
                    top.hasher.entry(name, &child.hash);
                    top.summary.add_child(name, &child);
                }
                let Some((name, hint)) = top.names.get(top.next) else {
                    let mut summary = top.summary;
                    summary.hash = top.hasher.finish();
                    stack.pop();
                    done = Some(summary);
                    continue;
                };
                top.next += 1;
                let child_path = top.path.join(OsStr::from_bytes(name.to_bytes()));
                let child_rel = walk::check_child(top.depth, top.rel_len, name, &child_path)?;
                let fd = walk::dir_fd(&top.dir, &top.path)?;
                let opened = walk::open(fd, name.as_c_str(), *hint, &child_path)?;
                let depth = top.depth + 1;
                self.put_string(name.to_bytes())?;
                break (opened, child_path, depth, child_rel);
            };
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading

/// Receives the entries of an archive from [`read_archive`], in stream order, each after
/// it has been validated. Paths are relative to the root; the root's is empty.
///
/// Every method does nothing by default.
pub trait Visitor {
    /// A directory, before its entries.
    fn directory(&mut self, path: &Path) -> Result<(), ArchiveError> {
        let _ = path;
        Ok(())
    }

    /// The end of a directory, after its entries.
    fn end_directory(&mut self, path: &Path) -> Result<(), ArchiveError> {
        let _ = path;
        Ok(())
    }

    /// A regular file of `size` bytes, before its content.
    fn file(&mut self, path: &Path, executable: bool, size: u64) -> Result<(), ArchiveError> {
        let _ = (path, executable, size);
        Ok(())
    }

    /// The next part of the current file's content.
    fn file_data(&mut self, path: &Path, data: &[u8]) -> Result<(), ArchiveError> {
        let _ = (path, data);
        Ok(())
    }

    /// The end of the current file, with the blake3 hash of its content.
    fn end_file(&mut self, path: &Path, content_hash: &[u8; 32]) -> Result<(), ArchiveError> {
        let _ = (path, content_hash);
        Ok(())
    }

    /// A symlink.
    fn symlink(&mut self, path: &Path, target: &Path) -> Result<(), ArchiveError> {
        let _ = (path, target);
        Ok(())
    }
}

/// Read and validate an archive from `input`, reporting its entries to `visitor`, and
/// return the tree's hash and sizes. Fails on the first violation of the format or of
/// `limits`, on bytes after the root node, and on a truncated stream.
///
/// The input is buffered here; `input` need not be, and bytes after the archive may have
/// been consumed from it.
pub fn read_archive(
    input: &mut impl Read,
    limits: &Limits,
    visitor: &mut impl Visitor,
) -> Result<TreeInfo, ArchiveError> {
    let mut parser = Parser {
        src: Source {
            input: BufReader::with_capacity(IO_BUF, input),
            offset: 0,
        },
        limits,
        visitor,
        rel: PathBuf::new(),
        entries: 0,
        files: 0,
        bytes: 0,
        scratch: Vec::new(),
        chunk: Vec::new(),
    };
    parser.run()
}

/// The input and how far into it the reader is.
struct Source<R> {
    input: BufReader<R>,
    offset: u64,
}

impl<R: Read> Source<R> {
    /// Fill `buf` or fail, naming where the stream ended.
    fn bytes(
        &mut self,
        buf: &mut [u8],
        path: &Path,
        expected: &'static str,
    ) -> Result<(), ArchiveError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.input.read(&mut buf[filled..]) {
                Ok(0) => {
                    return Err(ArchiveError::Truncated {
                        offset: self.offset,
                        path: path.to_owned(),
                        expected,
                    });
                }
                Ok(n) => {
                    filled += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ArchiveError::Read {
                        offset: self.offset,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    fn u64(&mut self, path: &Path, expected: &'static str) -> Result<u64, ArchiveError> {
        let mut bytes = [0; 8];
        self.bytes(&mut bytes, path, expected)?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// The zero padding after `len` bytes.
    fn padding(&mut self, len: u64, path: &Path) -> Result<(), ArchiveError> {
        let start = self.offset;
        let mut pad = [0; 8];
        let pad = &mut pad[..usize::try_from(pad_len(len)).expect("less than 8")];
        self.bytes(pad, path, "padding")?;
        if pad.iter().any(|&b| b != 0) {
            return Err(malformed(start, path, Malformation::NonZeroPadding));
        }
        Ok(())
    }

    /// Whether the stream has ended.
    fn at_end(&mut self) -> Result<bool, ArchiveError> {
        let mut probe = [0; 1];
        loop {
            match self.input.read(&mut probe) {
                Ok(n) => return Ok(n == 0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ArchiveError::Read {
                        offset: self.offset,
                        source,
                    });
                }
            }
        }
    }
}

fn malformed(offset: u64, path: &Path, what: Malformation) -> ArchiveError {
    ArchiveError::Malformed {
        offset,
        path: path.to_owned(),
        what,
    }
}

/// A directory being read.
struct Frame {
    /// Entries still to come.
    remaining: u64,
    hasher: DirHasher,
    /// The name of the entry read last (empty before the first).
    name: Vec<u8>,
}

/// What reading a node's header gave.
enum Step {
    /// A file or a symlink, read whole: its hash.
    Leaf([u8; 32]),
    /// A directory of this many entries, which follow.
    Dir(u64),
}

impl Frame {
    fn new(count: u64) -> Frame {
        Frame {
            remaining: count,
            hasher: DirHasher::new(count),
            name: Vec::new(),
        }
    }
}

struct Parser<'a, R, V> {
    src: Source<R>,
    limits: &'a Limits,
    visitor: &'a mut V,
    /// The current entry's path, relative to the root.
    rel: PathBuf,
    entries: u64,
    files: u64,
    bytes: u64,
    /// Names and targets (at most `MAX_TARGET_LEN` bytes).
    scratch: Vec<u8>,
    /// File content: at most `CHUNK` bytes, and never more than the larger of `IO_BUF`
    /// and the most content already read of one file.
    chunk: Vec<u8>,
}

impl<R: Read, V: Visitor> Parser<'_, R, V> {
    fn run(&mut self) -> Result<TreeInfo, ArchiveError> {
        let mut magic = [0; 16];
        self.src
            .bytes(&mut magic, &self.rel, "the archive header")?;
        if &magic != MAGIC {
            return Err(malformed(0, &self.rel, Malformation::BadMagic));
        }
        self.reserve_entries(1, self.src.offset)?;

        // Directories being read, innermost last; `done` is the hash of a node just
        // finished, to be entered into its parent.
        let mut stack: Vec<Frame> = Vec::new();
        let mut done = match self.node()? {
            Step::Leaf(hash) => Some(hash),
            Step::Dir(count) => {
                stack.push(Frame::new(count));
                None
            }
        };
        loop {
            if let Some(hash) = done.take() {
                let Some(parent) = stack.last_mut() else {
                    // The root is complete.
                    if !self.src.at_end()? {
                        let offset = self.src.offset;
                        return Err(malformed(offset, &self.rel, Malformation::TrailingBytes));
                    }
                    return Ok(TreeInfo {
                        hash,
                        archive_size: self.src.offset,
                        entries: self.entries,
                        files: self.files,
                        bytes: self.bytes,
                    });
                };
                parent.hasher.entry(&parent.name, &hash);
                self.rel.pop();
            }
            let top = stack
                .last_mut()
                .expect("not empty: the root is not complete");
            if top.remaining == 0 {
                let hash = top.hasher.finish();
                stack.pop();
                self.visitor.end_directory(&self.rel)?;
                done = Some(hash);
                continue;
            }
            top.remaining -= 1;
            let depth = stack.len() as u64;
            self.entry_name(stack.last_mut().expect("not empty"), depth)?;
            match self.node()? {
                Step::Leaf(hash) => done = Some(hash),
                Step::Dir(count) => stack.push(Frame::new(count)),
            }
        }
    }

    /// Count `n` more entries.
    fn reserve_entries(&mut self, n: u64, offset: u64) -> Result<(), ArchiveError> {
        match self.entries.checked_add(n) {
            Some(total) if total <= self.limits.max_entries => {
                self.entries = total;
                Ok(())
            }
            _ => Err(self.limit(offset, LimitKind::Entries, self.limits.max_entries)),
        }
    }

    fn limit(&self, offset: u64, what: LimitKind, limit: u64) -> ArchiveError {
        ArchiveError::Limit {
            offset,
            path: self.rel.clone(),
            what,
            limit,
        }
    }

    /// Read a string of 1..=`max` bytes into `scratch`; returns its length.
    fn string(
        &mut self,
        max: usize,
        expected: &'static str,
        empty: Malformation,
        too_long: fn(u64) -> Malformation,
    ) -> Result<usize, ArchiveError> {
        let start = self.src.offset;
        let len = self.src.u64(&self.rel, expected)?;
        if len == 0 {
            return Err(malformed(start, &self.rel, empty));
        }
        let n = match usize::try_from(len) {
            Ok(n) if n <= max => n,
            _ => return Err(malformed(start, &self.rel, too_long(len))),
        };
        if self.scratch.len() < n {
            self.scratch.resize(n, 0);
        }
        self.src
            .bytes(&mut self.scratch[..n], &self.rel, expected)?;
        self.src.padding(len, &self.rel)?;
        Ok(n)
    }

    /// Read the next entry's name in `frame`, at `depth`, check it, and enter it.
    fn entry_name(&mut self, frame: &mut Frame, depth: u64) -> Result<(), ArchiveError> {
        let start = self.src.offset;
        let n = self.string(
            MAX_ENTRY_NAME_LEN,
            "an entry name",
            Malformation::EmptyName,
            Malformation::NameTooLong,
        )?;
        let name = &self.scratch[..n];
        if name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
            return Err(malformed(
                start,
                &self.rel,
                Malformation::BadName(name.to_vec()),
            ));
        }
        match name.cmp(&frame.name) {
            std::cmp::Ordering::Greater => {}
            std::cmp::Ordering::Equal => {
                return Err(malformed(
                    start,
                    &self.rel,
                    Malformation::Duplicate(name.to_vec()),
                ));
            }
            std::cmp::Ordering::Less => {
                let what = Malformation::Unsorted {
                    name: name.to_vec(),
                    previous: frame.name.clone(),
                };
                return Err(malformed(start, &self.rel, what));
            }
        }
        frame.name.clear();
        frame.name.extend_from_slice(name);
        self.rel.push(OsStr::from_bytes(name));
        if depth > self.limits.max_depth {
            return Err(self.limit(start, LimitKind::Depth, self.limits.max_depth));
        }
        if self.rel.as_os_str().len() as u64 > self.limits.max_path_len {
            return Err(self.limit(start, LimitKind::PathLength, self.limits.max_path_len));
        }
        Ok(())
    }

    /// Read a node at `self.rel`: a file or symlink whole, a directory's header.
    fn node(&mut self) -> Result<Step, ArchiveError> {
        let start = self.src.offset;
        let tag = self.src.u64(&self.rel, "a node tag")?;
        match tag {
            TAG_FILE | TAG_EXECUTABLE => self.file(tag == TAG_EXECUTABLE).map(Step::Leaf),
            TAG_SYMLINK => {
                let n = self.string(
                    MAX_TARGET_LEN,
                    "a symlink target",
                    Malformation::EmptyTarget,
                    Malformation::TargetTooLong,
                )?;
                let target = &self.scratch[..n];
                if target.contains(&0) {
                    let what = Malformation::TargetWithNul(target.to_vec());
                    return Err(malformed(start + 8, &self.rel, what));
                }
                self.visitor
                    .symlink(&self.rel, Path::new(OsStr::from_bytes(target)))?;
                Ok(Step::Leaf(symlink_hash(target)))
            }
            TAG_DIRECTORY => {
                let count_at = self.src.offset;
                let count = self.src.u64(&self.rel, "a directory's entry count")?;
                self.reserve_entries(count, count_at)?;
                self.visitor.directory(&self.rel)?;
                Ok(Step::Dir(count))
            }
            other => Err(malformed(start, &self.rel, Malformation::UnknownTag(other))),
        }
    }

    /// A file's size, content and padding (after its tag); returns its node hash.
    fn file(&mut self, executable: bool) -> Result<[u8; 32], ArchiveError> {
        let size_at = self.src.offset;
        let size = self.src.u64(&self.rel, "a file size")?;
        if size > self.limits.max_bytes.saturating_sub(self.bytes) {
            return Err(self.limit(size_at, LimitKind::Bytes, self.limits.max_bytes));
        }
        self.visitor.file(&self.rel, executable, size)?;
        let mut hasher = blake3::Hasher::new();
        let mut remaining = size;
        while remaining > 0 {
            // The buffer grows with the content actually read (to at most CHUNK), so a
            // large size in a short stream allocates little.
            let read = size - remaining;
            let cap = CHUNK.min(IO_BUF.max(usize::try_from(read).unwrap_or(CHUNK)));
            let n = usize::try_from(remaining.min(cap as u64)).expect("at most CHUNK");
            if self.chunk.len() < n {
                self.chunk.resize(n, 0);
            }
            let chunk = &mut self.chunk[..n];
            self.src.bytes(chunk, &self.rel, "file content")?;
            if size >= LARGE_FILE {
                hasher.update_rayon(chunk);
            } else {
                hasher.update(chunk);
            }
            self.visitor.file_data(&self.rel, chunk)?;
            remaining -= n as u64;
        }
        self.src.padding(size, &self.rel)?;
        let content_hash = *hasher.finalize().as_bytes();
        self.visitor.end_file(&self.rel, &content_hash)?;
        self.files += 1;
        self.bytes += size;
        Ok(file_hash(executable, size, &content_hash))
    }
}

// ---------------------------------------------------------------------------------------
// Listing

/// One entry of an archive, as [`list_archive`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the root; the root's is empty.
    pub path: PathBuf,
    /// What it is.
    pub kind: EntryKind,
}

/// What an archive entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Directory,
    /// A regular file.
    File {
        /// Whether it is executable.
        executable: bool,
        /// Its size in bytes.
        size: u64,
        /// The blake3 hash of its content.
        content_hash: [u8; 32],
    },
    /// A symlink.
    Symlink {
        /// Where it points.
        target: PathBuf,
    },
}

/// An archive's entries, in stream order, and its tree hash and sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The tree's hash and sizes.
    pub info: TreeInfo,
    /// Every entry, the root first, each directory before its entries.
    pub entries: Vec<Entry>,
}

/// Read and validate an archive, listing its entries without creating anything.
pub fn list_archive(input: &mut impl Read, limits: &Limits) -> Result<Listing, ArchiveError> {
    #[derive(Default)]
    struct Lister {
        entries: Vec<Entry>,
        file: Option<(bool, u64)>,
    }
    impl Visitor for Lister {
        fn directory(&mut self, path: &Path) -> Result<(), ArchiveError> {
            self.entries.push(Entry {
                path: path.to_owned(),
                kind: EntryKind::Directory,
            });
            Ok(())
        }
        fn file(&mut self, _: &Path, executable: bool, size: u64) -> Result<(), ArchiveError> {
            self.file = Some((executable, size));
            Ok(())
        }
        fn end_file(&mut self, path: &Path, content_hash: &[u8; 32]) -> Result<(), ArchiveError> {
            let (executable, size) = self.file.take().expect("file() came first");
            self.entries.push(Entry {
                path: path.to_owned(),
                kind: EntryKind::File {
                    executable,
                    size,
                    content_hash: *content_hash,
                },
            });
            Ok(())
        }
        fn symlink(&mut self, path: &Path, target: &Path) -> Result<(), ArchiveError> {
            self.entries.push(Entry {
                path: path.to_owned(),
                kind: EntryKind::Symlink {
                    target: target.to_owned(),
                },
            });
            Ok(())
        }
    }
    let mut lister = Lister::default();
    let info = read_archive(input, limits, &mut lister)?;
    Ok(Listing {
        info,
        entries: lister.entries,
    })
}

// ---------------------------------------------------------------------------------------
// Unpacking

/// Read an archive from `input` and create its tree at `dest`, which must not exist (its
/// parent must). Returns the tree hash and sizes, computed while writing: the input is
/// read once.
///
/// Every entry is validated before it is created. The tree is canonical, as store paths
/// are: files get mode 0444, or 0555 when executable, and mtime 1 (1970-01-01 00:00:01)
/// once their content is written; directories mode 0555 and mtime 1 once their entries
/// are written (so creating an entry never changes them again); symlinks mtime 1. Owners
/// are left as the system sets them; nothing is synced. On any error, whatever was
/// created at `dest` is removed before the error is returned.
pub fn unpack_archive(
    input: &mut impl Read,
    dest: &Path,
    limits: &Limits,
) -> Result<TreeInfo, ArchiveError> {
    let mut unpacker = Unpacker {
        dest,
        created: false,
        file: None,
    };
    let result = read_archive(input, limits, &mut unpacker);
    if result.is_err() {
        unpacker.file = None;
        if unpacker.created {
            // Best effort: the error that stopped the unpacking is the one to report,
            // and the caller unpacks into a temporary directory it removes anyway.
            let _ = remove_tree(dest);
        }
    }
    result
}

/// The mtime of every file and directory in the store (and of unpacked trees): one
/// second after the epoch.
fn canonical_mtime() -> std::time::SystemTime {
    std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1)
}

struct Unpacker<'a> {
    dest: &'a Path,
    /// Whether `dest` has been created (and so must be removed on error).
    created: bool,
    /// The file being written: its handle, path and executable bit.
    file: Option<(File, PathBuf, bool)>,
}

impl Unpacker<'_> {
    fn target(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.dest.to_owned()
        } else {
            self.dest.join(rel)
        }
    }

    fn io_err(action: &'static str, path: PathBuf) -> impl FnOnce(io::Error) -> ArchiveError {
        move |source| ArchiveError::Io {
            action,
            path,
            source,
        }
    }
}

impl Visitor for Unpacker<'_> {
    fn directory(&mut self, rel: &Path) -> Result<(), ArchiveError> {
        let path = self.target(rel);
        DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .map_err(Unpacker::io_err("create directory", path))?;
        self.created = true;
        Ok(())
    }

    fn end_directory(&mut self, rel: &Path) -> Result<(), ArchiveError> {
        // Its entries are all written: nothing changes its mtime after this.
        let path = self.target(rel);
        let dir = File::open(&path).map_err(Unpacker::io_err("open", path.clone()))?;
        dir.set_modified(canonical_mtime())
            .map_err(Unpacker::io_err("set the mtime of", path.clone()))?;
        dir.set_permissions(Permissions::from_mode(0o555))
            .map_err(Unpacker::io_err("set permissions of", path))
    }

    fn file(&mut self, rel: &Path, executable: bool, _size: u64) -> Result<(), ArchiveError> {
        let path = self.target(rel);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(Unpacker::io_err("create", path.clone()))?;
        self.created = true;
        self.file = Some((file, path, executable));
        Ok(())
    }

    fn file_data(&mut self, _rel: &Path, data: &[u8]) -> Result<(), ArchiveError> {
        let (file, path, _) = self.file.as_mut().expect("file() came first");
        file.write_all(data)
            .map_err(Unpacker::io_err("write", path.clone()))
    }

    fn end_file(&mut self, _rel: &Path, _content_hash: &[u8; 32]) -> Result<(), ArchiveError> {
        let (file, path, executable) = self.file.take().expect("file() came first");
        let mode = if executable { 0o555 } else { 0o444 };
        file.set_modified(canonical_mtime())
            .map_err(Unpacker::io_err("set the mtime of", path.clone()))?;
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(Unpacker::io_err("set permissions of", path))
    }

    fn symlink(&mut self, rel: &Path, target: &Path) -> Result<(), ArchiveError> {
        let path = self.target(rel);
        std::os::unix::fs::symlink(target, &path)
            .map_err(Unpacker::io_err("create symlink", path.clone()))?;
        self.created = true;
        let one = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            },
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &path,
            &one,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Unpacker::io_err("set the mtime of", path)(e.into()))
    }
}

/// Remove the tree at `path` (a file, a symlink or a directory), first making its
/// directories writable: unpacked trees and store paths have read-only directories.
/// Symlinks are removed, never followed.
pub fn remove_tree(path: &Path) -> Result<(), ArchiveError> {
    let err = |action, path: &Path| {
        let path = path.to_owned();
        move |source| ArchiveError::Io {
            action,
            path,
            source,
        }
    };
    let meta = fs::symlink_metadata(path).map_err(err("inspect", path))?;
    if !meta.is_dir() {
        return fs::remove_file(path).map_err(err("remove", path));
    }
    let mut dirs = vec![path.to_owned()];
    while let Some(dir) = dirs.pop() {
        fs::set_permissions(&dir, Permissions::from_mode(0o755))
            .map_err(err("set permissions of", &dir))?;
        for entry in fs::read_dir(&dir).map_err(err("read directory", &dir))? {
            let entry = entry.map_err(err("read directory", &dir))?;
            let file_type = entry.file_type().map_err(err("inspect", &entry.path()))?;
            if file_type.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    fs::remove_dir_all(path).map_err(err("remove", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built stream.
    #[derive(Default)]
    struct Stream(Vec<u8>);

    impl Stream {
        fn new() -> Stream {
            Stream(MAGIC.to_vec())
        }
        fn u64(mut self, n: u64) -> Stream {
            self.0.extend_from_slice(&n.to_le_bytes());
            self
        }
        fn string(mut self, s: &[u8]) -> Stream {
            self = self.u64(s.len() as u64);
            self.0.extend_from_slice(s);
            self.0.resize(self.0.len().next_multiple_of(8), 0);
            self
        }
        fn file(self, content: &[u8]) -> Stream {
            self.u64(TAG_FILE).string(content)
        }
    }

    fn list(bytes: &[u8]) -> Result<Listing, ArchiveError> {
        list_archive(&mut &bytes[..], &Limits::default())
    }

    #[test]
    fn sizes_match_the_grammar() {
        assert_eq!(pad_len(0), 0);
        assert_eq!(pad_len(1), 7);
        assert_eq!(pad_len(8), 0);
        assert_eq!(pad_len(u64::MAX), 1);
        assert_eq!(string_len(5), 16);
        assert_eq!(file_node_len(0), 16);
        assert_eq!(file_node_len(9), 32);
        assert_eq!(symlink_node_len(1), 24);
        assert_eq!(child_rel_len(0, 3), 3);
        assert_eq!(child_rel_len(3, 3), 7);
    }

    #[test]
    fn a_single_file() {
        let bytes = Stream::new().file(b"hi\n").0;
        let listing = list(&bytes).unwrap();
        assert_eq!(listing.info.archive_size, bytes.len() as u64);
        assert_eq!((listing.info.entries, listing.info.files), (1, 1));
        let content_hash = *blake3::hash(b"hi\n").as_bytes();
        assert_eq!(listing.info.hash, file_hash(false, 3, &content_hash));
        assert_eq!(
            listing.entries,
            [Entry {
                path: PathBuf::new(),
                kind: EntryKind::File {
                    executable: false,
                    size: 3,
                    content_hash
                }
            }]
        );
    }

    #[test]
    fn nested_directories_give_relative_paths() {
        let bytes = Stream::new()
            .u64(TAG_DIRECTORY)
            .u64(2)
            .string(b"a")
            .u64(TAG_DIRECTORY)
            .u64(1)
            .string(b"b")
            .u64(TAG_SYMLINK)
            .string(b"../c")
            .string(b"c")
            .file(b"")
            .0;
        let listing = list(&bytes).unwrap();
        let paths: Vec<_> = listing.entries.iter().map(|e| e.path.clone()).collect();
        assert_eq!(paths, ["", "a", "a/b", "c"].map(PathBuf::from));
        assert_eq!(listing.info.entries, 4);
    }

    #[test]
    fn errors_name_the_offset_and_entry() {
        let bytes = Stream::new()
            .u64(TAG_DIRECTORY)
            .u64(1)
            .string(b"x")
            .u64(9)
            .0;
        let err = list(&bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed archive at byte 48 in `x`: unknown node tag 9"
        );
        // Cut inside the tag: the offset is where the stream ends.
        let err = list(&bytes[..52]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "archive truncated at byte 52 in `x`: expected a node tag"
        );
        let err = list(&bytes[..44]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "archive truncated at byte 44 in `.`: expected padding"
        );
    }

    #[test]
    fn entry_limit_counts_the_root() {
        let bytes = Stream::new()
            .u64(TAG_DIRECTORY)
            .u64(1)
            .string(b"a")
            .file(b"")
            .0;
        let limits = Limits {
            max_entries: 1,
            ..Limits::DEFAULT
        };
        let err = list_archive(&mut &bytes[..], &limits).unwrap_err();
        assert!(matches!(
            err,
            ArchiveError::Limit {
                offset: 24,
                what: LimitKind::Entries,
                ..
            }
        ));
        let limits = Limits {
            max_entries: 2,
            ..Limits::DEFAULT
        };
        assert!(list_archive(&mut &bytes[..], &limits).is_ok());
    }

    #[test]
    fn messages_escape_names() {
        assert_eq!(
            Malformation::BadName(b"a\0b".to_vec()).to_string(),
            "`a\\0b` is not a valid entry name"
        );
        assert_eq!(show(b"\xff/"), "\\xff/");
    }
}
