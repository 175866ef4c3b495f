//! The parallel scheduler: build a graph of derivations, dependencies first, up to
//! `max_jobs` at a time, the longest remaining chain first.
//!
//! [`build_graph`] works in three steps:
//!
//! 1. **plan**, in one call to the store's database: walk the graph from the wanted nodes
//!    along their edges, computing each node's output path once; a node whose output is
//!    valid already is reported as built (`already_valid`) and its dependencies are not
//!    visited (a valid output's references are valid, so its build inputs are not
//!    needed). The rest are the *needed* nodes. A cycle among them is an error
//!    ([`ScheduleError::Cycle`]) returned before anything runs.
//! 2. **prioritise**: a needed node's priority is 1 + the highest priority among the needed
//!    nodes that depend on it, i.e. the length of the longest chain of builds it holds up.
//! 3. **run**: workers (scoped threads, the calling thread being one of them) take the
//!    ready node with the highest priority (ties: the lowest node index) and call
//!    [`crate::build`], which holds the output's build lock, so a derivation wanted by two
//!    runs at once (threads or processes) is built by one and found valid by the other.
//!
//! A failure skips everything depending on it (transitively); without `keep_going` no
//! new build starts after it (running ones finish) and the untouched rest is reported as
//! `not_started`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use nexis_store::{DbError, Store};
use petgraph::Direction::{Incoming, Outgoing};
use petgraph::graph::DiGraph;
pub use petgraph::graph::NodeIndex;
use petgraph::visit::NodeFiltered;

use crate::builder::{self, BuildError, BuildSettings, Built};
use crate::derivation::Derivation;

/// A graph of derivations. Edge `a -> b`: `a` needs `b`'s output (`b` is built first).
pub type DrvGraph = DiGraph<Derivation, ()>;

/// How [`build_graph`] runs.
#[derive(Debug, Clone)]
pub struct ScheduleOptions {
    /// How many builds run at once (0 counts as 1).
    pub max_jobs: usize,
    /// Keep building what does not depend on a failed build.
    pub keep_going: bool,
    /// The settings every build gets.
    pub settings: BuildSettings,
}

impl Default for ScheduleOptions {
    /// As many jobs as cores, stop at the first failure, default settings.
    fn default() -> ScheduleOptions {
        ScheduleOptions {
            max_jobs: std::thread::available_parallelism().map_or(1, usize::from),
            keep_going: false,
            settings: BuildSettings::default(),
        }
    }
}

/// What happened to one node, for a progress display. Events come from the worker
/// threads, each node's in order (`Started` before `Finished` or `Failed`); a node's
/// `Finished` comes before any of its dependents' `Started`.
#[derive(Debug)]
pub enum BuildEvent<'a> {
    /// A build starts in the sandbox.
    Started {
        /// The node.
        node: NodeIndex,
        /// Its derivation.
        drv: &'a Derivation,
    },
    /// A node's output is valid: built now, or (`built.already_valid`, with no
    /// `Started` before it) found valid when the run was planned.
    Finished {
        /// The node.
        node: NodeIndex,
        /// Its output.
        built: &'a Built,
    },
    /// A build failed (or its output path could not be formed: no `Started` then).
    Failed {
        /// The node.
        node: NodeIndex,
        /// Why.
        error: &'a BuildError,
    },
    /// A node will not be built because a dependency failed.
    Skipped {
        /// The node.
        node: NodeIndex,
        /// The failed dependency (direct or not).
        because: NodeIndex,
    },
}

/// What a run did, per node of the wanted closure that it looked at.
#[derive(Debug, Default)]
pub struct BuildReport {
    /// Valid outputs: built by this run, or valid already (`already_valid`). Contains the
    /// wanted nodes when the run succeeded; the dependencies of nodes valid already are
    /// not visited and not listed.
    pub built: BTreeMap<NodeIndex, Built>,
    /// Failed builds, in the order they failed.
    pub failed: Vec<(NodeIndex, BuildError)>,
    /// Nodes not built because a dependency failed: node → the failed dependency.
    pub skipped: BTreeMap<NodeIndex, NodeIndex>,
    /// Nodes not started because the run stopped at a failure (without `keep_going`).
    pub not_started: BTreeSet<NodeIndex>,
}

