//! Properties of module merging, checked on generated configurations.
//!
//! - The result never depends on the order of `imports`: the same modules imported in two
//!   orders give the same JSON, or the same rendered errors.
//! - Sets merge as unions: splitting a set across modules, in any grouping and with
//!   repeats, gives the set itself.
//! - Priorities: for one key, a `[force]` value wins over a plain one, which wins over a
//!   `[defaults]` one; for a set, the union of the strongest level present is taken.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use nexis_config::{MemoryLoader, evaluate};
use proptest::prelude::*;

/// Packages every generated system can install: inline recipes in the root module.
const RECIPES: &[&str] = &["curl", "git", "htop", "vim", "zsh"];

/// Built-in groups, so that users may join them without declaring them.
const GROUPS: &[&str] = &["audio", "input", "video", "wheel"];

const PORTS: &[u16] = &[22, 80, 443, 8080, 9090];

/// Scalar keys a module may set, as (table, key, values to pick from). The last value of
/// each is invalid, so that generated systems also fail, in several files at once.
const SCALARS: &[(&str, &str, &[&str])] = &[
    (
        "system",
        "hostname",
        &["\"alpha\"", "\"beta\"", "\"bad_host\""],
    ),
    (
        "system",
        "timezone",
        &["\"UTC\"", "\"Europe/Paris\"", "\"../x\""],
    ),
    ("system", "keymap", &["\"us\"", "\"de-latin1\"", "7"]),
    ("boot", "timeout", &["1", "7", "9999"]),
    ("boot", "keep-generations", &["3", "20", "0"]),
    (
        "services.cron",
        "restart",
        &["true", "\"on-failure\"", "\"sometimes\""],
    ),
    (
        "users.alice",
        "description",
        &["\"Alice\"", "\"A. L.\"", "[]"],
    ),
];

/// Set-valued keys, as (table, key, members).
fn sets() -> [(&'static str, &'static str, Vec<String>); 3] {
    [
        (
            "packages",
            "install",
            RECIPES.iter().map(|r| format!("\"{r}\"")).collect(),
        ),
        (
            "users.alice",
            "groups",
            GROUPS.iter().map(|g| format!("\"{g}\"")).collect(),
        ),
        (
            "security.firewall",
            "allowed-tcp-ports",
            PORTS.iter().map(ToString::to_string).collect(),
        ),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Default,
    Plain,
    Force,
}

impl Level {
    fn prefix(self) -> &'static str {
        match self {
            Level::Default => "defaults.",
            Level::Plain => "",
            Level::Force => "force.",
        }
    }
}

fn level() -> impl Strategy<Value = Level> {
    prop_oneof![
        2 => Just(Level::Plain),
        1 => Just(Level::Default),
        1 => Just(Level::Force),
    ]
}

/// One definition in one module: `[LEVEL.TABLE] KEY = VALUE`.
#[derive(Debug, Clone)]
struct Def {
    level: Level,
    table: String,
    key: String,
    value: String,
}

/// A module as text. Definitions of one key at one level in the same module are written
/// once (the first wins), since TOML forbids repeating a key.
fn module_text(defs: &[Def]) -> String {
    let mut tables: BTreeMap<(Level, &str), BTreeMap<&str, &str>> = BTreeMap::new();
    for d in defs {
        tables
            .entry((d.level, &d.table))
            .or_default()
            .entry(&d.key)
            .or_insert(&d.value);
    }
    let mut out = String::new();
    for ((level, table), keys) in tables {
        let _ = writeln!(out, "[{}{table}]", level.prefix());
        for (key, value) in keys {
            let _ = writeln!(out, "{key} = {value}");
        }
    }
    out
}

/// The root module: imports in the given order, and the recipes. `cron` always has a
/// command so that setting its other keys makes a valid service.
fn root_text(order: &[usize]) -> String {
    let imports: Vec<String> = order.iter().map(|i| format!("\"m{i}.toml\"")).collect();
    let mut out = format!("imports = [{}]\n", imports.join(", "));
    out.push_str("[services.cron]\ncommand = \"/bin/crond -f\"\n");
    for r in RECIPES {
        let _ = writeln!(
            out,
            "[recipes.{r}]\nversion = \"1.0\"\nbuild = {{ system = \"script\", script = \"true\" }}"
        );
    }
    out
}

