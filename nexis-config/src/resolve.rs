//! Resolving package references against the inputs' recipes into a dependency graph.
//!
//! Each input is a directory (made available by the [`Loader`]) whose `packages/` folder
//! holds recipes: `packages/NAME.toml`, or `packages/NAME/*.toml` for several versions.
//! An input without a `packages/` folder holds them at its top.
//! Inline `[recipes.NAME]` form the input `self`. Recipe files are parsed only when a
//! reference reaches them.
//!
//! An input may declare its own inputs in the `[inputs]` of its top `nexis.toml`; they
//! are inputs too, named `core/base`, unless `follows` replaces them by another input.
//!
//! An unqualified reference in a recipe looks in the recipe's own input first, then in
//! that input's own inputs; elsewhere it must name a package found in exactly one of the
//! configuration's inputs. Versions: every requirement on a
//! package (from the configuration and from other recipes) must be met by one version,
//! and the highest such version is chosen; the choice is repeated until it settles.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use petgraph::graph::{DiGraph, NodeIndex};
use rayon::prelude::*;
use serde::Serialize;

use crate::de::{Spanned, decode};
use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::interp::PkgUse;
use crate::loader::{LoadError, Loader, normalize};
use crate::source::{FileId, Sources, Span};
use crate::spec::{BuildSystem, InputSpec, PackageRef, Recipe, SystemSpec};
use crate::value;
use crate::version::{Version, VersionReq};

/// The name of the input formed by inline `[recipes]`.
pub const SELF_INPUT: &str = "self";

/// How one package needs another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DepKind {
    /// Needed to build (in `build.deps`).
    Build,
    /// Needed at run time (in `build.runtime-deps`).
    Runtime,
}

/// A package with its chosen recipe.
#[derive(Debug, Clone)]
pub struct ResolvedPackage {
    /// `input#name`.
    pub id: String,
    /// The input it comes from.
    pub input: String,
    /// The package name.
    pub name: String,
    /// The chosen version.
    pub version: Version,
    /// The recipe of that version.
    pub recipe: Recipe,
    /// The recipe file (the root module for inline recipes).
    pub recipe_file: PathBuf,
    /// The input's directory.
    pub input_dir: PathBuf,
}

/// The resolved packages: a graph whose edges point from a package to what it needs.
#[derive(Debug, Clone, Default)]
pub struct PackageGraph {
    /// Nodes are packages; an edge `a -> b` means `a` needs `b`.
    pub graph: DiGraph<ResolvedPackage, DepKind>,
    index: BTreeMap<String, NodeIndex>,
    /// Why each requested package is in the system: `packages.install`,
    /// `users.NAME.packages`, `boot.kernel`, `security.TOOL`, `reference`.
    pub roots: BTreeMap<String, BTreeSet<String>>,
    /// Each `${pkgs.…}` reference and the package id it resolved to.
    pub references: BTreeMap<String, String>,
    /// The inputs made available, by id (`core`, or `core/base` for an input of an
    /// input), with their folders; `self` is not among them.
    pub inputs: BTreeMap<String, PathBuf>,
    /// Inputs of inputs replaced by another input (`follows`): id → the id it means.
    pub follows: BTreeMap<String, String>,
}

impl PackageGraph {
    /// Number of packages.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// Whether no package was resolved.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// A package by id (`input#name`).
    pub fn get(&self, id: &str) -> Option<&ResolvedPackage> {
        self.index.get(id).map(|&n| &self.graph[n])
    }

    /// The graph node of a package.
    pub fn node(&self, id: &str) -> Option<NodeIndex> {
        self.index.get(id).copied()
    }

    /// All packages, ordered by id.
    pub fn iter(&self) -> impl Iterator<Item = &ResolvedPackage> {
        self.index.values().map(|&n| &self.graph[n])
    }

    /// Ids of the packages `id` needs directly, of one kind, sorted.
    pub fn deps(&self, id: &str, kind: DepKind) -> Vec<&str> {
        let Some(&n) = self.index.get(id) else {
            return Vec::new();
        };
        let mut out: Vec<&str> = self
            .graph
            .edges(n)
            .filter(|e| *e.weight() == kind)
            .map(|e| self.graph[petgraph::visit::EdgeRef::target(&e)].id.as_str())
            .collect();
        out.sort_unstable();
        out
    }

    /// The packages as JSON, ordered by id.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.iter()
                .map(|p| {
                    serde_json::json!({
                        "id": p.id,
                        "input": p.input,
                        "name": p.name,
                        "version": p.version.as_str(),
                        "recipe-file": p.recipe_file,
                        "requested-by": self.roots.get(&p.id),
                        "deps": self.deps(&p.id, DepKind::Build),
                        "runtime-deps": self.deps(&p.id, DepKind::Runtime),
                        "recipe": p.recipe,
                    })
                })
                .collect(),
        )
    }
}

type Key = (String, String);

fn id_of(key: &Key) -> String {
    format!("{}#{}", key.0, key.1)
}

struct Candidate {
    version: Version,
    recipe: Recipe,
    file: PathBuf,
}

struct Input {
    dir: PathBuf,
    /// Package name → recipe files (empty for inline recipes).
    names: BTreeMap<String, Vec<PathBuf>>,
    /// It could not be read (already reported): references into it say nothing more.
    broken: bool,
}

impl Input {
    fn broken() -> Input {
        Input {
            dir: PathBuf::new(),
            names: BTreeMap::new(),
            broken: true,
        }
    }
}

/// How deep inputs of inputs may nest.
const MAX_INPUT_DEPTH: usize = 8;

