//! `nexis gc`: delete every store path no root reaches.

use std::process::ExitCode;

use nexis_store::{GcOptions, GcProgress, Store};

use crate::context::Context;
use crate::error::Error;

/// Collect garbage: delete the store paths that no GC root, profile or running process
/// needs
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print what would be deleted; delete nothing
    #[arg(long)]
    dry_run: bool,
    /// Stop after freeing this many bytes (suffixes K, M, G)
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    max_freed: Option<u64>,
}

/// `123`, `10K`, `5M`, `2G` (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("`{s}` is not a size; write e.g. 500M or 2G"))
}

pub(crate) fn run(ctx: &Context, args: &Args) -> Result<ExitCode, Error> {
    let store = Store::open(ctx.root()).map_err(|source| Error::Store { source })?;
    let out = ctx.out.clone();
    let bar = ctx.out.bar("deleting", 0);
    let shown = bar.clone();
    let progress = move |p: GcProgress| match p {
        GcProgress::Marked { live, dead } => {
            out.debug(1, &format!("{live} live paths, {dead} dead"));
            shown.set_length(dead as u64);
        }
        GcProgress::Deleted { done, total } => {
            shown.set_position(done as u64);
            if done == total || done % 1000 == 0 {
                out.debug(1, &format!("deleted {done}/{total}"));
            }
        }
    };
    let report = store
        .collect_garbage(
            GcOptions {
                dry_run: args.dry_run,
                max_freed: args.max_freed,
            },
            &progress,
        )
        .map_err(|source| Error::Store { source })?;
    bar.finish_and_clear();
    if ctx.json {
        ctx.out.json(&serde_json::json!({
            "dry-run": args.dry_run,
            "deleted": report.deleted.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "bytes-freed": report.bytes_freed,
            "live": report.live,
        }))?;
    } else {
        if !report.deleted.is_empty() {
            let lines: Vec<String> = report.deleted.iter().map(ToString::to_string).collect();
            ctx.out.data(&lines.join("\n"))?;
        }
        let verb = if args.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        ctx.out.status(
            "gc",
            &format!(
                "{verb} {} paths, {} freed; {} live",
                report.deleted.len(),
                nexis_store::human_bytes(report.bytes_freed),
                report.live
            ),
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("2K"), Ok(2048));
        assert_eq!(parse_size("5M"), Ok(5 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }
}
