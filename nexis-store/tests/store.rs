//! Adding to the store and collecting garbage, on temporary roots.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use nexis_store::{GcOptions, Store, StorePath};

fn tree(dir: &Path) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("share/empty")).unwrap();
    fs::write(dir.join("bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(dir.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("share/a.txt"), "same content\n").unwrap();
    fs::write(dir.join("share/b.txt"), "same content\n").unwrap();
    fs::write(dir.join("share/big"), vec![7u8; 3 << 20]).unwrap();
    std::os::unix::fs::symlink("../bin/tool", dir.join("share/link")).unwrap();
}

#[test]
fn add_is_canonical_deduplicated_and_idempotent() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    tree(&src.path().join("pkg"));
    let store = Store::open(root.path()).unwrap();
    let added = store.add_path(&src.path().join("pkg"), None).unwrap();
    assert!(!added.already_valid);
    assert_eq!(added.path.name(), "pkg");
    assert_eq!(added.files, 4);
    assert_eq!(added.deduplicated, 13, "b.txt is a link to a.txt");
    let on_disk = store.physical(&added.path);
    let tool = fs::metadata(on_disk.join("bin/tool")).unwrap();
    assert_eq!(tool.permissions().mode() & 0o7777, 0o555);
    assert_eq!(tool.mtime(), 1);
    let a = fs::metadata(on_disk.join("share/a.txt")).unwrap();
    let b = fs::metadata(on_disk.join("share/b.txt")).unwrap();
    assert_eq!(a.permissions().mode() & 0o7777, 0o444);
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
    assert_eq!(
        fs::metadata(&on_disk).unwrap().permissions().mode() & 0o7777,
        0o555
    );
    assert_eq!(
        fs::read_link(on_disk.join("share/link")).unwrap(),
        Path::new("../bin/tool")
    );
    assert!(store.with_db(|db| db.is_valid(&added.path)).unwrap());
    let info = store.with_db(|db| db.query(&added.path)).unwrap().unwrap();
    assert_eq!(info.tree_hash, added.tree_hash);
    assert_eq!(info.archive_size, added.archive_size);

    // Again: same path, nothing written (not even in the temporary area).
    let stamp = |p: &Path| {
        let m = fs::metadata(p).unwrap();
        (m.mtime(), m.mtime_nsec(), m.ino())
    };
    let tmp_before = stamp(&store.store_dir().join(".tmp"));
    let again = store.add_path(&src.path().join("pkg"), None).unwrap();
    assert!(again.already_valid);
    assert_eq!(again.path, added.path);
    assert_eq!(again.archive_size, added.archive_size);
    assert_eq!(stamp(&store.store_dir().join(".tmp")), tmp_before);
    // The content decides the path: a changed byte gives another.
    fs::write(src.path().join("pkg/share/a.txt"), "other content\n").unwrap();
    let changed = store.add_path(&src.path().join("pkg"), None).unwrap();
    assert_ne!(changed.path, added.path);
    // Nothing is left in the temporary area.
    assert_eq!(
        fs::read_dir(store.store_dir().join(".tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn special_files_are_refused_by_name() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("p");
    fs::create_dir(&dir).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(dir.join("pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    let store = Store::open(root.path()).unwrap();
    let err = store.add_path(&dir, None).unwrap_err().to_string();
    assert!(err.contains("pipe") && err.contains("FIFO"), "{err}");
    assert_eq!(store.with_db(|db| db.all_valid()).unwrap().len(), 0);
}

fn add_file(store: &Store, dir: &Path, name: &str, content: &str) -> StorePath {
    let file = dir.join(name);
    fs::write(&file, content).unwrap();
    store.add_path(&file, None).unwrap().path
}

#[test]
fn gc_keeps_roots_and_collects_the_rest() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let (kept, linked, garbage) = {
        // A process that adds and exits: its temp roots go with it.
        let adder = Store::open(root.path()).unwrap();
        (
            add_file(&adder, src.path(), "kept", "k"),
            add_file(&adder, src.path(), "linked", "l"),
            add_file(&adder, src.path(), "garbage", "g"),
        )
    };
    let store = Store::open(root.path()).unwrap();
    // A direct root (a profile) and an indirect one (a `result` link elsewhere).
    std::os::unix::fs::symlink(kept.to_string(), store.state_dir().join("profiles/system"))
        .unwrap();
    let result = root.path().join("home/result");
    fs::create_dir_all(result.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(linked.to_string(), &result).unwrap();
    store
        .add_indirect_root("result-1", Path::new("/home/result"))
        .unwrap();

    let dry = store
        .collect_garbage(
            GcOptions {
                dry_run: true,
                max_freed: None,
            },
            &|_| {},
        )
        .unwrap();
    assert_eq!(dry.deleted, vec![garbage.clone()]);
    assert!(store.physical(&garbage).exists());

    let report = store
        .collect_garbage(GcOptions::default(), &|_| {})
        .unwrap();
    assert_eq!(report.deleted, vec![garbage.clone()]);
    assert_eq!(report.live, 2);
    assert!(!store.physical(&garbage).exists());
    assert!(!store.with_db(|db| db.is_valid(&garbage)).unwrap());
    assert!(store.physical(&kept).exists() && store.physical(&linked).exists());

    // The `result` link goes: its indirect root is pruned and the path collected.
    fs::remove_file(&result).unwrap();
    let report = store
        .collect_garbage(GcOptions::default(), &|_| {})
        .unwrap();
    assert_eq!(report.deleted, vec![linked.clone()]);
    assert!(!store.state_dir().join("gcroots/auto/result-1").exists());
}

#[test]
fn temp_roots_of_a_live_process_protect_its_paths() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let adder = Store::open(root.path()).unwrap();
    let busy = add_file(&adder, src.path(), "busy", "b");
    let collector = Store::open(root.path()).unwrap();
    let report = collector
        .collect_garbage(GcOptions::default(), &|_| {})
        .unwrap();
    assert!(report.deleted.is_empty());
    drop(adder);
    let report = collector
        .collect_garbage(GcOptions::default(), &|_| {})
        .unwrap();
    assert_eq!(report.deleted, vec![busy]);
}

#[test]
fn gc_frees_the_dedup_links_of_what_it_deletes() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let links = root.path().join("nexis/store/.links");
    {
        let adder = Store::open(root.path()).unwrap();
        add_file(&adder, src.path(), "one", "shared bytes");
        let dir = src.path().join("two");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("copy"), "shared bytes").unwrap();
        fs::write(dir.join("own"), "own bytes").unwrap();
        adder.add_path(&dir, None).unwrap();
    }
    assert_eq!(fs::read_dir(&links).unwrap().count(), 2);
    let store = Store::open(root.path()).unwrap();
    let report = store
        .collect_garbage(GcOptions::default(), &|_| {})
        .unwrap();
    assert_eq!(report.deleted.len(), 2);
    assert_eq!(
        fs::read_dir(&links).unwrap().count(),
        0,
        "no link outlives its last user"
    );
}

#[test]
fn adding_hashing_and_archiving_agree() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    tree(&src.path().join("pkg"));
    let store = Store::open(root.path()).unwrap();
    let added = store.add_path(&src.path().join("pkg"), None).unwrap();
    let source = nexis_store::hash_path(&src.path().join("pkg")).unwrap();
    let stored = nexis_store::hash_path(&store.physical(&added.path)).unwrap();
    assert_eq!(added.tree_hash, source.hash);
    assert_eq!(
        stored.hash, source.hash,
        "canonicalising changes no hashed property"
    );
    assert_eq!(added.archive_size, source.archive_size);
    let mut bytes = Vec::new();
    let written = nexis_store::write_archive(&store.physical(&added.path), &mut bytes).unwrap();
    assert_eq!(written.hash, added.tree_hash);
    assert_eq!(bytes.len() as u64, added.archive_size);
}

#[test]
fn adding_many_paths_at_once_is_one_batch_in_order() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    tree(&src.path().join("pkg"));
    // More sources than one set of locks covers, some of them the same content.
    let mut sources = vec![src.path().join("pkg")];
    for i in 0..600 {
        let file = src.path().join(format!("f{i}"));
        fs::write(&file, format!("file {}\n", i % 550)).unwrap();
        sources.push(file);
    }
    sources.push(src.path().join("pkg"));
    let before = store.add_path(&sources[1], None).unwrap();
    let added = store.add_paths(&sources).unwrap();
    assert_eq!(added.len(), sources.len());
    for (a, s) in added.iter().zip(&sources) {
        let one = nexis_store::hash_path(s).unwrap();
        assert_eq!(a.tree_hash, one.hash, "{}", s.display());
        assert_eq!(a.path.name(), s.file_name().unwrap().to_str().unwrap());
        assert!(store.with_db(|db| db.is_valid(&a.path)).unwrap());
    }
    assert_eq!(added[1].path, before.path);
    assert!(added[1].already_valid, "valid before the batch");
    assert!(!added[0].already_valid);
    assert!(
        added[601].already_valid,
        "the same source twice is added once"
    );
    assert_eq!(added[0].path, added[601].path);
    // Files 550.. have the content of files 0..50: linked, not stored again.
    assert_eq!(
        fs::metadata(store.physical(&added[551].path))
            .unwrap()
            .ino(),
        fs::metadata(store.physical(&added[1].path)).unwrap().ino()
    );
    assert!(added[551].deduplicated > 0);
    assert!(store.verify(None, &|_| {}).unwrap().is_clean());
    assert_eq!(
        fs::read_dir(store.store_dir().join(".tmp"))
            .unwrap()
            .count(),
        0
    );

    // A source the store cannot hold fails the batch before anything is added.
    let fifo = src.path().join("pipe");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let fresh = src.path().join("fresh");
    fs::write(&fresh, "never added").unwrap();
    let valid_before = store.with_db(|db| db.all_valid()).unwrap().len();
    let err = store.add_paths(&[fresh, fifo]).unwrap_err().to_string();
    assert!(err.contains("pipe"), "{err}");
    assert_eq!(
        store.with_db(|db| db.all_valid()).unwrap().len(),
        valid_before
    );
}