/// An input to make available.
struct Wanted {
    /// `core`, or `core/base` for an input of an input.
    id: String,
    /// Its reference.
    url: String,
    /// Where the reference is written.
    at: Span,
    /// The folder `path:` references are relative to.
    base: PathBuf,
    /// The inputs that declare it, outermost first: id, and where it comes from (the
    /// reference, or the folder of a `path:` reference).
    chain: Vec<(String, String)>,
}

/// A `follows` entry: the input meant instead, and where the entry is written.
struct Follow {
    target: String,
    key: Span,
    value: Span,
}

/// Where an input comes from, to find cycles: the folder of a `path:` reference (however
/// it is spelled), or the reference.
fn origin(url: &str, base: &Path) -> String {
    crate::loader::path_input(url, base)
        .map_or_else(|| url.to_owned(), |dir| format!("path:{}", dir.display()))
}

/// `a`, `b` and `c` as "`a`, `b`, `c`".
fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The kind of a lookup failure that an earlier error explains; never reported.
const EXPLAINED: &str = "explained";

struct Resolver<'a> {
    loader: &'a dyn Loader,
    sources: &'a mut Sources,
    fallback: Span,
    inputs: BTreeMap<String, Input>,
    /// Inputs that follow another: id → the id of the input they mean.
    aliases: BTreeMap<String, String>,
    /// The inputs each input declares (`""`: the configuration's), as ids.
    children: BTreeMap<String, Vec<String>>,
    candidates: BTreeMap<Key, Vec<Candidate>>,
    /// Names whose recipes all failed to load (already reported).
    broken: BTreeSet<Key>,
    load_diags: Vec<Diagnostic>,
}

struct Constraint {
    req: Option<VersionReq>,
    span: Span,
    /// Who asks: a package id or a configuration key (shared, one per asker).
    by: Rc<str>,
}

/// Resolve every package the configuration asks for.
/// `tree` is the merged configuration, for pointing at keys of inline recipes.
pub(crate) fn resolve(
    spec: &SystemSpec,
    tree: &value::Table,
    uses: &[PkgUse],
    fallback: Span,
    loader: &dyn Loader,
    sources: &mut Sources,
    diags: &mut Vec<Diagnostic>,
) -> PackageGraph {
    let mut r = Resolver {
        loader,
        sources,
        fallback,
        inputs: BTreeMap::new(),
        aliases: BTreeMap::new(),
        children: BTreeMap::new(),
        candidates: BTreeMap::new(),
        broken: BTreeSet::new(),
        load_diags: Vec::new(),
    };
    r.index_inputs(spec);
    r.inline_recipes(spec, tree);

    let roots = roots(spec, uses);
    let mut prev: BTreeMap<Key, Vec<Constraint>> = BTreeMap::new();
    let mut chosen: BTreeMap<Key, usize> = BTreeMap::new();
    let mut outcome = None;
    for _round in 0..16 {
        let round = r.round(&roots, &prev);
        let settled = round.chosen == chosen;
        let done = settled || satisfied(&round.chosen, &r.candidates, &round.constraints);
        chosen.clone_from(&round.chosen);
        prev = round.constraints;
        outcome = Some((round.errors, round.edges, round.root_keys));
        if done {
            break;
        }
    }
    let (errors, edges, root_keys) = outcome.expect("at least one round runs");
    diags.append(&mut r.load_diags);
    diags.extend(errors);
    r.conflicts(&prev, &chosen, diags);

    // Build the graph.
    let mut out = PackageGraph {
        inputs: r
            .inputs
            .iter()
            .filter(|(id, i)| !i.broken && id.as_str() != SELF_INPUT)
            .map(|(id, i)| (id.clone(), i.dir.clone()))
            .collect(),
        follows: r.aliases.clone(),
        ..PackageGraph::default()
    };
    let mut candidates = std::mem::take(&mut r.candidates);
    for (key, &i) in &chosen {
        let c = candidates
            .get_mut(key)
            .expect("chosen packages have candidates")
            .swap_remove(i);
        let id = id_of(key);
        let node = out.graph.add_node(ResolvedPackage {
            id: id.clone(),
            input: key.0.clone(),
            name: key.1.clone(),
            version: c.version,
            recipe: c.recipe,
            recipe_file: c.file,
            input_dir: r.inputs[&key.0].dir.clone(),
        });
        out.index.insert(id, node);
    }
    let mut spans: DiGraph<String, Span> = DiGraph::new();
    let span_nodes: BTreeMap<&Key, NodeIndex> = chosen
        .keys()
        .map(|k| (k, spans.add_node(id_of(k))))
        .collect();
    for (from, to, kind, span) in &edges {
        // A package whose recipes all failed to load is not in the graph (its errors are
        // reported already).
        let (Some(&a), Some(&b)) = (out.index.get(&id_of(from)), out.index.get(&id_of(to))) else {
            continue;
        };
        if out
            .graph
            .find_edge(a, b)
            .is_none_or(|e| out.graph[e] != *kind)
        {
            out.graph.add_edge(a, b, *kind);
            spans.add_edge(span_nodes[from], span_nodes[to], *span);
        }
    }
    for cycle in crate::cycles::find(&spans, Clone::clone) {
        diags.push(
            Diagnostic::new("cycle", format!("packages depend on each other in a cycle: {}", cycle.chain.join(" -> ")))
                .primary(cycle.closing, "this dependency closes the cycle")
                .help("a package cannot need itself, even through others; remove one of these dependencies"),
        );
    }
    for (reason, key, text) in root_keys {
        let id = id_of(&key);
        if reason == "reference" {
            out.references.insert(text, id.clone());
        }
        out.roots.entry(id).or_default().insert(reason);
    }
    out
}

