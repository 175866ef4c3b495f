//! The scheduler, with real builds in the real sandbox on a temporary store: each
//! derivation is a `/bin/sh` script writing `$out/f`, reading its dependencies' `f`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Barrier, Mutex, mpsc};
use std::time::Duration;

use nexis_build::{
    BuildError, BuildEvent, BuildReport, BuildSettings, Derivation, DrvGraph, NodeIndex,
    ScheduleError, ScheduleOptions, build_graph, read_log,
};
use nexis_store::{Store, StorePath};

fn store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(tmp.path()).expect("open the store");
    (tmp, store)
}

/// A graph under construction: nodes are scripts, edges their dependencies.
#[derive(Default)]
struct Dag {
    graph: DrvGraph,
}

impl Dag {
    /// Add a derivation running `script`, needing `deps`; `$dN` in the script is the
    /// output path of `deps[N]`.
    fn add(&mut self, name: &str, script: &str, deps: &[NodeIndex]) -> NodeIndex {
        let mut script = script.to_owned();
        let mut dep_paths = BTreeSet::new();
        // Highest first, so `$d1` is not replaced inside `$d10`.
        for (i, &dep) in deps.iter().enumerate().rev() {
            let path = self.path(dep);
            script = script.replace(&format!("$d{i}"), &path.to_string());
            dep_paths.insert(path);
        }
        let drv = Derivation {
            name: name.to_owned(),
            version: "1".to_owned(),
            system: "x86_64-linux".to_owned(),
            builder: "/bin/sh".to_owned(),
            args: vec!["-ec".to_owned(), script],
            env: BTreeMap::new(),
            sources: BTreeSet::new(),
            deps: dep_paths,
            runtime_deps: BTreeSet::new(),
            extra_sandbox_paths: ["/usr", "/bin", "/lib", "/lib64"]
                .into_iter()
                .filter(|p| Path::new(p).symlink_metadata().is_ok())
                .map(str::to_owned)
                .collect(),
            fixed_output: None,
        };
        let node = self.graph.add_node(drv);
        for &dep in deps {
            self.graph.add_edge(node, dep, ());
        }
        node
    }

    fn path(&self, node: NodeIndex) -> StorePath {
        self.graph[node].output_path().expect("a valid output path")
    }

    fn all(&self) -> Vec<NodeIndex> {
        self.graph.node_indices().collect()
    }
}

fn opts(max_jobs: usize, keep_going: bool) -> ScheduleOptions {
    ScheduleOptions {
        max_jobs,
        keep_going,
        settings: BuildSettings {
            cores: 1,
            timeout: Some(Duration::from_mins(1)),
        },
    }
}

/// An event, owned, to compare after the run.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Started(NodeIndex),
    Finished {
        node: NodeIndex,
        already_valid: bool,
    },
    Failed(NodeIndex),
    Skipped {
        node: NodeIndex,
        because: NodeIndex,
    },
}

/// Run `build_graph`, recording the events.
fn run(
    store: &Store,
    dag: &Dag,
    wanted: &[NodeIndex],
    opts: &ScheduleOptions,
) -> (BuildReport, Vec<Ev>) {
    let events = Mutex::new(Vec::new());
    let record = |e: BuildEvent<'_>| {
        let ev = match e {
            BuildEvent::Started { node, .. } => Ev::Started(node),
            BuildEvent::Finished { node, built } => Ev::Finished {
                node,
                already_valid: built.already_valid,
            },
            BuildEvent::Failed { node, .. } => Ev::Failed(node),
            BuildEvent::Skipped { node, because } => Ev::Skipped { node, because },
        };
        events.lock().unwrap().push(ev);
    };
    let report = build_graph(store, &dag.graph, wanted, opts, &record).expect("no cycle");
    (report, events.into_inner().unwrap())
}

/// Assert the run succeeded, showing the failures if not.
fn assert_success(report: &BuildReport) {
    let errors: Vec<String> = report.failed.iter().map(|(_, e)| e.to_string()).collect();
    assert!(report.success(), "{report:?}\n{}", errors.join("\n"));
}

