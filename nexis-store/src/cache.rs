//! Binary caches: the info file of a path, compression, and a cache on a plain directory.
//!
//! A binary cache is a directory tree that any static file server can serve
//! (`docs/store.md`, "Binary cache"):
//!
//! ```text
//! DIR/nexis-cache-info                        StoreDir, WantMassQuery, Priority
//! DIR/<hash part>.info                        one per path: a [`CacheInfo`]
//! DIR/archive/<blake3 of the file>.nxar.zst   the path's canonical archive, compressed
//! ```
//!
//! Writing ([`Store::copy_to_cache`]) puts the archive in place before the info file, each
//! through a temporary file and a rename, so a reader never finds an info file without its
//! archive. Reading is the closure walk of `substitute.rs` ([`Store::substitute_from`]),
//! over a [`CacheSource`](crate::CacheSource): a directory here
//! ([`DirCache`](crate::DirCache), [`Store::substitute_from_dir`]), HTTP in nexis-fetch.
//! The same info text ([`CacheInfo`], without the archive-file fields) heads each record
//! of an export stream.
//!
//! The pieces a reader over another transport needs are public: [`CacheInfo::parse`],
//! [`CacheMeta::parse`] for `nexis-cache-info`, [`is_relative_cache_url`] for an info's
//! `URL`, and [`CacheInfo::verify`].

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::archive::{ArchiveError, write_archive};
use crate::db::PathInfo;
use crate::path::{STORE_DIR, StorePath};
use crate::receive::{FileDigest, ReceiveError};
use crate::sign::SecretKey;
use crate::store::{Store, StoreError};

/// Name of the file that marks a directory as a binary cache.
pub const CACHE_INFO_FILE: &str = "nexis-cache-info";

/// Longest info text, in bytes.
pub const MAX_INFO_LEN: usize = 1 << 20;

/// Longest line of an info text, in bytes (a `References` line of some 5,000 paths).
pub const MAX_INFO_LINE_LEN: usize = 256 << 10;

/// Most lines in an info text.
pub const MAX_INFO_LINES: usize = 4096;

// ---------------------------------------------------------------------------------------
// Compression

/// How an archive file or an export stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Not compressed.
    None,
    /// Zstandard (level 3, multi-threaded, with frame checksums).
    #[default]
    Zstd,
    /// gzip (deflate), for compatibility.
    Gzip,
}

/// The four bytes every zstd frame starts with.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The two bytes every gzip member starts with.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

impl Compression {
    /// The name used in info files and on the command line: `none`, `zstd`, `gzip`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
        }
    }

    /// The extension of an archive file compressed so: `.nxar`, `.nxar.zst`, `.nxar.gz`.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => ".nxar",
            Compression::Zstd => ".nxar.zst",
            Compression::Gzip => ".nxar.gz",
        }
    }

    /// The compression a stream starting with `head` uses, by its magic bytes: zstd,
    /// gzip, or else none.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else if head.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    /// A reader of the decompressed bytes of `input`.
    pub fn decoder<'a>(self, input: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(input),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(input)?),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        })
    }

    /// A writer compressing into `out`; [`Encoder::finish`] ends the stream.
    pub fn encoder<W: Write>(self, out: W) -> io::Result<Encoder<W>> {
        Ok(match self {
            Compression::None => Encoder(Inner::None(out)),
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(out, 3)?;
                e.include_checksum(true)?;
                let threads = std::thread::available_parallelism()
                    .map_or(1, |n| u32::try_from(n.get()).unwrap_or(1));
                e.multithread(threads)?;
                Encoder(Inner::Zstd(Box::new(e)))
            }
            Compression::Gzip => Encoder(Inner::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::default(),
            ))),
        })
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A compression name that is none of `none`, `zstd`, `gzip`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression `{0}` (expected zstd, gzip or none)")]
pub struct UnknownCompression(pub String);

impl FromStr for Compression {
    type Err = UnknownCompression;
    fn from_str(s: &str) -> Result<Compression, UnknownCompression> {
        match s {
            "none" => Ok(Compression::None),
            "zstd" => Ok(Compression::Zstd),
            "gzip" => Ok(Compression::Gzip),
            other => Err(UnknownCompression(other.to_owned())),
        }
    }
}

/// A compressing writer (see [`Compression::encoder`]).
pub struct Encoder<W: Write>(Inner<W>);

enum Inner<W: Write> {
    None(W),
    Zstd(Box<zstd::stream::write::Encoder<'static, W>>),
    Gzip(flate2::write::GzEncoder<W>),
}

impl<W: Write> fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.0 {
            Inner::None(_) => Compression::None,
            Inner::Zstd(_) => Compression::Zstd,
            Inner::Gzip(_) => Compression::Gzip,
        };
        f.debug_tuple("Encoder").field(&kind).finish()
    }
}

