//! Where output goes: data on stdout, messages on stderr, colors only on a terminal.

use std::ffi::OsStr;
use std::io::{self, IsTerminal, Write};

use anstyle::{AnsiColor, Style};

use crate::error::Error;

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ColorChoice {
    /// Color when stderr is a terminal and `NO_COLOR` is not set.
    Auto,
    /// Always color.
    Always,
    /// Never color.
    Never,
}

/// Whether to color: `always` and `never` win; `auto` colors when stderr is a terminal
/// and `NO_COLOR` is unset or empty (<https://no-color.org>).
pub(crate) fn use_color(choice: ColorChoice, no_color: Option<&OsStr>, is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => no_color.is_none_or(OsStr::is_empty) && is_terminal,
    }
}

const ERROR: Style = AnsiColor::Red.on_default().bold();
const OK: Style = AnsiColor::Green.on_default().bold();
const NOTE: Style = AnsiColor::Cyan.on_default().bold();
const DIM: Style = Style::new().dimmed();

/// The process's output.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    color: bool,
    quiet: bool,
    verbose: u8,
    /// Whether stderr is a terminal: progress bars are drawn only then.
    terminal: bool,
}

impl Output {
    /// From the options, `NO_COLOR` and whether stderr is a terminal.
    pub(crate) fn from_env(color: ColorChoice, quiet: bool, verbose: u8) -> Output {
        let no_color = std::env::var_os("NO_COLOR");
        let terminal = io::stderr().is_terminal();
        Output {
            color: use_color(color, no_color.as_deref(), terminal),
            quiet,
            verbose,
            terminal,
        }
    }

    /// Several progress bars on stderr at once (one per input being fetched), drawn
    /// only when stderr is a terminal and not with `--quiet`.
    pub(crate) fn multi(&self) -> indicatif::MultiProgress {
        if !self.terminal || self.quiet {
            return indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::hidden(),
            );
        }
        indicatif::MultiProgress::new()
    }

    /// A progress bar on stderr for `total` steps of `what` (e.g. "deleting"), drawn
    /// only when stderr is a terminal and not with `--quiet`; hidden otherwise (pipes
    /// and CI get the summary line alone). Cleared when finished or dropped.
    pub(crate) fn bar(&self, what: &str, total: u64) -> indicatif::ProgressBar {
        if !self.terminal || self.quiet {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(total).with_message(what.to_owned());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {elapsed}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar
    }

    /// Data: a line on stdout.
    #[expect(clippy::unused_self, reason = "all output goes through `Output`")]
    pub(crate) fn data(&self, text: &str) -> Result<(), Error> {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .map_err(|source| Error::Stdout { source })
    }

    /// Data: bytes on stdout, as they are (a build log).
    #[expect(clippy::unused_self, reason = "all output goes through `Output`")]
    pub(crate) fn bytes(&self, data: &[u8]) -> Result<(), Error> {
        let mut stdout = io::stdout().lock();
        stdout
            .write_all(data)
            .and_then(|()| stdout.flush())
            .map_err(|source| Error::Stdout { source })
    }

    /// Data: pretty JSON on stdout.
    pub(crate) fn json(&self, value: &serde_json::Value) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(value).expect("JSON values serialise");
        self.data(&text)
    }

    /// A result worth telling (`ok: …`, `wrote …`); not with `--quiet`.
    pub(crate) fn status(&self, label: &str, message: &str) {
        if !self.quiet {
            self.message(OK, label, message);
        }
    }

    /// Something the user should know although the command goes on.
    pub(crate) fn warn(&self, message: &str) {
        self.message(ERROR, "warning", message);
    }

    /// A side remark; not with `--quiet`.
    pub(crate) fn note(&self, message: &str) {
        if !self.quiet {
            self.message(NOTE, "note", message);
        }
    }

    /// Detail shown with `-v` (level 1) or `-vv` (level 2).
    pub(crate) fn debug(&self, level: u8, message: &str) {
        if self.verbose >= level {
            let text = self.paint(DIM, message);
            write_stderr(&text);
        }
    }

    /// Rendered diagnostics (or anything else preformatted) on stderr.
    #[expect(clippy::unused_self, reason = "all output goes through `Output`")]
    pub(crate) fn raw(&self, text: &str) {
        write_stderr(text.trim_end_matches('\n'));
    }

    /// Print a failure once: its evaluation diagnostics if any, then `error: …` and one
    /// `caused by: …` line per underlying cause.
    pub(crate) fn report(&self, err: &Error) {
        if let Some(eval) = err.eval_error() {
            self.raw(&eval.render(self.color));
            if matches!(err, Error::Invalid { .. }) {
                // The rendering already ends with "N errors in the configuration".
                return;
            }
        }
        self.message(ERROR, "error", &err.to_string());
        let mut cause = std::error::Error::source(err);
        while let Some(c) = cause {
            if !c.is::<nexis_config::EvalError>() {
                write_stderr(&format!("  caused by: {c}"));
            }
            cause = c.source();
        }
    }

    fn message(&self, style: Style, label: &str, message: &str) {
        write_stderr(&format!("{}: {message}", self.paint(style, label)));
    }

    fn paint(&self, style: Style, text: &str) -> String {
        if self.color {
            format!("{style}{text}{style:#}")
        } else {
            text.to_owned()
        }
    }
}

/// A line on stderr. A failure to write a message has nowhere to be reported, so it is
/// ignored (unlike data on stdout).
fn write_stderr(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_colors_only_on_a_terminal_without_no_color() {
        assert!(use_color(ColorChoice::Auto, None, true));
        assert!(!use_color(ColorChoice::Auto, None, false));
        assert!(!use_color(ColorChoice::Auto, Some(OsStr::new("1")), true));
        // An empty NO_COLOR counts as unset.
        assert!(use_color(ColorChoice::Auto, Some(OsStr::new("")), true));
    }

    #[test]
    fn explicit_choices_win_over_the_environment() {
        assert!(use_color(ColorChoice::Always, Some(OsStr::new("1")), false));
        assert!(!use_color(ColorChoice::Never, None, true));
    }

    #[test]
    fn paint_adds_escapes_only_with_color() {
        let plain = Output {
            color: false,
            quiet: false,
            verbose: 0,
            terminal: false,
        };
        assert_eq!(plain.paint(ERROR, "error"), "error");
        let colored = Output {
            color: true,
            ..plain
        };
        assert_eq!(colored.paint(ERROR, "error"), "\x1b[1m\x1b[31merror\x1b[0m");
    }
}
