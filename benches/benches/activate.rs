//! Switching between two built generations of a system with 1,000 `/etc` files and 50
//! services, on a temporary root, in the library (`Target::activate`).
//!
//! The two generations differ in their host name (so `/etc/hostname`, `/etc/hosts` and
//! the files that mention it change) and share their services (not restarted). Each
//! iteration switches to the other generation: the journal, the boot entries (none: no
//! kernel), `/etc/static`, every `/etc` file checked and the changed ones written, the
//! services installed, `/run/current-system`, the profile. No supervisor runs for the
//! root, so services are installed, not started (starting them is the supervisor's
//! time, not ours).

use std::collections::BTreeMap;

use criterion::{Criterion, criterion_group, criterion_main};
use nexis_activate::{Ids, Mode, Profiles, SystemInputs, Target, build_toplevel};
use nexis_config::{FileSpec, Service, Spanned, SystemSpec};
use nexis_store::Store;

const FILES: usize = 1000;
const SERVICES: usize = 50;

fn spec(hostname: &str) -> SystemSpec {
    let mut spec = SystemSpec::default();
    spec.system.hostname = Spanned::unspanned(hostname.to_owned());
    for i in 0..FILES {
        let path = format!("/etc/bench/{}/file-{i}.conf", i % 20);
        // One file in ten says the host name: it changes with it.
        let text = if i % 10 == 0 {
            format!("host = {hostname}\nindex = {i}\n")
        } else {
            format!("index = {i}\n")
        };
        spec.files.insert(
            Spanned::unspanned(path),
            FileSpec {
                text: Some(Spanned::unspanned(text)),
                ..FileSpec::default()
            },
        );
    }
    for i in 0..SERVICES {
        let mut s = Service {
            command: Some(Spanned::unspanned(format!("/bin/sleep {}", 1000 + i))),
            ..Service::default()
        };
        if i > 0 {
            s.depends_on
                .insert(Spanned::unspanned(format!("svc-{}", i - 1)));
        }
        spec.services
            .insert(Spanned::unspanned(format!("svc-{i}")), s);
    }
    spec
}

fn switch(c: &mut Criterion) {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let refs = BTreeMap::new();
    let security = BTreeMap::new();
    let mut ids = Ids::default();
    let mut generations = Vec::new();
    for host in ["bench-a", "bench-b"] {
        let spec = spec(host);
        let top = build_toplevel(
            &store,
            &SystemInputs {
                spec: &spec,
                packages: &[],
                references: &refs,
                config_revision: None,
                kernel: None,
                security: &security,
            },
            &mut ids,
        )
        .unwrap();
        assert!(top.manifest.etc.len() >= FILES);
        generations.push(Profiles::new(&store).add(&top.path).unwrap().number);
    }
    let target = Target::new(&store);
    target.activate(generations[0], Mode::Switch).unwrap();
    let tops: Vec<_> = generations
        .iter()
        .map(|&n| Profiles::new(&store).get(n).unwrap().toplevel)
        .collect();
    let mut next = 1;
    c.bench_function("activate/switch-1000-etc-50-services", |b| {
        b.iter(|| {
            target.activate(generations[next], Mode::Switch).unwrap();
            next = 1 - next;
        });
    });
    // The switches did switch: the running system is the last one switched to.
    assert_eq!(
        target.current_system().unwrap().as_ref(),
        Some(&tops[1 - next])
    );
    c.bench_function("activate/noop-1000-etc-50-services", |b| {
        b.iter(|| {
            let r = target
                .activate(generations[1 - next], Mode::Switch)
                .unwrap();
            assert!(r.written.is_empty());
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = switch
}
criterion_main!(benches);