/// Evaluate modules imported in `order`: the JSON of the result, or the rendered errors.
fn outcome(modules: &[Vec<Def>], order: &[usize]) -> Result<serde_json::Value, String> {
    let mut loader = MemoryLoader::new();
    loader.insert("nexis.toml", root_text(order));
    for (i, defs) in modules.iter().enumerate() {
        loader.insert(format!("m{i}.toml"), module_text(defs));
    }
    evaluate(&loader, Path::new("nexis.toml"))
        .map(|e| e.to_json())
        .map_err(|e| e.render(false))
}

fn get<'a>(json: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    path.split('.').fold(json, |v, seg| &v[seg])
}

/// One definition: a scalar key or a set key, at some level.
fn def() -> impl Strategy<Value = Def> {
    let scalar = (0..SCALARS.len(), 0..3usize, level()).prop_map(|(k, v, level)| {
        let (table, key, values) = SCALARS[k];
        Def {
            level,
            table: table.to_owned(),
            key: key.to_owned(),
            value: values[v].to_owned(),
        }
    });
    let set = (0..3usize, prop::collection::vec(any::<bool>(), 5), level()).prop_map(
        |(k, mask, level)| {
            let (table, key, members) = sets()[k].clone();
            let chosen: Vec<String> = members
                .into_iter()
                .zip(mask)
                .filter_map(|(m, keep)| keep.then_some(m))
                .collect();
            Def {
                level,
                table: table.to_owned(),
                key: key.to_owned(),
                value: format!("[{}]", chosen.join(", ")),
            }
        },
    );
    prop_oneof![scalar, set]
}

/// 2 to 5 modules, and the same module indices in a shuffled order.
fn modules_and_order() -> impl Strategy<Value = (Vec<Vec<Def>>, Vec<usize>)> {
    prop::collection::vec(prop::collection::vec(def(), 0..8), 2..6).prop_flat_map(|modules| {
        let order: Vec<usize> = (0..modules.len()).collect();
        (Just(modules), Just(order).prop_shuffle())
    })
}

/// Items split across `n` modules: each item goes to one or more modules, and a module
/// may repeat an item it already has.
fn split_set<T: Clone + std::fmt::Debug + 'static>(
    items: Vec<T>,
) -> impl Strategy<Value = (Vec<T>, Vec<Vec<T>>)> {
    (2..6usize)
        .prop_flat_map(move |n| {
            let per_item = prop::collection::vec(
                (0..n, prop::collection::vec(0..n, 0..3), any::<bool>()),
                items.len(),
            );
            (Just(items.clone()), Just(n), per_item)
        })
        .prop_map(|(items, n, per_item)| {
            let mut groups: Vec<Vec<T>> = vec![Vec::new(); n];
            for (item, (home, extra, twice)) in items.iter().zip(per_item) {
                groups[home].push(item.clone());
                if twice {
                    groups[home].push(item.clone());
                }
                for m in extra {
                    groups[m].push(item.clone());
                }
            }
            (items, groups)
        })
}

fn subset(all: &'static [&'static str]) -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(any::<bool>(), all.len()).prop_map(move |mask| {
        all.iter()
            .zip(mask)
            .filter_map(|(item, keep)| keep.then_some(*item))
            .collect()
    })
}

