//! `nexis store …`: work with the content-addressed store under `--root`.

use std::path::PathBuf;
use std::process::ExitCode;

use nexis_store::{Store, StorePath};

use crate::context::Context;
use crate::error::Error;

mod browse;
mod hash;
mod optimise;
mod transfer;
mod verify;

/// Work with the store: add paths, show what is known about them, follow references
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Add each file or directory as its own store path; print one store path per line,
    /// in order
    Add(AddArgs),
    /// Show what the store knows about paths: hash, size, references, registration
    PathInfo(PathsArgs),
    /// Print the closure of paths: them and everything they refer to, transitively
    Closure(PathsArgs),
    /// Print the valid paths that refer to a path
    Referrers(OneArgs),
    /// Print the GC roots and where each comes from
    Roots,
    /// Show why one path depends on another: the chain of references between them
    WhyDepends(WhyArgs),
    /// Write the closure of paths as one export stream (standard output or --output)
    Export(transfer::ExportArgs),
    /// Import an export stream, verifying every path first; print the paths it holds
    Import(transfer::ImportArgs),
    /// Make a new Ed25519 signing key; print the secret key, then the public key
    GenerateKey(transfer::GenerateKeyArgs),
    /// Sign valid paths with a secret key (the signatures go into the database)
    Sign(transfer::SignArgs),
    /// Copy paths with their closure to a binary cache, or from one into the store
    Copy(transfer::CopyArgs),
    /// Make paths valid, closure included, from the configuration's substituters (binary
    /// caches asked in order; one that is down is skipped with a warning); exit 1 if
    /// some path is in no cache
    Substitute(transfer::SubstituteArgs),
    /// Hash store paths again and compare with the database; exit 1 if anything is wrong
    Verify(verify::Args),
    /// Verify, then repair: canonical modes in place, damaged or missing paths from a
    /// binary cache (--from); exit 1 if anything is left unrepaired
    Repair(verify::RepairArgs),
    /// Hard-link identical files of all valid paths to one copy; report the bytes saved
    Optimise,
    /// Print a file inside a store path
    Cat(browse::CatArgs),
    /// List a store path or a directory inside one: type, size, executable bit
    Ls(browse::LsArgs),
    /// Print the tree hash of a file or directory (not added to the store)
    HashPath(hash::Args),
}

