//! Safe unpacking of downloaded archives into a new directory (`docs/inputs.md`,
//! "Unpacking").
//!
//! The archive is untrusted. Every entry's name is normalised and checked before anything
//! is written; nothing is ever written through a symlink (the tree being built is tracked
//! in memory, and a parent that an earlier entry made a symlink or a file is refused);
//! symlink targets are resolved against that tree, following the archive's own symlinks,
//! and must stay inside it; only regular files, directories, symlinks and hard links to
//! earlier files are accepted. Sizes are checked as declared and again as bytes are
//! written, so a bomb stops at the first chunk past a [`Limits`] value.
//!
//! The tree is built in a staging directory beside `dest` and renamed to `dest` only when
//! the whole archive was accepted: a refusal leaves nothing at `dest`.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

/// The archive formats nexis unpacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArchiveKind {
    /// `.tar.gz`, `.tgz` (gzip; concatenated members are read as one stream).
    TarGz,
    /// `.tar.xz`, `.txz` (concatenated xz streams are read as one).
    TarXz,
    /// `.tar.zst`, `.tzst` (any number of zstd frames).
    TarZst,
    /// `.tar`, uncompressed.
    Tar,
    /// `.zip`: stored and deflate entries.
    Zip,
}

/// File-name suffixes and the kinds they mean; the first match wins.
const SUFFIXES: &[(&str, ArchiveKind)] = &[
    (".tar.gz", ArchiveKind::TarGz),
    (".tgz", ArchiveKind::TarGz),
    (".tar.xz", ArchiveKind::TarXz),
    (".txz", ArchiveKind::TarXz),
    (".tar.zst", ArchiveKind::TarZst),
    (".tzst", ArchiveKind::TarZst),
    (".tar", ArchiveKind::Tar),
    (".zip", ArchiveKind::Zip),
];

impl ArchiveKind {
    /// `tar.gz`, `tar.xz`, `tar.zst`, `tar`, `zip`.
    pub fn name(self) -> &'static str {
        match self {
            ArchiveKind::TarGz => "tar.gz",
            ArchiveKind::TarXz => "tar.xz",
            ArchiveKind::TarZst => "tar.zst",
            ArchiveKind::Tar => "tar",
            ArchiveKind::Zip => "zip",
        }
    }

    /// The kind a file name's suffix says (ASCII case ignored), or `None` for any other
    /// file.
    ///
    /// ```
    /// use nexis_fetch::ArchiveKind;
    /// assert_eq!(ArchiveKind::from_file_name("hello-2.12.TAR.GZ"), Some(ArchiveKind::TarGz));
    /// assert_eq!(ArchiveKind::from_file_name("hello-2.12.tar.gz.sig"), None);
    /// ```
    pub fn from_file_name(name: &str) -> Option<ArchiveKind> {
        let lower = name.to_ascii_lowercase();
        SUFFIXES
            .iter()
            .find(|(suffix, _)| lower.ends_with(suffix))
            .map(|(_, kind)| *kind)
    }
}

impl fmt::Display for ArchiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an archive may hold. The defaults suit source tarballs; each is checked against
/// what an entry declares before it is written and against what is actually written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Sum of the regular files' sizes (a hard link counts its file again). Default
    /// 8 GiB.
    pub max_bytes: u64,
    /// Entries of any kind, directories they imply, and pax global headers. Default
    /// 1,000,000.
    pub max_entries: u64,
    /// One regular file's size. Default 4 GiB.
    pub max_file_size: u64,
    /// An entry's name (and a symlink's target), in bytes. Default 4096.
    pub max_path_len: usize,
    /// Components in an entry's name. Default 256.
    pub max_depth: usize,
    /// Unpacked bytes per compressed byte: for zip, per entry (declared, then actual);
    /// for compressed tarballs, over the whole stream so far. Default 1000.
    pub max_ratio: u64,
    /// The ratio is not checked until this many bytes were unpacked (per entry for zip,
    /// in total for tarballs), so small files of zeros pass. Default 16 MiB.
    pub ratio_grace: u64,
    /// The archive file itself, as read (compressed). Default 8 GiB.
    pub max_archive_bytes: u64,
    /// Bytes of paths looked up while checking where the symlinks lead, for the whole
    /// archive: far more than any real tree needs, and a bound on the work a hostile one
    /// causes. Default 256 MiB.
    pub max_resolve_bytes: u64,
}

impl Limits {
    /// The default limits.
    pub const DEFAULT: Limits = Limits {
        max_bytes: 8 << 30,
        max_entries: 1_000_000,
        max_file_size: 4 << 30,
        max_path_len: 4096,
        max_depth: 256,
        max_ratio: 1000,
        ratio_grace: 16 << 20,
        max_archive_bytes: 8 << 30,
        max_resolve_bytes: 256 << 20,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

/// What an unpacked tree holds (after stripping).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnpackReport {
    /// Regular files (hard links included).
    pub files: u64,
    /// Directories, not counting `dest` itself.
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Sum of the regular files' sizes.
    pub bytes: u64,
    /// The single top-level directory that was stripped, if one was (lossily UTF-8).
    pub stripped: Option<String>,
}

/// Longest GNU long-name, long-link or pax header nexis reads into memory.
pub const MAX_EXTENSION_LEN: u64 = 1 << 20;

/// Most data after a tarball's end-of-archive marker (block padding) nexis reads through
/// to let the decompressor check its trailer.
pub const MAX_TRAILING_LEN: u64 = 1 << 20;

/// Why an archive was not unpacked. Nothing is left at `dest`.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// `dest` exists already.
    #[error("cannot unpack into `{}`: it already exists", dest.display())]
    DestExists {
        /// The destination.
        dest: PathBuf,
    },
    /// A filesystem operation outside any one entry failed.
    #[error("cannot {action} `{}`", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The archive stream is corrupt or truncated (outside any one entry's data).
    #[error("cannot read the {kind} archive{}", after.as_ref().map(|n| format!(" after entry `{n}`")).unwrap_or_default())]
    Read {
        /// The format.
        kind: ArchiveKind,
        /// The last entry read, if any.
        after: Option<String>,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A tarball that ends without its end-of-archive marker.
    #[error("the {kind} archive ends without its end-of-archive marker (truncated?)")]
    Truncated {
        /// The format.
        kind: ArchiveKind,
    },
    /// More than [`MAX_TRAILING_LEN`] bytes after a tarball's end-of-archive marker.
    #[error(
        "the {kind} archive has more than {MAX_TRAILING_LEN} bytes after its end-of-archive marker"
    )]
    TrailingData {
        /// The format.
        kind: ArchiveKind,
    },
    /// The archive file is larger than [`Limits::max_archive_bytes`].
    #[error("the {kind} archive is larger than the limit of {limit} bytes")]
    ArchiveTooLarge {
        /// The format.
        kind: ArchiveKind,
        /// The limit.
        limit: u64,
    },
    /// A zip whose central directory cannot be read.
    #[error("cannot read the zip archive's central directory")]
    Zip {
        /// Why.
        #[source]
        source: zip::result::ZipError,
    },
    /// One entry was refused. The reason is part of the message (not a separate
    /// cause), so the error chain does not repeat it.
    #[error("entry `{name}`: {reason}")]
    Entry {
        /// The entry's name as the archive gives it (lossily UTF-8, control characters
        /// escaped).
        name: String,
        /// Why.
        reason: EntryError,
    },
}

