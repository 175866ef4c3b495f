//! Boot loader entries: the last generations as GRUB menu entries or Boot Loader
//! Specification files, with their kernels and initrds copied onto `/boot`
//! (`docs/boot.md`).
//!
//! Layout, under the boot folder (`ROOT/boot`, usually its own filesystem: a boot
//! partition or the EFI system partition):
//!
//! ```text
//! nexis/<hash>-<name>-<file>                 kernels and initrds, named after the store
//!                                            path they come from (`…-linux-6.6-bzImage`)
//! grub/grub.cfg                              GRUB: the whole menu
//! loader/entries/nexis-generation-N.conf     systemd-boot: one entry per generation
//! loader/loader.conf                         systemd-boot: `default` and `timeout`
//! ```
//!
//! Store paths never change, so a copy whose name is already there has the right
//! content and is not copied again.
//!
//! Order and atomicity: first the free space is checked against everything that must be
//! written; when short, nothing at all is written ([`BootError::NoSpace`]). Then the
//! missing copies are made (each into a temporary file, synced, renamed, then the folder
//! synced), so they are in place before any configuration points at them. Then each
//! configuration file that changes is written the same way (temporary, sync, rename,
//! folder sync): a crash leaves the old or the new `grub.cfg` (or entry), never a part.
//! `loader.conf` comes after the entries it names. Last, entries of generations no longer
//! listed and copies no kept entry uses are removed, with stray temporary files of an
//! interrupted run. Only files nexis makes are ever removed: `nexis-generation-*.conf`
//! entries, copies (`nexis/<hash>-…`) and `.*.nexis-tmp` temporaries.
//!
//! The space needed is every file to write rounded up to whole blocks, a block per new
//! folder and 64 KiB. GRUB reads paths from the root of the filesystem holding `grub/`:
//! `/nexis/…` when the boot folder is a mount point, else `/boot/nexis/…`.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};

use nexis_config::BootLoader;
use nexis_store::{BASE32_ALPHABET, HASH_CHARS, StorePath, human_bytes};

use crate::fsutil::{self, TMP_SUFFIX, temp_beside};

/// Where the copies of kernels and initrds go, under the boot folder.
const COPIES: &str = "nexis";
/// The first line of `loader.conf`.
const LOADER_CONF_HEADER: &str = "# default and timeout are written by nexis at every switch";
/// Space kept free beyond what the files take (folder blocks, metadata).
const MARGIN: u64 = 64 * 1024;

/// One generation's boot entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    /// The generation number.
    pub generation: u32,
    /// When the generation was made (seconds since the epoch), shown in the title (UTC).
    pub created: i64,
    /// Its toplevel, a logical store path (`/nexis/store/…-nexis-system-…`).
    pub toplevel: String,
    /// The kernel image file, physical (`ROOT/nexis/store/<hash>-linux-…/bzImage`).
    pub kernel: PathBuf,
    /// The initrd file, physical, if any.
    pub initrd: Option<PathBuf>,
    /// Kernel command line parameters, after `init=<toplevel>/init`.
    pub params: Vec<String>,
}

/// What the boot menu shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSpec {
    /// The boot loader to write entries for.
    pub loader: BootLoader,
    /// Seconds the menu waits.
    pub timeout: u32,
    /// The generation booted by default; it must have an entry.
    pub default: u32,
    /// The entries (the caller chooses which generations, usually the last N).
    pub entries: Vec<BootEntry>,
}

/// What [`write_boot_entries`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootReport {
    /// Files written: copies of kernels and initrds, then configuration files. A file
    /// already as wanted is not written again.
    pub written: Vec<PathBuf>,
    /// Files removed: entries of generations no longer listed, copies no entry uses,
    /// temporary files of an interrupted run.
    pub removed: Vec<PathBuf>,
    /// Bytes of kernels and initrds copied.
    pub copied_bytes: u64,
}

