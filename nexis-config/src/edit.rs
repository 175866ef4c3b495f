//! Comment-preserving edits of a configuration file's text.
//!
//! `nexis config set` and `nexis config add-package` change one value in `nexis.toml`
//! and leave everything else byte for byte as the user wrote it: comments, blank lines,
//! key order, quoting and the layout of other values. The functions here are pure — text
//! in, text out — so the caller decides how to write the file (atomically, with a
//! rollback when the edited configuration no longer evaluates).
//!
//! - [`set`] assigns a value to a dotted key path such as `system.hostname` or
//!   `files."/etc/motd".mode`, creating missing tables as `[table]` headers at the end of
//!   their parent.
//! - [`add_package`] and [`remove_package`] edit the `packages.install` array, keeping a
//!   multi-line array multi-line.
//!
//! ```
//! use nexis_config::edit;
//!
//! let text = "# my machine\n[system]\nhostname = \"old\" # shown at login\n";
//! let text = edit::set(text, "system.hostname", "new").unwrap();
//! assert_eq!(text, "# my machine\n[system]\nhostname = \"new\" # shown at login\n");
//! let text = edit::add_package(&text, "local#hello").unwrap();
//! assert!(text.ends_with("\n[packages]\ninstall = [\"local#hello\"]\n"));
//! ```

use toml_edit::{Array, DocumentMut, InlineTable, Item, Key, Table, Value};