/// Why one entry was refused. Underlying I/O and zip errors are part of the message.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// `/etc/passwd`.
    #[error("its name is absolute")]
    Absolute,
    /// `../x`, `a/../../x`.
    #[error("its name has a `..` component")]
    ParentDir,
    /// A name with a NUL byte (zip).
    #[error("its name holds a NUL byte")]
    Nul,
    /// `""` or `.` for something that is not a directory.
    #[error("its name is empty (it would be the root)")]
    Empty,
    /// Longer than [`Limits::max_path_len`].
    #[error("its name is {len} bytes long, over the limit of {limit}")]
    NameTooLong {
        /// The length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Deeper than [`Limits::max_depth`].
    #[error("its name has {depth} components, over the limit of {limit}")]
    TooDeep {
        /// The depth.
        depth: usize,
        /// The limit.
        limit: usize,
    },
    /// More entries than [`Limits::max_entries`].
    #[error("the archive has more than {limit} entries")]
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
    /// The same normalised name as an earlier entry.
    #[error("an earlier entry has the same path `{}`", path.display())]
    Duplicate {
        /// The normalised path.
        path: PathBuf,
    },
    /// Earlier entries are inside it, so it can only be a directory.
    #[error("earlier entries are inside `{}`, so it must be a directory", path.display())]
    NotADirectory {
        /// The normalised path.
        path: PathBuf,
    },
    /// A parent is a symlink made by an earlier entry.
    #[error("`{}` is a symlink (an earlier entry); nothing is written through a symlink", link.display())]
    ThroughSymlink {
        /// The symlink.
        link: PathBuf,
    },
    /// A parent is a regular file made by an earlier entry.
    #[error("`{}` is a file (an earlier entry), not a directory", file.display())]
    UnderFile {
        /// The file.
        file: PathBuf,
    },
    /// A symlink with an empty target.
    #[error("it is a symlink with an empty target")]
    EmptyTarget,
    /// A symlink to an absolute path.
    #[error("it is a symlink to the absolute path `{target}`")]
    AbsoluteTarget {
        /// The target (lossily UTF-8).
        target: String,
    },
    /// A symlink that leads out of the tree.
    #[error("it is a symlink to `{target}`, which leads out of the archive's tree")]
    EscapingTarget {
        /// The target (lossily UTF-8).
        target: String,
    },
    /// A symlink that leads out of the single top-level directory, which is stripped.
    #[error(
        "it is a symlink to `{target}`, which leads out of `{top}`, the single top-level \
         directory that is stripped"
    )]
    EscapesStripped {
        /// The target (lossily UTF-8).
        target: String,
        /// The top-level directory.
        top: String,
    },
    /// Checking where the archive's symlinks lead took more than
    /// [`Limits::max_resolve_bytes`].
    #[error("checking where the archive's symlinks lead takes more than {limit} bytes of lookups")]
    SymlinkBudget {
        /// The limit.
        limit: u64,
    },
    /// A hard link whose target is not inside the tree.
    #[error("it is a hard link to `{target}`, which is outside the archive's tree")]
    LinkOutside {
        /// The target (lossily UTF-8).
        target: String,
    },
    /// A hard link whose target is not an earlier regular file.
    #[error("it is a hard link to `{target}`, which is not an earlier regular file of the archive")]
    LinkNotFile {
        /// The target (lossily UTF-8).
        target: String,
    },
    /// A device node, fifo, socket, sparse file or unknown type.
    #[error(
        "it is a {what}; archives may hold only regular files, directories, symlinks and hard links"
    )]
    Special {
        /// What it is.
        what: String,
    },
    /// An encrypted zip entry.
    #[error("it is encrypted")]
    Encrypted,
    /// A zip entry compressed with something other than deflate.
    #[error("it is compressed with {method}; nexis reads stored and deflate zip entries")]
    Compression {
        /// The method.
        method: String,
    },
    /// A GNU long-name, long-link or pax header over [`MAX_EXTENSION_LEN`].
    #[error("its {what} header is {size} bytes, over the limit of {MAX_EXTENSION_LEN}")]
    ExtensionTooLarge {
        /// `GNU long name`, `GNU long link`, `pax`.
        what: &'static str,
        /// The size.
        size: u64,
    },
    /// A pax `size` that disagrees with the header's.
    #[error("its pax header gives the size {pax}, its tar header {header}")]
    PaxSize {
        /// The pax size.
        pax: String,
        /// The header size.
        header: u64,
    },
    /// Over [`Limits::max_file_size`].
    #[error("it is {size} bytes{}, over the single-file limit of {limit}", if *.declared { " (declared)" } else { " or more" })]
    FileTooLarge {
        /// Its size, as declared or written so far.
        size: u64,
        /// The limit.
        limit: u64,
        /// Whether `size` is what the archive declares (else what was written).
        declared: bool,
    },
    /// Over [`Limits::max_bytes`].
    #[error("it takes the unpacked size to {total} bytes or more, over the limit of {limit}")]
    TotalTooLarge {
        /// The total with this entry (so far).
        total: u64,
        /// The limit.
        limit: u64,
    },
    /// Over [`Limits::max_ratio`].
    #[error(
        "it expands {unpacked} bytes from {compressed} compressed, over the ratio limit of {limit}:1"
    )]
    Ratio {
        /// Unpacked bytes.
        unpacked: u64,
        /// Compressed bytes.
        compressed: u64,
        /// The limit.
        limit: u64,
    },
    /// Data longer or shorter than declared.
    #[error("it declares {declared} bytes but holds {}", if *.more { "more".to_owned() } else { actual.to_string() })]
    SizeMismatch {
        /// Declared size.
        declared: u64,
        /// Bytes read.
        actual: u64,
        /// Whether there was more data than declared (reading stopped).
        more: bool,
    },
    /// Its header or data cannot be read.
    #[error("cannot read it: {0}")]
    Read(io::Error),
    /// The zip library refused the entry.
    #[error("cannot read it: {0}")]
    Zip(zip::result::ZipError),
    /// Writing it failed.
    #[error("cannot {action} `{}`: {error}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
}

