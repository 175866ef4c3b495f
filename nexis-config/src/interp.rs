//! `${…}` substitution in strings.
//!
//! Three kinds of reference:
//! - `${pkgs.NAME}` / `${pkgs.INPUT#NAME}`: the output path of a package. It stays in the
//!   string as written (the build substitutes the store path) and the package becomes part
//!   of the system; evaluation checks that it resolves.
//! - `${vars.NAME}`: a variable of the file being declared (`vars` in `[files."…"]` or a
//!   user's home file).
//! - `${section.key…}`: the value of another configuration key, such as
//!   `${system.hostname}` (strings, numbers and booleans).
//!
//! `$${` writes a literal `${`.

use std::collections::BTreeMap;

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::source::{Sources, Span};
use crate::spec::PackageRef;
use crate::value::{Kind, Node, Table};

/// A `${pkgs.…}` found in a string.
#[derive(Debug, Clone)]
pub(crate) struct PkgUse {
    pub(crate) reference: PackageRef,
    pub(crate) span: Span,
}

/// What references can see.
pub(crate) struct Scope<'a> {
    pub(crate) root: &'a Table,
    /// The typed defaults, for keys that no module wrote.
    pub(crate) defaults: &'a serde_json::Value,
    pub(crate) sources: &'a Sources,
}

/// Top-level sections a `${section.key}` reference may start with.
const SECTIONS: &[&str] = &[
    "system", "boot", "network", "security", "users", "groups", "services", "files", "packages",
];