impl<W: Write> Encoder<W> {
    /// End the compressed stream and return the writer (not flushed).
    pub fn finish(self) -> io::Result<W> {
        match self.0 {
            Inner::None(w) => Ok(w),
            Inner::Zstd(e) => e.finish(),
            Inner::Gzip(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Inner::None(w) => w.write(buf),
            Inner::Zstd(e) => e.write(buf),
            Inner::Gzip(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Inner::None(w) => w.flush(),
            Inner::Zstd(e) => e.flush(),
            Inner::Gzip(e) => e.flush(),
        }
    }
}

/// A writer that hashes (blake3) and counts what passes through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            hasher: blake3::Hasher::new(),
            len: 0,
        }
    }

    /// The hash and length of everything written, and the writer.
    pub(crate) fn finish(self) -> ([u8; 32], u64, W) {
        (*self.hasher.finalize().as_bytes(), self.len, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

// ---------------------------------------------------------------------------------------
// The info text

/// What a binary cache (or an export stream) says about one path: its `.info` file.
///
/// ```text
/// StorePath: /nexis/store/<hash>-<name>
/// URL: archive/<file hash>.nxar.zst          \
/// Compression: zstd                          | the archive file: all four or none
/// FileHash: blake3:<hex>                     | (none in export streams)
/// FileSize: <bytes>                          /
/// TreeHash: blake3:<hex>
/// ArchiveSize: <bytes>
/// References: <base names, space separated>
/// Deriver: <base name>                       (optional)
/// ContentAddress: source:blake3:<hex>        (optional)
/// Sig: <key name>:<base64>                   (any number)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheInfo {
    /// The path.
    pub path: StorePath,
    /// The compressed archive file, in a binary cache.
    pub file: Option<ArchiveFile>,
    /// Tree hash of the path's content.
    pub tree_hash: [u8; 32],
    /// Size of its canonical archive (uncompressed).
    pub archive_size: u64,
    /// The paths it refers to.
    pub references: BTreeSet<StorePath>,
    /// The derivation that built it.
    pub deriver: Option<StorePath>,
    /// Its content address (`source:blake3:<hex>`), if content-addressed.
    pub content_address: Option<String>,
    /// Signatures, `KEY-NAME:BASE64`.
    pub signatures: BTreeSet<String>,
}

/// Where a path's compressed archive is, and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFile {
    /// Relative to the cache's root (`archive/<hex>.nxar.zst`).
    pub url: String,
    /// Its compression.
    pub compression: Compression,
    /// blake3 of the file's bytes (compressed).
    pub file_hash: [u8; 32],
    /// The file's size in bytes.
    pub file_size: u64,
}

/// An info text that does not parse: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{}: {problem}", line_suffix(*.line))]
pub struct InfoError {
    /// The file (or export record) the text came from.
    pub origin: String,
    /// The line, from 1; 0 when the problem is the text as a whole.
    pub line: usize,
    /// What is wrong.
    pub problem: InfoProblem,
}

fn line_suffix(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}")
    }
}

/// What is wrong with an info text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoProblem {
    /// Longer than [`MAX_INFO_LEN`].
    #[error("the info is {len} bytes long (at most {MAX_INFO_LEN})")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// More than [`MAX_INFO_LINES`] lines.
    #[error("more than {MAX_INFO_LINES} lines")]
    TooManyLines,
    /// A line longer than [`MAX_INFO_LINE_LEN`].
    #[error("line of {len} bytes (at most {MAX_INFO_LINE_LEN})")]
    LineTooLong {
        /// Its length.
        len: usize,
    },
    /// Not UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
    /// An empty line.
    #[error("empty line")]
    EmptyLine,
    /// A line that is not `Key: value`.
    #[error("`{0}` is not a `Key: value` line")]
    NotKeyValue(String),
    /// A control character (CR, NUL, …) in a value.
    #[error("control character in the value of `{0}`")]
    ControlCharacter(String),
    /// A key that may appear once appears again.
    #[error("second `{0}` line")]
    Duplicate(&'static str),
    /// A value of the wrong form.
    #[error("`{value}` is not {expected} (in `{key}`)")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value, shortened.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// A required key is missing.
    #[error("no `{0}` line")]
    Missing(&'static str),
    /// Some of the archive-file keys are given but not all four.
    #[error(
        "`{present}` without `{missing}`: the archive file needs URL, Compression, FileHash and FileSize"
    )]
    Incomplete {
        /// A key that is there.
        present: &'static str,
        /// A key that is not.
        missing: &'static str,
    },
}

