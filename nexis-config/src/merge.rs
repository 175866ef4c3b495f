//! Merging modules into one tree, deterministically.
//!
//! Every module contributes definitions at one of three priorities: values under the
//! module's `[defaults]` table (overridable), ordinary values, and values under `[force]`
//! (which win). For each key the definitions at the highest priority present are merged:
//! tables merge key by key, sets (arrays the schema marks as unique) are unions sorted
//! into a canonical order, and any other value must be the same everywhere it is defined —
//! two different values are a conflict naming both places. Modules are visited in the
//! order of their paths, so the result never depends on the order of `imports`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::diagnostic::Diagnostic;
use crate::source::Span;
use crate::value::{Entry, Kind, Node, Table};

/// The priority of a definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Priority {
    /// Under `[defaults]`.
    Default,
    /// Written plainly.
    Normal,
    /// Under `[force]`.
    Force,
}

impl Priority {
    fn table(self) -> &'static str {
        match self {
            Priority::Default => "defaults",
            Priority::Normal => "",
            Priority::Force => "force",
        }
    }
}

/// One layer of one module: a table of definitions at a priority.
#[derive(Debug)]
pub(crate) struct Layer {
    pub(crate) priority: Priority,
    pub(crate) table: Table,
}

#[derive(Debug)]
enum Slot {
    Table {
        span: Span,
        key_span: Span,
        entries: BTreeMap<String, Slot>,
    },
    Leaf(Vec<Def>),
}

#[derive(Debug)]
struct Def {
    priority: Priority,
    key_span: Span,
    node: Node,
}

/// Merge layers (already in canonical module order) into one tree.
pub(crate) fn merge(layers: Vec<Layer>, diags: &mut Vec<Diagnostic>) -> Table {
    let mut root = BTreeMap::new();
    let mut path = Vec::new();
    for layer in layers {
        insert(&mut root, layer.table, layer.priority, &mut path, diags);
    }
    finish_table(root, &mut path, diags)
}

fn insert(
    slots: &mut BTreeMap<String, Slot>,
    table: Table,
    priority: Priority,
    path: &mut Vec<String>,
    diags: &mut Vec<Diagnostic>,
) {
    for (key, Entry { key_span, node }) in table.entries {
        path.push(key.clone());
        match (slots.get_mut(&key), node.kind) {
            (None, Kind::Table(t)) => {
                let mut entries = BTreeMap::new();
                insert(&mut entries, t, priority, path, diags);
                slots.insert(
                    key,
                    Slot::Table {
                        span: node.span,
                        key_span,
                        entries,
                    },
                );
            }
            (Some(Slot::Table { entries, .. }), Kind::Table(t)) => {
                insert(entries, t, priority, path, diags);
            }
            (Some(Slot::Leaf(defs)), Kind::Table(_)) => {
                diags.push(shape_conflict(
                    path,
                    node.span,
                    defs[0].node.span,
                    "a table",
                    defs[0].node.kind.type_name(),
                ));
            }
            (Some(Slot::Table { span, .. }), kind) => {
                diags.push(shape_conflict(
                    path,
                    node.span,
                    *span,
                    kind.type_name(),
                    "a table",
                ));
            }
            (None, kind) => {
                slots.insert(
                    key,
                    Slot::Leaf(vec![Def {
                        priority,
                        key_span,
                        node: Node {
                            kind,
                            span: node.span,
                        },
                    }]),
                );
            }
            (Some(Slot::Leaf(defs)), kind) => defs.push(Def {
                priority,
                key_span,
                node: Node {
                    kind,
                    span: node.span,
                },
            }),
        }
        path.pop();
    }
}

fn shape_conflict(path: &[String], here: Span, there: Span, this: &str, that: &str) -> Diagnostic {
    Diagnostic::new(
        "conflict",
        format!("`{}` is {this} here but {that} elsewhere", dotted(path)),
    )
    .primary(here, format!("{this} here"))
    .secondary(there, format!("{that} here"))
    .help("a key must have the same type in every module")
}

fn finish_table(
    slots: BTreeMap<String, Slot>,
    path: &mut Vec<String>,
    diags: &mut Vec<Diagnostic>,
) -> Table {
    let mut out = Table::default();
    for (key, slot) in slots {
        path.push(key.clone());
        let entry = match slot {
            Slot::Table {
                span,
                key_span,
                entries,
            } => Some(Entry {
                key_span,
                node: Node {
                    kind: Kind::Table(finish_table(entries, path, diags)),
                    span,
                },
            }),
            Slot::Leaf(defs) => finish_leaf(defs, path, diags),
        };
        if let Some(entry) = entry {
            out.entries.insert(key, entry);
        }
        path.pop();
    }
    out
}

