//! `fetch_git` against fixture repositories built with the git CLI: over `file://`, a `git
//! daemon` (`git://`) and `git http-backend` behind a loopback HTTP server (`http://`).

mod common {
    pub(crate) mod files;
    pub(crate) mod git;
}

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use common::files::names;
use common::git::{Fixtures, GitDaemon, HttpBackend, Protocol};
use nexis_fetch::{
    GitError, GitFetched, GitProgress, GitSource, fetch_git, fetch_git_with_progress,
};

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

/// The standard fixture: repositories `sub` and `main` (see [`Revs`]) in a fixture
/// directory that also holds the caches and checkouts the test fetches into.
struct Standard {
    fx: Fixtures,
    revs: Revs,
    /// The `file://` URL of `main`.
    url: String,
}

impl Standard {
    fn new() -> Self {
        let fx = Fixtures::new();
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
        let url = fx.url("main");
        let revs = Revs {
            c1,
            c2,
            c3,
            c4,
            sub,
        };
        Self { fx, revs, url }
    }

    /// Fetch `source` through the cache repository directory `cache` into `dest`, both
    /// named inside the fixture directory.
    fn fetch_in(
        &self,
        cache: &str,
        source: &GitSource<'_>,
        dest: &str,
    ) -> Result<GitFetched, GitError> {
        fetch_git(source, &self.fx.path(cache), &self.fx.path(dest))
    }

    /// [`Self::fetch_in`] the test's usual cache, `cache`.
    fn fetch(&self, source: &GitSource<'_>, dest: &str) -> Result<GitFetched, GitError> {
        self.fetch_in("cache", source, dest)
    }

    /// A file under the fixture directory (`out/README`), as text.
    fn read(&self, file: &str) -> String {
        let path = self.fx.path(file);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// Whether `path` exists under the fixture directory.
    fn exists(&self, path: &str) -> bool {
        self.fx.path(path).exists()
    }
}

/// The whole history of `url`'s default branch, without submodules.
fn source(url: &str) -> GitSource<'_> {
    GitSource {
        url,
        reference: None,
        rev: None,
        shallow: false,
        submodules: false,
    }
}

/// The options of a [`GitSource`], one call each, named as a reference's query names
/// them: `source(&url).reference("dev").shallow()`.
trait Options<'a> {
    fn reference(self, name: &'a str) -> Self;
    fn rev(self, id: &'a str) -> Self;
    fn shallow(self) -> Self;
    fn submodules(self) -> Self;
}

impl<'a> Options<'a> for GitSource<'a> {
    fn reference(mut self, name: &'a str) -> Self {
        self.reference = Some(name);
        self
    }

    fn rev(mut self, id: &'a str) -> Self {
        self.rev = Some(id);
        self
    }

    fn shallow(mut self) -> Self {
        self.shallow = true;
        self
    }

    fn submodules(mut self) -> Self {
        self.submodules = true;
        self
    }
}

/// The permission bits of `path` that make it executable.
fn exec_bits(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o111
}

#[test]
fn default_branch_over_file_url() {
    let t = Standard::new();
    let fetched = t.fetch(&source(&t.url), "out").unwrap();
    assert_eq!(
        fetched,
        GitFetched {
            rev: t.revs.c4.clone(),
            reference: Some("refs/heads/main".to_owned()),
            commit_time: T0 + 300,
            revcount: Some(3),
        }
    );
    let dest = t.fx.path("out");
    assert_eq!(
        names(&dest),
        [".gitmodules", "README", "bin", "link", "sub"]
    );
    assert_eq!(t.read("out/README"), "two\n");
    assert_eq!(
        exec_bits(&dest.join("bin/run.sh")),
        0o111,
        "run.sh is executable"
    );
    assert_eq!(exec_bits(&dest.join("README")), 0, "README is not");
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
    let name = &blake3::hash(t.url.as_bytes()).to_hex()[..32];
    assert_eq!(
        names(&t.fx.path("cache")),
        [format!("{name}.git"), format!("{name}.lock")]
    );
}