/// Split an info-like text into `(line number, key, value)`, enforcing the shared rules:
/// size, line count and length, UTF-8, no empty lines, `Key: value` with a key of
/// letters, digits and `-` starting with a letter, no control characters in values. A
/// missing newline at the very end is accepted.
fn lines<'t>(text: &'t [u8], origin: &str) -> Result<Vec<(usize, &'t str, &'t str)>, InfoError> {
    let err = |line, problem| InfoError {
        origin: origin.to_owned(),
        line,
        problem,
    };
    if text.len() > MAX_INFO_LEN {
        return Err(err(0, InfoProblem::TooLong { len: text.len() }));
    }
    let text = std::str::from_utf8(text).map_err(|e| {
        let line = text[..e.valid_up_to()].split(|&b| b == b'\n').count();
        err(line, InfoProblem::NotUtf8)
    })?;
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut out = Vec::new();
    if body.is_empty() {
        return Ok(out);
    }
    for (i, line) in body.split('\n').enumerate() {
        let n = i + 1;
        if n > MAX_INFO_LINES {
            return Err(err(n, InfoProblem::TooManyLines));
        }
        if line.len() > MAX_INFO_LINE_LEN {
            return Err(err(n, InfoProblem::LineTooLong { len: line.len() }));
        }
        if line.is_empty() {
            return Err(err(n, InfoProblem::EmptyLine));
        }
        let bad = || err(n, InfoProblem::NotKeyValue(shorten(line)));
        let (key, rest) = line.split_once(':').ok_or_else(bad)?;
        let key_ok = key.starts_with(|c: char| c.is_ascii_alphabetic())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !key_ok {
            return Err(bad());
        }
        let value = if rest.is_empty() {
            rest
        } else {
            rest.strip_prefix(' ').ok_or_else(bad)?
        };
        if value.chars().any(char::is_control) {
            return Err(err(n, InfoProblem::ControlCharacter(key.to_owned())));
        }
        out.push((n, key, value));
    }
    Ok(out)
}

/// At most 80 characters of `s`, for a message.
fn shorten(s: &str) -> String {
    if s.chars().count() <= 80 {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(77).collect();
        t.push_str("...");
        t
    }
}

/// `blake3:` and 64 lower-case hex digits.
fn parse_blake3(value: &str) -> Option<[u8; 32]> {
    let hex = value.strip_prefix("blake3:")?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    blake3::Hash::from_hex(hex).ok().map(|h| *h.as_bytes())
}

/// Decimal digits without a sign or leading zeros.
fn parse_u64(value: &str) -> Option<u64> {
    let canonical = value.bytes().all(|b| b.is_ascii_digit())
        && !value.is_empty()
        && (value == "0" || !value.starts_with('0'));
    if canonical { value.parse().ok() } else { None }
}

fn hex(hash: &[u8; 32]) -> String {
    blake3::Hash::from_bytes(*hash).to_hex().to_string()
}

impl CacheInfo {
    /// The info of a valid path (no archive file; signatures as in the database).
    pub fn from_path_info(info: &PathInfo) -> CacheInfo {
        CacheInfo {
            path: info.path.clone(),
            file: None,
            tree_hash: info.tree_hash,
            archive_size: info.archive_size,
            references: info.references.clone(),
            deriver: info.deriver.clone(),
            content_address: info.content_address.clone(),
            signatures: info.signatures.clone(),
        }
    }

    /// What the database would record for the path (registration time 0), and what its
    /// signatures are made over.
    pub fn to_path_info(&self) -> PathInfo {
        PathInfo {
            path: self.path.clone(),
            tree_hash: self.tree_hash,
            archive_size: self.archive_size,
            registered: 0,
            deriver: self.deriver.clone(),
            content_address: self.content_address.clone(),
            references: self.references.clone(),
            signatures: self.signatures.clone(),
        }
    }

    /// Check what can be checked without the content: a trusted signature when `trust`
    /// requires one, and the path against its content address. See
    /// [`Receiver`](crate::Receiver) for the rest.
    pub fn verify(&self, trust: &crate::Trust) -> Result<(), ReceiveError> {
        let info = self.to_path_info();
        trust.check(&info)?;
        crate::receive::check_content_address(&info)
    }

