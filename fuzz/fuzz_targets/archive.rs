//! Read arbitrary bytes as a canonical archive (`nexis_store::list_archive`): any input
//! gives a listing or an error, never a panic, and memory stays bounded by the input and
//! the limits (no length from the stream is allocated before it is checked).
//!
//! A listing must agree with the stream: its size is the input's, and its counts are
//! those of its entries. Crash inputs go to `nexis-store/tests/fixtures/fuzzed/`, where
//! a test replays them through listing and unpacking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nexis_store::{EntryKind, Limits, list_archive};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        // Small enough to be reached by small inputs, so the limit paths run too.
        max_depth: 64,
        max_entries: 4096,
        ..Limits::DEFAULT
    };
    let Ok(listing) = list_archive(&mut &data[..], &limits) else {
        return;
    };
    let info = listing.info;
    assert_eq!(info.archive_size, data.len() as u64);
    assert_eq!(info.entries, listing.entries.len() as u64);
    let files = listing
        .entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::File { .. }))
        .count();
    assert_eq!(info.files, files as u64);
    let bytes: u64 = listing
        .entries
        .iter()
        .map(|e| match e.kind {
            EntryKind::File { size, .. } => size,
            _ => 0,
        })
        .sum();
    assert_eq!(info.bytes, bytes);
    // The root comes first; every other path is relative, non-empty and unique.
    assert!(listing.entries[0].path.as_os_str().is_empty());
    let mut seen = std::collections::HashSet::new();
    for entry in &listing.entries[1..] {
        assert!(entry.path.is_relative() && !entry.path.as_os_str().is_empty());
        assert!(seen.insert(&entry.path), "{} twice", entry.path.display());
    }
});
