//! From resolved recipes to derivations: sources into the store, the build system's
//! phases as one shell script, dependencies as output paths.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use nexis_config::{BuildSystem, DepKind, PackageGraph, ResolvedPackage};
use nexis_fetch::Fetcher;
use nexis_store::{Store, StorePath};
use petgraph::graph::NodeIndex;

use crate::derivation::Derivation;

/// The platform builds are for: `x86_64-linux`, `aarch64-linux`, ….
pub fn system() -> String {
    format!("{}-linux", std::env::consts::ARCH)
}

/// A package's derivation could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A source or patch could not be added to the store.
    #[error("package {id}: adding {} to the store", path.display())]
    AddSource {
        /// The package id.
        id: String,
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<nexis_store::AddError>,
    },
    /// A git or URL source could not be fetched.
    #[error("package {id}: fetching its source {reference}")]
    Fetch {
        /// The package id.
        id: String,
        /// The reference fetched.
        reference: String,
        /// Why.
        #[source]
        source: Box<nexis_fetch::FetchError>,
    },
    /// A git or URL source, but no fetcher was given.
    #[error(
        "package {id}: its source {reference} must be fetched, and this planner has no fetcher"
    )]
    NoFetcher {
        /// The package id.
        id: String,
        /// The reference.
        reference: String,
    },
    /// The packages depend on each other in a cycle (evaluation reports it first).
    #[error("packages depend on each other in a cycle through {id}")]
    Cycle {
        /// A package on the cycle.
        id: String,
    },
    /// The output path cannot be formed.
    #[error("package {id}: {source}")]
    Path {
        /// The package id.
        id: String,
        /// Why.
        #[source]
        source: nexis_store::PathError,
    },
}

/// Settings of the configuration that go into every derivation.
#[derive(Debug, Clone, Default)]
pub struct PlanSettings {
    /// Host folders every build sees (`[build] extra-sandbox-paths`).
    pub extra_sandbox_paths: BTreeSet<String>,
    /// The commit time of each git input (by input id, from `nexis.lock`): the
    /// `SOURCE_DATE_EPOCH` of the packages whose recipes it holds.
    pub source_dates: BTreeMap<String, i64>,
}

/// The derivations of a package graph.
#[derive(Debug, Default)]
pub struct Plan {
    /// One node per package; an edge `a -> b` means `a`'s build needs `b`'s output.
    pub graph: petgraph::graph::DiGraph<Derivation, ()>,
    /// Package id → node.
    pub nodes: BTreeMap<String, NodeIndex>,
}

impl Plan {
    /// The output path of package `id`.
    pub fn output(&self, id: &str) -> Option<StorePath> {
        self.nodes
            .get(id)
            .and_then(|&n| self.graph[n].output_path().ok())
    }
}

/// Make the derivation of every package in `packages`: sources (`path` sources and
/// patches added to the store; `git` and `url` sources fetched through `fetcher`),
/// dependencies first.
pub fn plan(
    store: &Store,
    packages: &PackageGraph,
    settings: &PlanSettings,
    fetcher: Option<&Fetcher<'_>>,
) -> Result<Plan, PlanError> {
    let order =
        petgraph::algo::toposort(&packages.graph, None).map_err(|cycle| PlanError::Cycle {
            id: packages.graph[cycle.node_id()].id.clone(),
        })?;
    let mut plan = Plan::default();
    let mut outputs: BTreeMap<&str, StorePath> = BTreeMap::new();
    // Dependencies first: the reverse of the topological order (edges point at deps).
    for &n in order.iter().rev() {
        let pkg = &packages.graph[n];
        let drv = derivation(store, packages, pkg, &outputs, settings, fetcher)?;
        let out = drv.output_path().map_err(|source| PlanError::Path {
            id: pkg.id.clone(),
            source,
        })?;
        outputs.insert(&pkg.id, out);
        let node = plan.graph.add_node(drv);
        plan.nodes.insert(pkg.id.clone(), node);
    }
    for edge in packages.graph.edge_indices() {
        let (a, b) = packages
            .graph
            .edge_endpoints(edge)
            .expect("an edge has ends");
        let (a, b) = (
            plan.nodes[&packages.graph[a].id],
            plan.nodes[&packages.graph[b].id],
        );
        if plan.graph.find_edge(a, b).is_none() {
            plan.graph.add_edge(a, b, ());
        }
    }
    Ok(plan)
}

