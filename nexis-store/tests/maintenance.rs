//! Verifying, optimising and reading inside the store, on temporary roots.

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use nexis_store::{BrowseError, Compression, Problem, Store, StoreEntryKind, StorePath};

fn tree(dir: &Path) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("share/doc")).unwrap();
    fs::write(dir.join("bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(dir.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("share/doc/README"), "read me\n").unwrap();
    fs::write(dir.join("share/data"), vec![3u8; 2 << 20]).unwrap();
    std::os::unix::fs::symlink("../bin/tool", dir.join("share/link")).unwrap();
}

fn add(store: &Store, src: &Path, name: &str, build: impl FnOnce(&Path)) -> StorePath {
    let dir = src.join(name);
    build(&dir);
    store.add_path(&dir, None).unwrap().path
}

/// Make a directory of a store path writable, run `f`, and put mode and mtime back.
fn edit_dir(dir: &Path, f: impl FnOnce()) {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    f();
    fs::File::open(dir)
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(1))
        .unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
}

fn kinds(problems: &[Problem]) -> Vec<(&'static str, String)> {
    problems
        .iter()
        .map(|p| {
            (
                p.kind(),
                p.path().map(ToString::to_string).unwrap_or_default(),
            )
        })
        .collect()
}

/// Four paths: a tree (`a`), a directory (`b`), a file (`c`), a directory (`d`).
fn four_paths(store: &Store, src: &Path) -> [StorePath; 4] {
    let a = add(store, src, "a", tree);
    let b = add(store, src, "b", |d| {
        fs::create_dir(d).unwrap();
        fs::write(d.join("x"), "bee\n").unwrap();
    });
    let c = add(store, src, "c", |d| fs::write(d, "sea\n").unwrap());
    let d = add(store, src, "d", |d| {
        fs::create_dir(d).unwrap();
        fs::write(d.join("y"), "dee\n").unwrap();
    });

    [a, b, c, d]
}

/// Damage the four paths: a file of `a` modified, `b` removed, `c` writable and setuid
/// (content intact), `d` with an extra file and a writable directory.
fn damage(store: &Store, [a, b, c, d]: &[StorePath; 4]) {
    // a: a byte of a file changes (through a copy: the original inode is shared with
    // `.links/`), mode and mtime put back.
    let a_dir = store.physical(a).join("share/doc");
    edit_dir(&a_dir, || {
        let readme = a_dir.join("README");
        fs::remove_file(&readme).unwrap();
        fs::write(&readme, "read ME\n").unwrap();
        let f = fs::File::options().write(true).open(&readme).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(1)).unwrap();
        fs::set_permissions(&readme, fs::Permissions::from_mode(0o444)).unwrap();
    });
    // b: gone.
    nexis_store::remove_tree(&store.physical(b)).unwrap();
    // c: writable and setuid.
    fs::set_permissions(store.physical(c), fs::Permissions::from_mode(0o4644)).unwrap();
    // d: a directory with another mtime, and an extra file (another archive size).
    let d_dir = store.physical(d);
    fs::set_permissions(&d_dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(d_dir.join("extra"), "").unwrap();
    fs::set_permissions(d_dir.join("extra"), fs::Permissions::from_mode(0o444)).unwrap();
    fs::File::open(d_dir.join("extra"))
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(1))
        .unwrap();
    fs::set_permissions(&d_dir, fs::Permissions::from_mode(0o555)).unwrap();
}

#[test]
fn verify_finds_modified_missing_and_non_canonical_paths() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let paths = four_paths(&store, src.path());
    let [a, b, c, d] = paths.clone();

    let report = store.verify(None, &|_| {}).unwrap();
    assert_eq!(report.checked, 4);
    assert!(report.is_clean(), "{:?}", report.problems);
    damage(&store, &paths);

    let report = store.verify(None, &|_| {}).unwrap();
    let mut found = kinds(&report.problems);
    found.sort();
    let mut expected = vec![
        ("hash-mismatch", a.to_string()),
        ("missing", b.to_string()),
        ("metadata", c.to_string()),
        ("hash-mismatch", d.to_string()),
        ("metadata", d.to_string()),
    ];
    expected.sort();
    assert_eq!(found, expected, "{:#?}", report.problems);
    let text: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    let c_problem = text.iter().find(|t| t.contains("mode 4644")).unwrap();
    assert!(
        c_problem.contains("writable") && c_problem.contains("setuid"),
        "{c_problem}"
    );
    let d_hash = report
        .problems
        .iter()
        .find_map(|p| match p {
            Problem::Mismatch {
                path,
                expected_size,
                actual_size,
                ..
            } if *path == d => Some((*expected_size, *actual_size)),
            _ => None,
        })
        .unwrap();
    assert!(
        d_hash.1 > d_hash.0,
        "the extra entry makes the archive longer"
    );

    // Only the paths asked for.
    let report = store
        .verify(Some(std::slice::from_ref(&c)), &|_| {})
        .unwrap();
    assert_eq!(report.checked, 1);
    assert_eq!(kinds(&report.problems), [("metadata", c.to_string())]);
    let ghost = StorePath::parse("/nexis/store/00000000000000000000000000000000-ghost").unwrap();
    let report = store.verify(Some(&[ghost]), &|_| {}).unwrap();
    assert_eq!(report.problems[0].kind(), "not-valid");
}

