//! Data-driven language tests.
//!
//! Each `tests/cases/NAME.toml` is a bundle of files: the text before the first
//! `#- file: PATH` line is `nexis.toml`, and each such line starts another file (imports,
//! recipes under `pkgs/packages/`, `source` files). Lines `#! show: KEY, KEY` before any
//! TOML pick parts of the result to compare (dotted paths into the JSON).
//!
//! `NAME.expected` holds what evaluation gives: `ok` and the JSON, or the rendered
//! errors. Run with `NEXIS_BLESS=1` to write the expected files anew, then review the diff.
//!
//! `tests/fixtures/fuzzed/*` are inputs the fuzzer found; each is read as a bundle (as
//! the `eval` fuzz target does) and must give a result or errors, never a panic.

use std::fmt::Write as _;
use std::path::Path;

use nexis_config::{MemoryLoader, evaluate};

/// Split a bundle into its files and `show` paths.
fn bundle(text: &str) -> (MemoryLoader, Vec<String>) {
    let mut loader = MemoryLoader::new();
    let mut show = Vec::new();
    let mut path = "nexis.toml".to_owned();
    let mut body = String::new();
    for line in text.lines() {
        if let Some(p) = line.strip_prefix("#- file:") {
            loader.insert(path.clone(), std::mem::take(&mut body));
            p.trim().clone_into(&mut path);
        } else {
            if let Some(keys) = line.strip_prefix("#! show:") {
                show.extend(keys.split(',').map(|k| k.trim().to_owned()));
            }
            body.push_str(line);
            body.push('\n');
        }
    }
    loader.insert(path, body);
    (loader, show)
}

/// Evaluate a bundle and describe the outcome as text.
fn run(text: &str) -> String {
    let (loader, show) = bundle(text);
    match evaluate(&loader, Path::new("nexis.toml")) {
        Ok(eval) => {
            let json = eval.to_json();
            let mut out = String::from("ok\n");
            if show.is_empty() {
                out.push_str(&serde_json::to_string_pretty(&json).unwrap());
                out.push('\n');
            }
            for key in show {
                let mut v = &json;
                for seg in key.split('.') {
                    v = match v {
                        serde_json::Value::Array(items) => {
                            // Arrays of packages are indexed by id.
                            items
                                .iter()
                                .find(|i| i["id"] == seg)
                                .unwrap_or(&serde_json::Value::Null)
                        }
                        other => other.get(seg).unwrap_or(&serde_json::Value::Null),
                    };
                }
                let _ = writeln!(out, "{key} = {}", serde_json::to_string_pretty(v).unwrap());
            }
            out
        }
        Err(err) => err.render(false) + "\n",
    }
}

#[test]
fn cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let bless = std::env::var_os("NEXIS_BLESS").is_some();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no cases in {}", dir.display());
    let mut failed = Vec::new();
    for case in &names {
        let text = std::fs::read_to_string(case).unwrap();
        let got = run(&text);
        let expected_path = case.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            eprintln!(
                "--- case {} differs\n--- expected\n{expected}\n--- got\n{got}",
                case.display()
            );
            failed.push(case.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases differ: {failed:?} (NEXIS_BLESS=1 rewrites them)",
        failed.len(),
        names.len()
    );
}

#[test]
fn fuzzed_inputs_do_not_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzzed");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        // Either outcome is fine; a panic fails the test.
        let _ = run(&text);
    }
}
