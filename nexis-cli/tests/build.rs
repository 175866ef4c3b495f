//! `nexis build`, `--dry-run`, `--check` and `nexis log` on temporary roots: the demo
//! system (C packages built with the host's gcc in the sandbox) and bad recipes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::{failed, ok};

fn nexis(root: &Path, config: &Path, cwd: &Path, args: &[&str]) -> Output {
    common::nexis_in(cwd, root, config, args)
}

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo/nexis.toml")
}

/// Whether `path` (logical) is valid in the store at `root`.
fn valid(root: &Path, path: &str) -> bool {
    Command::new(env!("CARGO_BIN_EXE_nexis"))
        .arg("--root")
        .arg(root)
        .args(["store", "path-info", path])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn the_demo_builds_runs_is_a_no_op_the_second_time_and_is_reproducible() {
    let root = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let config = demo();

    // Before: everything would be built.
    let (out, _) = ok(&nexis(
        root.path(),
        &config,
        cwd.path(),
        &["build", "--dry-run"],
    ));
    assert!(out.contains("these 5 paths would be built"), "{out}");

    let (out, err) = ok(&nexis(root.path(), &config, cwd.path(), &["build"]));
    let outputs: Vec<&str> = out.lines().collect();
    assert_eq!(outputs.len(), 4, "{out}");
    assert!(err.contains("building: hello-2.12.1"), "{err}");
    for p in &outputs {
        assert!(valid(root.path(), p), "{p}");
    }
    // The C program runs, linked against libgreet (a build dependency only).
    let hello = cwd.path().join("result-hello/bin/hello");
    let run = Command::new(&hello).arg("tests").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "Hello, tests!\n");
    // nexis-motd needs hello at run time: a reference; libgreet is not one.
    let motd = outputs
        .iter()
        .find(|p| p.ends_with("nexis-motd-0.3.0"))
        .unwrap();
    let info = Command::new(env!("CARGO_BIN_EXE_nexis"))
        .arg("--root")
        .arg(root.path())
        .args(["--json", "store", "path-info", motd])
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("-hello-2.12.1"), "{info}");
    assert!(!info.contains("libgreet"), "{info}");
    // The result links are GC roots.
    let (roots, _) = ok(&Command::new(env!("CARGO_BIN_EXE_nexis"))
        .arg("--root")
        .arg(root.path())
        .args(["store", "roots"])
        .output()
        .unwrap());
    assert!(roots.contains("result-hello"), "{roots}");

    // Again: nothing is built, the same paths come out.
    let (again, err) = ok(&nexis(
        root.path(),
        &config,
        cwd.path(),
        &["build", "--no-link"],
    ));
    assert_eq!(again, out);
    assert!(!err.contains("building"), "{err}");
    let (dry, _) = ok(&nexis(
        root.path(),
        &config,
        cwd.path(),
        &["build", "--dry-run"],
    ));
    assert!(dry.contains("these 0 paths would be built"), "{dry}");

    // Rebuilt from scratch, every package is bit-identical.
    let (checked, _) = ok(&nexis(
        root.path(),
        &config,
        cwd.path(),
        &["build", "--check"],
    ));
    assert_eq!(checked.matches(" identical").count(), 4, "{checked}");

    // The log of a build.
    let (log, _) = ok(&nexis(
        root.path(),
        &config,
        cwd.path(),
        &["log", "result-hello"],
    ));
    assert!(log.contains("gcc -O2"), "{log}");

    // The same configuration on another root gives the same paths.
    let other = tempfile::tempdir().unwrap();
    let (dry, _) = ok(&nexis(
        other.path(),
        &config,
        cwd.path(),
        &["build", "--dry-run"],
    ));
    for p in &outputs {
        assert!(dry.contains(p), "{p} in {dry}");
    }
}

/// A configuration in a fresh folder with the inline recipes `recipes` (TOML) installed.
fn config_with(dir: &Path, install: &[&str], recipes: &str) -> PathBuf {
    let config = dir.join("nexis.toml");
    let install: Vec<String> = install.iter().map(|p| format!("\"{p}\"")).collect();
    fs::write(
        &config,
        format!(
            "[build]\nextra-sandbox-paths = [\"/usr\", \"/bin\", \"/lib\", \"/lib64\"]\n\
             [packages]\ninstall = [{}]\n{recipes}",
            install.join(", ")
        ),
    )
    .unwrap();
    config
}

