//! Putting a generation in effect on a root: `/etc`, declared files elsewhere, home
//! directories and home files, and `/run/current-system`, with a journal so that an
//! interrupted activation is finished by the next one.
//!
//! Order: the journal names the target; `/etc/static` is pointed at the new `etc/` (one
//! rename, which switches every linked file at once); real files and new links are
//! written (each atomically), files only the old generation had are removed (the
//! account database among them, so owners are known from here on); then declared files
//! outside `/etc`, home directories and home files; then `/run/current-system` is
//! pointed at the new toplevel (one rename, which also switches every linked home file),
//! the boot default is set when asked, and the journal is removed. A kill at any
//! instant leaves the journal, and the next activation ([`Target::recover`]) does the
//! same steps again: every step is idempotent.
//!
//! Files somebody else made or changed are never silently overwritten: under `/etc` and
//! elsewhere they are kept and reported; in a home they are moved aside to
//! `NAME.nexis-backup` (then `.1`, `.2`…) and reported. The account database (`passwd`,
//! `group`, `shadow`, `gshadow`) is the configuration's and is always written.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use nexis_store::{Store, StorePath};

use crate::boot::{BootEntry, BootError, BootReport, BootSpec, write_boot_entries};
use crate::fsutil;
use crate::generation::{GenerationError, Profiles, replace_link};
use crate::manifest::{FileEntry, FileKind, Manifest};
use crate::services::{
    ServiceError, ServicesReport, apply as apply_services, connect, install, plan,
};