// ---------------------------------------------------------------------------------------
// Entry points

/// Unpack an archive read from `input` into `dest`, which must not exist; its parent
/// must. A zip is first copied into an anonymous temporary file beside `dest` (zip needs
/// to seek); use [`unpack_file`] when the archive is a file already.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use nexis_fetch::{ArchiveKind, Limits, unpack};
///
/// let mut tar = tar::Builder::new(Vec::new());
/// let mut header = tar::Header::new_gnu();
/// header.set_size(6);
/// header.set_mode(0o644);
/// tar.append_data(&mut header, "hello-1.0/README", &b"hello\n"[..])?;
/// let bytes = tar.into_inner()?;
///
/// let dir = tempfile::tempdir()?;
/// let dest = dir.path().join("src");
/// let report = unpack(ArchiveKind::Tar, &bytes[..], &dest, &Limits::DEFAULT)?;
/// assert_eq!(report.stripped.as_deref(), Some("hello-1.0"));
/// assert_eq!(std::fs::read(dest.join("README"))?, b"hello\n");
/// # Ok(()) }
/// ```
pub fn unpack(
    kind: ArchiveKind,
    input: impl Read,
    dest: &Path,
    limits: &Limits,
) -> Result<UnpackReport, UnpackError> {
    let staging = Staging::new(dest)?;
    let consumed = Rc::new(Cell::new(0));
    let input = Counting {
        inner: input,
        count: Rc::clone(&consumed),
        limit: limits.max_archive_bytes,
    };
    let mut tree = Tree::new(staging.path().to_owned(), limits, consumed);
    if kind == ArchiveKind::Zip {
        let mut spool =
            tempfile::tempfile_in(staging.parent()).map_err(|source| UnpackError::Io {
                action: "create a temporary file in",
                path: staging.parent().to_owned(),
                source,
            })?;
        let mut input = input;
        io::copy(&mut input, &mut spool)
            .and_then(|_| spool.seek(SeekFrom::Start(0)))
            .map_err(|source| {
                if tree.consumed.get() > limits.max_archive_bytes {
                    UnpackError::ArchiveTooLarge {
                        kind,
                        limit: limits.max_archive_bytes,
                    }
                } else {
                    UnpackError::Read {
                        kind,
                        after: None,
                        source,
                    }
                }
            })?;
        unpack_zip(spool, &mut tree)?;
    } else {
        unpack_tar(kind, input, &mut tree)?;
    }
    tree.finish(staging, dest)
}

/// Unpack the archive file `archive` into `dest` (see [`unpack`]); a zip is read in
/// place.
pub fn unpack_file(
    kind: ArchiveKind,
    archive: &Path,
    dest: &Path,
    limits: &Limits,
) -> Result<UnpackReport, UnpackError> {
    let file = File::open(archive).map_err(|source| UnpackError::Io {
        action: "open",
        path: archive.to_owned(),
        source,
    })?;
    if kind != ArchiveKind::Zip {
        return unpack(kind, file, dest, limits);
    }
    let size = file
        .metadata()
        .map_err(|source| UnpackError::Io {
            action: "read the metadata of",
            path: archive.to_owned(),
            source,
        })?
        .len();
    if size > limits.max_archive_bytes {
        return Err(UnpackError::ArchiveTooLarge {
            kind,
            limit: limits.max_archive_bytes,
        });
    }
    let staging = Staging::new(dest)?;
    let mut tree = Tree::new(staging.path().to_owned(), limits, Rc::new(Cell::new(size)));
    unpack_zip(file, &mut tree)?;
    tree.finish(staging, dest)
}

// ---------------------------------------------------------------------------------------
// Staging

/// The directory the tree is built in, beside `dest`; removed on drop unless renamed.
struct Staging {
    dir: tempfile::TempDir,
    parent: PathBuf,
}

