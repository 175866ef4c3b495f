//! The system pipeline the frontends share: configuration → lock and fetch → resolve →
//! derivations → substitutes → builds. `nexis build` calls it now; `nexis switch` and
//! `nexis-iso` build on it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use nexis_config::{BuildConfig, EvalError, Evaluation, Spanned, StoreSettings};
use nexis_fetch::{LOCK_FILE, Lock, LockedSource, Substituter};
use nexis_store::{DbError, Store, StorePath, SubstituteReport, Trust};
use petgraph::graph::NodeIndex;

use crate::builder::BuildSettings;
use crate::loader::{FsLoader, InputProgress, Inputs, InputsError, LockMode, read_lock};
use crate::recipe::{Plan, PlanError, PlanSettings, plan};
use crate::schedule::{BuildEvent, BuildReport, ScheduleError, ScheduleOptions, build_graph};

/// A step of the pipeline failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// `nexis.lock` could not be read.
    #[error(transparent)]
    Inputs(#[from] InputsError),
    /// `nexis.lock` could not be written.
    #[error("cannot write {}", path.display())]
    WriteLock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The derivations could not be made.
    #[error("cannot plan the build")]
    Plan(#[from] PlanError),
    /// A package named on the command line is not in the configuration (or is in it
    /// under several inputs).
    #[error("no package `{name}` in the configuration{}", if candidates.is_empty() { String::new() } else { format!(" (several match: {})", candidates.join(", ")) })]
    UnknownPackage {
        /// The name given.
        name: String,
        /// The package ids it could mean, when several.
        candidates: Vec<String>,
    },
    /// The store's database failed.
    #[error("reading the store's database")]
    Db(#[from] DbError),
    /// A trusted public key of `[store]` does not parse.
    #[error("`{key}` in [store] trusted-public-keys")]
    TrustedKey {
        /// The key as written.
        key: String,
        /// Why.
        #[source]
        source: nexis_store::SignError,
    },
    /// The outputs could not be made temporary GC roots.
    #[error("recording the outputs as temporary roots")]
    TempRoots(#[source] Box<nexis_store::StoreError>),
    /// The builds could not be scheduled.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

/// A configuration evaluated with its inputs fetched through `nexis.lock`. The lock it
/// leads to is written only by [`Evaluated::write_lock`], so a caller can refuse the
/// evaluation first.
#[derive(Debug)]
pub struct Evaluated {
    /// The evaluated configuration.
    pub evaluation: Evaluation,
    inputs: Inputs,
}

/// Evaluate the configuration at `config` with the inputs other than `path:` fetched
/// into the store at `root` through the lock beside it, in `mode`. `base` reads the
/// files (it may stand in an edited text for one). The outer error is the lock's, the
/// inner one the configuration's.
pub fn evaluate_with_inputs(
    base: FsLoader,
    root: &Path,
    config: &Path,
    mode: LockMode,
    progress: Option<InputProgress>,
) -> Result<Result<Evaluated, EvalError>, PipelineError> {
    let mut inputs = Inputs::new(root, config, mode)?;
    if let Some(progress) = progress {
        inputs = inputs.with_progress(progress);
    }
    let loader = base.fetching(inputs);
    let evaluation = match nexis_config::evaluate(&loader, config) {
        Ok(e) => e,
        Err(e) => return Ok(Err(e)),
    };
    let inputs = loader.into_inputs().expect("set above");
    Ok(Ok(Evaluated { evaluation, inputs }))
}

impl Evaluated {
    /// Write the lock this evaluation leads to when it differs from the file (no file is
    /// made for a configuration with nothing to lock); the changes, as lines
    /// (`added core (…)`, `updated core: OLD → NEW`, `removed old`).
    pub fn write_lock(&self) -> Result<Vec<String>, PipelineError> {
        let (new, old) = self.inputs.locks();
        let file = self.inputs.lock_file();
        if new == *old || (!file.exists() && new.inputs.is_empty()) {
            return Ok(Vec::new());
        }
        write_file_atomic(file, &new.to_text()).map_err(|source| PipelineError::WriteLock {
            path: file.to_owned(),
            source,
        })?;
        Ok(new.changes_from(old))
    }

    /// The lock file.
    pub fn lock_file(&self) -> &Path {
        self.inputs.lock_file()
    }
}

/// Replace `path` with `text` atomically: a temporary file in the same folder with the
/// original's permissions, flushed to disk, renamed over the original, and the folder
/// synced.
pub fn write_file_atomic(path: &Path, text: &str) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".nexis-edit-")
        .tempfile_in(dir)?;
    if let Ok(meta) = fs::metadata(path) {
        tmp.as_file().set_permissions(meta.permissions())?;
    }
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Make the rename itself durable. Not every filesystem can sync a folder; the new
    // content is in place either way.
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The derivations of an evaluated system: its `[build]` settings, and each git input's
/// commit time from the lock beside `config` as `SOURCE_DATE_EPOCH`.
pub fn plan_system(
    store: &Store,
    evaluation: &Evaluation,
    config: &Path,
    fetcher: Option<&nexis_fetch::Fetcher<'_>>,
) -> Result<Plan, PipelineError> {
    let lock = read_lock(&config.with_file_name(LOCK_FILE))?;
    let settings = PlanSettings {
        extra_sandbox_paths: evaluation
            .spec
            .build
            .extra_sandbox_paths
            .iter()
            .map(|p| p.value.clone())
            .collect(),
        source_dates: source_dates(&lock),
    };
    Ok(plan(store, &evaluation.packages, &settings, fetcher)?)
}

/// The commit time of each git input of `lock`.
fn source_dates(lock: &Lock) -> BTreeMap<String, i64> {
    lock.inputs
        .iter()
        .filter_map(|(name, input)| {
            if let LockedSource::Git { last_modified, .. } = input.source {
                Some((name.clone(), last_modified))
            } else {
                None
            }
        })
        .collect()
}

/// The nodes to build: the packages named (by id, `local#hello`, or by a name that one
/// package has), or, when none is named, every package the system asks for.
pub fn wanted_packages(
    evaluation: &Evaluation,
    plan: &Plan,
    names: &[String],
) -> Result<Vec<NodeIndex>, PipelineError> {
    if names.is_empty() {
        return Ok(evaluation
            .packages
            .roots
            .keys()
            .filter_map(|id| plan.nodes.get(id).copied())
            .collect());
    }
    let mut wanted = Vec::new();
    for name in names {
        if let Some(&n) = plan.nodes.get(name) {
            wanted.push(n);
            continue;
        }
        let matching: Vec<&String> = plan
            .nodes
            .keys()
            .filter(|id| id.rsplit_once('#').is_some_and(|(_, n)| n == name))
            .collect();
        match matching.as_slice() {
            [id] => wanted.push(plan.nodes[*id]),
            _ => {
                return Err(PipelineError::UnknownPackage {
                    name: name.clone(),
                    candidates: matching.into_iter().cloned().collect(),
                });
            }
        }
    }
    Ok(wanted)
}

/// The scheduling options: the command line's, else the configuration's `[build]`, else
/// the number of cores.
pub fn schedule_options(
    config: &BuildConfig,
    max_jobs: Option<usize>,
    cores: Option<usize>,
    keep_going: bool,
) -> ScheduleOptions {
    let available = std::thread::available_parallelism().map_or(1, usize::from);
    let pick = |arg: Option<usize>, conf: Option<&Spanned<u32>>| {
        arg.or(conf.map(|c| c.value as usize))
            .unwrap_or(available)
            .max(1)
    };
    ScheduleOptions {
        max_jobs: pick(max_jobs, config.max_jobs.as_ref()),
        keep_going,
        settings: BuildSettings {
            cores: pick(cores, config.cores.as_ref()),
            timeout: None,
        },
    }
}

/// The output paths `wanted` needs, themselves included, in no particular order.
pub fn closure_outputs(plan: &Plan, wanted: &[NodeIndex]) -> Vec<StorePath> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<NodeIndex> = wanted.to_vec();
    let mut outputs = Vec::new();
    while let Some(n) = stack.pop() {
        if seen.insert(n) {
            stack.extend(plan.graph.neighbors(n));
            if let Ok(out) = plan.graph[n].output_path() {
                outputs.push(out);
            }
        }
    }
    outputs
}

/// The outputs `wanted` needs (themselves included): those that are not valid, and
/// those that are, each sorted.
pub fn outputs_needed(
    store: &Store,
    plan: &Plan,
    wanted: &[NodeIndex],
) -> Result<(Vec<StorePath>, Vec<StorePath>), PipelineError> {
    let outputs = closure_outputs(plan, wanted);
    let (mut missing, mut valid) = (Vec::new(), Vec::new());
    store.with_db(|db| {
        for out in outputs {
            if db.is_valid(&out)? {
                valid.push(out);
            } else {
                missing.push(out);
            }
        }
        Ok::<_, DbError>(())
    })?;
    missing.sort();
    valid.sort();
    Ok((missing, valid))
}

/// Ask the binary caches of `[store]` for the outputs `wanted` needs that are not valid
/// (with their closures). `None` when no cache is configured or nothing is missing. A
/// cache that fails is an error here; callers build instead.
pub fn substitute_outputs(
    store: &Store,
    plan: &Plan,
    wanted: &[NodeIndex],
    settings: &StoreSettings,
    warn: &dyn Fn(&str),
) -> Result<Option<Result<SubstituteReport, Box<nexis_fetch::SubstituteError>>>, PipelineError> {
    if settings.substituters.is_empty() {
        return Ok(None);
    }
    let (missing, _) = outputs_needed(store, plan, wanted)?;
    if missing.is_empty() {
        return Ok(None);
    }
    let mut keys = Vec::new();
    for k in &settings.trusted_public_keys {
        keys.push(nexis_store::PublicKey::parse(&k.value).map_err(|source| {
            PipelineError::TrustedKey {
                key: k.value.clone(),
                source,
            }
        })?);
    }
    let trust = Trust {
        keys,
        require_signatures: settings.require_signatures,
    };
    let urls: Vec<&str> = settings
        .substituters
        .iter()
        .map(|u| u.value.as_str())
        .collect();
    Ok(Some(Substituter::new(&urls).map_err(Box::new).and_then(
        |s| {
            s.substitute(store, &missing, &trust, warn)
                .map_err(Box::new)
        },
    )))
}

/// Which of `paths` the binary caches of `[store]` have (by their info files; nothing
/// is downloaded), in order. A cache that is down costs one `warn`ing.
pub fn substitutable(
    paths: &[StorePath],
    settings: &StoreSettings,
    warn: &dyn Fn(&str),
) -> Vec<StorePath> {
    use nexis_store::CacheSource as _;
    if settings.substituters.is_empty() || paths.is_empty() {
        return Vec::new();
    }
    let urls: Vec<&str> = settings
        .substituters
        .iter()
        .map(|u| u.value.as_str())
        .collect();
    let Ok(substituter) = Substituter::new(&urls) else {
        return Vec::new();
    };
    let mut caches = substituter.caches(warn);
    paths
        .iter()
        .filter(|p| matches!(caches.info(p), Ok(Some(_))))
        .cloned()
        .collect()
}

/// What [`build_system`] did.
#[derive(Debug)]
pub struct SystemBuild {
    /// The derivations.
    pub plan: Plan,
    /// The nodes asked for, in order.
    pub wanted: Vec<NodeIndex>,
    /// Outputs substituted from binary caches.
    pub substituted: Vec<StorePath>,
    /// The builds.
    pub report: BuildReport,
}

/// How [`build_system`] reports.
pub struct SystemEvents<'a> {
    /// Before the builds start: the plan, and how many outputs will be built.
    pub planned: &'a dyn Fn(&Plan, usize),
    /// A warning (a cache that is down, substitution refused).
    pub warn: &'a dyn Fn(&str),
    /// Each build event.
    pub build: &'a (dyn Fn(BuildEvent<'_>) + Sync),
}

