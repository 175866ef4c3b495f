//! `nexis`: the NexisOS package manager's command line.
//!
//! This file parses the arguments and dispatches; each subcommand lives in its own module
//! under [`cmd`]. Data goes to stdout, messages to stderr ([`output`]); every failure is
//! an [`error::Error`], printed once by [`main`].

mod cmd;
mod context;
mod error;
mod output;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::context::Context;
use crate::output::{ColorChoice, Output};

/// Declarative, atomic package and system manager for NexisOS.
#[derive(Debug, Parser)]
#[command(
    name = "nexis",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// The system configuration [default: ./nexis.toml if it exists, else
    /// /etc/nexis/nexis.toml]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    /// The root of the system to operate on: the store is DIR/nexis/store, its state
    /// DIR/nexis/var/nexis (the configuration commands do not use it)
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    root: PathBuf,

    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    json: bool,

    /// Say more about what is done (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Print only data and errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,

    /// When to color messages on stderr (`NO_COLOR` is honoured for `auto`)
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
}

#[derive(Debug, Subcommand)]
enum Command {
    Init(cmd::init::Args),
    Eval(cmd::eval::Args),
    Check(cmd::check::Args),
    Config(cmd::config::Args),
    Schema(cmd::schema::Args),
    Completions(cmd::completions::Args),
    Man(cmd::man::Args),
    Store(cmd::store::Args),
    Gc(cmd::gc::Args),
    Fetch(cmd::fetch::FetchArgs),
    Lock(cmd::fetch::LockArgs),
    Update(cmd::fetch::UpdateArgs),
    Build(cmd::build::Args),
    Log(cmd::build::LogArgs),
    Switch(cmd::system::SwitchArgs),
    Boot(cmd::system::BootArgs),
    Test(cmd::system::TestArgs),
    Rollback(cmd::system::RollbackArgs),
    Generations(cmd::system::GenerationsArgs),
    Diff(cmd::system::DiffArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output::from_env(cli.global.color, cli.global.quiet, cli.global.verbose);
    let ctx = Context::new(out, &cli.global);
    let result = match &cli.command {
        Command::Init(args) => cmd::init::run(&ctx, args),
        Command::Eval(args) => cmd::eval::run(&ctx, args),
        Command::Check(args) => cmd::check::run(&ctx, args),
        Command::Config(args) => cmd::config::run(&ctx, args),
        Command::Schema(args) => cmd::schema::run(&ctx, args),
        Command::Completions(args) => cmd::completions::run(&ctx, args),
        Command::Man(args) => cmd::man::run(&ctx, args),
        Command::Store(args) => cmd::store::run(&ctx, args),
        Command::Gc(args) => cmd::gc::run(&ctx, args),
        Command::Fetch(args) => cmd::fetch::fetch(&ctx, args),
        Command::Lock(args) => cmd::fetch::lock(&ctx, args),
        Command::Update(args) => cmd::fetch::update(&ctx, args),
        Command::Build(args) => cmd::build::run(&ctx, args),
        Command::Log(args) => cmd::build::log(&ctx, args),
        Command::Switch(args) => cmd::system::switch(&ctx, args),
        Command::Boot(args) => cmd::system::boot(&ctx, args),
        Command::Test(args) => cmd::system::test(&ctx, args),
        Command::Rollback(args) => cmd::system::rollback(&ctx, args),
        Command::Generations(args) => cmd::system::generations(&ctx, args),
        Command::Diff(args) => cmd::system::diff(&ctx, args),
    };
    match result {
        Ok(code) => code,
        Err(err) if err.is_broken_pipe() => ExitCode::SUCCESS,
        Err(err) => {
            ctx.out.report(&err);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli =
            Cli::try_parse_from(["nexis", "eval", "--json", "-vv", "--config", "x.toml"]).unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.verbose, 2);
        assert_eq!(cli.global.config, Some(PathBuf::from("x.toml")));
        assert_eq!(cli.global.root, PathBuf::from("/"));
        assert!(Cli::try_parse_from(["nexis", "check", "-q", "-v"]).is_err());
    }
}