fn finish_leaf(defs: Vec<Def>, path: &[String], diags: &mut Vec<Diagnostic>) -> Option<Entry> {
    let top = defs.iter().map(|d| d.priority).max()?;
    let winners: Vec<Def> = defs.into_iter().filter(|d| d.priority == top).collect();
    // A set is merged when any winning definition is an array (not only the first one, so
    // that the report does not depend on which module's path sorts first).
    let array = winners
        .iter()
        .find(|d| matches!(d.node.kind, Kind::Array(_)));
    if is_set(path)
        && let Some(array) = array
    {
        // Union of every winning array, de-duplicated by value, in canonical order.
        let mut items: BTreeMap<String, Node> = BTreeMap::new();
        let span = array.node.span;
        let key_span = array.key_span;
        for def in winners {
            match def.node.kind {
                Kind::Array(elems) => {
                    for e in elems {
                        items.entry(e.sort_key()).or_insert(e);
                    }
                }
                other => diags.push(shape_conflict(
                    path,
                    def.node.span,
                    span,
                    other.type_name(),
                    "an array",
                )),
            }
        }
        return Some(Entry {
            key_span,
            node: Node {
                kind: Kind::Array(items.into_values().collect()),
                span,
            },
        });
    }
    let mut winners = winners.into_iter();
    let first = winners.next()?;
    for other in winners {
        if !other.node.same_value(&first.node) {
            diags.push(conflict(path, top, &first, &other));
        }
    }
    Some(Entry {
        key_span: first.key_span,
        node: first.node,
    })
}

fn conflict(path: &[String], priority: Priority, first: &Def, other: &Def) -> Diagnostic {
    let key = dotted(path);
    let parent = dotted(&path[..path.len() - 1]);
    let within = |table: &str| {
        if parent.is_empty() {
            format!("[{table}]")
        } else {
            format!("[{table}.{parent}]")
        }
    };
    let level = match priority {
        Priority::Normal => String::new(),
        p => format!(" under [{}]", p.table()),
    };
    Diagnostic::new(
        "conflict",
        format!("conflicting definitions of `{key}`{level}"),
    )
    .primary(other.node.span, "defined here")
    .secondary(first.node.span, "and differently here")
    .help(match priority {
        Priority::Force => "two forced values disagree; keep only one of them".to_owned(),
        Priority::Default => format!(
            "two defaults disagree; keep only one of them, or set `{key}` plainly in one module (a plain value overrides defaults)"
        ),
        Priority::Normal => format!(
            "make one win: move it under {} or move the other under {}",
            within("force"),
            within("defaults")
        ),
    })
}

pub(crate) fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for (i, seg) in path.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if !seg.is_empty()
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            out.push_str(seg);
        } else {
            out.push('"');
            out.push_str(seg);
            out.push('"');
        }
    }
    out
}

/// Whether the array at `path` is a set, according to the schema (`uniqueItems`).
pub(crate) fn is_set(path: &[String]) -> bool {
    set_patterns().iter().any(|pattern| {
        pattern.len() == path.len()
            && pattern
                .iter()
                .zip(path)
                .all(|(p, seg)| p.as_deref().is_none_or(|p| p == seg))
    })
}

/// Paths of set-valued keys; `None` segments match any map key.
fn set_patterns() -> &'static [Vec<Option<String>>] {
    static PATTERNS: OnceLock<Vec<Vec<Option<String>>>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let schema = serde_json::to_value(schemars::schema_for!(crate::spec::SystemSpec))
            .expect("schemas serialise");
        let mut out = Vec::new();
        walk(&schema, &schema, &mut Vec::new(), &mut out, 0);
        out
    })
}

fn walk(
    root: &serde_json::Value,
    schema: &serde_json::Value,
    path: &mut Vec<Option<String>>,
    out: &mut Vec<Vec<Option<String>>>,
    depth: usize,
) {
    if depth > 32 {
        return;
    }
    if let Some(reference) = schema.get("$ref").and_then(|r| r.as_str()) {
        let name = reference.trim_start_matches("#/$defs/");
        if let Some(target) = root.get("$defs").and_then(|d| d.get(name)) {
            walk(root, target, path, out, depth + 1);
        }
    }
    if schema
        .get("uniqueItems")
        .and_then(serde_json::Value::as_bool)
        == Some(true)
    {
        out.push(path.clone());
    }
    for combinator in ["anyOf", "oneOf", "allOf"] {
        if let Some(list) = schema.get(combinator).and_then(|l| l.as_array()) {
            for sub in list {
                walk(root, sub, path, out, depth + 1);
            }
        }
    }
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        for (key, sub) in props {
            path.push(Some(key.clone()));
            walk(root, sub, path, out, depth + 1);
            path.pop();
        }
    }
    if let Some(sub) = schema.get("additionalProperties").filter(|s| s.is_object()) {
        path.push(None);
        walk(root, sub, path, out, depth + 1);
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<String> {
        s.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn sets_come_from_the_schema() {
        assert!(is_set(&p("packages.install")));
        assert!(is_set(&p("users.alice.groups")));
        assert!(is_set(&p("services.sshd.depends-on")));
        assert!(is_set(&p("security.firewall.allowed-tcp-ports")));
        assert!(is_set(&p("recipes.hello.build.deps")));
        assert!(!is_set(&p("recipes.hello.build.flags")));
        assert!(!is_set(&p("system.hostname")));
    }

    #[test]
    fn dotted_quotes_odd_keys() {
        assert_eq!(dotted(&p("files")), "files");
        assert_eq!(
            dotted(&["files".into(), "/etc/motd".into(), "mode".into()]),
            "files.\"/etc/motd\".mode"
        );
    }
}
