//! Building one derivation: a scratch directory in the store's `.tmp/`, the sandbox, the
//! log, and registering the output.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufRead, Seek};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nexis_store::{AddError, DbError, Store, StorePath, remove_tree};

use crate::derivation::Derivation;
use crate::sandbox::{self, BUILD_DIR, SandboxError, SandboxSpec};

/// The `SOURCE_DATE_EPOCH` of a build whose derivation sets none: 1980-01-01, the
/// earliest time zip archives can hold.
pub const DEFAULT_SOURCE_DATE_EPOCH: &str = "315532800";

/// How many lines of a failed build's log an error shows.
const TAIL_LINES: usize = 25;

/// Settings of a build that do not change its output (and so are not in the derivation).
#[derive(Debug, Clone)]
pub struct BuildSettings {
    /// `NEXIS_BUILD_CORES`: how many cores one build may use.
    pub cores: usize,
    /// Kill a build after this long.
    pub timeout: Option<Duration>,
}

impl Default for BuildSettings {
    fn default() -> BuildSettings {
        BuildSettings {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            timeout: None,
        }
    }
}

/// A build failed; nothing was registered.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The builder exited unsuccessfully.
    #[error("building {path} failed ({status}); the last lines of its log:\n{tail}\nthe full log: {}", log.display())]
    Failed {
        /// The output path it was to build.
        path: StorePath,
        /// The exit status.
        status: String,
        /// The last lines of the log.
        tail: String,
        /// The log file.
        log: PathBuf,
    },
    /// The builder succeeded but left `$out` empty.
    #[error("building {path} produced nothing: the builder must write its files into $out; its log: {}", log.display())]
    NoOutput {
        /// The output path.
        path: StorePath,
        /// The log file.
        log: PathBuf,
    },
    /// A fixed-output build gave another tree than its derivation promises.
    #[error("building {path}: the output's hash is {got}, but the recipe says {expected}")]
    HashMismatch {
        /// The output path.
        path: StorePath,
        /// The hash the derivation gives.
        expected: String,
        /// The hash of what was built.
        got: String,
    },
    /// The sandbox could not be set up, or the build timed out.
    #[error("building {path}")]
    Sandbox {
        /// The output path.
        path: StorePath,
        /// Why.
        #[source]
        source: SandboxError,
    },
    /// The store failed.
    #[error("building {path}: the store")]
    Store {
        /// The output path.
        path: StorePath,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The output names store paths that are not among its build's inputs.
    #[error(
        "building {path}: the output names store paths that are not its inputs (hash parts {hashes}); a build may only refer to what it was given"
    )]
    ForeignReferences {
        /// The output path.
        path: StorePath,
        /// The hash parts named, comma-separated.
        hashes: String,
    },
    /// The output names the build folder, which is gone once the build ends.
    #[error(
        "building {path}: its file {file} names the build folder ({BUILD_DIR}/…), which is gone after the build; install with the output as the prefix ($out), or remove the reference"
    )]
    BuildDirReference {
        /// The output path.
        path: StorePath,
        /// The first file naming it, relative to the output.
        file: String,
    },
    /// `--check` of an output that was never built.
    #[error("{path} is not built yet: there is nothing to check it against")]
    NotBuilt {
        /// The output path.
        path: StorePath,
    },
    /// The output path cannot be formed (the name is not a valid store path name).
    #[error("derivation {name}-{version}: {source}")]
    Path {
        /// Package name.
        name: String,
        /// Package version.
        version: String,
        /// Why.
        #[source]
        source: nexis_store::PathError,
    },
    /// Writing the scratch directory or the log failed.
    #[error("building {path}: {}", at.display())]
    Io {
        /// The output path.
        path: StorePath,
        /// The file or directory.
        at: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// What building one derivation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The output path.
    pub path: StorePath,
    /// It was valid already: nothing ran.
    pub already_valid: bool,
    /// Its references.
    pub references: BTreeSet<StorePath>,
}

/// Where the log of the build of `path` is kept: `STATE/log/<hash part>.log`, compressed
/// to `.log.zst` when the build ends.
pub fn log_file(store: &Store, path: &StorePath) -> PathBuf {
    store
        .state_dir()
        .join("log")
        .join(format!("{}.log", path.hash_part()))
}

