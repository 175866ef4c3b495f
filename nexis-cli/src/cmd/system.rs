//! `nexis switch`, `boot`, `test`, `rollback`, `generations` and `diff`: system
//! generations on a root.

use std::process::ExitCode;

use nexis_activate::{
    ActivationReport, Manifest, Mode, Profiles, SystemDiff, SystemPackage, Target, Toplevel,
    build_toplevel,
};
use nexis_build::schedule_options;
use nexis_store::Store;

use crate::context::Context;
use crate::error::Error;

/// Build the system and activate it now and at boot
#[derive(Debug, clap::Args)]
pub(crate) struct SwitchArgs {
    /// Switch to this existing generation instead of building the configuration
    #[arg(long, value_name = "N")]
    generation: Option<u32>,
    /// Show what would change; change nothing
    #[arg(long)]
    dry_run: bool,
}

/// Build the system and make it the boot default, without activating it now
#[derive(Debug, clap::Args)]
pub(crate) struct BootArgs {
    /// Show what would change; change nothing
    #[arg(long)]
    dry_run: bool,
}

/// Build the system and activate it now, without making it the boot default
#[derive(Debug, clap::Args)]
pub(crate) struct TestArgs {
    /// Show what would change; change nothing
    #[arg(long)]
    dry_run: bool,
}

/// Switch to the generation before the current one
#[derive(Debug, clap::Args)]
pub(crate) struct RollbackArgs {}

/// List the system generations, or delete old ones
#[derive(Debug, clap::Args)]
pub(crate) struct GenerationsArgs {
    #[command(subcommand)]
    command: Option<GenerationsCommand>,
}

#[derive(Debug, clap::Subcommand)]
enum GenerationsCommand {
    /// Delete generations (not the current one); `nexis gc` then frees their paths
    Delete {
        /// Generation numbers
        #[arg(required = true)]
        numbers: Vec<u32>,
    },
}

/// Show what switching from generation A to B changes (default: from the current
/// generation to the configuration, built)
#[derive(Debug, clap::Args)]
pub(crate) struct DiffArgs {
    /// The generation switched from (default: the current one)
    from: Option<u32>,
    /// The generation switched to (default: the configuration, built)
    to: Option<u32>,
}

/// Finish an interrupted activation first, saying so.
fn recover(ctx: &Context, target: &Target<'_>) -> Result<(), Error> {
    if let Some(report) = target.recover()? {
        ctx.out.note(&format!(
            "finished an interrupted activation ({} files written)",
            report.written.len()
        ));
    }
    Ok(())
}

/// Build the configuration's packages and its toplevel.
fn build_configuration(ctx: &Context, store: &Store) -> Result<Toplevel, Error> {
    let path = ctx.config_path()?;
    let evaluation = super::evaluate_config(ctx, &path)?;
    let options = schedule_options(&evaluation.spec.build, None, None, false);
    let built =
        super::build::build_with_progress(ctx, store, &evaluation, &path, &[], &options, true)?;
    if !built.report.success() {
        return Err(Error::BuildsFailed {
            failed: built.report.failed.len(),
            wanted: built.wanted.len(),
        });
    }
    // The system profile: what `[packages] install` and the security tools ask for.
    let mut packages = Vec::new();
    for (id, reasons) in &evaluation.packages.roots {
        let system = reasons
            .iter()
            .any(|r| r == "packages.install" || r.starts_with("security."));
        let (Some(&node), Some(pkg)) = (built.plan.nodes.get(id), evaluation.packages.get(id))
        else {
            continue;
        };
        if let (true, Some(b)) = (system, built.report.built.get(&node)) {
            packages.push(SystemPackage {
                id: id.clone(),
                version: pkg.version.to_string(),
                path: b.path.clone(),
            });
        }
    }
    Ok(build_toplevel(store, &evaluation.spec, &packages)?)
}

/// Print the plan from the current system to `new`.
fn show_plan(ctx: &Context, target: &Target<'_>, new: &Manifest) -> Result<(), Error> {
    let old = match target.current_system()? {
        Some(p) => Some(target.manifest(&p)?),
        None => None,
    };
    let diff = SystemDiff::between(old.as_ref(), new);
    if ctx.json {
        ctx.out
            .json(&serde_json::to_value(&diff).expect("a diff serialises"))?;
    } else {
        ctx.out.data(&diff.lines().join("\n"))?;
    }
    Ok(())
}

fn report(ctx: &Context, n: u32, r: &ActivationReport) {
    for kept in &r.kept {
        ctx.out.warn(&format!(
            "/etc/{kept} was made or changed by hand: left as it is (the generation's copy is in /etc/static/{kept})"
        ));
    }
    ctx.out.status(
        "activated",
        &format!(
            "generation {n}: {} files written, {} removed, {} kept",
            r.written.len(),
            r.removed.len(),
            r.kept.len()
        ),
    );
}

