//! Hashing and archiving trees: `hash_path` and `write_archive` (to `io::sink`) over
//! 2,000 files of 16 KiB (parallel across files) and over one 256 MiB file (blake3's
//! multi-threaded mode), reported in bytes of file content per second.
//!
//! The data is generated into a temporary directory, so it is read from the page cache.

use std::fs;
use std::io;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const FILES: usize = 2_000;
const FILE_SIZE: usize = 16 << 10;
const BIG_SIZE: usize = 256 << 20;

/// Incompressible bytes, quickly.
fn noise(buf: &mut [u8], seed: u64) {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for word in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
    }
}

/// 2,000 files of 16 KiB in 40 directories of 50.
fn many_files(root: &Path) {
    let mut buf = vec![0; FILE_SIZE];
    for i in 0..FILES {
        let dir = root.join(format!("dir{:02}", i / 50));
        fs::create_dir_all(&dir).expect("create a directory");
        noise(&mut buf, i as u64);
        fs::write(dir.join(format!("file{i:04}")), &buf).expect("write a file");
    }
}

fn big_file(path: &Path) {
    let mut buf = vec![0; BIG_SIZE];
    noise(&mut buf, 7);
    fs::write(path, &buf).expect("write the big file");
}

fn store(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let tree = tmp.path().join("tree");
    many_files(&tree);
    let big = tmp.path().join("big");
    big_file(&big);

    let cases = [
        ("2000x16KiB", &tree, (FILES * FILE_SIZE) as u64),
        ("1x256MiB", &big, BIG_SIZE as u64),
    ];
    for (name, path, bytes) in cases {
        let mut group = c.benchmark_group(format!("store/{name}"));
        group.throughput(Throughput::Bytes(bytes));
        group.sample_size(20);
        group.bench_function("hash_path", |b| {
            b.iter(|| nexis_store::hash_path(path).expect("the tree hashes"));
        });
        group.bench_function("write_archive", |b| {
            b.iter(|| {
                nexis_store::write_archive(path, &mut io::sink()).expect("the tree archives")
            });
        });
        group.finish();
    }
}

criterion_group!(benches, store);
criterion_main!(benches);
