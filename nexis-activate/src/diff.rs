//! What switching from one generation to another changes, from their manifests.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::manifest::{FileEntry, Manifest};
use crate::services::plan;
use crate::users::BUILTIN_GROUP_IDS;

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
    /// The closure size in bytes of the old and the new generation, when the caller
    /// measured them ([`SystemDiff::with_closure_sizes`]).
    pub closure_size: Option<(u64, u64)>,
    /// `/etc` files only the new generation has.
    pub etc_added: Vec<String>,
    /// `/etc` files only the old one has.
    pub etc_removed: Vec<String>,
    /// `/etc` files in both whose content, kind, mode or owner differ.
    pub etc_changed: Vec<String>,
    /// Other declared files and home files (absolute paths) only the new one has.
    pub files_added: Vec<String>,
    /// … only the old one has.
    pub files_removed: Vec<String>,
    /// … in both, changed.
    pub files_changed: Vec<String>,
    /// Users only the new generation has: `name (uid N)`.
    pub users_added: Vec<String>,
    /// Users only the old one has (their homes are kept).
    pub users_removed: Vec<String>,
    /// Users whose groups, shell, home or description change.
    pub users_changed: Vec<String>,
    /// Groups only the new generation has: `name (gid N)`.
    pub groups_added: Vec<String>,
    /// Groups only the old one has.
    pub groups_removed: Vec<String>,
    /// Services stopped (removed or disabled), in order.
    pub services_stop: Vec<String>,
    /// Services restarted (their definition changed), in order.
    pub services_restart: Vec<String>,
    /// Services started (new or enabled), in order.
    pub services_start: Vec<String>,
    /// Boot: the kernel or its command line changes (`old → new` lines).
    pub boot: Vec<String>,
}

fn compare_files(
    old: &BTreeMap<String, FileEntry>,
    new: &BTreeMap<String, FileEntry>,
    shown: impl Fn(&str) -> String,
    added: &mut Vec<String>,
    removed: &mut Vec<String>,
    changed: &mut Vec<String>,
) {
    for (rel, e) in new {
        match old.get(rel) {
            None => added.push(shown(rel)),
            Some(o) if o != e => changed.push(shown(rel)),
            Some(_) => {}
        }
    }
    for rel in old.keys() {
        if !new.contains_key(rel) {
            removed.push(shown(rel));
        }
    }
}

impl SystemDiff {
    /// Compare `old` (none: an empty system) with `new`.
    pub fn between(old: Option<&Manifest>, new: &Manifest) -> SystemDiff {
        let mut d = SystemDiff::default();
        let empty = Manifest::default();
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
        compare_files(
            &old.etc,
            &new.etc,
            str::to_owned,
            &mut d.etc_added,
            &mut d.etc_removed,
            &mut d.etc_changed,
        );
        compare_files(
            &old.files,
            &new.files,
            str::to_owned,
            &mut d.files_added,
            &mut d.files_removed,
            &mut d.files_changed,
        );
        let none = BTreeMap::new();
        let mut homes: Vec<&String> = new.home.keys().chain(old.home.keys()).collect();
        homes.sort();
        homes.dedup();
        for user in homes {
            let home = new
                .users
                .get(user)
                .or_else(|| old.users.get(user))
                .map_or_else(|| format!("~{user}"), |u| u.home.clone());
            compare_files(
                old.home.get(user).unwrap_or(&none),
                new.home.get(user).unwrap_or(&none),
                |rel| format!("{home}/{rel}"),
                &mut d.files_added,
                &mut d.files_removed,
                &mut d.files_changed,
            );
        }
        // Built-in accounts are on every system: not worth a line.
        let builtin_user = |name: &str| name == "root" || name == "nobody";
        let builtin_group = |name: &str| BUILTIN_GROUP_IDS.iter().any(|(n, _)| *n == name);
        for (name, u) in new.users.iter().filter(|(n, _)| !builtin_user(n)) {
            match old.users.get(name) {
                None => d.users_added.push(format!("{name} (uid {})", u.uid)),
                Some(o) if o != u => {
                    let mut what = Vec::new();
                    if o.groups != u.groups {
                        let groups: Vec<&str> = u.groups.iter().map(String::as_str).collect();
                        what.push(format!("groups {}", groups.join(",")));
                    }
                    if o.shell != u.shell {
                        what.push(format!("shell {}", u.shell));
                    }
                    if o.home != u.home {
                        what.push(format!("home {}", u.home));
                    }
                    if o.uid != u.uid || o.gid != u.gid {
                        what.push(format!("uid {} gid {}", u.uid, u.gid));
                    }
                    if o.description != u.description {
                        what.push("description".to_owned());
                    }
                    d.users_changed.push(format!("{name}: {}", what.join(", ")));
                }
                Some(_) => {}
            }
        }
        for (name, u) in old.users.iter().filter(|(n, _)| !builtin_user(n)) {
            if !new.users.contains_key(name) {
                d.users_removed
                    .push(format!("{name} (uid {}; {} is kept)", u.uid, u.home));
            }
        }
        for (name, g) in new.groups.iter().filter(|(n, _)| !builtin_group(n)) {
            if !old.groups.contains_key(name) {
                d.groups_added.push(format!("{name} (gid {})", g.gid));
            }
        }
        for (name, g) in old.groups.iter().filter(|(n, _)| !builtin_group(n)) {
            if !new.groups.contains_key(name) {
                d.groups_removed.push(format!("{name} (gid {})", g.gid));
            }
        }
        let services = plan(&old.services, &new.services);
        // `boot` is on every system and changes whenever the set of enabled services
        // does: the other lines say that already.
        let shown = |list: Vec<String>| -> Vec<String> {
            list.into_iter().filter(|s| s != "boot").collect()
        };
        d.services_stop = shown(services.stop);
        d.services_restart = shown(services.restart);
        d.services_start = shown(services.start);
        if old.boot != new.boot {
            let show = |b: Option<&crate::manifest::BootFiles>| {
                b.map_or_else(
                    || "no kernel".to_owned(),
                    |b| format!("{} {}", b.kernel, b.params.join(" ")),
                )
            };
            d.boot.push(format!(
                "{} → {}",
                show(old.boot.as_ref()),
                show(new.boot.as_ref())
            ));
        }
        d
    }

    /// Record the closure sizes of both generations (shown as the change).
    #[must_use]
    pub fn with_closure_sizes(mut self, old: u64, new: u64) -> SystemDiff {
        self.closure_size = Some((old, new));
        self
    }

    /// Whether nothing changes (the closure size aside).
    pub fn is_empty(&self) -> bool {
        SystemDiff {
            closure_size: None,
            ..self.clone()
        } == SystemDiff::default()
    }

    /// The plan as lines a person reads (`+ pkg`, `- pkg`, `~ pkg`; `/etc/…` likewise;
    /// services as `stop`, `restart`, `start`). The closure size is left to the caller,
    /// which knows how it shows sizes.
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
        section(
            "files",
            &[
                ("+", &self.files_added),
                ("-", &self.files_removed),
                ("~", &self.files_changed),
            ],
        );
        section(
            "users",
            &[
                ("+", &self.users_added),
                ("-", &self.users_removed),
                ("~", &self.users_changed),
            ],
        );
        section(
            "groups",
            &[("+", &self.groups_added), ("-", &self.groups_removed)],
        );
        section(
            "services",
            &[
                ("stop", &self.services_stop),
                ("restart", &self.services_restart),
                ("start", &self.services_start),
            ],
        );
        section("boot", &[("~", &self.boot)]);
        if out.is_empty() {
            out.push("no changes".to_owned());
        }
        out
    }
}
