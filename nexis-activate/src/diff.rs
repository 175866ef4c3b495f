//! What switching from one generation to another changes, from their manifests.

use serde::Serialize;

use crate::manifest::Manifest;

/// The plan of a switch: what differs between two manifests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SystemDiff {
    /// Packages only the new generation has: `id version`.
    pub packages_added: Vec<String>,
    /// Packages only the old one has.
    pub packages_removed: Vec<String>,
    /// Packages in both with another version or output: `id old → new`.
    pub packages_changed: Vec<String>,
    /// `/etc` files only the new generation has.
    pub etc_added: Vec<String>,
    /// `/etc` files only the old one has.
    pub etc_removed: Vec<String>,
    /// `/etc` files in both whose content, kind, mode or owner differ.
    pub etc_changed: Vec<String>,
}

impl SystemDiff {
    /// Compare `old` (none: an empty system) with `new`.
    pub fn between(old: Option<&Manifest>, new: &Manifest) -> SystemDiff {
        let mut d = SystemDiff::default();
        let empty = Manifest {
            version: new.version,
            hostname: String::new(),
            packages: std::collections::BTreeMap::default(),
            etc: std::collections::BTreeMap::default(),
        };
        let old = old.unwrap_or(&empty);
        for (id, p) in &new.packages {
            match old.packages.get(id) {
                None => d.packages_added.push(format!("{id} {}", p.version)),
                Some(o) if o.version != p.version => d
                    .packages_changed
                    .push(format!("{id} {} → {}", o.version, p.version)),
                Some(o) if o.path != p.path => d
                    .packages_changed
                    .push(format!("{id} {} (rebuilt)", p.version)),
                Some(_) => {}
            }
        }
        for (id, p) in &old.packages {
            if !new.packages.contains_key(id) {
                d.packages_removed.push(format!("{id} {}", p.version));
            }
        }
        for (rel, e) in &new.etc {
            match old.etc.get(rel) {
                None => d.etc_added.push(rel.clone()),
                Some(o) if o != e => d.etc_changed.push(rel.clone()),
                Some(_) => {}
            }
        }
        for rel in old.etc.keys() {
            if !new.etc.contains_key(rel) {
                d.etc_removed.push(rel.clone());
            }
        }
        d
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        *self == SystemDiff::default()
    }

    /// The plan as lines a person reads (`+ pkg`, `- pkg`, `~ pkg`; `/etc/…` likewise).
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut section = |title: &str, items: &[(&str, &Vec<String>)]| {
            if items.iter().all(|(_, v)| v.is_empty()) {
                return;
            }
            out.push(format!("{title}:"));
            for (sign, v) in items {
                for item in *v {
                    out.push(format!("  {sign} {item}"));
                }
            }
        };
        section(
            "packages",
            &[
                ("+", &self.packages_added),
                ("-", &self.packages_removed),
                ("~", &self.packages_changed),
            ],
        );
        let etc = |v: &Vec<String>| v.iter().map(|r| format!("/etc/{r}")).collect::<Vec<_>>();
        let (a, r, c) = (
            etc(&self.etc_added),
            etc(&self.etc_removed),
            etc(&self.etc_changed),
        );
        section("/etc", &[("+", &a), ("-", &r), ("~", &c)]);
        if out.is_empty() {
            out.push("no changes".to_owned());
        }
        out
    }
}