#[derive(Debug, clap::Args)]
struct AddArgs {
    /// Files or directories to add
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The store path name (default: each argument's file name); only with one path
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, clap::Args)]
struct PathsArgs {
    /// Store paths (`/nexis/store/<hash>-<name>`)
    #[arg(required = true)]
    paths: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct WhyArgs {
    /// The path that depends
    from: String,
    /// The path depended on
    to: String,
}

#[derive(Debug, clap::Args)]
struct OneArgs {
    /// A store path
    path: String,
}

pub(crate) fn run(ctx: &Context, args: &Args) -> Result<ExitCode, Error> {
    // These need no store: opening one would create it under `--root`.
    match &args.command {
        Command::GenerateKey(a) => return transfer::generate_key(ctx, a),
        Command::HashPath(a) => return hash::run(ctx, a),
        _ => {}
    }
    let store = Store::open(ctx.root()).map_err(|source| Error::Store { source })?;
    match &args.command {
        Command::GenerateKey(_) | Command::HashPath(_) => unreachable!("handled above"),
        Command::Export(a) => transfer::export(ctx, &store, a),
        Command::Import(a) => transfer::import(ctx, &store, a),
        Command::Sign(a) => transfer::sign(ctx, &store, a),
        Command::Copy(a) => transfer::copy(ctx, &store, a),
        Command::Substitute(a) => transfer::substitute(ctx, &store, a),
        Command::Add(a) => add(ctx, &store, a),
        Command::PathInfo(a) => path_info(ctx, &store, &a.paths),
        Command::Closure(a) => {
            let paths = valid(&store, &a.paths)?;
            let closure = store
                .with_db(|db| db.closure(&paths))
                .map_err(|e| Error::Store { source: e.into() })?;
            list(ctx, closure.iter())
        }
        Command::Referrers(a) => {
            let path = valid(&store, std::slice::from_ref(&a.path))?.remove(0);
            let refs = store
                .with_db(|db| db.referrers(&path))
                .map_err(|e| Error::Store { source: e.into() })?;
            list(ctx, refs.iter())
        }
        Command::WhyDepends(a) => {
            let paths = valid(&store, &[a.from.clone(), a.to.clone()])?;
            let chain = store
                .with_db(|db| db.why_depends(&paths[0], &paths[1]))
                .map_err(|e| Error::Store { source: e.into() })?;
            match chain {
                Some(chain) => list(ctx, chain.iter()),
                None => Err(Error::NoDependency {
                    from: a.from.clone(),
                    to: a.to.clone(),
                }),
            }
        }
        Command::Verify(a) => verify::run(ctx, &store, a),
        Command::Repair(a) => verify::repair(ctx, &store, a),
        Command::Optimise => optimise::run(ctx, &store),
        Command::Cat(a) => browse::cat(&store, a),
        Command::Ls(a) => browse::ls(ctx, &store, a),
        Command::Roots => {
            let roots = store.roots().map_err(|source| Error::Store { source })?;
            if ctx.json {
                let value: serde_json::Map<String, serde_json::Value> = roots
                    .iter()
                    .map(|(p, from)| (p.to_string(), serde_json::json!(from)))
                    .collect();
                return ctx.out.json(&value.into()).map(|()| ExitCode::SUCCESS);
            }
            for (path, from) in &roots {
                for f in from {
                    ctx.out.data(&format!("{} -> {path}", f.display()))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse(s: &str) -> Result<StorePath, Error> {
    StorePath::parse(s).map_err(|source| Error::StorePath { source })
}

fn parse_all(paths: &[String]) -> Result<Vec<StorePath>, Error> {
    paths.iter().map(|p| parse(p)).collect()
}

/// Parse paths and require each to be valid.
fn valid(store: &Store, paths: &[String]) -> Result<Vec<StorePath>, Error> {
    let paths = parse_all(paths)?;
    for p in &paths {
        let ok = store
            .with_db(|db| db.is_valid(p))
            .map_err(|e| Error::Store { source: e.into() })?;
        if !ok {
            return Err(Error::NotValid {
                path: p.to_string(),
            });
        }
    }
    Ok(paths)
}

fn list<'a>(ctx: &Context, paths: impl Iterator<Item = &'a StorePath>) -> Result<ExitCode, Error> {
    let paths: Vec<String> = paths.map(ToString::to_string).collect();
    if ctx.json {
        ctx.out.json(&serde_json::json!(paths))?;
    } else {
        for p in paths {
            ctx.out.data(&p)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn add(ctx: &Context, store: &Store, args: &AddArgs) -> Result<ExitCode, Error> {
    if args.name.is_some() && args.paths.len() > 1 {
        return Err(Error::Usage {
            message: "--name applies to a single path".into(),
        });
    }
    // One path: its own error message; several: one batch (scanned first, installed
    // and registered together).
    let all = match (&args.paths[..], &args.name) {
        ([src], name) => {
            vec![
                store
                    .add_path(src, name.as_deref())
                    .map_err(|source| Error::Add {
                        path: src.clone(),
                        source,
                    })?,
            ]
        }
        (paths, _) => store.add_paths(paths).map_err(|source| Error::AddMany {
            count: paths.len(),
            source,
        })?,
    };
    let mut results = Vec::new();
    let mut lines = String::new();
    for (src, added) in args.paths.iter().zip(all) {
        ctx.out.debug(
            1,
            &format!(
                "{}: {} files, {} bytes, {} deduplicated{}",
                src.display(),
                added.files,
                added.bytes,
                added.deduplicated,
                if added.already_valid {
                    ", already valid"
                } else {
                    ""
                }
            ),
        );
        if ctx.json {
            results.push(serde_json::json!({
                "source": src,
                "path": added.path.to_string(),
                "tree-hash": blake3::Hash::from_bytes(added.tree_hash).to_hex().to_string(),
                "archive-size": added.archive_size,
                "files": added.files,
                "bytes": added.bytes,
                "deduplicated": added.deduplicated,
                "already-valid": added.already_valid,
            }));
        } else {
            if !lines.is_empty() {
                lines.push('\n');
            }
            lines.push_str(&added.path.to_string());
        }
    }
    if ctx.json {
        ctx.out.json(&serde_json::Value::Array(results))?;
    } else {
        ctx.out.data(&lines)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn path_info(ctx: &Context, store: &Store, paths: &[String]) -> Result<ExitCode, Error> {
    let mut out = Vec::new();
    let mut missing = false;
    for p in parse_all(paths)? {
        let info = store
            .with_db(|db| db.query(&p))
            .map_err(|e| Error::Store { source: e.into() })?;
        let Some(info) = info else {
            ctx.out.warn(&format!("{p} is not valid in the store"));
            missing = true;
            continue;
        };
        let refs: Vec<String> = info.references.iter().map(ToString::to_string).collect();
        let hash = blake3::Hash::from_bytes(info.tree_hash)
            .to_hex()
            .to_string();
        if ctx.json {
            out.push(serde_json::json!({
                "path": p.to_string(),
                "tree-hash": format!("blake3:{hash}"),
                "archive-size": info.archive_size,
                "registered": info.registered,
                "deriver": info.deriver.map(|d| d.to_string()),
                "content-address": info.content_address,
                "references": refs,
                "signatures": info.signatures,
            }));
        } else {
            ctx.out.data(&format!(
                "{p}\n  tree-hash: blake3:{hash}\n  archive-size: {}\n  references: {}",
                info.archive_size,
                if refs.is_empty() {
                    "(none)".to_owned()
                } else {
                    refs.join(" ")
                }
            ))?;
        }
    }
    if ctx.json {
        ctx.out.json(&serde_json::Value::Array(out))?;
    }
    Ok(if missing {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The `[store]` section of the configuration, when there is one: `--config`, else
/// `./nexis.toml`, else `/etc/nexis/nexis.toml` if it exists (none is no error; an
/// invalid one is).
pub(crate) fn settings(ctx: &Context) -> Result<Option<nexis_config::StoreSettings>, Error> {
    let path = ctx.config_path()?;
    if !ctx.config_given() && !path.is_file() {
        return Ok(None);
    }
    let evaluation = super::evaluate_config(ctx, &path)?;
    Ok(Some(evaluation.spec.store))
}
