//! `nexis completions`: shell completion scripts.

use std::io;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::Cli;
use crate::context::Context;
use crate::error::Error;

/// Print a shell completion script, e.g. `nexis completions bash > /etc/bash_completion.d/nexis`
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The shell to complete for
    #[arg(value_enum)]
    shell: Shell,
}

pub(crate) fn run(_ctx: &Context, args: &Args) -> Result<ExitCode, Error> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "nexis", &mut script);
    let mut stdout = io::stdout().lock();
    io::Write::write_all(&mut stdout, &script)
        .and_then(|()| io::Write::flush(&mut stdout))
        .map_err(|source| Error::Stdout { source })?;
    Ok(ExitCode::SUCCESS)
}
