//! Export and import between temporary roots: round trips, every refusal leaving the
//! target store as it was, and imports of valid paths writing nothing.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use nexis_store::{
    CacheInfo, Compression, ContentKind, EXPORT_MAGIC, ImportError, ReceiveError, SecretKey, Store,
    StorePath, Trust, hash_path, write_archive,
};

/// Two paths: `lib`, and `app`, which refers to `lib` (a script naming it and a symlink
/// to it).
fn fixture(store: &Store) -> (StorePath, StorePath) {
    let src = tempfile::tempdir().unwrap();
    let lib = src.path().join("lib");
    fs::create_dir_all(lib.join("share/empty")).unwrap();
    fs::write(lib.join("lib.so"), "lib.so content\n").unwrap();
    fs::write(lib.join("share/big"), vec![9u8; 2 << 20]).unwrap();
    let a = store.add_path(&lib, None).unwrap().path;
    let app = src.path().join("app");
    fs::create_dir_all(app.join("bin")).unwrap();
    fs::write(
        app.join("bin/app"),
        format!("#!/bin/sh\nexec {a}/lib.so \"$@\"\n"),
    )
    .unwrap();
    fs::set_permissions(app.join("bin/app"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(a.to_string(), app.join("lib")).unwrap();
    let b = store
        .add_path_with_references(&app, None, std::slice::from_ref(&a))
        .unwrap()
        .path;
    (a, b)
}

/// Sign `paths` in `store`'s database with `key`.
fn sign(store: &Store, key: &SecretKey, paths: &[&StorePath]) {
    for p in paths {
        let info = store.with_db(|db| db.query(p)).unwrap().unwrap();
        let sig = key.sign(&info);
        store.with_db(|db| db.add_signatures(p, &[sig])).unwrap();
    }
}

fn export(store: &Store, paths: &[StorePath], compression: Compression) -> Vec<u8> {
    let mut out = Vec::new();
    store.export(paths, &mut out, compression).unwrap();
    out
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The target store holds nothing: no valid path, nothing in the store directory but
/// its own folders, nothing in `.tmp/`.
fn assert_untouched(store: &Store) {
    assert_eq!(store.with_db(|db| db.all_valid()).unwrap(), []);
    assert_eq!(
        entries(store.store_dir()),
        [".links", ".tmp", ".trash"],
        "nothing moved into the store"
    );
    assert_eq!(
        entries(&store.store_dir().join(".tmp")),
        Vec::<String>::new()
    );
}

/// Files 0444/0555 with mtime 1, directories 0555 with mtime 1, everywhere under `path`.
fn assert_canonical(path: &Path) {
    let meta = fs::symlink_metadata(path).unwrap();
    if meta.file_type().is_symlink() {
        return;
    }
    assert_eq!(meta.mtime(), 1, "{}", path.display());
    let mode = meta.permissions().mode() & 0o7777;
    if meta.is_dir() {
        assert_eq!(mode, 0o555, "{}", path.display());
        for e in fs::read_dir(path).unwrap() {
            assert_canonical(&e.unwrap().path());
        }
    } else {
        assert!(
            mode == 0o444 || mode == 0o555,
            "{}: {mode:o}",
            path.display()
        );
    }
}

#[test]
fn round_trip_in_every_compression() {
    let src_root = tempfile::tempdir().unwrap();
    let source = Store::open(src_root.path()).unwrap();
    let (a, b) = fixture(&source);
    let key = SecretKey::generate("test-1").unwrap();
    sign(&source, &key, &[&a, &b]);
    let refs = source
        .with_db(|db| db.query(&b))
        .unwrap()
        .unwrap()
        .references;
    assert_eq!(refs, [a.clone()].into(), "the scanner found the reference");

    for compression in [Compression::Zstd, Compression::Gzip, Compression::None] {
        let stream = export(&source, std::slice::from_ref(&b), compression);
        match compression {
            Compression::Zstd => assert_eq!(stream[..4], [0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Gzip => assert_eq!(stream[..2], [0x1f, 0x8b]),
            Compression::None => assert_eq!(&stream[..16], EXPORT_MAGIC),
        }
        let dst_root = tempfile::tempdir().unwrap();
        let target = Store::open(dst_root.path()).unwrap();
        let imported = target
            .import(&stream[..], &Trust::new(vec![key.public()]))
            .unwrap();
        assert_eq!(imported, [a.clone(), b.clone()], "references first");
        for p in [&a, &b] {
            let want = source.with_db(|db| db.query(p)).unwrap().unwrap();
            let got = target.with_db(|db| db.query(p)).unwrap().unwrap();
            assert_eq!(got.tree_hash, want.tree_hash);
            assert_eq!(got.archive_size, want.archive_size);
            assert_eq!(got.references, want.references);
            assert_eq!(got.content_address, want.content_address);
            assert_eq!(got.signatures, want.signatures);
            let physical = target.physical(p);
            assert_eq!(hash_path(&physical).unwrap().hash, want.tree_hash);
            assert_canonical(&physical);
        }
        assert_eq!(
            fs::read_link(target.physical(&b).join("lib")).unwrap(),
            Path::new(&a.to_string())
        );
        assert_eq!(
            entries(&target.store_dir().join(".tmp")),
            Vec::<String>::new()
        );
    }
}

#[test]
fn references_are_part_of_the_path_and_must_be_valid() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let (a, b) = fixture(&store);
    let info = store.with_db(|db| db.query(&b)).unwrap().unwrap();
    let no_refs = StorePath::new(
        &ContentKind::Source { references: &[] },
        &info.tree_hash,
        b.name(),
    )
    .unwrap();
    assert_ne!(
        no_refs, b,
        "the same tree without references is another path"
    );
    assert_eq!(
        b,
        StorePath::new(
            &ContentKind::Source {
                references: std::slice::from_ref(&a)
            },
            &info.tree_hash,
            b.name()
        )
        .unwrap()
    );

    // A candidate that is found but not valid is refused, leaving nothing behind.
    let other = tempfile::tempdir().unwrap();
    let fresh = Store::open(other.path()).unwrap();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("x"), format!("{a}\n")).unwrap();
    let err = fresh
        .add_path_with_references(&src.path().join("x"), None, std::slice::from_ref(&a))
        .unwrap_err();
    assert!(err.to_string().contains(&a.to_string()), "{err}");
    assert_untouched(&fresh);
}

/// A stream written by hand, following `docs/store.md` ("Export format").
fn hand_stream(records: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut s = EXPORT_MAGIC.to_vec();
    s.extend_from_slice(&(records.len() as u64).to_le_bytes());
    for (info, _) in records {
        s.extend_from_slice(&(info.len() as u64).to_le_bytes());
        s.extend_from_slice(info.as_bytes());
    }
    for (_, archive) in records {
        s.extend_from_slice(&(archive.len() as u64).to_le_bytes());
        s.extend_from_slice(archive);
    }
    s
}

#[test]
fn refusals_leave_the_store_unchanged() {
    let src_root = tempfile::tempdir().unwrap();
    let source = Store::open(src_root.path()).unwrap();
    let (a, b) = fixture(&source);
    let unsigned = export(&source, std::slice::from_ref(&b), Compression::None);
    let key = SecretKey::generate("good").unwrap();
    let stranger = SecretKey::generate("stranger").unwrap();
    sign(&source, &stranger, &[&a, &b]);
    let by_stranger = export(&source, std::slice::from_ref(&b), Compression::Zstd);
    sign(&source, &key, &[&a, &b]);
    let signed = export(&source, std::slice::from_ref(&b), Compression::None);
    let trust = Trust::new(vec![key.public()]);

    let dst_root = tempfile::tempdir().unwrap();
    let target = Store::open(dst_root.path()).unwrap();
    let refuse = |stream: &[u8], trust: &Trust| -> ImportError {
        let e = target.import(stream, trust).unwrap_err();
        assert_untouched(&target);
        e
    };

    // Unsigned, with signatures required (by default, and with a trusted key).
    let e = refuse(&unsigned, &Trust::default());
    assert!(
        matches!(e, ImportError::Receive(ReceiveError::Untrusted { .. })),
        "{e}"
    );
    let e = refuse(&unsigned, &trust);
    assert_eq!(
        e.to_string(),
        format!("{a} is not signed by a trusted key (trusted keys: good; signatures by: none)")
    );
    // Signed by a key that is not trusted.
    let e = refuse(&by_stranger, &trust);
    assert_eq!(
        e.to_string(),
        format!("{a} is not signed by a trusted key (trusted keys: good; signatures by: stranger)")
    );

    // One byte of the last path's content changed: its tree hash gives it away, after
    // the first path was already unpacked, and that one goes too.
    let at = signed
        .windows(7)
        .position(|w| w == b"exec /n")
        .expect("the script is in the stream");
    let mut tampered = signed.clone();
    tampered[at] ^= 0x20;
    let e = refuse(&tampered, &trust);
    assert!(
        matches!(&e, ImportError::Receive(ReceiveError::TreeHash { path, .. }) if *path == b),
        "{e}"
    );

    // Truncated anywhere: in the count, an info, an archive's length, an archive.
    for len in [20, 30, 100, signed.len() / 2, signed.len() - 1] {
        let e = refuse(&signed[..len], &trust);
        let s = e.to_string();
        assert!(
            s.contains("truncated") || s.contains("cannot unpack"),
            "{len}: {s}"
        );
    }
    // Trailing garbage after the last archive.
    let mut longer = signed.clone();
    longer.push(0);
    let e = refuse(&longer, &trust);
    assert!(matches!(e, ImportError::TrailingBytes { .. }), "{e}");
    // Not an export at all.
    let e = refuse(b"hello world, this is not an export", &trust);
    assert!(matches!(e, ImportError::BadMagic), "{e}");

    // A path that lies about its content address, signed by a trusted key all the same.
    let tree = tempfile::tempdir().unwrap();
    fs::write(tree.path().join("f"), "honest content\n").unwrap();
    let mut archive = Vec::new();
    let t = write_archive(&tree.path().join("f"), &mut archive).unwrap();
    let liar = StorePath::new(
        &ContentKind::Source { references: &[] },
        blake3::hash(b"something else").as_bytes(),
        "f",
    )
    .unwrap();
    let mut info = CacheInfo {
        path: liar.clone(),
        file: None,
        tree_hash: t.hash,
        archive_size: t.archive_size,
        references: BTreeSet::new(),
        deriver: None,
        content_address: Some(format!("source:blake3:{}", t.hash_hex())),
        signatures: BTreeSet::new(),
    };
    info.signatures.insert(key.sign(&info.to_path_info()));
    let stream = hand_stream(&[(info.to_text(), archive.clone())]);
    let e = refuse(&stream, &trust);
    assert!(
        matches!(&e, ImportError::Receive(ReceiveError::ContentAddress { path, .. }) if *path == liar),
        "{e}"
    );
    // The honest path in the same hand-written stream is accepted.
    info.path = StorePath::new(&ContentKind::Source { references: &[] }, &t.hash, "f").unwrap();
    info.signatures = [key.sign(&info.to_path_info())].into();
    let stream = hand_stream(&[(info.to_text(), archive)]);
    assert_eq!(
        target.import(&stream[..], &trust).unwrap(),
        [info.path.clone()]
    );

    // A manifest naming one path twice.
    let twice = hand_stream(&[(info.to_text(), Vec::new()), (info.to_text(), Vec::new())]);
    let e = target.import(&twice[..], &trust).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "export stream: {} is in the manifest twice (entries 1 and 2)",
            info.path
        )
    );
    // A count no stream can hold.
    let mut huge = EXPORT_MAGIC.to_vec();
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    let e = target.import(&huge[..], &trust).unwrap_err();
    assert!(matches!(e, ImportError::TooManyPaths { .. }), "{e}");
    assert_eq!(
        target.with_db(|db| db.all_valid()).unwrap(),
        [info.path.clone()]
    );

    // Without signature checks, the content checks still hold.
    let e = target
        .import(&tampered[..], &Trust::unsigned())
        .unwrap_err();
    assert!(
        matches!(e, ImportError::Receive(ReceiveError::TreeHash { .. })),
        "{e}"
    );
}

#[test]
fn importing_valid_paths_writes_nothing() {
    let src_root = tempfile::tempdir().unwrap();
    let source = Store::open(src_root.path()).unwrap();
    let (a, b) = fixture(&source);
    let only_a = export(&source, std::slice::from_ref(&a), Compression::Zstd);
    let both = export(&source, std::slice::from_ref(&b), Compression::Zstd);

    let dst_root = tempfile::tempdir().unwrap();
    let target = Store::open(dst_root.path()).unwrap();
    // `a` first; then the closure of `b`, of which only `b` is new.
    assert_eq!(
        target.import(&only_a[..], &Trust::unsigned()).unwrap(),
        std::slice::from_ref(&a)
    );
    let a_ino = fs::metadata(target.physical(&a)).unwrap().ino();
    assert_eq!(
        target.import(&both[..], &Trust::unsigned()).unwrap(),
        [a.clone(), b.clone()]
    );
    assert_eq!(
        fs::metadata(target.physical(&a)).unwrap().ino(),
        a_ino,
        "a valid path is not replaced"
    );

    // Everything valid: the store directory and its temporary area are not touched, and
    // no signature is needed to skip what is there.
    let stamp = |p: &Path| {
        let m = fs::metadata(p).unwrap();
        (m.mtime(), m.mtime_nsec(), m.ino())
    };
    let store_before = stamp(target.store_dir());
    let tmp_before = stamp(&target.store_dir().join(".tmp"));
    assert_eq!(
        target.import(&both[..], &Trust::default()).unwrap(),
        [a.clone(), b.clone()]
    );
    assert_eq!(stamp(target.store_dir()), store_before);
    assert_eq!(stamp(&target.store_dir().join(".tmp")), tmp_before);

    // Only the manifest is read: the archives after it may be missing altogether.
    let plain = export(&source, std::slice::from_ref(&b), Compression::None);
    let manifest_len = manifest_len(&plain);
    assert_eq!(
        target
            .import(&plain[..manifest_len], &Trust::default())
            .unwrap(),
        [a.clone(), b.clone()]
    );
    // A stream broken inside its manifest is refused all the same.
    let e = target
        .import(&plain[..manifest_len - 3], &Trust::default())
        .unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
}

/// The length of an uncompressed stream's magic, count and manifest.
fn manifest_len(stream: &[u8]) -> usize {
    let u64_at = |at: usize| {
        usize::try_from(u64::from_le_bytes(stream[at..at + 8].try_into().unwrap())).unwrap()
    };
    let count = u64_at(16);
    let mut at = 24;
    for _ in 0..count {
        at += 8 + u64_at(at);
    }
    at
}
