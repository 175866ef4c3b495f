//! The scheduler over 1,000 trivial sandboxed derivations: 20 layers of 50, each node
//! needing 2 or 3 nodes of the layer below, each build writing one file.
//!
//! `build/graph-1000` builds all of them on a fresh store, `max_jobs` = the machine's
//! cores (the time per build is the reported time / 1,000; criterion's throughput shows
//! builds per second). `build/noop-1000` runs the same graph again, everything valid:
//! one database lookup per node, no worker started. `build/noop-top-50` asks for the top
//! layer only, whose outputs are valid: the walk stops there (50 lookups).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nexis_build::{Derivation, DrvGraph, NodeIndex, ScheduleOptions, build_graph};
use nexis_store::Store;

const LAYERS: usize = 20;
const WIDTH: usize = 50;

/// The layered graph; also the nodes of its top layer.
fn layered() -> (DrvGraph, Vec<NodeIndex>) {
    let extra: BTreeSet<String> = ["/usr", "/bin", "/lib", "/lib64"]
        .into_iter()
        .filter(|p| Path::new(p).symlink_metadata().is_ok())
        .map(str::to_owned)
        .collect();
    let mut graph = DrvGraph::new();
    let mut below: Vec<NodeIndex> = Vec::new();
    for layer in 0..LAYERS {
        let mut this = Vec::with_capacity(WIDTH);
        for i in 0..WIDTH {
            let picks: BTreeSet<usize> = if layer == 0 {
                BTreeSet::new()
            } else if i % 2 == 0 {
                [i, (i + 1) % WIDTH, (i + 17) % WIDTH].into()
            } else {
                [i, (i + 1) % WIDTH].into()
            };
            let deps: Vec<NodeIndex> = picks.iter().map(|&j| below[j]).collect();
            let drv = Derivation {
                name: format!("n{layer}-{i}"),
                version: "1".to_owned(),
                system: "x86_64-linux".to_owned(),
                builder: "/bin/sh".to_owned(),
                args: vec!["-ec".to_owned(), format!("echo {layer}-{i} > $out/f")],
                env: BTreeMap::new(),
                sources: BTreeSet::new(),
                deps: deps
                    .iter()
                    .map(|&d| graph[d].output_path().expect("a valid name"))
                    .collect(),
                runtime_deps: BTreeSet::new(),
                extra_sandbox_paths: extra.clone(),
                fixed_output: None,
            };
            let node = graph.add_node(drv);
            for d in deps {
                graph.add_edge(node, d, ());
            }
            this.push(node);
        }
        below = this;
    }
    (graph, below)
}

fn options() -> ScheduleOptions {
    ScheduleOptions {
        keep_going: false,
        ..ScheduleOptions::default()
    }
}

fn build(c: &mut Criterion) {
    let (graph, top) = layered();
    let all: Vec<NodeIndex> = graph.node_indices().collect();
    let opts = options();
    let mut group = c.benchmark_group("build");

    group.sample_size(10);
    group.sampling_mode(criterion::SamplingMode::Flat);
    group.measurement_time(Duration::from_mins(1));
    group.throughput(Throughput::Elements(all.len() as u64));
    group.bench_function("graph-1000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let tmp = tempfile::tempdir().expect("a temporary directory");
                let store = Store::open(tmp.path()).expect("open the store");
                let start = Instant::now();
                let report = build_graph(&store, &graph, &top, &opts, &|_| {}).expect("no cycle");
                total += start.elapsed();
                assert!(report.success(), "{:?}", report.failed);
                assert_eq!(report.built.len(), all.len());
            }
            total
        });
    });

    let tmp = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(tmp.path()).expect("open the store");
    let report = build_graph(&store, &graph, &top, &opts, &|_| {}).expect("no cycle");
    assert!(report.success(), "{:?}", report.failed);
    group.sampling_mode(criterion::SamplingMode::Auto);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("noop-1000", |b| {
        b.iter(|| {
            let report = build_graph(&store, &graph, &all, &opts, &|_| {}).expect("no cycle");
            assert_eq!(report.built.len(), all.len());
            assert!(report.built.values().all(|b| b.already_valid));
        });
    });
    group.throughput(Throughput::Elements(top.len() as u64));
    group.bench_function("noop-top-50", |b| {
        b.iter(|| {
            let report = build_graph(&store, &graph, &top, &opts, &|_| {}).expect("no cycle");
            assert_eq!(report.built.len(), top.len());
        });
    });
    group.finish();
}

criterion_group!(benches, build);
criterion_main!(benches);
