//! Input references: the one string syntax for where an input comes from
//! (`docs/inputs.md`).
//!
//! ```text
//! git+https://example.org/pkgs?ref=main&rev=<40 hex>    a git repository
//! https://example.org/src/hello-2.12.tar.gz?hash=…      an archive or a plain file
//! path:./packages                                        a directory beside the config
//! ```
//!
//! Parsing is strict and reports the first problem with the part at fault quoted and its
//! column. Printing is canonical: the same [`InputRef`] always prints the same string,
//! nexis's query keys in a fixed order and defaults left out, and that string parses back
//! to an equal value.

use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::net::Ipv6Addr;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::hash::{Hash, HashError, hex_value};
use crate::unpack::ArchiveKind;

// ---------------------------------------------------------------------------------------
// Values

/// Where an input comes from: parsed from and printed as the reference syntax.
///
/// ```
/// use nexis_fetch::InputRef;
///
/// let input: InputRef = "git+https://example.org/pkgs?shallow=1&ref=main".parse()?;
/// let InputRef::Git(git) = &input else { unreachable!() };
/// assert_eq!(git.git_ref.as_ref().map(|r| r.as_str()), Some("main"));
/// // Canonical: keys in a fixed order, defaults (`shallow=1`) left out.
/// assert_eq!(input.to_string(), "git+https://example.org/pkgs?ref=main");
/// assert_eq!(input.to_string().parse::<InputRef>()?, input);
/// # Ok::<(), nexis_fetch::InputRefError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InputRef {
    /// `git+https://…`, `git+http://…`, `git+ssh://…`, `git+file:///…`.
    Git(GitInput),
    /// `https://…`, `http://…`, `file:///…`: an archive or a plain file.
    Url(UrlInput),
    /// `path:DIR`: a directory on this machine.
    Path(PathInput),
}

/// A git repository, optionally at a branch or tag and a commit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GitInput {
    /// The repository.
    pub url: GitUrl,
    /// `ref=`: the branch or tag to follow; `None` follows the remote's default branch.
    pub git_ref: Option<RefName>,
    /// `rev=`: the commit.
    pub rev: Option<Rev>,
    /// `submodules=1`: check out submodules too (default `false`).
    pub submodules: bool,
    /// `shallow=0` turns this off: fetch only the commit, not its history (default
    /// `true`).
    pub shallow: bool,
    /// `hash=`: the expected hash of the checked-out tree.
    pub hash: Option<Hash>,
}

/// An archive or a plain file fetched by URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UrlInput {
    /// The URL to fetch, with its own query parameters (nexis's `hash` taken out).
    pub url: FetchUrl,
    /// `hash=`: the expected hash of the downloaded file.
    pub hash: Option<Hash>,
}

/// A directory on this machine, relative to the configuration's directory or absolute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathInput {
    /// Canonical form: `/`-separated, no empty or `.` components, relative paths start
    /// with `./` or `../`.
    path: String,
    /// `hash=`: the expected hash of the directory's tree.
    pub hash: Option<Hash>,
}

/// What a [`UrlInput`] holds, decided by its path's suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UrlKind {
    /// An archive, unpacked into a directory.
    Archive(ArchiveKind),
    /// Any other file, kept as it is.
    File,
}

/// How git reaches a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GitTransport {
    /// `git+https://`
    Https,
    /// `git+http://`
    Http,
    /// `git+ssh://`
    Ssh,
    /// `git+file://`
    File,
}

impl GitTransport {
    /// The URL scheme git is given: `https`, `http`, `ssh`, `file`.
    pub fn scheme(self) -> &'static str {
        match self {
            GitTransport::Https => "https",
            GitTransport::Http => "http",
            GitTransport::Ssh => "ssh",
            GitTransport::File => "file",
        }
    }
}

/// The scheme of a [`FetchUrl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UrlScheme {
    /// `https://`
    Https,
    /// `http://`
    Http,
    /// `file://`
    File,
}

impl UrlScheme {
    /// `https`, `http`, `file`.
    pub fn name(self) -> &'static str {
        match self {
            UrlScheme::Https => "https",
            UrlScheme::Http => "http",
            UrlScheme::File => "file",
        }
    }
}

/// The parts of a URL before its query, as validated by the parser.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Location {
    /// `user@`, only for `git+ssh`.
    user: Option<String>,
    /// Lower-case host name, or `[IPv6]` in its canonical form; empty for `file`.
    host: String,
    port: Option<u16>,
    /// Starts with `/`; percent-encoding kept as written.
    path: String,
}

impl Location {
    fn write(&self, scheme: &str, out: &mut String) {
        out.push_str(scheme);
        out.push_str("://");
        if let Some(user) = &self.user {
            out.push_str(user);
            out.push('@');
        }
        out.push_str(&self.host);
        if let Some(port) = self.port {
            write!(out, ":{port}").expect("writing to a String cannot fail");
        }
        out.push_str(&self.path);
    }

    fn file_path(&self) -> PathBuf {
        PathBuf::from(OsString::from_vec(percent_decode(&self.path)))
    }
}

/// `host`, `port` and `path`: what [`GitUrl`] and [`FetchUrl`] read alike from their
/// [`Location`].
macro_rules! location_getters {
    () => {
        /// The host (lower case; an IPv6 address in brackets); `None` for `file`.
        pub fn host(&self) -> Option<&str> {
            Some(self.location.host.as_str()).filter(|h| !h.is_empty())
        }

        /// The port, when one was written.
        pub fn port(&self) -> Option<u16> {
            self.location.port
        }

        /// The path, percent-encoded as written.
        pub fn path(&self) -> &str {
            &self.location.path
        }
    };
}

/// A git repository's URL, as git is given it (without the `git+`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GitUrl {
    transport: GitTransport,
    location: Location,
}

impl GitUrl {
    /// How git reaches the repository.
    pub fn transport(&self) -> GitTransport {
        self.transport
    }

    /// The user name of a `git+ssh` URL.
    pub fn user(&self) -> Option<&str> {
        self.location.user.as_deref()
    }

    location_getters!();

    /// The directory of a `git+file` repository (percent-decoded).
    pub fn file_path(&self) -> Option<PathBuf> {
        (self.transport == GitTransport::File).then(|| self.location.file_path())
    }
}

impl fmt::Display for GitUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.location.write(self.transport.scheme(), &mut out);
        f.write_str(&out)
    }
}

/// The URL of an archive or file, with the query parameters that belong to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FetchUrl {
    scheme: UrlScheme,
    location: Location,
    /// `key=value` parameters other than `hash`, as written, in order.
    query: Vec<String>,
}

