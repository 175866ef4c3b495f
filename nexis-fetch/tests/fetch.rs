//! `Fetcher`: inputs into a real store on a temporary root — a git repository over
//! `file://`, a tarball and a plain file over a loopback HTTP server — and locked inputs
//! realised again, offline when their path is valid, refused when the lock was tampered
//! with; and the lock files the fuzzer kept (`tests/fixtures/fuzzed-lock/`).

#[allow(dead_code, reason = "this binary uses part of the shared fixtures")]
mod common {
    pub(crate) mod files;
    pub(crate) mod git;
    pub(crate) mod server;
}

use std::fs;
use std::path::Path;

use common::files::{names, replay_fuzzed};
use common::git::Fixtures;
use common::server::{Server, respond};
use nexis_fetch::{FetchError, Fetcher, Hash, HashAlgo, Lock, LockedSource};
use nexis_store::{GcOptions, Store};

const T0: i64 = 1_700_000_000;

/// A tar.gz of `pkg-1.0/README` and an executable `pkg-1.0/bin/run`.
fn tarball() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, body, mode) in [
        ("pkg-1.0/README", &b"read me\n"[..], 0o644),
        ("pkg-1.0/bin/run", &b"#!/bin/sh\necho run\n"[..], 0o755),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, path, body).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn sha256(bytes: &[u8]) -> Hash {
    use sha2::Digest as _;
    Hash {
        algo: HashAlgo::Sha256,
        digest: sha2::Sha256::digest(bytes).into(),
    }
}

/// Drop every temp root and collect garbage: nothing is rooted in these tests.
fn collect_everything(root: &Path) {
    let store = Store::open(root).unwrap();
    let report = store
        .collect_garbage(GcOptions::default(), &|_| {})
        .unwrap();
    assert!(!report.deleted.is_empty());
}

#[test]
fn git_inputs_are_fetched_locked_and_realised_offline() {
    let fx = Fixtures::new();
    fx.init("repo");
    fx.write("repo", "packages/hello.toml", "name = \"hello\"\n");
    let rev = fx.commit("repo", "one", T0);
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let fetcher = Fetcher::new(&store);

    let original = format!("git+{}?ref=main", fx.url("repo"));
    let fetched = fetcher.fetch(&original).unwrap();
    assert_eq!(fetched.path.name(), "source");
    assert_eq!(
        fs::read_to_string(store.physical(&fetched.path).join("packages/hello.toml")).unwrap(),
        "name = \"hello\"\n"
    );
    let LockedSource::Git {
        rev: locked_rev,
        reference,
        last_modified,
        ..
    } = &fetched.locked.source
    else {
        panic!("{:?}", fetched.locked)
    };
    assert_eq!(*locked_rev, rev);
    assert_eq!(reference.as_deref(), Some("refs/heads/main"));
    assert_eq!(*last_modified, T0);
    let locked = fetched.locked.clone();

    // `hash=` on a git input pins the tree: the right blake3 tree hash is accepted, a
    // wrong one refused, and a sha256 cannot pin a tree.
    let pinned = format!("{original}&hash={}", locked.tree_hash);
    assert_eq!(fetcher.fetch(&pinned).unwrap().path, fetched.path);
    let wrong = format!("{original}&hash=blake3-{}", "A".repeat(43) + "=");
    let err = fetcher.fetch(&wrong).unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::TreeHash {
                pinned_by: "its `hash=`",
                ..
            }
        ),
        "{err}"
    );
    let sha = format!("{original}&hash={}", sha256(b"x"));
    let err = fetcher.fetch(&sha).unwrap_err();
    assert!(matches!(err, FetchError::TreeHashAlgo { .. }), "{err}");

    // A new commit upstream does not move the locked input.
    fx.write("repo", "packages/hello.toml", "name = \"hello\" # two\n");
    fx.commit("repo", "two", T0 + 60);
    assert_eq!(fetcher.realise(&locked).unwrap(), fetched.path);
    // Fetching afresh does.
    assert_ne!(fetcher.fetch(&original).unwrap().path, fetched.path);

    // Valid: no network at all (the repository is gone).
    fs::rename(fx.path("repo"), fx.path("moved")).unwrap();
    assert_eq!(fetcher.realise(&locked).unwrap(), fetched.path);

    // Collected: fetched again at the locked rev (from the git cache) and checked.
    drop(fetcher);
    drop(store);
    collect_everything(root.path());
    let store = Store::open(root.path()).unwrap();
    let fetcher = Fetcher::new(&store);
    assert!(!store.with_db(|db| db.is_valid(&fetched.path)).unwrap());
    assert_eq!(fetcher.realise(&locked).unwrap(), fetched.path);

    // A lock whose tree hash was edited is refused, and nothing is added for it.
    let mut tampered = locked.clone();
    tampered.tree_hash = Hash {
        algo: HashAlgo::Blake3,
        digest: [7; 32],
    };
    let err = fetcher.realise(&tampered).unwrap_err();
    assert!(matches!(err, FetchError::TreeHash { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("is not what nexis.lock says") && text.contains("expected blake3-Bw"),
        "{text}"
    );
}

#[test]
fn archives_and_files_over_http() {
    let archive = tarball();
    let served = archive.clone();
    let server = Server::start(move |req, stream| match req.path.as_str() {
        "/pkg-1.0.tar.gz" => respond(stream, "200 OK", &[], &served),
        "/fix.patch" => respond(stream, "200 OK", &[], b"--- a\n+++ b\n"),
        _ => respond(stream, "404 Not Found", &[], b"no"),
    });
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let fetcher = Fetcher::new(&store);

    // Pinned by the file's sha256: unpacked, top directory stripped, executable kept.
    let url = server.url("/pkg-1.0.tar.gz");
    let pinned = format!("{url}?hash={}", sha256(&archive));
    let fetched = fetcher.fetch(&pinned).unwrap();
    let tree = store.physical(&fetched.path);
    assert_eq!(fs::read(tree.join("README")).unwrap(), b"read me\n");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &fs::metadata(tree.join("bin/run")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o555);
    assert_eq!(
        fetched.locked.source,
        LockedSource::Url {
            url: url.clone(),
            file_hash: sha256(&archive),
            unpack: true
        }
    );
    // The same bytes without a pin: the same path, and the lock pins sha256.
    let unpinned = fetcher.fetch(&url).unwrap();
    assert_eq!(unpinned.path, fetched.path);

    // A wrong pin: refused with both hashes, nothing added.
    let valid_before = store.with_db(|db| db.all_valid()).unwrap();
    let wrong = format!("{url}?hash={}", sha256(b"other"));
    let err = fetcher.fetch(&wrong).unwrap_err();
    let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        text.contains(&sha256(&archive).to_string())
            && text.contains(&sha256(b"other").to_string()),
        "{text}"
    );
    assert_eq!(store.with_db(|db| db.all_valid()).unwrap(), valid_before);

    // A plain file keeps its name.
    let patch = fetcher.fetch(&server.url("/fix.patch")).unwrap();
    assert_eq!(patch.path.name(), "fix.patch");
    assert_eq!(
        fs::read(store.physical(&patch.path)).unwrap(),
        b"--- a\n+++ b\n"
    );
    assert_eq!(fetcher.realise(&patch.locked).unwrap(), patch.path);

    // Not found: the error names the URL.
    let err = fetcher.fetch(&server.url("/missing.tar.gz")).unwrap_err();
    let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        text.contains("/missing.tar.gz") && text.contains("404"),
        "{text}"
    );

    // Path inputs are not fetched.
    let err = fetcher.fetch("path:./packages").unwrap_err();
    assert!(matches!(err, FetchError::PathInput { .. }), "{err}");
}