impl BuildReport {
    /// Whether every wanted output is valid: nothing failed, was skipped or left.
    pub fn success(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty() && self.not_started.is_empty()
    }
}

/// The run could not be planned; nothing was built.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The derivations needing a build depend on each other in a circle (the planner
    /// never makes such a graph).
    #[error("the build graph has a cycle: {}", describe_cycle(.names))]
    Cycle {
        /// The nodes of the cycle, each needing the next, the last needing the first.
        nodes: Vec<NodeIndex>,
        /// Their `name-version`, in the same order.
        names: Vec<String>,
    },
    /// Checking which outputs are valid failed.
    #[error("checking which outputs of the build graph are valid")]
    Store {
        /// Why.
        #[source]
        source: DbError,
    },
}

fn describe_cycle(names: &[String]) -> String {
    let mut text = names.join(" -> ");
    if let Some(first) = names.first() {
        text.push_str(" -> ");
        text.push_str(first);
    }
    text
}

/// Build the closure of `wanted` in `graph` (following edges), dependencies first, up to
/// `opts.max_jobs` at once, reporting each step to `events`.
///
/// Outputs valid already cost one database lookup, all made in one call before anything
/// runs, and their dependencies are not looked at. Failures are in the report, not in
/// the `Err` case, which is for a run that cannot be planned (a cycle, the database).
///
/// # Errors
///
/// [`ScheduleError::Cycle`] if the nodes needing a build form a cycle;
/// [`ScheduleError::Store`] if the database cannot be read.
///
/// # Panics
///
/// If `wanted` holds an index that is not a node of `graph`, or if `events` panics.
pub fn build_graph(
    store: &Store,
    graph: &DrvGraph,
    wanted: &[NodeIndex],
    opts: &ScheduleOptions,
    events: &(dyn Fn(BuildEvent<'_>) + Sync),
) -> Result<BuildReport, ScheduleError> {
    let Walk {
        needed,
        report,
        path_failures,
    } = walk(store, graph, wanted)?;
    let priority = priorities(graph, &needed)?;
    for (&node, built) in &report.built {
        events(BuildEvent::Finished { node, built });
    }

    let mut remaining = vec![0_usize; graph.node_count()];
    let mut jobs = 0;
    for node in graph.node_indices().filter(|n| needed[n.index()]) {
        jobs += 1;
        remaining[node.index()] = graph
            .neighbors_directed(node, Outgoing)
            .filter(|d| needed[d.index()])
            .count();
    }
    let mut state = State {
        remaining,
        blocked: vec![false; graph.node_count()],
        ready: BinaryHeap::new(),
        running: 0,
        stop: false,
        report,
    };
    for (node, error) in path_failures {
        events(BuildEvent::Failed {
            node,
            error: &error,
        });
        for (skipped, because) in state.fail(graph, &needed, opts.keep_going, node, error) {
            events(BuildEvent::Skipped {
                node: skipped,
                because,
            });
        }
    }
    for node in graph.node_indices() {
        if needed[node.index()]
            && !state.blocked[node.index()]
            && state.remaining[node.index()] == 0
        {
            state.ready.push((priority[node.index()], Reverse(node)));
        }
    }

    let run = Run {
        store,
        graph,
        opts,
        events,
        needed: &needed,
        priority: &priority,
        state: Mutex::new(state),
        wake: Condvar::new(),
    };
    let workers = opts.max_jobs.clamp(1, jobs.max(1));
    std::thread::scope(|scope| {
        for _ in 1..workers {
            scope.spawn(|| run.work());
        }
        run.work();
    });

    let mut state = run
        .state
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    for node in graph.node_indices() {
        if needed[node.index()]
            && !state.blocked[node.index()]
            && !state.report.built.contains_key(&node)
        {
            state.report.not_started.insert(node);
        }
    }
    Ok(state.report)
}

/// The result of the planning walk.
struct Walk {
    /// Per node index: the node is in the closure and its output is not valid.
    needed: Vec<bool>,
    /// The outputs valid already.
    report: BuildReport,
    /// Needed nodes whose output path cannot be formed.
    path_failures: Vec<(NodeIndex, BuildError)>,
}

/// Walk the closure of `wanted`, in one database call, stopping at valid outputs.
fn walk(store: &Store, graph: &DrvGraph, wanted: &[NodeIndex]) -> Result<Walk, ScheduleError> {
    let mut seen = vec![false; graph.node_count()];
    let mut needed = vec![false; graph.node_count()];
    let mut report = BuildReport::default();
    let mut path_failures = Vec::new();
    store
        .with_db(|db| -> Result<(), DbError> {
            let mut stack = wanted.to_vec();
            while let Some(node) = stack.pop() {
                if std::mem::replace(&mut seen[node.index()], true) {
                    continue;
                }
                let drv = &graph[node];
                match drv.output_path() {
                    Ok(path) => {
                        if let Some(info) = db.query(&path)? {
                            let built = Built {
                                path,
                                already_valid: true,
                                references: info.references,
                            };
                            report.built.insert(node, built);
                            continue;
                        }
                    }
                    Err(source) => path_failures.push((
                        node,
                        BuildError::Path {
                            name: drv.name.clone(),
                            version: drv.version.clone(),
                            source,
                        },
                    )),
                }
                needed[node.index()] = true;
                stack.extend(graph.neighbors_directed(node, Outgoing));
            }
            Ok(())
        })
        .map_err(|source| ScheduleError::Store { source })?;
    Ok(Walk {
        needed,
        report,
        path_failures,
    })
}

/// Per node index, the length of the longest chain of needed builds from a node needing
/// it down to it (0 for nodes not needed).
fn priorities(graph: &DrvGraph, needed: &[bool]) -> Result<Vec<usize>, ScheduleError> {
    let filtered = NodeFiltered::from_fn(graph, |n: NodeIndex| needed[n.index()]);
    // Dependents come before their dependencies in this order.
    let order = petgraph::algo::toposort(&filtered, None).map_err(|cycle| {
        let nodes = find_cycle(graph, needed, cycle.node_id());
        let names = nodes
            .iter()
            .map(|&n| format!("{}-{}", graph[n].name, graph[n].version))
            .collect();
        ScheduleError::Cycle { nodes, names }
    })?;
    let mut priority = vec![0; graph.node_count()];
    for node in order {
        priority[node.index()] = 1 + graph
            .neighbors_directed(node, Incoming)
            .filter(|d| needed[d.index()])
            .map(|d| priority[d.index()])
            .max()
            .unwrap_or(0);
    }
    Ok(priority)
}

/// A cycle through `start` among the needed nodes: `start`, then each node needed by the
/// one before, the last one needing `start` (breadth first, so a shortest one).
fn find_cycle(graph: &DrvGraph, needed: &[bool], start: NodeIndex) -> Vec<NodeIndex> {
    let mut parent: Vec<Option<NodeIndex>> = vec![None; graph.node_count()];
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in graph.neighbors_directed(node, Outgoing) {
            if next == start {
                let mut cycle = vec![node];
                let mut at = node;
                while at != start {
                    at = parent[at.index()].expect("every visited node but the start has a parent");
                    cycle.push(at);
                }
                cycle.reverse();
                return cycle;
            }
            if needed[next.index()] && parent[next.index()].is_none() {
                parent[next.index()] = Some(node);
                queue.push_back(next);
            }
        }
    }
    // toposort named `start` as part of a cycle, so the search above returns.
    vec![start]
}

/// The scheduler's mutable state, behind [`Run::state`].
struct State {
    /// Per node index: needed dependencies not built yet.
    remaining: Vec<usize>,
    /// Per node index: failed or skipped.
    blocked: Vec<bool>,
    /// Nodes whose dependencies are all built: (priority, lowest index first).
    ready: BinaryHeap<(usize, Reverse<NodeIndex>)>,
    /// Builds running.
    running: usize,
    /// A build failed without `keep_going`: start nothing more.
    stop: bool,
    report: BuildReport,
}

impl State {
    /// Record the failure of `node`; skip its dependents. Returns the nodes skipped now,
    /// with the failed node.
    fn fail(
        &mut self,
        graph: &DrvGraph,
        needed: &[bool],
        keep_going: bool,
        node: NodeIndex,
        error: BuildError,
    ) -> Vec<(NodeIndex, NodeIndex)> {
        self.blocked[node.index()] = true;
        self.report.failed.push((node, error));
        if !keep_going {
            self.stop = true;
        }
        let mut skipped = Vec::new();
        let mut queue = vec![node];
        while let Some(at) = queue.pop() {
            for dependent in graph.neighbors_directed(at, Incoming) {
                let i = dependent.index();
                if needed[i] && !self.blocked[i] {
                    self.blocked[i] = true;
                    self.report.skipped.insert(dependent, node);
                    skipped.push((dependent, node));
                    queue.push(dependent);
                }
            }
        }
        skipped
    }
}

/// What the workers share.
struct Run<'a> {
    store: &'a Store,
    graph: &'a DrvGraph,
    opts: &'a ScheduleOptions,
    events: &'a (dyn Fn(BuildEvent<'_>) + Sync),
    needed: &'a [bool],
    priority: &'a [usize],
    state: Mutex<State>,
    /// Signalled when a build ends (something may be ready, or everything done).
    wake: Condvar,
}