#[test]
fn repair_restores_from_a_binary_cache_and_fixes_modes_in_place() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let paths = four_paths(&store, src.path());
    let [a, b, c, d] = paths.clone();
    store
        .copy_to_cache(&paths, cache.path(), None, Compression::Zstd)
        .unwrap();
    damage(&store, &paths);
    let c_ino = fs::metadata(store.physical(&c)).unwrap().ino();

    // Without a cache: c's mode is fixed in place; the rest is reported, untouched.
    let report = store.repair(None, None).unwrap();
    assert_eq!(report.checked, 4);
    assert!(report.restored.is_empty());
    assert_eq!(report.canonicalised, [store.physical(&c)]);
    let mut left: Vec<(&str, String)> = report
        .unrepaired
        .iter()
        .map(|(p, why)| {
            assert_eq!(why, "no binary cache given to restore it from");
            (p.kind(), p.path().unwrap().to_string())
        })
        .collect();
    left.sort();
    let mut expected = vec![
        ("hash-mismatch", a.to_string()),
        ("missing", b.to_string()),
        ("hash-mismatch", d.to_string()),
    ];
    expected.sort();
    assert_eq!(left, expected);
    let c_meta = fs::metadata(store.physical(&c)).unwrap();
    assert_eq!(
        (c_meta.mode() & 0o7777, c_meta.mtime(), c_meta.ino()),
        (0o444, 1, c_ino)
    );
    assert!(!store.physical(&b).exists());

    // A cache whose archive of `a` has a flipped byte: `a` stays as it was, the others
    // are restored.
    let info = fs::read_to_string(cache.path().join(format!("{}.info", a.hash_part()))).unwrap();
    let url = info
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .unwrap()
        .to_owned();
    let archive_file = cache.path().join(&url);
    let good = fs::read(&archive_file).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 5;
    bad[last] ^= 1;
    fs::write(&archive_file, &bad).unwrap();
    let a_before = nexis_store::hash_path(&store.physical(&a)).unwrap().hash;
    let report = store.repair(None, Some(cache.path())).unwrap();
    let mut restored = report.restored.clone();
    restored.sort();
    let mut want = vec![b.clone(), d.clone()];
    want.sort();
    assert_eq!(restored, want);
    assert_eq!(report.unrepaired.len(), 1, "{:?}", report.unrepaired);
    let (problem, why) = &report.unrepaired[0];
    assert_eq!(problem.path(), Some(&a));
    assert!(why.contains("file hash") || why.contains(&url), "{why}");
    assert_eq!(
        nexis_store::hash_path(&store.physical(&a)).unwrap().hash,
        a_before,
        "a failed restoration leaves the path as it was"
    );

    // A cache whose info says other content is refused before anything is read.
    fs::write(&archive_file, &good).unwrap();
    let info_file = cache.path().join(format!("{}.info", a.hash_part()));
    let lied = info
        .lines()
        .map(|l| {
            if l.starts_with("TreeHash: ") {
                format!("TreeHash: blake3:{}", blake3::hash(b"other").to_hex())
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    fs::write(&info_file, lied).unwrap();
    let report = store
        .repair(Some(std::slice::from_ref(&a)), Some(cache.path()))
        .unwrap();
    assert_eq!(report.unrepaired.len(), 1);
    assert!(
        report.unrepaired[0]
            .1
            .contains("is not what this store recorded"),
        "{}",
        report.unrepaired[0].1
    );

    // The honest cache repairs the rest, and the store verifies clean.
    fs::write(&info_file, info).unwrap();
    let report = store.repair(None, Some(cache.path())).unwrap();
    assert_eq!(report.restored, std::slice::from_ref(&a));
    assert!(report.is_clean(), "{:?}", report.unrepaired);
    let report = store.verify(None, &|_| {}).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    // Nothing to do on a clean store.
    let report = store.repair(None, Some(cache.path())).unwrap();
    assert!(report.restored.is_empty() && report.canonicalised.is_empty());
}

#[test]
fn optimise_links_identical_files_added_without_links() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let build = |d: &Path| {
        fs::create_dir(d).unwrap();
        fs::write(d.join("same"), vec![9u8; 100_000]).unwrap();
        fs::write(d.join("own"), d.display().to_string()).unwrap();
    };
    let a = add(&store, src.path(), "a", build);
    let b = add(&store, src.path(), "bb", build);
    let links = store.store_dir().join(".links");

    // Undo the dedup of add, as an older store would have it: every file its own inode,
    // and no `.links/` entries.
    for entry in fs::read_dir(&links).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }
    for p in [&a, &b] {
        let dir = store.physical(p);
        edit_dir(&dir, || {
            for entry in fs::read_dir(&dir).unwrap() {
                let file = entry.unwrap().path();
                let content = fs::read(&file).unwrap();
                fs::remove_file(&file).unwrap();
                fs::write(&file, content).unwrap();
                fs::File::options()
                    .write(true)
                    .open(&file)
                    .unwrap()
                    .set_modified(UNIX_EPOCH + Duration::from_secs(1))
                    .unwrap();
                fs::set_permissions(&file, fs::Permissions::from_mode(0o444)).unwrap();
            }
        });
    }
    let ino = |p: &StorePath| fs::metadata(store.physical(p).join("same")).unwrap().ino();
    assert_ne!(ino(&a), ino(&b));
    assert!(store.verify(None, &|_| {}).unwrap().is_clean());

    let report = store.optimise(&|_| {}).unwrap();
    assert_eq!(report.paths, 2);
    assert_eq!(report.files, 4);
    assert_eq!(report.new_links, 3, "one entry per distinct file");
    assert_eq!(report.replaced, 1);
    assert_eq!(report.bytes_saved, 100_000);
    assert_eq!(ino(&a), ino(&b));
    let verified = store.verify(None, &|_| {}).unwrap();
    assert!(verified.is_clean(), "{:?}", verified.problems);

    // Again: everything is linked, nothing is read.
    let again = store.optimise(&|_| {}).unwrap();
    assert_eq!(again.already_linked, 4);
    assert_eq!(
        (again.new_links, again.replaced, again.bytes_saved),
        (0, 0, 0)
    );
    // Nothing is left in the temporary area.
    assert_eq!(
        fs::read_dir(store.store_dir().join(".tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn list_and_read_inside_store_paths() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let a = add(&store, src.path(), "a", tree);
    let at = |rest: &str| PathBuf::from(format!("{a}{rest}"));

    let top = store.list(&at(""), false).unwrap();
    let names: Vec<String> = top
        .iter()
        .map(|e| e.location.display().to_string())
        .collect();
    assert_eq!(names, [format!("{a}/bin"), format!("{a}/share")]);
    assert!(top.iter().all(|e| e.kind == StoreEntryKind::Directory));
    let all = store.list(&at("/"), true).unwrap();
    let kinds: Vec<(String, StoreEntryKind)> = all
        .into_iter()
        .map(|e| {
            let loc = e.location.display().to_string();
            (loc[a.to_string().len()..].to_owned(), e.kind)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("/bin".to_owned(), StoreEntryKind::Directory),
            (
                "/bin/tool".to_owned(),
                StoreEntryKind::File {
                    executable: true,
                    size: 18
                }
            ),
            ("/share".to_owned(), StoreEntryKind::Directory),
            (
                "/share/data".to_owned(),
                StoreEntryKind::File {
                    executable: false,
                    size: 2 << 20
                }
            ),
            ("/share/doc".to_owned(), StoreEntryKind::Directory),
            (
                "/share/doc/README".to_owned(),
                StoreEntryKind::File {
                    executable: false,
                    size: 8
                }
            ),
            (
                "/share/link".to_owned(),
                StoreEntryKind::Symlink {
                    target: "../bin/tool".into()
                }
            ),
        ]
    );
    // A file lists itself.
    assert_eq!(store.list(&at("/bin/tool"), false).unwrap().len(), 1);

    let mut text = String::new();
    store
        .open_file(&at("/share/doc/README"))
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "read me\n");

    let err = |rest: &str| store.open_file(&at(rest)).unwrap_err();
    assert!(matches!(err("/share/link"), BrowseError::Symlink { .. }));
    assert!(matches!(err("/share/link/x"), BrowseError::Symlink { .. }));
    assert!(matches!(err("/share"), BrowseError::IsADirectory(_)));
    assert!(matches!(err("/nothing"), BrowseError::NotFound(_)));
    assert!(matches!(err("/bin/tool/x"), BrowseError::NotADirectory(_)));
    assert!(matches!(err("/../a"), BrowseError::ParentComponent(_)));
    let message = err("/share/link").to_string();
    assert!(message.contains("../bin/tool"), "{message}");
    let ghost = Path::new("/nexis/store/00000000000000000000000000000000-ghost/x");
    assert!(matches!(
        store.open_file(ghost).unwrap_err(),
        BrowseError::NotValid(_)
    ));
    assert!(matches!(
        store.open_file(Path::new("/etc/passwd")).unwrap_err(),
        BrowseError::Path(_)
    ));
}
