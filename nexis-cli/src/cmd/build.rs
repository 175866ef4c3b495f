//! `nexis build`: build the system's packages, and `nexis log`: show a build's log.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use nexis_build::{
    BuildSettings, SystemEvents, build_graph, build_system, outputs_needed, plan_system,
    schedule_options, wanted_packages,
};
use nexis_fetch::Fetcher;
use nexis_store::{Store, StorePath, error_chain};

use crate::context::Context;
use crate::error::Error;

/// Build the system's packages (or the named ones) in the sandbox
#[derive(Debug, clap::Args)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent command-line flags"
)]
pub(crate) struct Args {
    /// Packages to build, by id (`local#hello`) or name; all of the system's when none
    packages: Vec<String>,
    /// Builds run at once (default: `[build] max-jobs`, else the number of cores)
    #[arg(long, short = 'j')]
    max_jobs: Option<usize>,
    /// Cores one build may use (default: `[build] cores`, else the number of cores)
    #[arg(long)]
    cores: Option<usize>,
    /// Go on with what does not depend on a failed build
    #[arg(long, short = 'k')]
    keep_going: bool,
    /// Show what would be built, build nothing
    #[arg(long)]
    dry_run: bool,
    /// Rebuild the named (or all) packages, already built, and report whether each
    /// output is bit-identical, naming the files that differ
    #[arg(long, conflicts_with = "dry_run")]
    check: bool,
    /// Do not make `result` links
    #[arg(long)]
    no_link: bool,
    /// Build everything here; do not ask the configured binary caches
    #[arg(long)]
    no_substitute: bool,
    /// Where the `result` links go (default: the current directory)
    #[arg(long, value_name = "DIR")]
    out_link_dir: Option<PathBuf>,
}

pub(crate) fn run(ctx: &Context, args: &Args) -> Result<ExitCode, Error> {
    let path = ctx.config_path()?;
    let evaluation = super::evaluate_config(ctx, &path)?;
    let store = Store::open(ctx.root()).map_err(|source| Error::Store { source })?;
    let options = schedule_options(
        &evaluation.spec.build,
        args.max_jobs,
        args.cores,
        args.keep_going,
    );
    if args.dry_run || args.check {
        let fetcher = Fetcher::new(&store);
        let planned = plan_system(&store, &evaluation, &path, Some(&fetcher))?;
        let wanted = wanted_packages(&evaluation, &planned, &args.packages)?;
        if args.dry_run {
            return dry_run(ctx, &store, &planned, &wanted, &evaluation.spec.store);
        }
        // What is checked must be built first.
        let report = build_graph(&store, &planned.graph, &wanted, &options, &|_| {})
            .map_err(nexis_build::PipelineError::from)?;
        if !report.success() {
            return Err(Error::BuildsFailed {
                failed: report.failed.len(),
                wanted: wanted.len(),
            });
        }
        return check(ctx, &store, &planned, &wanted, &options.settings);
    }

    let built = build_with_progress(
        ctx,
        &store,
        &evaluation,
        &path,
        &args.packages,
        &options,
        !args.no_substitute,
    )?;
    let (planned, wanted, report) = (&built.plan, built.wanted.as_slice(), &built.report);
    // The outputs asked for, in order, and their `result` links.
    let mut lines = Vec::new();
    let link_dir = match &args.out_link_dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().map_err(|source| Error::CurrentDir { source })?,
    };
    let mut links = 0;
    for &n in wanted {
        let Some(built) = report.built.get(&n) else {
            continue;
        };
        lines.push(built.path.to_string());
        if !args.no_link {
            let name = if wanted.len() == 1 {
                "result".to_owned()
            } else {
                format!("result-{}", planned.graph[n].name)
            };
            link(&store, &link_dir.join(name), &built.path)?;
            links += 1;
        }
    }
    if ctx.json {
        let value = serde_json::json!({
            "outputs": lines,
            "failed": report.failed.iter().map(|(n, e)| serde_json::json!({
                "name": planned.graph[*n].name,
                "error": error_chain(e),
            })).collect::<Vec<_>>(),
        });
        ctx.out.json(&value)?;
    } else if !lines.is_empty() {
        ctx.out.data(&lines.join("\n"))?;
    }
    ctx.out.debug(1, &format!("{links} result links"));
    if report.success() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Error::BuildsFailed {
            failed: report.failed.len(),
            wanted: wanted.len(),
        })
    }
}

/// [`build_system`] with the build display and warnings on stderr; substituted paths are
/// reported.
pub(crate) fn build_with_progress(
    ctx: &Context,
    store: &Store,
    evaluation: &nexis_config::Evaluation,
    config: &std::path::Path,
    packages: &[String],
    options: &nexis_build::ScheduleOptions,
    substitute: bool,
) -> Result<nexis_build::SystemBuild, Error> {
    let progress: std::sync::OnceLock<crate::progress::BuildProgress<'_>> =
        std::sync::OnceLock::new();
    let done = std::sync::atomic::AtomicBool::new(false);
    let warn = |w: &str| ctx.out.warn(w);
    let built = std::thread::scope(|scope| {
        let follow = scope.spawn(|| {
            // The display exists once the plan is known.
            while progress.get().is_none() && !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if let Some(p) = progress.get() {
                p.follow_logs(&done);
            }
        });
        let events = SystemEvents {
            planned: &|plan, total| {
                let _ = progress.set(crate::progress::BuildProgress::new(
                    &ctx.out,
                    store,
                    &plan.graph,
                    total as u64,
                ));
            },
            warn: &warn,
            build: &|event| {
                if let Some(p) = progress.get() {
                    p.event(&event);
                }
            },
        };
        let built = build_system(
            store, evaluation, config, packages, options, substitute, &events,
        );
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = follow.join();
        built
    })?;
    for p in &built.substituted {
        ctx.out.status("substituted", &p.to_string());
    }
    Ok(built)
}