/// An edit could not be made; the text is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The text being edited is not valid TOML.
    #[error("invalid TOML at line {line}, column {column}: {message}")]
    InvalidToml {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// The key path is not a dotted TOML key.
    #[error("`{key}` is not a valid key path: {reason}")]
    InvalidKey {
        /// The key path as given.
        key: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A prefix of the key path names something other than a table.
    #[error("cannot set `{key}`: `{parent}` is {found}, not a table")]
    ParentNotTable {
        /// The key path being set.
        key: String,
        /// The prefix of the path that is not a table.
        parent: String,
        /// What it is instead, such as "a string" or "an array of tables".
        found: &'static str,
    },
    /// The key names a table, which cannot be replaced by a single value.
    #[error("cannot set `{key}`: it is {found}; set the keys inside it instead")]
    NotAValue {
        /// The key path being set.
        key: String,
        /// What it is, such as "a table".
        found: &'static str,
    },
    /// `packages.install` (or another list being edited) is not an array.
    #[error("cannot edit `{key}`: it is {found}, not an array")]
    NotAnArray {
        /// The key path of the list.
        key: String,
        /// What it is instead.
        found: &'static str,
    },
    /// [`remove_package`] was asked for a reference the list does not contain.
    #[error("`{reference}` is not in `packages.install`")]
    PackageNotListed {
        /// The reference to remove.
        reference: String,
    },
}

/// Set the value at a dotted key path and return the new text.
///
/// `key` is a TOML key path (`system.hostname`, `files."/etc/motd".mode`). `value` is
/// taken as a TOML value when it parses as one (`42`, `true`, `"x"`, `["a", "b"]`,
/// `{ a = 1 }`) and as a plain string otherwise. An existing value is replaced in place,
/// keeping the whitespace and comment around it; a new key goes after the last key of its
/// table; missing tables are created as `[table]` headers after their parent's last
/// table (inside inline or dotted tables, they are created in the same style).
pub fn set(text: &str, key: &str, value: &str) -> Result<String, EditError> {
    let mut doc = parse_document(text)?;
    let path = parse_key_path(key)?;
    let (leaf, parents) = path
        .split_last()
        .expect("parse_key_path returns at least one key");
    let parent = table_at(&mut doc, key, parents)?;
    let new = parse_value(value);
    let table = parent
        .as_table_like_mut()
        .expect("table_at returns a table-like item");
    match table.get_mut(leaf.get()) {
        Some(Item::Value(old)) => {
            let decor = old.decor().clone();
            *old = new;
            *old.decor_mut() = decor;
        }
        Some(item @ (Item::Table(_) | Item::ArrayOfTables(_))) => {
            return Err(EditError::NotAValue {
                key: key.to_owned(),
                found: describe(item),
            });
        }
        Some(Item::None) | None => insert_new(parent, leaf, new),
    }
    Ok(render(doc, text))
}

/// Add a package reference to `packages.install` and return the new text.
///
/// Creates `[packages]` and `install = [...]` when they are missing. The text is
/// returned unchanged when the exact reference is already listed. A new element is
/// appended in the style of the existing ones: on its own line with the same indentation
/// in a multi-line array, after a space in a one-line array.
pub fn add_package(text: &str, reference: &str) -> Result<String, EditError> {
    let mut doc = parse_document(text)?;
    let Some(array) = install_array(&mut doc)? else {
        let mut array = Array::new();
        array.push(reference);
        let parent = table_at(&mut doc, INSTALL_KEY, &[Key::new("packages")])?;
        insert_new(parent, &Key::new("install"), Value::Array(array));
        return Ok(render(doc, text));
    };
    if array.iter().any(|v| v.as_str() == Some(reference)) {
        return Ok(text.to_owned());
    }
    append_formatted(array, reference);
    Ok(doc.to_string())
}

/// Remove a package reference from `packages.install` and return the new text.
///
/// Every element equal to `reference` is removed together with the comments on the
/// lines before it. It is an error when the reference is not listed, so that a typo does
/// not pass silently.
pub fn remove_package(text: &str, reference: &str) -> Result<String, EditError> {
    let mut doc = parse_document(text)?;
    let not_listed = || EditError::PackageNotListed {
        reference: reference.to_owned(),
    };
    let array = install_array(&mut doc)?.ok_or_else(not_listed)?;
    let mut found = false;
    loop {
        let index = array.iter().position(|v| v.as_str() == Some(reference));
        let Some(index) = index else { break };
        remove_formatted(array, index);
        found = true;
    }
    if !found {
        return Err(not_listed());
    }
    Ok(doc.to_string())
}

/// Split a dotted key path into its segments, unquoting quoted ones.
///
/// `files."/etc/motd".mode` is `["files", "/etc/motd", "mode"]`. The CLI uses this to
/// read a value of the evaluated configuration with the same key syntax as [`set`].
pub fn key_path(key: &str) -> Result<Vec<String>, EditError> {
    Ok(parse_key_path(key)?
        .iter()
        .map(|k| k.get().to_owned())
        .collect())
}

const INSTALL_KEY: &str = "packages.install";

/// The edited document as text.
///
/// `toml_edit` keeps comments after the last item at the end of the file, after anything
/// added. When the original has no items at all — only comments, such as a header —
/// those comments stay on top instead, followed by a blank line.
fn render(mut doc: DocumentMut, original: &str) -> String {
    let only_comments = original.parse::<DocumentMut>().is_ok_and(|d| d.is_empty());
    if !only_comments || original.trim().is_empty() {
        return doc.to_string();
    }
    doc.set_trailing("");
    let newline = if original.ends_with('\n') { "" } else { "\n" };
    format!("{original}{newline}\n{doc}")
}

fn parse_document(text: &str) -> Result<DocumentMut, EditError> {
    text.parse::<DocumentMut>().map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start).min(text.len());
        let (line, column) = line_col(text, offset);
        EditError::InvalidToml {
            line,
            column,
            message: e.message().trim_end().to_owned(),
        }
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset;
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn parse_key_path(key: &str) -> Result<Vec<Key>, EditError> {
    let invalid = |reason: String| EditError::InvalidKey {
        key: key.to_owned(),
        reason,
    };
    if key.trim().is_empty() {
        return Err(invalid("the key is empty".to_owned()));
    }
    let keys = Key::parse(key).map_err(|e| invalid(e.message().trim_end().to_owned()))?;
    // Drop the whitespace and quoting the user typed: new keys are written in the
    // canonical form (bare when possible, quoted otherwise).
    Ok(keys.iter().map(|k| Key::new(k.get())).collect())
}

/// `value` as a TOML value, or as a string when it is not one.
fn parse_value(value: &str) -> Value {
    match value.parse::<Value>() {
        Ok(mut v) => {
            v.decor_mut().clear();
            v
        }
        Err(_) => Value::from(value),
    }
}

/// The key path `keys` written back as text, for messages.
fn display_path(keys: &[Key]) -> String {
    keys.iter()
        .map(|k| k.display_repr().into_owned())
        .collect::<Vec<_>>()
        .join(".")
}

fn describe(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
        Item::Value(v) => match v {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime(_) => "a date-time",
            Value::Array(_) => "an array",
            Value::InlineTable(_) => "an inline table",
        },
    }
}