#[test]
fn concurrent_adds_of_the_same_tree_copy_it_once() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    tree(&src.path().join("pkg"));
    for round in 0..8 {
        // A new tree each round (another byte), added by four handles at once.
        fs::write(src.path().join("pkg/share/round"), round.to_string()).unwrap();
        let results: Vec<nexis_store::Added> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let store = Store::open(root.path()).unwrap();
                        store.add_path(&src.path().join("pkg"), None).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let written = results.iter().filter(|a| !a.already_valid).count();
        assert_eq!(written, 1, "round {round}: exactly one copy is made");
        assert!(results.windows(2).all(|w| w[0].path == w[1].path));
    }
    let store = Store::open(root.path()).unwrap();
    assert!(store.verify(None, &|_| {}).unwrap().is_clean());
    assert_eq!(store.with_db(|db| db.all_valid()).unwrap().len(), 8);
}

#[test]
fn an_owned_tree_is_moved_into_the_store_not_copied() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let tmp = store.store_dir().join(".tmp");
    let owned = |name: &str| {
        let dir = tmp.join(name);
        tree(&dir);
        dir
    };
    // The same tree added by copy first: the owned one must give the same path.
    let src = tempfile::tempdir().unwrap();
    tree(&src.path().join("pkg"));
    let copied = store.add_path(&src.path().join("pkg"), None).unwrap();
    let other_root = tempfile::tempdir().unwrap();
    let other = Store::open(other_root.path()).unwrap();

    let dir = other.store_dir().join(".tmp/mine");
    tree(&dir);
    let big_ino = fs::metadata(dir.join("share/big")).unwrap().ino();
    let added = other.add_owned_tree(&dir, "pkg").unwrap();
    assert_eq!(added.path, copied.path, "the same content, the same path");
    assert!(!added.already_valid);
    assert!(!dir.exists(), "the tree was moved");
    let on_disk = other.physical(&added.path);
    assert_eq!(
        fs::metadata(on_disk.join("share/big")).unwrap().ino(),
        big_ino,
        "moved, not copied"
    );
    assert_eq!(added.deduplicated, 13, "b.txt is a link to a.txt");
    assert!(other.verify(None, &|_| {}).unwrap().is_clean());

    // Valid already: the owned tree is removed, nothing else happens.
    let again = owned("again");
    let added = store.add_owned_tree(&again, "pkg").unwrap();
    assert!(added.already_valid);
    assert!(!again.exists());
    // A tree outside `.tmp/` is refused and left alone.
    let err = store
        .add_owned_tree(&src.path().join("pkg"), "pkg")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("only a tree inside the store's .tmp/"),
        "{err}"
    );
    assert!(src.path().join("pkg/bin/tool").exists());
}
