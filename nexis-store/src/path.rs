//! Store paths: `/nexis/store/<hash>-<name>`.
//!
//! The hash part is 32 base-32 characters: the first 160 bits of the blake3 digest of a
//! *fingerprint* that says what the path holds and where:
//!
//! ```text
//! nexis-store-path-v1:<kind>:<digest>:<store dir>:<name>
//! ```
//!
//! - `kind` is `source` (a content-addressed tree; `source` followed by `:<ref>` for each
//!   reference, sorted), `text` (a content-addressed file written by nexis, with its
//!   references the same way) or `output:<output name>` (a build output, addressed by its
//!   derivation);
//! - `digest` is `blake3:` and 64 lower-case hex digits: the archive hash for `source`
//!   and `text`, the derivation hash for `output`;
//! - `store dir` is the logical store directory (`/nexis/store`);
//! - `name` is the path's name.
//!
//! `docs/store.md` gives test vectors.

use std::fmt;
use std::str::FromStr;

use crate::base32;

/// The logical store directory. The physical one is `ROOT/nexis/store`.
pub const STORE_DIR: &str = "/nexis/store";

/// Bytes in a store path's hash part.
pub const HASH_BYTES: usize = 20;

/// Characters in a store path's hash part.
pub const HASH_CHARS: usize = base32::encoded_len(HASH_BYTES);

/// Longest allowed name (keeps whole paths well under `NAME_MAX` with a prefix).
pub const MAX_NAME_LEN: usize = 211;

/// A valid store path, in the logical store directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorePath {
    hash: [u8; HASH_BYTES],
    name: String,
}

/// Why a string is not a store path, or a name not a valid store path name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// It does not start with `/nexis/store/`.
    #[error("`{0}` is not in the store ({STORE_DIR})")]
    NotInStore(String),
    /// The hash part is malformed.
    #[error("`{0}` does not start with a {HASH_CHARS}-character base-32 hash and `-`")]
    BadHash(String),
    /// The name is empty, too long, starts with `.` or has a character outside
    /// `A-Z a-z 0-9 + - . _ ? =`.
    #[error(
        "`{0}` is not a valid store path name (letters, digits and `+-._?=`, not starting with `.`, at most {MAX_NAME_LEN} characters)"
    )]
    BadName(String),
}

/// Check a store path name.
pub fn check_name(name: &str) -> Result<(), PathError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._?=".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(PathError::BadName(name.into()))
    }
}

/// What a store path holds, for its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentKind<'a> {
    /// A tree added by content (`add`), with the store paths it refers to.
    Source {
        /// Store paths the content refers to.
        references: &'a [StorePath],
    },
    /// A file nexis writes (derivations, generated files), with its references.
    Text {
        /// Store paths the content refers to.
        references: &'a [StorePath],
    },
    /// A build output, addressed by its derivation's hash.
    Output {
        /// The output's name (`out`, `lib`, …).
        output: &'a str,
    },
}

impl StorePath {
    /// The path for `name` whose content (or derivation) has `digest`.
    pub fn new(
        kind: &ContentKind<'_>,
        digest: &[u8; 32],
        name: &str,
    ) -> Result<StorePath, PathError> {
        check_name(name)?;
        let fp = fingerprint(kind, digest, name);
        let full = blake3::hash(fp.as_bytes());
        let mut hash = [0u8; HASH_BYTES];
        hash.copy_from_slice(&full.as_bytes()[..HASH_BYTES]);
        Ok(StorePath {
            hash,
            name: name.to_owned(),
        })
    }

    /// Parse `/nexis/store/<hash>-<name>` (no trailing components).
    pub fn parse(s: &str) -> Result<StorePath, PathError> {
        let base = s
            .strip_prefix(STORE_DIR)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| PathError::NotInStore(s.into()))?;
        StorePath::from_base_name(base)
    }

    /// Parse `<hash>-<name>`, the path's last component.
    pub fn from_base_name(base: &str) -> Result<StorePath, PathError> {
        let bad = || PathError::BadHash(base.into());
        let hash_part = base.get(..HASH_CHARS).ok_or_else(bad)?;
        let rest = base.get(HASH_CHARS..).ok_or_else(bad)?;
        let name = rest.strip_prefix('-').ok_or_else(bad)?;
        let hash = base32::decode::<HASH_BYTES>(hash_part).ok_or_else(bad)?;
        check_name(name)?;
        Ok(StorePath {
            hash,
            name: name.into(),
        })
    }

    /// The 32-character hash part.
    pub fn hash_part(&self) -> String {
        base32::encode(&self.hash)
    }

    /// The raw 160-bit hash.
    pub fn hash_bytes(&self) -> &[u8; HASH_BYTES] {
        &self.hash
    }

    /// The name after the hash.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<hash>-<name>`: the directory entry in the store.
    pub fn base_name(&self) -> String {
        format!("{}-{}", self.hash_part(), self.name)
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{STORE_DIR}/{}-{}", self.hash_part(), self.name)
    }
}

