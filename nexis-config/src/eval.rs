//! The evaluation pipeline: load modules, merge, interpolate, decode, validate, resolve.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::de::{Spanned, decode};
use crate::diagnostic::{Diagnostic, EvalError, did_you_mean};
use crate::interp::{self, PkgUse, Scope};
use crate::loader::{LoadError, Loader, normalize};
use crate::merge::{Layer, Priority, merge};
use crate::resolve::{self, PackageGraph};
use crate::source::{FileId, Sources, Span};
use crate::spec::SystemSpec;
use crate::validate;
use crate::value::{self, Kind, Node, Table};

/// A successfully evaluated configuration.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The merged, validated system.
    pub spec: SystemSpec,
    /// The resolved packages and their dependencies.
    pub packages: PackageGraph,
    /// Every module read, in canonical (path) order.
    pub modules: Vec<PathBuf>,
    /// Every file read: modules, recipes, `source` files.
    pub sources: Sources,
}

impl Evaluation {
    /// The resolved system as JSON: `modules`, `config` (the typed system), `packages`,
    /// `references` (each `${pkgs.…}` and the package it names), `inputs` (each input's
    /// folder, inputs of inputs included) and `follows`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "modules": self.modules,
            "config": self.spec,
            "packages": self.packages.to_json(),
            "references": self.packages.references,
            "inputs": self.packages.inputs,
            "follows": self.packages.follows,
        })
    }
}

/// Top-level keys of a module besides the [`SystemSpec`] sections.
const MODULE_KEYS: &[&str] = &["imports", "defaults", "force"];

/// Evaluate the configuration whose root module is `root`.
pub fn evaluate(loader: &dyn Loader, root: &Path) -> Result<Evaluation, EvalError> {
    let mut cx = Cx {
        loader,
        sources: Sources::default(),
        diags: Vec::new(),
    };
    let root = normalize(root);
    let mut modules = Vec::new();
    load_module(&mut cx, &root, None, &mut Vec::new(), &mut modules);
    if cx.sources.iter().next().is_none() {
        // The root module itself could not be read: nothing else can be said.
        return Err(EvalError {
            diagnostics: cx.diags,
            sources: cx.sources,
        });
    }
    modules.sort_by(|a, b| a.path.cmp(&b.path));
    let module_paths: Vec<PathBuf> = modules.iter().map(|m| m.path.clone()).collect();

    let mut layers = Vec::new();
    for m in modules {
        layers.extend(m.layers);
    }
    // After a syntax error, what a module meant is unknown: report the syntax errors
    // alone rather than guess (missing definitions would show as false errors).
    if cx.diags.iter().any(|d| d.kind == "syntax") {
        let mut diagnostics = cx.diags;
        dedup_and_sort(&mut diagnostics, &cx.sources);
        return Err(EvalError {
            diagnostics,
            sources: cx.sources,
        });
    }
    let mut tree = merge(layers, &mut cx.diags);

    let defaults = serde_json::to_value(SystemSpec::default()).expect("the spec serialises");
    let mut pkg_uses = Vec::new();
    let failed = interp::interpolate_tree(
        &mut tree,
        &defaults,
        &cx.sources,
        &mut pkg_uses,
        &mut cx.diags,
    );

    let sink = RefCell::new(Vec::new());
    let mut spec = decode_spec(&tree, &sink, &mut cx.diags);
    cx.diags.extend(sink.into_inner());

    let root_file = FileId(0);
    let fallback = Span::file_start(root_file);
    let mut checks = Vec::new();
    validate::validate(&spec, &tree, fallback, &mut checks);
    // A security tool's default package is needed because of its `enable`: point there.
    for (tool, package) in [
        ("firewall", &mut spec.security.firewall.package),
        ("clamav", &mut spec.security.clamav.package),
        ("maldet", &mut spec.security.maldet.package),
        ("falco", &mut spec.security.falco.package),
        ("suricata", &mut spec.security.suricata.package),
    ] {
        if package.span.is_none() {
            package.span = tree.key_span(&["security", tool, "enable"]);
        }
    }
    checks.retain(|d| d.span().is_none_or(|s| !failed.contains(&s)));
    cx.diags.append(&mut checks);
    render_sources(&mut cx, &tree, &mut spec, &mut pkg_uses);
    let packages = resolve::resolve(
        &spec,
        &tree,
        &pkg_uses,
        fallback,
        cx.loader,
        &mut cx.sources,
        &mut cx.diags,
    );

    if cx.diags.is_empty() {
        Ok(Evaluation {
            spec,
            packages,
            modules: module_paths,
            sources: cx.sources,
        })
    } else {
        let mut diagnostics = cx.diags;
        dedup_and_sort(&mut diagnostics, &cx.sources);
        Err(EvalError {
            diagnostics,
            sources: cx.sources,
        })
    }
}

