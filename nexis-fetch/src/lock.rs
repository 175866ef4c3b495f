//! `nexis.lock`: what every input of a configuration was resolved to (`docs/lock.md`).
//!
//! The file is TOML, written by nexis and read strictly: a version, then one table per
//! input with the reference the configuration gave (`original`) and what it was pinned
//! to (`type` and its fields, `tree-hash`). Parsing errors name the file, line and column
//! and the key at fault. Writing is deterministic (inputs sorted by name, keys in a fixed
//! order), so the same lock always prints the same bytes and a lock that did not change
//! is not rewritten.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table, Value};

use crate::hash::Hash;

/// The lock file's name, beside the configuration's `nexis.toml`.
pub const LOCK_FILE: &str = "nexis.lock";

/// The format version this code reads and writes.
pub const LOCK_VERSION: i64 = 1;

/// A parsed `nexis.lock`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    /// Locked inputs, by name.
    pub inputs: BTreeMap<String, LockedInput>,
}

/// One input as locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedInput {
    /// The reference as the configuration wrote it; when the configuration now says
    /// something else, the entry no longer applies.
    pub original: String,
    /// What it was pinned to.
    pub source: LockedSource,
    /// The nexis tree hash (blake3) of the fetched tree, which names its store path.
    pub tree_hash: Hash,
}

/// The pinned form of an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockedSource {
    /// A git repository at one commit.
    Git {
        /// The repository URL, without the `git+` prefix.
        url: String,
        /// The branch or tag followed (`refs/heads/main`), when one was named or the
        /// default branch was taken.
        reference: Option<String>,
        /// The commit: 40 hexadecimal digits.
        rev: String,
        /// The commit's committer time, seconds since the epoch.
        last_modified: i64,
        /// Whether submodules were checked out.
        submodules: bool,
    },
    /// An archive (tarball or zip) or a plain file over HTTP(S) or `file://`.
    Url {
        /// The URL.
        url: String,
        /// The downloaded file's hash.
        file_hash: Hash,
        /// Whether it is unpacked (an archive) or kept as one file.
        unpack: bool,
    },
}

impl LockedSource {
    /// The `type` key's value.
    pub fn kind(&self) -> &'static str {
        match self {
            LockedSource::Git { .. } => "git",
            LockedSource::Url { unpack: true, .. } => "archive",
            LockedSource::Url { unpack: false, .. } => "file",
        }
    }

    /// A short description of what changes between two locks: the rev for git, the
    /// hash otherwise.
    pub fn pin(&self) -> String {
        match self {
            LockedSource::Git { rev, .. } => rev.chars().take(12).collect(),
            LockedSource::Url { file_hash, .. } => file_hash.to_string(),
        }
    }
}

/// `nexis.lock` could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", file.display())]
pub struct LockError {
    /// The lock file.
    pub file: PathBuf,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Line and column (from 1) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

/// Reads one table's keys, each once, and reports the first problem with its place.
struct Reader<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Reader<'_> {
    fn error(&self, span: Option<std::ops::Range<usize>>, message: String) -> LockError {
        let (line, column) = line_column(self.text, span.map_or(0, |s| s.start));
        LockError {
            file: self.file.to_owned(),
            line,
            column,
            message,
        }
    }

    fn string(&self, table: &Table, what: &str, key: &str) -> Result<Option<String>, LockError> {
        match table.get(key) {
            None => Ok(None),
            Some(Item::Value(Value::String(s))) => Ok(Some(s.value().clone())),
            Some(item) => Err(self.error(item.span(), format!("{what}: `{key}` must be a string"))),
        }
    }

    fn required(&self, table: &Table, what: &str, key: &str) -> Result<String, LockError> {
        self.string(table, what, key)?
            .ok_or_else(|| self.error(table.span(), format!("{what}: `{key}` is missing")))
    }