fn build_and_activate(ctx: &Context, mode: Mode, dry_run: bool) -> Result<ExitCode, Error> {
    let store = Store::open(ctx.root()).map_err(|source| Error::Store { source })?;
    let target = Target::new(&store);
    recover(ctx, &target)?;
    let toplevel = build_configuration(ctx, &store)?;
    show_plan(ctx, &target, &toplevel.manifest)?;
    if dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let generation = Profiles::new(&store).add(&toplevel.path)?;
    let r = target.activate(generation.number, mode)?;
    report(ctx, generation.number, &r);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn switch(ctx: &Context, args: &SwitchArgs) -> Result<ExitCode, Error> {
    let Some(n) = args.generation else {
        return build_and_activate(ctx, Mode::Switch, args.dry_run);
    };
    let store = Store::open(ctx.root()).map_err(|source| Error::Store { source })?;
    let target = Target::new(&store);
    recover(ctx, &target)?;
    let generation = Profiles::new(&store).get(n)?;
    let new = target.manifest(&generation.toplevel)?;
    show_plan(ctx, &target, &new)?;
    if !args.dry_run {
        let r = target.activate(n, Mode::Switch)?;
        report(ctx, n, &r);
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn boot(ctx: &Context, args: &BootArgs) -> Result<ExitCode, Error> {
    build_and_activate(ctx, Mode::Boot, args.dry_run)
}

pub(crate) fn test(ctx: &Context, args: &TestArgs) -> Result<ExitCode, Error> {
    build_and_activate(ctx, Mode::Test, args.dry_run)
}

pub(crate) fn rollback(ctx: &Context, _args: &RollbackArgs) -> Result<ExitCode, Error> {
    let store = Store::open(ctx.root()).map_err(|source| Error::Store { source })?;
    let target = Target::new(&store);
    recover(ctx, &target)?;
    let profiles = Profiles::new(&store);
    let current = profiles
        .current()?
        .ok_or(nexis_activate::GenerationError::NothingBefore(0))?;
    let previous = profiles.before(current)?;
    let new = target.manifest(&previous.toplevel)?;
    show_plan(ctx, &target, &new)?;
    let r = target.activate(previous.number, Mode::Switch)?;
    report(ctx, previous.number, &r);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn generations(ctx: &Context, args: &GenerationsArgs) -> Result<ExitCode, Error> {
    let store = Store::open(ctx.root()).map_err(|source| Error::Store { source })?;
    let profiles = Profiles::new(&store);
    if let Some(GenerationsCommand::Delete { numbers }) = &args.command {
        profiles.delete(numbers)?;
        ctx.out
            .status("deleted", &format!("{} generations", numbers.len()));
        return Ok(ExitCode::SUCCESS);
    }
    let current = profiles.current()?;
    let live = Target::new(&store).current_system()?;
    let list = profiles.list()?;
    if ctx.json {
        let value: Vec<serde_json::Value> = list
            .iter()
            .map(|g| {
                serde_json::json!({
                    "number": g.number,
                    "toplevel": g.toplevel.to_string(),
                    "created": g.created,
                    "boot-default": current == Some(g.number),
                    "running": live.as_ref() == Some(&g.toplevel),
                })
            })
            .collect();
        ctx.out.json(&serde_json::Value::Array(value))?;
    } else {
        let lines: Vec<String> = list
            .iter()
            .map(|g| {
                let mut marks = Vec::new();
                if current == Some(g.number) {
                    marks.push("boot default");
                }
                if live.as_ref() == Some(&g.toplevel) {
                    marks.push("running");
                }
                let marks = if marks.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", marks.join(", "))
                };
                format!("{:>4}  {}  {}{marks}", g.number, utc(g.created), g.toplevel)
            })
            .collect();
        ctx.out.data(&lines.join("\n"))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn diff(ctx: &Context, args: &DiffArgs) -> Result<ExitCode, Error> {
    let store = Store::open(ctx.root()).map_err(|source| Error::Store { source })?;
    let target = Target::new(&store);
    let profiles = Profiles::new(&store);
    let manifest_of =
        |n: u32| -> Result<Manifest, Error> { Ok(target.manifest(&profiles.get(n)?.toplevel)?) };
    let old = match args.from {
        Some(n) => Some(manifest_of(n)?),
        None => match target.current_system()? {
            Some(p) => Some(target.manifest(&p)?),
            None => None,
        },
    };
    let new = match args.to {
        Some(n) => manifest_of(n)?,
        None => build_configuration(ctx, &store)?.manifest,
    };
    let diff = SystemDiff::between(old.as_ref(), &new);
    if ctx.json {
        ctx.out
            .json(&serde_json::to_value(&diff).expect("a diff serialises"))?;
    } else {
        ctx.out.data(&diff.lines().join("\n"))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM` (UTC).
fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00");
        assert_eq!(super::utc(1_700_000_123), "2023-11-14 22:15");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00");
    }
}