impl FromStr for StorePath {
    type Err = PathError;
    fn from_str(s: &str) -> Result<StorePath, PathError> {
        StorePath::parse(s)
    }
}

/// A store path serialises as its full text, `/nexis/store/<hash>-<name>`.
impl serde::Serialize for StorePath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for StorePath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StorePath, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        StorePath::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The fingerprint string hashed into a store path (see the module docs).
pub fn fingerprint(kind: &ContentKind<'_>, digest: &[u8; 32], name: &str) -> String {
    let mut kind_text = String::new();
    let refs = match kind {
        ContentKind::Source { references } => {
            kind_text.push_str("source");
            Some(references)
        }
        ContentKind::Text { references } => {
            kind_text.push_str("text");
            Some(references)
        }
        ContentKind::Output { output } => {
            kind_text.push_str("output:");
            kind_text.push_str(output);
            None
        }
    };
    if let Some(refs) = refs {
        let mut sorted: Vec<String> = refs.iter().map(ToString::to_string).collect();
        sorted.sort();
        for r in sorted {
            kind_text.push(':');
            kind_text.push_str(&r);
        }
    }
    let hex = blake3::Hash::from_bytes(*digest).to_hex();
    format!("nexis-store-path-v1:{kind_text}:blake3:{hex}:{STORE_DIR}:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let p = StorePath::new(
            &ContentKind::Source { references: &[] },
            &[0; 32],
            "hello-2.12.1",
        )
        .unwrap();
        let s = p.to_string();
        assert!(s.starts_with("/nexis/store/"));
        assert!(s.ends_with("-hello-2.12.1"));
        assert_eq!(
            s.len(),
            "/nexis/store/".len() + 32 + 1 + "hello-2.12.1".len()
        );
        assert_eq!(StorePath::parse(&s).unwrap(), p);
        assert!(StorePath::parse("/nix/store/x").is_err());
        assert!(StorePath::parse(&s.replace("-hello", "_hello")).is_err());
        assert!(StorePath::parse(&format!("{}-.hidden", &s[..45])).is_err());
    }

    #[test]
    fn fingerprints_separate_kinds_and_references() {
        let digest = [7u8; 32];
        let no_refs: &[StorePath] = &[];
        let source = StorePath::new(
            &ContentKind::Source {
                references: no_refs,
            },
            &digest,
            "x",
        );
        let source = source.unwrap();
        let text = StorePath::new(
            &ContentKind::Text {
                references: no_refs,
            },
            &digest,
            "x",
        );
        let refs = std::slice::from_ref(&source);
        let with_ref = StorePath::new(&ContentKind::Source { references: refs }, &digest, "x");
        let output = StorePath::new(&ContentKind::Output { output: "out" }, &digest, "x");
        assert_ne!(source, text.unwrap());
        assert_ne!(source, with_ref.unwrap());
        assert_ne!(source, output.unwrap());
        assert_eq!(
            fingerprint(&ContentKind::Output { output: "out" }, &[0; 32], "hello"),
            format!(
                "nexis-store-path-v1:output:out:blake3:{}:/nexis/store:hello",
                "0".repeat(64)
            )
        );
    }

    #[test]
    fn names() {
        assert!(check_name("hello-2.12.1").is_ok());
        assert!(check_name("a+b_c?d=e").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(".x").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name(&"x".repeat(212)).is_err());
    }
}

#[cfg(test)]
mod vectors {
    //! The test vectors of `docs/store.md`.
    use super::*;

    #[test]
    fn documented_vectors() {
        let digest: [u8; 32] = *blake3::hash(b"hello").as_bytes();
        let source = StorePath::new(
            &ContentKind::Source { references: &[] },
            &digest,
            "hello-1.0",
        )
        .unwrap();
        let output =
            StorePath::new(&ContentKind::Output { output: "out" }, &digest, "hello-1.0").unwrap();
        let text = StorePath::new(
            &ContentKind::Text {
                references: std::slice::from_ref(&source),
            },
            &digest,
            "hello.drv",
        )
        .unwrap();
        assert_eq!(
            blake3::Hash::from_bytes(digest).to_hex().as_str(),
            "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
        );
        assert_eq!(
            source.to_string(),
            "/nexis/store/m63v9sx2idq9az7m9s3a64wmlqssf0ld-hello-1.0"
        );
        assert_eq!(
            output.to_string(),
            "/nexis/store/mi3j4snwqa4r4n0cc1baygzhqvnj83zz-hello-1.0"
        );
        assert_eq!(
            text.to_string(),
            "/nexis/store/8ra2wgaxp0p40m04ng004b03fzj7yrjm-hello.drv"
        );
        assert_eq!(
            fingerprint(
                &ContentKind::Text {
                    references: std::slice::from_ref(&source)
                },
                &digest,
                "hello.drv"
            ),
            "nexis-store-path-v1:text:/nexis/store/m63v9sx2idq9az7m9s3a64wmlqssf0ld-hello-1.0:\
             blake3:ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f:/nexis/store:hello.drv"
        );
    }
}
