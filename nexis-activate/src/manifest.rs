//! The activation manifest: what a generation puts on the machine, read by activation,
//! `nexis diff` and the drift check (`docs/activation.md`).

use std::collections::BTreeMap;
use std::path::Path;

use nexis_config::{BootLoader, Init};
use nexis_store::StorePath;
use serde::{Deserialize, Serialize};

use crate::services::ServiceEntry;
use crate::users::{GroupEntry, UserEntry};

/// The manifest's file name at the top of a toplevel.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The format version this nexis writes and reads.
pub const MANIFEST_VERSION: u32 = 2;

/// What one generation is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    /// The host name.
    pub hostname: String,
    /// The packages of the system profile (`sw/`), by id.
    pub packages: BTreeMap<String, ManifestPackage>,
    /// The configuration's revision (`git` commit of its folder, `-dirty` when it has
    /// changes), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_revision: Option<String>,
    /// Every file this generation puts under `/etc`, by path relative to `/etc`.
    pub etc: BTreeMap<String, FileEntry>,
    /// Declared files elsewhere (`/var/lib/…`), by absolute path: written once, then the
    /// system's (see `docs/activation.md`).
    pub files: BTreeMap<String, FileEntry>,
    /// Users, `root` and `nobody` included.
    pub users: BTreeMap<String, UserEntry>,
    /// Groups, the built-in ones included.
    pub groups: BTreeMap<String, GroupEntry>,
    /// Declared home files: user → path relative to the home directory → entry.
    pub home: BTreeMap<String, BTreeMap<String, FileEntry>>,
    /// The supervisor of the services.
    pub init: Init,
    /// Services, the built-in ones included.
    pub services: BTreeMap<String, ServiceEntry>,
    /// The kernel, initrd and command line, when the system has a kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootFiles>,
}

/// What a boot entry of this generation starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BootFiles {
    /// The kernel image (logical path).
    pub kernel: String,
    /// The initrd, if the kernel package has one (logical path).
    pub initrd: Option<String>,
    /// Kernel command line parameters, besides `init=`.
    pub params: Vec<String>,
    /// The boot loader that shows the entries.
    pub loader: BootLoader,
    /// Seconds the menu waits.
    pub timeout: u32,
    /// How many generations keep a boot entry.
    pub keep: u32,
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

/// A file the generation puts in place (under `/etc`, elsewhere, or in a home).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileEntry {
    /// What it is.
    pub kind: FileKind,
    /// blake3 (hex) of the content, or of the link target.
    pub hash: String,
    /// Permission bits, octal (`0644`).
    pub mode: String,
    /// Owner (user name).
    pub owner: String,
    /// Group name.
    pub group: String,
}

/// How a file is put in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// A link into the generation's read-only copy: `/etc/P -> /etc/static/P`, or
    /// `~/P -> /run/current-system/home/USER/P`.
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