fn derivation(
    store: &Store,
    packages: &PackageGraph,
    pkg: &ResolvedPackage,
    outputs: &BTreeMap<&str, StorePath>,
    settings: &PlanSettings,
    fetcher: Option<&Fetcher<'_>>,
) -> Result<Derivation, PlanError> {
    let recipe = &pkg.recipe;
    let version = pkg.version.to_string();
    let recipe_dir = pkg.recipe_file.parent().unwrap_or(Path::new("."));
    let add = |path: PathBuf, name: Option<&str>| {
        store
            .add_path(&path, name)
            .map(|a| a.path)
            .map_err(|source| PlanError::AddSource {
                id: pkg.id.clone(),
                path,
                source: Box::new(source),
            })
    };
    let mut env: BTreeMap<String, String> = recipe
        .build
        .env
        .iter()
        .map(|(k, v)| (k.value.clone(), v.clone()))
        .collect();
    let mut sources = BTreeSet::new();
    let mut src = None;
    let mut patches = Vec::new();
    // A git source's commit time, else that of the input holding the recipe.
    let mut source_date = None;
    if let Some(source) = &recipe.source {
        let reference = match (&source.git, &source.rev, &source.url, &source.hash) {
            (Some(git), Some(rev), _, _) => Some(format!("git+{}?rev={}", git.value, rev.value)),
            (_, _, Some(url), Some(hash)) => Some(format!(
                "{}{}hash={}-{}",
                url.value,
                if url.value.contains('?') { '&' } else { '?' },
                hash.value.algorithm,
                hash.value.digest
            )),
            _ => None,
        };
        if let Some(reference) = reference {
            let Some(fetcher) = fetcher else {
                return Err(PlanError::NoFetcher {
                    id: pkg.id.clone(),
                    reference,
                });
            };
            let fetched = fetcher.fetch(&reference).map_err(|e| PlanError::Fetch {
                id: pkg.id.clone(),
                reference: reference.clone(),
                source: Box::new(e),
            })?;
            if let nexis_fetch::LockedSource::Git { last_modified, .. } = fetched.locked.source {
                source_date = Some(last_modified);
            }
            src = Some(fetched.path);
        } else if let Some(path) = &source.path {
            let name = format!("{}-{version}-source", pkg.name);
            src = Some(add(recipe_dir.join(&path.value), Some(&name))?);
        }
        for p in &source.patches {
            patches.push(add(recipe_dir.join(&p.value), None)?);
        }
    }
    if let Some(date) = source_date.or_else(|| settings.source_dates.get(&pkg.input).copied()) {
        env.entry("SOURCE_DATE_EPOCH".into())
            .or_insert_with(|| date.to_string());
    }
    if let Some(src) = &src {
        env.insert("src".into(), src.to_string());
        sources.insert(src.clone());
    }
    if !patches.is_empty() {
        let list: Vec<String> = patches.iter().map(ToString::to_string).collect();
        env.insert("patches".into(), list.join(" "));
        sources.extend(patches.iter().cloned());
    }
    let dep_paths = |kind| -> BTreeSet<StorePath> {
        packages
            .deps(&pkg.id, kind)
            .into_iter()
            .filter_map(|id| outputs.get(id).cloned())
            .collect()
    };
    // Each dependency's output is also in a variable named after it (`-`, `.`, `+`
    // become `_`), unless the recipe or the fixed variables use that name.
    for kind in [DepKind::Build, DepKind::Runtime] {
        for id in packages.deps(&pkg.id, kind) {
            if let (Some(dep), Some(out)) = (packages.get(id), outputs.get(id)) {
                let var: String = dep
                    .name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                env.entry(var).or_insert_with(|| out.to_string());
            }
        }
    }
    let script = script(
        recipe.build.system,
        recipe,
        src.is_some(),
        !patches.is_empty(),
    );
    Ok(Derivation {
        name: pkg.name.clone(),
        version,
        system: system(),
        builder: "/bin/sh".to_owned(),
        args: vec!["-ec".to_owned(), script],
        env,
        sources,
        deps: dep_paths(DepKind::Build),
        runtime_deps: dep_paths(DepKind::Runtime),
        extra_sandbox_paths: settings.extra_sandbox_paths.clone(),
        fixed_output: None,
    })
}

/// Quote `s` for the shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The build script: unpack, patch, then the build system's phases (`docs/derivation.md`).
fn script(
    system: BuildSystem,
    recipe: &nexis_config::Recipe,
    has_src: bool,
    has_patches: bool,
) -> String {
    let mut s = String::new();
    if has_src {
        s.push_str(
            "mkdir -p /build/src\n\
             if [ -d \"$src\" ]; then cp -R \"$src\"/. /build/src/; else cp \"$src\" /build/src/; fi\n\
             chmod -R u+w /build/src\n\
             cd /build/src\n",
        );
    }
    if has_patches {
        s.push_str("for p in $patches; do patch -p1 < \"$p\"; done\n");
    }
    let flags: Vec<String> = recipe.build.flags.iter().map(|f| quote(f)).collect();
    let flags = flags.join(" ");
    let _ = match system {
        BuildSystem::Script => writeln!(
            s,
            "{}",
            recipe
                .build
                .script
                .as_ref()
                .map_or("", |x| x.value.as_str())
        ),
        BuildSystem::Autotools => writeln!(
            s,
            "./configure --prefix=\"$out\" {flags}\nmake -j\"$NEXIS_BUILD_CORES\"\nmake install"
        ),
        BuildSystem::Make => writeln!(
            s,
            "make -j\"$NEXIS_BUILD_CORES\" PREFIX=\"$out\" {flags}\nmake install PREFIX=\"$out\" {flags}"
        ),
        BuildSystem::Cmake => writeln!(
            s,
            "cmake -S . -B /build/cmake -DCMAKE_INSTALL_PREFIX=\"$out\" -DCMAKE_BUILD_TYPE=Release {flags}\n\
             cmake --build /build/cmake -j \"$NEXIS_BUILD_CORES\"\ncmake --install /build/cmake"
        ),
        BuildSystem::Meson => writeln!(
            s,
            "meson setup /build/meson --prefix=\"$out\" --buildtype=release {flags}\n\
             ninja -C /build/meson -j \"$NEXIS_BUILD_CORES\"\nninja -C /build/meson install"
        ),
        BuildSystem::Cargo => writeln!(
            s,
            "export CARGO_HOME=/build/cargo-home\n\
             cargo install --offline --locked --path . --root \"$out\" -j \"$NEXIS_BUILD_CORES\" {flags}\n\
             rm -f \"$out/.crates.toml\" \"$out/.crates2.json\""
        ),
    };
    s
}
