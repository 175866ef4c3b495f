//! `nexis store verify|repair|optimise|cat|ls|hash-path` on temporary roots.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
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

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o)).unwrap()
}

/// Add a file `note` ("hello") from `src`: its store path and where it is on disk.
fn add_note(root: &Path, src: &Path) -> (String, std::path::PathBuf) {
    let file = src.join("note");
    fs::write(&file, "hello\n").unwrap();
    let path = stdout(&nexis(root, &["store", "add", file.to_str().unwrap()]));
    let path = path.trim().to_owned();
    let physical = root
        .join("nexis/store")
        .join(path.trim_start_matches("/nexis/store/"));
    (path, physical)
}

#[test]
fn verify_reports_damage_and_exits_1() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let (path, physical) = add_note(root.path(), src.path());
    let path = path.as_str();
    let out = stdout(&nexis(root.path(), &["store", "verify", "--all"]));
    assert!(out.is_empty(), "{out}");
    let usage = nexis(root.path(), &["store", "verify"]);
    assert_eq!(usage.status.code(), Some(2), "--all or paths are needed");

    // Someone makes the file writable and changes it.
    fs::remove_file(&physical).unwrap();
    fs::write(&physical, "HELLO\n").unwrap();
    fs::set_permissions(&physical, fs::Permissions::from_mode(0o644)).unwrap();

    let out = nexis(root.path(), &["store", "verify", path]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(path) && text.contains("was modified"),
        "{text}"
    );
    assert!(
        text.contains("mode 0644 (expected 0444, writable)"),
        "{text}"
    );
    let out = nexis(root.path(), &["--json", "store", "verify", "--all"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["clean"], false);
    let kinds: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["hash-mismatch", "metadata"]);
    assert_eq!(report["problems"][1]["mode"], "0644");
}

#[test]
fn repair_restores_from_the_configured_cache() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let (path, physical) = add_note(root.path(), src.path());
    let path = path.as_str();
    let url = format!("file://{}", cache.path().display());
    stdout(&nexis(root.path(), &["store", "copy", "--to", &url, path]));
    fs::remove_file(&physical).unwrap();

    // No cache: reported, exit 1.
    let out = nexis(root.path(), &["store", "repair", "--all"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "not repaired: {path} is valid but missing on disk"
        )) && text.contains("no binary cache"),
        "{text}"
    );

    // The configuration names the cache.
    let config = src.path().join("nexis.toml");
    fs::write(&config, format!("[store]\nsubstituters = [\"{url}\"]\n")).unwrap();
    let config = config.to_str().unwrap();
    let out = stdout(&nexis(
        root.path(),
        &["--config", config, "store", "repair", "--all"],
    ));
    assert_eq!(out.trim(), format!("restored {path}"));
    assert_eq!(fs::read_to_string(&physical).unwrap(), "hello\n");
    stdout(&nexis(root.path(), &["store", "verify", "--all"]));

    // A writable file is made read-only again without any cache, in JSON.
    fs::set_permissions(&physical, fs::Permissions::from_mode(0o644)).unwrap();
    let report = json(&nexis(root.path(), &["--json", "store", "repair", path]));
    assert_eq!(report["clean"], true);
    assert_eq!(report["canonicalised"][0], physical.to_str().unwrap());
    let mode = fs::metadata(&physical).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o444);
}

#[test]
fn cat_ls_and_hash_path_read_what_was_added() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let tree = src.path().join("pkg");
    fs::create_dir_all(tree.join("bin")).unwrap();
    fs::write(tree.join("bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(tree.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("bin/tool", tree.join("tool")).unwrap();
    let path = stdout(&nexis(
        root.path(),
        &["store", "add", tree.to_str().unwrap()],
    ));
    let path = path.trim();

    let tool = format!("{path}/bin/tool");
    assert_eq!(
        stdout(&nexis(root.path(), &["store", "cat", &tool])),
        "#!/bin/sh\necho hi\n"
    );
    let link = nexis(root.path(), &["store", "cat", &format!("{path}/tool")]);
    assert!(!link.status.success());
    assert!(String::from_utf8_lossy(&link.stderr).contains("is a symlink to `bin/tool`"));

    let listing = stdout(&nexis(root.path(), &["store", "ls", "-R", path]));
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 3, "{listing}");
    assert!(lines[0].starts_with("dr-xr-xr-x") && lines[0].ends_with("/bin"));
    assert!(lines[1].starts_with("-r-xr-xr-x") && lines[1].contains(" 18 "));
    assert!(lines[2].ends_with("/tool -> bin/tool"), "{}", lines[2]);
    let entries = json(&nexis(root.path(), &["--json", "store", "ls", &tool]));
    assert_eq!(entries[0]["type"], "regular");
    assert_eq!(entries[0]["executable"], true);
    assert_eq!(entries[0]["size"], 18);

    let hashed = stdout(&nexis(
        root.path(),
        &["store", "hash-path", tree.to_str().unwrap()],
    ));
    let info = json(&nexis(root.path(), &["--json", "store", "path-info", path]));
    assert_eq!(hashed.trim(), info[0]["tree-hash"].as_str().unwrap());
}

#[test]
fn optimise_reports_what_it_did() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("one");
    fs::write(&file, "content\n").unwrap();
    stdout(&nexis(
        root.path(),
        &["store", "add", file.to_str().unwrap()],
    ));
    // Everything added is linked already: nothing to do, nothing read.
    let report = json(&nexis(root.path(), &["--json", "store", "optimise"]));
    assert_eq!(report["paths"], 1);
    assert_eq!(report["already-linked"], 1);
    assert_eq!(report["bytes-saved"], 0);
}