fn started(events: &[Ev]) -> Vec<NodeIndex> {
    events
        .iter()
        .filter_map(|e| match e {
            Ev::Started(n) => Some(*n),
            _ => None,
        })
        .collect()
}

/// The `f` file of a node's output.
fn output(store: &Store, report: &BuildReport, node: NodeIndex) -> String {
    let path = &report.built[&node].path;
    std::fs::read_to_string(store.physical(path).join("f")).expect("read the output's f")
}

#[test]
fn diamond_builds_each_node_once_and_data_flows_through() {
    let (_tmp, store) = store();
    let mut dag = Dag::default();
    let d = dag.add("d", "echo d > $out/f", &[]);
    let b = dag.add("b", "cat $d0/f > $out/f; echo b >> $out/f", &[d]);
    let c = dag.add("c", "cat $d0/f > $out/f; echo c >> $out/f", &[d]);
    let a = dag.add("a", "cat $d0/f $d1/f > $out/f; echo a >> $out/f", &[b, c]);

    let (report, events) = run(&store, &dag, &[a], &opts(2, false));
    assert_success(&report);
    assert_eq!(report.built.len(), 4);
    assert_eq!(output(&store, &report, a), "d\nb\nd\nc\na\n");
    for node in [a, b, c, d] {
        let built = &report.built[&node];
        assert!(
            !built.already_valid,
            "{node:?} was valid before the first run"
        );
        assert_eq!(built.path, dag.path(node));
        assert!(read_log(&store, &built.path).unwrap().is_some());
    }
    // References are scanned: a names b and c in its script, but its output holds only text.
    assert!(report.built[&a].references.is_empty());
    let mut starts = started(&events);
    assert_eq!(starts[0], d, "d is the only node ready at first");
    assert_eq!(starts[3], a);
    starts.sort();
    assert_eq!(starts, vec![d, b, c, a], "each node started once");

    // Again: the wanted output is valid, found by one lookup; nothing below it is looked at.
    let (again, events) = run(&store, &dag, &[a], &opts(2, false));
    assert_success(&again);
    assert_eq!(again.built.keys().copied().collect::<Vec<_>>(), vec![a]);
    assert!(again.built[&a].already_valid);
    assert_eq!(again.built[&a].path, report.built[&a].path);
    assert_eq!(
        events,
        vec![Ev::Finished {
            node: a,
            already_valid: true
        }]
    );

    // Asking for every node: all valid, none started.
    let (all, events) = run(&store, &dag, &dag.all(), &opts(2, false));
    assert_success(&all);
    assert_eq!(all.built.len(), 4);
    assert!(all.built.values().all(|b| b.already_valid));
    assert!(started(&events).is_empty());
}

#[test]
fn only_the_closure_of_wanted_is_built() {
    let (_tmp, store) = store();
    let mut dag = Dag::default();
    let leaf = dag.add("leaf", "echo leaf > $out/f", &[]);
    let top = dag.add("top", "cat $d0/f > $out/f", &[leaf]);
    let other = dag.add("other", "echo other > $out/f", &[]);
    let above = dag.add("above", "cat $d0/f > $out/f", &[top]);

    let (report, events) = run(&store, &dag, &[top], &opts(2, false));
    assert_success(&report);
    assert_eq!(
        report.built.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([leaf, top])
    );
    assert!(!started(&events).contains(&other));
    assert!(!started(&events).contains(&above));
    let valid = |n: NodeIndex| store.with_db(|db| db.is_valid(&dag.path(n)).unwrap());
    assert!(!valid(other));
    assert!(!valid(above));
}

/// `0\n1\n…` up to `n - 1`.
fn numbers(n: usize) -> String {
    (0..n).map(|i| i.to_string() + "\n").collect()
}