impl Staging {
    fn new(dest: &Path) -> Result<Staging, UnpackError> {
        if dest.symlink_metadata().is_ok() {
            return Err(UnpackError::DestExists {
                dest: dest.to_owned(),
            });
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let dir = tempfile::Builder::new()
            .prefix(".nexis-unpack-")
            .tempdir_in(&parent)
            .map_err(|source| UnpackError::Io {
                action: "create a staging directory in",
                path: parent.clone(),
                source,
            })?;
        Ok(Staging { dir, parent })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn parent(&self) -> &Path {
        &self.parent
    }
}

/// Rename `from` to `to`, failing if `to` exists.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // A filesystem without RENAME_NOREPLACE: check, then rename.
        Err(rustix::io::Errno::INVAL) => {
            if to.symlink_metadata().is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(from, to)
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------
// The tree being built

#[derive(Debug, Clone)]
enum Node {
    /// `explicit`: an entry named it (rather than being created as a parent).
    Dir {
        explicit: bool,
    },
    File {
        size: u64,
    },
    Symlink {
        target: PathBuf,
    },
}

/// The first component of every entry so far.
enum Top {
    None,
    One(OsString),
    Many,
}

/// How an entry's compressed size is known, for the ratio check.
#[derive(Clone, Copy)]
enum Compressed {
    /// The whole stream so far (tarballs): `Tree::consumed`.
    Stream,
    /// This entry's compressed size (zip).
    Entry(u64),
}

struct Tree<'l> {
    root: PathBuf,
    limits: &'l Limits,
    nodes: HashMap<PathBuf, Node>,
    /// Symlinks in creation order: the final check resolves each.
    symlinks: Vec<PathBuf>,
    entries: u64,
    bytes: u64,
    top: Top,
    /// Compressed bytes read so far.
    consumed: Rc<Cell<u64>>,
    buf: Vec<u8>,
}

/// A path for messages: lossily UTF-8, control characters escaped.
fn show(bytes: &[u8]) -> String {
    let mut out = String::new();
    for c in String::from_utf8_lossy(bytes).chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

fn show_path(path: &Path) -> String {
    show(path.as_os_str().as_bytes())
}

impl<'l> Tree<'l> {
    fn new(root: PathBuf, limits: &'l Limits, consumed: Rc<Cell<u64>>) -> Tree<'l> {
        Tree {
            root,
            limits,
            nodes: HashMap::new(),
            symlinks: Vec::new(),
            entries: 0,
            bytes: 0,
            top: Top::None,
            consumed,
            buf: vec![0; 64 << 10],
        }
    }

    fn count_entry(&mut self) -> Result<(), EntryError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(EntryError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        Ok(())
    }

    /// Normalise an entry name: relative, no `..`, `.` and empty components dropped.
    fn normalise(&self, raw: &[u8]) -> Result<PathBuf, EntryError> {
        if raw.len() > self.limits.max_path_len {
            return Err(EntryError::NameTooLong {
                len: raw.len(),
                limit: self.limits.max_path_len,
            });
        }
        if raw.contains(&0) {
            return Err(EntryError::Nul);
        }
        let mut out = PathBuf::new();
        let mut depth = 0;
        for c in Path::new(OsStr::from_bytes(raw)).components() {
            match c {
                Component::Prefix(_) | Component::RootDir => return Err(EntryError::Absolute),
                Component::ParentDir => return Err(EntryError::ParentDir),
                Component::CurDir => {}
                Component::Normal(n) => {
                    out.push(n);
                    depth += 1;
                }
            }
        }
        if depth > self.limits.max_depth {
            return Err(EntryError::TooDeep {
                depth,
                limit: self.limits.max_depth,
            });
        }
        Ok(out)
    }

    /// Count the entry and normalise its name; `None` for the root (`.`, `./`), which
    /// only a directory may name.
    fn begin(&mut self, raw: &[u8], is_dir: bool) -> Result<Option<PathBuf>, EntryError> {
        self.count_entry()?;
        let rel = self.normalise(raw)?;
        if rel.as_os_str().is_empty() {
            return if is_dir {
                Ok(None)
            } else {
                Err(EntryError::Empty)
            };
        }
        let first = rel
            .components()
            .next()
            .expect("a non-empty normalised path has a component")
            .as_os_str();
        self.top = match std::mem::replace(&mut self.top, Top::None) {
            Top::None => Top::One(first.to_owned()),
            Top::One(t) if t == first => Top::One(t),
            _ => Top::Many,
        };
        Ok(Some(rel))
    }

    fn io(action: &'static str, path: PathBuf) -> impl FnOnce(io::Error) -> EntryError {
        move |error| EntryError::Io {
            action,
            path,
            error,
        }
    }

    fn mkdir(&self, rel: &Path) -> Result<(), EntryError> {
        let path = self.root.join(rel);
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o755)))
            .map_err(Self::io("create the directory", path))
    }

    /// Make sure every parent of `rel` is a directory of the tree, creating the missing
    /// ones; refuse a parent that is a symlink or a file.
    ///
    /// The walk goes up from the parent and stops at the first directory: a directory's
    /// ancestors were all checked when it was made. So an entry costs one lookup unless
    /// it creates directories, and each created directory counts as an entry.
    fn parents(&mut self, rel: &Path) -> Result<(), EntryError> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        let mut missing = Vec::new();
        for dir in parent.ancestors().filter(|d| !d.as_os_str().is_empty()) {
            match self.nodes.get(dir) {
                Some(Node::Dir { .. }) => break,
                Some(Node::Symlink { .. }) => {
                    return Err(EntryError::ThroughSymlink {
                        link: dir.to_owned(),
                    });
                }
                Some(Node::File { .. }) => {
                    return Err(EntryError::UnderFile {
                        file: dir.to_owned(),
                    });
                }
                None => missing.push(dir),
            }
        }
        for dir in missing.into_iter().rev() {
            self.count_entry()?;
            self.mkdir(dir)?;
            self.nodes
                .insert(dir.to_owned(), Node::Dir { explicit: false });
        }
        Ok(())
    }

    /// Refuse a second entry at `rel`. `Ok(true)` when `rel` is a directory already
    /// created as a parent and `is_dir`: the entry only confirms it.
    fn claim(&mut self, rel: &Path, is_dir: bool) -> Result<bool, EntryError> {
        match self.nodes.get_mut(rel) {
            None => Ok(false),
            Some(Node::Dir { explicit }) if !*explicit => {
                if is_dir {
                    *explicit = true;
                    Ok(true)
                } else {
                    Err(EntryError::NotADirectory {
                        path: rel.to_owned(),
                    })
                }
            }
            Some(_) => Err(EntryError::Duplicate {
                path: rel.to_owned(),
            }),
        }
    }