fn quoted(items: &[&str]) -> String {
    let q: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", q.join(", "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn import_order_does_not_matter((modules, order) in modules_and_order()) {
        let sorted: Vec<usize> = (0..modules.len()).collect();
        let a = outcome(&modules, &sorted);
        let b = outcome(&modules, &order);
        prop_assert_eq!(a, b, "imports in order {:?}", order);
    }

    #[test]
    fn sets_merge_as_unions(
        (packages, package_groups) in subset(RECIPES).prop_flat_map(split_set),
        (ports, port_groups) in prop::collection::btree_set(prop::sample::select(PORTS), 0..5)
            .prop_map(|s| s.into_iter().collect::<Vec<u16>>())
            .prop_flat_map(split_set),
    ) {
        let n = package_groups.len().max(port_groups.len());
        let mut loader = MemoryLoader::new();
        let order: Vec<usize> = (0..n).collect();
        loader.insert("nexis.toml", root_text(&order));
        for i in 0..n {
            let mut text = String::new();
            if let Some(p) = package_groups.get(i) {
                let _ = writeln!(text, "[packages]\ninstall = {}", quoted(p));
            }
            if let Some(p) = port_groups.get(i) {
                let list: Vec<String> = p.iter().map(ToString::to_string).collect();
                let _ = writeln!(text, "[security.firewall]\nallowed-tcp-ports = [{}]", list.join(", "));
            }
            loader.insert(format!("m{i}.toml"), text);
        }
        let eval = evaluate(&loader, Path::new("nexis.toml"))
            .map_err(|e| TestCaseError::fail(e.render(false)))?;
        let json = eval.to_json();
        let mut want_packages = packages.clone();
        want_packages.sort_unstable();
        prop_assert_eq!(get(&json, "config.packages.install"), &serde_json::json!(want_packages));
        let mut want_ports = ports.clone();
        want_ports.sort_unstable();
        prop_assert_eq!(
            get(&json, "config.security.firewall.allowed-tcp-ports"),
            &serde_json::json!(want_ports)
        );
        // Every installed package is resolved, and nothing else.
        let ids: BTreeSet<String> = eval.packages.iter().map(|p| p.id.clone()).collect();
        let want_ids: BTreeSet<String> = packages.iter().map(|p| format!("self#{p}")).collect();
        prop_assert_eq!(ids, want_ids);
    }

    #[test]
    fn strongest_priority_wins(
        values in [
            prop::option::of("[a-z]{1,8}"),
            prop::option::of("[a-z]{1,8}"),
            prop::option::of("[a-z]{1,8}"),
        ],
        sets in [prop::option::of(subset(RECIPES)), prop::option::of(subset(RECIPES)), prop::option::of(subset(RECIPES))],
        homes in prop::collection::vec(0..3usize, 6),
    ) {
        // values / sets: [defaults], plain, [force]; each written in module homes[i].
        let levels = [Level::Default, Level::Plain, Level::Force];
        let mut modules: Vec<Vec<Def>> = vec![Vec::new(); 3];
        for (i, level) in levels.into_iter().enumerate() {
            if let Some(v) = &values[i] {
                modules[homes[i]].push(Def {
                    level,
                    table: "system".into(),
                    key: "hostname".into(),
                    value: format!("\"{v}\""),
                });
            }
            if let Some(s) = &sets[i] {
                modules[homes[3 + i]].push(Def {
                    level,
                    table: "packages".into(),
                    key: "install".into(),
                    value: quoted(s),
                });
            }
        }
        let json = outcome(&modules, &[0, 1, 2]).map_err(TestCaseError::fail)?;
        let want_host = values[2].as_ref().or(values[1].as_ref()).or(values[0].as_ref());
        let want_host = want_host.map_or("nexis", String::as_str);
        prop_assert_eq!(get(&json, "config.system.hostname"), &serde_json::json!(want_host));
        let want_set: BTreeSet<&str> = sets[2]
            .as_ref()
            .or(sets[1].as_ref())
            .or(sets[0].as_ref())
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        prop_assert_eq!(get(&json, "config.packages.install"), &serde_json::json!(want_set));
    }
}

/// A set split across several modules at one level merges, but a split across levels
/// keeps only the strongest: checked on one fixed example besides the properties.
#[test]
fn sets_at_different_levels_do_not_mix() {
    let modules = vec![
        vec![Def {
            level: Level::Default,
            table: "packages".into(),
            key: "install".into(),
            value: "[\"curl\"]".into(),
        }],
        vec![Def {
            level: Level::Plain,
            table: "packages".into(),
            key: "install".into(),
            value: "[\"git\"]".into(),
        }],
        vec![Def {
            level: Level::Plain,
            table: "packages".into(),
            key: "install".into(),
            value: "[\"vim\", \"git\"]".into(),
        }],
    ];
    let json = outcome(&modules, &[2, 0, 1]).unwrap();
    assert_eq!(
        get(&json, "config.packages.install"),
        &serde_json::json!(["git", "vim"])
    );
}