#[test]
fn branch_tags_and_old_revs() {
    let t = Standard::new();
    let fetched = t
        .fetch(&source(&t.url).reference("dev").shallow(), "dev")
        .unwrap();
    assert_eq!(fetched.rev, t.revs.c3);
    assert_eq!(fetched.reference.as_deref(), Some("refs/heads/dev"));
    assert_eq!(fetched.commit_time, T0 + 200);
    assert_eq!(fetched.revcount, None, "the cache is shallow");
    assert_eq!(t.read("dev/dev.txt"), "dev\n");

    // A lightweight tag, by short name.
    let fetched = t.fetch(&source(&t.url).reference("v1"), "v1").unwrap();
    assert_eq!(fetched.rev, t.revs.c1);
    assert_eq!(fetched.reference.as_deref(), Some("refs/tags/v1"));
    assert_eq!(t.read("v1/README"), "one\n");

    // An annotated tag, by full name: peeled to its commit.
    let v2 = source(&t.url).reference("refs/tags/v2").shallow();
    let fetched = t.fetch(&v2, "v2").unwrap();
    assert_eq!(fetched.rev, t.revs.c2);
    assert_eq!(
        fetched.commit_time,
        T0 + 100,
        "the commit's time, not the tag's"
    );
    assert_eq!(t.read("v2/README"), "two\n");

    // An old commit (not a tip) by rev alone, in a fresh cache.
    let old = source(&t.url).rev(&t.revs.c1).shallow();
    let fetched = t.fetch_in("cache2", &old, "old").unwrap();
    assert_eq!(fetched.rev, t.revs.c1);
    assert_eq!(fetched.reference, None);
    assert_eq!(fetched.commit_time, T0);
    assert_eq!(t.read("old/README"), "one\n");
    assert!(!t.exists("old/dev.txt"));
}

#[test]
fn rev_must_be_in_the_ref() {
    let t = Standard::new();
    // An older commit of main, with main: fetched in full to check it, so revcount is known.
    let in_main = source(&t.url).reference("main").rev(&t.revs.c1).shallow();
    let fetched = t.fetch(&in_main, "ok").unwrap();
    assert_eq!(fetched.rev, t.revs.c1);
    assert_eq!(fetched.reference.as_deref(), Some("refs/heads/main"));
    assert_eq!(fetched.revcount, Some(1));

    let not_in_main = source(&t.url).reference("main").rev(&t.revs.c3);
    let err = t.fetch(&not_in_main, "bad").unwrap_err();
    assert!(matches!(err, GitError::RevNotInRef { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "rev {} is not in ref refs/heads/main of {}",
            t.revs.c3, t.url
        )
    );
    assert!(!t.exists("bad"), "no partial destination");
    assert_eq!(
        names(t.fx.root())
            .iter()
            .filter(|n| n.starts_with(".nexis"))
            .count(),
        0
    );
}

#[test]
fn unknown_refs_list_the_existing_ones() {
    let t = Standard::new();
    let err = t
        .fetch(&source(&t.url).reference("nope"), "out")
        .unwrap_err();
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
            "ref refs/heads/nope or refs/tags/nope not found in {}; it has refs/heads/dev, \
             refs/heads/main, refs/tags/v1, refs/tags/v2",
            t.url
        )
    );
    assert!(!t.exists("out"));
}

#[test]
fn bad_inputs_are_reported() {
    let t = Standard::new();
    let url = &t.url;
    let failure = |source: &GitSource<'_>| t.fetch(source, "a").unwrap_err();

    fs::create_dir(t.fx.path("plain")).unwrap();
    let plain = t.fx.url("plain");
    let err = failure(&source(&plain));
    assert_eq!(err.to_string(), format!("{plain} is not a git repository"));

    let gone = t.fx.url("gone");
    let err = failure(&source(&gone));
    assert_eq!(err.to_string(), format!("{gone} does not exist"));

    let err = failure(&source("ftp://x/y"));
    assert!(matches!(err, GitError::UnsupportedUrl { .. }), "{err:?}");

    let err = failure(&source(url).rev("abc"));
    assert!(matches!(err, GitError::InvalidRev { .. }), "{err:?}");

    // A well-formed commit id the remote does not have.
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let err = failure(&source(url).rev(unknown));
    assert_eq!(err.to_string(), format!("rev {unknown} not found in {url}"));

    fs::create_dir(t.fx.path("taken")).unwrap();
    let err = t.fetch(&source(url), "taken").unwrap_err();
    assert!(matches!(err, GitError::DestinationExists { .. }), "{err:?}");

    assert!(!t.exists("a"));
    // The cache still works after all that.
    t.fetch(&source(url).rev(&t.revs.c2), "a").unwrap();
}