/// Writing boot entries failed.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A file or folder could not be read or written.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done (`read`, `write`, `rename into place`, …).
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The boot filesystem has too little free space; nothing was written.
    #[error(
        "not enough space in {} for the boot entries: {} needed, {} free; delete old generations (`nexis generations delete …`) then `nexis gc`, or make /boot larger",
        boot_dir.display(),
        human_bytes(*needed),
        human_bytes(*available)
    )]
    NoSpace {
        /// The boot folder.
        boot_dir: PathBuf,
        /// Bytes needed (files rounded up to blocks, plus a margin).
        needed: u64,
        /// Bytes free for unprivileged use (`f_bavail * f_frsize`).
        available: u64,
    },
    /// A kernel or initrd is not inside a store path, so it has no stable name.
    #[error(
        "the {what} of generation {generation}, {}, is not inside a store path (…/nexis/store/<hash>-<name>/…)",
        path.display()
    )]
    NotInStore {
        /// The generation.
        generation: u32,
        /// `kernel` or `initrd`.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// An entry's toplevel is not a store path.
    #[error("the toplevel of generation {generation}, `{toplevel}`, is not a store path")]
    BadToplevel {
        /// The generation.
        generation: u32,
        /// What was given.
        toplevel: String,
    },
    /// A kernel parameter cannot be put on a command line.
    #[error("the kernel parameter {param:?} of generation {generation} has a control character")]
    BadParam {
        /// The generation.
        generation: u32,
        /// The parameter.
        param: String,
    },
    /// The default generation is not among the entries.
    #[error("the boot default, generation {0}, is not among the boot entries")]
    NoDefault(u32),
    /// Two entries for one generation.
    #[error("generation {0} has two boot entries")]
    DuplicateGeneration(u32),
}

fn io_at<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BootError + 'a {
    move |source| BootError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The kernel image in a kernel package's output: `bzImage`, `vmlinuz`, `Image`,
/// `boot/bzImage`, `boot/vmlinuz`, `boot/Image`, else the first `boot/vmlinuz*` in byte
/// order.
pub fn find_kernel(package_out: &Path) -> Option<PathBuf> {
    find_image(
        package_out,
        &[
            "bzImage",
            "vmlinuz",
            "Image",
            "boot/bzImage",
            "boot/vmlinuz",
            "boot/Image",
        ],
        &["vmlinuz"],
    )
}

/// The initrd in a package's output: `initrd`, `initrd.img`, `boot/initrd`,
/// `boot/initrd.img`, else the first `boot/initrd*` or `boot/initramfs*` in byte order.
pub fn find_initrd(package_out: &Path) -> Option<PathBuf> {
    find_image(
        package_out,
        &["initrd", "initrd.img", "boot/initrd", "boot/initrd.img"],
        &["initrd", "initramfs"],
    )
}

fn find_image(out: &Path, exact: &[&str], boot_prefixes: &[&str]) -> Option<PathBuf> {
    if let Some(found) = exact.iter().map(|p| out.join(p)).find(|p| p.is_file()) {
        return Some(found);
    }
    let boot = out.join("boot");
    let mut names: Vec<_> = fs::read_dir(&boot)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| {
            n.to_str()
                .is_some_and(|n| boot_prefixes.iter().any(|p| n.starts_with(p)))
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| boot.join(n))
        .find(|p| p.is_file())
}

