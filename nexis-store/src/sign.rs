//! Ed25519 signatures over store paths.
//!
//! A signature vouches for a path's content and references. It is made over the path's
//! *fingerprint*:
//!
//! ```text
//! 1;/nexis/store/<hash>-<name>;blake3:<tree hash, 64 hex>;<archive size>;<refs>
//! ```
//!
//! where `<refs>` is the full store paths of its references, sorted, joined by `,`. Keys
//! and signatures are written `NAME:BASE64`: a secret key holds the 32-byte seed followed
//! by the 32-byte public key, a public key its 32 bytes, a signature its 64 bytes. `NAME`
//! (e.g. `cache.example.org-1`) tells which key made a signature.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::db::PathInfo;

/// A key or signature could not be read or made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// Not `NAME:BASE64`, or the base64 or its length is wrong.
    #[error("`{text}` is not a valid {what} (expected NAME:BASE64 of {bytes} bytes)")]
    Malformed {
        /// The text, shortened.
        text: String,
        /// What it should have been.
        what: &'static str,
        /// The expected decoded length.
        bytes: usize,
    },
    /// The key name is empty or has characters outside `A-Z a-z 0-9 . _ -`.
    #[error("`{0}` is not a key name (letters, digits, `.`, `_`, `-`)")]
    BadName(String),
    /// The system's random source failed.
    #[error("cannot get random bytes for a new key: {0}")]
    Random(String),
}

/// A secret key with its name.
#[derive(Debug, Clone)]
pub struct SecretKey {
    name: String,
    key: SigningKey,
}

/// A public key with its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    name: String,
    key: VerifyingKey,
}

fn check_key_name(name: &str) -> Result<(), SignError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SignError::BadName(name.into()))
    }
}

fn split<const N: usize>(text: &str, what: &'static str) -> Result<(String, [u8; N]), SignError> {
    let bad = || SignError::Malformed {
        text: text.chars().take(40).collect(),
        what,
        bytes: N,
    };
    let (name, b64) = text.trim().split_once(':').ok_or_else(bad)?;
    check_key_name(name)?;
    let bytes = STANDARD.decode(b64).map_err(|_| bad())?;
    let bytes: [u8; N] = bytes.try_into().map_err(|_| bad())?;
    Ok((name.to_owned(), bytes))
}