#[test]
fn pinned_revs_are_served_from_the_cache_offline() {
    let t = Standard::new();
    let pinned = source(&t.url).rev(&t.revs.c2).shallow();
    let with_ref = source(&t.url).reference("main").rev(&t.revs.c4).shallow();
    t.fetch(&pinned, "one").unwrap();
    t.fetch(&with_ref, "two").unwrap();

    fs::remove_dir_all(t.fx.path("main")).unwrap();
    let fetched = t.fetch(&pinned, "three").unwrap();
    assert_eq!(fetched.rev, t.revs.c2);
    assert_eq!(fetched.commit_time, T0 + 100);
    assert_eq!(t.read("three/README"), "two\n");
    let fetched = t.fetch(&with_ref, "four").unwrap();
    assert_eq!(fetched.rev, t.revs.c4);
    assert_eq!(fetched.reference.as_deref(), Some("refs/heads/main"));

    // Anything else needs the remote, which is gone.
    let err = t.fetch(&source(&t.url), "five").unwrap_err();
    assert!(matches!(err, GitError::NoSuchRepository { .. }), "{err:?}");
}

#[test]
fn later_fetches_see_new_commits() {
    let t = Standard::new();
    let main = source(&t.url).reference("main");
    assert_eq!(t.fetch(&main, "one").unwrap().rev, t.revs.c4);

    t.fx.write("main", "new.txt", "new\n");
    let c5 = t.fx.commit("main", "five", T0 + 400);
    let fetched = t.fetch(&main, "two").unwrap();
    assert_eq!(fetched.rev, c5);
    assert_eq!(fetched.commit_time, T0 + 400);
    assert_eq!(fetched.revcount, Some(4));
    assert_eq!(t.read("two/new.txt"), "new\n");

    // A shallow cache follows too, and stays usable for the default branch.
    let shallow = source(&t.url).shallow();
    assert_eq!(t.fetch_in("cache2", &shallow, "three").unwrap().rev, c5);
    t.fx.write("main", "six.txt", "six\n");
    let c6 = t.fx.commit("main", "six", T0 + 500);
    let fetched = t.fetch_in("cache2", &shallow, "four").unwrap();
    assert_eq!(fetched.rev, c6);
    assert_eq!(fetched.revcount, None);
    // Asking for full history of a shallow cache deepens it.
    let fetched = t.fetch_in("cache2", &source(&t.url), "five").unwrap();
    assert_eq!(fetched.rev, c6);
    assert_eq!(fetched.revcount, Some(5));
}

#[test]
fn submodules_are_checked_out_when_asked() {
    let t = Standard::new();
    let fetched = t
        .fetch(&source(&t.url).submodules().shallow(), "with")
        .unwrap();
    assert_eq!(fetched.rev, t.revs.c4);
    assert_eq!(t.read("with/sub/sub.txt"), "submodule\n");
    assert!(!t.exists("with/sub/.git"));
    assert!(!t.exists("with/.git"));
    let sub = t.fx.rev("main", "HEAD:sub");
    assert_eq!(sub, t.revs.sub, "the gitlink is sub's commit");

    t.fetch(&source(&t.url), "without").unwrap();
    let without = t.fx.path("without");
    assert!(without.join("sub").is_dir());
    assert!(names(&without.join("sub")).is_empty());
}

