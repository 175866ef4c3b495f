//! `nexis store hash-path`: the tree hash of any file or directory, without adding it.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::context::Context;
use crate::error::Error;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A file, directory or symlink (not followed)
    path: PathBuf,
}

pub(crate) fn run(ctx: &Context, args: &Args) -> Result<ExitCode, Error> {
    let info = nexis_store::hash_path(&args.path).map_err(|source| Error::Hash {
        path: args.path.clone(),
        source,
    })?;
    if ctx.json {
        ctx.out.json(&serde_json::json!({
            "path": args.path,
            "tree-hash": format!("blake3:{}", info.hash_hex()),
            "archive-size": info.archive_size,
            "entries": info.entries,
            "files": info.files,
            "bytes": info.bytes,
        }))?;
    } else {
        ctx.out.data(&format!("blake3:{}", info.hash_hex()))?;
    }
    Ok(ExitCode::SUCCESS)
}
