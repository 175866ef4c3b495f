//! `nexis fetch`, `nexis lock`, `nexis update`: inputs into the store and `nexis.lock`.

use std::collections::BTreeSet;
use std::process::ExitCode;

use nexis_fetch::{Fetcher, LockedSource};
use nexis_store::Store;

use crate::context::Context;
use crate::error::Error;
use nexis_build::{FsLoader, LockMode};

/// Fetch an input reference into the store; print its store path and hashes
#[derive(Debug, clap::Args)]
pub(crate) struct FetchArgs {
    /// An input reference: `git+https://…?ref=main`, `https://…/x.tar.gz?hash=…`,
    /// `git+file:///…` (see docs/inputs.md)
    reference: String,
}

/// Lock the configuration's inputs: add entries for inputs that have none, drop those of
/// removed inputs, change nothing else
#[derive(Debug, clap::Args)]
pub(crate) struct LockArgs {}

/// Fetch inputs afresh (all, or the ones named) and record them in nexis.lock; print what
/// changed
#[derive(Debug, clap::Args)]
pub(crate) struct UpdateArgs {
    /// Inputs to update (default: all)
    inputs: Vec<String>,
}

pub(crate) fn fetch(ctx: &Context, args: &FetchArgs) -> Result<ExitCode, Error> {
    let store = Store::open(ctx.root()).map_err(|source| Error::Store { source })?;
    let bars = ctx.out.multi();
    let bar = crate::progress::fetch_bar(&bars, "fetch");
    let shown = bar.clone();
    let fetched = Fetcher::new(&store)
        .with_progress(move |event| crate::progress::show(&shown, event))
        .fetch(&args.reference)
        .map_err(|source| Error::Fetch {
            input: args.reference.clone(),
            source: Box::new(source),
        });
    bar.finish_and_clear();
    let fetched = fetched?;
    let locked = &fetched.locked;
    if ctx.json {
        let mut value = serde_json::json!({
            "path": fetched.path.to_string(),
            "type": locked.source.kind(),
            "tree-hash": locked.tree_hash.to_string(),
        });
        let map = value.as_object_mut().expect("an object");
        match &locked.source {
            LockedSource::Git {
                url,
                reference,
                rev,
                last_modified,
                ..
            } => {
                map.insert("url".into(), url.as_str().into());
                map.insert("ref".into(), reference.clone().into());
                map.insert("rev".into(), rev.as_str().into());
                map.insert("last-modified".into(), (*last_modified).into());
            }
            LockedSource::Url { url, file_hash, .. } => {
                map.insert("url".into(), url.as_str().into());
                map.insert("file-hash".into(), file_hash.to_string().into());
            }
        }
        ctx.out.json(&value)?;
    } else {
        ctx.out.data(&fetched.path.to_string())?;
        let pin = match &locked.source {
            LockedSource::Git { rev, reference, .. } => match reference {
                Some(r) => format!("rev {rev} ({r})"),
                None => format!("rev {rev}"),
            },
            LockedSource::Url { file_hash, .. } => format!("file {file_hash}"),
        };
        ctx.out
            .status("fetched", &format!("{pin}, tree {}", locked.tree_hash));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn lock(ctx: &Context, _args: &LockArgs) -> Result<ExitCode, Error> {
    relock(ctx, LockMode::Lock)
}

pub(crate) fn update(ctx: &Context, args: &UpdateArgs) -> Result<ExitCode, Error> {
    let names = if args.inputs.is_empty() {
        None
    } else {
        Some(args.inputs.iter().cloned().collect::<BTreeSet<_>>())
    };
    relock(ctx, LockMode::Update(names))
}

/// Evaluate in `mode`, which writes the lock; say so when nothing changed.
fn relock(ctx: &Context, mode: LockMode) -> Result<ExitCode, Error> {
    let path = ctx.config_path()?;
    let lock_file = path.with_file_name(nexis_fetch::LOCK_FILE);
    let before = std::fs::read(&lock_file).ok();
    let named = match &mode {
        LockMode::Update(Some(names)) => names.clone(),
        _ => BTreeSet::new(),
    };
    // Named inputs must be the configuration's: checked before the lock is written.
    let check = |evaluation: &nexis_config::Evaluation| {
        // The configuration's inputs and, as `core/base`, those of its inputs.
        let known: BTreeSet<&str> = evaluation
            .spec
            .inputs
            .keys()
            .map(|k| k.value.as_str())
            .chain(evaluation.packages.inputs.keys().map(String::as_str))
            .collect();
        match named.iter().find(|n| !known.contains(n.as_str())) {
            Some(name) => Err(Error::UnknownInput {
                name: name.clone(),
                known: known.into_iter().collect::<Vec<_>>().join(", "),
            }),
            None => Ok(()),
        }
    };
    super::evaluate_with_inputs(ctx, FsLoader::new(), &path, mode, &check)?.map_err(|source| {
        Error::Invalid {
            path: path.clone(),
            source,
        }
    })?;
    if std::fs::read(&lock_file).ok() == before {
        ctx.out
            .status("lock", &format!("{} is up to date", lock_file.display()));
    }
    Ok(ExitCode::SUCCESS)
}
