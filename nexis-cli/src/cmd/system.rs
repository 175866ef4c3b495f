//! `nexis switch`, `boot`, `test`, `rollback`, `generations` and `diff`: system
//! generations on a root.

use std::process::ExitCode;

use std::collections::BTreeMap;
use std::path::Path;

use nexis_activate::{
    ActivationReport, Ids, Manifest, Mode, Profiles, SystemDiff, SystemInputs, SystemPackage,
    Target, Toplevel, build_toplevel,
};
use nexis_build::schedule_options;
use nexis_store::{Store, StorePath};

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
        #[arg(required_unless_present = "keep", conflicts_with = "keep")]
        numbers: Vec<u32>,
        /// Delete all but the newest N generations (the boot default and the running
        /// one are always kept)
        #[arg(long, value_name = "N")]
        keep: Option<u32>,
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
    // The system profile: what `[packages] install` and the security tools ask for;
    // each tool's package by tool, for its services.
    let mut packages = Vec::new();
    let mut security = BTreeMap::new();
    for (id, reasons) in &evaluation.packages.roots {
        let system = reasons
            .iter()
            .any(|r| r == "packages.install" || r.starts_with("security."));
        let (Some(&node), Some(pkg)) = (built.plan.nodes.get(id), evaluation.packages.get(id))
        else {
            continue;
        };
        if let (true, Some(b)) = (system, built.report.built.get(&node)) {
            for tool in reasons.iter().filter_map(|r| r.strip_prefix("security.")) {
                security.insert(tool.to_owned(), b.path.clone());
            }
            // `[packages] priority` names it as `install` does: `input#name` or `name`.
            let name = id.rsplit_once('#').map_or(id.as_str(), |(_, n)| n);
            let priority = evaluation
                .spec
                .packages
                .priority
                .iter()
                .find(|(k, _)| k.value == *id || k.value == name)
                .map_or(0, |(_, p)| p.value);
            packages.push(SystemPackage {
                id: id.clone(),
                version: pkg.version.to_string(),
                path: b.path.clone(),
                priority,
            });
        }
    }
    // What each `${pkgs.…}` of the configuration stands for.
    let mut references = BTreeMap::new();
    for (text, id) in &evaluation.packages.references {
        let node = built.plan.nodes.get(id);
        if let Some(b) = node.and_then(|n| built.report.built.get(n)) {
            references.insert(text.clone(), b.path.clone());
        }
    }
    let revision = nexis_fetch::head_revision(path.parent().unwrap_or(Path::new(".")));
    let kernel = evaluation
        .packages
        .roots
        .iter()
        .find(|(_, reasons)| reasons.contains("boot.kernel"))
        .and_then(|(id, _)| built.report.built.get(built.plan.nodes.get(id)?))
        .map(|b| b.path.clone());
    let mut ids = Ids::load(store.state_dir())?;
    let toplevel = build_toplevel(
        store,
        &SystemInputs {
            spec: &evaluation.spec,
            packages: &packages,
            references: &references,
            config_revision: revision.as_deref(),
            kernel: kernel.as_ref(),
            security: &security,
        },
        &mut ids,
    )?;
    // Ids given once are kept even if this toplevel is never activated.
    ids.save(store.state_dir())?;
    Ok(toplevel)
}

/// The total size of a toplevel's closure, in archive bytes.
fn closure_size(store: &Store, toplevel: &StorePath) -> Option<u64> {
    store
        .with_db(|db| db.closure_size(std::slice::from_ref(toplevel)))
        .ok()
}

/// Print a plan: the diff's lines, then the closure size change.
fn print_diff(ctx: &Context, diff: &SystemDiff) -> Result<(), Error> {
    if ctx.json {
        ctx.out
            .json(&serde_json::to_value(diff).expect("a diff serialises"))?;
    } else {
        let mut lines = diff.lines();
        if let Some((old, new)) = diff.closure_size {
            let change = if new >= old {
                format!("+{}", nexis_store::human_bytes(new - old))
            } else {
                format!("-{}", nexis_store::human_bytes(old - new))
            };
            lines.push(format!(
                "closure size: {} → {} ({change})",
                nexis_store::human_bytes(old),
                nexis_store::human_bytes(new)
            ));
        }
        ctx.out.data(&lines.join("\n"))?;
    }
    Ok(())
}

/// The plan between two toplevels (none: an empty system), with closure sizes.
fn plan_between(
    store: &Store,
    target: &Target<'_>,
    old: Option<&StorePath>,
    new: (&StorePath, &Manifest),
) -> Result<SystemDiff, Error> {
    let old_manifest = match old {
        Some(p) => Some(target.manifest(p)?),
        None => None,
    };
    let diff = SystemDiff::between(old_manifest.as_ref(), new.1);
    let old_size = old.map_or(Some(0), |p| closure_size(store, p));
    Ok(match (old_size, closure_size(store, new.0)) {
        (Some(a), Some(b)) => diff.with_closure_sizes(a, b),
        _ => diff,
    })
}

