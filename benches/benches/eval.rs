//! Evaluate + resolve the target-size configuration (50 modules, 1,000 packages,
//! 200 services, 50 users). Target: under 50 ms on the 2-core reference machine.

use criterion::{Criterion, criterion_group, criterion_main};
use nexis_benches::{ROOT, Shape, large_system};

fn eval(c: &mut Criterion) {
    let loader = large_system(Shape::TARGET);
    let mut group = c.benchmark_group("config");
    group.sample_size(30);
    group.bench_function("evaluate-50-modules-1000-packages", |b| {
        b.iter(|| {
            nexis_config::evaluate(&loader, ROOT.as_ref()).expect("the generated system is valid")
        });
    });
    group.finish();
}

criterion_group!(benches, eval);
criterion_main!(benches);
