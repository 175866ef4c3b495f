//! `nexis check`: evaluate the configuration and report every error in it.

use std::process::ExitCode;

use nexis_config::{Diagnostic, EvalError, Sources};
use serde_json::{Value, json};

use crate::context::Context;
use crate::error::Error;
use nexis_build::{FsLoader, LockMode};

/// Check that the configuration evaluates; print every error with its place. With
/// `--drift`, compare the root with its running generation instead
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// List every difference between the root and the generation in effect in the
    /// immutable areas (/etc, linked home files): changed, added and missing files,
    /// wrong modes and owners. Exits 1 when there is any
    #[arg(long)]
    drift: bool,
}

/// `nexis check --drift`.
fn drift(ctx: &Context) -> Result<ExitCode, Error> {
    let store = nexis_store::Store::open(ctx.root()).map_err(|source| Error::Store { source })?;
    let target = nexis_activate::Target::new(&store);
    let found = target.drift()?;
    if ctx.json {
        ctx.out
            .json(&serde_json::to_value(&found).expect("drift serialises"))?;
    } else if !found.is_empty() {
        let lines: Vec<String> = found
            .iter()
            .map(|d| {
                if d.detail.is_empty() {
                    format!("{:<8}{}", d.kind.as_str(), d.path)
                } else {
                    format!("{:<8}{} ({})", d.kind.as_str(), d.path, d.detail)
                }
            })
            .collect();
        ctx.out.data(&lines.join("\n"))?;
    }
    if found.is_empty() {
        ctx.out.status("ok", "the root is its running generation");
        Ok(ExitCode::SUCCESS)
    } else {
        ctx.out.status(
            "drift",
            &format!("{} differences from the running generation", found.len()),
        );
        Ok(ExitCode::FAILURE)
    }
}

pub(crate) fn run(ctx: &Context, args: &Args) -> Result<ExitCode, Error> {
    if args.drift {
        return drift(ctx);
    }
    let path = ctx.config_path()?;
    match super::evaluate_with_inputs(ctx, FsLoader::new(), &path, LockMode::Use, &|_| Ok(()))? {
        Ok(evaluation) => {
            let modules = evaluation.modules.len();
            let packages = evaluation.packages.len();
            if ctx.json {
                ctx.out.json(&json!({
                    "ok": true,
                    "config": path,
                    "modules": modules,
                    "packages": packages,
                    "diagnostics": [],
                }))?;
            }
            ctx.out.status(
                "ok",
                &format!(
                    "{} ({modules} module{}, {packages} package{})",
                    path.display(),
                    plural(modules),
                    plural(packages)
                ),
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) if ctx.json => {
            ctx.out.json(&json!({
                "ok": false,
                "config": path,
                "diagnostics": diagnostics_json(&error),
            }))?;
            Ok(ExitCode::FAILURE)
        }
        Err(source) => Err(Error::Invalid { path, source }),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The diagnostics as JSON objects: kind, message, file, line, column, help, and the
/// secondary places.
pub(crate) fn diagnostics_json(error: &EvalError) -> Value {
    let sources = error.sources();
    error
        .diagnostics()
        .iter()
        .map(|d| diagnostic_json(d, sources))
        .collect()
}

fn diagnostic_json(d: &Diagnostic, sources: &Sources) -> Value {
    let place = |span: nexis_config::Span| {
        let file = sources.get(span.file);
        let (line, column) = file.line_col(span.start);
        (file.path(), line, column)
    };
    let (file, line, column) = match d.span().map(place) {
        Some((file, line, column)) => (json!(file), json!(line), json!(column)),
        None => (Value::Null, Value::Null, Value::Null),
    };
    let labels: Vec<Value> = d
        .labels
        .iter()
        .map(|l| {
            let (file, line, column) = place(l.span);
            json!({
                "file": file,
                "line": line,
                "column": column,
                "message": l.message,
                "primary": l.primary,
            })
        })
        .collect();
    json!({
        "kind": d.kind,
        "message": d.message,
        "file": file,
        "line": line,
        "column": column,
        "help": d.help,
        "labels": labels,
    })
}
