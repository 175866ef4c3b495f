//! `nexis store …` and `nexis gc` on temporary roots.

use std::path::Path;
use std::process::{Command, Output};

fn nexis(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nexis"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn add_prints_one_path_per_argument_in_order_then_gc_collects_them() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    for (name, text) in [("b", "bee"), ("a", "ay"), ("c", "bee")] {
        std::fs::write(src.path().join(name), text).unwrap();
    }
    let args: Vec<String> = ["store", "add"]
        .iter()
        .map(ToString::to_string)
        .chain(
            ["b", "a", "c"]
                .iter()
                .map(|n| src.path().join(n).display().to_string()),
        )
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = stdout(&nexis(root.path(), &args));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3);
    for (line, name) in lines.iter().zip(["b", "a", "c"]) {
        assert!(
            line.starts_with("/nexis/store/") && line.ends_with(&format!("-{name}")),
            "{line}"
        );
        let base = line.trim_start_matches("/nexis/store/");
        assert!(root.path().join("nexis/store").join(base).is_file());
    }
    let info = stdout(&nexis(
        root.path(),
        &["--json", "store", "path-info", lines[1]],
    ));
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info[0]["path"], lines[1]);
    assert!(
        info[0]["tree-hash"]
            .as_str()
            .unwrap()
            .starts_with("blake3:")
    );

    let dry = stdout(&nexis(root.path(), &["gc", "--dry-run"]));
    assert_eq!(dry.lines().count(), 3);
    let done = stdout(&nexis(root.path(), &["--json", "gc"]));
    let done: serde_json::Value = serde_json::from_str(&done).unwrap();
    assert_eq!(done["deleted"].as_array().unwrap().len(), 3);
    let missing = nexis(root.path(), &["store", "closure", lines[0]]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("is not valid"));
}

#[test]
fn a_bad_store_path_argument_is_named() {
    let root = tempfile::tempdir().unwrap();
    let out = nexis(root.path(), &["store", "path-info", "/nix/store/abc-x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nix/store/abc-x"));
}