#[test]
fn bad_builds_are_clear_errors_and_register_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        &["empty", "broken", "fine"],
        "[recipes.empty]\nversion = \"1\"\nbuild = { system = \"script\", script = \"true\" }\n\
         [recipes.broken]\nversion = \"1\"\nbuild = { system = \"script\", script = \"echo compiling; echo oops >&2; exit 3\" }\n\
         [recipes.fine]\nversion = \"1\"\nbuild = { system = \"script\", script = \"echo ok > $out/f\" }\n",
    );
    let o = nexis(
        root.path(),
        &config,
        dir.path(),
        &["build", "--keep-going", "--no-link", "--json"],
    );
    let err = failed(&o);
    assert!(err.contains("produced nothing"), "{err}");
    assert!(
        err.contains("failed (exit code 3)") && err.contains("  oops") && err.contains(".log.zst"),
        "{err}"
    );
    assert!(err.contains("2 of 3 builds failed"), "{err}");
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let outputs = json["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1, "{json}");
    assert!(outputs[0].as_str().unwrap().ends_with("-fine-1"));
    // Nothing of the failed builds is in the store.
    let (dry, _) = ok(&nexis(
        root.path(),
        &config,
        dir.path(),
        &["build", "--dry-run", "--json"],
    ));
    let dry: serde_json::Value = serde_json::from_str(&dry).unwrap();
    assert_eq!(dry["build"].as_array().unwrap().len(), 2, "{dry}");
    assert_eq!(dry["valid"].as_array().unwrap().len(), 1, "{dry}");
    // The failed build's log is kept.
    let broken = dry["build"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p.as_str().unwrap().ends_with("-broken-1"))
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    let (log, _) = ok(&nexis(root.path(), &config, dir.path(), &["log", &broken]));
    assert_eq!(log, "compiling\noops\n");

    // A package the configuration does not have.
    let err = failed(&nexis(root.path(), &config, dir.path(), &["build", "nope"]));
    assert!(err.contains("no package `nope`"), "{err}");
}

#[test]
fn check_names_the_files_that_differ() {
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        &["stamp"],
        "[recipes.stamp]\nversion = \"1\"\n\
         build = { system = \"script\", script = \"echo same > $out/same; cat /proc/sys/kernel/random/uuid > $out/stamp\" }\n",
    );
    ok(&nexis(
        root.path(),
        &config,
        dir.path(),
        &["build", "--no-link"],
    ));
    let o = nexis(root.path(), &config, dir.path(), &["build", "--check"]);
    let err = failed(&o);
    assert!(err.contains("is not reproducible: stamp differ"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains(" differs"));
}

#[test]
fn sources_are_copied_from_the_store_and_a_missing_one_is_named() {
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("src")).unwrap();
    fs::write(dir.path().join("src/data.txt"), "from the source\n").unwrap();
    fs::write(
        dir.path().join("fix.patch"),
        "--- a/data.txt\n+++ b/data.txt\n@@ -1 +1 @@\n-from the source\n+patched\n",
    )
    .unwrap();
    let config = config_with(
        dir.path(),
        &["copy"],
        "[recipes.copy]\nversion = \"1\"\nsource = { path = \"src\", patches = [\"fix.patch\"] }\n\
         build = { system = \"script\", script = \"cp data.txt $out/\" }\n",
    );
    let (out, _) = ok(&nexis(root.path(), &config, dir.path(), &["build"]));
    assert!(out.trim().ends_with("-copy-1"), "{out}");
    assert_eq!(
        fs::read_to_string(dir.path().join("result/data.txt")).unwrap(),
        "patched\n"
    );

    let config = config_with(
        dir.path(),
        &["gone"],
        "[recipes.gone]\nversion = \"1\"\nsource = { path = \"missing\" }\n\
         build = { system = \"script\", script = \"true\" }\n",
    );
    let err = failed(&nexis(root.path(), &config, dir.path(), &["build"]));
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn outputs_come_from_a_binary_cache_when_it_has_them() {
    let built = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recipes = "[recipes.lib]\nversion = \"1\"\nbuild = { system = \"script\", script = \"echo lib > $out/f\" }\n\
                   [recipes.app]\nversion = \"1\"\n\
                   build = { system = \"script\", runtime-deps = [\"lib\"], script = \"echo $lib > $out/f\" }\n";
    let config = config_with(dir.path(), &["app"], recipes);
    let (out, _) = ok(&nexis(
        built.path(),
        &config,
        dir.path(),
        &["build", "--no-link"],
    ));
    let app = out.trim().to_owned();
    let url = format!("file://{}", cache.path().display());
    ok(&Command::new(env!("CARGO_BIN_EXE_nexis"))
        .arg("--root")
        .arg(built.path())
        .args(["store", "copy", "--to", &url, &app])
        .output()
        .unwrap());

    // A second machine with the cache configured: nothing is built.
    let store_section = format!(
        "[store]\nsubstituters = [\"http://127.0.0.1:9/down\", \"{url}\"]\nrequire-signatures = false\n"
    );
    let config = config_with(dir.path(), &["app"], &format!("{recipes}{store_section}"));
    let fresh = tempfile::tempdir().unwrap();
    let (dry, _) = ok(&nexis(
        fresh.path(),
        &config,
        dir.path(),
        &["build", "--dry-run", "--json"],
    ));
    let dry: serde_json::Value = serde_json::from_str(&dry).unwrap();
    assert_eq!(dry["substitute"].as_array().unwrap().len(), 2, "{dry}");
    assert_eq!(dry["build"].as_array().unwrap().len(), 0, "{dry}");
    let (out, err) = ok(&nexis(
        fresh.path(),
        &config,
        dir.path(),
        &["build", "--no-link"],
    ));
    assert_eq!(out.trim(), app);
    assert!(err.contains("substituted:"), "{err}");
    assert!(!err.contains("building:"), "{err}");
    // The cache that is down cost one warning.
    assert_eq!(err.matches("is not reachable").count(), 1, "{err}");

    // With --no-substitute, or a cache that lacks it, it is built.
    let other = tempfile::tempdir().unwrap();
    let (_, err) = ok(&nexis(
        other.path(),
        &config,
        dir.path(),
        &["build", "--no-link", "--no-substitute"],
    ));
    assert!(err.contains("building: app-1"), "{err}");
}