fn chain_and_fan(max_jobs: usize) {
    let (_tmp, store) = store();
    let mut dag = Dag::default();
    let mut below = dag.add("chain0", "echo 0 > $out/f", &[]);
    for i in 1..50 {
        let script = format!("cat $d0/f > $out/f; echo {i} >> $out/f");
        below = dag.add(&format!("chain{i}"), &script, &[below]);
    }
    let chain_top = below;
    let leaves: Vec<NodeIndex> = (0..100)
        .map(|i| dag.add(&format!("leaf{i}"), &format!("echo {i} > $out/f"), &[]))
        .collect();
    let cats = (0..100)
        .map(|i| format!(" $d{i}/f"))
        .collect::<Vec<_>>()
        .concat();
    let root = dag.add("root", &format!("cat{cats} > $out/f"), &leaves);

    let (report, events) = run(&store, &dag, &[chain_top, root], &opts(max_jobs, false));
    assert_success(&report);
    assert_eq!(report.built.len(), 151);
    assert_eq!(started(&events).len(), 151);
    assert_eq!(output(&store, &report, chain_top), numbers(50));
    assert_eq!(output(&store, &report, root), numbers(100));
}

#[test]
fn deep_chain_and_wide_fan_with_two_jobs() {
    chain_and_fan(2);
}

#[test]
fn deep_chain_and_wide_fan_with_four_jobs() {
    chain_and_fan(4);
}

/// Two independent builds of one second each: with two jobs both start before either
/// finishes; with one job they take turns.
#[test]
fn independent_builds_run_in_parallel_up_to_max_jobs() {
    for (max_jobs, overlapped) in [(2, true), (1, false)] {
        let (_tmp, store) = store();
        let mut dag = Dag::default();
        let x = dag.add("x", "sleep 1; echo x > $out/f", &[]);
        let y = dag.add("y", "sleep 1; echo y > $out/f", &[]);
        let (report, events) = run(&store, &dag, &[x, y], &opts(max_jobs, false));
        assert_success(&report);
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e {
                Ev::Started(_) => "start",
                _ => "end",
            })
            .collect();
        let expected = if overlapped {
            ["start", "start", "end", "end"]
        } else {
            ["start", "end", "start", "end"]
        };
        assert_eq!(kinds, expected, "max_jobs {max_jobs}: {events:?}");
    }
}

#[test]
fn the_longest_chain_starts_first() {
    let (_tmp, store) = store();
    let mut dag = Dag::default();
    // Leaves first, so that they have the lowest indices (the tie-break).
    let leaves: Vec<NodeIndex> = (0..10)
        .map(|i| dag.add(&format!("leaf{i}"), "echo l > $out/f", &[]))
        .collect();
    let mut chain = vec![dag.add("chain0", "echo 0 > $out/f", &[])];
    for i in 1..5 {
        let below = *chain.last().unwrap();
        chain.push(dag.add(&format!("chain{i}"), "cat $d0/f > $out/f", &[below]));
    }
    let (report, events) = run(&store, &dag, &dag.all(), &opts(1, false));
    assert_success(&report);
    let order = started(&events);
    assert_eq!(order.len(), 15);
    // Priorities: chain0 5, chain1 4, chain2 3, chain3 2; then every leaf and chain4 1,
    // taken lowest index first.
    let mut expected = chain[..4].to_vec();
    expected.extend(&leaves);
    expected.push(chain[4]);
    assert_eq!(order, expected);
}

/// `fail` fails, `g` needs it, `h` needs `g`; `i` and `j` (needing `i`) are independent.
fn failing_dag() -> (Dag, [NodeIndex; 5]) {
    let mut dag = Dag::default();
    let fail = dag.add("fail", "echo about to fail; exit 3", &[]);
    let g = dag.add("g", "cat $d0/f > $out/f", &[fail]);
    let h = dag.add("h", "cat $d0/f > $out/f", &[g]);
    let i = dag.add("i", "echo i > $out/f", &[]);
    let j = dag.add("j", "cat $d0/f > $out/f", &[i]);
    (dag, [fail, g, h, i, j])
}

