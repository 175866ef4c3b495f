//! Content hashes that pin inputs: `sha256` or `blake3`, 32 bytes each.
//!
//! Written in SRI form (`sha256-<base64>`, standard alphabet with padding), which is how
//! [`Hash`] prints, or as `sha256:<64 hex digits>`, which it also reads. See
//! `docs/inputs.md`, "Hashes".

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A hash algorithm nexis pins inputs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlgo {
    /// SHA-256, what upstream projects publish next to their tarballs.
    Sha256,
    /// BLAKE3, nexis's own (the store's tree hash).
    Blake3,
}

impl HashAlgo {
    /// Every algorithm, in the order error messages list them.
    pub const ALL: [HashAlgo; 2] = [HashAlgo::Sha256, HashAlgo::Blake3];

    /// The name in both written forms: `sha256`, `blake3`.
    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Blake3 => "blake3",
        }
    }

    fn from_name(name: &str) -> Option<HashAlgo> {
        HashAlgo::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for HashAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A digest and the algorithm that made it.
///
/// `Display` gives the SRI form; `FromStr` reads it and the hexadecimal form.
///
/// ```
/// use nexis_fetch::{Hash, HashAlgo};
///
/// let hex = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// let hash: Hash = hex.parse()?;
/// assert_eq!(hash.algo, HashAlgo::Sha256);
/// assert_eq!(hash.to_string(), "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
/// assert_eq!(hash.to_string().parse::<Hash>()?, hash);
/// # Ok::<(), nexis_fetch::HashError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash {
    /// Which algorithm.
    pub algo: HashAlgo,
    /// The 32-byte digest.
    pub digest: [u8; 32],
}

impl Hash {
    /// The digest as 64 lower-case hexadecimal digits.
    pub fn to_hex(&self) -> String {
        use fmt::Write as _;
        let mut out = String::with_capacity(64);
        for b in self.digest {
            write!(out, "{b:02x}").expect("writing to a String cannot fail");
        }
        out
    }

    /// The digest in standard base64 with padding (44 characters).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.digest)
    }
}

impl fmt::Display for Hash {
    /// SRI form: `sha256-<base64>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.algo, self.to_base64())
    }
}

/// A hash that could not be read; the message quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// Neither `ALGO-BASE64` nor `ALGO:HEX` with a known algorithm.
    #[error(
        "`{found}` is not a hash: expected `sha256-<base64>`, `blake3-<base64>`, \
         `sha256:<64 hex digits>` or `blake3:<64 hex digits>`"
    )]
    Syntax {
        /// The text.
        found: String,
    },
    /// The SRI form's digest is not standard, padded base64.
    #[error("`{found}`: the digest is not standard base64 with padding")]
    Base64 {
        /// The text.
        found: String,
    },
    /// The digest decodes to the wrong number of bytes.
    #[error("`{found}`: a {algo} digest is 32 bytes, found {len}")]
    Length {
        /// The text.
        found: String,
        /// The algorithm it names.
        algo: HashAlgo,
        /// How many bytes the digest has.
        len: usize,
    },
    /// The hexadecimal form's digest is not 64 hexadecimal digits.
    #[error("`{found}`: a {algo} digest in hexadecimal is 64 hexadecimal digits")]
    Hex {
        /// The text.
        found: String,
        /// The algorithm it names.
        algo: HashAlgo,
    },
}

impl FromStr for Hash {
    type Err = HashError;

    fn from_str(s: &str) -> Result<Hash, HashError> {
        let found = || s.to_owned();
        // The algorithm names hold neither `-` nor `:`, so the first of either ends one.
        let split = s
            .find(['-', ':'])
            .ok_or_else(|| HashError::Syntax { found: found() })?;
        let (name, sep, digest) = (&s[..split], &s[split..=split], &s[split + 1..]);
        let algo = HashAlgo::from_name(name).ok_or_else(|| HashError::Syntax { found: found() })?;
        let mut out = [0u8; 32];
        if sep == "-" {
            let bytes = STANDARD
                .decode(digest)
                .map_err(|_| HashError::Base64 { found: found() })?;
            if bytes.len() != 32 {
                return Err(HashError::Length {
                    found: found(),
                    algo,
                    len: bytes.len(),
                });
            }
            out.copy_from_slice(&bytes);
        } else {
            let hex = digest.as_bytes();
            if hex.len() != 64 || !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(HashError::Hex {
                    found: found(),
                    algo,
                });
            }
            for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
                *byte = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
            }
        }
        Ok(Hash { algo, digest: out })
    }
}

/// The value of an ASCII hexadecimal digit (either case).
pub(crate) fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => unreachable!("checked to be a hexadecimal digit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn both_forms_read_the_same_digest() {
        let hex: Hash = format!("sha256:{EMPTY_SHA256}").parse().unwrap();
        let sri: Hash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
            .parse()
            .unwrap();
        assert_eq!(hex, sri);
        assert_eq!(hex.to_hex(), EMPTY_SHA256);
        let upper: Hash = format!("sha256:{}", EMPTY_SHA256.to_uppercase())
            .parse()
            .unwrap();
        assert_eq!(upper, hex);
        let b3: Hash = format!("blake3:{EMPTY_SHA256}").parse().unwrap();
        assert_eq!(b3.algo, HashAlgo::Blake3);
        assert_eq!(b3.to_string().parse::<Hash>().unwrap(), b3);
        assert!(b3.to_string().starts_with("blake3-"));
    }

    #[test]
    fn bad_hashes_are_refused_with_the_text() {
        let cases = [
            ("", "`` is not a hash"),
            ("md5-AAAA", "`md5-AAAA` is not a hash"),
            ("sha256", "`sha256` is not a hash"),
            (
                "SHA256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
                "is not a hash",
            ),
            (
                "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
                "not standard base64",
            ),
            (
                "sha256-47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=",
                "not standard base64",
            ),
            ("blake3-AAAA", "a blake3 digest is 32 bytes, found 3"),
            (
                "sha256:abc",
                "a sha256 digest in hexadecimal is 64 hexadecimal digits",
            ),
            (
                &format!("sha256:{}", &EMPTY_SHA256[..63]),
                "64 hexadecimal digits",
            ),
            (
                &format!("sha256:{}g", &EMPTY_SHA256[..63]),
                "64 hexadecimal digits",
            ),
        ];
        for (text, want) in cases {
            let err = text.parse::<Hash>().unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
            assert!(err.contains(&format!("`{text}`")), "{text}: {err}");
        }
    }
}