/// Order diagnostics by place, and drop exact repeats. Files are ordered by path, not by
/// when they were read, so that the report does not depend on the order of `imports`.
fn dedup_and_sort(diags: &mut Vec<Diagnostic>, sources: &Sources) {
    diags.sort_by(|a, b| {
        let key = |d: &Diagnostic| {
            d.span()
                .map(|s| (sources.get(s.file).path(), s.start, s.end))
        };
        key(a).cmp(&key(b)).then_with(|| a.message.cmp(&b.message))
    });
    diags.dedup();
}

struct Cx<'a> {
    loader: &'a dyn Loader,
    sources: Sources,
    diags: Vec<Diagnostic>,
}

struct Module {
    path: PathBuf,
    layers: Vec<Layer>,
}

/// Load a module and, depth first, its imports. `stack` is the chain of modules being
/// loaded (for cycle reports); `via` is the import string that named this one.
fn load_module(
    cx: &mut Cx<'_>,
    path: &Path,
    via: Option<Span>,
    stack: &mut Vec<PathBuf>,
    modules: &mut Vec<Module>,
) {
    if let Some(i) = stack.iter().position(|p| p == path) {
        let mut chain: Vec<String> = stack[i..].iter().map(|p| p.display().to_string()).collect();
        chain.push(path.display().to_string());
        let at = via.expect("only an import can close a cycle");
        cx.diags.push(
            Diagnostic::new(
                "import-cycle",
                format!("import cycle: {}", chain.join(" -> ")),
            )
            .primary(at, "this import closes the cycle")
            .help("modules merge regardless of order, so one of these imports can go"),
        );
        return;
    }
    if modules.iter().any(|m| m.path == path) {
        return;
    }
    let text = match cx.loader.read(path) {
        Ok(t) => t,
        Err(e) => {
            let d = match via {
                Some(at) => Diagnostic::new("import", format!("cannot import {}", path.display()))
                    .primary(at, load_reason(&e)),
                None => Diagnostic::new("load", format!("cannot read {}", path.display()))
                    .help(load_reason(&e)),
            };
            cx.diags.push(d);
            return;
        }
    };
    let file = cx.sources.add(path.to_owned(), text);
    let parsed = value::parse(file, cx.sources.get(file).text());
    let mut root = match parsed {
        Ok(Node {
            kind: Kind::Table(t),
            ..
        }) => t,
        Ok(_) => unreachable!("a document is a table"),
        Err(d) => {
            cx.diags.push(d);
            modules.push(Module {
                path: path.to_owned(),
                layers: Vec::new(),
            });
            return;
        }
    };

    let imports = take_imports(cx, &mut root);
    let mut layers = Vec::new();
    for (key, priority) in [("defaults", Priority::Default), ("force", Priority::Force)] {
        if let Some(entry) = root.entries.remove(key) {
            match entry.node.kind {
                Kind::Table(mut t) => {
                    for inner in MODULE_KEYS {
                        if let Some(e) = t.entries.remove(*inner) {
                            cx.diags.push(
                                Diagnostic::new(
                                    "invalid-value",
                                    format!("`{inner}` inside `[{key}]`"),
                                )
                                .primary(e.key_span, "not allowed here")
                                .help(format!("`{inner}` belongs at the top level of a module")),
                            );
                        }
                    }
                    layers.push(Layer { priority, table: t });
                }
                other => cx.diags.push(
                    Diagnostic::new(
                        "type",
                        format!("`{key}` must be a table, found {}", other.type_name()),
                    )
                    .primary(entry.node.span, "")
                    .help(format!("write `[{key}.system]` and the keys it sets")),
                ),
            }
        }
    }
    layers.push(Layer {
        priority: Priority::Normal,
        table: root,
    });
    modules.push(Module {
        path: path.to_owned(),
        layers,
    });

    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    stack.push(path.to_owned());
    for (import, span) in imports {
        let target = normalize(&dir.join(import));
        load_module(cx, &target, Some(span), stack, modules);
    }
    stack.pop();
}