    fn dir(&mut self, rel: &Path) -> Result<(), EntryError> {
        self.parents(rel)?;
        if self.claim(rel, true)? {
            return Ok(());
        }
        self.mkdir(rel)?;
        self.nodes
            .insert(rel.to_owned(), Node::Dir { explicit: true });
        Ok(())
    }

    fn check_declared(&self, declared: u64, compressed: Compressed) -> Result<(), EntryError> {
        let limits = self.limits;
        if declared > limits.max_file_size {
            return Err(EntryError::FileTooLarge {
                size: declared,
                limit: limits.max_file_size,
                declared: true,
            });
        }
        let total = self.bytes.saturating_add(declared);
        if total > limits.max_bytes {
            return Err(EntryError::TotalTooLarge {
                total,
                limit: limits.max_bytes,
            });
        }
        if let Compressed::Entry(c) = compressed {
            self.check_ratio(declared, c)?;
        }
        Ok(())
    }

    fn check_ratio(&self, unpacked: u64, compressed: u64) -> Result<(), EntryError> {
        let limits = self.limits;
        if unpacked > limits.ratio_grace && unpacked > compressed.saturating_mul(limits.max_ratio) {
            return Err(EntryError::Ratio {
                unpacked,
                compressed,
                limit: limits.max_ratio,
            });
        }
        Ok(())
    }