/// A tar whose second entry climbs out of the tree, built from raw headers (the tar
/// writer refuses `..`).
fn escaping_tarball() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, body) in [
        ("pkg/ok", &b"fine\n"[..]),
        ("pkg/../../evil", &b"owned\n"[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, body).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn a_hostile_archive_leaves_nothing_in_the_store() {
    let bad = escaping_tarball();
    let server = Server::start(move |_, stream| respond(stream, "200 OK", &[], &bad));
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let fetcher = Fetcher::new(&store);
    let url = server.url("/evil-1.0.tar");
    let err = fetcher.fetch(&url).unwrap_err();
    assert!(matches!(err, FetchError::Unpack { .. }), "{err}");
    let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(text.contains("pkg/../../evil"), "{text}");
    // Nothing valid, nothing in the store directory, nothing left in its temporary area,
    // and nothing written outside.
    assert!(store.with_db(|db| db.all_valid()).unwrap().is_empty());
    assert_eq!(names(store.store_dir()), [".links", ".tmp", ".trash"]);
    assert!(names(&store.store_dir().join(".tmp")).is_empty());
    assert!(!root.path().join("nexis/evil").exists() && !root.path().join("evil").exists());
}

/// Every lock file the fuzzer kept (the seeds, inputs reaching each error of the parser
/// and each type, and any crash input) parses to a lock that prints to a text parsing
/// back to the same lock, printed the same again, or fails with an error naming the
/// file, a line and a column.
#[test]
fn fuzzed_lock_files_are_handled() {
    let (parsed, refused) = replay_fuzzed("fuzzed-lock", |file, text| {
        let name = file.display();
        match Lock::parse(text, Path::new("nexis.lock")) {
            Ok(lock) => {
                let printed = lock.to_text();
                let again = Lock::parse(&printed, Path::new("printed"))
                    .unwrap_or_else(|e| panic!("{name}: the printed lock does not parse: {e}"));
                assert_eq!(again, lock, "{name}");
                assert_eq!(again.to_text(), printed, "{name}");
                true
            }
            Err(e) => {
                assert!(e.line >= 1 && e.column >= 1, "{name}: {e}");
                assert!(e.to_string().starts_with("nexis.lock:"), "{name}: {e}");
                false
            }
        }
    });
    assert!(
        parsed >= 7 && refused >= 20,
        "{parsed} parsed, {refused} refused"
    );
}