/// The table-like item at `path`, creating missing tables.
///
/// Missing tables under a normal table become `[header]` tables placed after the last
/// table of the parent's subtree (the intermediate ones implicit, so only the innermost
/// gets a header); under a dotted table they are dotted, under an inline table inline.
fn table_at<'d>(
    doc: &'d mut DocumentMut,
    key: &str,
    path: &[Key],
) -> Result<&'d mut Item, EditError> {
    // First pass, read-only: check every existing prefix is a table and find where
    // creation starts.
    let mut item = doc.as_item();
    let mut create_from = None;
    for (i, k) in path.iter().enumerate() {
        match item.as_table_like().and_then(|t| t.get(k.get())) {
            None | Some(Item::None) => {
                create_from = Some(i);
                break;
            }
            Some(next) if next.is_table_like() => item = next,
            Some(next) => {
                return Err(EditError::ParentNotTable {
                    key: key.to_owned(),
                    parent: display_path(&path[..=i]),
                    found: describe(next),
                });
            }
        }
    }
    // New header tables go right after the last table of the subtree they are created in:
    // make room by moving every later table one position down.
    let mut position = None;
    if create_from.is_some()
        && let Item::Table(parent) = item
        && !parent.is_dotted()
    {
        let anchor = max_position(parent).unwrap_or(0);
        shift_positions(doc.as_table_mut(), anchor);
        position = Some(anchor + 1);
    }

    // Second pass: walk again, creating what is missing.
    let mut current = doc.as_item_mut();
    for (i, k) in path.iter().enumerate() {
        let innermost = i + 1 == path.len();
        current = match current {
            Item::Table(table) => {
                if !table.contains_key(k.get()) {
                    let mut new = Table::new();
                    if table.is_dotted() {
                        new.set_dotted(true);
                    } else {
                        new.set_implicit(!innermost);
                        new.set_position(position);
                    }
                    table.insert_formatted(k, Item::Table(new));
                }
                table.get_mut(k.get()).expect("present or just inserted")
            }
            Item::Value(Value::InlineTable(table)) => {
                if !table.contains_key(k.get()) {
                    table.insert_formatted(k, Value::InlineTable(InlineTable::new()));
                }
                table
                    .get_key_value_mut(k.get())
                    .expect("present or just inserted")
                    .1
            }
            other => unreachable!("checked in the first pass: {}", describe(other)),
        };
    }
    Ok(current)
}

/// Insert a key that is not yet in `parent` (a table-like item).
fn insert_new(parent: &mut Item, key: &Key, value: Value) {
    if let Item::Table(table) = parent
        && table.is_implicit()
    {
        // The table gets a header now: print it just before its first sub-table.
        table.set_implicit(false);
        if table.position().is_none() {
            table.set_position(min_position(table));
        }
    }
    let mut value = value;
    if let Item::Value(Value::InlineTable(table)) = parent
        && let Some((_, last)) = table.iter_mut().last()
    {
        // `{ a = 1 }` plus b is `{ a = 1, b = 2 }`: the space before `}` moves along.
        let suffix = suffix_of(last).to_owned();
        last.decor_mut().set_suffix("");
        value.decor_mut().set_prefix(" ");
        value.decor_mut().set_suffix(suffix);
    }
    parent
        .as_table_like_mut()
        .expect("insert_new is given a table-like item")
        .insert(key.get(), Item::Value(value));
}

fn max_position(table: &Table) -> Option<isize> {
    let mut max = table.position();
    for_each_subtable(table, &mut |t| max = max.max(t.position()));
    max
}

fn min_position(table: &Table) -> Option<isize> {
    let mut min: Option<isize> = None;
    for_each_subtable(table, &mut |t| {
        if let Some(p) = t.position() {
            min = Some(min.map_or(p, |m| m.min(p)));
        }
    });
    min
}

fn for_each_subtable(table: &Table, f: &mut impl FnMut(&Table)) {
    for (_, item) in table {
        match item {
            Item::Table(t) => {
                f(t);
                for_each_subtable(t, f);
            }
            Item::ArrayOfTables(a) => {
                for t in a {
                    f(t);
                    for_each_subtable(t, f);
                }
            }
            _ => {}
        }
    }
}