/// Interpolate every string in the merged tree except inputs and recipes. Returns the
/// spans of the strings whose references failed: they keep their text, and later checks
/// say nothing more about them (one mistake, one error).
pub(crate) fn interpolate_tree(
    root: &mut Table,
    defaults: &serde_json::Value,
    sources: &Sources,
    pkgs: &mut Vec<PkgUse>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Span> {
    // Work on a copy for lookups so references see the values as written.
    let snapshot = root.clone();
    let scope = Scope {
        root: &snapshot,
        defaults,
        sources,
    };
    let mut failed = Vec::new();
    for (key, entry) in &mut root.entries {
        if key == "inputs" || key == "recipes" {
            continue;
        }
        let mut path = vec![key.clone()];
        let mut cx = Walk {
            scope: &scope,
            pkgs,
            diags,
            failed: &mut failed,
        };
        walk(&mut entry.node, &mut path, None, &mut cx);
    }
    failed
}

/// What the walk carries along.
struct Walk<'s, 'a> {
    scope: &'s Scope<'a>,
    pkgs: &'s mut Vec<PkgUse>,
    diags: &'s mut Vec<Diagnostic>,
    failed: &'s mut Vec<Span>,
}

fn walk(
    node: &mut Node,
    path: &mut Vec<String>,
    vars: Option<&BTreeMap<String, String>>,
    cx: &mut Walk<'_, '_>,
) {
    match &mut node.kind {
        Kind::Str(s) if s.contains('$') => {
            // The key being written is the first link of any cycle through it.
            let mut stack = vec![crate::merge::dotted(path)];
            match interpolate(s, node.span, vars, cx.scope, cx.pkgs, &mut stack) {
                Ok(new) => *s = new,
                Err(d) => {
                    cx.diags.push(d);
                    cx.failed.push(node.span);
                }
            }
        }
        Kind::Array(items) => {
            for item in items {
                walk(item, path, vars, cx);
            }
        }
        Kind::Table(t) => {
            // A declared file's `vars` are in scope for its strings.
            let own_vars = file_vars(path, t);
            let vars = own_vars.as_ref().or(vars);
            for (key, entry) in &mut t.entries {
                if key == "vars" && own_vars.is_some() {
                    continue;
                }
                path.push(key.clone());
                walk(&mut entry.node, path, vars, cx);
                path.pop();
            }
        }
        _ => {}
    }
}

/// The `vars` of a file table (`files.X` or `users.U.files.X`), if `path` is one.
fn file_vars(path: &[String], t: &Table) -> Option<BTreeMap<String, String>> {
    let is_file = matches!(path, [f, _] if f == "files")
        || matches!(path, [u, _, f, _] if u == "users" && f == "files");
    if !is_file {
        return None;
    }
    let mut vars = BTreeMap::new();
    if let Some(entry) = t.entries.get("vars")
        && let Kind::Table(vt) = &entry.node.kind
    {
        for (k, e) in &vt.entries {
            if let Some(v) = scalar_text(&e.node.kind) {
                vars.insert(k.clone(), v);
            }
        }
    }
    Some(vars)
}

fn scalar_text(kind: &Kind) -> Option<String> {
    match kind {
        Kind::Str(s) | Kind::Datetime(s) => Some(s.clone()),
        Kind::Int(i) => Some(i.to_string()),
        Kind::Float(f) => Some(f.to_string()),
        Kind::Bool(b) => Some(b.to_string()),
        Kind::Array(_) | Kind::Table(_) => None,
    }
}

/// Substitute the references in one string. `span` is where the string was written;
/// `stack` holds the keys being expanded, to catch cycles.
pub(crate) fn interpolate(
    text: &str,
    span: Span,
    vars: Option<&BTreeMap<String, String>>,
    scope: &Scope<'_>,
    pkgs: &mut Vec<PkgUse>,
    stack: &mut Vec<String>,
) -> Result<String, Diagnostic> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let Some(end) = body.find('}') else {
            return Err(
                Diagnostic::new("interpolation", "unterminated `${` in string")
                    .primary(narrow(scope.sources, span, "${"), "opened here")
                    .help("close it with `}`, or write `$${` for a literal `${`"),
            );
        };
        let expr = body[..end].trim();
        let whole = &after[..end + 3];
        let at = narrow(scope.sources, span, whole);
        out.push_str(&expand(expr, whole, at, vars, scope, pkgs, stack)?);
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn expand(
    expr: &str,
    whole: &str,
    at: Span,
    vars: Option<&BTreeMap<String, String>>,
    scope: &Scope<'_>,
    pkgs: &mut Vec<PkgUse>,
    stack: &mut Vec<String>,
) -> Result<String, Diagnostic> {
    if let Some(pkg) = expr.strip_prefix("pkgs.") {
        let reference: PackageRef = pkg.parse().map_err(|e: String| {
            Diagnostic::new(
                "interpolation",
                format!("bad package reference in `{whole}`"),
            )
            .primary(at, e)
        })?;
        pkgs.push(PkgUse {
            reference,
            span: at,
        });
        // Kept as written: the build puts the store path here.
        return Ok(format!("${{pkgs.{pkg}}}"));
    }
    if let Some(name) = expr.strip_prefix("vars.") {
        let Some(vars) = vars else {
            return Err(
                Diagnostic::new("interpolation", format!("`{whole}` outside a file"))
                    .primary(at, "no `vars` here")
                    .help(
                        "`${vars.NAME}` works in the text of `[files.\"…\"]` and users' home files",
                    ),
            );
        };
        return vars.get(name).cloned().ok_or_else(|| {
            Diagnostic::new(
                "interpolation",
                format!("unknown variable `{name}` in `{whole}`"),
            )
            .primary(at, "not in this file's `vars`")
            .help_opt(did_you_mean(name, vars.keys().map(String::as_str)))
        });
    }
    let path = split_path(expr);
    let Some(section) = path.first() else {
        return Err(unknown_root(expr, whole, at));
    };
    if !SECTIONS.contains(&section.as_str()) {
        return Err(unknown_root(expr, whole, at));
    }
    // Keys compare in one spelling, however the reference quotes them.
    let key = crate::merge::dotted(&path);
    if stack.contains(&key) {
        let mut chain = stack.clone();
        chain.push(key);
        return Err(Diagnostic::new(
            "interpolation",
            format!("`{whole}` refers to itself: {}", chain.join(" -> ")),
        )
        .primary(at, "cyclic reference"));
    }
    match lookup(scope.root, &path) {
        Lookup::Found(node) => match &node.kind {
            Kind::Str(s) => {
                stack.push(key);
                let r = interpolate(s, node.span, None, scope, pkgs, stack);
                stack.pop();
                r
            }
            kind => scalar_text(kind).ok_or_else(|| {
                Diagnostic::new(
                    "interpolation",
                    format!(
                        "`{whole}` is {}, which cannot be put in a string",
                        kind.type_name()
                    ),
                )
                .primary(at, "not a string, number or boolean")
            }),
        },
        Lookup::Missing { depth, siblings } => {
            // Keys nobody wrote may still have a default.
            let entry_default = (depth >= 2).then(|| entry_default(&path[0])).flatten();
            let found = json_lookup(scope.defaults, &path).or_else(|| {
                entry_default
                    .as_ref()
                    .and_then(|d| json_lookup(d, &path[2..]))
            });
            if let Some(v) = found {
                return Ok(match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
            }
            let missing = path[..=depth].join(".");
            Err(Diagnostic::new(
                "interpolation",
                format!("`{whole}`: `{missing}` is not set"),
            )
            .primary(at, "unknown key")
            .help_opt(did_you_mean(
                &path[depth],
                siblings.iter().map(String::as_str),
            )))
        }
    }
}

fn unknown_root(expr: &str, whole: &str, at: Span) -> Diagnostic {
    let first = expr.split('.').next().unwrap_or(expr);
    let mut candidates = vec!["pkgs", "vars"];
    candidates.extend_from_slice(SECTIONS);
    Diagnostic::new("interpolation", format!("unknown reference `{whole}`"))
        .primary(at, "not a package, variable or configuration key")
        .help(did_you_mean(first, candidates).unwrap_or_else(|| {
            "write `${pkgs.NAME}`, `${vars.NAME}` or a key such as `${system.hostname}`; \
             `$${` gives a literal `${`"
                .to_owned()
        }))
}

/// Split `a.b."c.d"` into segments.
fn split_path(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in expr.chars() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

enum Lookup<'a> {
    Found(&'a Node),
    Missing { depth: usize, siblings: Vec<String> },
}

fn lookup<'a>(root: &'a Table, path: &[String]) -> Lookup<'a> {
    let mut table = root;
    for (i, seg) in path.iter().enumerate() {
        let Some(entry) = table.entries.get(seg) else {
            return Lookup::Missing {
                depth: i,
                siblings: table.entries.keys().cloned().collect(),
            };
        };
        if i + 1 == path.len() {
            return Lookup::Found(&entry.node);
        }
        match &entry.node.kind {
            Kind::Table(t) => table = t,
            _ => {
                return Lookup::Missing {
                    depth: i + 1,
                    siblings: Vec::new(),
                };
            }
        }
    }
    Lookup::Missing {
        depth: 0,
        siblings: Vec::new(),
    }
}

/// The defaults of one entry of a map section (a user, group, service or file), as
/// decoding an empty table gives them.
fn entry_default(section: &str) -> Option<serde_json::Value> {
    fn empty<T: serde::de::DeserializeOwned + serde::Serialize>() -> Option<serde_json::Value> {
        let value: T = serde_json::from_value(serde_json::json!({})).ok()?;
        serde_json::to_value(value).ok()
    }
    match section {
        "users" => empty::<crate::spec::User>(),
        "groups" => empty::<crate::spec::Group>(),
        "services" => empty::<crate::spec::Service>(),
        "files" => empty::<crate::spec::FileSpec>(),
        _ => None,
    }
}

fn json_lookup<'a>(value: &'a serde_json::Value, path: &[String]) -> Option<&'a serde_json::Value> {
    let mut v = value;
    for seg in path {
        v = v.get(seg)?;
    }
    (!v.is_null() && !v.is_object() && !v.is_array()).then_some(v)
}

/// Narrow a string's span to the part that reads `needle`, when it can be found in the
/// source as written (it cannot when escapes change the text).
pub(crate) fn narrow(sources: &Sources, span: Span, needle: &str) -> Span {
    let text = sources.get(span.file).slice(span);
    match text.find(needle) {
        Some(i) => {
            let start = span.start + u32::try_from(i).unwrap_or(0);
            Span {
                file: span.file,
                start,
                end: start + u32::try_from(needle.len()).unwrap_or(0),
            }
        }
        None => span,
    }
}