impl Run<'_> {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One worker: take the best ready node and build it, until nothing is left to do.
    fn work(&self) {
        while let Some(node) = self.next() {
            // Should `events` (or a build) panic, the other workers must not wait for
            // this build forever: the scope then ends and passes the panic on.
            let on_panic = StopOnPanic(self);
            let drv = &self.graph[node];
            (self.events)(BuildEvent::Started { node, drv });
            let result = builder::build(self.store, drv, &self.opts.settings);
            let mut skipped = Vec::new();
            match result {
                Ok(built) => {
                    (self.events)(BuildEvent::Finished {
                        node,
                        built: &built,
                    });
                    let mut state = self.lock();
                    for dependent in self.graph.neighbors_directed(node, Incoming) {
                        let i = dependent.index();
                        if !self.needed[i] {
                            continue;
                        }
                        state.remaining[i] -= 1;
                        if state.remaining[i] == 0 && !state.blocked[i] {
                            state.ready.push((self.priority[i], Reverse(dependent)));
                        }
                    }
                    state.report.built.insert(node, built);
                    state.running -= 1;
                }
                Err(error) => {
                    (self.events)(BuildEvent::Failed {
                        node,
                        error: &error,
                    });
                    let mut state = self.lock();
                    skipped =
                        state.fail(self.graph, self.needed, self.opts.keep_going, node, error);
                    state.running -= 1;
                }
            }
            std::mem::forget(on_panic);
            self.wake.notify_all();
            for (node, because) in skipped {
                (self.events)(BuildEvent::Skipped { node, because });
            }
        }
    }

    /// The next node to build, waiting while builds run and none is ready; `None` when
    /// the run is over (or stopped) for this worker.
    fn next(&self) -> Option<NodeIndex> {
        let mut state = self.lock();
        loop {
            if state.stop {
                return None;
            }
            if let Some((_, Reverse(node))) = state.ready.pop() {
                state.running += 1;
                return Some(node);
            }
            if state.running == 0 {
                return None;
            }
            state = self
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Stops the run when dropped, which happens only when a worker unwinds mid-build.
struct StopOnPanic<'a, 'b>(&'a Run<'b>);

impl Drop for StopOnPanic<'_, '_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.stop = true;
        state.running = state.running.saturating_sub(1);
        drop(state);
        self.0.wake.notify_all();
    }
}
