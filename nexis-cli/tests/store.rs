//! `nexis store …` and `nexis gc` on temporary roots.

use std::path::Path;
use std::process::{Command, Output};

// The loopback HTTP server of nexis-fetch's tests, to serve a binary cache.
#[path = "../../nexis-fetch/tests/common/server.rs"]
mod server;

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

/// Run `nexis --root ROOT ARGS…` with `input` on standard input.
fn nexis_with_input(root: &Path, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_nexis"))
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Add a file holding `text` to the store under `root`; its store path.
fn add_one(root: &Path, name: &str, text: &str) -> String {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join(name);
    std::fs::write(&file, text).unwrap();
    stdout(&nexis(root, &["store", "add", file.to_str().unwrap()]))
        .trim()
        .to_owned()
}

/// `generate-key NAME` into files in `dir`: (secret key file, public key).
fn key_files(dir: &Path, name: &str) -> (String, String) {
    let secret = dir.join(format!("{name}.sec"));
    let public = dir.join(format!("{name}.pub"));
    let out = stdout(&nexis(
        dir,
        &[
            "store",
            "generate-key",
            name,
            "--out-secret",
            secret.to_str().unwrap(),
            "--out-public",
            public.to_str().unwrap(),
        ],
    ));
    let public_key = std::fs::read_to_string(&public).unwrap().trim().to_owned();
    assert_eq!(out.trim(), public_key);
    (secret.display().to_string(), public_key)
}

#[test]
fn generate_key_prints_or_writes_a_key_pair() {
    let dir = tempfile::tempdir().unwrap();
    let out = stdout(&nexis(dir.path(), &["store", "generate-key", "test-1"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l.starts_with("test-1:")));
    assert!(lines[0].len() > lines[1].len(), "secret first, then public");

    let (secret, _) = key_files(dir.path(), "test-2");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&secret).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // Never overwritten.
    let again = nexis(
        dir.path(),
        &[
            "store",
            "generate-key",
            "test-2",
            "--out-secret",
            &secret,
            "--out-public",
            "/dev/null",
        ],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let bad = nexis(dir.path(), &["store", "generate-key", "no spaces"]);
    assert!(!bad.status.success());
}

#[test]
fn sign_export_and_import_between_roots() {
    let keys = tempfile::tempdir().unwrap();
    let (secret, public) = key_files(keys.path(), "test-1");
    let from = tempfile::tempdir().unwrap();
    let path = add_one(from.path(), "hello", "hello\n");
    stdout(&nexis(
        from.path(),
        &["store", "sign", "--key", &secret, &path],
    ));
    let info = stdout(&nexis(
        from.path(),
        &["--json", "store", "path-info", &path],
    ));
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert!(
        info[0]["signatures"][0]
            .as_str()
            .unwrap()
            .starts_with("test-1:")
    );

    let file = keys.path().join("hello.nxexport");
    stdout(&nexis(
        from.path(),
        &[
            "store",
            "export",
            "--compression",
            "gzip",
            "--output",
            file.to_str().unwrap(),
            &path,
        ],
    ));
    let file = file.to_str().unwrap();

    // Not trusted: refused, naming the path.
    let to = tempfile::tempdir().unwrap();
    let refused = nexis(to.path(), &["store", "import", file]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&path) && err.contains("not signed by a trusted key"),
        "{err}"
    );
    // A configuration that trusts another key does not help; one that trusts this key
    // does (the `[store]` section).
    let config = keys.path().join("nexis.toml");
    let stranger = key_files(keys.path(), "stranger-1").1;
    std::fs::write(
        &config,
        format!("[store]\ntrusted-public-keys = [\"{stranger}\"]\n"),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let refused = nexis(to.path(), &["--config", config, "store", "import", file]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("trusted keys: stranger-1; signatures by: test-1"),
        "{err}"
    );
    std::fs::write(
        config,
        format!("[store]\ntrusted-public-keys = [\"{public}\"]\n"),
    )
    .unwrap();
    let out = stdout(&nexis(
        to.path(),
        &["--config", config, "store", "import", file],
    ));
    assert_eq!(out.lines().collect::<Vec<_>>(), [path.as_str()]);
    stdout(&nexis(to.path(), &["store", "path-info", &path]));
    // The same from `--trusted-key` into another store.
    let to2 = tempfile::tempdir().unwrap();
    let out = stdout(&nexis(
        to2.path(),
        &["store", "import", "--trusted-key", &public, file],
    ));
    assert_eq!(out.lines().collect::<Vec<_>>(), [path.as_str()]);
    // An invalid configuration is an error that names it, not a silent fallback.
    std::fs::write(config, "[store]\ntrusted-public-keys = [\"nonsense\"]\n").unwrap();
    let bad = nexis(to2.path(), &["--config", config, "store", "import", file]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("is not a public key"), "{err}");

    // Through pipes, uncompressed, without signature checks.
    let stream = nexis(
        from.path(),
        &["store", "export", "--compression", "none", &path],
    );
    assert!(stream.status.success());
    assert!(stream.stdout.starts_with(b"nexis-export-v2\n"));
    let other = tempfile::tempdir().unwrap();
    let imported = nexis_with_input(
        other.path(),
        &["--json", "store", "import", "--no-require-sigs", "-"],
        &stream.stdout,
    );
    let imported: serde_json::Value = serde_json::from_str(&stdout(&imported)).unwrap();
    assert_eq!(imported, serde_json::json!([path]));
}

#[test]
fn copy_to_and_from_a_file_cache() {
    let keys = tempfile::tempdir().unwrap();
    let (secret, public) = key_files(keys.path(), "cache-1");
    let from = tempfile::tempdir().unwrap();
    let path = add_one(from.path(), "hello", "hello\n");
    let cache = tempfile::tempdir().unwrap();
    let url = format!("file://{}", cache.path().display());

    let out = stdout(&nexis(
        from.path(),
        &["store", "copy", "--to", &url, "--key", &secret, &path],
    ));
    assert_eq!(out.trim(), path);
    assert!(cache.path().join("nexis-cache-info").is_file());
    let again = stdout(&nexis(
        from.path(),
        &["--json", "store", "copy", "--to", &url, &path],
    ));
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(
        again,
        serde_json::json!({ "copied": [], "skipped": [path] })
    );

    let to = tempfile::tempdir().unwrap();
    // A key of the same name that is not the cache's.
    let wrong = key_files(tempfile::tempdir().unwrap().path(), "cache-1").1;
    let refused = copy_from(to.path(), &url, &wrong, &path);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("not signed by a trusted key"), "{err}");
    let out = stdout(&copy_from(to.path(), &url, &public, &path));
    assert_eq!(out.trim(), path);
    stdout(&nexis(to.path(), &["store", "path-info", &path]));

    let http = nexis(
        from.path(),
        &["store", "copy", "--to", "https://cache.example.org", &path],
    );
    assert!(!http.status.success());
    assert!(String::from_utf8_lossy(&http.stderr).contains("not supported"));
}

/// `nexis store copy --from URL --trusted-key KEY PATH` into the store at `root`.
fn copy_from(root: &Path, url: &str, key: &str, path: &str) -> Output {
    nexis(
        root,
        &["store", "copy", "--from", url, "--trusted-key", key, path],
    )
}

#[test]
fn copy_from_an_http_cache_and_substitute_from_the_configured_ones() {
    let keys = tempfile::tempdir().unwrap();
    let (secret, public) = key_files(keys.path(), "cache-1");
    let from = tempfile::tempdir().unwrap();
    let path = add_one(from.path(), "hello", "hello\n");
    let cache = tempfile::tempdir().unwrap();
    let file_url = format!("file://{}", cache.path().display());
    stdout(&nexis(
        from.path(),
        &["store", "copy", "--to", &file_url, "--key", &secret, &path],
    ));
    let server = server::Server::start(server::static_files(cache.path().to_owned()));
    let url = server.url("");

    // `copy --from http://…`: no trusted key, refused; with it, copied.
    let to = tempfile::tempdir().unwrap();
    let refused = nexis(to.path(), &["store", "copy", "--from", &url, &path]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&format!("cannot copy from {url}"))
            && err.contains(&format!("{path} is not signed by a trusted key")),
        "{err}"
    );
    let out = stdout(&copy_from(to.path(), &url, &public, &path));
    assert_eq!(out.trim(), path);
    stdout(&nexis(to.path(), &["store", "verify", "--all"]));

    // `substitute` asks the configured caches in order: the first is down.
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let config = keys.path().join("nexis.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nsubstituters = [\"{down}\", \"{url}\"]\ntrusted-public-keys = [\"{public}\"]\n"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let other = tempfile::tempdir().unwrap();
    let done = nexis(
        other.path(),
        &["--config", config, "store", "substitute", &path],
    );
    assert_eq!(stdout(&done).trim(), path);
    let err = String::from_utf8_lossy(&done.stderr);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("skipping it")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains(&format!("binary cache {down} is not reachable")),
        "{err}"
    );

    // A path no cache has: reported, exit 1; what could be had is substituted.
    let missing = add_one(from.path(), "other", "other\n");
    let fresh = tempfile::tempdir().unwrap();
    let out = nexis(
        fresh.path(),
        &[
            "--json",
            "--config",
            config,
            "store",
            "substitute",
            &missing,
            &path,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report,
        serde_json::json!({ "substituted": [path], "missing": [missing], "incomplete": [] })
    );

    // No substituters configured: a usage error.
    let none = nexis(fresh.path(), &["store", "substitute", &path]);
    assert!(!none.status.success());
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("no substituters configured"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
}
