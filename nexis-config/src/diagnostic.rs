//! Diagnostics: what went wrong, where, and what to do about it, rendered like rustc.

use std::fmt::Write as _;

use crate::source::{Sources, Span};

/// One labelled span in a diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What this place has to do with the error (may be empty).
    pub message: String,
    /// The primary label is underlined with `^`, others with `-`.
    pub primary: bool,
}

/// One error found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// A short stable name for the kind of error, such as `unknown-key` or `conflict`.
    pub kind: &'static str,
    /// One line saying what is wrong.
    pub message: String,
    /// The places involved; the first is the primary one.
    pub labels: Vec<Label>,
    /// What to do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    pub(crate) fn new(kind: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            kind,
            message: message.into(),
            labels: Vec::new(),
            help: None,
        }
    }

    pub(crate) fn primary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: message.into(),
            primary: true,
        });
        self
    }

    pub(crate) fn secondary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: message.into(),
            primary: false,
        });
        self
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub(crate) fn help_opt(mut self, help: Option<String>) -> Diagnostic {
        self.help = help;
        self
    }

    /// The primary span, if the diagnostic has one.
    pub fn span(&self) -> Option<Span> {
        self.labels.first().map(|l| l.span)
    }

    /// Render as rustc does: header, `--> file:line:col`, the source line with the
    /// span underlined, secondary places, and the hint.
    pub fn render(&self, sources: &Sources, color: bool) -> String {
        let paint = Paint { color };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}{}",
            paint.error(&format!("error[{}]", self.kind)),
            paint.bold(&format!(": {}", self.message))
        );
        let width = self
            .labels
            .iter()
            .map(|l| {
                let f = sources.get(l.span.file);
                f.line_col(l.span.start).0.to_string().len()
            })
            .max()
            .unwrap_or(1);
        let pad = " ".repeat(width);
        for (i, label) in self.labels.iter().enumerate() {
            let file = sources.get(label.span.file);
            let (line, col) = file.line_col(label.span.start);
            let arrow = if i == 0 { "-->" } else { ":::" };
            let _ = writeln!(
                out,
                "{pad}{} {}:{line}:{col}",
                paint.blue(arrow),
                file.path().display()
            );
            let text = file.line_text(line);
            let _ = writeln!(out, "{pad} {}", paint.blue("|"));
            let _ = writeln!(
                out,
                "{} {} {}",
                paint.blue(&format!("{line:>width$}")),
                paint.blue("|"),
                text
            );
            // Underline the part of the span on this line (at least one column).
            let line_chars = text.chars().count();
            let (end_line, end_col) = file.line_col(label.span.end);
            let last = if end_line == line {
                end_col.max(col + 1)
            } else {
                line_chars + 1
            };
            let len = last.saturating_sub(col).max(1);
            let mark = if label.primary { "^" } else { "-" }.repeat(len);
            let underline = format!("{mark} {}", label.message);
            let underline = underline.trim_end();
            let painted = if label.primary {
                paint.error(underline)
            } else {
                paint.blue(underline)
            };
            let _ = writeln!(
                out,
                "{pad} {} {}{painted}",
                paint.blue("|"),
                " ".repeat(col - 1)
            );
        }
        if let Some(help) = &self.help {
            let _ = writeln!(
                out,
                "{pad} {} {}: {help}",
                paint.blue("="),
                paint.bold("help")
            );
        }
        out
    }
}

struct Paint {
    color: bool,
}

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    fn error(&self, s: &str) -> String {
        self.wrap("1;31", s)
    }
    fn blue(&self, s: &str) -> String {
        self.wrap("1;34", s)
    }
    fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
}

/// Evaluation failed: every independent error found, with the files they point into.
#[derive(Debug, Clone)]
pub struct EvalError {
    pub(crate) diagnostics: Vec<Diagnostic>,
    pub(crate) sources: Sources,
}

impl EvalError {
    /// The errors, in the order of the files and places they point at.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// The files the errors point into.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Render every diagnostic, separated by blank lines, with a count at the end.
    pub fn render(&self, color: bool) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            out.push_str(&d.render(&self.sources, color));
            out.push('\n');
        }
        let n = self.diagnostics.len();
        let _ = write!(
            out,
            "{n} error{} in the configuration",
            if n == 1 { "" } else { "s" }
        );
        out
    }
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for EvalError {}

/// "did you mean" over a list of candidates (Jaro-Winkler, like cargo).
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_rustc() {
        let mut sources = Sources::default();
        let id = sources.add("nexis.toml".into(), "[system]\nhostnme = \"x\"\n".into());
        let d = Diagnostic::new("unknown-key", "unknown key `hostnme` in `system`")
            .primary(Span::new(id, 9..16), "not a key of `system`")
            .help("did you mean `hostname`?");
        let text = d.render(&sources, false);
        assert_eq!(
            text,
            "error[unknown-key]: unknown key `hostnme` in `system`\n \
             --> nexis.toml:2:1\n  |\n2 | hostnme = \"x\"\n  | ^^^^^^^ not a key of `system`\n  \
             = help: did you mean `hostname`?\n"
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("hostnme", ["hostname", "timezone"]).as_deref(),
            Some("did you mean `hostname`?")
        );
        assert_eq!(did_you_mean("zzz", ["hostname"]), None);
    }
}