    /// Parse an info text; `origin` names it in errors (a file, `export record 3`).
    ///
    /// Strict: every line is `Key: value`; known keys appear once (`Sig` any number of
    /// times) with values of their exact form; `StorePath`, `TreeHash`, `ArchiveSize`
    /// and `References` are required, and the archive-file keys come all together or
    /// not at all. Unknown keys are ignored, so that newer writers can add fields.
    pub fn parse(text: &[u8], origin: &str) -> Result<CacheInfo, InfoError> {
        #[derive(Default)]
        struct Fields {
            path: Option<StorePath>,
            url: Option<String>,
            compression: Option<Compression>,
            file_hash: Option<[u8; 32]>,
            file_size: Option<u64>,
            tree_hash: Option<[u8; 32]>,
            archive_size: Option<u64>,
            references: Option<BTreeSet<StorePath>>,
            deriver: Option<StorePath>,
            content_address: Option<String>,
        }
        fn set<T>(
            slot: &mut Option<T>,
            key: &'static str,
            value: &str,
            expected: &'static str,
            parse: impl FnOnce(&str) -> Option<T>,
        ) -> Result<(), InfoProblem> {
            if slot.is_some() {
                return Err(InfoProblem::Duplicate(key));
            }
            *slot = Some(parse(value).ok_or_else(|| InfoProblem::BadValue {
                key,
                value: shorten(value),
                expected,
            })?);
            Ok(())
        }
        let err = |line, problem| InfoError {
            origin: origin.to_owned(),
            line,
            problem,
        };
        let mut f = Fields::default();
        let mut signatures = BTreeSet::new();
        for (n, key, value) in lines(text, origin)? {
            let result = match key {
                "StorePath" => set(&mut f.path, "StorePath", value, "a store path", |v| {
                    StorePath::parse(v).ok()
                }),
                "URL" => set(&mut f.url, "URL", value, "a URL without spaces", |v| {
                    (!v.is_empty() && !v.contains(' ')).then(|| v.to_owned())
                }),
                "Compression" => set(
                    &mut f.compression,
                    "Compression",
                    value,
                    "zstd, gzip or none",
                    |v| v.parse().ok(),
                ),
                "FileHash" => set(
                    &mut f.file_hash,
                    "FileHash",
                    value,
                    "blake3: and 64 lower-case hex digits",
                    parse_blake3,
                ),
                "FileSize" => set(
                    &mut f.file_size,
                    "FileSize",
                    value,
                    "a size in bytes",
                    parse_u64,
                ),
                "TreeHash" => set(
                    &mut f.tree_hash,
                    "TreeHash",
                    value,
                    "blake3: and 64 lower-case hex digits",
                    parse_blake3,
                ),
                "ArchiveSize" => set(
                    &mut f.archive_size,
                    "ArchiveSize",
                    value,
                    "a size in bytes",
                    parse_u64,
                ),
                "References" => set(
                    &mut f.references,
                    "References",
                    value,
                    "store path base names separated by single spaces",
                    |v| {
                        if v.is_empty() {
                            return Some(BTreeSet::new());
                        }
                        v.split(' ')
                            .map(|b| StorePath::from_base_name(b).ok())
                            .collect()
                    },
                ),
                "Deriver" => set(
                    &mut f.deriver,
                    "Deriver",
                    value,
                    "a store path base name",
                    |v| StorePath::from_base_name(v).ok(),
                ),
                "ContentAddress" => set(
                    &mut f.content_address,
                    "ContentAddress",
                    value,
                    "a content address without spaces",
                    |v| (!v.is_empty() && !v.contains(' ')).then(|| v.to_owned()),
                ),
                "Sig" => {
                    if crate::sign::is_signature(value) {
                        signatures.insert(value.to_owned());
                        Ok(())
                    } else {
                        Err(InfoProblem::BadValue {
                            key: "Sig",
                            value: shorten(value),
                            expected: "KEY-NAME:BASE64 of a 64-byte signature",
                        })
                    }
                }
                _ => Ok(()),
            };
            result.map_err(|p| err(n, p))?;
        }
        let missing = |key| err(0, InfoProblem::Missing(key));
        let file = match (f.url, f.compression, f.file_hash, f.file_size) {
            (Some(url), Some(compression), Some(file_hash), Some(file_size)) => Some(ArchiveFile {
                url,
                compression,
                file_hash,
                file_size,
            }),
            (None, None, None, None) => None,
            (url, compression, file_hash, file_size) => {
                let have = [
                    ("URL", url.is_some()),
                    ("Compression", compression.is_some()),
                    ("FileHash", file_hash.is_some()),
                    ("FileSize", file_size.is_some()),
                ];
                let present = have.iter().find(|h| h.1).expect("one is there").0;
                let missing = have.iter().find(|h| !h.1).expect("one is not").0;
                return Err(err(0, InfoProblem::Incomplete { present, missing }));
            }
        };
        Ok(CacheInfo {
            path: f.path.ok_or_else(|| missing("StorePath"))?,
            file,
            tree_hash: f.tree_hash.ok_or_else(|| missing("TreeHash"))?,
            archive_size: f.archive_size.ok_or_else(|| missing("ArchiveSize"))?,
            references: f.references.ok_or_else(|| missing("References"))?,
            deriver: f.deriver,
            content_address: f.content_address,
            signatures,
        })
    }