impl SecretKey {
    /// A new random key named `name`.
    pub fn generate(name: &str) -> Result<SecretKey, SignError> {
        check_key_name(name)?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| SignError::Random(e.to_string()))?;
        Ok(SecretKey {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Parse `NAME:BASE64(seed ‖ public)`.
    pub fn parse(text: &str) -> Result<SecretKey, SignError> {
        let (name, bytes) = split::<64>(text, "secret key")?;
        let seed: [u8; 32] = bytes[..32].try_into().expect("64 bytes split in halves");
        let key = SigningKey::from_bytes(&seed);
        if key.verifying_key().to_bytes()[..] != bytes[32..] {
            return Err(SignError::Malformed {
                text: name,
                what: "secret key (its public half does not match)",
                bytes: 64,
            });
        }
        Ok(SecretKey { name, key })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// Sign a path: `NAME:BASE64(signature)`.
    pub fn sign(&self, info: &PathInfo) -> String {
        let sig = self.key.sign(fingerprint(info).as_bytes());
        format!("{}:{}", self.name, STANDARD.encode(sig.to_bytes()))
    }
}

impl std::fmt::Display for SecretKey {
    /// `NAME:BASE64(seed ‖ public)`: the form `parse` reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&self.key.to_bytes());
        bytes[32..].copy_from_slice(&self.key.verifying_key().to_bytes());
        write!(f, "{}:{}", self.name, STANDARD.encode(bytes))
    }
}

impl PublicKey {
    /// Parse `NAME:BASE64(public)`.
    pub fn parse(text: &str) -> Result<PublicKey, SignError> {
        let (name, bytes) = split::<32>(text, "public key")?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| SignError::Malformed {
            text: name.clone(),
            what: "public key (not a curve point)",
            bytes: 32,
        })?;
        Ok(PublicKey { name, key })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `signature` (`NAME:BASE64`) is this key's valid signature over `info`.
    pub fn verifies(&self, info: &PathInfo, signature: &str) -> bool {
        let Some((name, b64)) = signature.split_once(':') else {
            return false;
        };
        if name != self.name {
            return false;
        }
        let Ok(bytes) = STANDARD.decode(b64) else {
            return false;
        };
        let Ok(bytes) = <[u8; 64]>::try_from(bytes) else {
            return false;
        };
        self.key
            .verify_strict(fingerprint(info).as_bytes(), &Signature::from_bytes(&bytes))
            .is_ok()
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, STANDARD.encode(self.key.to_bytes()))
    }
}

/// The signed text of a path (see the module docs).
pub fn fingerprint(info: &PathInfo) -> String {
    let refs: Vec<String> = info.references.iter().map(ToString::to_string).collect();
    format!(
        "1;{};blake3:{};{};{}",
        info.path,
        blake3::Hash::from_bytes(info.tree_hash).to_hex(),
        info.archive_size,
        refs.join(",")
    )
}

/// Whether `text` has the shape of a signature: `NAME:BASE64` of 64 bytes, with a valid
/// key name. Says nothing about whether it verifies.
pub(crate) fn is_signature(text: &str) -> bool {
    let Some((name, b64)) = text.split_once(':') else {
        return false;
    };
    check_key_name(name).is_ok() && STANDARD.decode(b64).is_ok_and(|b| b.len() == 64)
}

/// Whether any of `keys` verifies any of the path's signatures; the first key that does.
pub fn trusted_by<'a>(info: &PathInfo, keys: &'a [PublicKey]) -> Option<&'a PublicKey> {
    keys.iter()
        .find(|k| info.signatures.iter().any(|s| k.verifies(info, s)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::path::{ContentKind, StorePath};

    fn info() -> PathInfo {
        let p =
            StorePath::new(&ContentKind::Source { references: &[] }, &[1; 32], "hello").unwrap();
        let r = StorePath::new(&ContentKind::Source { references: &[] }, &[2; 32], "lib").unwrap();
        PathInfo {
            path: p,
            tree_hash: [3; 32],
            archive_size: 1234,
            registered: 0,
            deriver: None,
            content_address: None,
            references: BTreeSet::from([r]),
            signatures: BTreeSet::new(),
        }
    }

    #[test]
    fn sign_verify_and_round_trip_keys() {
        let sk = SecretKey::generate("cache.example.org-1").unwrap();
        let pk = sk.public();
        let mut i = info();
        let sig = sk.sign(&i);
        assert!(sig.starts_with("cache.example.org-1:"));
        assert!(pk.verifies(&i, &sig));
        let sk2 = SecretKey::parse(&sk.to_string()).unwrap();
        assert_eq!(sk2.public(), pk);
        assert_eq!(PublicKey::parse(&pk.to_string()).unwrap(), pk);
        i.signatures.insert(sig.clone());
        assert_eq!(trusted_by(&i, std::slice::from_ref(&pk)), Some(&pk));

        // Any change to what is signed breaks the signature.
        let mut changed = i.clone();
        changed.archive_size += 1;
        assert!(!pk.verifies(&changed, &sig));
        changed = i.clone();
        changed.references.clear();
        assert!(!pk.verifies(&changed, &sig));
        // Another key with the same name does not verify it.
        let other = SecretKey::generate("cache.example.org-1").unwrap().public();
        assert!(!other.verifies(&i, &sig));
        assert_eq!(trusted_by(&i, &[other]), None);
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(PublicKey::parse("nocolon").is_err());
        assert!(PublicKey::parse("name:!!!").is_err());
        assert!(PublicKey::parse("name:AAAA").is_err());
        assert!(PublicKey::parse("bad name:AAAA").is_err());
        // A secret key whose public half belongs to another key.
        let (a, b) = (
            SecretKey::generate("k").unwrap(),
            SecretKey::generate("k").unwrap(),
        );
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&a.key.to_bytes());
        bytes[32..].copy_from_slice(&b.key.verifying_key().to_bytes());
        let mixed = format!("k:{}", STANDARD.encode(bytes));
        assert!(SecretKey::parse(&mixed).is_err());
        assert!(SecretKey::parse(&a.to_string()).is_ok());
    }

    #[test]
    fn fingerprint_format() {
        let i = info();
        let fp = fingerprint(&i);
        assert!(fp.starts_with(&format!("1;{};blake3:0303", i.path)));
        assert!(fp.ends_with(&format!(";1234;{}", i.references.first().unwrap())));
    }
}
