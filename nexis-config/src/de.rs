//! A serde deserializer over the spanned [`Node`] tree.
//!
//! Typed structs derive `Deserialize`; this deserializer gives every error the span of the
//! value it was reading, reports every unknown key of a struct (with a suggestion) without
//! stopping, and fills [`Spanned`] fields with the place their value was written.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::source::{FileId, Span};
use crate::value::{Entry, Kind, Node};

const SPANNED: &str = "$nexis::Spanned";
const SPANNED_FIELDS: &[&str] = &["$file", "$start", "$end", "$value"];

/// A value together with the place in the configuration it came from.
///
/// Equality, ordering and hashing look at the value only. Values the evaluator filled in
/// itself (defaults) have no span.
#[derive(Clone)]
pub struct Spanned<T> {
    /// Where the value was written, if it was.
    pub span: Option<Span>,
    /// The value.
    pub value: T,
}

impl<T> Spanned<T> {
    /// A value with no place (a default).
    pub fn unspanned(value: T) -> Spanned<T> {
        Spanned { span: None, value }
    }
}

impl<T: fmt::Debug> fmt::Debug for Spanned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<T: fmt::Display> fmt::Display for Spanned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}
impl<T: Eq> Eq for Spanned<T> {}
impl<T: Ord> PartialOrd for Spanned<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T: Ord> Ord for Spanned<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value.cmp(&other.value)
    }
}
impl<T: std::hash::Hash> std::hash::Hash for Spanned<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.value.hash(state);
    }
}
impl Borrow<str> for Spanned<String> {
    fn borrow(&self) -> &str {
        &self.value
    }
}
impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Serialize> Serialize for Spanned<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Spanned<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Spanned<T>, A::Error> {
                let mut nums = [0u32; 3];
                for n in &mut nums {
                    let _: Option<String> = map.next_key()?;
                    *n = map.next_value()?;
                }
                let _: Option<String> = map.next_key()?;
                let value = map.next_value()?;
                Ok(Spanned {
                    span: Some(Span {
                        file: FileId(nums[0]),
                        start: nums[1],
                        end: nums[2],
                    }),
                    value,
                })
            }
        }
        d.deserialize_struct(SPANNED, SPANNED_FIELDS, V(std::marker::PhantomData))
    }
}

/// An error while decoding a node, with the span of the offending value.
#[derive(Debug)]
pub(crate) struct Error {
    kind: &'static str,
    message: String,
    help: Option<String>,
    span: Option<Span>,
}

impl Error {
    fn at(mut self, span: Span) -> Error {
        self.span.get_or_insert(span);
        self
    }