fn load_reason(e: &LoadError) -> String {
    match e {
        LoadError::NotFound { .. } => "no such file".to_owned(),
        other => other.to_string(),
    }
}

fn take_imports(cx: &mut Cx<'_>, root: &mut Table) -> Vec<(String, Span)> {
    let Some(entry) = root.entries.remove("imports") else {
        return Vec::new();
    };
    let Kind::Array(items) = entry.node.kind else {
        cx.diags.push(
            Diagnostic::new(
                "type",
                format!(
                    "`imports` must be an array of paths, found {}",
                    entry.node.kind.type_name()
                ),
            )
            .primary(entry.node.span, "")
            .help("write `imports = [\"hardware.toml\"]`"),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        match item.kind {
            Kind::Str(s) if !s.is_empty() && !s.starts_with('/') => out.push((s, item.span)),
            Kind::Str(_) => cx.diags.push(
                Diagnostic::new(
                    "invalid-value",
                    "imports are paths relative to the importing module",
                )
                .primary(item.span, "empty or absolute")
                .help("a configuration must not depend on files outside its folder tree"),
            ),
            other => cx.diags.push(
                Diagnostic::new(
                    "type",
                    format!("expected a path, found {}", other.type_name()),
                )
                .primary(item.span, ""),
            ),
        }
    }
    out
}

/// Decode the merged tree section by section, and map entries one by one, so that one
/// bad entry does not hide errors in the others.
fn decode_spec(
    tree: &Table,
    sink: &RefCell<Vec<Diagnostic>>,
    diags: &mut Vec<Diagnostic>,
) -> SystemSpec {
    /// Decode, and after an error drop the offending value and try again, so that one
    /// bad value does not hide the errors in its neighbours (a bounded number of times).
    fn one<T: for<'de> Deserialize<'de>>(
        node: &Node,
        path: &str,
        sink: &RefCell<Vec<Diagnostic>>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<T> {
        let mut node = std::borrow::Cow::Borrowed(node);
        let mut removed_keys = Vec::new();
        for _ in 0..32 {
            match decode(&node, path, sink) {
                Ok(v) => return Some(v),
                Err(d) => {
                    // A key missing because we removed it was reported already.
                    let ours = d.kind == "missing-key"
                        && removed_keys
                            .iter()
                            .any(|k: &String| d.message.contains(&format!("`{k}`")));
                    if ours {
                        return None;
                    }
                    let span = d.span();
                    diags.push(d);
                    let removed = span.and_then(|s| {
                        (s != node.span)
                            .then(|| node.to_mut().remove_at(s))
                            .flatten()
                    });
                    match removed {
                        Some(value::Removed::Key(k)) => removed_keys.push(k),
                        Some(value::Removed::Element) => {}
                        None => return None,
                    }
                }
            }
        }
        None
    }
    fn entries<T: for<'de> Deserialize<'de>>(
        node: &Node,
        section: &str,
        sink: &RefCell<Vec<Diagnostic>>,
        diags: &mut Vec<Diagnostic>,
    ) -> BTreeMap<Spanned<String>, T> {
        let mut out = BTreeMap::new();
        let Kind::Table(t) = &node.kind else {
            diags.push(
                Diagnostic::new(
                    "type",
                    format!(
                        "`{section}` must be a table, found {}",
                        node.kind.type_name()
                    ),
                )
                .primary(node.span, ""),
            );
            return out;
        };
        for (key, entry) in &t.entries {
            let path = crate::merge::dotted(&[section.to_owned(), key.clone()]);
            if let Some(v) = one(&entry.node, &path, sink, diags) {
                out.insert(
                    Spanned {
                        span: Some(entry.key_span),
                        value: key.clone(),
                    },
                    v,
                );
            }
        }
        out
    }

    let mut spec = SystemSpec::default();
    for (key, entry) in &tree.entries {
        let node = &entry.node;
        match key.as_str() {
            "inputs" => spec.inputs = one(node, key, sink, diags).unwrap_or_default(),
            "system" => spec.system = one(node, key, sink, diags).unwrap_or_default(),
            "boot" => spec.boot = one(node, key, sink, diags).unwrap_or_default(),
            "packages" => spec.packages = one(node, key, sink, diags).unwrap_or_default(),
            "security" => spec.security = one(node, key, sink, diags).unwrap_or_default(),
            "network" => spec.network = one(node, key, sink, diags).unwrap_or_default(),
            "store" => spec.store = one(node, key, sink, diags).unwrap_or_default(),
            "build" => spec.build = one(node, key, sink, diags).unwrap_or_default(),
            "users" => spec.users = entries(node, key, sink, diags),
            "groups" => spec.groups = entries(node, key, sink, diags),
            "files" => spec.files = entries(node, key, sink, diags),
            "services" => spec.services = entries(node, key, sink, diags),
            "recipes" => spec.recipes = entries(node, key, sink, diags),
            other => {
                let known = [
                    "inputs", "system", "boot", "packages", "users", "groups", "files", "services",
                    "security", "network", "store", "build", "recipes", "imports", "defaults",
                    "force",
                ];
                diags.push(
                    Diagnostic::new(
                        "unknown-key",
                        format!("unknown key `{other}` at the top level"),
                    )
                    .primary(entry.key_span, "unknown key")
                    .help(did_you_mean(other, known).unwrap_or_else(|| {
                        format!(
                            "the top-level keys are {}",
                            known.map(|k| format!("`{k}`")).join(", ")
                        )
                    })),
                );
            }
        }
    }
    spec
}

/// A declared file's `source`, its `text`, whether it is a template, and its `vars`.
type SourceJob<'a> = (
    &'a mut Option<Spanned<String>>,
    &'a mut Option<Spanned<String>>,
    bool,
    &'a BTreeMap<String, String>,
);

/// Resolve `source` paths against the module that declared them, check the files exist,
/// and render templates into `text`.
fn render_sources(cx: &mut Cx<'_>, tree: &Table, spec: &mut SystemSpec, pkgs: &mut Vec<PkgUse>) {
    let defaults = serde_json::to_value(SystemSpec::default()).expect("the spec serialises");
    let mut jobs: Vec<SourceJob<'_>> = Vec::new();
    for file in spec.files.values_mut() {
        jobs.push((&mut file.source, &mut file.text, file.template, &file.vars));
    }
    for user in spec.users.values_mut() {
        for file in user.files.values_mut() {
            jobs.push((&mut file.source, &mut file.text, file.template, &file.vars));
        }
    }
    let mut read: BTreeSet<PathBuf> = BTreeSet::new();
    for (source, text, template, vars) in jobs {
        let Some(src) = source.as_mut() else { continue };
        // Validation refused sources outside the configuration folder; never read them.
        if src.starts_with('/') || src.split('/').any(|c| c == "..") {
            continue;
        }
        let Some(span) = src.span else { continue };
        let base = cx
            .sources
            .get(span.file)
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let path = normalize(&base.join(&src.value));
        src.value = path.display().to_string();
        if !template && read.contains(&path) {
            continue;
        }
        match cx.loader.read(&path) {
            Ok(content) => {
                read.insert(path.clone());
                if template {
                    let file = cx.sources.add(path, content);
                    let content = cx.sources.get(file).text().to_owned();
                    let whole = Span::new(file, 0..content.len());
                    let scope = Scope {
                        root: tree,
                        defaults: &defaults,
                        sources: &cx.sources,
                    };
                    match interp::interpolate(
                        &content,
                        whole,
                        Some(vars),
                        &scope,
                        pkgs,
                        &mut Vec::new(),
                    ) {
                        Ok(rendered) => {
                            *text = Some(Spanned {
                                span: Some(span),
                                value: rendered,
                            });
                        }
                        Err(d) => cx.diags.push(d),
                    }
                }
            }
            Err(e) => cx.diags.push(
                Diagnostic::new(
                    "missing-file",
                    format!("source file {} cannot be read", path.display()),
                )
                .primary(span, load_reason(&e))
                .help("`source` is relative to the module that declares it"),
            ),
        }
    }
}
