//! `nexis lock`, `nexis update`, `nexis fetch` and evaluation through `nexis.lock`, with
//! git inputs from fixture repositories (built with the git CLI) on a temporary root.

use std::fs;
use std::path::Path;
use std::process::Command;

mod common;

use common::{nexis, ok};

fn git(dir: &Path, args: &[&str], time: i64) -> String {
    let date = format!("@{time} +0000");
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A repository holding the recipe `packages/NAME.toml`; returns its directory.
fn repo(base: &Path, name: &str, time: i64) -> std::path::PathBuf {
    let dir = base.join(name);
    fs::create_dir_all(dir.join("packages")).unwrap();
    git(&dir, &["init", "-q", "-b", "main"], time);
    commit(&dir, name, "1.0", time);
    dir
}

/// Write `packages/NAME.toml` at `version` and commit it; the new rev.
fn commit(dir: &Path, name: &str, version: &str, time: i64) -> String {
    fs::write(
        dir.join(format!("packages/{name}.toml")),
        format!(
            "name = \"{name}\"\nversion = \"{version}\"\n\
             [build]\nsystem = \"script\"\nscript = \"mkdir -p $out\"\n"
        ),
    )
    .unwrap();
    git(dir, &["add", "-A"], time);
    git(dir, &["commit", "-q", "-m", version], time);
    git(dir, &["rev-parse", "HEAD"], time)
}

#[test]
fn lock_is_stable_update_changes_only_what_is_named_and_tampering_is_caught() {
    let repos = tempfile::tempdir().unwrap();
    let a = repo(repos.path(), "alpha", 1_700_000_000);
    let b = repo(repos.path(), "beta", 1_700_000_100);
    let conf = tempfile::tempdir().unwrap();
    let config = conf.path().join("nexis.toml");
    fs::write(
        &config,
        format!(
            "[inputs]\na = \"git+file://{}?ref=main\"\nb = \"git+file://{}\"\n\
             [packages]\ninstall = [\"a#alpha\", \"b#beta\"]\n",
            a.display(),
            b.display()
        ),
    )
    .unwrap();
    let lock_file = conf.path().join("nexis.lock");
    let root = tempfile::tempdir().unwrap();
    let rev = |dir: &Path| git(dir, &["rev-parse", "HEAD"], 0);

    // First lock: both inputs added, with their revs.
    let (_, err) = ok(&nexis(root.path(), &config, &["lock"]));
    assert!(
        err.contains("added a (") && err.contains("added b ("),
        "{err}"
    );
    let first = fs::read_to_string(&lock_file).unwrap();
    assert!(
        first.contains(&rev(&a)) && first.contains(&rev(&b)),
        "{first}"
    );
    assert!(first.contains("ref = \"refs/heads/main\""), "{first}");

    // Stable: again, and after new upstream commits, the lock does not change.
    let (_, err) = ok(&nexis(root.path(), &config, &["lock"]));
    assert!(err.contains("is up to date"), "{err}");
    let a2 = commit(&a, "alpha", "2.0", 1_700_000_200);
    let b2 = commit(&b, "beta", "2.0", 1_700_000_300);
    let (out, _) = ok(&nexis(root.path(), &config, &["eval"]));
    assert!(
        out.contains("a#alpha 1.0") && out.contains("b#beta 1.0"),
        "{out}"
    );
    assert_eq!(fs::read_to_string(&lock_file).unwrap(), first);

    // `update a` moves a only.
    let (_, err) = ok(&nexis(root.path(), &config, &["update", "a"]));
    assert!(
        err.contains(&format!(
            "updated a: {} → {}",
            &first_rev(&first, "a")[..12],
            &a2[..12]
        )),
        "{err}"
    );
    assert!(!err.contains("updated b"), "{err}");
    let second = fs::read_to_string(&lock_file).unwrap();
    assert!(second.contains(&a2) && !second.contains(&b2), "{second}");
    let (out, _) = ok(&nexis(root.path(), &config, &["eval"]));
    assert!(
        out.contains("a#alpha 2.0") && out.contains("b#beta 1.0"),
        "{out}"
    );

    // An input the configuration does not have: refused, the lock untouched.
    let unknown = nexis(root.path(), &config, &["update", "gamma"]);
    assert!(!unknown.status.success());
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        err.contains("no input `gamma`") && err.contains("a, b"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&lock_file).unwrap(), second);

    // Offline: with the locked paths in the store, the repositories are not needed.
    let moved = repos.path().join("elsewhere");
    fs::create_dir(&moved).unwrap();
    fs::rename(&b, moved.join("beta")).unwrap();
    ok(&nexis(root.path(), &config, &["eval"]));
    fs::rename(moved.join("beta"), &b).unwrap();

    // A tampered tree hash is caught once the path must be fetched again.
    let line = second
        .lines()
        .skip_while(|l| *l != "[inputs.b]")
        .find(|l| l.starts_with("tree-hash = "))
        .unwrap()
        .to_owned();
    let forged = "tree-hash = \"blake3-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"";
    fs::write(&lock_file, second.replace(&line, forged)).unwrap();
    let conf_dir = conf.path();
    ok(&Command::new(env!("CARGO_BIN_EXE_nexis"))
        .arg("--root")
        .arg(root.path())
        .arg("gc")
        .current_dir(conf_dir)
        .output()
        .unwrap());
    let tampered = nexis(root.path(), &config, &["eval"]);
    assert!(!tampered.status.success());
    let err = String::from_utf8_lossy(&tampered.stderr);
    assert!(
        err.contains("input `b` is not available") && err.contains("is not what nexis.lock says"),
        "{err}"
    );
}