/// Write the boot entries of `spec` into `boot_dir` (physical `ROOT/boot`): copy the
/// kernels and initrds not there yet, write the loader's configuration, remove what
/// is no longer used. See the module documentation for the order and guarantees.
///
/// [`BootLoader::None`] or no entries: nothing is done.
pub fn write_boot_entries(boot_dir: &Path, spec: &BootSpec) -> Result<BootReport, BootError> {
    if spec.loader == BootLoader::None || spec.entries.is_empty() {
        return Ok(BootReport::default());
    }
    let entries = plan_entries(spec)?;
    let copies_dir = boot_dir.join(COPIES);
    let configs = match spec.loader {
        BootLoader::Grub => vec![Config {
            path: boot_dir.join("grub/grub.cfg"),
            bytes: grub_cfg(spec, &entries, &grub_prefix(boot_dir)).into_bytes(),
        }],
        BootLoader::SystemdBoot => bls_files(boot_dir, spec, &entries)?,
        BootLoader::None => unreachable!("returned above"),
    };

    // What must be written.
    let mut sources: BTreeMap<&str, &Path> = BTreeMap::new();
    for e in &entries {
        sources.insert(&e.kernel, &e.entry.kernel);
        if let (Some(name), Some(path)) = (&e.initrd, &e.entry.initrd) {
            sources.insert(name, path);
        }
    }
    let mut copies = Vec::new();
    for (&name, &source) in &sources {
        let dest = copies_dir.join(name);
        if !is_file(&dest)? {
            let size = fs::metadata(source).map_err(io_at("read", source))?.len();
            copies.push((source, dest, size));
        }
    }
    let mut changed = Vec::new();
    for config in &configs {
        match fs::read(&config.path) {
            Ok(old) if old == config.bytes => {}
            Ok(_) => changed.push(config),
            Err(e) if e.kind() == io::ErrorKind::NotFound => changed.push(config),
            Err(e) => return Err(io_at("read", &config.path)(e)),
        }
    }

    let mut report = BootReport::default();
    if !copies.is_empty() || !changed.is_empty() {
        let mut dirs: BTreeSet<&Path> = BTreeSet::new();
        if !copies.is_empty() {
            dirs.insert(&copies_dir);
        }
        for c in &changed {
            dirs.extend(c.path.parent());
        }
        let sizes = copies
            .iter()
            .map(|c| c.2)
            .chain(changed.iter().map(|c| c.bytes.len() as u64));
        check_space(boot_dir, sizes, &dirs)?;

        // Copies first: in place before any configuration names them.
        if !copies.is_empty() {
            fs::create_dir_all(&copies_dir).map_err(io_at("create", &copies_dir))?;
            for (source, dest, _) in &copies {
                report.copied_bytes += copy_in(source, dest)?;
                report.written.push(dest.clone());
            }
            sync_dir(&copies_dir)?;
        }
        for config in changed {
            write_atomic(&config.path, &config.bytes)?;
            report.written.push(config.path.clone());
        }
    }

    let kept_generations: BTreeSet<u32> = entries.iter().map(|e| e.entry.generation).collect();
    let kept_copies: BTreeSet<&str> = sources.keys().copied().collect();
    remove_stale(boot_dir, &kept_generations, &kept_copies, &mut report)?;
    Ok(report)
}

/// An entry with the names of its copies.
struct Planned<'a> {
    entry: &'a BootEntry,
    kernel: String,
    initrd: Option<String>,
}

/// A configuration file and its wanted content.
struct Config {
    path: PathBuf,
    bytes: Vec<u8>,
}

/// Check the entries, name their copies, newest first.
fn plan_entries(spec: &BootSpec) -> Result<Vec<Planned<'_>>, BootError> {
    let mut seen = BTreeSet::new();
    let mut planned = Vec::new();
    for entry in &spec.entries {
        let generation = entry.generation;
        if !seen.insert(generation) {
            return Err(BootError::DuplicateGeneration(generation));
        }
        if StorePath::parse(&entry.toplevel).is_err() {
            return Err(BootError::BadToplevel {
                generation,
                toplevel: entry.toplevel.clone(),
            });
        }
        if let Some(param) = entry
            .params
            .iter()
            .find(|p| p.chars().any(char::is_control))
        {
            return Err(BootError::BadParam {
                generation,
                param: param.clone(),
            });
        }
        planned.push(Planned {
            entry,
            kernel: copy_name(generation, "kernel", &entry.kernel)?,
            initrd: entry
                .initrd
                .as_deref()
                .map(|p| copy_name(generation, "initrd", p))
                .transpose()?,
        });
    }
    if !seen.contains(&spec.default) {
        return Err(BootError::NoDefault(spec.default));
    }
    planned.sort_by_key(|p| std::cmp::Reverse(p.entry.generation));
    Ok(planned)
}