/// Move every table positioned after `anchor` one place down.
fn shift_positions(table: &mut Table, anchor: isize) {
    if let Some(p) = table.position()
        && p > anchor
    {
        table.set_position(Some(p + 1));
    }
    for (_, item) in table.iter_mut() {
        match item {
            Item::Table(t) => shift_positions(t, anchor),
            Item::ArrayOfTables(a) => {
                for t in a.iter_mut() {
                    shift_positions(t, anchor);
                }
            }
            _ => {}
        }
    }
}

/// `packages.install` as an array, `None` when it (or `packages`) is missing.
fn install_array(doc: &mut DocumentMut) -> Result<Option<&mut Array>, EditError> {
    let packages = match doc.get_mut("packages") {
        None | Some(Item::None) => return Ok(None),
        Some(item) if item.is_table_like() => item,
        Some(item) => {
            return Err(EditError::ParentNotTable {
                key: INSTALL_KEY.to_owned(),
                parent: "packages".to_owned(),
                found: describe(item),
            });
        }
    };
    let table = packages.as_table_like_mut().expect("checked table-like");
    match table.get_mut("install") {
        None | Some(Item::None) => Ok(None),
        Some(Item::Value(Value::Array(array))) => Ok(Some(array)),
        Some(item) => Err(EditError::NotAnArray {
            key: INSTALL_KEY.to_owned(),
            found: describe(item),
        }),
    }
}

fn prefix_of(value: &Value) -> &str {
    value
        .decor()
        .prefix()
        .and_then(|p| p.as_str())
        .unwrap_or("")
}

fn suffix_of(value: &Value) -> &str {
    value
        .decor()
        .suffix()
        .and_then(|p| p.as_str())
        .unwrap_or("")
}

/// Append a string to an array in the layout of its existing elements.
fn append_formatted(array: &mut Array, element: &str) {
    let mut new = Value::from(element);
    let Some(last) = array.iter().last() else {
        let trailing = array.trailing().as_str().unwrap_or("");
        if trailing.contains('\n') {
            // `[\n]`: an empty multi-line array.
            new.decor_mut().set_prefix("\n    ");
            array.set_trailing_comma(true);
        }
        array.push_formatted(new);
        return;
    };
    let last_prefix = prefix_of(last);
    let last_suffix = suffix_of(last).to_owned();
    let prefix = match last_prefix.rfind('\n') {
        Some(i) => format!("\n{}", &last_prefix[i + 1..]),
        None if array.len() == 1 && last_prefix.is_empty() => " ".to_owned(),
        None => last_prefix.to_owned(),
    };
    let trailing = array.trailing().as_str().unwrap_or("").to_owned();
    if array.trailing_comma() {
        if let Some(i) = trailing.rfind('\n') {
            // A comment after the last element's comma stays on that element's line;
            // the new element goes on the next line.
            new.decor_mut()
                .set_prefix(format!("{}{prefix}", &trailing[..i]));
            array.set_trailing(format!("\n{}", &trailing[i + 1..]));
        } else {
            new.decor_mut().set_prefix(prefix);
        }
    } else {
        // Without a trailing comma the line break before `]` is the last element's
        // suffix: hand it to the new last element.
        new.decor_mut().set_prefix(prefix);
        new.decor_mut().set_suffix(last_suffix);
        let last_index = array.len() - 1;
        array
            .get_mut(last_index)
            .expect("the array is not empty")
            .decor_mut()
            .set_suffix("");
    }
    array.push_formatted(new);
}