impl FetchUrl {
    /// `https`, `http` or `file`.
    pub fn scheme(&self) -> UrlScheme {
        self.scheme
    }

    location_getters!();

    /// The query parameters nexis passes on (everything but `hash`), as written.
    pub fn query(&self) -> &[String] {
        &self.query
    }

    /// The file of a `file://` URL (percent-decoded).
    pub fn file_path(&self) -> Option<PathBuf> {
        (self.scheme == UrlScheme::File).then(|| self.location.file_path())
    }

    /// The last path segment, percent-decoded (lossily): the downloaded file's name.
    pub fn file_name(&self) -> String {
        let last = self.location.path.rsplit('/').next().unwrap_or_default();
        String::from_utf8_lossy(&percent_decode(last)).into_owned()
    }
}

impl fmt::Display for FetchUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.location.write(self.scheme.name(), &mut out);
        for (i, param) in self.query.iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.push_str(param);
        }
        f.write_str(&out)
    }
}

impl UrlInput {
    /// Whether the URL names an archive (and which) or a plain file.
    pub fn kind(&self) -> UrlKind {
        ArchiveKind::from_file_name(&self.url.file_name()).map_or(UrlKind::File, UrlKind::Archive)
    }
}

impl PathInput {
    /// The directory as written, in canonical form; relative to the configuration's
    /// directory unless absolute.
    pub fn path(&self) -> &Path {
        Path::new(&self.path)
    }

    /// The directory against `base` (the configuration's directory), lexically: `.` and
    /// `..` components are applied to the path, not looked up.
    pub fn resolve(&self, base: &Path) -> PathBuf {
        let mut out = PathBuf::new();
        for c in base.join(&self.path).components() {
            match c {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir => {
                    if !out.pop() {
                        out.push("..");
                    }
                }
                other => out.push(other),
            }
        }
        out
    }
}

