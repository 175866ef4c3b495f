//! `nexis store optimise`: hard-link identical files of paths added before.

use std::process::ExitCode;

use nexis_store::{OptimiseProgress, Store};

use crate::context::Context;
use crate::error::Error;

pub(crate) fn run(ctx: &Context, store: &Store) -> Result<ExitCode, Error> {
    let out = ctx.out.clone();
    let bar = ctx.out.bar("optimising", 0);
    let shown = bar.clone();
    let progress = move |p: OptimiseProgress| {
        shown.set_length(p.total as u64);
        shown.set_position(p.done as u64);
        if p.done == p.total || p.done.is_multiple_of(1000) {
            out.debug(1, &format!("optimised {}/{} paths", p.done, p.total));
        }
    };
    let report = store
        .optimise(&progress)
        .map_err(|source| Error::Store { source })?;
    bar.finish_and_clear();
    if ctx.json {
        ctx.out.json(&serde_json::json!({
            "paths": report.paths,
            "files": report.files,
            "already-linked": report.already_linked,
            "new-links": report.new_links,
            "replaced": report.replaced,
            "bytes-saved": report.bytes_saved,
        }))?;
    } else {
        ctx.out.status(
            "optimised",
            &format!(
                "{} paths, {} files: {} replaced by links, {} freed",
                report.paths,
                report.files,
                report.replaced,
                nexis_store::human_bytes(report.bytes_saved)
            ),
        );
    }
    Ok(ExitCode::SUCCESS)
}
