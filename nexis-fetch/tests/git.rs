//! `fetch_git` against fixture repositories built with the git CLI: over `file://`, a `git
//! daemon` (`git://`) and `git http-backend` behind a loopback HTTP server (`http://`).

mod common {
    pub(crate) mod git;
}

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use common::git::{Fixtures, GitDaemon, HttpBackend, Protocol};
use nexis_fetch::{GitError, GitFetched, GitSource, fetch_git};

/// Commit times of the fixture (seconds).
const T0: i64 = 1_700_000_000;

/// The commits of the standard fixture.
struct Revs {
    /// `main` at T0: README "one", run.sh (executable), link -> README; tag `v1` (lightweight).
    c1: String,
    /// `main` at T0+100: README "two"; tag `v2` (annotated).
    c2: String,
    /// `dev` at T0+200: adds dev.txt.
    c3: String,
    /// `main` at T0+300: adds the submodule `sub` (URL `../sub`).
    c4: String,
    /// `sub`'s only commit.
    sub: String,
}

/// Repositories `sub` and `main` (see [`Revs`]).
fn standard(fx: &Fixtures) -> Revs {
    fx.init("sub");
    fx.write("sub", "sub.txt", "submodule\n");
    let sub = fx.commit("sub", "sub", T0 - 1000);

    let main = fx.init("main");
    fx.write("main", "README", "one\n");
    fx.write("main", "bin/run.sh", "#!/bin/sh\necho hi\n");
    fs::set_permissions(main.join("bin/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("README", main.join("link")).unwrap();
    let c1 = fx.commit("main", "one", T0);
    fx.git("main", &["tag", "v1"], T0);

    fx.write("main", "README", "two\n");
    let c2 = fx.commit("main", "two", T0 + 100);
    fx.git("main", &["tag", "-a", "v2", "-m", "version 2"], T0 + 150);

    fx.git("main", &["checkout", "-q", "-b", "dev"], T0);
    fx.write("main", "dev.txt", "dev\n");
    let c3 = fx.commit("main", "dev", T0 + 200);
    fx.git("main", &["checkout", "-q", "main"], T0);

    fx.git(
        "main",
        &["submodule", "add", "-q", "../sub", "sub"],
        T0 + 300,
    );
    let c4 = fx.commit("main", "add sub", T0 + 300);
    Revs {
        c1,
        c2,
        c3,
        c4,
        sub,
    }
}

fn source(url: &str) -> GitSource<'_> {
    GitSource {
        url,
        reference: None,
        rev: None,
        shallow: false,
        submodules: false,
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Files and directories directly in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn default_branch_over_file_url() {
    let fx = Fixtures::new();
    let revs = standard(&fx);
    let url = fx.url("main");
    let dest = fx.path("out");
    let fetched = fetch_git(&source(&url), &fx.path("cache"), &dest).unwrap();
    assert_eq!(
        fetched,
        GitFetched {
            rev: revs.c4,
            reference: Some("refs/heads/main".to_owned()),
            commit_time: T0 + 300,
            revcount: Some(3),
        }
    );
    assert_eq!(
        names(&dest),
        [".gitmodules", "README", "bin", "link", "sub"]
    );
    assert_eq!(read(&dest.join("README")), "two\n");
    let run = fs::metadata(dest.join("bin/run.sh")).unwrap();
    assert_eq!(
        run.permissions().mode() & 0o111,
        0o111,
        "run.sh is executable"
    );
    assert_eq!(
        fs::metadata(dest.join("README"))
            .unwrap()
            .permissions()
            .mode()
            & 0o111,
        0,
        "README is not"
    );
    let link = fs::symlink_metadata(dest.join("link")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(
        fs::read_link(dest.join("link")).unwrap(),
        Path::new("README")
    );
    // Without submodules, the gitlink is an empty directory.
    assert!(dest.join("sub").is_dir());
    assert!(names(&dest.join("sub")).is_empty());
    // One bare cache repository and its lock file, named by the URL's hash.
    let name = &blake3::hash(url.as_bytes()).to_hex()[..32];
    assert_eq!(
        names(&fx.path("cache")),
        [format!("{name}.git"), format!("{name}.lock")]
    );
}

#[test]
fn branch_tags_and_old_revs() {
    let fx = Fixtures::new();
    let revs = standard(&fx);
    let url = fx.url("main");
    let cache = fx.path("cache");

    let dev = GitSource {
        reference: Some("dev"),
        shallow: true,
        ..source(&url)
    };
    let fetched = fetch_git(&dev, &cache, &fx.path("dev")).unwrap();
    assert_eq!(fetched.rev, revs.c3);
    assert_eq!(fetched.reference.as_deref(), Some("refs/heads/dev"));
    assert_eq!(fetched.commit_time, T0 + 200);
    assert_eq!(fetched.revcount, None, "the cache is shallow");
    assert_eq!(read(&fx.path("dev/dev.txt")), "dev\n");

    // A lightweight tag, by short name.
    let v1 = GitSource {
        reference: Some("v1"),
        ..source(&url)
    };
    let fetched = fetch_git(&v1, &cache, &fx.path("v1")).unwrap();
    assert_eq!(fetched.rev, revs.c1);
    assert_eq!(fetched.reference.as_deref(), Some("refs/tags/v1"));
    assert_eq!(read(&fx.path("v1/README")), "one\n");

    // An annotated tag, by full name: peeled to its commit.
    let v2 = GitSource {
        reference: Some("refs/tags/v2"),
        shallow: true,
        ..source(&url)
    };
    let fetched = fetch_git(&v2, &cache, &fx.path("v2")).unwrap();
    assert_eq!(fetched.rev, revs.c2);
    assert_eq!(
        fetched.commit_time,
        T0 + 100,
        "the commit's time, not the tag's"
    );
    assert_eq!(read(&fx.path("v2/README")), "two\n");

    // An old commit (not a tip) by rev alone, in a fresh cache.
    let old = GitSource {
        rev: Some(&revs.c1),
        shallow: true,
        ..source(&url)
    };
    let fetched = fetch_git(&old, &fx.path("cache2"), &fx.path("old")).unwrap();
    assert_eq!(fetched.rev, revs.c1);
    assert_eq!(fetched.reference, None);
    assert_eq!(fetched.commit_time, T0);
    assert_eq!(read(&fx.path("old/README")), "one\n");
    assert!(!fx.path("old/dev.txt").exists());
}

#[test]
fn rev_must_be_in_the_ref() {
    let fx = Fixtures::new();
    let revs = standard(&fx);
    let url = fx.url("main");
    let cache = fx.path("cache");

    // An older commit of main, with main: fetched in full to check it, so revcount is known.
    let in_main = GitSource {
        reference: Some("main"),
        rev: Some(&revs.c1),
        shallow: true,
        ..source(&url)
    };
    let fetched = fetch_git(&in_main, &cache, &fx.path("ok")).unwrap();
    assert_eq!(fetched.rev, revs.c1);
    assert_eq!(fetched.reference.as_deref(), Some("refs/heads/main"));
    assert_eq!(fetched.revcount, Some(1));

    let not_in_main = GitSource {
        reference: Some("main"),
        rev: Some(&revs.c3),
        ..source(&url)
    };
    let dest = fx.path("bad");
    let err = fetch_git(&not_in_main, &cache, &dest).unwrap_err();
    assert!(matches!(err, GitError::RevNotInRef { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("rev {} is not in ref refs/heads/main of {url}", revs.c3)
    );
    assert!(!dest.exists(), "no partial destination");
    assert_eq!(
        names(fx.root())
            .iter()
            .filter(|n| n.starts_with(".nexis"))
            .count(),
        0
    );
}

#[test]
fn unknown_refs_list_the_existing_ones() {
    let fx = Fixtures::new();
    standard(&fx);
    let url = fx.url("main");
    let missing = GitSource {
        reference: Some("nope"),
        ..source(&url)
    };
    let dest = fx.path("out");
    let err = fetch_git(&missing, &fx.path("cache"), &dest).unwrap_err();
    let GitError::RefNotFound { existing, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        existing,
        &[
            "refs/heads/dev",
            "refs/heads/main",
            "refs/tags/v1",
            "refs/tags/v2"
        ]
    );
    assert_eq!(
        err.to_string(),
        format!(
            "ref refs/heads/nope or refs/tags/nope not found in {url}; it has refs/heads/dev, \
             refs/heads/main, refs/tags/v1, refs/tags/v2"
        )
    );
    assert!(!dest.exists());
}

#[test]
fn bad_inputs_are_reported() {
    let fx = Fixtures::new();
    let revs = standard(&fx);
    let cache = fx.path("cache");
    let url = fx.url("main");

    fs::create_dir(fx.path("plain")).unwrap();
    let plain = fx.url("plain");
    let err = fetch_git(&source(&plain), &cache, &fx.path("a")).unwrap_err();
    assert_eq!(err.to_string(), format!("{plain} is not a git repository"));

    let gone = fx.url("gone");
    let err = fetch_git(&source(&gone), &cache, &fx.path("a")).unwrap_err();
    assert_eq!(err.to_string(), format!("{gone} does not exist"));

    let err = fetch_git(&source("ftp://x/y"), &cache, &fx.path("a")).unwrap_err();
    assert!(matches!(err, GitError::UnsupportedUrl { .. }), "{err:?}");

    let short = GitSource {
        rev: Some("abc"),
        ..source(&url)
    };
    let err = fetch_git(&short, &cache, &fx.path("a")).unwrap_err();
    assert!(matches!(err, GitError::InvalidRev { .. }), "{err:?}");

    // A well-formed commit id the remote does not have.
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let missing = GitSource {
        rev: Some(unknown),
        ..source(&url)
    };
    let err = fetch_git(&missing, &cache, &fx.path("a")).unwrap_err();
    assert_eq!(err.to_string(), format!("rev {unknown} not found in {url}"));

    fs::create_dir(fx.path("taken")).unwrap();
    let err = fetch_git(&source(&url), &cache, &fx.path("taken")).unwrap_err();
    assert!(matches!(err, GitError::DestinationExists { .. }), "{err:?}");

    assert!(!fx.path("a").exists());
    // The cache still works after all that.
    let pinned = GitSource {
        rev: Some(&revs.c2),
        ..source(&url)
    };
    fetch_git(&pinned, &cache, &fx.path("a")).unwrap();
}

#[test]
fn pinned_revs_are_served_from_the_cache_offline() {
    let fx = Fixtures::new();
    let revs = standard(&fx);
    let url = fx.url("main");
    let cache = fx.path("cache");
    let pinned = GitSource {
        rev: Some(&revs.c2),
        shallow: true,
        ..source(&url)
    };
    let with_ref = GitSource {
        reference: Some("main"),
        rev: Some(&revs.c4),
        shallow: true,
        ..source(&url)
    };
    fetch_git(&pinned, &cache, &fx.path("one")).unwrap();
    fetch_git(&with_ref, &cache, &fx.path("two")).unwrap();

    fs::remove_dir_all(fx.path("main")).unwrap();
    let fetched = fetch_git(&pinned, &cache, &fx.path("three")).unwrap();
    assert_eq!(fetched.rev, revs.c2);
    assert_eq!(fetched.commit_time, T0 + 100);
    assert_eq!(read(&fx.path("three/README")), "two\n");
    let fetched = fetch_git(&with_ref, &cache, &fx.path("four")).unwrap();
    assert_eq!(fetched.rev, revs.c4);
    assert_eq!(fetched.reference.as_deref(), Some("refs/heads/main"));

    // Anything else needs the remote, which is gone.
    let err = fetch_git(&source(&url), &cache, &fx.path("five")).unwrap_err();
    assert!(matches!(err, GitError::NoSuchRepository { .. }), "{err:?}");
}

#[test]
fn later_fetches_see_new_commits() {
    let fx = Fixtures::new();
    let revs = standard(&fx);
    let url = fx.url("main");
    let cache = fx.path("cache");
    let main = GitSource {
        reference: Some("main"),
        ..source(&url)
    };
    assert_eq!(
        fetch_git(&main, &cache, &fx.path("one")).unwrap().rev,
        revs.c4
    );

    fx.write("main", "new.txt", "new\n");
    let c5 = fx.commit("main", "five", T0 + 400);
    let fetched = fetch_git(&main, &cache, &fx.path("two")).unwrap();
    assert_eq!(fetched.rev, c5);
    assert_eq!(fetched.commit_time, T0 + 400);
    assert_eq!(fetched.revcount, Some(4));
    assert_eq!(read(&fx.path("two/new.txt")), "new\n");

    // A shallow cache follows too, and stays usable for the default branch.
    let shallow = GitSource {
        shallow: true,
        ..source(&url)
    };
    let cache2 = fx.path("cache2");
    assert_eq!(
        fetch_git(&shallow, &cache2, &fx.path("three")).unwrap().rev,
        c5
    );
    fx.write("main", "six.txt", "six\n");
    let c6 = fx.commit("main", "six", T0 + 500);
    let fetched = fetch_git(&shallow, &cache2, &fx.path("four")).unwrap();
    assert_eq!(fetched.rev, c6);
    assert_eq!(fetched.revcount, None);
    // Asking for full history of a shallow cache deepens it.
    let fetched = fetch_git(&source(&url), &cache2, &fx.path("five")).unwrap();
    assert_eq!(fetched.rev, c6);
    assert_eq!(fetched.revcount, Some(5));
}

#[test]
fn submodules_are_checked_out_when_asked() {
    let fx = Fixtures::new();
    let revs = standard(&fx);
    let url = fx.url("main");
    let with = GitSource {
        submodules: true,
        shallow: true,
        ..source(&url)
    };
    let dest = fx.path("with");
    let fetched = fetch_git(&with, &fx.path("cache"), &dest).unwrap();
    assert_eq!(fetched.rev, revs.c4);
    assert_eq!(read(&dest.join("sub/sub.txt")), "submodule\n");
    assert!(!dest.join("sub/.git").exists());
    assert!(!dest.join(".git").exists());
    let sub = fx.rev("main", "HEAD:sub");
    assert_eq!(sub, revs.sub, "the gitlink is sub's commit");

    let without = fx.path("without");
    fetch_git(&source(&url), &fx.path("cache"), &without).unwrap();
    assert!(without.join("sub").is_dir());
    assert!(names(&without.join("sub")).is_empty());
}

#[test]
fn concurrent_fetches_of_one_url_share_the_cache() {
    let fx = Fixtures::new();
    let revs = standard(&fx);
    let url = fx.url("main");
    let cache = fx.path("cache");
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (url, cache, dest) = (&url, &cache, fx.path(&format!("out{i}")));
                scope.spawn(move || fetch_git(&source(url), cache, &dest))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for result in results {
        assert_eq!(result.unwrap().rev, revs.c4);
    }
    assert_eq!(names(&cache).len(), 2, "one repository, one lock file");
}

#[test]
fn git_daemon() {
    let fx = Fixtures::new();
    let revs = standard(&fx);
    let daemon = GitDaemon::start(fx.root());
    let url = daemon.url("main");
    let shallow = GitSource {
        shallow: true,
        ..source(&url)
    };
    let fetched = fetch_git(&shallow, &fx.path("cache"), &fx.path("out")).unwrap();
    assert_eq!(fetched.rev, revs.c4);
    assert_eq!(fetched.reference.as_deref(), Some("refs/heads/main"));
    assert_eq!(read(&fx.path("out/README")), "two\n");

    let tagged = GitSource {
        reference: Some("v2"),
        submodules: true,
        ..source(&url)
    };
    let fetched = fetch_git(&tagged, &fx.path("cache"), &fx.path("v2")).unwrap();
    assert_eq!(fetched.rev, revs.c2);

    // The submodule's relative URL resolves against git://.
    let with = GitSource {
        submodules: true,
        ..source(&url)
    };
    fetch_git(&with, &fx.path("cache"), &fx.path("with")).unwrap();
    assert_eq!(read(&fx.path("with/sub/sub.txt")), "submodule\n");

    // A submodule at a local path is refused in a repository served from elsewhere.
    fx.init("local");
    let sub_path = fx.path("sub").display().to_string();
    fx.git("local", &["submodule", "add", "-q", &sub_path, "sub"], T0);
    fx.commit("local", "local sub", T0);
    let url = daemon.url("local");
    let local = GitSource {
        submodules: true,
        ..source(&url)
    };
    let err = fetch_git(&local, &fx.path("cache"), &fx.path("local-out")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("submodule sub of {url}: refusing its local URL {sub_path} in a remote repository")
    );
    assert!(!fx.path("local-out").exists());
}

#[test]
fn http_backend() {
    let fx = Fixtures::new();
    let revs = standard(&fx);
    let server = HttpBackend::start(fx.root(), Protocol::Any);
    let url = server.url("main");
    let cache = fx.path("cache");

    let shallow = GitSource {
        shallow: true,
        submodules: true,
        ..source(&url)
    };
    let fetched = fetch_git(&shallow, &cache, &fx.path("out")).unwrap();
    assert_eq!(fetched.rev, revs.c4);
    assert_eq!(fetched.reference.as_deref(), Some("refs/heads/main"));
    assert_eq!(read(&fx.path("out/README")), "two\n");
    assert_eq!(read(&fx.path("out/sub/sub.txt")), "submodule\n");

    let old = GitSource {
        reference: Some("main"),
        rev: Some(&revs.c1),
        ..source(&url)
    };
    let fetched = fetch_git(&old, &cache, &fx.path("old")).unwrap();
    assert_eq!(fetched.rev, revs.c1);
    assert_eq!(fetched.revcount, Some(1));

    let missing = GitSource {
        reference: Some("nope"),
        ..source(&url)
    };
    let err = fetch_git(&missing, &cache, &fx.path("x")).unwrap_err();
    assert!(matches!(err, GitError::RefNotFound { .. }), "{err:?}");

    let err = fetch_git(&source(&server.url("absent")), &cache, &fx.path("x")).unwrap_err();
    assert!(matches!(err, GitError::Connect { .. }), "{err:?}");
    assert!(!fx.path("x").exists());
}

#[test]
fn protocol_v0_servers_serve_tips_only_so_old_revs_come_with_full_history() {
    let fx = Fixtures::new();
    let revs = standard(&fx);
    let server = HttpBackend::start(fx.root(), Protocol::V0);
    let url = server.url("main");
    let cache = fx.path("cache");

    let tip = GitSource {
        shallow: true,
        ..source(&url)
    };
    let fetched = fetch_git(&tip, &cache, &fx.path("tip")).unwrap();
    assert_eq!(fetched.rev, revs.c4);
    assert_eq!(read(&fx.path("tip/README")), "two\n");
    // Not asserted: whether the history is shallow. gix 0.90 sends the `deepen-relative`
    // capability to v0/v1 servers, which makes `deepen 1` relative to a boundary the empty
    // cache does not have, so such servers send everything (v2 servers are not affected).

    // c1 is no tip: asking for it by id is refused, so every branch and tag is fetched.
    let old = GitSource {
        rev: Some(&revs.c1),
        shallow: true,
        ..source(&url)
    };
    let fetched = fetch_git(&old, &fx.path("cache2"), &fx.path("old")).unwrap();
    assert_eq!(fetched.rev, revs.c1);
    assert_eq!(fetched.revcount, Some(1));
    assert_eq!(read(&fx.path("old/README")), "one\n");
}

#[test]
fn unsafe_trees_are_refused_without_leaving_anything() {
    let fx = Fixtures::new();
    standard(&fx);
    // A tree git itself would not check out: a `.GIT` directory next to a normal file.
    let blob = fx.git_with_input("main", &["hash-object", "-w", "--stdin"], "x\n");
    let inner = fx.git_with_input(
        "main",
        &["mktree"],
        &format!("100644 blob {blob}\tconfig\n"),
    );
    let tree = fx.git_with_input(
        "main",
        &["mktree"],
        &format!("100644 blob {blob}\ta\n040000 tree {inner}\t.GIT\n"),
    );
    let commit = fx.git("main", &["commit-tree", &tree, "-m", "evil"], T0);
    fx.git("main", &["update-ref", "refs/heads/evil", &commit], T0);

    let url = fx.url("main");
    let evil = GitSource {
        reference: Some("evil"),
        ..source(&url)
    };
    let out = fx.path("out");
    fs::create_dir(&out).unwrap();
    let dest = out.join("evil");
    let err = fetch_git(&evil, &fx.path("cache"), &dest).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("refusing to check out \".GIT\" from {url}: unsafe name in the tree")
    );
    assert!(
        names(&out).is_empty(),
        "no destination, no staging directory"
    );
}