/// Read the log of the build of `path`, if there is one.
pub fn read_log(store: &Store, path: &StorePath) -> io::Result<Option<Vec<u8>>> {
    let plain = log_file(store, path);
    let mut zst = plain.clone().into_os_string();
    zst.push(".zst");
    match fs::read(&zst) {
        Ok(bytes) => return zstd::decode_all(&bytes[..]).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match fs::read(&plain) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Build `drv` in the sandbox unless its output is valid already, and register the output.
///
/// The output's build lock is held throughout, so another process that wants the same
/// output waits and then finds it valid. The inputs must be valid (the scheduler builds
/// them first).
pub fn build(
    store: &Store,
    drv: &Derivation,
    settings: &BuildSettings,
) -> Result<Built, BuildError> {
    let path = output_of(drv)?;
    let store_err = |e: Box<dyn std::error::Error + Send + Sync>| BuildError::Store {
        path: path.clone(),
        source: e,
    };
    if let Some(built) = valid(store, &path).map_err(|e| store_err(Box::new(e)))? {
        return Ok(built);
    }
    let _lock = store
        .lock_build(&path)
        .map_err(|e| store_err(Box::new(e)))?;
    if let Some(built) = valid(store, &path).map_err(|e| store_err(Box::new(e)))? {
        return Ok(built);
    }
    let scratch = store.temp_dir().map_err(|e| store_err(Box::new(e)))?;
    let result = build_in(store, drv, &path, &scratch, settings);
    let _ = remove_tree(&scratch);
    result
}

/// The output path of `drv`, or why it has none.
fn output_of(drv: &Derivation) -> Result<StorePath, BuildError> {
    drv.output_path().map_err(|source| BuildError::Path {
        name: drv.name.clone(),
        version: drv.version.clone(),
        source,
    })
}

/// The output, if it is valid.
fn valid(store: &Store, path: &StorePath) -> Result<Option<Built>, DbError> {
    Ok(store.with_db(|db| db.query(path))?.map(|info| Built {
        path: path.clone(),
        already_valid: true,
        references: info.references,
    }))
}

fn build_in(
    store: &Store,
    drv: &Derivation,
    path: &StorePath,
    scratch: &Path,
    settings: &BuildSettings,
) -> Result<Built, BuildError> {
    let log_path = log_file(store, path);
    let (out_dir, closure, _) = run_in(store, drv, path, scratch, settings, &log_path)?;
    let (added, references) = store
        .add_output(&out_dir, path, &closure, &drv.runtime_deps)
        .map_err(|e: AddError| BuildError::Store {
            path: path.clone(),
            source: Box::new(e),
        })?;
    Ok(Built {
        path: added.path,
        already_valid: added.already_valid,
        references,
    })
}

/// Run the build of `drv` in `scratch` with its log at `log_path`: the output folder
/// (not registered), the inputs' closure, and the compressed log.
fn run_in(
    store: &Store,
    drv: &Derivation,
    path: &StorePath,
    scratch: &Path,
    settings: &BuildSettings,
    log_path: &Path,
) -> Result<(PathBuf, BTreeSet<StorePath>, PathBuf), BuildError> {
    let io_err = |at: &Path| {
        let at = at.to_owned();
        move |source| BuildError::Io {
            path: path.clone(),
            at,
            source,
        }
    };
    let store_err = |e: Box<dyn std::error::Error + Send + Sync>| BuildError::Store {
        path: path.clone(),
        source: e,
    };
    let out_dir = scratch.join("out");
    let build_dir = scratch.join("build");
    for dir in [&out_dir, &build_dir] {
        fs::create_dir(dir).map_err(io_err(dir))?;
    }
    let log_dir = log_path.parent().expect("the log has a folder");
    fs::create_dir_all(log_dir).map_err(io_err(log_dir))?;
    let log = File::create(log_path).map_err(io_err(log_path))?;

    // The inputs' closure is what the sandbox shows of the store.
    let inputs: Vec<StorePath> = drv.inputs().cloned().collect();
    let closure = store
        .with_db(|db| db.closure(&inputs))
        .map_err(|e| store_err(Box::new(e)))?;
    let mut spec = SandboxSpec::new(
        &drv.builder,
        &build_dir,
        log.try_clone().map_err(io_err(log_path))?,
    );
    spec.args = drv.args.iter().map(OsString::from).collect();
    spec.env = environment(drv, path, settings)
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    spec.store_dir = PathBuf::from(nexis_store::STORE_DIR);
    spec.inputs = closure
        .iter()
        .map(|p| (store.physical(p), PathBuf::from(p.to_string())))
        .collect();
    spec.outputs = vec![(out_dir.clone(), PathBuf::from(path.to_string()))];
    spec.extra_paths = drv
        .extra_sandbox_paths
        .iter()
        .map(|p| (PathBuf::from(p), PathBuf::from(p)))
        .collect();
    spec.network = drv.fixed_output.is_some();
    spec.timeout = settings.timeout;
    let outcome = sandbox::run(&spec).map_err(|source| BuildError::Sandbox {
        path: path.clone(),
        source,
    })?;
    drop(spec);
    if !outcome.success() {
        drop(log);
        let tail = tail(log_path, TAIL_LINES);
        let log = compress_log(log_path).unwrap_or_else(|_| log_path.to_owned());
        return Err(BuildError::Failed {
            path: path.clone(),
            status: describe(outcome.status),
            tail,
            log,
        });
    }
    drop(log);
    let log_path = compress_log(log_path).unwrap_or_else(|_| log_path.to_owned());
    let empty = fs::read_dir(&out_dir)
        .map_err(io_err(&out_dir))?
        .next()
        .is_none();
    if empty {
        return Err(BuildError::NoOutput {
            path: path.clone(),
            log: log_path,
        });
    }
    if let Some(expected) = &drv.fixed_output {
        let got = nexis_store::hash_path(&out_dir).map_err(|e| store_err(Box::new(e)))?;
        let got = format!("blake3-{}", base64_std(&got.hash));
        if &got != expected {
            return Err(BuildError::HashMismatch {
                path: path.clone(),
                expected: expected.clone(),
                got,
            });
        }
    }
    // The sandbox shows only the closure: a store path outside it in the output came
    // from somewhere else (a source, the network) and would dangle. So would the build
    // folder, gone after the build (a fixed-output path is checked by its hash instead).
    let mut allowed = closure.clone();
    allowed.insert(path.clone());
    let leaks = crate::foreign::leaks(&out_dir, &allowed, BUILD_DIR).map_err(io_err(&out_dir))?;
    if !leaks.foreign.is_empty() {
        return Err(BuildError::ForeignReferences {
            path: path.clone(),
            hashes: leaks.foreign.into_iter().collect::<Vec<_>>().join(", "),
        });
    }
    if let (Some(file), None) = (leaks.build_dir, &drv.fixed_output) {
        return Err(BuildError::BuildDirReference {
            path: path.clone(),
            file,
        });
    }
    Ok((out_dir, closure, log_path))
}

/// Standard base64 with padding (the SRI form's digest).
fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The builder's whole environment: the fixed variables, then the derivation's own.
fn environment(
    drv: &Derivation,
    path: &StorePath,
    settings: &BuildSettings,
) -> Vec<(String, String)> {
    let mut bins: Vec<String> = drv
        .deps
        .iter()
        .chain(&drv.runtime_deps)
        .map(|d| format!("{d}/bin"))
        .collect();
    for p in &drv.extra_sandbox_paths {
        if p.ends_with("/bin") {
            bins.push(p.clone());
        } else {
            bins.push(format!("{}/bin", p.trim_end_matches('/')));
        }
    }
    let out = path.to_string();
    let mut env = vec![
        ("PATH".to_owned(), bins.join(":")),
        ("HOME".to_owned(), "/homeless-shelter".to_owned()),
        ("TMPDIR".to_owned(), BUILD_DIR.to_owned()),
        ("TMP".to_owned(), BUILD_DIR.to_owned()),
        ("TEMP".to_owned(), BUILD_DIR.to_owned()),
        ("TZ".to_owned(), "UTC".to_owned()),
        ("LC_ALL".to_owned(), "C.UTF-8".to_owned()),
        (
            "SOURCE_DATE_EPOCH".to_owned(),
            DEFAULT_SOURCE_DATE_EPOCH.to_owned(),
        ),
        ("NEXIS_BUILD_CORES".to_owned(), settings.cores.to_string()),
        ("NEXIS_STORE".to_owned(), nexis_store::STORE_DIR.to_owned()),
        ("out".to_owned(), out.clone()),
        ("prefix".to_owned(), out),
    ];
    for (k, v) in &drv.env {
        match env.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1.clone_from(v),
            None => env.push((k.clone(), v.clone())),
        }
    }
    env
}

/// An exit status in words.
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// The last `n` lines of the file at `path` (indented), or a note that it is unreadable.
fn tail(path: &Path, n: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return "  (the log cannot be read)".to_owned();
    };
    // The end is enough: seek back at most 64 KiB.
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(io::SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let lines: Vec<String> = io::BufReader::new(file)
        .split(b'\n')
        .map_while(Result::ok)
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .collect();
    let start = lines.len().saturating_sub(n);
    if lines.is_empty() {
        return "  (the log is empty)".to_owned();
    }
    lines[start..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Compress the log at `path` to `path.zst` and remove `path`; the new file.
fn compress_log(path: &Path) -> io::Result<PathBuf> {
    let mut zst = path.to_owned().into_os_string();
    zst.push(".zst");
    let zst = PathBuf::from(zst);
    let data = fs::read(path)?;
    let packed = zstd::encode_all(&data[..], 3)?;
    let tmp = path.with_extension("zst.tmp");
    fs::write(&tmp, packed)?;
    fs::rename(&tmp, &zst)?;
    fs::remove_file(path)?;
    Ok(zst)
}

/// What rebuilding a valid output found ([`check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The output path.
    pub path: StorePath,
    /// The rebuild gave the same tree (the same tree hash).
    pub identical: bool,
    /// Files (relative to the output) whose content, type or executable bit differ, or
    /// that only one of the two has; sorted. Empty when identical.
    pub differences: Vec<String>,
}

/// Rebuild `drv`, whose output must be valid, without registering anything, and compare
/// the result with the valid output: a reproducibility check. The rebuild's log is kept
/// beside the build's as `HASH.check.log.zst`.
pub fn check(
    store: &Store,
    drv: &Derivation,
    settings: &BuildSettings,
) -> Result<CheckReport, BuildError> {
    let path = output_of(drv)?;
    let store_err = |e: Box<dyn std::error::Error + Send + Sync>| BuildError::Store {
        path: path.clone(),
        source: e,
    };
    let info = store
        .with_db(|db| db.query(&path))
        .map_err(|e| store_err(Box::new(e)))?
        .ok_or_else(|| BuildError::NotBuilt { path: path.clone() })?;
    let scratch = store.temp_dir().map_err(|e| store_err(Box::new(e)))?;
    let log_path = log_file(store, &path).with_extension("check.log");
    let result = (|| {
        let (out_dir, _, _) = run_in(store, drv, &path, &scratch, settings, &log_path)?;
        let rebuilt = nexis_store::hash_path(&out_dir).map_err(|e| store_err(Box::new(e)))?;
        let identical = rebuilt.hash == info.tree_hash;
        let mut differences = Vec::new();
        if !identical {
            compare(
                &store.physical(&path),
                &out_dir,
                Path::new(""),
                &mut differences,
            )
            .map_err(|source| BuildError::Io {
                path: path.clone(),
                at: out_dir.clone(),
                source,
            })?;
            differences.sort();
        }
        Ok(CheckReport {
            path: path.clone(),
            identical,
            differences,
        })
    })();
    let _ = remove_tree(&scratch);
    result
}

/// Record in `out` the entries under `rel` that differ between the trees `a` and `b`.
fn compare(a: &Path, b: &Path, rel: &Path, out: &mut Vec<String>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let (ma, mb) = (fs::symlink_metadata(a), fs::symlink_metadata(b));
    let show = || {
        if rel.as_os_str().is_empty() {
            ".".to_owned()
        } else {
            rel.display().to_string()
        }
    };
    let (ma, mb) = match (ma, mb) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(_), Err(_)) => return Ok(()),
        _ => {
            out.push(show());
            return Ok(());
        }
    };
    if ma.is_dir() && mb.is_dir() {
        let mut names = BTreeSet::new();
        for dir in [a, b] {
            for entry in fs::read_dir(dir)? {
                names.insert(entry?.file_name());
            }
        }
        for name in names {
            compare(&a.join(&name), &b.join(&name), &rel.join(&name), out)?;
        }
        return Ok(());
    }
    let same = if ma.file_type().is_symlink() && mb.file_type().is_symlink() {
        fs::read_link(a)? == fs::read_link(b)?
    } else if ma.is_file() && mb.is_file() {
        (ma.permissions().mode() & 0o100) == (mb.permissions().mode() & 0o100)
            && ma.len() == mb.len()
            && fs::read(a)? == fs::read(b)?
    } else {
        false
    };
    if !same {
        out.push(show());
    }
    Ok(())
}