/// The name of a file's copy: the store path's base name and the file's path inside it,
/// joined by `-` (`<hash>-linux-6.6-boot-vmlinuz`); characters a FAT filesystem (the EFI
/// system partition) refuses become `_`.
fn copy_name(generation: u32, what: &'static str, path: &Path) -> Result<String, BootError> {
    let not_in_store = || BootError::NotInStore {
        generation,
        what,
        path: path.to_owned(),
    };
    let mut parts: Vec<&OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => parts.push(s),
            Component::ParentDir => return Err(not_in_store()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let start = (2..parts.len())
        .find(|&i| {
            parts[i - 2] == "nexis"
                && parts[i - 1] == "store"
                && parts[i]
                    .to_str()
                    .is_some_and(|base| StorePath::from_base_name(base).is_ok())
        })
        .ok_or_else(not_in_store)?;
    let name = parts[start..]
        .iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join("-");
    Ok(name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+-._=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect())
}

/// Whether a name in `nexis/` is a copy nexis made: a store hash part, then `-`.
fn is_copy_name(name: &str) -> bool {
    name.len() > HASH_CHARS
        && name.as_bytes()[HASH_CHARS] == b'-'
        && name.as_bytes()[..HASH_CHARS]
            .iter()
            .all(|b| BASE32_ALPHABET.contains(b))
}

fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TMP_SUFFIX)
}

/// The generation number of a `nexis-generation-N.conf` entry file.
fn bls_generation(name: &str) -> Option<u32> {
    let n = name
        .strip_prefix("nexis-generation-")?
        .strip_suffix(".conf")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

fn bls_name(generation: u32) -> String {
    format!("nexis-generation-{generation}.conf")
}

fn title(entry: &BootEntry) -> String {
    format!(
        "NexisOS — generation {} ({})",
        entry.generation,
        utc(entry.created)
    )
}

/// Where the boot folder's files are as GRUB sees them: GRUB reads paths from the root
/// of the filesystem that holds `grub/`. When the boot folder is its own filesystem
/// (a mount point) that is the folder itself (`/nexis/…`); otherwise it is a folder
/// (`/boot`) of the root filesystem (`/boot/nexis/…`).
fn grub_prefix(boot_dir: &Path) -> String {
    let own_fs = match (fs::metadata(boot_dir), fs::metadata(boot_dir.join(".."))) {
        (Ok(dir), Ok(parent)) => {
            dir.dev() != parent.dev() || dir.ino() == parent.ino() // a mount, or `/`
        }
        _ => false,
    };
    match boot_dir.file_name() {
        Some(name) if !own_fs => format!("/{}", name.to_string_lossy()),
        _ => String::new(),
    }
}

/// `grub.cfg`: entries newest first, the default chosen by its `--id`.
fn grub_cfg(spec: &BootSpec, entries: &[Planned<'_>], prefix: &str) -> String {
    let mut out = String::from(
        "# Written by nexis at every switch; changes here are lost.\n\
         # Put entries of your own in custom.cfg beside this file.\n",
    );
    let _ = writeln!(out, "set timeout={}", spec.timeout);
    let _ = writeln!(out, "set default=nexis-generation-{}", spec.default);
    for e in entries {
        let _ = write!(
            out,
            "\nmenuentry {} --id nexis-generation-{} {{\n\tlinux {}",
            grub_word(&title(e.entry)),
            e.entry.generation,
            grub_word(&format!("{prefix}/{COPIES}/{}", e.kernel)),
        );
        for param in kernel_params(e.entry) {
            let _ = write!(out, " {}", grub_word(&param));
        }
        out.push('\n');
        if let Some(initrd) = &e.initrd {
            let _ = writeln!(
                out,
                "\tinitrd {}",
                grub_word(&format!("{prefix}/{COPIES}/{initrd}"))
            );
        }
        out.push_str("}\n");
    }
    out.push_str(
        "\nif [ -f \"${config_directory}/custom.cfg\" ]; then\n\
         \tsource \"${config_directory}/custom.cfg\"\n\
         fi\n",
    );
    out
}

fn kernel_params(entry: &BootEntry) -> impl Iterator<Item = String> + '_ {
    std::iter::once(format!("init={}/init", entry.toplevel)).chain(entry.params.iter().cloned())
}

/// One word for GRUB's script syntax: as it is when it has only plain characters, else
/// in single quotes (in which nothing is special; a `'` is written `'\''`).
fn grub_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._=/:,@%".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The Boot Loader Specification files: one entry per generation, then `loader.conf`
/// (its lines other than `default` and `timeout` are kept).
fn bls_files(
    boot_dir: &Path,
    spec: &BootSpec,
    entries: &[Planned<'_>],
) -> Result<Vec<Config>, BootError> {
    let loader = boot_dir.join("loader");
    let mut files = Vec::new();
    for e in entries {
        let mut text = format!(
            "title {}\nversion {}\nsort-key nexis\nlinux /{COPIES}/{}\n",
            title(e.entry),
            e.entry.generation,
            e.kernel
        );
        if let Some(initrd) = &e.initrd {
            let _ = writeln!(text, "initrd /{COPIES}/{initrd}");
        }
        let options: Vec<String> = kernel_params(e.entry).collect();
        let _ = writeln!(text, "options {}", options.join(" "));
        files.push(Config {
            path: loader.join("entries").join(bls_name(e.entry.generation)),
            bytes: text.into_bytes(),
        });
    }
    let conf = loader.join("loader.conf");
    let old = match fs::read_to_string(&conf) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_at("read", &conf)(e)),
    };
    let mut text = format!(
        "{LOADER_CONF_HEADER}\ndefault {}\ntimeout {}\n",
        bls_name(spec.default),
        spec.timeout
    );
    for line in old.lines() {
        let key = line.split_whitespace().next();
        if line != LOADER_CONF_HEADER && key != Some("default") && key != Some("timeout") {
            text.push_str(line);
            text.push('\n');
        }
    }
    files.push(Config {
        path: conf,
        bytes: text.into_bytes(),
    });
    Ok(files)
}

