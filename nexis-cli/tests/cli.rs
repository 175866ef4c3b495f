//! The `nexis` binary, run in temporary directories.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Run `nexis ARGS` in `dir`, without colors and without inherited config variables.
fn nexis(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nexis"))
        .current_dir(dir)
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("the nexis binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("stderr is UTF-8")
}

/// Assert success, showing stderr otherwise.
#[track_caller]
fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
}

/// A directory with the starter configuration.
fn initialised() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ok(&nexis(dir.path(), &["init"]));
    dir
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

#[test]
fn init_then_check_succeeds() {
    let dir = initialised();
    assert!(dir.path().join("packages/hello.toml").is_file());
    let out = nexis(dir.path(), &["check"]);
    ok(&out);
    let config = dir.path().join("nexis.toml");
    assert_eq!(
        stderr(&out),
        format!("ok: {} (1 module, 1 package)\n", config.display())
    );
    assert_eq!(stdout(&out), "");
    // --quiet leaves nothing but the exit status.
    let out = nexis(dir.path(), &["check", "-q"]);
    ok(&out);
    assert_eq!(stderr(&out), "");
}

#[test]
fn init_into_a_new_directory_then_check_it() {
    let dir = tempfile::tempdir().unwrap();
    ok(&nexis(dir.path(), &["init", "machine"]));
    ok(&nexis(
        dir.path(),
        &["check", "--config", "machine/nexis.toml"],
    ));
}

#[test]
fn init_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nexis.toml");
    fs::write(&config, "# mine\n").unwrap();
    let out = nexis(dir.path(), &["init"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: ./nexis.toml already exists; not overwriting it\n"
    );
    assert_eq!(read(&config), "# mine\n");
    assert!(!dir.path().join("packages").exists());
}

#[test]
fn eval_prints_a_summary_and_json() {
    let dir = initialised();
    let out = nexis(dir.path(), &["eval"]);
    ok(&out);
    let text = stdout(&out);
    assert!(
        text.starts_with("hostname: nexis (UTC, en_US.UTF-8)\n"),
        "{text}"
    );
    assert!(text.contains("\n  local#hello 1.0.0\n"), "{text}");
    assert!(text.contains("\n  admin (wheel)\n"), "{text}");
    let out = nexis(dir.path(), &["eval", "--json"]);
    ok(&out);
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["packages"][0]["id"], "local#hello");
}

