//! What a test finds on disk: the names a directory holds, and the inputs the fuzzer
//! kept under `tests/fixtures/`.

#![allow(dead_code, reason = "each test binary uses part of this")]

use std::fs;
use std::path::Path;

/// The names of the files and directories directly in `dir`, sorted.
pub(crate) fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Replay the inputs the fuzzer kept in `tests/fixtures/<dir>/` (those that are UTF-8;
/// the directory's README is not one): `check` asserts what must hold of each and says
/// whether it was accepted. Returns how many were accepted and how many refused.
pub(crate) fn replay_fuzzed(dir: &str, check: impl Fn(&Path, &str) -> bool) -> (usize, usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let (mut accepted, mut refused) = (0, 0);
    for name in names(&dir) {
        let file = dir.join(name);
        if file.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let data = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        if check(&file, text) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    (accepted, refused)
}
