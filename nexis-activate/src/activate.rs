//! Putting a generation in effect on a root: `/etc` and `/run/current-system`, with a
//! journal so that an interrupted activation is finished by the next one.
//!
//! Order: the journal names the target; `/etc/static` is pointed at the new `etc/` (one
//! rename, which switches every linked file at once); real files and new links are
//! written (each atomically), files only the old generation had are removed; then
//! `/run/current-system` is pointed at the new toplevel (one rename), the boot default
//! is set when asked, and the journal is removed. A kill at any instant leaves the
//! journal, and the next activation ([`recover`]) does the same steps again: every
//! step is idempotent.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use nexis_store::{Store, StorePath};

use crate::generation::{GenerationError, Profiles, replace_link};
use crate::manifest::{EtcEntry, EtcKind, Manifest};

/// Where activation keeps its journal, relative to the store's state folder.
const JOURNAL: &str = "activating";

/// What to do besides putting the generation in effect now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In effect now, and the boot default (`nexis switch`).
    Switch,
    /// In effect now only (`nexis test`).
    Test,
    /// The boot default only; nothing changes now (`nexis boot`).
    Boot,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Switch => "switch",
            Mode::Test => "test",
            Mode::Boot => "boot",
        }
    }

    fn parse(s: &str) -> Option<Mode> {
        match s {
            "switch" => Some(Mode::Switch),
            "test" => Some(Mode::Test),
            "boot" => Some(Mode::Boot),
            _ => None,
        }
    }
}

/// Activation failed; the journal stays, so the next activation finishes it.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// A file or link of the root could not be written.
    #[error("{}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The generation's manifest cannot be read.
    #[error("the manifest of {path}")]
    Manifest {
        /// The toplevel.
        path: StorePath,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The profile could not be changed.
    #[error(transparent)]
    Generation(#[from] GenerationError),
    /// The journal names something that is not a generation.
    #[error("the activation journal {} is damaged: {reason}", path.display())]
    Journal {
        /// The journal.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ActivateError + '_ {
    move |source| ActivateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What an activation did to `/etc`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivationReport {
    /// Files (relative to `/etc`) written or linked anew.
    pub written: Vec<String>,
    /// Files the previous generation had and this one does not, removed.
    pub removed: Vec<String>,
    /// Files left alone because somebody else made or changed them (they are reported,
    /// never overwritten), with what the generation wanted there.
    pub kept: Vec<String>,
}

/// A root to activate generations on: its store and its folders.
#[derive(Debug)]
pub struct Target<'s> {
    store: &'s Store,
    root: PathBuf,
}

impl<'s> Target<'s> {
    /// The root of `store` (`--root`).
    pub fn new(store: &'s Store) -> Target<'s> {
        Target {
            store,
            root: store.root().to_owned(),
        }
    }

    /// `ROOT/etc`.
    pub fn etc(&self) -> PathBuf {
        self.root.join("etc")
    }

    /// `ROOT/run/current-system`.
    pub fn current_system_link(&self) -> PathBuf {
        self.root.join("run/current-system")
    }

    fn journal(&self) -> PathBuf {
        self.store.state_dir().join(JOURNAL)
    }

    /// The toplevel in effect now (`/run/current-system`), if any.
    pub fn current_system(&self) -> Result<Option<StorePath>, ActivateError> {
        let link = self.current_system_link();
        match fs::read_link(&link) {
            Ok(t) => Ok(StorePath::parse(&t.to_string_lossy()).ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(&link)(e)),
        }
    }

    /// The manifest of a toplevel.
    pub fn manifest(&self, toplevel: &StorePath) -> Result<Manifest, ActivateError> {
        Manifest::read(&self.store.physical(toplevel)).map_err(|source| ActivateError::Manifest {
            path: toplevel.clone(),
            source,
        })
    }

    /// Finish an interrupted activation, if the journal says there is one; what it did.
    pub fn recover(&self) -> Result<Option<ActivationReport>, ActivateError> {
        let journal = self.journal();
        let text = match fs::read_to_string(&journal) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_at(&journal)(e)),
        };
        let damaged = |reason: &str| ActivateError::Journal {
            path: journal.clone(),
            reason: reason.to_owned(),
        };
        let mut lines = text.lines();
        let mode = lines
            .next()
            .and_then(Mode::parse)
            .ok_or_else(|| damaged("no mode on the first line"))?;
        let generation: u32 = lines
            .next()
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| damaged("no generation number on the second line"))?;
        Ok(Some(self.activate(generation, mode)?))
    }

    /// Put generation `n` in effect as `mode` says.
    pub fn activate(&self, n: u32, mode: Mode) -> Result<ActivationReport, ActivateError> {
        let profiles = Profiles::new(self.store);
        let generation = profiles.get(n)?;
        let journal = self.journal();
        write_atomic(&journal, format!("{}\n{n}\n", mode.as_str()).as_bytes())?;
        let mut report = ActivationReport::default();
        if mode != Mode::Boot {
            let new = self.manifest(&generation.toplevel)?;
            let old = match self.current_system()? {
                Some(p) if p != generation.toplevel => self.manifest(&p).ok(),
                _ => None,
            };
            report = self.apply_etc(&generation.toplevel, &new, old.as_ref())?;
            replace_link(
                &self.current_system_link(),
                Path::new(&generation.toplevel.to_string()),
            )?;
        }
        if mode != Mode::Test {
            profiles.set_current(n)?;
        }
        fs::remove_file(&journal).map_err(io_at(&journal))?;
        Ok(report)
    }

    /// Make `/etc` the new generation's, keeping what others made.
    fn apply_etc(
        &self,
        toplevel: &StorePath,
        new: &Manifest,
        old: Option<&Manifest>,
    ) -> Result<ActivationReport, ActivateError> {
        let etc = self.etc();
        fs::create_dir_all(&etc).map_err(io_at(&etc))?;
        // One rename switches every linked file.
        replace_link(
            &etc.join("static"),
            &Path::new(&toplevel.to_string()).join("etc"),
        )?;
        let source = self.store.physical(toplevel).join("etc");
        let mut report = ActivationReport::default();
        for (rel, entry) in &new.etc {
            let dest = etc.join(rel);
            let state = state_of(&dest, rel, entry)?;
            if state == State::Ours {
                continue;
            }
            let previous = old.and_then(|m| m.etc.get(rel));
            if state == State::Other
                && !previous.is_some_and(|p| state_of(&dest, rel, p).ok() == Some(State::Ours))
            {
                report.kept.push(rel.clone());
                continue;
            }
            let parent = dest.parent().expect("below etc");
            fs::create_dir_all(parent).map_err(io_at(parent))?;
            match entry.kind {
                EtcKind::Link => {
                    replace_link(&dest, &Path::new("/etc/static").join(rel))?;
                }
                EtcKind::Symlink => {
                    let target =
                        fs::read_link(source.join(rel)).map_err(io_at(&source.join(rel)))?;
                    replace_link(&dest, &target)?;
                }
                EtcKind::Real => {
                    let bytes = fs::read(source.join(rel)).map_err(io_at(&source.join(rel)))?;
                    write_real(&dest, &bytes, entry, &etc)?;
                }
            }
            report.written.push(rel.clone());
        }
        if let Some(old) = old {
            for (rel, entry) in &old.etc {
                if new.etc.contains_key(rel) {
                    continue;
                }
                let dest = etc.join(rel);
                match state_of(&dest, rel, entry)? {
                    State::Ours => {
                        fs::remove_file(&dest).map_err(io_at(&dest))?;
                        report.removed.push(rel.clone());
                    }
                    State::Missing => {}
                    State::Other => report.kept.push(rel.clone()),
                }
            }
        }
        Ok(report)
    }
}