    /// A regular file of `declared` bytes read from `data`.
    fn file(
        &mut self,
        rel: &Path,
        executable: bool,
        declared: u64,
        data: &mut dyn Read,
        compressed: Compressed,
    ) -> Result<(), EntryError> {
        self.parents(rel)?;
        self.claim(rel, false)?;
        self.check_declared(declared, compressed)?;
        let path = self.root.join(rel);
        // `create_new` (O_EXCL) never follows a symlink at the last component; the
        // parents were checked above.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(Self::io("create", path.clone()))?;
        self.nodes.insert(rel.to_owned(), Node::File { size: 0 });
        let limits = self.limits;
        let mut written: u64 = 0;
        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| {
            loop {
                let n = match data.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n as u64,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(EntryError::Read(e)),
                };
                written += n;
                if written > declared {
                    return Err(EntryError::SizeMismatch {
                        declared,
                        actual: written,
                        more: true,
                    });
                }
                if written > limits.max_file_size {
                    return Err(EntryError::FileTooLarge {
                        size: written,
                        limit: limits.max_file_size,
                        declared: false,
                    });
                }
                let total = self.bytes + written;
                if total > limits.max_bytes {
                    return Err(EntryError::TotalTooLarge {
                        total,
                        limit: limits.max_bytes,
                    });
                }
                match compressed {
                    Compressed::Entry(c) => self.check_ratio(written, c)?,
                    Compressed::Stream => self.check_ratio(total, self.consumed.get())?,
                }
                let chunk = usize::try_from(n).expect("at most the buffer's length");
                file.write_all(&buf[..chunk])
                    .map_err(Self::io("write", path.clone()))?;
            }
            if written != declared {
                return Err(EntryError::SizeMismatch {
                    declared,
                    actual: written,
                    more: false,
                });
            }
            let mode = if executable { 0o755 } else { 0o644 };
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(Self::io("set the mode of", path.clone()))
        })();
        self.buf = buf;
        result?;
        self.bytes += written;
        self.nodes
            .insert(rel.to_owned(), Node::File { size: written });
        Ok(())
    }

    fn symlink(&mut self, rel: &Path, target: &[u8]) -> Result<(), EntryError> {
        if target.is_empty() {
            return Err(EntryError::EmptyTarget);
        }
        if target.len() > self.limits.max_path_len {
            return Err(EntryError::NameTooLong {
                len: target.len(),
                limit: self.limits.max_path_len,
            });
        }
        let target_path = Path::new(OsStr::from_bytes(target));
        if target_path.has_root() {
            return Err(EntryError::AbsoluteTarget {
                target: show(target),
            });
        }
        // A first, lexical check; `finish` resolves every symlink against the whole tree.
        let parent: Vec<OsString> = parent_components(rel);
        if lexical_escape(parent.len(), target_path) {
            return Err(EntryError::EscapingTarget {
                target: show(target),
            });
        }
        self.parents(rel)?;
        self.claim(rel, false)?;
        let path = self.root.join(rel);
        std::os::unix::fs::symlink(target_path, &path)
            .map_err(Self::io("create the symlink", path))?;
        self.nodes.insert(
            rel.to_owned(),
            Node::Symlink {
                target: target_path.to_owned(),
            },
        );
        self.symlinks.push(rel.to_owned());
        Ok(())
    }

    /// A hard link to an earlier regular file, named from the archive's root.
    fn hard_link(&mut self, rel: &Path, target: &[u8]) -> Result<(), EntryError> {
        let outside = || EntryError::LinkOutside {
            target: show(target),
        };
        let target_rel = self.normalise(target).map_err(|e| match e {
            EntryError::Absolute | EntryError::ParentDir => outside(),
            other => other,
        })?;
        let Some(Node::File { size }) = self.nodes.get(&target_rel) else {
            return Err(EntryError::LinkNotFile {
                target: show(target),
            });
        };
        let size = *size;
        self.parents(rel)?;
        self.claim(rel, false)?;
        self.check_declared(size, Compressed::Stream)?;
        let path = self.root.join(rel);
        fs::hard_link(self.root.join(&target_rel), &path)
            .map_err(Self::io("create the hard link", path))?;
        self.bytes += size;
        self.nodes.insert(rel.to_owned(), Node::File { size });
        Ok(())
    }

    /// Check every symlink against the finished tree, strip a single top-level
    /// directory, and rename the result to `dest`.
    fn finish(self, staging: Staging, dest: &Path) -> Result<UnpackReport, UnpackError> {
        let entry_err = |rel: &Path, reason| UnpackError::Entry {
            name: show_path(rel),
            reason,
        };
        let mut budget = self.limits.max_resolve_bytes;
        for link in &self.symlinks {
            let Some(Node::Symlink { target }) = self.nodes.get(link) else {
                unreachable!("recorded symlinks stay symlinks");
            };
            let reason = match self.stays_inside(link, target, 0, &mut budget) {
                Resolved::Inside => continue,
                Resolved::Escapes => EntryError::EscapingTarget {
                    target: show_path(target),
                },
                Resolved::OverBudget => EntryError::SymlinkBudget {
                    limit: self.limits.max_resolve_bytes,
                },
            };
            return Err(entry_err(link, reason));
        }
        let stripped = match &self.top {
            Top::One(top) if matches!(self.nodes.get(Path::new(top)), Some(Node::Dir { .. })) => {
                Some(top.clone())
            }
            _ => None,
        };
        if let Some(top) = &stripped {
            for link in &self.symlinks {
                let Some(Node::Symlink { target }) = self.nodes.get(link) else {
                    unreachable!("recorded symlinks stay symlinks");
                };
                let reason = match self.stays_inside(link, target, 1, &mut budget) {
                    Resolved::Inside => continue,
                    Resolved::Escapes => EntryError::EscapesStripped {
                        target: show_path(target),
                        top: show(top.as_bytes()),
                    },
                    Resolved::OverBudget => EntryError::SymlinkBudget {
                        limit: self.limits.max_resolve_bytes,
                    },
                };
                return Err(entry_err(link, reason));
            }
        }
        let mut report = UnpackReport {
            bytes: self.bytes,
            stripped: stripped.as_ref().map(|t| show(t.as_bytes())),
            ..UnpackReport::default()
        };
        for node in self.nodes.values() {
            match node {
                Node::Dir { .. } => report.dirs += 1,
                Node::File { .. } => report.files += 1,
                Node::Symlink { .. } => report.symlinks += 1,
            }
        }
        let from = if let Some(top) = &stripped {
            report.dirs -= 1;
            staging.path().join(top)
        } else {
            fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755)).map_err(
                |source| UnpackError::Io {
                    action: "set the mode of",
                    path: staging.path().to_owned(),
                    source,
                },
            )?;
            staging.path().to_owned()
        };
        rename_noreplace(&from, dest).map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                UnpackError::DestExists {
                    dest: dest.to_owned(),
                }
            } else {
                UnpackError::Io {
                    action: "move the unpacked tree to",
                    path: dest.to_owned(),
                    source,
                }
            }
        })?;
        if stripped.is_none() {
            // Renamed away: nothing is left for the drop to remove.
            let _ = staging.dir.keep();
        }
        Ok(report)
    }

    /// Whether resolving `target` from the symlink `link`'s directory, following the
    /// tree's symlinks (up to 40, as Linux does), never goes above `floor` components.
    /// Each lookup spends its path's length from `budget`.
    fn stays_inside(&self, link: &Path, target: &Path, floor: usize, budget: &mut u64) -> Resolved {
        let mut stack = parent_components(link);
        let mut hops = 0;
        self.resolve(&mut stack, target, floor, &mut hops, budget)
    }

    fn resolve(
        &self,
        stack: &mut Vec<OsString>,
        target: &Path,
        floor: usize,
        hops: &mut u32,
        budget: &mut u64,
    ) -> Resolved {
        for c in target.components() {
            match c {
                Component::Prefix(_) | Component::RootDir => return Resolved::Escapes,
                Component::CurDir => {}
                Component::ParentDir => {
                    if stack.len() <= floor {
                        return Resolved::Escapes;
                    }
                    stack.pop();
                }
                Component::Normal(name) => {
                    stack.push(name.to_owned());
                    let key: PathBuf = stack.iter().collect();
                    let cost = key.as_os_str().len() as u64 + 1;
                    if *budget < cost {
                        return Resolved::OverBudget;
                    }
                    *budget -= cost;
                    if let Some(Node::Symlink { target }) = self.nodes.get(&key) {
                        *hops += 1;
                        if *hops > 40 {
                            // The kernel gives up here (ELOOP): nothing is reached.
                            return Resolved::Inside;
                        }
                        stack.pop();
                        match self.resolve(stack, target, floor, hops, budget) {
                            Resolved::Inside => {}
                            other => return other,
                        }
                    }
                }
            }
        }
        Resolved::Inside
    }
}

/// Where resolving a symlink led.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolved {
    Inside,
    Escapes,
    /// [`Limits::max_resolve_bytes`] ran out.
    OverBudget,
}

fn parent_components(rel: &Path) -> Vec<OsString> {
    rel.parent()
        .map(|p| p.components().map(|c| c.as_os_str().to_owned()).collect())
        .unwrap_or_default()
}

/// Whether `target`, read lexically from a directory `depth` components deep, climbs
/// above the root.
fn lexical_escape(mut depth: usize, target: &Path) -> bool {
    for c in target.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => return true,
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return true;
                }
                depth -= 1;
            }
            Component::Normal(_) => depth += 1,
        }
    }
    false
}

// ---------------------------------------------------------------------------------------
// Readers

/// Counts the bytes read through it and fails past `limit`.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
    limit: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.count.get() + n as u64;
        self.count.set(total);
        if total > self.limit {
            return Err(io::Error::other(format!(
                "the archive is larger than the limit of {} bytes",
                self.limit
            )));
        }
        Ok(n)
    }
}

/// Remembers whether the stream it wraps has ended.
struct EofTracker<R> {
    inner: R,
    eof: Rc<Cell<bool>>,
}

impl<R: Read> Read for EofTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof.set(true);
        }
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------
// Tar