    /// The info text, keys in the documented order.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(s, "StorePath: {}", self.path);
        if let Some(file) = &self.file {
            let _ = write!(
                s,
                "URL: {}\nCompression: {}\nFileHash: blake3:{}\nFileSize: {}\n",
                file.url,
                file.compression,
                hex(&file.file_hash),
                file.file_size
            );
        }
        let _ = write!(
            s,
            "TreeHash: blake3:{}\nArchiveSize: {}\nReferences:",
            hex(&self.tree_hash),
            self.archive_size
        );
        for r in &self.references {
            s.push(' ');
            s.push_str(&r.base_name());
        }
        s.push('\n');
        if let Some(d) = &self.deriver {
            let _ = writeln!(s, "Deriver: {}", d.base_name());
        }
        if let Some(ca) = &self.content_address {
            let _ = writeln!(s, "ContentAddress: {ca}");
        }
        for sig in &self.signatures {
            let _ = writeln!(s, "Sig: {sig}");
        }
        s
    }
}

/// A binary cache's own info file, `nexis-cache-info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheMeta {
    /// The store directory the cache's paths are for (`StoreDir`); nexis reads only
    /// caches for [`STORE_DIR`].
    pub store_dir: String,
    /// `Priority`: caches with a lower number are asked first ([`DEFAULT_PRIORITY`]
    /// when absent or not a number).
    pub priority: u32,
}

/// The priority of a cache whose info file gives none (Nix's too).
pub const DEFAULT_PRIORITY: u32 = 50;

impl CacheMeta {
    /// Parse the text of a `nexis-cache-info` file (the line rules of an info file;
    /// `StoreDir` required, `Priority` read, other keys ignored). `origin` names it in
    /// errors.
    pub fn parse(text: &[u8], origin: &str) -> Result<CacheMeta, InfoError> {
        let lines = lines(text, origin)?;
        let value = |name: &str| {
            lines
                .iter()
                .find(|(_, key, _)| *key == name)
                .map(|(_, _, value)| (*value).to_owned())
        };
        let priority = value("Priority")
            .and_then(|p| p.parse().ok())
            .unwrap_or(DEFAULT_PRIORITY);
        match value("StoreDir") {
            Some(store_dir) => Ok(CacheMeta {
                store_dir,
                priority,
            }),
            None => Err(InfoError {
                origin: origin.to_owned(),
                line: 0,
                problem: InfoProblem::Missing("StoreDir"),
            }),
        }
    }
}

// ---------------------------------------------------------------------------------------
// A cache on a directory

