//! `nexis eval`: evaluate the configuration and print the resolved system.

use std::fmt::Write as _;
use std::process::ExitCode;

use nexis_config::Evaluation;

use crate::context::Context;
use crate::error::Error;

/// Evaluate the configuration and print the resolved system (all of it with --json)
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) fn run(ctx: &Context, _args: &Args) -> Result<ExitCode, Error> {
    let path = ctx.config_path()?;
    let evaluation = super::evaluate_config(ctx, &path)?;
    if ctx.json {
        ctx.out.json(&evaluation.to_json())?;
    } else {
        ctx.out.data(summary(&evaluation).trim_end())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A few lines a person reads: host, modules, packages with versions, users, services.
fn summary(evaluation: &Evaluation) -> String {
    let spec = &evaluation.spec;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "hostname: {} ({}, {})",
        spec.system.hostname, spec.system.timezone, spec.system.locale
    );
    let _ = writeln!(out, "modules: {}", evaluation.modules.len());
    for module in &evaluation.modules {
        let _ = writeln!(out, "  {}", module.display());
    }
    let _ = writeln!(out, "packages: {}", evaluation.packages.len());
    for package in evaluation.packages.iter() {
        let _ = writeln!(out, "  {} {}", package.id, package.version);
    }
    let _ = writeln!(out, "users: {}", spec.users.len());
    for (name, user) in &spec.users {
        let groups: Vec<&str> = user.groups.iter().map(|g| g.value.as_str()).collect();
        if groups.is_empty() {
            let _ = writeln!(out, "  {name}");
        } else {
            let _ = writeln!(out, "  {name} ({})", groups.join(", "));
        }
    }
    let _ = writeln!(out, "services: {}", spec.services.len());
    for (name, service) in &spec.services {
        let state = if service.enable { "" } else { " (disabled)" };
        let _ = writeln!(out, "  {name}{state}");
    }
    out
}