/// The rev of input `name` in a lock file's text.
fn first_rev(lock: &str, name: &str) -> String {
    lock.lines()
        .skip_while(|l| *l != format!("[inputs.{name}]"))
        .find_map(|l| l.strip_prefix("rev = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_owned()
}

#[test]
fn fetch_prints_the_store_path_and_hashes() {
    let repos = tempfile::tempdir().unwrap();
    let a = repo(repos.path(), "alpha", 1_700_000_000);
    let root = tempfile::tempdir().unwrap();
    let none = root.path().join("no-config.toml");
    let reference = format!("git+file://{}", a.display());
    let (out, err) = ok(&nexis(root.path(), &none, &["fetch", &reference]));
    assert!(
        out.trim().starts_with("/nexis/store/") && out.trim().ends_with("-source"),
        "{out}"
    );
    let rev = git(&a, &["rev-parse", "HEAD"], 0);
    assert!(
        err.contains(&format!("rev {rev}")) && err.contains("tree blake3-"),
        "{err}"
    );
    let (json, _) = ok(&nexis(root.path(), &none, &["--json", "fetch", &reference]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["path"], out.trim());
    assert_eq!(v["rev"], rev.as_str());
    assert_eq!(v["last-modified"], 1_700_000_000);
    // A bad reference is named, with the part that is wrong.
    let bad = nexis(
        root.path(),
        &none,
        &["fetch", "git+https://example.org/r?rev=abc"],
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("`rev` must be 40"), "{err}");
}

/// Commit `nexis.toml` with `text` in the repository `dir`; the new rev.
fn commit_config(dir: &Path, text: &str, time: i64) -> String {
    fs::write(dir.join("nexis.toml"), text).unwrap();
    git(dir, &["add", "-A"], time);
    git(dir, &["commit", "-q", "-m", "inputs"], time);
    git(dir, &["rev-parse", "HEAD"], time)
}

#[test]
fn inputs_of_inputs_are_locked_transitively_and_follows_replaces_them() {
    let repos = tempfile::tempdir().unwrap();
    let base = repo(repos.path(), "base", 1_700_000_000);
    let core = repo(repos.path(), "core", 1_700_000_100);
    let mine = repo(repos.path(), "mine", 1_700_000_150);
    // `core`'s own input `base`, and a recipe of `core` that needs it.
    commit_config(
        &core,
        &format!("[inputs]\nbase = \"git+file://{}\"\n", base.display()),
        1_700_000_200,
    );
    fs::write(
        core.join("packages/core.toml"),
        "version = \"1.0\"\n[build]\nsystem = \"script\"\nscript = \"true\"\ndeps = [\"base#base\"]\n",
    )
    .unwrap();
    git(&core, &["commit", "-qam", "deps"], 1_700_000_300);
    let conf = tempfile::tempdir().unwrap();
    let config = conf.path().join("nexis.toml");
    let lock_file = conf.path().join("nexis.lock");
    let root = tempfile::tempdir().unwrap();
    fs::write(
        &config,
        format!(
            "[inputs]\ncore = \"git+file://{}\"\n[packages]\ninstall = [\"core#core\"]\n",
            core.display()
        ),
    )
    .unwrap();

    // The inner input is fetched and locked under `core/base`.
    let (_, err) = ok(&nexis(root.path(), &config, &["lock"]));
    assert!(
        err.contains("added core (") && err.contains("added core/base ("),
        "{err}"
    );
    let text = fs::read_to_string(&lock_file).unwrap();
    assert!(text.contains("[inputs.\"core/base\"]"), "{text}");
    assert!(
        text.contains(&git(&base, &["rev-parse", "HEAD"], 0)),
        "{text}"
    );
    let (out, _) = ok(&nexis(root.path(), &config, &["eval"]));
    assert!(out.contains("core/base#base 1.0"), "{out}");

    // A new upstream commit of the inner input changes nothing until it is updated by
    // its full name; then only it moves.
    let base2 = commit(&base, "base", "2.0", 1_700_000_400);
    let (_, err) = ok(&nexis(root.path(), &config, &["lock"]));
    assert!(err.contains("is up to date"), "{err}");
    let (_, err) = ok(&nexis(root.path(), &config, &["update", "core/base"]));
    assert!(
        err.contains("updated core/base") && !err.contains("updated core:"),
        "{err}"
    );
    assert!(fs::read_to_string(&lock_file).unwrap().contains(&base2));

    // `follows`: the inner input is this configuration's `base` instead; it is neither
    // fetched nor locked, and core's recipe builds against the outer one.
    fs::write(
        &config,
        format!(
            "[inputs]\nbase = \"git+file://{}\"\n\
             core = {{ url = \"git+file://{}\", follows = {{ base = \"base\" }} }}\n\
             [packages]\ninstall = [\"core#core\"]\n",
            mine.display(),
            core.display()
        ),
    )
    .unwrap();
    commit(&mine, "base", "3.0", 1_700_000_500);
    let (_, err) = ok(&nexis(root.path(), &config, &["lock"]));
    assert!(
        err.contains("added base (") && err.contains("removed core/base"),
        "{err}"
    );
    let text = fs::read_to_string(&lock_file).unwrap();
    assert!(!text.contains("core/base"), "{text}");
    let (out, _) = ok(&nexis(root.path(), &config, &["eval", "--json"]));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let core_pkg = json["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "core#core")
        .unwrap();
    assert_eq!(core_pkg["deps"], serde_json::json!(["base#base"]));
    assert_eq!(json["follows"]["core/base"], "base");

    // A follows that names no inner input is an error at its place.
    fs::write(
        &config,
        format!(
            "[inputs]\ncore = {{ url = \"git+file://{}\", follows = {{ bsae = \"core\" }} }}\n",
            core.display()
        ),
    )
    .unwrap();
    let o = nexis(root.path(), &config, &["eval"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("input `core` has no input `bsae`") && err.contains("nexis.toml:2:"),
        "{err}"
    );
}