impl InputRef {
    /// The scheme as written before `:`: `git+https`, `https`, `path`….
    pub fn scheme(&self) -> &'static str {
        match self {
            InputRef::Git(g) => match g.url.transport {
                GitTransport::Https => "git+https",
                GitTransport::Http => "git+http",
                GitTransport::Ssh => "git+ssh",
                GitTransport::File => "git+file",
            },
            InputRef::Url(u) => u.url.scheme.name(),
            InputRef::Path(_) => "path",
        }
    }

    /// The `hash=` pin, if any.
    pub fn hash(&self) -> Option<&Hash> {
        match self {
            InputRef::Git(g) => g.hash.as_ref(),
            InputRef::Url(u) => u.hash.as_ref(),
            InputRef::Path(p) => p.hash.as_ref(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Git ref names and revisions

/// A branch or tag name (`main`, `v1.2`, `refs/tags/v1.2`), valid by git's ref-name
/// rules (`git check-ref-format --allow-onelevel`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefName(String);

/// A string that is not a valid git ref name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{}` is not a valid git ref name: {reason}", Escaped(name))]
pub struct InvalidRefName {
    /// The string.
    pub name: String,
    /// Which rule it breaks.
    pub reason: &'static str,
}

impl RefName {
    /// Check `name` against git's ref-name rules.
    pub fn new(name: &str) -> Result<RefName, InvalidRefName> {
        ref_name_problem(name).map_or_else(
            || Ok(RefName(name.to_owned())),
            |reason| {
                Err(InvalidRefName {
                    name: name.to_owned(),
                    reason,
                })
            },
        )
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RefName {
    type Err = InvalidRefName;
    fn from_str(s: &str) -> Result<RefName, InvalidRefName> {
        RefName::new(s)
    }
}

/// Which of git's ref-name rules `name` breaks, if any.
fn ref_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name == "@" {
        return Some("it is `@`");
    }
    if name.contains("..") {
        return Some("it contains `..`");
    }
    if name.contains("@{") {
        return Some("it contains `@{`");
    }
    if let Some(c) = name.chars().find(|&c| {
        c.is_ascii_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\')
    }) {
        return Some(match c {
            ' ' => "it contains a space",
            c if c.is_ascii_control() => "it contains a control character",
            '~' => "it contains `~`",
            '^' => "it contains `^`",
            ':' => "it contains `:`",
            '?' => "it contains `?`",
            '*' => "it contains `*`",
            '[' => "it contains `[`",
            _ => "it contains `\\`",
        });
    }
    if name.starts_with('/') || name.ends_with('/') {
        return Some("it starts or ends with `/`");
    }
    if name.contains("//") {
        return Some("it contains `//`");
    }
    if name.ends_with('.') {
        return Some("it ends with `.`");
    }
    for component in name.split('/') {
        if component.starts_with('.') {
            return Some("a `/`-separated component starts with `.`");
        }
        // Git's rule is case-sensitive: `x.LOCK` is a valid name.
        #[allow(clippy::case_sensitive_file_extension_comparisons)]
        if component.ends_with(".lock") {
            return Some("a `/`-separated component ends with `.lock`");
        }
    }
    None
}

/// A git commit id: 20 bytes, written as 40 lower-case hexadecimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rev(pub [u8; 20]);

/// A string that is not 40 lower-case hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{}` is not a commit id: expected 40 lower-case hexadecimal digits",
    Escaped(found)
)]
pub struct InvalidRev {
    /// The string.
    pub found: String,
}

impl FromStr for Rev {
    type Err = InvalidRev;
    fn from_str(s: &str) -> Result<Rev, InvalidRev> {
        let b = s.as_bytes();
        if b.len() != 40 || !b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(InvalidRev {
                found: s.to_owned(),
            });
        }
        let mut out = [0u8; 20];
        for (byte, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
            *byte = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
        }
        Ok(Rev(out))
    }
}

impl fmt::Display for Rev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Errors

/// A reference that could not be parsed: the input, where, and what is wrong.
///
/// Displays as ``input `REF`: PROBLEM (at column N)``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input `{}`: {kind}{}", Escaped(input), At(input, *offset))]
pub struct InputRefError {
    input: String,
    offset: Option<usize>,
    kind: InputRefErrorKind,
}

impl InputRefError {
    /// The reference as given.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Byte offset of the part at fault, when there is one.
    pub fn offset(&self) -> Option<usize> {
        self.offset
    }

    /// Column (in characters, from 1) of the part at fault, when there is one.
    pub fn column(&self) -> Option<usize> {
        self.offset.map(|o| column(&self.input, o))
    }

    /// What is wrong.
    pub fn kind(&self) -> &InputRefErrorKind {
        &self.kind
    }
}

/// What is wrong with a reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputRefErrorKind {
    /// The string is empty.
    #[error("empty reference")]
    Empty,
    /// No `scheme:` at the start.
    #[error("missing scheme (`git+https:`, `https:`, `path:`…){}", hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default())]
    MissingScheme {
        /// A rewrite to suggest.
        hint: Option<String>,
    },
    /// A scheme nexis does not know.
    #[error("unknown scheme `{}`; expected one of {}{}", Escaped(scheme), list(SCHEMES), suggest(*suggestion))]
    UnknownScheme {
        /// The scheme written.
        scheme: String,
        /// The closest known scheme, if one is close.
        suggestion: Option<&'static str>,
    },
    /// `https:host` instead of `https://host`.
    #[error("expected `//` after `{scheme}:`")]
    MissingSlashes {
        /// The scheme.
        scheme: &'static str,
    },
    /// `https:///x`, `https://:443/x`, `https://user@/x`.
    #[error("empty host")]
    EmptyHost,
    /// A host with characters no host name has.
    #[error(
        "invalid host `{}`: write a DNS name (letters, digits, `-`, `.`, `_`; international \
         names in their ASCII form) or an IPv6 address in brackets",
        Escaped(host)
    )]
    BadHost {
        /// The host written.
        host: String,
    },
    /// `user@` outside `git+ssh`.
    #[error(
        "`{}@`: a user name is allowed only in `git+ssh` references (credentials do not \
         belong in the configuration)",
        Escaped(user)
    )]
    UserNotAllowed {
        /// The user part written.
        user: String,
    },
    /// A user name with characters outside `A-Z a-z 0-9 . _ -`.
    #[error(
        "invalid user name `{}`: only letters, digits, `.`, `_` and `-` (no password)",
        Escaped(user)
    )]
    BadUser {
        /// The user part written.
        user: String,
    },
    /// A port that is not a number from 1 to 65535.
    #[error("invalid port `{}`: expected a number from 1 to 65535{}", Escaped(port), hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default())]
    BadPort {
        /// The port written.
        port: String,
        /// A rewrite to suggest.
        hint: Option<String>,
    },
    /// `file:x`, `file://x/y`, `git+file:./x`.
    #[error(
        "not an absolute file URL: write `{scheme}:///absolute/path`, or `path:` for a \
         directory relative to the configuration"
    )]
    RelativeFileUrl {
        /// `file` or `git+file`.
        scheme: &'static str,
    },
    /// Nothing (or only `/`) after the host.
    #[error("missing path after the host")]
    MissingPath,
    /// A `.` or `..` path segment (also percent-encoded).
    #[error(
        "path segment `{}` is not allowed (write the path without `.` and `..`)",
        Escaped(segment)
    )]
    DotSegment {
        /// The segment as written.
        segment: String,
    },
    /// A character that must be percent-encoded.
    #[error("`{}` must be percent-encoded in the {part}", Escaped(&ch.to_string()))]
    BadChar {
        /// The character.
        ch: char,
        /// `path` or `query`.
        part: &'static str,
    },
    /// `%` not followed by two hexadecimal digits.
    #[error(
        "bad percent-encoding `{}`: `%` must be followed by two hexadecimal digits",
        Escaped(found)
    )]
    BadPercent {
        /// The `%` and what follows it (up to two characters).
        found: String,
    },
    /// Percent-encoded bytes that are not UTF-8 where text is needed.
    #[error("`{}` does not decode to UTF-8", Escaped(found))]
    NotUtf8 {
        /// The part as written.
        found: String,
    },
    /// `%00` in a path.
    #[error("`%00` (a NUL byte) is not allowed in the path")]
    Nul,
    /// `#…`
    #[error("fragments (`#…`) are not supported")]
    Fragment,
    /// `?`, `?&x`, `?x&&y`.
    #[error("empty query parameter")]
    EmptyParam,
    /// A query key nexis does not consume, in a git or path reference.
    #[error("unknown query key `{}` in a `{scheme}` reference; known keys: {}{}", Escaped(key), list(known), suggest(*suggestion))]
    UnknownKey {
        /// The key (percent-decoded).
        key: String,
        /// The reference's scheme.
        scheme: &'static str,
        /// The keys this scheme takes.
        known: &'static [&'static str],
        /// The closest known key, if one is close.
        suggestion: Option<&'static str>,
    },
    /// A key of nexis's given twice.
    #[error("duplicate query key `{key}`")]
    DuplicateKey {
        /// The key.
        key: &'static str,
    },
    /// `?ref` without `=`.
    #[error("`{key}` needs a value (`{key}=…`)")]
    MissingValue {
        /// The key.
        key: &'static str,
    },
    /// `rev=` not 40 hexadecimal digits.
    #[error("`rev` must be 40 hexadecimal digits, found `{}`", Escaped(found))]
    BadRev {
        /// The value (percent-decoded).
        found: String,
    },
    /// `rev=` in upper case.
    #[error("`rev` must be written in lower case, found `{found}`")]
    UppercaseRev {
        /// The value.
        found: String,
    },
    /// `ref=` not a valid git ref name.
    #[error("`ref`: {0}")]
    BadRef(InvalidRefName),
    /// `submodules=` or `shallow=` not `1` or `0`.
    #[error("`{key}` must be `1` or `0`, found `{}`", Escaped(found))]
    BadFlag {
        /// The key.
        key: &'static str,
        /// The value (percent-decoded).
        found: String,
    },
    /// `hash=` not a hash.
    #[error("`hash`: {0}")]
    BadHash(HashError),
    /// A URL parameter other than `hash` whose value looks like a hash.
    #[error(
        "URL parameter `{}` holds a hash; did you mean `hash`? (nexis reads only `hash`; \
         other parameters are passed to the server)",
        Escaped(key)
    )]
    MisspelledHash {
        /// The key (percent-decoded).
        key: String,
    },
    /// A `.tar.bz2` URL.
    #[error(
        "bzip2 archives (`{suffix}`) are not supported; nexis unpacks `.tar.gz`/`.tgz`, \
         `.tar.xz`/`.txz`, `.tar.zst`/`.tzst`, `.tar` and `.zip`"
    )]
    Bzip2 {
        /// The suffix.
        suffix: &'static str,
    },
    /// `path:` with nothing after it.
    #[error("empty path")]
    EmptyPath,
    /// A control character in a `path:` reference.
    #[error("control character `{}` in the path", Escaped(&ch.to_string()))]
    ControlChar {
        /// The character.
        ch: char,
    },
}

/// Every scheme, as listed in errors.
const SCHEMES: &[&str] = &[
    "git+https",
    "git+http",
    "git+ssh",
    "git+file",
    "https",
    "http",
    "file",
    "path",
];

/// The query keys of git references, in printing order.
const GIT_KEYS: &[&str] = &["ref", "rev", "submodules", "shallow", "hash"];

