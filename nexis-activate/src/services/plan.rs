//! What a switch does to services, from the old and the new generation's entries. Pure:
//! no supervisor, no files.
//!
//! A service is **wanted** when it is enabled, or something wanted depends on it (both
//! supervisors start dependencies themselves, so a disabled service that an enabled one
//! needs keeps running). Then:
//!
//! - **stop**: services only the old generation has, and those it wanted that the new
//!   one does not;
//! - **restart**: services in both whose definition changed, wanted by the new
//!   generation and either enabled or running before;
//! - **start**: enabled services that are new, or were disabled before;
//! - **reload**: services in both whose definition changed and that are not restarted
//!   (their next start reads the new one);
//! - **remove**: services only the old generation has, forgotten last;
//! - **unchanged**: the rest of the new generation.
//!
//! Stop and remove lists put dependents first; the others dependencies first. Order
//! follows every dependency, through services that are in no list, with ties broken by
//! name; a dependency cycle (which validation refuses) does not hang: the first name
//! still waiting goes next.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::ServiceEntry;

/// The service actions of a switch, each list in the order it is carried out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServicePlan {
    /// Removed or no longer wanted, dependents first.
    pub stop: Vec<String>,
    /// Changed, not restarted: the new definition is read, dependencies first.
    pub reload: Vec<String>,
    /// Changed and running or enabled, dependencies first.
    pub restart: Vec<String>,
    /// New and enabled, or newly enabled, dependencies first.
    pub start: Vec<String>,
    /// Only in the old generation: forgotten by the supervisor, dependents first.
    pub remove: Vec<String>,
    /// In the new generation, with nothing to do.
    pub unchanged: Vec<String>,
}

impl ServicePlan {
    /// Whether the switch changes nothing about services.
    pub fn is_empty(&self) -> bool {
        self.stop.is_empty()
            && self.reload.is_empty()
            && self.restart.is_empty()
            && self.start.is_empty()
            && self.remove.is_empty()
    }
}

/// The plan of switching services from `old` to `new` (an empty `old` for the first
/// activation).
pub fn plan(
    old: &BTreeMap<String, ServiceEntry>,
    new: &BTreeMap<String, ServiceEntry>,
) -> ServicePlan {
    let ran = wanted(old);
    let wants = wanted(new);
    let changed = |name: &str, n: &ServiceEntry| old.get(name).is_some_and(|o| o.hash != n.hash);

    let mut stop = BTreeSet::new();
    let mut remove = BTreeSet::new();
    for name in old.keys() {
        if !new.contains_key(name) {
            stop.insert(name.as_str());
            remove.insert(name.as_str());
        } else if ran.contains(name.as_str()) && !wants.contains(name.as_str()) {
            stop.insert(name.as_str());
        }
    }
    let (mut restart, mut start, mut reload) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for (name, n) in new {
        let name = name.as_str();
        if changed(name, n) && wants.contains(name) && (n.enable || ran.contains(name)) {
            restart.insert(name);
        } else if changed(name, n) {
            reload.insert(name);
        } else if n.enable && old.get(name).is_none_or(|o| !o.enable) {
            start.insert(name);
        }
    }
    let unchanged = new
        .keys()
        .map(String::as_str)
        .filter(|n| {
            ![&stop, &reload, &restart, &start]
                .iter()
                .any(|s| s.contains(n))
        })
        .map(str::to_owned)
        .collect();

    let old_order = order(old);
    let new_order = order(new);
    let pick = |order: &[String], set: &BTreeSet<&str>, reverse: bool| -> Vec<String> {
        let mut v: Vec<String> = order
            .iter()
            .filter(|n| set.contains(n.as_str()))
            .cloned()
            .collect();
        if reverse {
            v.reverse();
        }
        v
    };
    // Stops are of services as the old generation knew them (the new may lack them).
    ServicePlan {
        stop: pick(&old_order, &stop, true),
        reload: pick(&new_order, &reload, false),
        restart: pick(&new_order, &restart, false),
        start: pick(&new_order, &start, false),
        remove: pick(&old_order, &remove, true),
        unchanged,
    }
}

/// Enabled services and everything they depend on, transitively.
fn wanted(entries: &BTreeMap<String, ServiceEntry>) -> BTreeSet<&str> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = entries
        .iter()
        .filter(|(_, e)| e.enable)
        .map(|(n, _)| n.as_str())
        .collect();
    while let Some(n) = todo.pop() {
        if !seen.insert(n) {
            continue;
        }
        if let Some(e) = entries.get(n) {
            todo.extend(
                e.depends
                    .iter()
                    .map(String::as_str)
                    .filter(|d| entries.contains_key(*d)),
            );
        }
    }
    seen
}