/// `/etc` files that are the configuration's alone: written whatever is there.
const AUTHORITATIVE: &[&str] = &["passwd", "group", "shadow", "gshadow"];

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
    /// The activation lock could not be taken.
    #[error("taking the activation lock")]
    Lock(#[source] nexis_store::StoreError),
    /// The services could not be installed.
    #[error(transparent)]
    Services(#[from] ServiceError),
    /// The boot entries could not be written (nothing else was changed).
    #[error(transparent)]
    Boot(#[from] BootError),
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

/// What an activation did. Paths are as the root sees them (`/etc/motd`,
/// `/home/alice/.profile`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivationReport {
    /// Files written or linked anew.
    pub written: Vec<String>,
    /// Files the previous generation had and this one does not, removed.
    pub removed: Vec<String>,
    /// Files left alone because somebody else made or changed them (they are reported,
    /// never overwritten), or because their folder is reached through a symbolic link.
    pub kept: Vec<String>,
    /// Home files that were in the way, moved aside: (the file, where it went).
    pub backed_up: Vec<(String, String)>,
    /// Home directories created.
    pub homes_created: Vec<String>,
    /// What the boot entries needed (none for `nexis test`).
    pub boot: Option<BootReport>,
    /// What was done to the services, when a supervisor runs for the root (none when
    /// the services were only installed).
    pub services: Option<ServicesReport>,
}

/// One area of the root that a generation puts files in.
struct Area<'a> {
    /// The folder files go in (physical).
    dest: PathBuf,
    /// Where `link` entries point, below which the entry's path follows (logical).
    link_base: PathBuf,
    /// The generation's copies (physical).
    source: PathBuf,
    /// The same folder as the root sees it, for reports.
    shown: String,
    /// Move other files aside instead of keeping them (homes).
    backup: bool,
    /// Entries written whatever is there.
    authoritative: &'a [&'a str],
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

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
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
        let _lock = self.store.lock_activation().map_err(ActivateError::Lock)?;
        let profiles = Profiles::new(self.store);
        let generation = profiles.get(n)?;
        let new = self.manifest(&generation.toplevel)?;
        let journal = self.journal();
        write_atomic(&journal, format!("{}\n{n}\n", mode.as_str()).as_bytes())?;
        // The boot entries first: when /boot is too small this fails before anything
        // else changed, so the journal goes too.
        let boot = if mode == Mode::Test {
            None
        } else {
            match self.boot_entries_of(n, &new) {
                Ok(r) => Some(r),
                Err(e) => {
                    fs::remove_file(&journal).map_err(io_at(&journal))?;
                    return Err(e);
                }
            }
        };
        let mut report = ActivationReport::default();
        if mode != Mode::Boot {
            // Running already: nothing to stop or restart (a no-op activation).
            let old = match self.current_system()? {
                Some(p) if p == generation.toplevel => Some(new.clone()),
                Some(p) => self.manifest(&p).ok(),
                None => None,
            };
            report = self.apply(&generation.toplevel, &new, old.as_ref())?;
            // The running system is a GC root even when its generation is deleted.
            let root = self.store.state_dir().join("gcroots/current-system");
            if fs::symlink_metadata(&root).is_err() {
                replace_link(&root, Path::new("/run/current-system"))?;
            }
            replace_link(
                &self.current_system_link(),
                Path::new(&generation.toplevel.to_string()),
            )?;
        }
        if mode != Mode::Test {
            profiles.set_current(n)?;
        }
        fs::remove_file(&journal).map_err(io_at(&journal))?;
        report.boot = boot;
        Ok(report)
    }

    /// Write the boot entries with generation `default` as the default: the newest
    /// generations (as many as its `[boot] keep-generations` says) and `default`, for
    /// those that have a kernel. Entries of other generations are removed. Nothing is
    /// written when the default generation has no kernel or no boot loader.
    pub fn boot_entries(&self, default: u32) -> Result<BootReport, ActivateError> {
        let toplevel = Profiles::new(self.store).get(default)?.toplevel;
        self.boot_entries_of(default, &self.manifest(&toplevel)?)
    }

    /// [`Target::boot_entries`] with the default generation's manifest at hand.
    fn boot_entries_of(
        &self,
        default: u32,
        manifest: &Manifest,
    ) -> Result<BootReport, ActivateError> {
        let Some(settings) = &manifest.boot else {
            return Ok(BootReport::default());
        };
        let profiles = Profiles::new(self.store);
        let mut list = profiles.list()?;
        list.sort_by_key(|g| std::cmp::Reverse(g.number));
        let keep = usize::try_from(settings.keep).unwrap_or(usize::MAX);
        let mut entries = Vec::new();
        for (i, g) in list.iter().enumerate() {
            if i >= keep && g.number != default {
                continue;
            }
            let files = if g.number == default {
                manifest.boot.clone()
            } else {
                self.manifest(&g.toplevel)?.boot
            };
            let Some(files) = files else {
                continue;
            };
            let physical = |logical: &str| self.root.join(logical.trim_start_matches('/'));
            entries.push(BootEntry {
                generation: g.number,
                created: g.created,
                toplevel: g.toplevel.to_string(),
                kernel: physical(&files.kernel),
                initrd: files.initrd.as_deref().map(physical),
                params: files.params,
            });
        }
        let spec = BootSpec {
            loader: settings.loader,
            timeout: settings.timeout,
            default,
            entries,
        };
        Ok(write_boot_entries(&self.root.join("boot"), &spec)?)
    }

    /// Put the new generation's files in place, keeping what others made.
    fn apply(
        &self,
        toplevel: &StorePath,
        new: &Manifest,
        old: Option<&Manifest>,
    ) -> Result<ActivationReport, ActivateError> {
        let etc = self.etc();
        fs::create_dir_all(&etc).map_err(io_at(&etc))?;
        // One rename switches every linked file.
        let logical = Path::new(&toplevel.to_string()).to_owned();
        replace_link(&etc.join("static"), &logical.join("etc"))?;
        let top = self.store.physical(toplevel);
        let mut report = ActivationReport::default();
        let empty = BTreeMap::new();
        let area = Area {
            dest: etc.clone(),
            link_base: PathBuf::from("/etc/static"),
            source: top.join("etc"),
            shown: "/etc".into(),
            backup: false,
            authoritative: AUTHORITATIVE,
        };
        self.apply_area(&area, &new.etc, old.map_or(&empty, |m| &m.etc), &mut report)?;
        let area = Area {
            dest: self.root.clone(),
            link_base: PathBuf::from("/"),
            source: top.join("files"),
            shown: String::new(),
            backup: false,
            authoritative: &[],
        };
        let files = |m: &Manifest| -> BTreeMap<String, FileEntry> {
            m.files
                .iter()
                .map(|(k, v)| (k.trim_start_matches('/').to_owned(), v.clone()))
                .collect()
        };
        let old_files = old.map(files).unwrap_or_default();
        self.apply_area(&area, &files(new), &old_files, &mut report)?;
        self.make_homes(new, &mut report)?;
        self.apply_homes(&top, new, old, &mut report)?;
        // Services last, with every file they read in place.
        let services = top.join("services");
        let backend = new.init;
        match connect(backend, &self.root, &services)? {
            Some(mut supervisor) => {
                let none = BTreeMap::new();
                let plan = plan(old.map_or(&none, |m| &m.services), &new.services);
                report.services = Some(apply_services(&plan, supervisor.as_mut())?);
            }
            None => install(backend, &self.root, &services)?,
        }
        Ok(report)
    }

    /// Put each user's home files in place; remove those of users that are gone.
    fn apply_homes(
        &self,
        top: &Path,
        new: &Manifest,
        old: Option<&Manifest>,
        report: &mut ActivationReport,
    ) -> Result<(), ActivateError> {
        let empty = BTreeMap::new();
        let mut users: Vec<&String> = new.home.keys().collect();
        if let Some(old) = old {
            users.extend(old.home.keys().filter(|u| !new.home.contains_key(*u)));
        }
        for user in users {
            // A user that is gone keeps their home; their linked files are removed.
            let account = new
                .users
                .get(user)
                .or_else(|| old.and_then(|o| o.users.get(user)));
            let Some(account) = account else { continue };
            let home = account.home.trim_start_matches('/');
            let area = Area {
                dest: self.root.join(home),
                link_base: PathBuf::from("/run/current-system/home").join(user),
                source: top.join("home").join(user),
                shown: account.home.clone(),
                backup: true,
                authoritative: &[],
            };
            self.apply_area(
                &area,
                new.home.get(user).unwrap_or(&empty),
                old.and_then(|o| o.home.get(user)).unwrap_or(&empty),
                report,
            )?;
        }
        Ok(())
    }

    /// Create the home directories that do not exist, owned by their users (mode 0700).
    /// Existing ones are never changed.
    fn make_homes(
        &self,
        new: &Manifest,
        report: &mut ActivationReport,
    ) -> Result<(), ActivateError> {
        for user in new.users.values() {
            if user.home == "/var/empty" || !user.home.starts_with('/') {
                continue;
            }
            let dir = self.root.join(user.home.trim_start_matches('/'));
            if fs::symlink_metadata(&dir).is_ok() {
                continue;
            }
            let parent = dir.parent().expect("below the root");
            fs::create_dir_all(parent).map_err(io_at(parent))?;
            fs::create_dir(&dir).map_err(io_at(&dir))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io_at(&dir))?;
            if rustix::process::geteuid().is_root() {
                std::os::unix::fs::chown(&dir, Some(user.uid), Some(user.gid))
                    .map_err(io_at(&dir))?;
            }
            report.homes_created.push(user.home.clone());
        }
        Ok(())
    }

    /// Make one area the new generation's.
    fn apply_area(
        &self,
        area: &Area<'_>,
        new: &BTreeMap<String, FileEntry>,
        old: &BTreeMap<String, FileEntry>,
        report: &mut ActivationReport,
    ) -> Result<(), ActivateError> {
        let shown = |rel: &str| format!("{}/{rel}", area.shown);
        for (rel, entry) in new {
            let dest = area.dest.join(rel);
            if !plain_folders(&area.dest, rel) {
                report.kept.push(shown(rel));
                continue;
            }
            let state = state_of(&dest, &area.link_base.join(rel), entry)?;
            if state == State::Ours {
                continue;
            }
            let previous = old.get(rel);
            let was_ours = || {
                previous.is_some_and(|p| {
                    state_of(&dest, &area.link_base.join(rel), p).ok() == Some(State::Ours)
                })
            };
            if state == State::Other && !area.authoritative.contains(&rel.as_str()) && !was_ours() {
                if area.backup {
                    let aside = backup(&dest)?;
                    report.backed_up.push((shown(rel), aside));
                } else {
                    report.kept.push(shown(rel));
                    continue;
                }
            }
            let parent = dest.parent().expect("below the area");
            self.make_folders(&area.dest, parent, entry)?;
            match entry.kind {
                FileKind::Link => {
                    replace_link(&dest, &area.link_base.join(rel))?;
                }
                FileKind::Symlink => {
                    let from = area.source.join(rel);
                    let target = fs::read_link(&from).map_err(io_at(&from))?;
                    replace_link(&dest, &target)?;
                }
                FileKind::Real => {
                    let from = area.source.join(rel);
                    let bytes = fs::read(&from).map_err(io_at(&from))?;
                    write_real(&dest, &bytes, entry, &self.etc())?;
                }
            }
            report.written.push(shown(rel));
        }
        for (rel, entry) in old {
            if new.contains_key(rel) || !plain_folders(&area.dest, rel) {
                continue;
            }
            let dest = area.dest.join(rel);
            match state_of(&dest, &area.link_base.join(rel), entry)? {
                State::Ours => {
                    fs::remove_file(&dest).map_err(io_at(&dest))?;
                    report.removed.push(shown(rel));
                }
                State::Missing => {}
                State::Other => report.kept.push(shown(rel)),
            }
        }
        Ok(())
    }

    /// Create the folders from `base` down to `dir`, owned as `entry` is when below a
    /// home (so that `~/.config` is the user's), root's otherwise.
    fn make_folders(
        &self,
        base: &Path,
        dir: &Path,
        entry: &FileEntry,
    ) -> Result<(), ActivateError> {
        if dir.is_dir() {
            return Ok(());
        }
        fs::create_dir_all(base).map_err(io_at(base))?;
        let rel = dir.strip_prefix(base).unwrap_or(Path::new(""));
        let mut at = base.to_owned();
        for part in rel.components() {
            at.push(part);
            if at.is_dir() {
                continue;
            }
            fs::create_dir(&at).map_err(io_at(&at))?;
            if entry.owner != "root" && rustix::process::geteuid().is_root() {
                let etc = self.etc();
                let uid = id_of(&etc, "passwd", &entry.owner).unwrap_or(0);
                let gid = id_of(&etc, "group", &entry.group).unwrap_or(0);
                std::os::unix::fs::chown(&at, Some(uid), Some(gid)).map_err(io_at(&at))?;
            }
        }
        Ok(())
    }
}