/// Refuse when the files and new folders, each rounded up to whole blocks, plus
/// [`MARGIN`] do not fit in the free space of the boot filesystem.
fn check_space(
    boot_dir: &Path,
    sizes: impl Iterator<Item = u64>,
    new_dirs: &BTreeSet<&Path>,
) -> Result<(), BootError> {
    // The boot folder itself may not exist yet: ask its nearest existing ancestor.
    let probe = boot_dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(boot_dir);
    let st =
        rustix::fs::statvfs(probe).map_err(|e| io_at("read the free space of", probe)(e.into()))?;
    let block = st.f_frsize.max(1);
    let dirs = new_dirs.iter().filter(|d| !d.exists()).count() as u64;
    let needed = sizes.map(|s| s.div_ceil(block) * block).sum::<u64>() + dirs * block + MARGIN;
    let available = st.f_bavail.saturating_mul(st.f_frsize);
    if needed > available {
        return Err(BootError::NoSpace {
            boot_dir: boot_dir.to_owned(),
            needed,
            available,
        });
    }
    Ok(())
}

fn is_file(path: &Path) -> Result<bool, BootError> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(m.is_file()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_at("read", path)(e)),
    }
}

/// Copy `source` to `dest` through a temporary file (synced, renamed); the bytes copied.
/// The caller syncs the folder.
fn copy_in(source: &Path, dest: &Path) -> Result<u64, BootError> {
    let tmp = temp_beside(dest);
    let copied = copy_to(source, &tmp).and_then(|n| {
        fs::rename(&tmp, dest).map_err(io_at("rename into place", dest))?;
        Ok(n)
    });
    if copied.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    copied
}

fn copy_to(source: &Path, tmp: &Path) -> Result<u64, BootError> {
    let mut from = fs::File::open(source).map_err(io_at("read", source))?;
    let mut to = fs::File::create(tmp).map_err(io_at("create", tmp))?;
    let n = io::copy(&mut from, &mut to).map_err(io_at("write", tmp))?;
    to.sync_all().map_err(io_at("sync", tmp))?;
    Ok(n)
}

