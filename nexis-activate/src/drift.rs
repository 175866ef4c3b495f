//! The drift check: how the live root differs from the generation in effect, in the
//! areas the policy makes immutable: every file under `/etc`, and the linked home files.
//! Declared files outside `/etc` (`/var/lib/…`) are written once and then the system's,
//! so they are not checked.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::activate::{ActivateError, State, Target, id_of, state_of};
use crate::manifest::{FileEntry, FileKind};

/// One difference between the root and its generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Drift {
    /// The path as the root sees it (`/etc/motd`).
    pub path: String,
    /// What differs.
    pub kind: DriftKind,
    /// Details: the mode or owner found and expected.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// What differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriftKind {
    /// The content (or link target) is not the generation's.
    Changed,
    /// The generation has it; the root does not.
    Missing,
    /// The root has it; the generation does not.
    Added,
    /// The permission bits differ.
    Mode,
    /// The owner or group differs.
    Owner,
}

impl DriftKind {
    /// The word shown before the path.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::Changed => "changed",
            DriftKind::Missing => "missing",
            DriftKind::Added => "added",
            DriftKind::Mode => "mode",
            DriftKind::Owner => "owner",
        }
    }
}

impl Target<'_> {
    /// Every difference between the root and the generation in effect
    /// (`/run/current-system`), sorted by path; empty when nothing runs yet.
    pub fn drift(&self) -> Result<Vec<Drift>, ActivateError> {
        let Some(current) = self.current_system()? else {
            return Ok(Vec::new());
        };
        let manifest = self.manifest(&current)?;
        let etc = self.etc();
        let mut out = Vec::new();
        let static_link = etc.join("static");
        let want = Path::new(&current.to_string()).join("etc");
        if fs::read_link(&static_link).ok().as_deref() != Some(&want) {
            out.push(Drift {
                path: "/etc/static".into(),
                kind: DriftKind::Changed,
                detail: format!("expected a link to {}", want.display()),
            });
        }
        check_area(
            &etc,
            "/etc",
            Path::new("/etc/static"),
            &manifest.etc,
            &etc,
            &mut out,
        )?;
        // Anything else under /etc was made by hand.
        let mut found = Vec::new();
        walk(&etc, Path::new(""), &mut found)?;
        for rel in found {
            let rel = rel.to_string_lossy().into_owned();
            if rel != "static" && !manifest.etc.contains_key(&rel) {
                out.push(Drift {
                    path: format!("/etc/{rel}"),
                    kind: DriftKind::Added,
                    detail: String::new(),
                });
            }
        }
        for (user, files) in &manifest.home {
            let Some(account) = manifest.users.get(user) else {
                continue;
            };
            let linked: BTreeMap<String, FileEntry> = files
                .iter()
                .filter(|(_, e)| e.kind == FileKind::Link)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            check_area(
                &self.root().join(account.home.trim_start_matches('/')),
                &account.home,
                &Path::new("/run/current-system/home").join(user),
                &linked,
                &etc,
                &mut out,
            )?;
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

/// Compare each entry with what is at its place.
fn check_area(
    dir: &Path,
    shown: &str,
    link_base: &Path,
    entries: &BTreeMap<String, FileEntry>,
    etc: &Path,
    out: &mut Vec<Drift>,
) -> Result<(), ActivateError> {
    for (rel, entry) in entries {
        let path = dir.join(rel);
        let drift = |kind, detail: String| Drift {
            path: format!("{shown}/{rel}"),
            kind,
            detail,
        };
        match state_of(&path, &link_base.join(rel), entry)? {
            State::Missing => out.push(drift(DriftKind::Missing, String::new())),
            State::Other => {
                // A real file with the right content and the wrong mode is a mode drift.
                let meta = fs::symlink_metadata(&path).ok();
                let same_content = entry.kind == FileKind::Real
                    && meta.as_ref().is_some_and(fs::Metadata::is_file)
                    && fs::read(&path)
                        .is_ok_and(|b| blake3::hash(&b).to_hex().as_str() == entry.hash);
                if same_content {
                    let mode = meta.map_or(0, |m| m.mode() & 0o7777);
                    out.push(drift(
                        DriftKind::Mode,
                        format!("{mode:04o}, expected {}", entry.mode),
                    ));
                } else {
                    out.push(drift(DriftKind::Changed, String::new()));
                }
            }
            State::Ours if entry.kind == FileKind::Real => {
                let meta = fs::symlink_metadata(&path).map_err(|source| ActivateError::Io {
                    path: path.clone(),
                    source,
                })?;
                let uid = id_of(etc, "passwd", &entry.owner);
                let gid = id_of(etc, "group", &entry.group);
                // Only root can give files away; as another user, ownership is not
                // something activation could have set.
                if rustix::process::geteuid().is_root()
                    && (uid.is_some_and(|u| u != meta.uid())
                        || gid.is_some_and(|g| g != meta.gid()))
                {
                    out.push(drift(
                        DriftKind::Owner,
                        format!(
                            "{}:{}, expected {}:{}",
                            meta.uid(),
                            meta.gid(),
                            entry.owner,
                            entry.group
                        ),
                    ));
                }
            }
            State::Ours => {}
        }
    }
    Ok(())
}

/// Every non-folder below `dir`, relative to it (not following links).
fn walk(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), ActivateError> {
    let here = dir.join(rel);
    let entries = match fs::read_dir(&here) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(ActivateError::Io { path: here, source }),
    };
    for entry in entries {
        let entry = entry.map_err(|source| ActivateError::Io {
            path: here.clone(),
            source,
        })?;
        let r = rel.join(entry.file_name());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(dir, &r, out)?;
        } else {
            out.push(r);
        }
    }
    Ok(())
}
