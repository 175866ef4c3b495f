//! The build sandbox's cost: `/bin/true` run in a fresh sandbox with `/usr`, `/bin`,
//! `/lib`, `/lib64` bound (new user, mount, pid, network, ipc, uts and cgroup namespaces,
//! the tmpfs root, /dev, /proc, seccomp), one output and a build directory.
//!
//! `sandbox/run` is the whole `run` call (clone, set-up, `/bin/true`, tear-down, wait);
//! `sandbox/setup` is the set-up alone, from `clone` to the builder's `execve`, as the
//! sandbox reports it in `Outcome::setup_time` (target: under 5 ms).

use std::fs::File;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use nexis_build::{SandboxSpec, host_tool_paths, run};

fn spec(tmp: &std::path::Path) -> SandboxSpec {
    let build = tmp.join("build");
    let out = tmp.join("out");
    std::fs::create_dir_all(&build).expect("create the build directory");
    std::fs::create_dir_all(&out).expect("create the output directory");
    let log = File::create(tmp.join("log")).expect("create the log");
    let mut spec = SandboxSpec::new("/bin/true", build, log);
    spec.env = vec![("PATH".into(), "/usr/bin:/bin".into())];
    spec.outputs = vec![(
        out,
        "/nexis/store/0000000000000000000000000000000a-out".into(),
    )];
    spec.extra_paths = host_tool_paths();
    spec
}

fn sandbox(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let spec = spec(tmp.path());
    let mut group = c.benchmark_group("sandbox");
    group.sample_size(200);
    group.bench_function("run", |b| {
        b.iter(|| {
            let outcome = run(black_box(&spec)).expect("the sandbox runs");
            assert!(outcome.success());
        });
    });
    group.bench_function("setup", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let outcome = run(&spec).expect("the sandbox runs");
                total += outcome.setup_time;
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, sandbox);
criterion_main!(benches);