#[test]
fn concurrent_fetches_of_one_url_share_the_cache() {
    let t = Standard::new();
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let t = &t;
                scope.spawn(move || t.fetch(&source(&t.url), &format!("out{i}")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for result in results {
        assert_eq!(result.unwrap().rev, t.revs.c4);
    }
    assert_eq!(
        names(&t.fx.path("cache")).len(),
        2,
        "one repository, one lock file"
    );
}

#[test]
fn git_daemon() {
    let t = Standard::new();
    let daemon = GitDaemon::start(t.fx.root());
    let url = daemon.url("main");
    let fetched = t.fetch(&source(&url).shallow(), "out").unwrap();
    assert_eq!(fetched.rev, t.revs.c4);
    assert_eq!(fetched.reference.as_deref(), Some("refs/heads/main"));
    assert_eq!(t.read("out/README"), "two\n");

    let tagged = source(&url).reference("v2").submodules();
    assert_eq!(t.fetch(&tagged, "v2").unwrap().rev, t.revs.c2);

    // The submodule's relative URL resolves against git://.
    t.fetch(&source(&url).submodules(), "with").unwrap();
    assert_eq!(t.read("with/sub/sub.txt"), "submodule\n");

    // A submodule at a local path is refused in a repository served from elsewhere.
    t.fx.init("local");
    let sub_path = t.fx.path("sub").display().to_string();
    t.fx.git("local", &["submodule", "add", "-q", &sub_path, "sub"], T0);
    t.fx.commit("local", "local sub", T0);
    let url = daemon.url("local");
    let err = t
        .fetch(&source(&url).submodules(), "local-out")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("submodule sub of {url}: refusing its local URL {sub_path} in a remote repository")
    );
    assert!(!t.exists("local-out"));
}

#[test]
fn http_backend() {
    let t = Standard::new();
    let server = HttpBackend::start(t.fx.root(), Protocol::Any);
    let url = server.url("main");

    let fetched = t
        .fetch(&source(&url).shallow().submodules(), "out")
        .unwrap();
    assert_eq!(fetched.rev, t.revs.c4);
    assert_eq!(fetched.reference.as_deref(), Some("refs/heads/main"));
    assert_eq!(t.read("out/README"), "two\n");
    assert_eq!(t.read("out/sub/sub.txt"), "submodule\n");

    let old = source(&url).reference("main").rev(&t.revs.c1);
    let fetched = t.fetch(&old, "old").unwrap();
    assert_eq!(fetched.rev, t.revs.c1);
    assert_eq!(fetched.revcount, Some(1));

    let err = t.fetch(&source(&url).reference("nope"), "x").unwrap_err();
    assert!(matches!(err, GitError::RefNotFound { .. }), "{err:?}");

    let err = t.fetch(&source(&server.url("absent")), "x").unwrap_err();
    assert!(matches!(err, GitError::Connect { .. }), "{err:?}");
    assert!(!t.exists("x"));
}

#[test]
fn protocol_v0_servers_serve_tips_only_so_old_revs_come_with_full_history() {
    let t = Standard::new();
    let server = HttpBackend::start(t.fx.root(), Protocol::V0);
    let url = server.url("main");

    let fetched = t.fetch(&source(&url).shallow(), "tip").unwrap();
    assert_eq!(fetched.rev, t.revs.c4);
    assert_eq!(t.read("tip/README"), "two\n");
    // Not asserted: whether the history is shallow. gix 0.90 sends the `deepen-relative`
    // capability to v0/v1 servers, which makes `deepen 1` relative to a boundary the empty
    // cache does not have, so such servers send everything (v2 servers are not affected).

    // c1 is no tip: asking for it by id is refused, so every branch and tag is fetched.
    let old = source(&url).rev(&t.revs.c1).shallow();
    let fetched = t.fetch_in("cache2", &old, "old").unwrap();
    assert_eq!(fetched.rev, t.revs.c1);
    assert_eq!(fetched.revcount, Some(1));
    assert_eq!(t.read("old/README"), "one\n");
}

#[test]
fn unsafe_trees_are_refused_without_leaving_anything() {
    let t = Standard::new();
    let fx = &t.fx;
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

    fs::create_dir(fx.path("out")).unwrap();
    let err = t
        .fetch(&source(&t.url).reference("evil"), "out/evil")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "refusing to check out \".GIT\" from {}: unsafe name in the tree",
            t.url
        )
    );
    assert!(
        names(&fx.path("out")).is_empty(),
        "no destination, no staging directory"
    );
}

#[test]
fn progress_counts_objects_and_bytes() {
    let fx = Fixtures::new();
    fx.init("big");
    // 3,000 incompressible blobs: a pack of about 12 MB, which takes a while to index.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..3000 {
        let text: String = (0..4096)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                char::from(b'a' + (seed % 26) as u8)
            })
            .collect();
        fx.write("big", &format!("f{}/{i}", i % 30), &text);
    }
    fx.commit("big", "big", T0);
    let url = fx.url("big");
    let seen = std::sync::Mutex::new(Vec::new());
    let report = |p: GitProgress| seen.lock().unwrap().push(p);
    fetch_git_with_progress(&source(&url), &report, &fx.path("cache"), &fx.path("out")).unwrap();
    let seen = seen.into_inner().unwrap();
    let last = seen.last().expect("progress was reported");
    // 3,000 blobs, 31 trees, 1 commit.
    assert_eq!(last.total_objects, Some(3032), "{seen:?}");
    assert!(last.objects <= 3032 && last.bytes > 0, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0].bytes <= w[1].bytes),
        "bytes only grow: {seen:?}"
    );
    assert_eq!(fs::read_dir(fx.path("out/f7")).unwrap().count(), 100);
}
