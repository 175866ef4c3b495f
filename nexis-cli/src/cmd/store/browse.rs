//! `nexis store cat` and `nexis store ls`: read inside valid store paths.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nexis_store::{Store, StoreEntryKind};

use crate::context::Context;
use crate::error::Error;

#[derive(Debug, clap::Args)]
pub(crate) struct CatArgs {
    /// A file inside a store path: `/nexis/store/<hash>-<name>/sub/file`
    location: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct LsArgs {
    /// A store path, or a location inside one: `/nexis/store/<hash>-<name>/sub`
    location: PathBuf,
    /// List subdirectories too, all the way down
    #[arg(short = 'R', long)]
    recursive: bool,
}

fn browse_err(location: &Path) -> impl FnOnce(nexis_store::BrowseError) -> Error + '_ {
    move |source| Error::Browse {
        location: location.to_owned(),
        source,
    }
}

pub(crate) fn cat(store: &Store, args: &CatArgs) -> Result<ExitCode, Error> {
    let mut file = store
        .open_file(&args.location)
        .map_err(browse_err(&args.location))?;
    let mut stdout = io::stdout().lock();
    match io::copy(&mut file, &mut stdout).and_then(|_| stdout.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // Which side failed matters for the message: a write error is the reader's end.
        Err(source) if source.kind() == io::ErrorKind::BrokenPipe => Err(Error::Stdout { source }),
        Err(source) => Err(Error::Read {
            path: args.location.clone(),
            source,
        }),
    }
}

pub(crate) fn ls(ctx: &Context, store: &Store, args: &LsArgs) -> Result<ExitCode, Error> {
    let entries = store
        .list(&args.location, args.recursive)
        .map_err(browse_err(&args.location))?;
    if ctx.json {
        let list: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| match &e.kind {
                StoreEntryKind::Directory => {
                    serde_json::json!({"path": e.location, "type": "directory"})
                }
                StoreEntryKind::File { executable, size } => serde_json::json!({
                    "path": e.location,
                    "type": "regular",
                    "size": size,
                    "executable": executable,
                }),
                StoreEntryKind::Symlink { target } => serde_json::json!({
                    "path": e.location,
                    "type": "symlink",
                    "target": target,
                }),
            })
            .collect();
        ctx.out.json(&serde_json::Value::Array(list))?;
        return Ok(ExitCode::SUCCESS);
    }
    for e in &entries {
        let line = match &e.kind {
            StoreEntryKind::Directory => format!("dr-xr-xr-x {:>12} {}", 0, e.location.display()),
            StoreEntryKind::File { executable, size } => format!(
                "{} {size:>12} {}",
                if *executable {
                    "-r-xr-xr-x"
                } else {
                    "-r--r--r--"
                },
                e.location.display()
            ),
            StoreEntryKind::Symlink { target } => format!(
                "lrwxrwxrwx {:>12} {} -> {}",
                0,
                e.location.display(),
                target.display()
            ),
        };
        ctx.out.data(&line)?;
    }
    Ok(ExitCode::SUCCESS)
}