/// Writing to or reading from a binary cache failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A path to copy is not valid in the local store.
    #[error("{path} is not valid in the store")]
    NotValid {
        /// The path.
        path: StorePath,
    },
    /// A file of the cache could not be read or written.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Archiving a path failed.
    #[error("cannot archive {path}")]
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
    /// The directory has no `nexis-cache-info`, or it does not parse.
    #[error("{} is not a binary cache: {why}", dir.display())]
    NotACache {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The cache serves another store directory.
    #[error("the binary cache {} is for the store {found}, not {STORE_DIR}", dir.display())]
    WrongStoreDir {
        /// The directory.
        dir: PathBuf,
        /// Its `StoreDir`.
        found: String,
    },
    /// No cache asked has an info file for a path.
    #[error("{path} is not in {}", caches_phrase(caches))]
    NotInCache {
        /// The path.
        path: StorePath,
        /// The caches asked (directories or URLs).
        caches: Vec<String>,
    },
    /// The cache holds other content under a path than this store recorded for it
    /// (archive size and tree hash).
    #[error(
        "{path} in the binary cache {cache} is not what this store recorded: {cached}, recorded {known}"
    )]
    Differs {
        /// The path.
        path: StorePath,
        /// The cache (a directory or a URL).
        cache: String,
        /// The cache's archive size and tree hash.
        cached: Box<FileDigest>,
        /// The recorded archive size and tree hash.
        known: Box<FileDigest>,
    },
    /// An info file does not parse.
    #[error(transparent)]
    Info(#[from] InfoError),
    /// An info file found under a path's hash part describes another path.
    #[error("{} describes {found}, not {expected}", file.display())]
    WrongPath {
        /// The info file.
        file: PathBuf,
        /// The path looked up.
        expected: StorePath,
        /// The path it names.
        found: StorePath,
    },
    /// An info file names no archive file.
    #[error("{} names no archive file (URL, Compression, FileHash, FileSize)", file.display())]
    NoArchiveFile {
        /// The info file.
        file: PathBuf,
    },
    /// An archive URL leaves the cache or is not a relative path.
    #[error("{}: archive URL `{url}` is not a relative path inside the cache", file.display())]
    BadUrl {
        /// The info file.
        file: PathBuf,
        /// The URL.
        url: String,
    },
    /// Verifying or installing what was read failed.
    #[error(transparent)]
    Receive(#[from] ReceiveError),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `the binary cache X`, or `any of the binary caches X, Y`.
fn caches_phrase(caches: &[String]) -> String {
    match caches {
        [] => "any binary cache (none given)".to_owned(),
        [one] => format!("the binary cache {one}"),
        many => format!("any of the binary caches {}", many.join(", ")),
    }
}

impl From<crate::db::DbError> for CacheError {
    fn from(e: crate::db::DbError) -> CacheError {
        CacheError::Store(e.into())
    }
}

fn cache_io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CacheError + use<> {
    let path = path.to_owned();
    move |source| CacheError::Io {
        action,
        path,
        source,
    }
}

/// What [`Store::copy_to_cache`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Paths written to the cache, references first.
    pub copied: Vec<StorePath>,
    /// Paths the cache had already.
    pub skipped: Vec<StorePath>,
}

/// A name for a temporary file in the cache, unique within this process.
fn temp_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        ".tmp-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Write `bytes` to `path` through a synced temporary file in the same directory and a
/// rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(temp_name());
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(cache_io("create", &tmp))?;
        f.write_all(bytes).map_err(cache_io("write", &tmp))?;
        f.sync_all().map_err(cache_io("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(cache_io("rename into place", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

impl Store {
    /// Copy the closure of `paths` to the binary cache in `dir` (created when missing),
    /// references first, skipping paths whose info file is there already. Each archive is
    /// compressed with `compression` into a temporary file, hashed while written, and
    /// renamed into place; then the info file is written, also atomically, and signed
    /// with `key` when one is given (besides the signatures the database holds).
    pub fn copy_to_cache(
        &self,
        paths: &[StorePath],
        dir: &Path,
        key: Option<&SecretKey>,
        compression: Compression,
    ) -> Result<CopyReport, CacheError> {
        let archives = dir.join("archive");
        fs::create_dir_all(&archives).map_err(cache_io("create", &archives))?;
        let marker = dir.join(CACHE_INFO_FILE);
        if !marker.exists() {
            write_atomic(
                &marker,
                format!("StoreDir: {STORE_DIR}\nWantMassQuery: 1\nPriority: 40\n").as_bytes(),
            )?;
        }
        let _gc = self.lock_gc(false)?;
        for p in paths {
            if !self.with_db(|db| db.is_valid(p))? {
                return Err(CacheError::NotValid { path: p.clone() });
            }
        }
        let mut report = CopyReport::default();
        for info in self.closure_in_order(paths)? {
            let info_file = dir.join(format!("{}.info", info.path.hash_part()));
            if info_file.exists() {
                report.skipped.push(info.path);
                continue;
            }
            let file = self.write_cache_archive(&info, &archives, compression)?;
            let mut text = CacheInfo::from_path_info(&info);
            text.file = Some(file);
            if let Some(key) = key {
                text.signatures.insert(key.sign(&info));
            }
            write_atomic(&info_file, text.to_text().as_bytes())?;
            report.copied.push(info.path);
        }
        if let Ok(d) = File::open(dir) {
            // Best effort: not every filesystem syncs directories.
            let _ = d.sync_all();
        }
        Ok(report)
    }

    /// Compress a valid path's archive into `archives/<file hash><ext>`.
    fn write_cache_archive(
        &self,
        info: &PathInfo,
        archives: &Path,
        compression: Compression,
    ) -> Result<ArchiveFile, CacheError> {
        let tmp = archives.join(temp_name());
        let result = (|| {
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(cache_io("create", &tmp))?;
            let mut hashing = HashingWriter::new(BufWriter::new(f));
            let mut enc = compression
                .encoder(&mut hashing)
                .map_err(cache_io("compress into", &tmp))?;
            let tree = write_archive(&self.physical(&info.path), &mut enc).map_err(|source| {
                CacheError::Archive {
                    path: info.path.clone(),
                    source: Box::new(source),
                }
            })?;
            enc.finish().map_err(cache_io("compress into", &tmp))?;
            let (file_hash, file_size, buffered) = hashing.finish();
            let f = buffered
                .into_inner()
                .map_err(|e| cache_io("write", &tmp)(e.into_error()))?;
            f.sync_all().map_err(cache_io("sync", &tmp))?;
            if tree.hash != info.tree_hash || tree.archive_size != info.archive_size {
                return Err(CacheError::Changed {
                    path: info.path.clone(),
                    expected: hex(&info.tree_hash),
                    actual: hex(&tree.hash),
                    expected_size: info.archive_size,
                    actual_size: tree.archive_size,
                });
            }
            let name = format!("{}{}", hex(&file_hash), compression.extension());
            let dest = archives.join(&name);
            fs::rename(&tmp, &dest).map_err(cache_io("rename into place", &dest))?;
            Ok(ArchiveFile {
                url: format!("archive/{name}"),
                compression,
                file_hash,
                file_size,
            })
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

/// Check `dir/nexis-cache-info`: it must exist and name this store directory.
pub(crate) fn check_cache_dir(dir: &Path) -> Result<(), CacheError> {
    let marker = dir.join(CACHE_INFO_FILE);
    let not_a_cache = |why: String| CacheError::NotACache {
        dir: dir.to_owned(),
        why,
    };
    let mut text = Vec::new();
    File::open(&marker)
        .and_then(|f| f.take(MAX_INFO_LEN as u64 + 1).read_to_end(&mut text))
        .map_err(|e| not_a_cache(format!("cannot read {CACHE_INFO_FILE}: {e}")))?;
    let meta = CacheMeta::parse(&text, &marker.display().to_string())
        .map_err(|e| not_a_cache(e.to_string()))?;
    if meta.store_dir == STORE_DIR {
        Ok(())
    } else {
        Err(CacheError::WrongStoreDir {
            dir: dir.to_owned(),
            found: meta.store_dir,
        })
    }
}

/// Read and parse `dir/<hash part>.info`, checking that it describes `path`; `None`
/// when there is no such file.
pub(crate) fn read_info(
    dir: &Path,
    path: &StorePath,
) -> Result<Option<(PathBuf, CacheInfo)>, CacheError> {
    let file = dir.join(format!("{}.info", path.hash_part()));
    let f = match File::open(&file) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(cache_io("open", &file)(e)),
    };
    let mut text = Vec::new();
    f.take(MAX_INFO_LEN as u64 + 1)
        .read_to_end(&mut text)
        .map_err(cache_io("read", &file))?;
    let info = CacheInfo::parse(&text, &file.display().to_string())?;
    if info.path != *path {
        return Err(CacheError::WrongPath {
            file,
            expected: path.clone(),
            found: info.path,
        });
    }
    Ok(Some((file, info)))
}

/// Whether an archive file's `URL` is a path inside the cache, to be resolved against
/// the cache's base (a directory or a URL): segments of ASCII letters, digits, `.`,
/// `_`, `-`, `+` and `~` separated by single `/`, none of them `.` or `..`. So no scheme,
/// no absolute path, no `%`-escapes, query or fragment.
pub fn is_relative_cache_url(url: &str) -> bool {
    !url.is_empty()
        && url.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'~')
                })
        })
}

/// The local file an archive URL names: relative, inside the cache, no `..`.
pub(crate) fn local_file(dir: &Path, info_file: &Path, url: &str) -> Result<PathBuf, CacheError> {
    if is_relative_cache_url(url) {
        Ok(dir.join(url))
    } else {
        Err(CacheError::BadUrl {
            file: info_file.to_owned(),
            url: url.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::ContentKind;

    fn sp(name: &str) -> StorePath {
        StorePath::new(
            &ContentKind::Source { references: &[] },
            blake3::hash(name.as_bytes()).as_bytes(),
            name,
        )
        .unwrap()
    }

    fn sample() -> CacheInfo {
        let key = crate::SecretKey::generate("cache-1").unwrap();
        let mut info = CacheInfo {
            path: sp("hello-1.0"),
            file: Some(ArchiveFile {
                url: "archive/abc.nxar.zst".into(),
                compression: Compression::Zstd,
                file_hash: [1; 32],
                file_size: 1234,
            }),
            tree_hash: [2; 32],
            archive_size: 4096,
            references: [sp("glibc-2.40"), sp("hello-1.0")].into(),
            deriver: Some(sp("hello-1.0.drv")),
            content_address: Some(format!("source:blake3:{}", "02".repeat(32))),
            signatures: BTreeSet::new(),
        };
        info.signatures.insert(key.sign(&info.to_path_info()));
        info
    }

    fn problem(text: &str) -> (usize, InfoProblem) {
        let e = CacheInfo::parse(text.as_bytes(), "x.info").unwrap_err();
        (e.line, e.problem)
    }

    #[test]
    fn round_trip() {
        let info = sample();
        let text = info.to_text();
        assert_eq!(CacheInfo::parse(text.as_bytes(), "t").unwrap(), info);
        let lines: Vec<&str> = text.lines().map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(
            lines,
            [
                "StorePath",
                "URL",
                "Compression",
                "FileHash",
                "FileSize",
                "TreeHash",
                "ArchiveSize",
                "References",
                "Deriver",
                "ContentAddress",
                "Sig"
            ]
        );
        let bare = CacheInfo {
            file: None,
            references: BTreeSet::new(),
            deriver: None,
            content_address: None,
            signatures: BTreeSet::new(),
            ..info
        };
        let text = bare.to_text();
        assert!(text.contains("\nReferences:\n"), "{text}");
        assert_eq!(CacheInfo::parse(text.as_bytes(), "t").unwrap(), bare);
        // Unknown keys are ignored; a missing final newline is fine.
        let more = format!("{text}X-Future: anything at all");
        assert_eq!(CacheInfo::parse(more.as_bytes(), "t").unwrap(), bare);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let good = sample().to_text();
        let e = CacheInfo::parse(
            good.replace("FileSize: 1234", "FileSize: 01234").as_bytes(),
            "c/x.info",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "c/x.info:5: `01234` is not a size in bytes (in `FileSize`)"
        );
        assert_eq!(
            problem(&good.replace("TreeHash: ", "TreeHash:")).1,
            InfoProblem::NotKeyValue(format!("TreeHash:blake3:{}", "02".repeat(32)))
        );
        assert_eq!(
            problem(&format!("{good}StorePath: {}\n", sp("x"))),
            (12, InfoProblem::Duplicate("StorePath"))
        );
        assert_eq!(problem(&good.replace("\nURL", "\n\nURL")).0, 2);
        assert!(matches!(
            problem(&good.replace("zstd", "lz4")).1,
            InfoProblem::BadValue {
                key: "Compression",
                ..
            }
        ));
        assert!(matches!(
            problem(&good.replace("Sig: cache-1:", "Sig: cache-1:AA")).1,
            InfoProblem::BadValue { key: "Sig", .. }
        ));
        assert_eq!(
            problem(&good.replace("ArchiveSize: 4096\n", "")),
            (0, InfoProblem::Missing("ArchiveSize"))
        );
        assert_eq!(
            problem(&good.replace("FileSize: 1234\n", "")),
            (
                0,
                InfoProblem::Incomplete {
                    present: "URL",
                    missing: "FileSize"
                }
            )
        );
        assert_eq!(problem(&good.replace("References: ", "References:  ")).0, 8);
        assert_eq!(
            problem(&good.replace("Deriver: ", "Deriver: x\r")).1,
            InfoProblem::ControlCharacter("Deriver".into())
        );
        assert_eq!(
            problem(&"a: b\n".repeat(MAX_INFO_LINES + 1)),
            (MAX_INFO_LINES + 1, InfoProblem::TooManyLines)
        );
        let e = CacheInfo::parse(b"StorePath: \xff\n", "t").unwrap_err();
        assert_eq!((e.line, e.problem), (1, InfoProblem::NotUtf8));
        let long = format!("X: {}\n", "a".repeat(MAX_INFO_LINE_LEN));
        assert!(matches!(
            problem(&long),
            (1, InfoProblem::LineTooLong { .. })
        ));
    }

    #[test]
    fn compression_names_and_magic() {
        for c in [Compression::None, Compression::Zstd, Compression::Gzip] {
            assert_eq!(c.name().parse::<Compression>().unwrap(), c);
            let mut enc = c.encoder(Vec::new()).unwrap();
            enc.write_all(b"nexis-export-v2\n").unwrap();
            let bytes = enc.finish().unwrap();
            assert_eq!(Compression::detect(&bytes), c);
            let mut out = Vec::new();
            c.decoder(&bytes[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, b"nexis-export-v2\n");
        }
        assert!("lz4".parse::<Compression>().is_err());
    }

    #[test]
    fn urls_stay_inside_the_cache() {
        let dir = Path::new("/c");
        let f = Path::new("/c/x.info");
        assert_eq!(
            local_file(dir, f, "archive/a.nxar").unwrap(),
            Path::new("/c/archive/a.nxar")
        );
        for bad in [
            "../a",
            "/etc/passwd",
            "archive/../../a",
            "https://x/a",
            "",
            "archive//a",
            "archive/./a",
            "archive/%2e%2e/a",
            "archive/a?x",
            "archive/a#x",
            "archive\\..\\a",
            "archive/a b",
        ] {
            assert!(local_file(dir, f, bad).is_err(), "{bad}");
            assert!(!is_relative_cache_url(bad), "{bad}");
        }
        assert!(is_relative_cache_url("archive/0a1b.nxar.zst"));
    }
}
