//! `nexis schema`: the JSON Schemas editors validate configs and recipes with.

use std::process::ExitCode;

use crate::context::Context;
use crate::error::Error;

/// Print the JSON Schema of a configuration module or of a package recipe
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Which schema
    #[arg(value_enum, default_value_t = Kind::Config)]
    kind: Kind,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Kind {
    /// `nexis.toml` and the modules it imports
    Config,
    /// `packages/NAME.toml` in an input
    Recipe,
}

pub(crate) fn run(ctx: &Context, args: &Args) -> Result<ExitCode, Error> {
    let schema = match args.kind {
        Kind::Config => nexis_config::config_schema(),
        Kind::Recipe => nexis_config::recipe_schema(),
    };
    ctx.out.json(&schema)?;
    Ok(ExitCode::SUCCESS)
}