/// The query key of URL and path references.
const HASH_KEY: &[&str] = &["hash"];

/// Suffixes of bzip2-compressed tarballs.
const BZIP2_SUFFIXES: &[&str] = &[".tar.bz2", ".tbz2", ".tbz"];

/// Shows a string with control characters escaped, so a message stays on one line.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_debug())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// ` (at column N)` for an offset, nothing without one.
struct At<'a>(&'a str, Option<usize>);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(offset) => write!(f, " (at column {})", column(self.0, offset)),
            None => Ok(()),
        }
    }
}

fn column(input: &str, offset: usize) -> usize {
    input.get(..offset).map_or(offset, |s| s.chars().count()) + 1
}

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn suggest(suggestion: Option<&str>) -> String {
    suggestion.map_or_else(String::new, |s| format!("; did you mean `{s}`?"))
}

/// The candidate closest to `word` (Jaro-Winkler above 0.8, as the configuration
/// language's suggestions).
fn closest(word: &str, candidates: &[&'static str]) -> Option<&'static str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

// ---------------------------------------------------------------------------------------
// Parsing

impl FromStr for InputRef {
    type Err = InputRefError;

    fn from_str(s: &str) -> Result<InputRef, InputRefError> {
        Parser { input: s }.parse()
    }
}

struct Parser<'a> {
    input: &'a str,
}

/// One `key=value` of a query: byte offset, raw text, decoded key, raw value.
struct Param<'a> {
    offset: usize,
    raw: &'a str,
    key: String,
    value: Option<&'a str>,
}

impl<'a> Parser<'a> {
    fn err(&self, offset: impl Into<Option<usize>>, kind: InputRefErrorKind) -> InputRefError {
        InputRefError {
            input: self.input.to_owned(),
            offset: offset.into(),
            kind,
        }
    }

    fn parse(&self) -> Result<InputRef, InputRefError> {
        let s = self.input;
        if s.is_empty() {
            return Err(self.err(None, InputRefErrorKind::Empty));
        }
        let scheme_end = s
            .find(':')
            .filter(|&i| {
                let b = s.as_bytes();
                i > 0
                    && b[0].is_ascii_alphabetic()
                    && b[1..i]
                        .iter()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
            })
            .ok_or_else(|| {
                let hint = (s.starts_with(['.', '/', '~']))
                    .then(|| format!("write `path:{}` for a directory", Escaped(s)));
                self.err(0, InputRefErrorKind::MissingScheme { hint })
            })?;
        let scheme = &s[..scheme_end];
        let rest = scheme_end + 1;
        match scheme {
            "path" => self.path_ref(rest),
            "git+https" => self.git_ref(GitTransport::Https, rest),
            "git+http" => self.git_ref(GitTransport::Http, rest),
            "git+ssh" => self.git_ref(GitTransport::Ssh, rest),
            "git+file" => self.git_ref(GitTransport::File, rest),
            "https" => self.url_ref(UrlScheme::Https, rest),
            "http" => self.url_ref(UrlScheme::Http, rest),
            "file" => self.url_ref(UrlScheme::File, rest),
            _ => {
                let lower = scheme.to_ascii_lowercase();
                let suggestion = SCHEMES
                    .iter()
                    .copied()
                    .find(|k| *k == lower)
                    .or_else(|| closest(&lower, SCHEMES));
                Err(self.err(
                    0,
                    InputRefErrorKind::UnknownScheme {
                        scheme: scheme.to_owned(),
                        suggestion,
                    },
                ))
            }
        }
    }

    /// `path:DIR[?hash=…]`, from `start` (after `path:`).
    fn path_ref(&self, start: usize) -> Result<InputRef, InputRefError> {
        let s = self.input;
        let (end, query) = match s[start..].find('?') {
            Some(q) => (start + q, Some(start + q + 1)),
            None => (s.len(), None),
        };
        let text = &s[start..end];
        if let Some((i, ch)) = text.char_indices().find(|(_, c)| c.is_control()) {
            return Err(self.err(start + i, InputRefErrorKind::ControlChar { ch }));
        }
        if text.is_empty() {
            return Err(self.err(start, InputRefErrorKind::EmptyPath));
        }
        let mut hash = None;
        if let Some(q) = query {
            for p in self.params(q, s.len())? {
                hash = Some(self.hash_param(&p, hash.is_some(), "path")?);
            }
        }
        Ok(InputRef::Path(PathInput {
            path: canonical_path(text),
            hash,
        }))
    }

    fn git_ref(&self, transport: GitTransport, start: usize) -> Result<InputRef, InputRefError> {
        let scheme = match transport {
            GitTransport::Https => "git+https",
            GitTransport::Http => "git+http",
            GitTransport::Ssh => "git+ssh",
            GitTransport::File => "git+file",
        };
        let (location, _, query) = self.location(scheme, start, transport == GitTransport::Ssh)?;
        let mut git = GitInput {
            url: GitUrl {
                transport,
                location,
            },
            git_ref: None,
            rev: None,
            submodules: false,
            shallow: true,
            hash: None,
        };
        let Some(q) = query else {
            return Ok(InputRef::Git(git));
        };
        let mut seen: Vec<&'static str> = Vec::new();
        for p in self.params(q, self.input.len())? {
            let Some(&key) = GIT_KEYS.iter().find(|k| **k == p.key) else {
                return Err(self.err(
                    p.offset,
                    InputRefErrorKind::UnknownKey {
                        suggestion: closest(&p.key, GIT_KEYS),
                        key: p.key,
                        scheme,
                        known: GIT_KEYS,
                    },
                ));
            };
            if seen.contains(&key) {
                return Err(self.err(p.offset, InputRefErrorKind::DuplicateKey { key }));
            }
            seen.push(key);
            let value_at = p.offset + p.raw.len() - p.value.map_or(0, str::len);
            let value = || -> Result<String, InputRefError> {
                let raw = p
                    .value
                    .ok_or_else(|| self.err(p.offset, InputRefErrorKind::MissingValue { key }))?;
                String::from_utf8(percent_decode(raw)).map_err(|_| {
                    self.err(
                        value_at,
                        InputRefErrorKind::NotUtf8 {
                            found: raw.to_owned(),
                        },
                    )
                })
            };
            match key {
                "ref" => {
                    let name = RefName::new(&value()?)
                        .map_err(|e| self.err(value_at, InputRefErrorKind::BadRef(e)))?;
                    git.git_ref = Some(name);
                }
                "rev" => {
                    let v = value()?;
                    let rev = v.parse::<Rev>().map_err(|_| {
                        let kind = if v.len() == 40 && v.bytes().all(|c| c.is_ascii_hexdigit()) {
                            InputRefErrorKind::UppercaseRev { found: v.clone() }
                        } else {
                            InputRefErrorKind::BadRev { found: v.clone() }
                        };
                        self.err(value_at, kind)
                    })?;
                    git.rev = Some(rev);
                }
                "submodules" | "shallow" => {
                    let v = value()?;
                    let flag = match v.as_str() {
                        "1" => true,
                        "0" => false,
                        _ => {
                            return Err(
                                self.err(value_at, InputRefErrorKind::BadFlag { key, found: v })
                            );
                        }
                    };
                    if key == "submodules" {
                        git.submodules = flag;
                    } else {
                        git.shallow = flag;
                    }
                }
                _ => git.hash = Some(self.hash_param(&p, false, scheme)?),
            }
        }
        Ok(InputRef::Git(git))
    }