/// Every reference the configuration makes, with why.
fn roots(spec: &SystemSpec, uses: &[PkgUse]) -> Vec<(String, Spanned<PackageRef>)> {
    let mut out = Vec::new();
    for p in &spec.packages.install {
        out.push(("packages.install".to_owned(), p.clone()));
    }
    for (name, user) in &spec.users {
        for p in &user.packages {
            out.push((format!("users.{}.packages", name.value), p.clone()));
        }
    }
    if let Some(k) = &spec.boot.kernel {
        out.push(("boot.kernel".to_owned(), k.clone()));
    }
    let s = &spec.security;
    for (tool, enabled, pkg) in [
        ("firewall", s.firewall.enable, &s.firewall.package),
        ("clamav", s.clamav.enable, &s.clamav.package),
        ("maldet", s.maldet.enable, &s.maldet.package),
        ("falco", s.falco.enable, &s.falco.package),
        ("suricata", s.suricata.enable, &s.suricata.package),
    ] {
        if enabled {
            out.push((format!("security.{tool}"), pkg.clone()));
        }
    }
    for u in uses {
        out.push((
            "reference".to_owned(),
            Spanned {
                span: Some(u.span),
                value: u.reference.clone(),
            },
        ));
    }
    out
}

struct Round {
    chosen: BTreeMap<Key, usize>,
    constraints: BTreeMap<Key, Vec<Constraint>>,
    edges: Vec<(Key, Key, DepKind, Span)>,
    errors: Vec<Diagnostic>,
    root_keys: Vec<(String, Key, String)>,
}

/// Whether every chosen version meets every requirement on it.
fn satisfied(
    chosen: &BTreeMap<Key, usize>,
    candidates: &BTreeMap<Key, Vec<Candidate>>,
    constraints: &BTreeMap<Key, Vec<Constraint>>,
) -> bool {
    chosen.iter().all(|(key, &i)| {
        let v = &candidates[key][i].version;
        constraints.get(key).is_none_or(|cs| {
            cs.iter()
                .all(|c| c.req.as_ref().is_none_or(|r| r.matches(v)))
        })
    })
}

