//! `nexis man`: manual pages, one for `nexis` and one per subcommand.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_mangen::Man;

use crate::Cli;
use crate::context::Context;
use crate::error::Error;

/// Write man pages: nexis.1 and nexis-SUBCOMMAND.1 for each subcommand
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The directory to write them into (created if missing)
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
}

pub(crate) fn run(ctx: &Context, args: &Args) -> Result<ExitCode, Error> {
    fs::create_dir_all(&args.out).map_err(|source| Error::Write {
        path: args.out.clone(),
        source,
    })?;
    // Building names each subcommand `nexis-SUB` (its display name), which becomes the
    // page's title and file name.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write_pages(&cmd, &args.out, &mut written)?;
    for path in &written {
        ctx.out.data(&path.display().to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Write the page of `cmd`, then those of its subcommands, depth first.
fn write_pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<(), Error> {
    let man = Man::new(cmd.clone());
    let path = dir.join(man.get_filename());
    let write_error = |source| Error::Write {
        path: path.clone(),
        source,
    };
    let mut page = Vec::new();
    man.render(&mut page).map_err(write_error)?;
    fs::write(&path, page).map_err(write_error)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}
