//! Evaluate arbitrary configurations: any input must give an evaluation or errors, and
//! rendering either must not panic.
//!
//! The input is a bundle as in `nexis-config/tests/cases`: text before the first
//! `#- file: PATH` line is `nexis.toml`, and each such line starts another file. A 0xFF
//! byte also starts another file (`a.toml`, then `pkgs/packages/a.toml`), so that raw
//! mutations can reach imports and recipes too. Crash inputs replay through the case
//! harness (`tests/fixtures/fuzzed/`) once written in the `#- file:` form.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nexis_config::{MemoryLoader, evaluate};

/// At most this many files per input, to keep runs short.
const MAX_FILES: usize = 16;

/// Names for the pieces after each 0xFF byte.
const PIECES: &[&str] = &["nexis.toml", "a.toml", "pkgs/packages/a.toml"];

fn loader(data: &[u8]) -> MemoryLoader {
    let mut loader = MemoryLoader::new();
    for (i, piece) in data.split(|&b| b == 0xFF).take(PIECES.len()).enumerate() {
        let text = String::from_utf8_lossy(piece);
        let mut path = PIECES[i].to_owned();
        let mut body = String::new();
        let mut files = 0;
        for line in text.lines() {
            if let Some(p) = line.strip_prefix("#- file:")
                && files < MAX_FILES
            {
                files += 1;
                loader.insert(path.clone(), std::mem::take(&mut body));
                path = p.trim().to_owned();
            } else {
                body.push_str(line);
                body.push('\n');
            }
        }
        loader.insert(path, body);
    }
    loader
}

fuzz_target!(|data: &[u8]| {
    let loader = loader(data);
    match evaluate(&loader, Path::new("nexis.toml")) {
        Ok(eval) => {
            let json = eval.to_json();
            let _ = serde_json::to_string(&json).expect("the evaluation serialises");
        }
        Err(err) => {
            let plain = err.render(false);
            let color = err.render(true);
            assert!(
                !err.diagnostics().is_empty(),
                "an error without diagnostics"
            );
            assert!(plain.len() <= color.len());
        }
    }
});
