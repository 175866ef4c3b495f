//! The spanned value tree every module is parsed into before merging.
//!
//! `toml_edit` keeps a span on every key and value; this module copies the parsed
//! document into a small owned tree ([`Node`]) whose tables are sorted maps, so that
//! merging and evaluation are deterministic and every value still knows where it came from.

use std::collections::BTreeMap;

use toml_edit::{Item, Value as TomlValue};

use crate::diagnostic::Diagnostic;
use crate::source::{FileId, Span};

/// A value with the place it was written.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) span: Span,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime(String),
    Array(Vec<Node>),
    Table(Table),
}

/// A table: sorted keys, each with the span of the key as written.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    pub(crate) entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) key_span: Span,
    pub(crate) node: Node,
}

impl Kind {
    /// The TOML type's name, for messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Kind::Str(_) => "a string",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a float",
            Kind::Bool(_) => "a boolean",
            Kind::Datetime(_) => "a datetime",
            Kind::Array(_) => "an array",
            Kind::Table(_) => "a table",
        }
    }
}

impl Node {
    /// Structural equality, ignoring spans.
    pub(crate) fn same_value(&self, other: &Node) -> bool {
        match (&self.kind, &other.kind) {
            (Kind::Str(a), Kind::Str(b)) | (Kind::Datetime(a), Kind::Datetime(b)) => a == b,
            (Kind::Int(a), Kind::Int(b)) => a == b,
            (Kind::Float(a), Kind::Float(b)) => a.to_bits() == b.to_bits(),
            (Kind::Bool(a), Kind::Bool(b)) => a == b,
            (Kind::Array(a), Kind::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_value(y))
            }
            (Kind::Table(a), Kind::Table(b)) => {
                a.entries.len() == b.entries.len()
                    && a.entries
                        .iter()
                        .zip(&b.entries)
                        .all(|((ka, ea), (kb, eb))| ka == kb && ea.node.same_value(&eb.node))
            }
            _ => false,
        }
    }

    /// A total order on values (used to sort and de-duplicate sets).
    pub(crate) fn sort_key(&self) -> String {
        match &self.kind {
            Kind::Str(s) | Kind::Datetime(s) => format!("s{s}"),
            // Integers sort numerically: offset into u64 and zero-pad.
            Kind::Int(i) => format!("i{:020}", i.cast_unsigned() ^ (1 << 63)),
            Kind::Float(f) => format!("f{f}"),
            Kind::Bool(b) => format!("b{b}"),
            Kind::Array(a) => {
                let inner: Vec<String> = a.iter().map(Node::sort_key).collect();
                format!("a[{}]", inner.join(","))
            }
            Kind::Table(t) => {
                let inner: Vec<String> = t
                    .entries
                    .iter()
                    .map(|(k, e)| format!("{k}={}", e.node.sort_key()))
                    .collect();
                format!("t{{{}}}", inner.join(","))
            }
        }
    }
}

impl Node {
    /// Remove the value written at `span` (a table entry or an array element) from this
    /// tree; returns its key when it was a table entry. `None` when nothing below this
    /// node has that span.
    pub(crate) fn remove_at(&mut self, span: Span) -> Option<Removed> {
        match &mut self.kind {
            Kind::Table(t) => {
                let hit = t
                    .entries
                    .iter()
                    .find(|(_, e)| e.node.span == span || e.key_span == span)
                    .map(|(k, _)| k.clone());
                if let Some(key) = hit {
                    t.entries.remove(&key);
                    return Some(Removed::Key(key));
                }
                t.entries.values_mut().find_map(|e| e.node.remove_at(span))
            }
            Kind::Array(items) => {
                if let Some(i) = items.iter().position(|n| n.span == span) {
                    items.remove(i);
                    return Some(Removed::Element);
                }
                items.iter_mut().find_map(|n| n.remove_at(span))
            }
            _ => None,
        }
    }
}

impl Table {
    /// Where the key at `path` was written, if it was.
    pub(crate) fn key_span(&self, path: &[&str]) -> Option<Span> {
        let (first, rest) = path.split_first()?;
        let entry = self.entries.get(*first)?;
        if rest.is_empty() {
            return Some(entry.key_span);
        }
        match &entry.node.kind {
            Kind::Table(t) => t.key_span(rest),
            _ => None,
        }
    }
}