    pub(crate) fn into_diagnostic(self, fallback: Span) -> Diagnostic {
        Diagnostic::new(self.kind, self.message)
            .primary(self.span.unwrap_or(fallback), "")
            .help_opt(self.help)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    /// Messages of the form `what is wrong; what to do` are split into message and help.
    fn custom<M: fmt::Display>(msg: M) -> Error {
        let msg = msg.to_string();
        let (message, help) = match msg.split_once("; ") {
            Some((m, h)) => (m.to_owned(), Some(h.to_owned())),
            None => (msg, None),
        };
        Error {
            kind: "invalid-value",
            message,
            help,
            span: None,
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Error {
        Error {
            kind: "type",
            message: format!("expected {}, found {}", expected(exp), unexpected(&unexp)),
            help: None,
            span: None,
        }
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Error {
        Error {
            kind: "invalid-value",
            message: format!("expected {}, found {}", expected(exp), unexpected(&unexp)),
            help: None,
            span: None,
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Error {
        let list: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
        Error {
            kind: "invalid-value",
            message: format!(
                "unknown value `{variant}`; expected one of {}",
                list.join(", ")
            ),
            help: did_you_mean(variant, expected.iter().copied()),
            span: None,
        }
    }

    fn missing_field(field: &'static str) -> Error {
        Error {
            kind: "missing-key",
            message: format!("missing key `{field}`"),
            help: None,
            span: None,
        }
    }
}

/// What serde expected, in TOML's words (`an array`, not `a sequence`; ranges, not `u16`).
fn expected(exp: &dyn de::Expected) -> String {
    let text = exp.to_string();
    match text.as_str() {
        "a sequence" => "an array".to_owned(),
        "a map" => "a table".to_owned(),
        "u8" => format!("an integer from 0 to {}", u8::MAX),
        "u16" => format!("an integer from 0 to {}", u16::MAX),
        "u32" => format!("an integer from 0 to {}", u32::MAX),
        "u64" | "usize" => "a non-negative integer".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".to_owned(),
        _ => text,
    }
}

fn unexpected(u: &de::Unexpected<'_>) -> String {
    match u {
        de::Unexpected::Str(s) => format!("string \"{s}\""),
        de::Unexpected::Signed(i) => format!("integer {i}"),
        de::Unexpected::Unsigned(i) => format!("integer {i}"),
        de::Unexpected::Float(f) => format!("float {f}"),
        de::Unexpected::Bool(b) => format!("boolean {b}"),
        de::Unexpected::Map => "a table".into(),
        de::Unexpected::Seq => "an array".into(),
        other => other.to_string(),
    }
}

/// Decode a node into `T`, pushing unknown-key diagnostics into `sink`. `path` names the
/// node in messages (`services.sshd`).
pub(crate) fn decode<'de, T: Deserialize<'de>>(
    node: &Node,
    path: &str,
    sink: &RefCell<Vec<Diagnostic>>,
) -> Result<T, Diagnostic> {
    T::deserialize(NodeDe { node, path, sink }).map_err(|e| e.into_diagnostic(node.span))
}

struct NodeDe<'a> {
    node: &'a Node,
    path: &'a str,
    sink: &'a RefCell<Vec<Diagnostic>>,
}

impl<'de> Deserializer<'de> for NodeDe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let span = self.node.span;
        match &self.node.kind {
            Kind::Str(s) => visitor.visit_str(s),
            // No key of the schema is a date; a bare date where a string belongs is a
            // forgotten pair of quotes.
            Kind::Datetime(_) => Err(de::Error::invalid_type(
                de::Unexpected::Other("a datetime (quote it to make a string)"),
                &visitor,
            )),
            Kind::Int(i) => visitor.visit_i64(*i),
            Kind::Float(f) => visitor.visit_f64(*f),
            Kind::Bool(b) => visitor.visit_bool(*b),
            Kind::Array(items) => visitor.visit_seq(Seq {
                items: items.iter(),
                path: self.path,
                sink: self.sink,
            }),
            Kind::Table(t) => visitor.visit_map(Map {
                entries: t.entries.iter().collect(),
                next: 0,
                value: None,
                path: self.path,
                sink: self.sink,
            }),
        }
        .map_err(|e| e.at(span))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let span = self.node.span;
        match &self.node.kind {
            Kind::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            other => Err(Error {
                kind: "type",
                message: format!("expected a string, found {}", other.type_name()),
                help: None,
                span: None,
            }),
        }
        .map_err(|e: Error| e.at(span))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let span = self.node.span;
        if name == SPANNED {
            return visitor
                .visit_map(SpannedAccess {
                    span,
                    step: 0,
                    value: Some(self),
                })
                .map_err(|e| e.at(span));
        }
        let Kind::Table(t) = &self.node.kind else {
            return Err(Error {
                kind: "type",
                message: format!(
                    "`{}` must be a table, found {}",
                    self.path,
                    self.node.kind.type_name()
                ),
                help: None,
                span: Some(span),
            });
        };
        let mut entries = Vec::with_capacity(t.entries.len());
        for (key, entry) in &t.entries {
            if fields.contains(&key.as_str()) {
                entries.push((key, entry));
            } else {
                let place = if self.path.is_empty() {
                    "the top level".to_owned()
                } else {
                    format!("`{}`", self.path)
                };
                let help = did_you_mean(key, fields.iter().copied()).unwrap_or_else(|| {
                    let list: Vec<String> = fields.iter().map(|f| format!("`{f}`")).collect();
                    format!("the keys of {place} are {}", list.join(", "))
                });
                self.sink.borrow_mut().push(
                    Diagnostic::new("unknown-key", format!("unknown key `{key}` in {place}"))
                        .primary(entry.key_span, "unknown key")
                        .help(help),
                );
            }
        }
        visitor
            .visit_map(Map {
                entries,
                next: 0,
                value: None,
                path: self.path,
                sink: self.sink,
            })
            .map_err(|e| e.at(span))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

struct Seq<'a, I> {
    items: I,
    path: &'a str,
    sink: &'a RefCell<Vec<Diagnostic>>,
}

impl<'de, 'a, I: Iterator<Item = &'a Node>> SeqAccess<'de> for Seq<'a, I> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            None => Ok(None),
            // Errors found after the value was read (a string that does not parse as a
            // package reference, say) point at this element, not at the whole array.
            Some(node) => seed
                .deserialize(NodeDe {
                    node,
                    path: self.path,
                    sink: self.sink,
                })
                .map(Some)
                .map_err(|e| e.at(node.span)),
        }
    }
}

struct Map<'a> {
    entries: Vec<(&'a String, &'a Entry)>,
    next: usize,
    value: Option<(String, &'a Node)>,
    path: &'a str,
    sink: &'a RefCell<Vec<Diagnostic>>,
}

impl<'de> MapAccess<'de> for Map<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, entry)) = self.entries.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        let path = if self.path.is_empty() {
            (*key).clone()
        } else {
            format!("{}.{key}", self.path)
        };
        self.value = Some((path, &entry.node));
        seed.deserialize(KeyDe {
            key,
            span: entry.key_span,
        })
        .map(Some)
        .map_err(|e| e.at(entry.key_span))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (path, node) = self.value.take().expect("next_value after next_key");
        seed.deserialize(NodeDe {
            node,
            path: &path,
            sink: self.sink,
        })
        .map_err(|e| e.at(node.span))
    }
}

