//! The activation manifest: what a generation puts on the machine, read by activation,
//! `nexis diff` and the drift check (`docs/activation.md`).

use std::collections::BTreeMap;
use std::path::Path;

use nexis_store::StorePath;
use serde::{Deserialize, Serialize};

/// The manifest's file name at the top of a toplevel.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The format version this nexis writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// What one generation is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    /// The host name.
    pub hostname: String,
    /// The packages of the system profile (`sw/`), by id.
    pub packages: BTreeMap<String, ManifestPackage>,
    /// Every file this generation puts under `/etc`, by path relative to `/etc`.
    pub etc: BTreeMap<String, EtcEntry>,
}

/// A package of the system profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ManifestPackage {
    /// Its version.
    pub version: String,
    /// Its output path.
    pub path: StorePath,
}

/// A file under `/etc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EtcEntry {
    /// What it is.
    pub kind: EtcKind,
    /// blake3 (hex) of the content, or of the link target.
    pub hash: String,
    /// Permission bits, octal (`0644`).
    pub mode: String,
    /// Owner (user name).
    pub owner: String,
    /// Group name.
    pub group: String,
}

/// How a file under `/etc` is put in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EtcKind {
    /// A link `/etc/P -> /etc/static/P` into the generation's read-only `etc/`.
    Link,
    /// A regular file written in place (its owner, group or mode differ from the
    /// store's, or programs rewrite it, like `passwd`).
    Real,
    /// A symbolic link whose target the configuration gives (`localtime`).
    Symlink,
}

impl Manifest {
    /// Read the manifest of the toplevel at `dir` (physical path).
    pub fn read(dir: &Path) -> std::io::Result<Manifest> {
        let file = dir.join(MANIFEST_FILE);
        let text = std::fs::read(&file)?;
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", file.display()),
            )
        })?;
        if manifest.version != MANIFEST_VERSION {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: manifest version {} (this nexis reads {MANIFEST_VERSION})",
                    file.display(),
                    manifest.version
                ),
            ));
        }
        Ok(manifest)
    }

    /// The manifest as pretty JSON with a final newline (sorted: deterministic).
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        text.push('\n');
        text
    }
}