#[test]
fn source_date_epoch_is_the_commit_time_of_the_recipes_input() {
    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .current_dir(repo.path())
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_DATE", "@1700000000 +0000")
            .env("GIT_COMMITTER_DATE", "@1700000123 +0000")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    git(&["init", "-q", "-b", "main"]);
    fs::create_dir(repo.path().join("packages")).unwrap();
    fs::write(
        repo.path().join("packages/when.toml"),
        "version = \"1\"\n[build]\nsystem = \"script\"\nscript = \"echo $SOURCE_DATE_EPOCH > $out/epoch\"\n",
    )
    .unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-qm", "when"]);
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        &["pkgs#when"],
        &format!(
            "[inputs]\npkgs = \"git+file://{}\"\n",
            repo.path().display()
        ),
    );
    let root = tempfile::tempdir().unwrap();
    ok(&nexis(root.path(), &config, dir.path(), &["lock"]));
    ok(&nexis(root.path(), &config, dir.path(), &["build"]));
    assert_eq!(
        fs::read_to_string(dir.path().join("result/epoch")).unwrap(),
        "1700000123\n"
    );
}

#[test]
fn an_output_naming_a_store_path_it_was_not_given_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        &["leak"],
        "[recipes.leak]\nversion = \"1\"\n\
         build = { system = \"script\", script = \"echo /nexis/store/1111111111111111111111111111111a-x > $out/f\" }\n",
    );
    let err = failed(&nexis(root.path(), &config, dir.path(), &["build"]));
    assert!(
        err.contains("not its inputs (hash parts 1111111111111111111111111111111a)"),
        "{err}"
    );
    let (dry, _) = ok(&nexis(
        root.path(),
        &config,
        dir.path(),
        &["build", "--dry-run"],
    ));
    assert!(dry.contains("these 1 paths would be built"), "{dry}");
}

#[test]
fn a_wrong_source_hash_and_an_unknown_build_system_are_errors_with_their_place() {
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("data.txt"), "payload\n").unwrap();
    let url = format!("file://{}/data.txt", dir.path().display());
    let config = config_with(
        dir.path(),
        &["pinned"],
        &format!(
            "[recipes.pinned]\nversion = \"1\"\n\
             source = {{ url = \"{url}\", hash = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\" }}\n\
             build = {{ system = \"script\", script = \"cp data.txt $out/\" }}\n"
        ),
    );
    let err = failed(&nexis(root.path(), &config, dir.path(), &["build"]));
    assert!(
        err.contains("package self#pinned: fetching its source") && err.contains("sha256-47DEQpj8"),
        "{err}"
    );

    let config = config_with(
        dir.path(),
        &["odd"],
        "[recipes.odd]\nversion = \"1\"\nbuild = { system = \"scons\" }\n",
    );
    let err = failed(&nexis(root.path(), &config, dir.path(), &["build"]));
    assert!(
        err.contains("scons") && err.contains("nexis.toml:"),
        "{err}"
    );
}