    fn hash(&self, table: &Table, what: &str, key: &str) -> Result<Option<Hash>, LockError> {
        let Some(text) = self.string(table, what, key)? else {
            return Ok(None);
        };
        text.parse::<Hash>().map(Some).map_err(|e| {
            self.error(
                table.get(key).and_then(Item::span),
                format!("{what}: `{key}`: {e}"),
            )
        })
    }

    /// Every key of `table` must be one of `known`.
    fn only(&self, table: &Table, what: &str, known: &[&str]) -> Result<(), LockError> {
        for (key, item) in table {
            if !known.contains(&key) {
                return Err(self.error(
                    table
                        .key(key)
                        .and_then(toml_edit::Key::span)
                        .or_else(|| item.span()),
                    format!("{what}: unknown key `{key}` (known: {})", known.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

impl Lock {
    /// Parse the text of a lock file; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Lock, LockError> {
        let r = Reader { file, text };
        let doc: toml_edit::Document<&str> = toml_edit::Document::parse(text)
            .map_err(|e| r.error(e.span(), format!("not valid TOML: {}", e.message())))?;
        let top = doc.as_table();
        r.only(top, "nexis.lock", &["version", "inputs"])?;
        match top.get("version") {
            Some(Item::Value(Value::Integer(v))) if *v.value() == LOCK_VERSION => {}
            Some(item @ Item::Value(Value::Integer(v))) => {
                return Err(r.error(
                    item.span(),
                    format!(
                        "lock file version {} is not supported (this nexis reads version {LOCK_VERSION})",
                        v.value()
                    ),
                ));
            }
            Some(item) => {
                return Err(r.error(item.span(), "`version` must be an integer".into()));
            }
            None => return Err(r.error(None, "`version` is missing".into())),
        }
        let mut lock = Lock::default();
        let Some(inputs) = top.get("inputs") else {
            return Ok(lock);
        };
        let Some(inputs) = inputs.as_table() else {
            return Err(r.error(inputs.span(), "`inputs` must be a table".into()));
        };
        for (name, item) in inputs {
            let what = format!("input `{name}`");
            let Some(t) = item.as_table() else {
                return Err(r.error(item.span(), format!("{what} must be a table")));
            };
            let original = r.required(t, &what, "original")?;
            let kind = r.required(t, &what, "type")?;
            let tree_hash = r.hash(t, &what, "tree-hash")?;
            let source = match kind.as_str() {
                "git" => {
                    r.only(
                        t,
                        &what,
                        &[
                            "original",
                            "type",
                            "url",
                            "ref",
                            "rev",
                            "last-modified",
                            "submodules",
                            "tree-hash",
                        ],
                    )?;
                    let rev = r.required(t, &what, "rev")?;
                    if rev.len() != 40
                        || !rev.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                    {
                        return Err(r.error(
                            t.get("rev").and_then(Item::span),
                            format!("{what}: `rev` must be 40 lower-case hexadecimal digits"),
                        ));
                    }
                    let last_modified = match t.get("last-modified") {
                        Some(Item::Value(Value::Integer(v))) => *v.value(),
                        Some(item) => {
                            return Err(r.error(
                                item.span(),
                                format!("{what}: `last-modified` must be an integer"),
                            ));
                        }
                        None => {
                            return Err(
                                r.error(t.span(), format!("{what}: `last-modified` is missing"))
                            );
                        }
                    };
                    let submodules = match t.get("submodules") {
                        None => false,
                        Some(Item::Value(Value::Boolean(b))) => *b.value(),
                        Some(item) => {
                            return Err(r.error(
                                item.span(),
                                format!("{what}: `submodules` must be true or false"),
                            ));
                        }
                    };
                    LockedSource::Git {
                        url: r.required(t, &what, "url")?,
                        reference: r.string(t, &what, "ref")?,
                        rev,
                        last_modified,
                        submodules,
                    }
                }
                "archive" | "file" => {
                    r.only(
                        t,
                        &what,
                        &["original", "type", "url", "file-hash", "tree-hash"],
                    )?;
                    LockedSource::Url {
                        url: r.required(t, &what, "url")?,
                        file_hash: r.hash(t, &what, "file-hash")?.ok_or_else(|| {
                            r.error(t.span(), format!("{what}: `file-hash` is missing"))
                        })?,
                        unpack: kind == "archive",
                    }
                }
                other => {
                    return Err(r.error(
                        t.get("type").and_then(Item::span),
                        format!("{what}: unknown type `{other}` (known: git, archive, file)"),
                    ));
                }
            };
            let Some(tree_hash) = tree_hash else {
                return Err(r.error(t.span(), format!("{what}: `tree-hash` is missing")));
            };
            if tree_hash.algo != crate::hash::HashAlgo::Blake3 {
                return Err(r.error(
                    t.get("tree-hash").and_then(Item::span),
                    format!("{what}: `tree-hash` must be a blake3 tree hash (`blake3-…`)"),
                ));
            }
            lock.inputs.insert(
                name.to_owned(),
                LockedInput {
                    original,
                    source,
                    tree_hash,
                },
            );
        }
        Ok(lock)
    }

    /// The file's text: deterministic, inputs sorted by name, keys in a fixed order.
    pub fn to_text(&self) -> String {
        let mut doc = DocumentMut::new();
        doc.decor_mut().set_prefix(
            "# nexis.lock: the inputs of nexis.toml as they were fetched.\n\
             # Written by `nexis lock` and `nexis update`; see docs/lock.md.\n",
        );
        doc["version"] = toml_edit::value(LOCK_VERSION);
        let mut inputs = Table::new();
        inputs.set_implicit(true);
        for (name, input) in &self.inputs {
            let mut t = Table::new();
            t["original"] = toml_edit::value(input.original.as_str());
            t["type"] = toml_edit::value(input.source.kind());
            match &input.source {
                LockedSource::Git {
                    url,
                    reference,
                    rev,
                    last_modified,
                    submodules,
                } => {
                    t["url"] = toml_edit::value(url.as_str());
                    if let Some(reference) = reference {
                        t["ref"] = toml_edit::value(reference.as_str());
                    }
                    t["rev"] = toml_edit::value(rev.as_str());
                    t["last-modified"] = toml_edit::value(*last_modified);
                    if *submodules {
                        t["submodules"] = toml_edit::value(true);
                    }
                }
                LockedSource::Url { url, file_hash, .. } => {
                    t["url"] = toml_edit::value(url.as_str());
                    t["file-hash"] = toml_edit::value(file_hash.to_string());
                }
            }
            t["tree-hash"] = toml_edit::value(input.tree_hash.to_string());
            inputs.insert(name, Item::Table(t));
        }
        doc["inputs"] = Item::Table(inputs);
        doc.to_string()
    }

    /// What changed from `old` to `self`, one line per input: `added NAME (PIN)`,
    /// `removed NAME`, `updated NAME: OLD → NEW`.
    pub fn changes_from(&self, old: &Lock) -> Vec<String> {
        let mut out = Vec::new();
        for (name, new) in &self.inputs {
            match old.inputs.get(name) {
                None => out.push(format!("added {name} ({})", new.source.pin())),
                Some(prev) if prev == new => {}
                Some(prev) => {
                    let mut line = format!("updated {name}: ");
                    let _ = write!(line, "{} → {}", prev.source.pin(), new.source.pin());
                    out.push(line);
                }
            }
        }
        for name in old.inputs.keys() {
            if !self.inputs.contains_key(name) {
                out.push(format!("removed {name}"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lock {
        let blake = |b: u8| -> Hash { format!("blake3:{}", hex(&[b; 32])).parse().unwrap() };
        let mut lock = Lock::default();
        lock.inputs.insert(
            "core".into(),
            LockedInput {
                original: "git+https://example.org/pkgs?ref=main".into(),
                source: LockedSource::Git {
                    url: "https://example.org/pkgs".into(),
                    reference: Some("refs/heads/main".into()),
                    rev: "0123456789abcdef0123456789abcdef01234567".into(),
                    last_modified: 1_700_000_000,
                    submodules: false,
                },
                tree_hash: blake(1),
            },
        );
        lock.inputs.insert(
            "extra".into(),
            LockedInput {
                original: "https://example.org/extra.tar.gz".into(),
                source: LockedSource::Url {
                    url: "https://example.org/extra.tar.gz".into(),
                    file_hash: format!("sha256:{}", hex(&[2; 32])).parse().unwrap(),
                    unpack: true,
                },
                tree_hash: blake(3),
            },
        );
        lock
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    #[test]
    fn text_round_trips_and_is_stable() {
        let lock = sample();
        let text = lock.to_text();
        let parsed = Lock::parse(&text, Path::new("nexis.lock")).unwrap();
        assert_eq!(parsed, lock);
        assert_eq!(parsed.to_text(), text, "printing is deterministic");
        assert!(text.starts_with("# nexis.lock"), "{text}");
        assert!(text.contains("[inputs.core]\noriginal = "), "{text}");
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let text = sample().to_text();
        let bad = text.replace("type = \"git\"", "type = \"svn\"");
        let e = Lock::parse(&bad, Path::new("/c/nexis.lock")).unwrap_err();
        let line = bad.lines().position(|l| l.contains("svn")).unwrap() + 1;
        assert_eq!(e.line, line);
        assert!(
            e.to_string().starts_with(&format!("/c/nexis.lock:{line}:")),
            "{e}"
        );
        assert!(e.message.contains("unknown type `svn`"), "{e}");

        let bad = text.replace("last-modified", "last-modifed");
        let e = Lock::parse(&bad, Path::new("nexis.lock")).unwrap_err();
        assert!(e.message.contains("unknown key `last-modifed`"), "{e}");

        let sha = format!("tree-hash = \"sha256:{}\"", hex(&[9; 32]));
        let bad = text.replacen(
            &text
                .lines()
                .find(|l| l.starts_with("tree-hash"))
                .unwrap()
                .to_owned(),
            &sha,
            1,
        );
        let e = Lock::parse(&bad, Path::new("nexis.lock")).unwrap_err();
        assert!(e.message.contains("must be a blake3 tree hash"), "{e}");

        let bad = text.replace("version = 1", "version = 2");
        let e = Lock::parse(&bad, Path::new("nexis.lock")).unwrap_err();
        assert!(e.message.contains("version 2 is not supported"), "{e}");

        let bad = text.replace("0123456789abcdef0123456789abcdef01234567", "main");
        let e = Lock::parse(&bad, Path::new("nexis.lock")).unwrap_err();
        assert!(e.message.contains("`rev` must be 40"), "{e}");

        let e =
            Lock::parse("version = 1\n[inputs.x]\ntype = \"git\"\n", Path::new("l")).unwrap_err();
        assert!(e.message.contains("`original` is missing"), "{e}");
        let e = Lock::parse("version = [", Path::new("l")).unwrap_err();
        assert!(e.message.contains("not valid TOML"), "{e}");
    }

    #[test]
    fn changes_are_listed_per_input() {
        let old = sample();
        let mut new = sample();
        new.inputs.remove("extra");
        if let Some(LockedInput {
            source: LockedSource::Git { rev, .. },
            ..
        }) = new.inputs.get_mut("core")
        {
            *rev = "fedcba9876543210fedcba9876543210fedcba98".into();
        }
        assert_eq!(
            new.changes_from(&old),
            ["updated core: 0123456789ab → fedcba987654", "removed extra"]
        );
        assert!(old.changes_from(&old).is_empty());
    }
}
