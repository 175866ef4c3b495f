//! `nexis config`: read values of the evaluated configuration and edit the config file.
//!
//! Edits keep the file's comments and layout ([`nexis_config::edit`]). An edit is
//! evaluated before it is written: when the edited configuration has errors they are
//! printed, the file is left as it was, and the command fails.

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use nexis_config::edit::{self, EditError};
use serde_json::Value;

use crate::context::Context;
use crate::error::Error;
use nexis_build::{FsLoader, LockMode};

/// Read or edit the configuration
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Print a value of the evaluated configuration, e.g. `system.hostname`
    Get {
        /// A dotted key path; quote segments with dots or slashes: `files."/etc/motd".mode`
        key: String,
    },
    /// Set a value in the config file, keeping its comments and layout
    Set {
        /// A dotted key path such as `system.hostname`
        key: String,
        /// A TOML value (`42`, `true`, `["a", "b"]`); anything else is taken as a string
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Add a package to `packages.install`
    AddPackage {
        /// `name`, `input#name` or `name@>=1.2`
        reference: String,
    },
    /// Remove a package from `packages.install`
    RemovePackage {
        /// The reference exactly as listed
        reference: String,
    },
}

pub(crate) fn run(ctx: &Context, args: &Args) -> Result<ExitCode, Error> {
    match &args.action {
        Action::Get { key } => get(ctx, key),
        Action::Set { key, value } => edit_file(
            ctx,
            |text| edit::set(text, key, value),
            &format!("set {key} = {value}"),
        ),
        Action::AddPackage { reference } => edit_file(
            ctx,
            |text| edit::add_package(text, reference),
            &format!("added `{reference}` to packages.install"),
        ),
        Action::RemovePackage { reference } => edit_file(
            ctx,
            |text| edit::remove_package(text, reference),
            &format!("removed `{reference}` from packages.install"),
        ),
    }
}

fn get(ctx: &Context, key: &str) -> Result<ExitCode, Error> {
    let segments = edit::key_path(key).map_err(Error::KeyPath)?;
    let path = ctx.config_path()?;
    let evaluation = super::evaluate_config(ctx, &path)?;
    let config = serde_json::to_value(&evaluation.spec).expect("the spec serialises");
    let value = lookup(&config, &segments).ok_or_else(|| Error::UnknownKey {
        key: key.to_owned(),
    })?;
    match value {
        Value::String(s) if !ctx.json => ctx.out.data(s)?,
        Value::Bool(_) | Value::Number(_) | Value::Null if !ctx.json => {
            ctx.out.data(&value.to_string())?;
        }
        _ => ctx.out.json(value)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The value at a key path: object keys, or indexes into arrays.
fn lookup<'v>(value: &'v Value, segments: &[String]) -> Option<&'v Value> {
    segments.iter().try_fold(value, |v, segment| match v {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Apply `change` to the config file: evaluate the result, then write it atomically.
fn edit_file(
    ctx: &Context,
    change: impl FnOnce(&str) -> Result<String, EditError>,
    done: &str,
) -> Result<ExitCode, Error> {
    let path = ctx.config_path()?;
    let text = fs::read_to_string(&path).map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })?;
    let edited = change(&text).map_err(|source| Error::Edit {
        path: path.clone(),
        source,
    })?;
    if edited == text {
        ctx.out.note(&format!(
            "{} already says so; nothing to change",
            path.display()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    check_edit(ctx, &path, edited.clone())?;
    super::write_atomic(&path, &edited)?;
    ctx.out
        .status("updated", &format!("{}: {done}", path.display()));
    Ok(ExitCode::SUCCESS)
}

/// Evaluate the configuration with `edited` in place of the file at `path`.
fn check_edit(ctx: &Context, path: &Path, edited: String) -> Result<(), Error> {
    let loader = FsLoader::with_override(path, edited);
    match super::evaluate_with_inputs(ctx, loader, path, LockMode::Use, &|_| Ok(()))? {
        Ok(_) => Ok(()),
        Err(source) => Err(Error::Rejected {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lookup_follows_keys_and_indexes() {
        let v = json!({ "files": { "/etc/motd": { "mode": "0644" } }, "a": [1, 2] });
        let path = |k: &str| edit::key_path(k).unwrap();
        assert_eq!(
            lookup(&v, &path(r#"files."/etc/motd".mode"#)),
            Some(&json!("0644"))
        );
        assert_eq!(lookup(&v, &path("a.1")), Some(&json!(2)));
        assert_eq!(lookup(&v, &path("a.9")), None);
        assert_eq!(lookup(&v, &path("files.x")), None);
        assert_eq!(lookup(&v, &path("a.x")), None);
    }
}