impl std::fmt::Debug for SystemEvents<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SystemEvents")
    }
}

/// Plan the system evaluated from `config`, substitute what the caches have (unless
/// `substitute` is false), and build the rest of what `packages` (or the whole
/// system) needs.
pub fn build_system(
    store: &Store,
    evaluation: &Evaluation,
    config: &Path,
    packages: &[String],
    options: &ScheduleOptions,
    substitute: bool,
    events: &SystemEvents<'_>,
) -> Result<SystemBuild, PipelineError> {
    let fetcher = nexis_fetch::Fetcher::new(store);
    let plan = plan_system(store, evaluation, config, Some(&fetcher))?;
    let wanted = wanted_packages(evaluation, &plan, packages)?;
    // Every output this run needs is a temporary root before its validity is looked at,
    // so a collection running meanwhile keeps what is valid (and what gets built).
    store
        .add_temp_roots(&closure_outputs(&plan, &wanted))
        .map_err(|e| PipelineError::TempRoots(Box::new(e)))?;
    let mut substituted = Vec::new();
    if substitute {
        match substitute_outputs(store, &plan, &wanted, &evaluation.spec.store, events.warn)? {
            Some(Ok(report)) => substituted = report.substituted,
            Some(Err(e)) => (events.warn)(&format!(
                "substituting: {}; building instead",
                nexis_store::error_chain(&e)
            )),
            None => {}
        }
    }
    let (missing, _) = outputs_needed(store, &plan, &wanted)?;
    (events.planned)(&plan, missing.len());
    let report = build_graph(store, &plan.graph, &wanted, options, events.build)?;
    Ok(SystemBuild {
        plan,
        wanted,
        substituted,
        report,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn atomic_writes_replace_the_content_and_keep_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nexis.toml");
        fs::write(&path, "old\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write_file_atomic(&path, "new\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
