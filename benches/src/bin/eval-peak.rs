//! Evaluate the target-size configuration once and report time and memory.
//!
//! Prints the evaluation time (best of 5) and the peak heap bytes allocated during one
//! evaluation, measured by a counting allocator; also the process's peak RSS.

#![allow(unsafe_code, clippy::print_stdout)]
// Megabyte figures for humans: precision loss above 2^52 bytes does not matter.
#![allow(clippy::cast_precision_loss)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use nexis_benches::{ROOT, Shape, large_system};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to the system allocator unchanged; the counters are
// plain atomics and do not affect the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                - layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn main() {
    let loader = large_system(Shape::TARGET);
    let mut best = f64::MAX;
    let mut packages = 0;
    for _ in 0..5 {
        let base = CURRENT.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let start = Instant::now();
        let eval = nexis_config::evaluate(&loader, ROOT.as_ref()).expect("valid");
        best = best.min(start.elapsed().as_secs_f64());
        packages = eval.packages.len();
        drop(eval);
        let peak = PEAK.load(Ordering::Relaxed) - base;
        println!("evaluation heap peak: {:.1} MiB", peak as f64 / 1_048_576.0);
    }
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    println!("packages resolved: {packages}");
    println!("evaluate + resolve, best of 5: {:.1} ms", best * 1000.0);
    println!("process peak RSS (including the in-memory input files): {rss}");
}