    fn url_ref(&self, scheme: UrlScheme, start: usize) -> Result<InputRef, InputRefError> {
        let (location, path_start, query) = self.location(scheme.name(), start, false)?;
        let last = location.path.rfind('/').map_or(0, |i| i + 1);
        let name =
            String::from_utf8_lossy(&percent_decode(&location.path[last..])).to_ascii_lowercase();
        if let Some(suffix) = BZIP2_SUFFIXES.iter().find(|x| name.ends_with(**x)) {
            return Err(self.err(path_start + last, InputRefErrorKind::Bzip2 { suffix }));
        }
        let mut url = UrlInput {
            url: FetchUrl {
                scheme,
                location,
                query: Vec::new(),
            },
            hash: None,
        };
        if let Some(q) = query {
            for p in self.params(q, self.input.len())? {
                if p.key == "hash" {
                    url.hash = Some(self.hash_param(&p, url.hash.is_some(), scheme.name())?);
                    continue;
                }
                let value = p.value.map(percent_decode).unwrap_or_default();
                let looks_like_hash = ["sha256-", "sha256:", "blake3-", "blake3:"]
                    .iter()
                    .any(|prefix| value.starts_with(prefix.as_bytes()));
                if looks_like_hash {
                    return Err(
                        self.err(p.offset, InputRefErrorKind::MisspelledHash { key: p.key })
                    );
                }
                url.url.query.push(p.raw.to_owned());
            }
        }
        Ok(InputRef::Url(url))
    }

    /// A `hash=` parameter: its value, refusing a second one.
    fn hash_param(
        &self,
        p: &Param<'_>,
        duplicate: bool,
        scheme: &'static str,
    ) -> Result<Hash, InputRefError> {
        if p.key != "hash" {
            return Err(self.err(
                p.offset,
                InputRefErrorKind::UnknownKey {
                    suggestion: closest(&p.key, HASH_KEY),
                    key: p.key.clone(),
                    scheme,
                    known: HASH_KEY,
                },
            ));
        }
        if duplicate {
            return Err(self.err(p.offset, InputRefErrorKind::DuplicateKey { key: "hash" }));
        }
        let Some(raw) = p.value else {
            return Err(self.err(p.offset, InputRefErrorKind::MissingValue { key: "hash" }));
        };
        let at = p.offset + p.raw.len() - raw.len();
        let text = String::from_utf8(percent_decode(raw)).map_err(|_| {
            self.err(
                at,
                InputRefErrorKind::NotUtf8 {
                    found: raw.to_owned(),
                },
            )
        })?;
        text.parse()
            .map_err(|e| self.err(at, InputRefErrorKind::BadHash(e)))
    }

    /// `//[user@]host[:port]/path[?query]` from `start` (after `scheme:`): the location
    /// and where the query starts.
    fn location(
        &self,
        scheme: &'static str,
        start: usize,
        allow_user: bool,
    ) -> Result<(Location, usize, Option<usize>), InputRefError> {
        let s = self.input;
        let is_file = scheme.ends_with("file");
        if !s[start..].starts_with("//") {
            let kind = if is_file {
                InputRefErrorKind::RelativeFileUrl { scheme }
            } else {
                InputRefErrorKind::MissingSlashes { scheme }
            };
            return Err(self.err(start, kind));
        }
        if let Some(i) = s[start..].find('#') {
            return Err(self.err(start + i, InputRefErrorKind::Fragment));
        }
        let auth_start = start + 2;
        let (end, query) = match s[auth_start..].find('?') {
            Some(q) => (auth_start + q, Some(auth_start + q + 1)),
            None => (s.len(), None),
        };
        let path_start = s[auth_start..end].find('/').map_or(end, |i| auth_start + i);
        let authority = &s[auth_start..path_start];
        let (user, host, port) = if is_file {
            if !authority.is_empty() {
                return Err(self.err(auth_start, InputRefErrorKind::RelativeFileUrl { scheme }));
            }
            (None, String::new(), None)
        } else {
            self.authority(auth_start, authority, allow_user)?
        };
        let path = &s[path_start..end];
        self.check_path(path_start, path)?;
        Ok((
            Location {
                user,
                host,
                port,
                path: path.to_owned(),
            },
            path_start,
            query,
        ))
    }