/// Write a file through a temporary one (synced, renamed), then sync its folder.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BootError> {
    fsutil::write_atomic(path, bytes).map_err(io_at("write", path))
}

fn sync_dir(dir: &Path) -> Result<(), BootError> {
    fsutil::sync_dir(dir).map_err(io_at("sync", dir))
}

/// Remove what nexis made and no kept entry uses: entry files of other generations,
/// copies, temporaries.
fn remove_stale(
    boot_dir: &Path,
    generations: &BTreeSet<u32>,
    copies: &BTreeSet<&str>,
    report: &mut BootReport,
) -> Result<(), BootError> {
    // Entries first, so that no entry ever names a removed copy.
    remove_in(&boot_dir.join("loader/entries"), report, |name| {
        bls_generation(name).is_some_and(|n| !generations.contains(&n))
            || (is_temp_name(name) && name.starts_with(".nexis-generation-"))
    })?;
    remove_in(&boot_dir.join("loader"), report, |name| {
        name == ".loader.conf.nexis-tmp"
    })?;
    remove_in(&boot_dir.join("grub"), report, |name| {
        name == ".grub.cfg.nexis-tmp"
    })?;
    remove_in(&boot_dir.join(COPIES), report, |name| {
        is_temp_name(name) || (is_copy_name(name) && !copies.contains(name))
    })
}

/// Remove the files of `dir` whose names are `stale`, in name order; then sync `dir`.
fn remove_in(
    dir: &Path,
    report: &mut BootReport,
    stale: impl Fn(&str) -> bool,
) -> Result<(), BootError> {
    let listing = match fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_at("read", dir)(e)),
    };
    let mut doomed = Vec::new();
    for item in listing {
        let item = item.map_err(io_at("read", dir))?;
        if item.file_name().to_str().is_some_and(&stale) && is_file(&item.path())? {
            doomed.push(item.path());
        }
    }
    if doomed.is_empty() {
        return Ok(());
    }
    doomed.sort();
    for path in doomed {
        fs::remove_file(&path).map_err(io_at("remove", &path))?;
        report.removed.push(path);
    }
    sync_dir(dir)
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM` (UTC).
pub fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_grub() {
        assert_eq!(grub_word("quiet"), "quiet");
        assert_eq!(grub_word("console=ttyS0,115200"), "console=ttyS0,115200");
        assert_eq!(grub_word("a b"), "'a b'");
        assert_eq!(grub_word("x=$y"), "'x=$y'");
        assert_eq!(grub_word("it's"), r"'it'\''s'");
        assert_eq!(grub_word(""), "''");
        assert_eq!(grub_word("/nexis/store/x?y"), "'/nexis/store/x?y'");
    }

    #[test]
    fn sizes_and_dates() {
        assert_eq!(human_bytes(812), "812 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(1_700_000_123), "2023-11-14 22:15");
    }

    #[test]
    fn names_of_copies() {
        let hash = "0123456789abcdfghijklmnpqrsvwxyz";
        let path = PathBuf::from(format!("/r/nexis/store/{hash}-linux-6.6/boot/vmlinuz?x"));
        assert_eq!(
            copy_name(1, "kernel", &path).unwrap(),
            format!("{hash}-linux-6.6-boot-vmlinuz_x")
        );
        assert!(is_copy_name(&format!("{hash}-linux-6.6-bzImage")));
        assert!(!is_copy_name("README"));
        assert!(matches!(
            copy_name(1, "kernel", Path::new("/boot/vmlinuz")),
            Err(BootError::NotInStore { .. })
        ));
        assert_eq!(bls_generation("nexis-generation-12.conf"), Some(12));
        assert_eq!(bls_generation("nexis-generation-.conf"), None);
        assert_eq!(bls_generation("nexis-generation-+1.conf"), None);
    }
}
