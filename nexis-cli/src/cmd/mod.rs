//! One module per subcommand, each with its clap `Args` and a `run` function.

pub(crate) mod build;
pub(crate) mod check;
pub(crate) mod completions;
pub(crate) mod config;
pub(crate) mod eval;
pub(crate) mod fetch;
pub(crate) mod gc;
pub(crate) mod init;
pub(crate) mod man;
pub(crate) mod schema;
pub(crate) mod store;
pub(crate) mod system;

use std::path::Path;

use nexis_config::{EvalError, Evaluation};

use crate::context::Context;
use crate::error::Error;
use nexis_build::{FsLoader, LockMode};

/// Evaluate the configuration at `path` with its inputs fetched through `nexis.lock`
/// (in `mode`); after a successful evaluation, write the lock when it changed and tell
/// what changed. `loader` is the base loader (a plain one, or one with an edit standing
/// in for a file); `check` may refuse the evaluation before the lock is written. The
/// outer error is the lock's (reading or writing it) or `check`'s; the inner one the
/// configuration's.
fn evaluate_with_inputs(
    ctx: &Context,
    loader: FsLoader,
    path: &Path,
    mode: LockMode,
    check: &dyn Fn(&Evaluation) -> Result<(), Error>,
) -> Result<Result<Evaluation, EvalError>, Error> {
    ctx.out.debug(1, &format!("evaluating {}", path.display()));
    let progress = crate::progress::input_progress(&ctx.out);
    let evaluated =
        match nexis_build::evaluate_with_inputs(loader, ctx.root(), path, mode, Some(progress))? {
            Ok(e) => e,
            Err(e) => return Ok(Err(e)),
        };
    for module in &evaluated.evaluation.modules {
        ctx.out.debug(1, &format!("  module {}", module.display()));
    }
    check(&evaluated.evaluation)?;
    let changes = evaluated.write_lock()?;
    for change in &changes {
        ctx.out.status("lock", change);
    }
    if !changes.is_empty() {
        ctx.out
            .debug(1, &format!("wrote {}", evaluated.lock_file().display()));
    }
    Ok(Ok(evaluated.evaluation))
}

/// [`evaluate_with_inputs`] using the lock (`LockMode::Use`), for the commands that only
/// read the configuration; an invalid configuration is [`Error::Invalid`].
fn evaluate_config(ctx: &Context, path: &Path) -> Result<Evaluation, Error> {
    evaluate_with_inputs(ctx, FsLoader::new(), path, LockMode::Use, &|_| Ok(()))?.map_err(
        |source| Error::Invalid {
            path: path.to_owned(),
            source,
        },
    )
}

/// Replace `path` with `text` atomically: write a temporary file in the same directory
/// with the original's permissions, flush it to disk, and rename it over the original.
fn write_atomic(path: &Path, text: &str) -> Result<(), Error> {
    nexis_build::write_file_atomic(path, text).map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}