impl Resolver<'_> {
    /// Make every input available: the configuration's, then (level by level) the inputs
    /// that the inputs' own `nexis.toml` declare, except those that follow another input.
    fn index_inputs(&mut self, spec: &SystemSpec) {
        let mut follows: BTreeMap<String, Follow> = BTreeMap::new();
        let mut level = Vec::new();
        self.children.insert(String::new(), Vec::new());
        for (name, input) in &spec.inputs {
            let at = input.url.span.unwrap_or(self.fallback);
            for (inner, target) in &input.follows {
                follows.insert(
                    format!("{name}/{inner}"),
                    Follow {
                        target: target.value.clone(),
                        key: inner.span.unwrap_or(at),
                        value: target.span.unwrap_or(at),
                    },
                );
            }
            self.declare(String::new(), name.value.clone());
            // A reference of an unknown scheme is reported by validation; reading it
            // would only repeat the error.
            if !crate::validate::INPUT_SCHEMES
                .iter()
                .any(|s| input.url.starts_with(s))
            {
                self.inputs.insert(name.value.clone(), Input::broken());
                continue;
            }
            let base = self
                .sources
                .get(at.file)
                .path()
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            level.push(Wanted {
                id: name.value.clone(),
                url: input.url.value.clone(),
                at,
                base,
                chain: Vec::new(),
            });
        }
        let mut aliases: BTreeMap<String, Follow> = BTreeMap::new();
        while !level.is_empty() {
            let (followed, wanted): (Vec<Wanted>, Vec<Wanted>) =
                level.into_iter().partition(|w| follows.contains_key(&w.id));
            for w in followed {
                let target = follows.remove(&w.id).expect("partitioned on it");
                aliases.insert(w.id, target);
            }
            // The inputs' directories are asked for all at once, in parallel: a loader
            // that fetches (git, HTTP) then fetches several inputs at the same time.
            let loader = self.loader;
            let dirs: Vec<_> = wanted
                .par_iter()
                .map(|w| loader.input_dir(&w.id, &w.url, &w.base))
                .collect();
            let mut next = Vec::new();
            for (w, dir) in wanted.into_iter().zip(dirs) {
                match dir {
                    Ok(dir) => {
                        self.index_recipes(&w.id, dir.clone(), w.at);
                        self.inner_inputs(&w, &dir, &mut follows, &mut next);
                    }
                    Err(e) => {
                        self.load_diags.push(
                            Diagnostic::new("input", format!("input `{}` is not available", w.id))
                                .primary(w.at, e.to_string()),
                        );
                        self.inputs.insert(w.id, Input::broken());
                    }
                }
            }
            level = next;
        }
        // What is left of `follows` names inner inputs that nothing declared.
        for (id, Follow { key: at, .. }) in follows {
            let (parent, name) = id.rsplit_once('/').expect("follows keys have a parent");
            if self.inputs.get(parent).is_some_and(|i| i.broken)
                || !self.inputs.contains_key(parent) && !aliases.contains_key(parent)
            {
                // The parent could not be read or is itself replaced: nothing to say.
                continue;
            }
            let siblings = self
                .children
                .get(parent)
                .map(Vec::as_slice)
                .unwrap_or_default();
            self.load_diags.push(
                Diagnostic::new("input", format!("input `{parent}` has no input `{name}`"))
                    .primary(at, "nothing to follow")
                    .help(
                        did_you_mean(name, siblings.iter().filter_map(|s| s.rsplit('/').next()))
                            .unwrap_or_else(|| {
                                if siblings.is_empty() {
                                    format!("`{parent}` declares no inputs of its own")
                                } else {
                                    format!("its inputs are {}", quoted(siblings))
                                }
                            }),
                    ),
            );
        }
        self.resolve_aliases(&aliases);
    }

    /// Note that `parent` (empty for the configuration) declares input `name`.
    fn declare(&mut self, parent: String, name: String) {
        let id = if parent.is_empty() {
            name
        } else {
            format!("{parent}/{name}")
        };
        self.children.entry(parent).or_default().push(id);
    }

    /// Point each input that follows another at the input it ends up meaning.
    fn resolve_aliases(&mut self, aliases: &BTreeMap<String, Follow>) {
        for (id, follow) in aliases {
            let (target, at) = (&follow.target, &follow.value);
            let mut end = target;
            let mut hops = 0;
            while let Some(next) = aliases.get(end) {
                end = &next.target;
                hops += 1;
                if hops > aliases.len() {
                    break;
                }
            }
            if hops > aliases.len() {
                self.load_diags.push(
                    Diagnostic::new(
                        "input",
                        format!("input `{id}` follows itself through `{target}`"),
                    )
                    .primary(*at, "a cycle of `follows`")
                    .help("make one of these inputs a reference instead of a `follows`"),
                );
                self.inputs.insert(id.clone(), Input::broken());
            } else if self.inputs.contains_key(end) {
                self.aliases.insert(id.clone(), end.clone());
            } else {
                let known = self.inputs.keys().filter(|k| k.as_str() != SELF_INPUT);
                self.load_diags.push(
                    Diagnostic::new("input", format!("input `{id}` follows `{target}`, which is not an input"))
                        .primary(*at, "no such input")
                        .help(did_you_mean(target, known.map(String::as_str)).unwrap_or_else(|| {
                            "follow an input of this configuration (`base`) or of one of its inputs (`core/base`)".to_owned()
                        })),
                );
                self.inputs.insert(id.clone(), Input::broken());
            }
        }
    }

    /// Read the `[inputs]` of the `nexis.toml` at the top of input `w` (in `dir`), if
    /// there is one, and queue them as `w`'s inner inputs.
    fn inner_inputs(
        &mut self,
        w: &Wanted,
        dir: &Path,
        follows: &mut BTreeMap<String, Follow>,
        next: &mut Vec<Wanted>,
    ) {
        let file = dir.join("nexis.toml");
        let text = match self.loader.read(&file) {
            Ok(t) => t,
            Err(LoadError::NotFound { .. }) => return,
            Err(e) => {
                self.load_diags.push(
                    Diagnostic::new("input", format!("input `{}` cannot be read", w.id))
                        .primary(w.at, e.to_string()),
                );
                return;
            }
        };
        let fid = self.sources.add(file, text);
        let node = match value::parse(fid, self.sources.get(fid).text()) {
            Ok(n) => n,
            Err(d) => {
                self.load_diags.push(d);
                return;
            }
        };
        let value::Kind::Table(top) = &node.kind else {
            return;
        };
        let Some(entry) = top.entries.get("inputs") else {
            return;
        };
        let sink = RefCell::new(Vec::new());
        let declared: BTreeMap<Spanned<String>, InputSpec> =
            match decode(&entry.node, "inputs", &sink) {
                Ok(d) => d,
                Err(d) => {
                    self.load_diags.push(d);
                    return;
                }
            };
        self.load_diags.extend(sink.into_inner());
        let mut chain = w.chain.clone();
        chain.push((w.id.clone(), origin(&w.url, &w.base)));
        for (name, input) in declared {
            let at = input.url.span.unwrap_or(w.at);
            let id = format!("{}/{name}", w.id);
            self.declare(w.id.clone(), name.value.clone());
            for (inner, target) in &input.follows {
                follows.entry(format!("{id}/{inner}")).or_insert(Follow {
                    target: format!("{}/{target}", w.id),
                    key: inner.span.unwrap_or(at),
                    value: target.span.unwrap_or(at),
                });
            }
            if follows.contains_key(&id) {
                // Replaced by another input: what it says is not used.
                next.push(Wanted {
                    id,
                    url: input.url.value,
                    at,
                    base: dir.to_owned(),
                    chain: Vec::new(),
                });
                continue;
            }
            let problem = if !crate::spec::valid_input_name(&name) || name.value == SELF_INPUT {
                Some((
                    format!("`{name}` cannot name an input"),
                    "input names start with a letter and use letters, digits, `_` and `-`"
                        .to_owned(),
                ))
            } else if !crate::validate::INPUT_SCHEMES
                .iter()
                .any(|s| input.url.starts_with(s))
            {
                Some((format!("input `{id}`: `{}` is not an input reference", input.url.value), "write `path:./dir`, `git+https://host/repo?ref=main`, `git+file:///path` or `https://host/x.tar.gz`".to_owned()))
            } else if chain.iter().any(|(_, o)| *o == origin(&input.url, dir)) {
                let ids: Vec<&str> = chain.iter().map(|(id, _)| id.as_str()).collect();
                Some((
                    format!("inputs include each other in a cycle: {} -> {id}", ids.join(" -> ")),
                    "an input cannot include itself; remove it, or make it follow another input with `follows`".to_owned(),
                ))
            } else if crate::loader::path_input(&input.url, dir)
                .is_some_and(|p| !p.starts_with(dir))
            {
                Some((
                    format!(
                        "input `{id}`: `{}` points outside input `{}`",
                        input.url.value, w.id
                    ),
                    "an input's own `path:` inputs must be folders inside it".to_owned(),
                ))
            } else if chain.len() >= MAX_INPUT_DEPTH {
                Some((
                    format!("input `{id}` is nested more than {MAX_INPUT_DEPTH} inputs deep"),
                    "make it follow an input of this configuration".to_owned(),
                ))
            } else {
                None
            };
            if let Some((message, help)) = problem {
                self.load_diags.push(
                    Diagnostic::new("input", message)
                        .primary(at, "declared here")
                        .help(help),
                );
                self.inputs.insert(id, Input::broken());
                continue;
            }
            next.push(Wanted {
                id,
                url: input.url.value,
                at,
                base: dir.to_owned(),
                chain: chain.clone(),
            });
        }
    }

    /// Index the recipes of input `id`, found in `dir`.
    fn index_recipes(&mut self, id: &str, dir: PathBuf, at: Span) {
        let name = id;
        let mut names: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        let mut broken = false;
        // Recipes are in `packages/`, or at the top when there is no such folder.
        let listing = match self.loader.read_dir(&dir) {
            Ok(top)
                if top
                    .iter()
                    .any(|e| e.is_dir && e.path.file_name().is_some_and(|n| n == "packages")) =>
            {
                self.loader.read_dir(&dir.join("packages"))
            }
            other => other,
        };
        match listing {
            Ok(mut entries) => {
                entries.sort();
                for e in entries {
                    let file_name = e
                        .path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default()
                        .to_owned();
                    if e.is_dir {
                        if let Ok(mut inner) = self.loader.read_dir(&e.path) {
                            inner.sort();
                            let files: Vec<PathBuf> = inner
                                .into_iter()
                                .filter(|f| {
                                    !f.is_dir && f.path.extension().is_some_and(|x| x == "toml")
                                })
                                .map(|f| f.path)
                                .collect();
                            if !files.is_empty() {
                                names.entry(file_name).or_default().extend(files);
                            }
                        }
                    } else if let Some(stem) = file_name.strip_suffix(".toml") {
                        names.entry(stem.to_owned()).or_default().push(e.path);
                    }
                }
            }
            Err(e) => {
                broken = true;
                self.load_diags.push(
                    Diagnostic::new("input", format!("input `{name}` cannot be read"))
                        .primary(at, e.to_string())
                        .help("an input holds recipes as `packages/NAME.toml` or `packages/NAME/VERSION.toml` (or `NAME.toml` at its top)"),
                );
            }
        }
        self.inputs
            .insert(name.to_owned(), Input { dir, names, broken });
    }

    fn inline_recipes(&mut self, spec: &SystemSpec, tree: &value::Table) {
        let dir = self
            .sources
            .get(crate::source::FileId(0))
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut names = BTreeMap::new();
        for (name, recipe) in &spec.recipes {
            let at = name.span.unwrap_or(self.fallback);
            let file = self.sources.get(at.file).path().to_owned();
            let own = tree
                .entries
                .get("recipes")
                .and_then(|e| match &e.node.kind {
                    value::Kind::Table(t) => t.entries.get(&name.value),
                    _ => None,
                })
                .and_then(|e| match &e.node.kind {
                    value::Kind::Table(t) => Some(t),
                    _ => None,
                });
            let named = check_recipe(recipe, &name.value, at, own, &mut self.load_diags);
            // Inline recipes' paths are relative to their module, inside the configuration.
            let module_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
            let inside = check_inside(recipe, &dir, &module_dir, &mut self.load_diags);
            let ok = named && inside;
            names.insert(name.value.clone(), Vec::new());
            let key = (SELF_INPUT.to_owned(), name.value.clone());
            if ok {
                self.candidates.entry(key).or_default().push(Candidate {
                    version: recipe.version.value.0.clone(),
                    recipe: recipe.clone(),
                    file,
                });
            } else {
                self.broken.insert(key);
            }
        }
        if !names.is_empty() {
            self.inputs.insert(
                SELF_INPUT.to_owned(),
                Input {
                    dir,
                    names,
                    broken: false,
                },
            );
        }
    }

    /// Load (once) the recipes of these packages. Files are read in order, then parsed,
    /// decoded and checked in parallel: recipe parsing is most of an evaluation's work.
    fn load(&mut self, keys: &[Key]) {
        struct Job<'k> {
            key: &'k Key,
            path: PathBuf,
            file: FileId,
            input_dir: PathBuf,
        }
        let mut jobs = Vec::new();
        let mut wanted = Vec::new();
        for key in keys {
            if self.candidates.contains_key(key) || self.broken.contains(key) {
                continue;
            }
            wanted.push(key);
            let input = &self.inputs[&key.0];
            let files = input.names.get(&key.1).cloned().unwrap_or_default();
            let input_dir = input.dir.clone();
            for path in files {
                match self.loader.read(&path) {
                    Ok(text) => {
                        let file = self.sources.add(path.clone(), text);
                        jobs.push(Job {
                            key,
                            path,
                            file,
                            input_dir: input_dir.clone(),
                        });
                    }
                    Err(e) => self.load_diags.push(
                        Diagnostic::new("load", format!("cannot read recipe {}", path.display()))
                            .help(e.to_string()),
                    ),
                }
            }
        }
        let sources = &*self.sources;
        let results: Vec<(Option<Candidate>, Vec<Diagnostic>)> = jobs
            .par_iter()
            .map(|job| {
                let mut diags = Vec::new();
                let candidate = parse_recipe(
                    sources,
                    job.file,
                    &job.path,
                    &job.key.1,
                    &job.input_dir,
                    &mut diags,
                );
                (candidate, diags)
            })
            .collect();
        let mut found: BTreeMap<&Key, Vec<Candidate>> = BTreeMap::new();
        for (job, (candidate, mut diags)) in jobs.iter().zip(results) {
            self.load_diags.append(&mut diags);
            if let Some(c) = candidate {
                found.entry(job.key).or_default().push(c);
            }
        }
        for key in wanted {
            match found.remove(key) {
                Some(mut out) => {
                    out.sort_by(|a, b| a.version.cmp(&b.version));
                    // One recipe per version: two would make the choice depend on file names.
                    out.dedup_by(|later, kept| {
                        let same = later.version.as_str() == kept.version.as_str();
                        if same {
                            let at = |c: &Candidate| c.recipe.version.span;
                            let mut d = Diagnostic::new(
                                "duplicate",
                                format!(
                                    "two recipes for `{}#{}` version {}",
                                    key.0, key.1, kept.version
                                ),
                            );
                            if let (Some(a), Some(b)) = (at(later), at(kept)) {
                                d = d.primary(a, "this one").secondary(b, "and this one");
                            }
                            self.load_diags.push(d.help("keep one recipe per version"));
                        }
                        same
                    });
                    self.candidates.insert(key.clone(), out);
                }
                None => {
                    self.broken.insert(key.clone());
                }
            }
        }
    }

    /// The input that `name` means in a recipe of input `from` (the configuration when
    /// `None`): `from`'s own input of that name first, then the configuration's (or, with
    /// `/`, an input of an input, `core/base`); through `follows`.
    fn input_id(&self, name: &str, from: Option<&str>) -> Option<String> {
        let scoped = from
            .filter(|f| *f != SELF_INPUT)
            .map(|f| format!("{f}/{name}"));
        scoped
            .into_iter()
            .chain([name.to_owned()])
            .map(|id| self.aliases.get(&id).cloned().unwrap_or(id))
            .find(|id| self.inputs.contains_key(id))
    }

    /// The inputs an unqualified name is searched in, nearest first: for a recipe of an
    /// input, that input's own inputs; then the configuration's inputs and `self`.
    fn scopes(&self, from: Option<&str>) -> Vec<Vec<String>> {
        let own = |parent: &str| -> Vec<String> {
            let mut ids: Vec<String> = self
                .children
                .get(parent)
                .into_iter()
                .flatten()
                .map(|id| self.aliases.get(id).unwrap_or(id).clone())
                .filter(|id| self.inputs.contains_key(id))
                .collect();
            ids.sort();
            ids.dedup();
            ids
        };
        let mut top = own("");
        if self.inputs.contains_key(SELF_INPUT) {
            top.push(SELF_INPUT.to_owned());
        }
        match from.filter(|f| *f != SELF_INPUT) {
            Some(f) if self.children.contains_key(f) => vec![own(f), top],
            _ => vec![top],
        }
    }

    /// Find which input's package a reference means. `from` is the input of the recipe
    /// that makes the reference, if any.
    fn lookup(&self, r: &PackageRef, at: Span, from: Option<&str>) -> Result<Key, Diagnostic> {
        if let Some(input) = &r.input {
            let Some(id) = self.input_id(input, from) else {
                let known = self.scopes(from).concat();
                return Err(Diagnostic::new(
                    "reference",
                    format!("`{r}` names input `{input}`, which is not declared"),
                )
                .primary(at, "unknown input")
                .help(
                    did_you_mean(input, known.iter().map(String::as_str)).unwrap_or_else(|| {
                        format!("declare it under [inputs], e.g. `{input} = \"path:./{input}\"`")
                    }),
                ));
            };
            let inp = &self.inputs[&id];
            if inp.broken {
                return Err(Diagnostic::new(EXPLAINED, ""));
            }
            if !inp.names.contains_key(&r.name) {
                return Err(Diagnostic::new(
                    "reference",
                    format!("input `{input}` has no package `{}`", r.name),
                )
                .primary(at, "no such package")
                .help_opt(did_you_mean(&r.name, inp.names.keys().map(String::as_str))));
            }
            return Ok((id, r.name.clone()));
        }
        if let Some(from) = from
            && self
                .inputs
                .get(from)
                .is_some_and(|i| i.names.contains_key(&r.name))
        {
            return Ok((from.to_owned(), r.name.clone()));
        }
        let scopes = self.scopes(from);
        let mut found: Vec<&String> = Vec::new();
        for scope in &scopes {
            found = scope
                .iter()
                .filter(|id| self.inputs[*id].names.contains_key(&r.name))
                .collect();
            if !found.is_empty() {
                break;
            }
        }
        let searched: Vec<&String> = scopes.iter().flatten().collect();
        match found.as_slice() {
            [one] => Ok(((*one).clone(), r.name.clone())),
            // It may be in an input that could not be read; that error says enough.
            [] if searched.iter().any(|id| self.inputs[*id].broken) => {
                Err(Diagnostic::new(EXPLAINED, ""))
            }
            [] => {
                let all = searched
                    .iter()
                    .flat_map(|id| self.inputs[*id].names.keys().map(String::as_str));
                let listed: Vec<String> = searched.iter().map(|k| format!("`{k}`")).collect();
                Err(
                    Diagnostic::new("reference", format!("no input has a package `{}`", r.name))
                        .primary(at, "unknown package")
                        .help(did_you_mean(&r.name, all).unwrap_or_else(|| {
                            if listed.is_empty() {
                                "declare an input under [inputs] that provides it".to_owned()
                            } else {
                                format!("searched {}", listed.join(", "))
                            }
                        })),
                )
            }
            many => {
                let options: Vec<String> =
                    many.iter().map(|i| format!("`{i}#{}`", r.name)).collect();
                Err(Diagnostic::new(
                    "ambiguous",
                    format!("package `{}` is provided by several inputs", r.name),
                )
                .primary(at, "ambiguous")
                .help(format!("say which: {}", options.join(" or "))))
            }
        }
    }

    fn round(
        &mut self,
        roots: &[(String, Spanned<PackageRef>)],
        prev: &BTreeMap<Key, Vec<Constraint>>,
    ) -> Round {
        let mut round = Round {
            chosen: BTreeMap::new(),
            constraints: BTreeMap::new(),
            edges: Vec::new(),
            errors: Vec::new(),
            root_keys: Vec::new(),
        };
        let mut queue = Vec::new();
        let mut seen = BTreeSet::new();
        for (reason, r) in roots {
            let at = r.span.unwrap_or(self.fallback);
            match self.lookup(r, at, None) {
                Ok(key) => {
                    round
                        .constraints
                        .entry(key.clone())
                        .or_default()
                        .push(Constraint {
                            req: r.requirement().cloned(),
                            span: at,
                            by: reason.as_str().into(),
                        });
                    round
                        .root_keys
                        .push((reason.clone(), key.clone(), r.value.to_string()));
                    if seen.insert(key.clone()) {
                        queue.push(key);
                    }
                }
                Err(d) if d.kind == EXPLAINED => {}
                Err(mut d) => {
                    if reason.starts_with("security.") {
                        d.message = format!("{} (needed by `{reason}`)", d.message);
                        if !d
                            .help
                            .as_deref()
                            .is_some_and(|h| h.starts_with("did you mean"))
                        {
                            d.help = Some(format!(
                                "add a recipe for it to an input, or set `{reason}.package` to one that exists"
                            ));
                        }
                    }
                    round.errors.push(d);
                }
            }
        }
        // Breadth first, one level at a time, so each level's recipes load together.
        let mut level: Vec<Key> = queue;
        while !level.is_empty() {
            self.load(&level);
            let mut next = Vec::new();
            for key in level {
                let Some(cands) = self.candidates.get(&key) else {
                    continue;
                };
                let now = round.constraints.get(&key);
                let before = prev.get(&key);
                let ok = |c: &Candidate, cs: Option<&Vec<Constraint>>| {
                    cs.is_none_or(|cs| {
                        cs.iter()
                            .all(|k| k.req.as_ref().is_none_or(|r| r.matches(&c.version)))
                    })
                };
                let pick = (0..cands.len())
                    .rev()
                    .find(|&i| ok(&cands[i], now) && ok(&cands[i], before))
                    .or_else(|| (0..cands.len()).rev().find(|&i| ok(&cands[i], now)))
                    .unwrap_or(cands.len() - 1);
                round.chosen.insert(key.clone(), pick);
                let recipe = &cands[pick].recipe;
                let deps = recipe.build.deps.iter().map(|d| (DepKind::Build, d)).chain(
                    recipe
                        .build
                        .runtime_deps
                        .iter()
                        .map(|d| (DepKind::Runtime, d)),
                );
                let by: Rc<str> = id_of(&key).into();
                for (kind, dep) in deps {
                    let at = dep.span.unwrap_or(self.fallback);
                    match self.lookup(dep, at, Some(&key.0)) {
                        Ok(dkey) => {
                            round
                                .constraints
                                .entry(dkey.clone())
                                .or_default()
                                .push(Constraint {
                                    req: dep.requirement().cloned(),
                                    span: at,
                                    by: by.clone(),
                                });
                            round.edges.push((key.clone(), dkey.clone(), kind, at));
                            if seen.insert(dkey.clone()) {
                                next.push(dkey);
                            }
                        }
                        Err(d) if d.kind == EXPLAINED => {}
                        Err(d) => round.errors.push(d),
                    }
                }
            }
            level = next;
        }
        round
    }

    /// Report packages whose chosen version misses a requirement.
    fn conflicts(
        &self,
        constraints: &BTreeMap<Key, Vec<Constraint>>,
        chosen: &BTreeMap<Key, usize>,
        diags: &mut Vec<Diagnostic>,
    ) {
        for (key, &i) in chosen {
            let cands = &self.candidates[key];
            let Some(cs) = constraints.get(key) else {
                continue;
            };
            let v = &cands[i].version;
            if cs
                .iter()
                .all(|c| c.req.as_ref().is_none_or(|r| r.matches(v)))
            {
                continue;
            }
            let versions: Vec<&str> = cands.iter().map(|c| c.version.as_str()).collect();
            let with_req: Vec<&Constraint> = cs.iter().filter(|c| c.req.is_some()).collect();
            let mut d = Diagnostic::new(
                "version",
                format!("no version of `{}` meets every requirement", id_of(key)),
            );
            for (n, c) in with_req.iter().enumerate() {
                let label = format!(
                    "{} needs {}",
                    c.by,
                    c.req.as_ref().expect("filtered").as_str()
                );
                d = if n == 0 {
                    d.primary(c.span, label)
                } else {
                    d.secondary(c.span, label)
                };
            }
            diags.push(d.help(format!("available: {}", versions.join(", "))));
        }
    }
}