/// Print the plan from the current system to `new`.
fn show_plan(
    ctx: &Context,
    store: &Store,
    target: &Target<'_>,
    new: (&StorePath, &Manifest),
) -> Result<(), Error> {
    let current = target.current_system()?;
    let diff = plan_between(store, target, current.as_ref(), new)?;
    print_diff(ctx, &diff)
}

/// Tell what an activation did; failure when a service action failed (the generation is
/// in effect all the same).
fn report(ctx: &Context, n: u32, r: &ActivationReport) -> ExitCode {
    for kept in &r.kept {
        ctx.out.warn(&format!(
            "{kept} was made or changed by hand (or is reached through a symbolic link): left as it is; `nexis check --drift` lists it"
        ));
    }
    for (file, aside) in &r.backed_up {
        ctx.out
            .warn(&format!("{file} was in the way: moved aside to {aside}"));
    }
    for home in &r.homes_created {
        ctx.out.status("created", home);
    }
    if let Some(boot) = r.boot.as_ref().filter(|b| !b.written.is_empty()) {
        ctx.out.status(
            "boot",
            &format!(
                "{} files written, {} removed, {} copied",
                boot.written.len(),
                boot.removed.len(),
                nexis_store::human_bytes(boot.copied_bytes)
            ),
        );
    }
    let mut failed = 0;
    if let Some(services) = &r.services {
        for action in &services.actions {
            if let nexis_activate::Outcome::Failed(_) = action.outcome {
                failed += 1;
                ctx.out.warn(&action.to_string());
            } else {
                ctx.out.status(&services.supervisor, &action.to_string());
            }
        }
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
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ctx.out.warn(&format!(
            "generation {n} is in effect, but {failed} service action{} failed",
            if failed == 1 { "" } else { "s" }
        ));
        ExitCode::FAILURE
    }
}

fn build_and_activate(ctx: &Context, mode: Mode, dry_run: bool) -> Result<ExitCode, Error> {
    let store = Store::open(ctx.root()).map_err(|source| Error::Store { source })?;
    let target = Target::new(&store);
    recover(ctx, &target)?;
    let toplevel = build_configuration(ctx, &store)?;
    show_plan(ctx, &store, &target, (&toplevel.path, &toplevel.manifest))?;
    if dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let generation = Profiles::new(&store).add(&toplevel.path)?;
    let r = target.activate(generation.number, mode)?;
    Ok(report(ctx, generation.number, &r))
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
    show_plan(ctx, &store, &target, (&generation.toplevel, &new))?;
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let r = target.activate(n, Mode::Switch)?;
    Ok(report(ctx, n, &r))
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
    show_plan(ctx, &store, &target, (&previous.toplevel, &new))?;
    let r = target.activate(previous.number, Mode::Switch)?;
    Ok(report(ctx, previous.number, &r))
}

pub(crate) fn generations(ctx: &Context, args: &GenerationsArgs) -> Result<ExitCode, Error> {
    let store = Store::open(ctx.root()).map_err(|source| Error::Store { source })?;
    let profiles = Profiles::new(&store);
    if let Some(GenerationsCommand::Delete { numbers, keep }) = &args.command {
        let numbers = match keep {
            Some(keep) => {
                let live = Target::new(&store).current_system()?;
                let mut protect: Vec<u32> = profiles.current()?.into_iter().collect();
                protect.extend(
                    profiles
                        .list()?
                        .iter()
                        .filter(|g| live.as_ref() == Some(&g.toplevel))
                        .map(|g| g.number),
                );
                profiles.beyond(usize::try_from(*keep).unwrap_or(usize::MAX), &protect)?
            }
            None => numbers.clone(),
        };
        profiles.delete(&numbers)?;
        ctx.out
            .status("deleted", &format!("{} generations", numbers.len()));
        // Their boot entries go too.
        if let Some(current) = profiles.current()? {
            let r = Target::new(&store).boot_entries(current)?;
            if !r.removed.is_empty() {
                ctx.out
                    .status("removed", &format!("{} boot files", r.removed.len()));
            }
        }
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
                format!(
                    "{:>4}  {}  {}{marks}",
                    g.number,
                    nexis_activate::utc(g.created),
                    g.toplevel
                )
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
    let old = match args.from {
        Some(n) => Some(profiles.get(n)?.toplevel),
        None => target.current_system()?,
    };
    let new = if let Some(n) = args.to {
        let path = profiles.get(n)?.toplevel;
        let manifest = target.manifest(&path)?;
        (path, manifest)
    } else {
        let t = build_configuration(ctx, &store)?;
        (t.path, t.manifest)
    };
    let diff = plan_between(&store, &target, old.as_ref(), (&new.0, &new.1))?;
    print_diff(ctx, &diff)?;
    Ok(ExitCode::SUCCESS)
}