/// Whether every folder between `base` and `base/rel` is a plain folder (or missing):
/// activation never writes through a symbolic link a user could have placed, such as
/// `~/.config -> /etc`.
fn plain_folders(base: &Path, rel: &str) -> bool {
    let mut at = base.to_owned();
    let parts: Vec<_> = Path::new(rel).components().collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return false,
            Err(_) => return true,
        }
    }
    true
}

/// Move `path` aside to the first free `path.nexis-backup[.N]`; the new name.
fn backup(path: &Path) -> Result<String, ActivateError> {
    let name = path
        .file_name()
        .expect("a file")
        .to_string_lossy()
        .into_owned();
    for n in 0.. {
        let candidate = if n == 0 {
            path.with_file_name(format!("{name}.nexis-backup"))
        } else {
            path.with_file_name(format!("{name}.nexis-backup.{n}"))
        };
        if fs::symlink_metadata(&candidate).is_err() {
            fs::rename(path, &candidate).map_err(io_at(path))?;
            return Ok(candidate
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned());
        }
    }
    unreachable!("some backup name is free")
}

/// How a path stands against what a generation puts there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// It is exactly what the entry says.
    Ours,
    /// Nothing is there.
    Missing,
    /// Something else is there.
    Other,
}

pub(crate) fn state_of(
    dest: &Path,
    link: &Path,
    entry: &FileEntry,
) -> Result<State, ActivateError> {
    let meta = match fs::symlink_metadata(dest) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::Missing),
        Err(e) => return Err(io_at(dest)(e)),
    };
    let ours = match entry.kind {
        FileKind::Link => {
            meta.file_type().is_symlink() && fs::read_link(dest).map_err(io_at(dest))? == link
        }
        FileKind::Symlink => {
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
        FileKind::Real => {
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
pub(crate) fn id_of(etc: &Path, file: &str, name: &str) -> Option<u32> {
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

/// Write a real file atomically with its mode, and its owner and group when the root
/// knows them (else root's).
fn write_real(
    dest: &Path,
    bytes: &[u8],
    entry: &FileEntry,
    etc: &Path,
) -> Result<(), ActivateError> {
    let mode = u32::from_str_radix(&entry.mode, 8).unwrap_or(0o644);
    let uid = id_of(etc, "passwd", &entry.owner).unwrap_or(0);
    let gid = id_of(etc, "group", &entry.group).unwrap_or(0);
    fsutil::write_atomic_with(dest, bytes, mode, |tmp| {
        // Only root may give files away; as another user the file stays the caller's.
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(tmp, Some(uid), Some(gid))?;
        }
        Ok(())
    })
    .map_err(io_at(dest))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ActivateError> {
    fsutil::write_atomic(path, bytes).map_err(io_at(path))
}