/// The decompressed tar stream.
fn decoder<'r, R: Read + 'r>(kind: ArchiveKind, input: R) -> io::Result<Box<dyn Read + 'r>> {
    Ok(match kind {
        ArchiveKind::TarGz => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(input))),
        ArchiveKind::TarXz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(
            BufReader::new(input),
        )),
        ArchiveKind::TarZst => Box::new(zstd::stream::read::Decoder::new(input)?),
        ArchiveKind::Tar | ArchiveKind::Zip => Box::new(BufReader::new(input)),
    })
}

/// Extension headers read so far for the next entry.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

fn strip_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    bytes
}

fn unpack_tar(kind: ArchiveKind, input: impl Read, tree: &mut Tree<'_>) -> Result<(), UnpackError> {
    let read_err = |after: &Option<String>, source| UnpackError::Read {
        kind,
        after: after.clone(),
        source,
    };
    let eof = Rc::new(Cell::new(false));
    let stream = EofTracker {
        inner: decoder(kind, input).map_err(|e| read_err(&None, e))?,
        eof: Rc::clone(&eof),
    };
    let mut archive = tar::Archive::new(stream);
    let mut last: Option<String> = None;
    {
        // Raw mode: GNU long names, long links and pax headers come to us as entries,
        // so their size is checked before they are read into memory.
        let entries = archive.entries().map_err(|e| read_err(&None, e))?.raw(true);
        let mut pending = Pending::default();
        for entry in entries {
            let mut entry = entry.map_err(|e| read_err(&last, e))?;
            let header_name = entry.header().path_bytes().into_owned();
            let et = entry.header().entry_type();
            let extension = if et.is_gnu_longname() {
                Some("GNU long name")
            } else if et.is_gnu_longlink() {
                Some("GNU long link")
            } else if et.is_pax_local_extensions() || et.is_pax_global_extensions() {
                Some("pax")
            } else {
                None
            };
            if let Some(what) = extension {
                let entry_err = |reason| UnpackError::Entry {
                    name: show(&header_name),
                    reason,
                };
                let size = entry.size();
                if size > MAX_EXTENSION_LEN {
                    return Err(entry_err(EntryError::ExtensionTooLarge { what, size }));
                }
                if et.is_pax_global_extensions() {
                    // Global defaults (mtime, uid…) mean nothing to nexis; counted so a
                    // stream of them is bounded too.
                    tree.count_entry().map_err(entry_err)?;
                    continue;
                }
                let mut data = Vec::new();
                entry
                    .read_to_end(&mut data)
                    .map_err(|e| entry_err(EntryError::Read(e)))?;
                let slot = if et.is_gnu_longname() {
                    &mut pending.long_name
                } else if et.is_gnu_longlink() {
                    &mut pending.long_link
                } else {
                    &mut pending.pax
                };
                if slot.is_some() {
                    let source = io::Error::other(format!("two {what} headers for one entry"));
                    return Err(read_err(&last, source));
                }
                *slot = Some(data);
                continue;
            }
            let Pending {
                long_name,
                long_link,
                pax,
            } = std::mem::take(&mut pending);
            let mut name = long_name.map(strip_nul);
            let mut link = long_link.map(strip_nul);
            let mut pax_size = None;
            let mut sparse = false;
            if let Some(pax) = &pax {
                for ext in tar::PaxExtensions::new(pax) {
                    let ext = ext.map_err(|e| read_err(&last, e))?;
                    match ext.key_bytes() {
                        b"path" => name = Some(ext.value_bytes().to_vec()),
                        b"linkpath" => link = Some(ext.value_bytes().to_vec()),
                        b"size" => pax_size = Some(ext.value_bytes().to_vec()),
                        k if k.starts_with(b"GNU.sparse.") => sparse = true,
                        _ => {}
                    }
                }
            }
            let name = name.unwrap_or(header_name);
            let shown = show(&name);
            last = Some(shown.clone());
            let entry_err = |reason| UnpackError::Entry {
                name: shown.clone(),
                reason,
            };
            let size = entry.size();
            if let Some(p) = pax_size
                && std::str::from_utf8(&p)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    != Some(size)
            {
                // The tar crate's raw mode positions by the header's size; a disagreement
                // is how one archive is made to mean two things.
                return Err(entry_err(EntryError::PaxSize {
                    pax: show(&p),
                    header: size,
                }));
            }
            let special = |what: &str| {
                entry_err(EntryError::Special {
                    what: what.to_owned(),
                })
            };
            if sparse || et.is_gnu_sparse() {
                return Err(special("sparse file"));
            }
            let is_dir = et.is_dir() || (et.is_file() && name.ends_with(b"/"));
            if et.is_character_special() {
                return Err(special("character device"));
            } else if et.is_block_special() {
                return Err(special("block device"));
            } else if et.is_fifo() {
                return Err(special("fifo"));
            } else if !(et.is_file()
                || et.is_contiguous()
                || et.is_dir()
                || et.is_symlink()
                || et.is_hard_link())
            {
                return Err(special(&format!(
                    "tar entry of type `{}`",
                    (et.as_byte() as char).escape_debug()
                )));
            }
            let Some(rel) = tree.begin(&name, is_dir).map_err(entry_err)? else {
                continue;
            };
            let link = || {
                link.clone()
                    .or_else(|| {
                        entry
                            .header()
                            .link_name_bytes()
                            .map(std::borrow::Cow::into_owned)
                    })
                    .unwrap_or_default()
            };
            if is_dir {
                tree.dir(&rel)
            } else if et.is_symlink() {
                let target = link();
                tree.symlink(&rel, &target)
            } else if et.is_hard_link() {
                let target = link();
                tree.hard_link(&rel, &target)
            } else {
                let mode = entry
                    .header()
                    .mode()
                    .map_err(|e| entry_err(EntryError::Read(e)))?;
                tree.file(
                    &rel,
                    mode & 0o111 != 0,
                    size,
                    &mut entry,
                    Compressed::Stream,
                )
            }
            .map_err(entry_err)?;
        }
        if pending.long_name.is_some() || pending.long_link.is_some() || pending.pax.is_some() {
            let source = io::Error::other("an extension header is not followed by an entry");
            return Err(read_err(&last, source));
        }
    }
    if eof.get() {
        return Err(UnpackError::Truncated { kind });
    }
    // Read what follows the end-of-archive marker (padding), so the decompressor
    // checks its trailer (gzip CRC, xz and zstd checksums).
    let mut rest = archive.into_inner().take(MAX_TRAILING_LEN + 1);
    let trailing = io::copy(&mut rest, &mut io::sink()).map_err(|e| read_err(&last, e))?;
    if trailing > MAX_TRAILING_LEN {
        return Err(UnpackError::TrailingData { kind });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Zip

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

fn unpack_zip(file: File, tree: &mut Tree<'_>) -> Result<(), UnpackError> {
    let mut zip =
        zip::ZipArchive::new(BufReader::new(file)).map_err(|source| UnpackError::Zip { source })?;
    if zip.has_duplicate_names() {
        let start = zip.central_directory_start();
        let mut reader = zip.into_inner();
        let name = first_duplicate(&mut reader, start)
            .unwrap_or_else(|| "(a name the central directory lists twice)".to_owned());
        return Err(UnpackError::Entry {
            name: name.clone(),
            reason: EntryError::Duplicate {
                path: PathBuf::from(name),
            },
        });
    }
    for i in 0..zip.len() {
        let shown = zip
            .name_for_index(i)
            .and_then(Result::ok)
            .map_or_else(|| format!("#{i}"), |n| show(n.as_bytes()));
        let entry_err = |reason| UnpackError::Entry {
            name: shown.clone(),
            reason,
        };
        let mut f = zip.by_index(i).map_err(|e| entry_err(EntryError::Zip(e)))?;
        let name: Vec<u8> = f
            .name()
            .map_or_else(|_| f.name_raw().to_vec(), |n| n.as_bytes().to_vec());
        let mode = f.unix_mode().unwrap_or(0);
        let is_dir = f.is_dir() || mode & S_IFMT == S_IFDIR;
        let kind = match mode & S_IFMT {
            _ if is_dir => "dir",
            0 | S_IFREG => "file",
            S_IFLNK => "symlink",
            0o010_000 => "fifo",
            0o020_000 => "character device",
            0o060_000 => "block device",
            0o140_000 => "socket",
            _ => "zip entry of unknown type",
        };
        if !matches!(kind, "dir" | "file" | "symlink") {
            return Err(entry_err(EntryError::Special {
                what: kind.to_owned(),
            }));
        }
        if f.encrypted() {
            return Err(entry_err(EntryError::Encrypted));
        }
        let method = f.compression();
        if !matches!(
            method,
            zip::CompressionMethod::Stored | zip::CompressionMethod::Deflated
        ) {
            return Err(entry_err(EntryError::Compression {
                method: method.to_string(),
            }));
        }
        let Some(rel) = tree.begin(&name, is_dir).map_err(entry_err)? else {
            continue;
        };
        match kind {
            "dir" => tree.dir(&rel),
            "symlink" => {
                let mut target = Vec::new();
                let max = tree.limits.max_path_len as u64;
                (&mut f)
                    .take(max + 1)
                    .read_to_end(&mut target)
                    .map_err(|e| entry_err(EntryError::Read(e)))?;
                tree.symlink(&rel, &target)
            }
            _ => {
                let (size, compressed) = (f.size(), f.compressed_size());
                tree.file(
                    &rel,
                    mode & 0o111 != 0,
                    size,
                    &mut f,
                    Compressed::Entry(compressed),
                )
            }
        }
        .map_err(entry_err)?;
    }
    Ok(())
}

/// The first name listed twice in the central directory at `start` (the zip library
/// keeps one entry per name, so it cannot say which).
fn first_duplicate(reader: &mut (impl BufRead + Seek), start: u64) -> Option<String> {
    reader.seek(SeekFrom::Start(start)).ok()?;
    let mut seen = HashSet::new();
    let mut fixed = [0u8; 46];
    loop {
        reader.read_exact(&mut fixed).ok()?;
        if fixed[..4] != [0x50, 0x4b, 0x01, 0x02] {
            return None;
        }
        let field = |at: usize| u64::from(u16::from_le_bytes([fixed[at], fixed[at + 1]]));
        let mut name = vec![0; usize::from(u16::from_le_bytes([fixed[28], fixed[29]]))];
        reader.read_exact(&mut name).ok()?;
        let skip = i64::try_from(field(30) + field(32)).ok()?;
        reader.seek_relative(skip).ok()?;
        if !seen.insert(name.clone()) {
            return Some(show(&name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        for (name, kind) in [
            ("a.tar.gz", Some(ArchiveKind::TarGz)),
            ("a.TGZ", Some(ArchiveKind::TarGz)),
            ("a.tar.xz", Some(ArchiveKind::TarXz)),
            ("a.txz", Some(ArchiveKind::TarXz)),
            ("a.tar.zst", Some(ArchiveKind::TarZst)),
            ("a.tzst", Some(ArchiveKind::TarZst)),
            ("a.tar", Some(ArchiveKind::Tar)),
            ("a.zip", Some(ArchiveKind::Zip)),
            ("a.tar.bz2", None),
            ("a.gz", None),
            ("tar", None),
        ] {
            assert_eq!(ArchiveKind::from_file_name(name), kind, "{name}");
        }
    }

    #[test]
    fn lexical_escapes() {
        assert!(lexical_escape(0, Path::new("..")));
        assert!(lexical_escape(1, Path::new("../..")));
        assert!(lexical_escape(1, Path::new("a/../../..")));
        assert!(lexical_escape(3, Path::new("/x")));
        assert!(!lexical_escape(1, Path::new("../x")));
        assert!(!lexical_escape(0, Path::new("./a/../b")));
    }
}
