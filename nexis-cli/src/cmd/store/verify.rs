//! `nexis store verify|repair`: check paths against the database, and fix what is
//! wrong.

use std::path::PathBuf;
use std::process::ExitCode;

use nexis_fetch::Substituter;
use nexis_store::{Problem, Store, StorePath, VerifyProgress};

use crate::context::Context;
use crate::error::Error;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["all", "paths"])))]
pub(crate) struct Args {
    /// Check every valid path
    #[arg(long, conflicts_with = "paths")]
    all: bool,
    /// Store paths to check
    paths: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RepairArgs {
    #[command(flatten)]
    which: Args,
    /// Restore damaged or missing paths from this binary cache (`file:///DIR`,
    /// `http://…`, `https://…`; default: the substituters of the configuration's `[store]`
    /// section, in order)
    #[arg(long, value_name = "URL")]
    from: Option<String>,
}

impl Args {
    fn paths(&self) -> Result<Option<Vec<StorePath>>, Error> {
        Ok(if self.all {
            None
        } else {
            Some(super::parse_all(&self.paths)?)
        })
    }
}

pub(crate) fn repair(ctx: &Context, store: &Store, args: &RepairArgs) -> Result<ExitCode, Error> {
    let paths = args.which.paths()?;
    // `--from`, else the substituters of the configuration.
    let urls: Vec<String> = match &args.from {
        Some(url) => vec![url.clone()],
        None => super::settings(ctx)?
            .map(|s| s.substituters.into_iter().map(|u| u.value).collect())
            .unwrap_or_default(),
    };
    let report = if urls.is_empty() {
        store.repair(paths.as_deref(), None)
    } else {
        ctx.out
            .debug(1, &format!("restoring from {}", urls.join(", ")));
        let substituter = Substituter::new(&urls).map_err(|source| Error::Substitute {
            caches: urls.join(", "),
            source: Box::new(source),
        })?;
        let warn = |w: &str| ctx.out.warn(w);
        store.repair_from(paths.as_deref(), Some(&mut substituter.caches(&warn)))
    }
    .map_err(|source| Error::Store { source })?;
    if ctx.json {
        let unrepaired: Vec<serde_json::Value> = report
            .unrepaired
            .iter()
            .map(|(problem, why)| {
                let mut v = problem_json(problem);
                if let Some(map) = v.as_object_mut() {
                    map.insert("why".into(), why.clone().into());
                }
                v
            })
            .collect();
        ctx.out.json(&serde_json::json!({
            "checked": report.checked,
            "clean": report.is_clean(),
            "restored": report.restored.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "canonicalised": report.canonicalised,
            "unrepaired": unrepaired,
        }))?;
    } else {
        for path in &report.restored {
            ctx.out.data(&format!("restored {path}"))?;
        }
        for file in &report.canonicalised {
            ctx.out
                .data(&format!("made canonical {}", file.display()))?;
        }
        for (problem, why) in &report.unrepaired {
            ctx.out.data(&format!("not repaired: {problem} ({why})"))?;
        }
        let fixed = report.restored.len() + report.canonicalised.len();
        if report.is_clean() {
            ctx.out.status(
                "repaired",
                &format!("{fixed} problems in {} paths", report.checked),
            );
        } else {
            ctx.out.warn(&format!(
                "{} problems left unrepaired ({fixed} repaired) in {} paths",
                report.unrepaired.len(),
                report.checked
            ));
        }
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) fn run(ctx: &Context, store: &Store, args: &Args) -> Result<ExitCode, Error> {
    let paths = args.paths()?;
    let out = ctx.out.clone();
    let bar = ctx.out.bar("verifying", 0);
    let shown = bar.clone();
    let progress = move |p: VerifyProgress| {
        shown.set_length(p.total as u64);
        shown.set_position(p.done as u64);
        if p.done == p.total || p.done.is_multiple_of(1000) {
            out.debug(1, &format!("verified {}/{}", p.done, p.total));
        }
    };
    let report = store
        .verify(paths.as_deref(), &progress)
        .map_err(|source| Error::Store { source })?;
    bar.finish_and_clear();
    if ctx.json {
        let problems: Vec<serde_json::Value> = report.problems.iter().map(problem_json).collect();
        ctx.out.json(&serde_json::json!({
            "checked": report.checked,
            "clean": report.is_clean(),
            "problems": problems,
        }))?;
    } else {
        for problem in &report.problems {
            ctx.out.data(&problem.to_string())?;
        }
        if report.is_clean() {
            ctx.out.status(
                "verified",
                &format!("{} paths, no problems", report.checked),
            );
        } else {
            ctx.out.warn(&format!(
                "{} problems in {} paths",
                report.problems.len(),
                report.checked
            ));
        }
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn hex(hash: &[u8; 32]) -> String {
    format!("blake3:{}", blake3::Hash::from_bytes(*hash).to_hex())
}

fn problem_json(problem: &Problem) -> serde_json::Value {
    let mut value = serde_json::json!({
        "kind": problem.kind(),
        "path": problem.path().map(ToString::to_string),
        "message": problem.to_string(),
    });
    let extra = match problem {
        Problem::Mismatch {
            expected_hash,
            actual_hash,
            expected_size,
            actual_size,
            ..
        } => serde_json::json!({
            "expected-hash": hex(expected_hash),
            "actual-hash": hex(actual_hash),
            "expected-archive-size": expected_size,
            "actual-archive-size": actual_size,
        }),
        Problem::Metadata {
            file,
            mode,
            expected_mode,
            mtime,
            ..
        } => serde_json::json!({
            "file": PathBuf::from(file),
            "mode": format!("{mode:04o}"),
            "expected-mode": format!("{expected_mode:04o}"),
            "mtime": mtime,
        }),
        Problem::Dangling(d) => serde_json::json!({
            "referrer-row": d.referrer_id,
            "reference-row": d.reference_id,
        }),
        _ => serde_json::json!({}),
    };
    if let (Some(map), serde_json::Value::Object(extra)) = (value.as_object_mut(), extra) {
        map.extend(extra);
    }
    value
}