#[test]
fn config_get_reads_the_evaluated_configuration() {
    let dir = initialised();
    let out = nexis(dir.path(), &["config", "get", "system.hostname"]);
    ok(&out);
    assert_eq!(stdout(&out), "nexis\n");
    let out = nexis(dir.path(), &["config", "get", "system.hostname", "--json"]);
    assert_eq!(stdout(&out), "\"nexis\"\n");
    // Defaults count: the starter file does not set the boot timeout.
    let out = nexis(dir.path(), &["config", "get", "boot.timeout"]);
    assert_eq!(stdout(&out), "5\n");
    let out = nexis(dir.path(), &["config", "get", r#"files."/etc/motd".mode"#]);
    assert_eq!(stdout(&out), "0644\n");
    let out = nexis(dir.path(), &["config", "get", "users.admin.groups"]);
    let groups: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(groups, serde_json::json!(["wheel"]));
    let out = nexis(dir.path(), &["config", "get", "system.hostnme"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: no key `system.hostnme` in the configuration\n"
    );
}

#[test]
fn config_set_changes_only_that_line() {
    let dir = initialised();
    let config = dir.path().join("nexis.toml");
    let before = read(&config);
    let out = nexis(dir.path(), &["config", "set", "system.hostname", "box"]);
    ok(&out);
    assert_eq!(
        read(&config),
        before.replace("hostname = \"nexis\"\n", "hostname = \"box\"\n")
    );
    // A new key goes after the last one of its table.
    ok(&nexis(dir.path(), &["config", "set", "boot.timeout", "3"]));
    assert_eq!(
        read(&config),
        before
            .replace("hostname = \"nexis\"\n", "hostname = \"box\"\n")
            .replace(
                "keep-generations = 10\n",
                "keep-generations = 10\ntimeout = 3\n"
            )
    );
    let out = nexis(dir.path(), &["config", "get", "boot.timeout"]);
    assert_eq!(stdout(&out), "3\n");
}

#[test]
fn config_set_rejects_a_bad_value_and_keeps_the_file() {
    let dir = initialised();
    let config = dir.path().join("nexis.toml");
    let before = read(&config);
    let out = nexis(
        dir.path(),
        &["config", "set", "boot.keep-generations", "many"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:", config.display())) && err.contains("\"many\""),
        "{err}"
    );
    assert!(
        err.ends_with(&format!(
            "error: {} was left unchanged: the edited configuration has errors\n",
            config.display()
        )),
        "{err}"
    );
    assert_eq!(read(&config), before);
    // Setting below a string is refused before anything is evaluated.
    let out = nexis(dir.path(), &["config", "set", "system.hostname.x", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: cannot edit {}\n  caused by: cannot set `system.hostname.x`: \
             `system.hostname` is a string, not a table\n",
            config.display()
        )
    );
    assert_eq!(read(&config), before);
}

#[test]
fn add_package_then_eval_shows_it() {
    let dir = initialised();
    let config = dir.path().join("nexis.toml");
    let before = read(&config);
    fs::write(
        dir.path().join("packages/world.toml"),
        "name = \"world\"\nversion = \"0.2.0\"\n[build]\nsystem = \"script\"\nscript = \"mkdir $out\"\n",
    )
    .unwrap();
    ok(&nexis(
        dir.path(),
        &["config", "add-package", "local#world"],
    ));
    assert_eq!(
        read(&config),
        before.replace(
            "    \"local#hello\",\n",
            "    \"local#hello\",\n    \"local#world\",\n"
        )
    );
    let out = nexis(dir.path(), &["eval", "--json"]);
    ok(&out);
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let world = json["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "local#world")
        .expect("local#world is in the evaluated packages");
    assert_eq!(world["version"], "0.2.0");

    // Adding it again changes nothing; removing it restores the file.
    let out = nexis(dir.path(), &["config", "add-package", "local#world"]);
    ok(&out);
    assert!(stderr(&out).contains("nothing to change"));
    ok(&nexis(
        dir.path(),
        &["config", "remove-package", "local#world"],
    ));
    assert_eq!(read(&config), before);
    let out = nexis(dir.path(), &["config", "remove-package", "local#world"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("`local#world` is not in `packages.install`"));
}

#[test]
fn add_package_that_does_not_resolve_is_rejected() {
    let dir = initialised();
    let config = dir.path().join("nexis.toml");
    let before = read(&config);
    let out = nexis(dir.path(), &["config", "add-package", "nosuchpkg"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nosuchpkg"), "{}", stderr(&out));
    assert_eq!(read(&config), before);
}

#[test]
fn check_reports_every_independent_mistake_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nexis.toml");
    fs::write(
        &config,
        r#"[system]
hostname = "box"
colour = "blue"

[files."/etc/motd"]
text = "hi\n"
mode = "0666"

[services.web]
command = "/bin/web"
depends-on = ["database"]
"#,
    )
    .unwrap();
    let out = nexis(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    // Each error points at its line, as `file:line:col`.
    let places: Vec<(usize, usize)> = err
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--> "))
        .map(|place| {
            let rest = place
                .strip_prefix(&format!("{}:", config.display()))
                .unwrap_or_else(|| panic!("{place} is not in {}", config.display()));
            let (line, col) = rest.split_once(':').unwrap();
            (line.parse().unwrap(), col.parse().unwrap())
        })
        .collect();
    let lines: Vec<usize> = places.iter().map(|p| p.0).collect();
    assert_eq!(lines, [3, 7, 11], "{err}");
    assert!(err.contains("colour"), "{err}");
    assert!(err.contains("0666"), "{err}");
    assert!(err.contains("database"), "{err}");
    assert!(err.ends_with("3 errors in the configuration\n"), "{err}");

    // The same as JSON on stdout.
    let out = nexis(dir.path(), &["check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["ok"], false);
    let diagnostics = json["diagnostics"].as_array().unwrap();
    let found: Vec<(u64, u64)> = diagnostics
        .iter()
        .map(|d| {
            assert_eq!(d["file"], config.display().to_string());
            assert!(d["kind"].is_string() && d["message"].is_string());
            (d["line"].as_u64().unwrap(), d["column"].as_u64().unwrap())
        })
        .collect();
    let expected: Vec<(u64, u64)> = places.iter().map(|&(l, c)| (l as u64, c as u64)).collect();
    assert_eq!(found, expected);
}

#[test]
fn completions_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = nexis(dir.path(), &["completions", shell]);
        ok(&out);
        assert!(stdout(&out).contains("add-package"), "{shell}");
    }
    let out = nexis(dir.path(), &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn man_writes_one_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = nexis(dir.path(), &["man", "--out", "man"]);
    ok(&out);
    let listed: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    for page in [
        "nexis.1",
        "nexis-init.1",
        "nexis-eval.1",
        "nexis-check.1",
        "nexis-config.1",
        "nexis-config-set.1",
        "nexis-schema.1",
        "nexis-completions.1",
        "nexis-man.1",
    ] {
        let path = dir.path().join("man").join(page);
        assert!(path.is_file(), "{page} missing");
        assert!(listed.contains(&format!("man/{page}")), "{page} not listed");
        assert!(read(&path).starts_with(".ie"), "{page} is not roff");
    }
    assert!(read(&dir.path().join("man/nexis-config.1")).contains("add\\-package"));
}

#[test]
fn schemas_are_json_schemas() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, key) in [("config", "system"), ("recipe", "version")] {
        let out = nexis(dir.path(), &["schema", kind]);
        ok(&out);
        let schema: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert!(schema["properties"][key].is_object(), "{kind}: {schema}");
    }
    let out = nexis(dir.path(), &["schema"]);
    let schema: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(schema["properties"]["packages"].is_object());
}

#[test]
fn usage_errors_exit_with_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = nexis(dir.path(), &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = nexis(dir.path(), &["config", "set", "system.hostname"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn colors_follow_the_color_option() {
    let dir = initialised();
    let out = nexis(dir.path(), &["check", "--color", "always"]);
    assert!(stderr(&out).contains("\x1b["));
    // Not a terminal: no colors by default.
    let out = nexis(dir.path(), &["check"]);
    assert!(!stderr(&out).contains('\x1b'));
}

#[test]
fn an_unreachable_git_input_is_named_with_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let missing = dir.path().join("no-such-repo");
    fs::write(
        dir.path().join("nexis.toml"),
        format!("[inputs]\ncore = \"git+file://{}\"\n", missing.display()),
    )
    .unwrap();
    let out = nexis(dir.path(), &["--root", root.to_str().unwrap(), "check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("input `core` is not available") && err.contains("no-such-repo"),
        "{err}"
    );
    assert!(!dir.path().join("nexis.lock").exists(), "nothing to lock");
}

#[test]
fn a_missing_config_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = nexis(dir.path(), &["check", "--config", "missing.toml"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains(&dir.path().join("missing.toml").display().to_string()),
        "{err}"
    );
}