#[test]
fn a_collection_during_a_build_keeps_what_the_build_needs() {
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        &["app"],
        "[recipes.lib]\nversion = \"1\"\nbuild = { system = \"script\", script = \"echo lib > $out/f\" }\n\
         [recipes.app]\nversion = \"1\"\n\
         build = { system = \"script\", deps = [\"lib\"], script = \"sleep 2; cat $lib/f > $out/f; echo $lib >> $out/f\" }\n",
    );
    // lib is valid and nothing roots it.
    let (lib, _) = ok(&nexis(
        root.path(),
        &config,
        dir.path(),
        &["build", "--no-link", "lib"],
    ));
    let lib = lib.trim().to_owned();
    let build = Command::new(env!("CARGO_BIN_EXE_nexis"))
        .current_dir(dir.path())
        .arg("--root")
        .arg(root.path())
        .arg("--config")
        .arg(&config)
        .args(["build", "app"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let (_, gc) = ok(&Command::new(env!("CARGO_BIN_EXE_nexis"))
        .arg("--root")
        .arg(root.path())
        .arg("gc")
        .output()
        .unwrap());
    let out = build.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\ngc: {gc}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("result/f")).unwrap(),
        format!("lib\n{lib}\n")
    );
    assert!(
        valid(root.path(), &lib),
        "the build's dependency was collected"
    );
}

/// A recipe `NAME` built by `system` from the folder `src/NAME` with `files`; its output
/// must hold `bin/NAME` printing `NAME`.
fn build_system_case(
    dir: &Path,
    name: &str,
    system: &str,
    files: &[(&str, &str)],
    extra: &str,
) -> String {
    for (file, text) in files {
        let path = dir.join("src").join(name).join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        if file.ends_with("configure") {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    format!(
        "[recipes.{name}]\nversion = \"1\"\nsource = {{ path = \"src/{name}\" }}\n\
         build = {{ system = \"{system}\", env = {{ CC = \"gcc\"{extra} }} }}\n"
    )
}

#[test]
fn every_build_system_builds_a_small_c_program() {
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = |name: &str| {
        format!("#include <stdio.h>\nint main(void) {{ puts(\"{name}\"); return 0; }}\n")
    };
    let mut recipes = String::new();
    let mut names = vec!["viaauto", "viamake"];
    recipes += &build_system_case(
        dir.path(),
        "viaauto",
        "autotools",
        &[
            ("main.c", &c("viaauto")),
            (
                "configure",
                "#!/bin/sh\n# A hand-written configure: takes --prefix, writes the Makefile.\n\
                 for a; do case $a in --prefix=*) prefix=${a#--prefix=};; esac; done\n\
                 printf 'viaauto: main.c\\n\\t$(CC) -O2 main.c -o viaauto\\ninstall: viaauto\\n\\tmkdir -p %s/bin && cp viaauto %s/bin/\\n' \"$prefix\" \"$prefix\" > Makefile\n",
            ),
        ],
        "",
    );
    recipes += &build_system_case(
        dir.path(),
        "viamake",
        "make",
        &[
            ("main.c", &c("viamake")),
            (
                "Makefile",
                "viamake: main.c\n\t$(CC) -O2 main.c -o viamake\ninstall: viamake\n\tmkdir -p $(PREFIX)/bin && cp viamake $(PREFIX)/bin/\n",
            ),
        ],
        "",
    );
    if Path::new("/usr/bin/cmake").exists() {
        names.push("viacmake");
        recipes += &build_system_case(
            dir.path(),
            "viacmake",
            "cmake",
            &[
                ("main.c", &c("viacmake")),
                (
                    "CMakeLists.txt",
                    "cmake_minimum_required(VERSION 3.10)\nproject(viacmake C)\nadd_executable(viacmake main.c)\ninstall(TARGETS viacmake)\n",
                ),
            ],
            "",
        );
    } else {
        eprintln!("skipping the cmake case: no /usr/bin/cmake");
    }
    if Path::new("/usr/bin/meson").exists() && Path::new("/usr/bin/ninja").exists() {
        names.push("viameson");
        recipes += &build_system_case(
            dir.path(),
            "viameson",
            "meson",
            &[
                ("main.c", &c("viameson")),
                (
                    "meson.build",
                    "project('viameson', 'c')\nexecutable('viameson', 'main.c', install: true)\n",
                ),
            ],
            "",
        );
    } else {
        eprintln!("skipping the meson case: no /usr/bin/meson or ninja");
    }
    let config = config_with(dir.path(), &names, &recipes);
    let (out, _) = ok(&nexis(root.path(), &config, dir.path(), &["build"]));
    assert_eq!(out.lines().count(), names.len(), "{out}");
    for name in names {
        let bin = dir.path().join(format!("result-{name}/bin/{name}"));
        let run = Command::new(&bin).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&run.stdout),
            format!("{name}\n"),
            "{name}"
        );
    }
}