    /// `[user@]host[:port]` at `start`.
    fn authority(
        &self,
        start: usize,
        text: &str,
        allow_user: bool,
    ) -> Result<(Option<String>, String, Option<u16>), InputRefError> {
        let (user, host_start) = match text.find('@') {
            Some(at) => {
                let user = &text[..at];
                if !allow_user {
                    return Err(self.err(
                        start,
                        InputRefErrorKind::UserNotAllowed {
                            user: user.to_owned(),
                        },
                    ));
                }
                let ok = !user.is_empty()
                    && user
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
                if !ok {
                    return Err(self.err(
                        start,
                        InputRefErrorKind::BadUser {
                            user: user.to_owned(),
                        },
                    ));
                }
                (Some(user.to_owned()), at + 1)
            }
            None => (None, 0),
        };
        let rest = &text[host_start..];
        let host_at = start + host_start;
        let (host, port_text) = if rest.starts_with('[') {
            let close = rest.find(']').ok_or_else(|| {
                self.err(
                    host_at,
                    InputRefErrorKind::BadHost {
                        host: rest.to_owned(),
                    },
                )
            })?;
            let addr: Ipv6Addr = rest[1..close].parse().map_err(|_| {
                self.err(
                    host_at,
                    InputRefErrorKind::BadHost {
                        host: rest[..=close].to_owned(),
                    },
                )
            })?;
            let after = &rest[close + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some((p, close + 2)),
                None if after.is_empty() => None,
                None => {
                    return Err(self.err(
                        host_at,
                        InputRefErrorKind::BadHost {
                            host: rest.to_owned(),
                        },
                    ));
                }
            };
            (format!("[{addr}]"), port)
        } else {
            let (name, port) = match rest.find(':') {
                Some(c) => (&rest[..c], Some((&rest[c + 1..], c + 1))),
                None => (rest, None),
            };
            if name.is_empty() {
                return Err(self.err(host_at, InputRefErrorKind::EmptyHost));
            }
            let ok = name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'));
            if !ok {
                return Err(self.err(
                    host_at,
                    InputRefErrorKind::BadHost {
                        host: name.to_owned(),
                    },
                ));
            }
            (name.to_ascii_lowercase(), port)
        };
        let port = match port_text {
            None => None,
            Some((p, offset)) => {
                let n = (!p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
                    .then(|| p.trim_start_matches('0').parse::<u16>().ok())
                    .flatten()
                    .filter(|&n| n != 0);
                let Some(n) = n else {
                    let scp_like =
                        allow_user && !p.is_empty() && !p.bytes().all(|c| c.is_ascii_digit());
                    let hint = scp_like.then(|| {
                        format!(
                            "scp-style `host:path` is not a URL; write `git+ssh://{}{host}/{}`",
                            user.as_ref().map(|u| format!("{u}@")).unwrap_or_default(),
                            Escaped(&self.input[host_at + offset..]),
                        )
                    });
                    return Err(self.err(
                        host_at + offset,
                        InputRefErrorKind::BadPort {
                            port: p.to_owned(),
                            hint,
                        },
                    ));
                };
                Some(n)
            }
        };
        Ok((user, host, port))
    }

    /// A URL path at `start`: `/` then segments of allowed characters and valid
    /// percent-encoding, no dot segments, no NUL, not just `/`.
    fn check_path(&self, start: usize, path: &str) -> Result<(), InputRefError> {
        if path.len() <= 1 {
            return Err(self.err(start, InputRefErrorKind::MissingPath));
        }
        self.check_chars(start, path, "path")?;
        let mut at = start;
        for segment in path.split('/') {
            let decoded = percent_decode(segment);
            if decoded == b"." || decoded == b".." {
                return Err(self.err(
                    at,
                    InputRefErrorKind::DotSegment {
                        segment: segment.to_owned(),
                    },
                ));
            }
            if let Some(i) = segment.find("%00") {
                return Err(self.err(at + i, InputRefErrorKind::Nul));
            }
            at += segment.len() + 1;
        }
        Ok(())
    }

    /// Every character of `text` (at `start`) is allowed raw in a path or query, or is
    /// a valid percent-encoded byte.
    fn check_chars(
        &self,
        start: usize,
        text: &str,
        part: &'static str,
    ) -> Result<(), InputRefError> {
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c == b'%' {
                let ok =
                    b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit();
                if !ok {
                    let found: String = text[i..].chars().take(3).collect();
                    return Err(self.err(start + i, InputRefErrorKind::BadPercent { found }));
                }
                i += 3;
                continue;
            }
            let allowed = is_pchar(c) || c == b'/' || (part == "query" && c == b'?');
            if !allowed {
                let ch = text[i..].chars().next().expect("i is a character boundary");
                return Err(self.err(start + i, InputRefErrorKind::BadChar { ch, part }));
            }
            i += 1;
        }
        Ok(())
    }

    /// The `&`-separated parameters of the query from `start` to `end`.
    fn params(&self, start: usize, end: usize) -> Result<Vec<Param<'a>>, InputRefError> {
        let s: &'a str = self.input;
        let text = &s[start..end];
        self.check_chars(start, text, "query")?;
        let mut out = Vec::new();
        let mut at = start;
        for raw in text.split('&') {
            if raw.is_empty() {
                return Err(self.err(at, InputRefErrorKind::EmptyParam));
            }
            let (key, value) = match raw.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (raw, None),
            };
            let key = String::from_utf8(percent_decode(key)).map_err(|_| {
                self.err(
                    at,
                    InputRefErrorKind::NotUtf8 {
                        found: key.to_owned(),
                    },
                )
            })?;
            out.push(Param {
                offset: at,
                raw: &s[at..at + raw.len()],
                key,
                value: value.map(|v| &s[at + raw.len() - v.len()..at + raw.len()]),
            });
            at += raw.len() + 1;
        }
        Ok(out)
    }
}