struct KeyDe<'a> {
    key: &'a str,
    span: Span,
}

impl<'de> Deserializer<'de> for KeyDe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str(self.key)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == SPANNED {
            visitor.visit_map(SpannedAccess {
                span: self.span,
                step: 0,
                value: Some(self),
            })
        } else {
            self.deserialize_any(visitor)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// Feeds a `Spanned` visitor: `$file`, `$start`, `$end`, then the value itself.
struct SpannedAccess<D> {
    span: Span,
    step: usize,
    value: Option<D>,
}

impl<'de, D: Deserializer<'de, Error = Error>> MapAccess<'de> for SpannedAccess<D> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(name) = SPANNED_FIELDS.get(self.step) else {
            return Ok(None);
        };
        seed.deserialize((*name).into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let step = self.step;
        self.step += 1;
        match step {
            0 => seed.deserialize(self.span.file.0.into_deserializer()),
            1 => seed.deserialize(self.span.start.into_deserializer()),
            2 => seed.deserialize(self.span.end.into_deserializer()),
            _ => seed.deserialize(self.value.take().expect("value read once")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::parse;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "kebab-case", deny_unknown_fields)]
    struct Svc {
        command: Spanned<String>,
        #[serde(default)]
        depends_on: Vec<Spanned<String>>,
        #[serde(default)]
        restart: bool,
    }

    fn root(text: &str) -> Node {
        parse(FileId(0), text).unwrap()
    }

    #[test]
    fn spans_and_unknown_keys() {
        let text = "command = \"sshd\"\ndepends-on = [\"net\"]\nrestrat = true\n";
        let sink = RefCell::new(Vec::new());
        let svc: Svc = decode(&root(text), "services.sshd", &sink).unwrap();
        assert_eq!(svc.command.value, "sshd");
        assert!(!svc.restart);
        let span = svc.depends_on[0].span.unwrap();
        assert_eq!(&text[span.start as usize..span.end as usize], "\"net\"");
        let diags = sink.into_inner();
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].message, "unknown key `restrat` in `services.sshd`");
        assert_eq!(diags[0].help.as_deref(), Some("did you mean `restart`?"));
    }

    #[test]
    fn type_errors_point_at_the_value() {
        let text = "command = \"x\"\nrestart = \"yes\"\n";
        let sink = RefCell::new(Vec::new());
        let err = decode::<Svc>(&root(text), "services.x", &sink).unwrap_err();
        assert_eq!(err.kind, "type");
        assert_eq!(err.message, "expected a boolean, found string \"yes\"");
        let span = err.span().unwrap();
        assert_eq!(&text[span.start as usize..span.end as usize], "\"yes\"");
    }

    #[test]
    fn missing_key_points_at_the_table() {
        let sink = RefCell::new(Vec::new());
        let err = decode::<Svc>(&root("restart = true\n"), "services.x", &sink).unwrap_err();
        assert_eq!(err.kind, "missing-key");
        assert_eq!(err.message, "missing key `command`");
    }
}