/// How a path under `/etc` stands against what a generation puts there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// It is exactly what the entry says.
    Ours,
    /// Nothing is there.
    Missing,
    /// Something else is there.
    Other,
}

fn state_of(dest: &Path, rel: &str, entry: &EtcEntry) -> Result<State, ActivateError> {
    let meta = match fs::symlink_metadata(dest) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::Missing),
        Err(e) => return Err(io_at(dest)(e)),
    };
    let ours = match entry.kind {
        EtcKind::Link => {
            meta.file_type().is_symlink()
                && fs::read_link(dest).map_err(io_at(dest))? == Path::new("/etc/static").join(rel)
        }
        EtcKind::Symlink => {
            meta.file_type().is_symlink()
                && blake3::hash(
                    fs::read_link(dest)
                        .map_err(io_at(dest))?
                        .as_os_str()
                        .as_encoded_bytes(),
                )
                .to_hex()
                .as_str()
                    == entry.hash
        }
        EtcKind::Real => {
            meta.is_file()
                && format!("{:04o}", meta.permissions().mode() & 0o7777) == entry.mode
                && blake3::hash(&fs::read(dest).map_err(io_at(dest))?)
                    .to_hex()
                    .as_str()
                    == entry.hash
        }
    };
    Ok(if ours { State::Ours } else { State::Other })
}

/// The numeric id of `name` in the root's `/etc/passwd` (or `/etc/group`); `root` is 0.
fn id_of(etc: &Path, file: &str, name: &str) -> Option<u32> {
    if name == "root" {
        return Some(0);
    }
    let text = fs::read_to_string(etc.join(file)).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name)
            .then(|| fields.nth(1)?.parse().ok())
            .flatten()
    })
}

/// Write a real file: a temporary beside it with the mode, and the owner and group when
/// the root knows them (else root's), synced, renamed over it.
fn write_real(
    dest: &Path,
    bytes: &[u8],
    entry: &EtcEntry,
    etc: &Path,
) -> Result<(), ActivateError> {
    let mode = u32::from_str_radix(&entry.mode, 8).unwrap_or(0o644);
    let tmp = dest.with_file_name(format!(
        ".{}.nexis-tmp",
        dest.file_name().expect("a file name").to_string_lossy()
    ));
    let mut f = fs::File::create(&tmp).map_err(io_at(&tmp))?;
    f.write_all(bytes).map_err(io_at(&tmp))?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_at(&tmp))?;
    let uid = id_of(etc, "passwd", &entry.owner).unwrap_or(0);
    let gid = id_of(etc, "group", &entry.group).unwrap_or(0);
    // Only root may give files away; as another user the file stays the caller's.
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).map_err(io_at(&tmp))?;
    }
    f.sync_all().map_err(io_at(&tmp))?;
    drop(f);
    fs::rename(&tmp, dest).map_err(io_at(dest))?;
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ActivateError> {
    let dir = path.parent().expect("a file has a folder");
    fs::create_dir_all(dir).map_err(io_at(dir))?;
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(io_at(&tmp))?;
    f.write_all(bytes).map_err(io_at(&tmp))?;
    f.sync_all().map_err(io_at(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_at(path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}
