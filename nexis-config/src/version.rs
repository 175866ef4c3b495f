//! Package versions and version requirements.
//!
//! Versions are compared the way distributions compare them: split into runs of digits
//! and runs of other characters; digit runs compare numerically, other runs bytewise, and
//! a version that is a prefix of another is older (`1.2 < 1.2.1`, `9.6 < 9.6p1`), except
//! that `~` marks a pre-release, older than the version it precedes (`2.0~rc1 < 2.0`). A requirement is a
//! comma-separated list of comparisons that must all hold: `>=1.2, <2`, `^3.1`, `~1.4.2`,
//! `=2.12.1`, `*`. A bare version (`2.12.1`) means exactly that version.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A package version such as `2.12.1` or `9.6p1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(String);

/// Why a version or requirement string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// Empty, or does not start with a digit.
    #[error("`{0}` is not a version: a version starts with a digit, like `2.12.1`")]
    NotAVersion(String),
    /// A character outside `0-9 A-Z a-z . + _ ~ -`.
    #[error("`{0}` is not a version: only letters, digits and `.+_~-` may appear")]
    BadChar(String),
    /// A requirement part that is not `OP VERSION`.
    #[error(
        "`{0}` is not a version requirement; write e.g. `>=1.2, <2`, `^3.1`, `~1.4` or `=2.12.1`"
    )]
    BadRequirement(String),
}

impl Version {
    /// Parse and validate a version.
    pub fn parse(s: &str) -> Result<Version, VersionError> {
        if !s.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(VersionError::NotAVersion(s.into()));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+_~-".contains(c))
        {
            return Err(VersionError::BadChar(s.into()));
        }
        Ok(Version(s.into()))
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Split into digit and non-digit runs, skipping separators.
    fn parts(&self) -> impl Iterator<Item = Part<'_>> {
        let s = self.0.as_str();
        let mut i = 0;
        std::iter::from_fn(move || {
            let bytes = s.as_bytes();
            while i < bytes.len() && matches!(bytes[i], b'.' | b'-' | b'_' | b'+') {
                i += 1;
            }
            if i >= bytes.len() {
                return None;
            }
            if bytes[i] == b'~' {
                i += 1;
                return Some(Part::Tilde);
            }
            let start = i;
            let digit = bytes[i].is_ascii_digit();
            while i < bytes.len()
                && bytes[i].is_ascii_alphanumeric()
                && bytes[i].is_ascii_digit() == digit
            {
                i += 1;
            }
            let run = &s[start..i];
            Some(if digit {
                Part::Num(run.trim_start_matches('0'))
            } else {
                Part::Alpha(run)
            })
        })
    }

    /// The first `n` numeric-or-alpha components.
    fn prefix(&self, n: usize) -> Vec<Part<'_>> {
        self.parts().take(n).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part<'a> {
    /// `~`: sorts before everything, even the end (`2.0~rc1 < 2.0`).
    Tilde,
    /// Digits with leading zeros removed, compared by length then bytes.
    Num(&'a str),
    Alpha(&'a str),
}

impl Part<'_> {
    /// Kinds order `~` < letters < numbers: `1.0~rc < 1.0a < 1.0.1`.
    fn rank(self) -> u8 {
        match self {
            Part::Tilde => 0,
            Part::Alpha(_) => 1,
            Part::Num(_) => 2,
        }
    }
}

impl Ord for Part<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Part::Num(a), Part::Num(b)) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
            (Part::Alpha(a), Part::Alpha(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Part<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let (mut a, mut b) = (self.parts(), other.parts());
        loop {
            let ord = match (a.next(), b.next()) {
                (None, None) => return self.0.cmp(&other.0),
                // The version that ends first is older, unless the other goes on with `~`.
                (None, Some(p)) => {
                    return if p == Part::Tilde {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    };
                }
                (Some(p), None) => {
                    return if p == Part::Tilde {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    };
                }
                (Some(x), Some(y)) => x.cmp(&y),
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
    Caret,
    Tilde,
}

/// A version requirement: all of its comparisons must hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionReq {
    text: String,
    parts: Vec<(Op, Version)>,
}

impl VersionReq {
    /// Whether `v` satisfies every comparison.
    pub fn matches(&self, v: &Version) -> bool {
        self.parts.iter().all(|(op, want)| match op {
            Op::Eq => v == want || v.cmp(want) == Ordering::Equal,
            Op::Gt => v > want,
            Op::Ge => v >= want,
            Op::Lt => v < want,
            Op::Le => v <= want,
            Op::Caret => {
                // Same leading component up to and including the first non-zero one.
                let n = want
                    .parts()
                    .position(|p| p != Part::Num(""))
                    .map_or(1, |i| i + 1);
                v >= want && v.prefix(n) == want.prefix(n)
            }
            Op::Tilde => {
                let n = want.parts().count().clamp(1, 2);
                v >= want && v.prefix(n) == want.prefix(n)
            }
        })
    }

    /// The requirement as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for VersionReq {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<VersionReq, VersionError> {
        let text = s.trim();
        let mut parts = Vec::new();
        if text != "*" {
            for raw in text.split(',') {
                let raw = raw.trim();
                let (op, rest) = [
                    (">=", Op::Ge),
                    ("<=", Op::Le),
                    (">", Op::Gt),
                    ("<", Op::Lt),
                    ("=", Op::Eq),
                    ("^", Op::Caret),
                    ("~", Op::Tilde),
                ]
                .iter()
                .find_map(|(p, op)| raw.strip_prefix(p).map(|r| (*op, r)))
                .unwrap_or((Op::Eq, raw));
                let version = Version::parse(rest.trim())
                    .map_err(|_| VersionError::BadRequirement(raw.into()))?;
                parts.push((op, version));
            }
        }
        Ok(VersionReq {
            text: text.into(),
            parts,
        })
    }
}

impl fmt::Display for VersionReq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn req(s: &str) -> VersionReq {
        s.parse().unwrap()
    }

    #[test]
    fn ordering() {
        assert!(v("1.2") < v("1.2.1"));
        assert!(v("1.10") > v("1.9"));
        assert!(v("9.6p1") > v("9.6"));
        assert!(v("2.0") > v("2.0~rc1"));
        assert!(v("2.0~rc2") > v("2.0~rc1"));
        assert!(v("1.02") > v("1.1"));
        assert_eq!(v("1.0").cmp(&v("1.0")), Ordering::Equal);
    }

    #[test]
    fn requirements() {
        assert!(req(">=1.2, <2").matches(&v("1.9.9")));
        assert!(!req(">=1.2, <2").matches(&v("2.0")));
        assert!(req("^3.1").matches(&v("3.9")));
        assert!(!req("^3.1").matches(&v("4.0")));
        assert!(req("^0.3").matches(&v("0.3.5")));
        assert!(!req("^0.3").matches(&v("0.4")));
        assert!(req("~1.4.2").matches(&v("1.4.9")));
        assert!(!req("~1.4.2").matches(&v("1.5")));
        assert!(req("2.12.1").matches(&v("2.12.1")));
        assert!(!req("2.12.1").matches(&v("2.12")));
        assert!(req("*").matches(&v("0.1")));
        assert!("=>1".parse::<VersionReq>().is_err());
        assert!(Version::parse("abc").is_err());
        assert!(Version::parse("1 2").is_err());
    }
}