/// Rebuild each of `wanted` and compare with its valid output.
fn check(
    ctx: &Context,
    store: &Store,
    planned: &nexis_build::Plan,
    wanted: &[petgraph::graph::NodeIndex],
    settings: &BuildSettings,
) -> Result<ExitCode, Error> {
    let mut reports = Vec::new();
    let mut differ = 0;
    for &n in wanted {
        let drv = &planned.graph[n];
        ctx.out
            .status("checking", &format!("{}-{}", drv.name, drv.version));
        match nexis_build::check(store, drv, settings) {
            Ok(r) => {
                if !r.identical {
                    differ += 1;
                    ctx.out.warn(&format!(
                        "{} is not reproducible: {} differ",
                        r.path,
                        r.differences.join(", ")
                    ));
                }
                reports.push(r);
            }
            Err(e) => {
                differ += 1;
                ctx.out.warn(&error_chain(&e));
            }
        }
    }
    if ctx.json {
        let value: Vec<_> = reports
            .iter()
            .map(|r| {
                serde_json::json!({
                    "path": r.path.to_string(),
                    "identical": r.identical,
                    "differences": r.differences,
                })
            })
            .collect();
        ctx.out.json(&serde_json::Value::Array(value))?;
    } else {
        let lines: Vec<String> = reports
            .iter()
            .map(|r| {
                let verdict = if r.identical { "identical" } else { "differs" };
                format!("{} {verdict}", r.path)
            })
            .collect();
        ctx.out.data(&lines.join("\n"))?;
    }
    if differ == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Error::NotReproducible {
            count: differ,
            checked: wanted.len(),
        })
    }
}

/// Print what a build would do: outputs that caches have, those that would be built,
/// and those that are valid. (Sources were fetched to name the outputs.)
fn dry_run(
    ctx: &Context,
    store: &Store,
    planned: &nexis_build::Plan,
    wanted: &[petgraph::graph::NodeIndex],
    settings: &nexis_config::StoreSettings,
) -> Result<ExitCode, Error> {
    let (missing, valid) = outputs_needed(store, planned, wanted)?;
    let cached = nexis_build::substitutable(&missing, settings, &|w| ctx.out.warn(w));
    let names = |v: &mut dyn Iterator<Item = &StorePath>| -> Vec<String> {
        v.map(ToString::to_string).collect()
    };
    let substitute = names(&mut cached.iter());
    let build = names(&mut missing.iter().filter(|p| !cached.contains(p)));
    let valid = names(&mut valid.iter());
    if ctx.json {
        ctx.out.json(&serde_json::json!({
            "substitute": substitute,
            "build": build,
            "valid": valid,
        }))?;
    } else {
        let mut text = String::new();
        for (list, what) in [
            (&substitute, "would be substituted"),
            (&build, "would be built"),
        ] {
            let _ = writeln!(text, "these {} paths {what}:", list.len());
            for p in list {
                let _ = writeln!(text, "  {p}");
            }
        }
        let _ = write!(text, "{} paths are valid already", valid.len());
        ctx.out.data(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Point `link` at `path` (replacing an older link atomically) and make it a GC root.
fn link(store: &Store, link: &std::path::Path, path: &StorePath) -> Result<(), Error> {
    let target = store.physical(path);
    let tmp = link.with_file_name(format!(
        ".{}.tmp-{}",
        link.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp).map_err(|source| Error::Write {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, link).map_err(|source| Error::Write {
        path: link.to_owned(),
        source,
    })?;
    let absolute = std::path::absolute(link).map_err(|source| Error::Write {
        path: link.to_owned(),
        source,
    })?;
    // Named after the link, made unique by the hash of where it is.
    let digest = blake3::hash(absolute.as_os_str().as_encoded_bytes()).to_hex();
    let name = format!(
        "{}-{}",
        link.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        &digest[..16]
    );
    store
        .add_indirect_root(&name, &absolute)
        .map_err(|source| Error::Store { source })
}

/// Show the build log of a path
#[derive(Debug, clap::Args)]
pub(crate) struct LogArgs {
    /// The output path (`/nexis/store/…`, or a `result` link)
    path: String,
}

pub(crate) fn log(ctx: &Context, args: &LogArgs) -> Result<ExitCode, Error> {
    let store = Store::open(ctx.root()).map_err(|source| Error::Store { source })?;
    let text = match std::fs::read_link(&args.path) {
        Ok(target) => target.to_string_lossy().into_owned(),
        Err(_) => args.path.clone(),
    };
    // A link points at the physical path under --root: keep the logical part.
    let logical = text
        .find(nexis_store::STORE_DIR)
        .map_or(text.as_str(), |i| &text[i..]);
    let base: String = logical.split('/').take(4).collect::<Vec<_>>().join("/");
    let path: StorePath = base.parse().map_err(|_| Error::NoLog {
        path: args.path.clone(),
    })?;
    match nexis_build::read_log(&store, &path) {
        Ok(Some(bytes)) => {
            ctx.out.bytes(&bytes)?;
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => Err(Error::NoLog {
            path: path.to_string(),
        }),
        Err(source) => Err(Error::Read {
            path: nexis_build::log_file(&store, &path),
            source,
        }),
    }
}