#[test]
fn keep_going_builds_what_does_not_depend_on_a_failure() {
    let (_tmp, store) = store();
    let (dag, [fail, g, h, i, j]) = failing_dag();
    let (report, events) = run(&store, &dag, &[h, j], &opts(1, true));
    assert!(!report.success());
    assert_eq!(report.failed.len(), 1);
    let (node, error) = &report.failed[0];
    assert_eq!(*node, fail);
    match error {
        BuildError::Failed { status, tail, .. } => {
            assert_eq!(status, "exit code 3");
            assert!(tail.contains("about to fail"), "{tail}");
        }
        other => panic!("expected a failed build, got {other}"),
    }
    assert_eq!(report.skipped, BTreeMap::from([(g, fail), (h, fail)]));
    assert_eq!(
        report.built.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([i, j])
    );
    assert!(report.not_started.is_empty());
    assert_eq!(output(&store, &report, j), "i\n");
    // The failing chain is the longest, so it went first; the rest still ran after it.
    assert_eq!(started(&events), vec![fail, i, j]);
    assert!(events.contains(&Ev::Skipped {
        node: h,
        because: fail
    }));
}

#[test]
fn without_keep_going_nothing_starts_after_a_failure() {
    let (_tmp, store) = store();
    let (dag, [fail, g, h, i, j]) = failing_dag();
    let (report, events) = run(&store, &dag, &[h, j], &opts(1, false));
    assert!(!report.success());
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, fail);
    assert_eq!(report.skipped, BTreeMap::from([(g, fail), (h, fail)]));
    assert!(report.built.is_empty());
    assert_eq!(report.not_started, BTreeSet::from([i, j]));
    assert_eq!(started(&events), vec![fail]);
    let failed_at = events.iter().position(|e| *e == Ev::Failed(fail)).unwrap();
    assert!(
        !events[failed_at..]
            .iter()
            .any(|e| matches!(e, Ev::Started(_))),
        "{events:?}"
    );
}

/// A build running when another fails still finishes (and counts as built).
#[test]
fn running_builds_finish_after_a_failure() {
    let (_tmp, store) = store();
    let mut dag = Dag::default();
    let slow = dag.add("slow", "sleep 1; echo slow > $out/f", &[]);
    let fail = dag.add("fail", "exit 1", &[]);
    let later = dag.add("later", "echo later > $out/f", &[]);
    let top = dag.add("top", "cat $d0/f > $out/f", &[slow]);
    let (report, _) = run(&store, &dag, &[top, fail, later], &opts(2, false));
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, fail);
    assert!(report.built.contains_key(&slow), "{report:?}");
    assert!(!report.built[&slow].already_valid);
    // `top` was not ready when the failure stopped the run, `later` had lower priority.
    assert_eq!(report.not_started, BTreeSet::from([later, top]));
}

#[test]
fn an_invalid_name_fails_its_node_before_anything_runs() {
    let (_tmp, store) = store();
    let mut dag = Dag::default();
    let ok = dag.add("ok", "echo ok > $out/f", &[]);
    let bad = dag.graph.add_node(Derivation {
        name: "bad/name".to_owned(),
        ..dag.graph[ok].clone()
    });
    let above = dag.graph.add_node(Derivation {
        name: "above".to_owned(),
        ..dag.graph[ok].clone()
    });
    dag.graph.add_edge(above, bad, ());
    let (report, events) = run(&store, &dag, &[above, ok], &opts(1, true));
    assert!(matches!(report.failed[..], [(n, BuildError::Path { .. })] if n == bad));
    assert_eq!(report.skipped, BTreeMap::from([(above, bad)]));
    assert!(report.built.contains_key(&ok));
    assert_eq!(started(&events), vec![ok]);
}