/// Remove an element, keeping the layout of the others.
///
/// In a multi-line array a comment after an element's comma is stored as the first line
/// of the next element's prefix (or of the array's trailing text): it goes away with the
/// element it follows, and the comment of the element before the removed one stays.
fn remove_formatted(array: &mut Array, index: usize) {
    let removed = array.remove(index);
    let removed_prefix = prefix_of(&removed).to_owned();
    let removed_suffix = suffix_of(&removed).to_owned();
    // The same-line comment of the element before the removed one.
    let before_comment = removed_prefix.find('\n').map(|i| &removed_prefix[..i]);
    let replace_first_line = |text: &str, first: &str| -> Option<String> {
        text.find('\n').map(|i| format!("{first}{}", &text[i..]))
    };

    if let Some(next) = array.get_mut(index) {
        let next_prefix = prefix_of(next).to_owned();
        if let Some(p) = replace_first_line(&next_prefix, before_comment.unwrap_or("")) {
            next.decor_mut().set_prefix(p);
        } else if index == 0 && !removed_prefix.contains('\n') {
            // `["a", "b"]` minus "a" is `["b"]`, not `[ "b"]`.
            next.decor_mut().set_prefix(removed_prefix);
        }
    } else if array.trailing_comma() {
        let trailing = array.trailing().as_str().unwrap_or("").to_owned();
        if let Some(t) = replace_first_line(&trailing, before_comment.unwrap_or("")) {
            array.set_trailing(t);
        }
    } else if index > 0 && removed_suffix.contains('\n') {
        // The removed last element carried the line break before `]`.
        if let Some(comment) = before_comment.filter(|c| !c.trim().is_empty()) {
            array.set_trailing_comma(true);
            array.set_trailing(format!("{comment}{removed_suffix}"));
        } else {
            let last = array.get_mut(index - 1).expect("index > 0");
            if !suffix_of(last).contains('\n') {
                last.decor_mut().set_suffix(removed_suffix);
            }
        }
    }
    if array.is_empty()
        && array
            .trailing()
            .as_str()
            .is_some_and(|t| t.trim().is_empty())
    {
        array.set_trailing("");
        array.set_trailing_comma(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"# The machine.
[system]
hostname = "old" # shown at login
timezone = "UTC"

# Packages for everyone.
[packages]
install = [
    "busybox", # the basics
    "local#hello",
]

[services.sshd]
command = "sshd -D"
"#;

    #[test]
    fn replacing_a_value_keeps_comments_and_layout() {
        let out = set(CONFIG, "system.hostname", "new-host").unwrap();
        assert_eq!(
            out,
            CONFIG.replace(r#"hostname = "old""#, r#"hostname = "new-host""#)
        );
    }

    #[test]
    fn values_parse_as_toml_or_fall_back_to_strings() {
        let base = "[boot]\nkeep-generations = 10\n";
        assert_eq!(
            set(base, "boot.keep-generations", "3").unwrap(),
            "[boot]\nkeep-generations = 3\n"
        );
        assert_eq!(
            set(base, "boot.keep-generations", "many").unwrap(),
            "[boot]\nkeep-generations = \"many\"\n"
        );
        assert_eq!(
            set(base, "boot.kernel-params", r#"["quiet","splash"]"#).unwrap(),
            "[boot]\nkeep-generations = 10\nkernel-params = [\"quiet\",\"splash\"]\n"
        );
        assert_eq!(
            set(base, "boot.x", "{ a = 1 }").unwrap(),
            "[boot]\nkeep-generations = 10\nx = { a = 1 }\n"
        );
        assert_eq!(
            set(base, "boot.loader", "\"none\"").unwrap(),
            "[boot]\nkeep-generations = 10\nloader = \"none\"\n"
        );
    }

    #[test]
    fn a_new_key_goes_after_the_last_key_of_its_table() {
        let out = set(CONFIG, "system.locale", "de_DE.UTF-8").unwrap();
        assert_eq!(
            out,
            CONFIG.replace(
                "timezone = \"UTC\"\n",
                "timezone = \"UTC\"\nlocale = \"de_DE.UTF-8\"\n"
            )
        );
    }

    #[test]
    fn a_new_table_is_created_at_the_end() {
        let out = set(CONFIG, "boot.keep-generations", "5").unwrap();
        assert_eq!(out, format!("{CONFIG}\n[boot]\nkeep-generations = 5\n"));
    }

    #[test]
    fn a_header_comment_stays_on_top() {
        assert_eq!(
            set("# my machine\n", "system.hostname", "h").unwrap(),
            "# my machine\n\n[system]\nhostname = \"h\"\n"
        );
        assert_eq!(
            add_package("# my machine", "a").unwrap(),
            "# my machine\n\n[packages]\ninstall = [\"a\"]\n"
        );
    }

    #[test]
    fn nested_tables_get_one_header_after_their_siblings() {
        let text = "[services.sshd]\ncommand = \"sshd -D\"\n\n[system]\nhostname = \"h\"\n";
        let out = set(text, "services.web.restart", "true").unwrap();
        assert_eq!(
            out,
            "[services.sshd]\ncommand = \"sshd -D\"\n\n[services.web]\nrestart = true\n\n\
             [system]\nhostname = \"h\"\n"
        );
        let out = set(text, "services.sshd.restart", "true").unwrap();
        assert_eq!(
            out,
            "[services.sshd]\ncommand = \"sshd -D\"\nrestart = true\n\n[system]\nhostname = \"h\"\n"
        );
        // Two missing levels: only the innermost table gets a header.
        let out = set("", "security.firewall.enable", "true").unwrap();
        assert_eq!(out, "[security.firewall]\nenable = true\n");
    }

    #[test]
    fn quoted_key_segments() {
        let text = "[files.\"/etc/motd\"]\ntext = \"hi\\n\"\n";
        let out = set(text, r#"files."/etc/motd".mode"#, "0644").unwrap();
        // `0644` is not a TOML integer (leading zero), so it is kept as a string.
        assert_eq!(
            out,
            "[files.\"/etc/motd\"]\ntext = \"hi\\n\"\nmode = \"0644\"\n"
        );
        let out = set(text, r#"files."/etc/issue".text"#, "welcome").unwrap();
        assert_eq!(
            out,
            format!("{text}\n[files.\"/etc/issue\"]\ntext = \"welcome\"\n")
        );
        let out = set("", r"files.'/etc/hosts'.mode", "\"0600\"").unwrap();
        assert_eq!(out, "[files.\"/etc/hosts\"]\nmode = \"0600\"\n");
    }

    #[test]
    fn dotted_and_inline_tables_are_extended_in_their_own_style() {
        let text = "system.hostname = \"h\"\n";
        assert_eq!(
            set(text, "system.timezone", "UTC").unwrap(),
            "system.hostname = \"h\"\nsystem.timezone = \"UTC\"\n"
        );
        let text = "[users]\nalice = { uid = 1000 }\n";
        assert_eq!(
            set(text, "users.alice.shell", "/bin/sh").unwrap(),
            "[users]\nalice = { uid = 1000, shell = \"/bin/sh\" }\n"
        );
    }

    #[test]
    fn setting_below_a_value_is_an_error_naming_the_key() {
        let err = set(CONFIG, "system.hostname.x", "1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot set `system.hostname.x`: `system.hostname` is a string, not a table"
        );
        let err = set(CONFIG, "packages.install.x", "1").unwrap_err();
        assert_eq!(
            err,
            EditError::ParentNotTable {
                key: "packages.install.x".into(),
                parent: "packages.install".into(),
                found: "an array",
            }
        );
        let err = set(CONFIG, "system", "1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot set `system`: it is a table; set the keys inside it instead"
        );
    }

    #[test]
    fn key_paths_split_and_unquote() {
        assert_eq!(
            key_path(r#"files."/etc/motd".mode"#).unwrap(),
            ["files", "/etc/motd", "mode"]
        );
        assert_eq!(key_path("a.'b.c'").unwrap(), ["a", "b.c"]);
        assert!(key_path("a.").is_err());
    }

    #[test]
    fn invalid_keys_and_documents_are_errors() {
        assert!(matches!(
            set(CONFIG, "system..hostname", "x"),
            Err(EditError::InvalidKey { key, .. }) if key == "system..hostname"
        ));
        assert!(matches!(
            set(CONFIG, "", "x"),
            Err(EditError::InvalidKey { .. })
        ));
        let err = set("[system]\nhostname = \n", "system.hostname", "x").unwrap_err();
        let EditError::InvalidToml { line, column, .. } = err else {
            panic!("expected invalid TOML, got {err:?}");
        };
        assert_eq!((line, column), (2, 12));
    }

    #[test]
    fn add_package_appends_to_a_multi_line_array() {
        let out = add_package(CONFIG, "vim").unwrap();
        assert_eq!(
            out,
            CONFIG.replace(
                "    \"local#hello\",\n",
                "    \"local#hello\",\n    \"vim\",\n"
            )
        );
    }

    #[test]
    fn add_package_keeps_a_comment_after_the_last_element_in_place() {
        let text = "[packages]\ninstall = [\n  \"a\",\n  \"b\", # last\n]\n";
        assert_eq!(
            add_package(text, "c").unwrap(),
            "[packages]\ninstall = [\n  \"a\",\n  \"b\", # last\n  \"c\",\n]\n"
        );
        let text = "[packages]\ninstall = [\n  \"a\",\n  \"b\"\n]\n";
        assert_eq!(
            add_package(text, "c").unwrap(),
            "[packages]\ninstall = [\n  \"a\",\n  \"b\",\n  \"c\"\n]\n"
        );
    }

    #[test]
    fn add_package_to_one_line_and_missing_arrays() {
        let text = "[packages]\ninstall = [\"a\", \"b\"]\n";
        assert_eq!(
            add_package(text, "c").unwrap(),
            "[packages]\ninstall = [\"a\", \"b\", \"c\"]\n"
        );
        assert_eq!(
            add_package("[packages]\ninstall = [\"a\"]\n", "b").unwrap(),
            "[packages]\ninstall = [\"a\", \"b\"]\n"
        );
        assert_eq!(
            add_package("[packages]\ninstall = []\n", "a").unwrap(),
            "[packages]\ninstall = [\"a\"]\n"
        );
        // Comments at the end of the file stay at the end.
        assert_eq!(
            add_package("[packages]\n# none yet\n", "a").unwrap(),
            "[packages]\ninstall = [\"a\"]\n# none yet\n"
        );
        assert_eq!(
            add_package("[system]\nhostname = \"h\"\n", "a").unwrap(),
            "[system]\nhostname = \"h\"\n\n[packages]\ninstall = [\"a\"]\n"
        );
    }

    #[test]
    fn adding_a_listed_package_is_a_no_op() {
        assert_eq!(add_package(CONFIG, "busybox").unwrap(), CONFIG);
        assert_eq!(add_package(CONFIG, "local#hello").unwrap(), CONFIG);
    }

    #[test]
    fn add_package_rejects_a_non_array() {
        let err = add_package("[packages]\ninstall = \"a\"\n", "b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot edit `packages.install`: it is a string, not an array"
        );
    }

    #[test]
    fn remove_package_keeps_the_layout() {
        // A comment after an element's comma goes with the element, whichever it is.
        let out = remove_package(CONFIG, "local#hello").unwrap();
        assert_eq!(out, CONFIG.replace("    \"local#hello\",\n", ""));
        let out = remove_package(CONFIG, "busybox").unwrap();
        assert_eq!(out, CONFIG.replace("    \"busybox\", # the basics\n", ""));
        let text = "[packages]\ninstall = [\n  # the shell\n  \"bash\", # b\n  \"vim\", # v\n  \"git\"\n]\n";
        assert_eq!(
            remove_package(text, "vim").unwrap(),
            "[packages]\ninstall = [\n  # the shell\n  \"bash\", # b\n  \"git\"\n]\n"
        );
        assert_eq!(
            remove_package(text, "bash").unwrap(),
            "[packages]\ninstall = [\n  \"vim\", # v\n  \"git\"\n]\n"
        );
        assert_eq!(
            remove_package(text, "git").unwrap(),
            "[packages]\ninstall = [\n  # the shell\n  \"bash\", # b\n  \"vim\", # v\n]\n"
        );
        let text = "[packages]\ninstall = [\"a\", \"b\", \"c\"]\n";
        assert_eq!(
            remove_package(text, "a").unwrap(),
            "[packages]\ninstall = [\"b\", \"c\"]\n"
        );
        assert_eq!(
            remove_package(text, "c").unwrap(),
            "[packages]\ninstall = [\"a\", \"b\"]\n"
        );
        let text = "[packages]\ninstall = [\n  \"a\",\n  \"b\"\n]\n";
        assert_eq!(
            remove_package(text, "b").unwrap(),
            "[packages]\ninstall = [\n  \"a\"\n]\n"
        );
        let text = "[packages]\ninstall = [\n  \"a\",\n]\n";
        assert_eq!(
            remove_package(text, "a").unwrap(),
            "[packages]\ninstall = []\n"
        );
    }

    #[test]
    fn removing_an_unlisted_package_is_an_error() {
        let err = remove_package(CONFIG, "helo").unwrap_err();
        assert_eq!(err.to_string(), "`helo` is not in `packages.install`");
        assert!(remove_package("", "a").is_err());
    }
}