/// Parse, decode and check one recipe file of an input.
fn parse_recipe(
    sources: &Sources,
    file: FileId,
    path: &Path,
    name: &str,
    input_dir: &Path,
    diags: &mut Vec<Diagnostic>,
) -> Option<Candidate> {
    let node = value::parse(file, sources.get(file).text())
        .map_err(|d| diags.push(d))
        .ok()?;
    let sink = RefCell::new(Vec::new());
    let recipe: Result<Recipe, _> = decode(&node, "", &sink);
    diags.extend(sink.into_inner());
    let recipe = recipe.map_err(|d| diags.push(d)).ok()?;
    let recipe_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let whole = Span::file_start(file);
    let tree = match &node.kind {
        value::Kind::Table(t) => Some(t),
        _ => None,
    };
    let ok = check_recipe(&recipe, name, whole, tree, diags)
        & check_inside(&recipe, input_dir, &recipe_dir, diags);
    ok.then(|| Candidate {
        version: recipe.version.value.0.clone(),
        recipe,
        file: path.to_owned(),
    })
}

/// Checks on a recipe on its own: name, source, build script.
/// `tree` is the recipe file's parsed text, to point at keys (none for inline recipes,
/// whose errors point at `at`).
fn check_recipe(
    recipe: &Recipe,
    name: &str,
    at: Span,
    tree: Option<&value::Table>,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let before = diags.len();
    let place = |path: &[&str]| tree.and_then(|t| t.key_span(path)).unwrap_or(at);
    if let Some(n) = &recipe.name
        && n.value != name
    {
        diags.push(
            Diagnostic::new("invalid-value", format!("recipe is named `{}` but stored as `{name}`", n.value))
                .primary(n.span.unwrap_or(at), "name differs")
                .help(format!("the file name (or [recipes] key) is the package name; write `name = \"{name}\"` or rename the file")),
        );
    }
    if let Some(src) = &recipe.source {
        let given: Vec<&Spanned<String>> = [&src.url, &src.git, &src.path]
            .into_iter()
            .flatten()
            .collect();
        match given.as_slice() {
            [] => diags.push(
                Diagnostic::new(
                    "missing-key",
                    "recipe `[source]` has none of `url`, `git`, `path`",
                )
                .primary(place(&["source"]), "no source given")
                .help("say where the source comes from"),
            ),
            [_] => {}
            [_, second, ..] => diags.push(
                Diagnostic::new(
                    "invalid-value",
                    "recipe `[source]` has more than one of `url`, `git`, `path`",
                )
                .primary(second.span.unwrap_or(at), "second source")
                .help("keep exactly one"),
            ),
        }
        if let Some(url) = &src.url {
            let u = url.value.as_str();
            if !(u.starts_with("https://") || u.starts_with("http://") || u.starts_with("file://"))
            {
                diags.push(
                    Diagnostic::new(
                        "invalid-value",
                        format!("`{u}` is not an http(s) or file URL"),
                    )
                    .primary(url.span.unwrap_or(at), ""),
                );
            }
            if src.hash.is_none() {
                diags.push(
                    Diagnostic::new("missing-key", "a `url` source needs a `hash`")
                        .primary(url.span.unwrap_or(at), "unpinned download")
                        .help(
                            "downloads are checked against their hash; add `hash = \"sha256-…\"`",
                        ),
                );
            }
        }
        if let Some(git) = &src.git {
            match &src.rev {
                None => diags.push(
                    Diagnostic::new("missing-key", "a `git` source needs a `rev`")
                        .primary(git.span.unwrap_or(at), "unpinned repository")
                        .help("pin the commit: `rev = \"<40 hex digits>\"`"),
                ),
                Some(rev) if rev.len() != 40 || !rev.chars().all(|c| c.is_ascii_hexdigit()) => {
                    diags.push(
                        Diagnostic::new(
                            "invalid-value",
                            format!("`{}` is not a full git commit id", rev.value),
                        )
                        .primary(rev.span.unwrap_or(at), "")
                        .help("write the 40-digit hexadecimal commit id"),
                    );
                }
                Some(_) => {}
            }
        }
        for p in src.path.iter().chain(&src.patches) {
            if p.starts_with('/') {
                diags.push(
                    Diagnostic::new("path", format!("`{}` is absolute", p.value))
                        .primary(p.span.unwrap_or(at), "")
                        .help("recipe paths are relative to the recipe file"),
                );
            }
        }
    }
    match (&recipe.build.script, recipe.build.system) {
        (None, BuildSystem::Script) => diags.push(
            Diagnostic::new("missing-key", "`system = \"script\"` needs a `script`")
                .primary(place(&["build", "system"]), "no `script` in `[build]`")
                .help("write the build commands in `[build] script = \"…\"`"),
        ),
        (Some(s), system) if system != BuildSystem::Script => diags.push(
            Diagnostic::new(
                "invalid-value",
                "`script` is only used with `system = \"script\"`",
            )
            .primary(s.span.unwrap_or(at), "ignored")
            .help("set `system = \"script\"`, or drop the script and let the build system run"),
        ),
        _ => {}
    }
    diags.len() == before
}

/// Source paths and patches of an input's recipe must stay inside the input.
fn check_inside(
    recipe: &Recipe,
    input_dir: &Path,
    recipe_dir: &Path,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let Some(src) = &recipe.source else {
        return true;
    };
    let mut ok = true;
    for p in src.path.iter().chain(&src.patches) {
        if p.starts_with('/') {
            // Reported by `check_recipe`.
            continue;
        }
        let full = normalize(&recipe_dir.join(&p.value));
        // `normalize` keeps the `..` it cannot apply, which a relative input folder (or
        // the empty folder of a relative root module) would otherwise accept.
        let inside = full.strip_prefix(input_dir).is_ok_and(|rest| {
            !rest
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        });
        if !inside {
            ok = false;
            diags.push(
                Diagnostic::new("path", format!("`{}` points outside the input", p.value))
                    .primary(
                        p.span.unwrap_or(Span::file_start(crate::source::FileId(0))),
                        "leaves the input's folder",
                    )
                    .help("a recipe may only use files of its own input"),
            );
        }
    }
    ok
}