#[test]
fn two_runs_at_once_build_each_derivation_once() {
    let (tmp, first) = store();
    // A second handle on the same root: its own database connection and lock files, as
    // another process would have.
    let second = Store::open(tmp.path()).expect("open the store again");
    let mut dag = Dag::default();
    let mut shared = vec![dag.add("s0", "sleep 0.2; date +%s%N > $out/f", &[])];
    for i in 1..6 {
        let below = *shared.last().unwrap();
        let script = "sleep 0.1; cat $d0/f > $out/f; date +%s%N >> $out/f";
        shared.push(dag.add(&format!("s{i}"), script, &[below]));
    }
    let top = *shared.last().unwrap();
    let wide: Vec<NodeIndex> = (0..4)
        .map(|i| dag.add(&format!("w{i}"), "date +%s%N > $out/f", &[]))
        .collect();
    let mine = dag.add("mine", "cat $d0/f > $out/f", &[top]);
    let yours = dag.add("yours", "cat $d0/f > $out/f", &[top]);

    let barrier = Barrier::new(2);
    let go = |store: &Store, own: NodeIndex| {
        barrier.wait();
        let mut wanted = wide.clone();
        wanted.push(own);
        run(store, &dag, &wanted, &opts(2, false)).0
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| go(&first, mine));
        let b = s.spawn(|| go(&second, yours));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_success(&a);
    assert_success(&b);
    for node in shared.iter().chain(&wide) {
        let fresh = [&a, &b]
            .iter()
            .filter(|r| r.built.get(node).is_some_and(|x| !x.already_valid))
            .count();
        assert_eq!(fresh, 1, "{node:?} was built by exactly one run");
        // A run that found it valid at planning time does not list what is below it.
        if let (Some(x), Some(y)) = (a.built.get(node), b.built.get(node)) {
            assert_eq!(x.path, y.path);
        }
    }
    assert_eq!(output(&first, &a, mine), output(&second, &b, yours));
    let valid = first.with_db(|db| db.all_valid().unwrap());
    assert_eq!(valid.len(), dag.graph.node_count());
    assert_eq!(
        valid.iter().collect::<BTreeSet<_>>().len(),
        valid.len(),
        "each output registered once"
    );
}

/// Run `build_graph` on another thread; fail rather than hang.
fn run_with_deadline(dag: Dag, wanted: Vec<NodeIndex>) -> Result<BuildReport, ScheduleError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (_tmp, store) = store();
        let result = build_graph(&store, &dag.graph, &wanted, &opts(2, true), &|_| {});
        let _ = tx.send(result);
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("build_graph returned within 30 s")
}

#[test]
fn a_cycle_is_an_error_not_a_hang() {
    let mut dag = Dag::default();
    let leaf = dag.add("leaf", "echo > $out/f", &[]);
    let a = dag.add("a", "echo > $out/f", &[leaf]);
    let b = dag.add("b", "echo > $out/f", &[a]);
    let c = dag.add("c", "echo > $out/f", &[b]);
    dag.graph.add_edge(a, c, ());
    let top = dag.add("top", "echo > $out/f", &[c]);
    let err = run_with_deadline(dag, vec![top]).expect_err("a cycle");
    let ScheduleError::Cycle { nodes, names } = &err else {
        panic!("expected a cycle, got {err}");
    };
    let mut sorted = nodes.clone();
    sorted.sort();
    assert_eq!(sorted, vec![a, b, c]);
    assert_eq!(names.len(), 3);
    let message = err.to_string();
    assert!(
        message.starts_with("the build graph has a cycle: ") && message.contains("a-1 -> "),
        "{message}"
    );

    let mut dag = Dag::default();
    let selfish = dag.add("selfish", "echo > $out/f", &[]);
    dag.graph.add_edge(selfish, selfish, ());
    let err = run_with_deadline(dag, vec![selfish]).expect_err("a cycle");
    assert_eq!(
        err.to_string(),
        "the build graph has a cycle: selfish-1 -> selfish-1"
    );
}

#[test]
fn a_panicking_event_handler_ends_the_run_instead_of_hanging_it() {
    let mut dag = Dag::default();
    let slow = dag.add("slow", "sleep 0.5; echo > $out/f", &[]);
    let boom = dag.add("boom", "echo > $out/f", &[]);
    let _above = dag.add("above", "echo > $out/f", &[slow, boom]);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (_tmp, store) = store();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            build_graph(&store, &dag.graph, &dag.all(), &opts(2, true), &|e| {
                if let BuildEvent::Started { node, .. } = e {
                    assert_ne!(node, boom, "the handler panics");
                }
            })
        }));
        let _ = tx.send(result.is_err());
    });
    let panicked = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("build_graph returned within 30 s");
    assert!(panicked, "the handler's panic reaches the caller");
}