/// What [`Node::remove_at`] took out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Removed {
    /// The entry with this key.
    Key(String),
    /// An array element.
    Element,
}

/// Parse one TOML file into a [`Node`] table.
pub(crate) fn parse(file: FileId, text: &str) -> Result<Node, Diagnostic> {
    let doc = toml_edit::Document::parse(text).map_err(|e| {
        let span = e
            .span()
            .map_or(Span::file_start(file), |r| Span::new(file, r));
        let message = e.message().trim_end().to_owned();
        Diagnostic::new("syntax", "invalid TOML")
            .primary(span, message)
            .help("see https://toml.io for the syntax")
    })?;
    let span = Span::new(file, 0..text.len());
    Ok(Node {
        kind: Kind::Table(table(file, doc.as_table(), span)),
        span,
    })
}

fn table(file: FileId, t: &toml_edit::Table, fallback: Span) -> Table {
    let mut out = Table::default();
    for (name, _) in t {
        let (key, item) = t.get_key_value(name).expect("key listed by the iterator");
        let key_span = key.span().map_or(fallback, |r| Span::new(file, r));
        if let Some(node) = item_node(file, item, key_span) {
            out.entries
                .insert(name.to_owned(), Entry { key_span, node });
        }
    }
    out
}

fn item_node(file: FileId, item: &Item, key_span: Span) -> Option<Node> {
    let span = item.span().map_or(key_span, |r| Span::new(file, r));
    Some(match item {
        Item::None => return None,
        Item::Value(v) => value_node(file, v, key_span),
        Item::Table(t) => Node {
            kind: Kind::Table(table(file, t, span)),
            span,
        },
        Item::ArrayOfTables(a) => Node {
            kind: Kind::Array(
                a.iter()
                    .map(|t| {
                        let s = t.span().map_or(span, |r| Span::new(file, r));
                        Node {
                            kind: Kind::Table(table(file, t, s)),
                            span: s,
                        }
                    })
                    .collect(),
            ),
            span,
        },
    })
}

fn value_node(file: FileId, v: &TomlValue, fallback: Span) -> Node {
    let span = v.span().map_or(fallback, |r| Span::new(file, r));
    let kind = match v {
        TomlValue::String(s) => Kind::Str(s.value().clone()),
        TomlValue::Integer(i) => Kind::Int(*i.value()),
        TomlValue::Float(f) => Kind::Float(*f.value()),
        TomlValue::Boolean(b) => Kind::Bool(*b.value()),
        TomlValue::Datetime(d) => Kind::Datetime(d.value().to_string()),
        TomlValue::Array(a) => Kind::Array(a.iter().map(|v| value_node(file, v, span)).collect()),
        TomlValue::InlineTable(t) => {
            let mut out = Table::default();
            for (name, _) in t {
                let (key, item) = t.get_key_value(name).expect("key listed by the iterator");
                let key_span = key.span().map_or(span, |r| Span::new(file, r));
                if let Some(node) = item_node(file, item, key_span) {
                    out.entries
                        .insert(name.to_owned(), Entry { key_span, node });
                }
            }
            Kind::Table(out)
        }
    };
    Node { kind, span }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_spans() {
        let text = "[system]\nhostname = \"box\"\n[users.alice]\nuid = 1000\n";
        let node = parse(FileId(0), text).unwrap();
        let Kind::Table(root) = &node.kind else {
            panic!("root is a table")
        };
        let system = &root.entries["system"].node;
        let Kind::Table(system) = &system.kind else {
            panic!()
        };
        let host = &system.entries["hostname"];
        assert_eq!(
            &text[host.key_span.start as usize..host.key_span.end as usize],
            "hostname"
        );
        assert_eq!(
            &text[host.node.span.start as usize..host.node.span.end as usize],
            "\"box\""
        );
    }

    #[test]
    fn syntax_error_has_a_span() {
        let err = parse(FileId(0), "a = \n").unwrap_err();
        assert_eq!(err.kind, "syntax");
        assert!(err.span().is_some());
    }
}