/// RFC 3986 `pchar` without `%`: unreserved, sub-delims, `:` and `@`.
fn is_pchar(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// Decode `%XX` escapes (assumed valid; a stray `%` is kept).
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            out.push((hex_value(b[i + 1]) << 4) | hex_value(b[i + 2]));
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// `path:` text in canonical form: see [`PathInput`].
fn canonical_path(text: &str) -> String {
    let absolute = text.starts_with('/');
    let parts: Vec<&str> = text
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else if parts.is_empty() {
        ".".to_owned()
    } else if parts[0] == ".." {
        joined
    } else {
        format!("./{joined}")
    }
}

// ---------------------------------------------------------------------------------------
// Printing

/// Percent-encode a value of one of nexis's keys: everything but the characters a query
/// holds raw, minus `&` (which separates parameters) and `%`.
fn encode_value(value: &str, out: &mut String) {
    for &c in value.as_bytes() {
        if (is_pchar(c) && c != b'&') || c == b'/' || c == b'?' {
            out.push(char::from(c));
        } else {
            write!(out, "%{c:02X}").expect("writing to a String cannot fail");
        }
    }
}

fn push_param(out: &mut String, first: &mut bool, key: &str, value: &str) {
    out.push(if *first { '?' } else { '&' });
    *first = false;
    out.push_str(key);
    out.push('=');
    encode_value(value, out);
}

impl fmt::Display for InputRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let mut first = true;
        let hash = match self {
            InputRef::Git(g) => {
                out.push_str("git+");
                g.url.location.write(g.url.transport.scheme(), &mut out);
                if let Some(r) = &g.git_ref {
                    push_param(&mut out, &mut first, "ref", r.as_str());
                }
                if let Some(rev) = &g.rev {
                    push_param(&mut out, &mut first, "rev", &rev.to_string());
                }
                if g.submodules {
                    push_param(&mut out, &mut first, "submodules", "1");
                }
                if !g.shallow {
                    push_param(&mut out, &mut first, "shallow", "0");
                }
                g.hash
            }
            InputRef::Url(u) => {
                out.push_str(&u.url.to_string());
                first = u.url.query.is_empty();
                u.hash
            }
            InputRef::Path(p) => {
                out.push_str("path:");
                out.push_str(&p.path);
                p.hash
            }
        };
        if let Some(h) = hash {
            push_param(&mut out, &mut first, "hash", &h.to_string());
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REV: &str = "0123456789abcdef0123456789abcdef01234567";
    const SRI: &str = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    fn parse(s: &str) -> InputRef {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn canonical(s: &str) -> String {
        let first = parse(s);
        let printed = first.to_string();
        assert_eq!(parse(&printed), first, "{s} → {printed}");
        assert_eq!(parse(&printed).to_string(), printed);
        printed
    }

    #[test]
    fn git_references() {
        let input = parse(&format!(
            "git+https://Example.ORG:8443/nexis/pkgs.git?shallow=0&rev={REV}&submodules=1&ref=main&hash={SRI}"
        ));
        let InputRef::Git(g) = &input else { panic!() };
        assert_eq!(g.url.transport(), GitTransport::Https);
        assert_eq!(g.url.host(), Some("example.org"));
        assert_eq!(g.url.port(), Some(8443));
        assert_eq!(g.url.path(), "/nexis/pkgs.git");
        assert_eq!(g.url.to_string(), "https://example.org:8443/nexis/pkgs.git");
        assert_eq!(g.git_ref.as_ref().unwrap().as_str(), "main");
        assert_eq!(g.rev.unwrap().to_string(), REV);
        assert!(g.submodules && !g.shallow);
        assert_eq!(g.hash.unwrap().to_string(), SRI);
        assert_eq!(
            input.to_string(),
            format!(
                "git+https://example.org:8443/nexis/pkgs.git?ref=main&rev={REV}&submodules=1&shallow=0&hash={SRI}"
            )
        );
        // Defaults are left out.
        assert_eq!(
            canonical("git+http://h/r?submodules=0&shallow=1"),
            "git+http://h/r"
        );
        let ssh = parse("git+ssh://git@host.example:2222/~alice/repo");
        let InputRef::Git(g) = &ssh else { panic!() };
        assert_eq!(g.url.user(), Some("git"));
        assert_eq!(g.url.to_string(), "ssh://git@host.example:2222/~alice/repo");
        let file = parse("git+file:///srv/git/my%20repo?ref=refs/tags/v1.0");
        let InputRef::Git(g) = &file else { panic!() };
        assert_eq!(g.url.file_path().unwrap(), Path::new("/srv/git/my repo"));
        assert_eq!(g.url.host(), None);
        assert_eq!(
            canonical("git+https://[::0001]:80/r"),
            "git+https://[::1]:80/r"
        );
    }

    #[test]
    fn ref_values_are_percent_decoded_and_printed_canonically() {
        let input = parse("git+https://h/r?ref=feat%2Fx%23%26%C3%A9");
        let InputRef::Git(g) = &input else { panic!() };
        assert_eq!(g.git_ref.as_ref().unwrap().as_str(), "feat/x#&é");
        assert_eq!(input.to_string(), "git+https://h/r?ref=feat/x%23%26%C3%A9");
        assert_eq!(
            canonical("git+https://h/r?%72ef=main"),
            "git+https://h/r?ref=main"
        );
    }

    #[test]
    fn url_references() {
        let cases = [
            ("https://h/x.tar.gz", UrlKind::Archive(ArchiveKind::TarGz)),
            ("https://h/x.TGZ", UrlKind::Archive(ArchiveKind::TarGz)),
            ("http://h/x.tar.xz", UrlKind::Archive(ArchiveKind::TarXz)),
            ("https://h/x.txz", UrlKind::Archive(ArchiveKind::TarXz)),
            ("https://h/x.tar.zst", UrlKind::Archive(ArchiveKind::TarZst)),
            ("https://h/x.tzst", UrlKind::Archive(ArchiveKind::TarZst)),
            ("https://h/x.tar", UrlKind::Archive(ArchiveKind::Tar)),
            ("https://h/x.zip?dl=1", UrlKind::Archive(ArchiveKind::Zip)),
            (
                "file:///srv/x%2Etar%2Egz",
                UrlKind::Archive(ArchiveKind::TarGz),
            ),
            ("https://h/x.tar.gz.sig", UrlKind::File),
            ("https://h/download?file=x.tar.gz", UrlKind::File),
            ("https://h/patch.diff", UrlKind::File),
        ];
        for (text, kind) in cases {
            let InputRef::Url(u) = parse(text) else {
                panic!()
            };
            assert_eq!(u.kind(), kind, "{text}");
        }
        let input = parse(&format!("https://h/x.tar.gz?hash={SRI}&token=a%20b&x"));
        let InputRef::Url(u) = &input else { panic!() };
        assert_eq!(u.url.query(), ["token=a%20b", "x"]);
        assert_eq!(u.url.to_string(), "https://h/x.tar.gz?token=a%20b&x");
        assert_eq!(
            input.to_string(),
            format!("https://h/x.tar.gz?token=a%20b&x&hash={SRI}")
        );
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            canonical(&format!("file:///a/b.zip?hash=sha256:{hex}")),
            format!("file:///a/b.zip?hash={SRI}")
        );
        let InputRef::Url(u) = parse("file:///a/b%20c.tar") else {
            panic!()
        };
        assert_eq!(u.url.file_path().unwrap(), Path::new("/a/b c.tar"));
    }

    #[test]
    fn path_references() {
        for (text, printed) in [
            ("path:./pkgs", "path:./pkgs"),
            ("path:pkgs/", "path:./pkgs"),
            ("path:.//a/./b", "path:./a/b"),
            ("path:../shared", "path:../shared"),
            ("path:./../shared", "path:../shared"),
            ("path:.", "path:."),
            ("path:/abs//dir/", "path:/abs/dir"),
            ("path:/", "path:/"),
            ("path:./with space#and%", "path:./with space#and%"),
        ] {
            assert_eq!(canonical(text), printed, "{text}");
        }
        assert_eq!(
            canonical(&format!("path:./x?hash={SRI}")),
            format!("path:./x?hash={SRI}")
        );
        let InputRef::Path(p) = parse("path:../shared/pkgs") else {
            panic!()
        };
        assert_eq!(
            p.resolve(Path::new("/etc/nexis")),
            Path::new("/etc/shared/pkgs")
        );
    }

    #[test]
    fn ref_name_rules() {
        for good in [
            "main",
            "v1.2.3",
            "refs/tags/v1",
            "feature/x-y_z",
            "a#b",
            "é",
        ] {
            assert!(RefName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "", "@", "a..b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[b", "a\\b", "/a", "a/",
            "a//b", "a.", ".a", "a/.b", "a.lock", "a.lock/b", "a@{1}", "a\tb", "a\u{7f}",
        ] {
            assert!(RefName::new(bad).is_err(), "{bad:?}");
        }
    }

    /// Each error kind: the column it points at, the input, and the message it gives
    /// (after the quoted input).
    #[test]
    fn errors() {
        #[rustfmt::skip]
        let cases: &[(Option<usize>, &str, &str)] = &[
            (None,     "",                             "empty reference"),
            (Some(1),  "./pkgs",                       "missing scheme (`git+https:`, `https:`, `path:`…); write `path:./pkgs` for a directory"),
            (Some(1),  "example.org/x",                "missing scheme"),
            (Some(1),  "ftp://h/x",                    "unknown scheme `ftp`; expected one of `git+https`, `git+http`, `git+ssh`, `git+file`, `https`, `http`, `file`, `path`"),
            (Some(1),  "htps://h/x",                   "unknown scheme `htps`; expected one of"),
            (Some(1),  "HTTPS://h/x",                  "did you mean `https`?"),
            (Some(1),  "git+htps://h/x",               "did you mean `git+https`?"),
            (Some(7),  "https:h/x",                    "expected `//` after `https:`"),
            (Some(9),  "https:///x",                   "empty host"),
            (Some(9),  "https://:80/x",                "empty host"),
            (Some(9),  "https://exa mple/x",           "invalid host `exa mple`"),
            (Some(9),  "https://bücher.de/x",          "invalid host `bücher.de`"),
            (Some(9),  "https://[::g]/x",              "invalid host `[::g]`"),
            (Some(9),  "https://u:p@h/x",              "`u:p@`: a user name is allowed only in `git+ssh` references"),
            (Some(13), "git+https://git@h/x",          "a user name is allowed only in `git+ssh`"),
            (Some(11), "git+ssh://a:b@h/x",            "invalid user name `a:b`"),
            (Some(11), "git+ssh://@h/x",               "invalid user name ``"),
            (Some(11), "https://h:0/x",                "invalid port `0`"),
            (Some(11), "https://h:65536/x",            "invalid port `65536`"),
            (Some(11), "https://h:/x",                 "invalid port ``"),
            (Some(26), "git+ssh://git@github.com:owner/repo", "invalid port `owner`: expected a number from 1 to 65535; scp-style `host:path` is not a URL; write `git+ssh://git@github.com/owner/repo`"),
            (Some(8),  "file://x.tar.gz",              "not an absolute file URL: write `file:///absolute/path`, or `path:` for a directory relative to the configuration"),
            (Some(6),  "file:x.tar.gz",                "not an absolute file URL"),
            (Some(10), "git+file:./repo",              "write `git+file:///absolute/path`"),
            (Some(10), "https://h",                    "missing path after the host"),
            (Some(10), "https://h/",                   "missing path after the host"),
            (Some(8),  "file:///",                     "missing path"),
            (Some(13), "https://h/a/../x.tar",         "path segment `..` is not allowed"),
            (Some(11), "file:///a/%2e/x.tar",          "path segment `%2e` is not allowed"),
            (Some(12), "https://h/a b",                "` ` must be percent-encoded in the path"),
            (Some(12), "https://h/a\\b",               "`\\` must be percent-encoded in the path"),
            (Some(15), "https://h/x?a=\"",             "`\"` must be percent-encoded in the query"),
            (Some(12), "https://h/a%zz",               "bad percent-encoding `%zz`: `%` must be followed by two hexadecimal digits"),
            (Some(12), "https://h/a%4",                "bad percent-encoding `%4`"),
            (Some(21), "git+https://h/r?ref=%ff",      "`%ff` does not decode to UTF-8"),
            (Some(10), "file:///a%00b",                "`%00` (a NUL byte) is not allowed in the path"),
            (Some(16), "https://h/x.tar#frag",         "fragments (`#…`) are not supported"),
            (Some(13), "https://h/x?",                 "empty query parameter"),
            (Some(23), "git+https://h/r?ref=a&&rev=b", "empty query parameter"),
            (Some(17), "git+https://h/r?branch=main",  "unknown query key `branch` in a `git+https` reference; known keys: `ref`, `rev`, `submodules`, `shallow`, `hash`"),
            (Some(17), "git+https://h/r?submodule=1",  "did you mean `submodules`?"),
            (Some(10), "path:./x?rev=abc",             "unknown query key `rev` in a `path` reference; known keys: `hash`"),
            (Some(23), "git+https://h/r?ref=a&ref=b",  "duplicate query key `ref`"),
            (Some(70), &format!("https://h/x?hash={SRI}&hash={SRI}"), "duplicate query key `hash`"),
            (Some(17), "git+https://h/r?ref",          "`ref` needs a value (`ref=…`)"),
            (Some(21), "git+https://x/y?rev=abc",      "`rev` must be 40 hexadecimal digits, found `abc`"),
            (Some(21), &format!("git+https://h/r?rev={}", REV.to_uppercase()), "`rev` must be written in lower case"),
            (Some(21), "git+https://h/r?ref=a..b",     "`ref`: `a..b` is not a valid git ref name: it contains `..`"),
            (Some(21), "git+https://h/r?ref=",         "`ref`: `` is not a valid git ref name: it is empty"),
            (Some(21), "git+https://h/r?ref=x.lock",   "a `/`-separated component ends with `.lock`"),
            (Some(21), "git+https://h/r?ref=a%20b",    "it contains a space"),
            (Some(25), "git+https://h/r?shallow=yes",  "`shallow` must be `1` or `0`, found `yes`"),
            (Some(13), "path:x?hash=md5-abc",          "`hash`: `md5-abc` is not a hash"),
            (Some(22), "https://h/x.tar?hash=sha256-AAAA", "`hash`: `sha256-AAAA`: a sha256 digest is 32 bytes, found 3"),
            (Some(17), &format!("https://h/x.tar?hsh={SRI}"), "URL parameter `hsh` holds a hash; did you mean `hash`?"),
            (Some(11), "https://h/x.tar.bz2",          "bzip2 archives (`.tar.bz2`) are not supported"),
            (Some(15), "https://h/dir/x.tbz2",         "bzip2 archives (`.tbz2`)"),
            (Some(6),  "path:",                        "empty path"),
            (Some(6),  "path:?hash=x",                 "empty path"),
            (Some(9),  "path:./a\tb",                  "control character `\\t` in the path"),
        ];
        for (col, text, want) in cases {
            let err = text.parse::<InputRef>().unwrap_err();
            let msg = err.to_string();
            let prefix = format!("input `{}`: ", Escaped(text));
            assert!(msg.starts_with(&prefix), "{text}: {msg}");
            assert!(msg.contains(want), "{text}:\n  got  {msg}\n  want {want}");
            assert_eq!(err.column(), *col, "{text}: {msg}");
            match col {
                Some(c) => assert!(msg.ends_with(&format!(" (at column {c})")), "{msg}"),
                None => assert!(!msg.contains("(at column"), "{msg}"),
            }
        }
    }
}