/// Every service, dependencies before dependents, ties by name; in a cycle, the first
/// name still waiting goes next.
fn order(entries: &BTreeMap<String, ServiceEntry>) -> Vec<String> {
    let mut waiting: BTreeMap<&str, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, e) in entries {
        let deps: BTreeSet<&str> = e
            .depends
            .iter()
            .map(String::as_str)
            .filter(|d| entries.contains_key(*d) && *d != name)
            .collect();
        waiting.insert(name, deps.len());
        for d in deps {
            dependents.entry(d).or_default().push(name);
        }
    }
    let mut ready: BTreeSet<&str> = waiting
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(k, _)| *k)
        .collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::with_capacity(entries.len());
    while out.len() < entries.len() {
        let next = match ready.pop_first() {
            Some(n) => n,
            // A cycle: nothing is ready, so the first name not yet placed goes.
            None => *waiting
                .keys()
                .find(|n| !done.contains(*n))
                .expect("fewer placed than there are services"),
        };
        if !done.insert(next) {
            continue;
        }
        out.push(next.to_owned());
        for d in dependents.get(next).into_iter().flatten() {
            let n = waiting.get_mut(d).expect("every dependent is a service");
            *n = n.saturating_sub(1);
            if *n == 0 && !done.contains(d) {
                ready.insert(d);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(hash: &str, enable: bool, depends: &[&str]) -> ServiceEntry {
        ServiceEntry {
            hash: hash.into(),
            enable,
            depends: depends.iter().map(|s| (*s).to_owned()).collect(),
            hard: depends.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn services(list: &[(&str, ServiceEntry)]) -> BTreeMap<String, ServiceEntry> {
        list.iter()
            .map(|(n, e)| ((*n).to_owned(), e.clone()))
            .collect()
    }

    #[test]
    fn diamond_starts_dependencies_first_and_stops_dependents_first() {
        // d needs b and c, which both need a.
        let g = services(&[
            ("d", e("1", true, &["b", "c"])),
            ("c", e("1", true, &["a"])),
            ("b", e("1", true, &["a"])),
            ("a", e("1", true, &[])),
        ]);
        let p = plan(&BTreeMap::new(), &g);
        assert_eq!(p.start, ["a", "b", "c", "d"]);
        assert!(p.stop.is_empty() && p.restart.is_empty() && p.unchanged.is_empty());
        let p = plan(&g, &BTreeMap::new());
        assert_eq!(p.stop, ["d", "c", "b", "a"]);
        assert_eq!(p.remove, ["d", "c", "b", "a"]);
        let p = plan(&g, &g);
        assert!(p.is_empty());
        assert_eq!(p.unchanged, ["a", "b", "c", "d"]);
    }

    #[test]
    fn order_follows_dependencies_through_services_in_no_list() {
        // z needs m, which needs a; only a and z change.
        let old = services(&[
            ("a", e("1", true, &[])),
            ("m", e("1", true, &["a"])),
            ("z", e("1", true, &["m"])),
        ]);
        let new = services(&[
            ("a", e("2", true, &[])),
            ("m", e("1", true, &["a"])),
            ("z", e("2", true, &["m"])),
        ]);
        assert_eq!(plan(&old, &new).restart, ["a", "z"]);
        // Names alone would put "a" last here.
        let new = services(&[
            ("a", e("2", true, &["m"])),
            ("m", e("1", true, &["z"])),
            ("z", e("2", true, &[])),
        ]);
        assert_eq!(plan(&old, &new).restart, ["z", "a"]);
    }

    #[test]
    fn a_cycle_does_not_hang_and_falls_back_to_names() {
        let g = services(&[
            ("y", e("1", true, &["x"])),
            ("x", e("1", true, &["y"])),
            ("z", e("1", true, &["x"])),
            ("w", e("1", true, &["w"])),
        ]);
        let p = plan(&BTreeMap::new(), &g);
        assert_eq!(p.start, ["w", "x", "y", "z"]);
        assert_eq!(plan(&g, &BTreeMap::new()).stop, ["z", "y", "x", "w"]);
    }

    #[test]
    fn changes_enables_and_removals() {
        let old = services(&[
            ("same", e("1", true, &[])),
            ("changed", e("1", true, &["same"])),
            ("gone", e("1", true, &[])),
            ("disabled-now", e("1", true, &[])),
            ("enabled-now", e("1", false, &[])),
            ("off-changed", e("1", false, &[])),
            ("milestone", e("1", true, &[])),
        ]);
        let new = services(&[
            ("same", e("1", true, &[])),
            ("changed", e("2", true, &["same"])),
            ("disabled-now", e("1", false, &[])),
            ("enabled-now", e("1", true, &[])),
            ("off-changed", e("2", false, &[])),
            ("milestone", e("2", true, &[])),
            ("new", e("1", true, &["changed"])),
            ("new-off", e("1", false, &[])),
        ]);
        let p = plan(&old, &new);
        assert_eq!(p.stop, ["gone", "disabled-now"]);
        assert_eq!(p.remove, ["gone"]);
        // Dependencies first, then names: `changed` waits for `same`.
        assert_eq!(p.restart, ["milestone", "changed"]);
        assert_eq!(p.reload, ["off-changed"]);
        assert_eq!(p.start, ["enabled-now", "new"]);
        assert_eq!(p.unchanged, ["new-off", "same"]);
    }

    #[test]
    fn a_disabled_service_an_enabled_one_needs_is_not_stopped() {
        let old = services(&[("db", e("1", true, &[])), ("web", e("1", true, &["db"]))]);
        let new = services(&[("db", e("1", false, &[])), ("web", e("1", true, &["db"]))]);
        let p = plan(&old, &new);
        assert!(p.stop.is_empty(), "{p:?}");
        // Nothing needs it any more: stopped.
        let newer = services(&[("db", e("1", false, &[])), ("web", e("2", true, &[]))]);
        let p = plan(&new, &newer);
        assert_eq!(p.stop, ["db"]);
        assert_eq!(p.restart, ["web"]);
        // Changed while disabled and needed, so running: restarted.
        let changed = services(&[("db", e("2", false, &[])), ("web", e("1", true, &["db"]))]);
        assert_eq!(plan(&new, &changed).restart, ["db"]);
    }
}
