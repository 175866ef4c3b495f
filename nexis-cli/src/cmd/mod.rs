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

use std::fs;
use std::io::Write;
use std::path::Path;

use nexis_config::{EvalError, Evaluation, Loader};

use crate::context::Context;
use crate::error::Error;
use crate::loader::{FsLoader, Inputs, LockMode};

/// Evaluate the configuration at `path`, logging what was read with `-v`.
fn evaluate(ctx: &Context, loader: &dyn Loader, path: &Path) -> Result<Evaluation, EvalError> {
    ctx.out.debug(1, &format!("evaluating {}", path.display()));
    let evaluation = nexis_config::evaluate(loader, path)?;
    for module in &evaluation.modules {
        ctx.out.debug(1, &format!("  module {}", module.display()));
    }
    Ok(evaluation)
}

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
    let loader = loader.fetching(Inputs::new(&ctx.out, ctx.root(), path, mode)?);
    let evaluation = match evaluate(ctx, &loader, path) {
        Ok(e) => e,
        Err(e) => return Ok(Err(e)),
    };
    check(&evaluation)?;
    let inputs = loader.inputs().expect("set above");
    let (new, old) = inputs.locks();
    let file = inputs.lock_file();
    // No lock file is made for a configuration with nothing to lock.
    if new != *old && (file.exists() || !new.inputs.is_empty()) {
        write_atomic(file, &new.to_text())?;
        for change in new.changes_from(old) {
            ctx.out.status("lock", &change);
        }
        ctx.out.debug(1, &format!("wrote {}", file.display()));
    }
    Ok(Ok(evaluation))
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
    let write_error = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".nexis-edit-")
        .tempfile_in(dir)
        .map_err(write_error)?;
    if let Ok(meta) = fs::metadata(path) {
        tmp.as_file()
            .set_permissions(meta.permissions())
            .map_err(write_error)?;
    }
    tmp.write_all(text.as_bytes()).map_err(write_error)?;
    tmp.as_file().sync_all().map_err(write_error)?;
    tmp.persist(path).map_err(|e| write_error(e.error))?;
    // Make the rename itself durable. Not every filesystem can sync a directory; the
    // new content is in place either way.
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
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
        write_atomic(&path, "new\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
