//! A binary cache on a directory: copying a closure to it, substituting from it into
//! fresh roots, and refusing what is not trusted or not intact.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use nexis_store::{
    CACHE_INFO_FILE, CacheError, CacheInfo, Compression, DirCache, ReceiveError, SecretKey, Store,
    StorePath, SubstituteReport, Trust, hash_path,
};

/// `lib`, and `app` referring to it.
fn fixture(store: &Store) -> (StorePath, StorePath) {
    let src = tempfile::tempdir().unwrap();
    let lib = src.path().join("lib");
    fs::create_dir_all(&lib).unwrap();
    fs::write(lib.join("lib.so"), vec![3u8; 100_000]).unwrap();
    let a = store.add_path(&lib, None).unwrap().path;
    let app = src.path().join("app");
    fs::create_dir_all(app.join("bin")).unwrap();
    fs::write(app.join("bin/app"), format!("#!/bin/sh\nexec {a}/lib.so\n")).unwrap();
    fs::set_permissions(app.join("bin/app"), fs::Permissions::from_mode(0o755)).unwrap();
    let b = store
        .add_path_with_references(&app, None, std::slice::from_ref(&a))
        .unwrap()
        .path;
    (a, b)
}

fn info_file(dir: &Path, p: &StorePath) -> PathBuf {
    dir.join(format!("{}.info", p.hash_part()))
}

fn read_info(dir: &Path, p: &StorePath) -> CacheInfo {
    let file = info_file(dir, p);
    CacheInfo::parse(&fs::read(&file).unwrap(), &file.display().to_string()).unwrap()
}

fn assert_untouched(store: &Store) {
    assert_eq!(store.with_db(|db| db.all_valid()).unwrap(), []);
    assert_eq!(
        fs::read_dir(store.store_dir().join(".tmp"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(fs::read_dir(store.store_dir()).unwrap().count(), 3);
}

#[test]
fn copy_then_substitute_with_a_trusted_key() {
    let src_root = tempfile::tempdir().unwrap();
    let source = Store::open(src_root.path()).unwrap();
    let (a, b) = fixture(&source);
    let key = SecretKey::generate("cache-1").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("cache");

    let report = source
        .copy_to_cache(
            std::slice::from_ref(&b),
            &dir,
            Some(&key),
            Compression::Zstd,
        )
        .unwrap();
    assert_eq!(report.copied, [a.clone(), b.clone()], "references first");
    assert!(report.skipped.is_empty());
    assert_eq!(
        fs::read_to_string(dir.join(CACHE_INFO_FILE)).unwrap(),
        "StoreDir: /nexis/store\nWantMassQuery: 1\nPriority: 40\n"
    );
    for p in [&a, &b] {
        let info = read_info(&dir, p);
        let local = source.with_db(|db| db.query(p)).unwrap().unwrap();
        assert_eq!(info.path, *p);
        assert_eq!(info.tree_hash, local.tree_hash);
        assert_eq!(info.references, local.references);
        assert!(
            key.public()
                .verifies(&local, info.signatures.first().unwrap())
        );
        let file = info.file.unwrap();
        assert_eq!(file.compression, Compression::Zstd);
        let bytes = fs::read(dir.join(&file.url)).unwrap();
        assert_eq!(bytes.len() as u64, file.file_size);
        assert_eq!(*blake3::hash(&bytes).as_bytes(), file.file_hash);
        assert_eq!(
            file.url,
            format!("archive/{}.nxar.zst", blake3::hash(&bytes).to_hex())
        );
    }
    // No temporary file is left in the cache.
    let names: Vec<String> = fs::read_dir(dir.join("archive"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.ends_with(".nxar.zst")), "{names:?}");
    assert_eq!(names.len(), 2);

    // Again: nothing to do, nothing rewritten.
    let before = fs::metadata(info_file(&dir, &b))
        .unwrap()
        .modified()
        .unwrap();
    let again = source
        .copy_to_cache(
            std::slice::from_ref(&b),
            &dir,
            Some(&key),
            Compression::Zstd,
        )
        .unwrap();
    assert!(again.copied.is_empty());
    assert_eq!(again.skipped, [a.clone(), b.clone()]);
    assert_eq!(
        fs::metadata(info_file(&dir, &b))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );

    // Substitute into a fresh root.
    let dst_root = tempfile::tempdir().unwrap();
    let target = Store::open(dst_root.path()).unwrap();
    let got = target
        .substitute_from_dir(
            &dir,
            std::slice::from_ref(&b),
            &Trust::new(vec![key.public()]),
        )
        .unwrap();
    assert_eq!(got, [a.clone(), b.clone()]);
    for p in [&a, &b] {
        let want = source.with_db(|db| db.query(p)).unwrap().unwrap();
        let have = target.with_db(|db| db.query(p)).unwrap().unwrap();
        assert_eq!(have.tree_hash, want.tree_hash);
        assert_eq!(have.references, want.references);
        assert_eq!(hash_path(&target.physical(p)).unwrap().hash, want.tree_hash);
        assert_eq!(have.signatures.len(), 1, "the cache's signature is kept");
    }
    // Valid already: nothing fetched.
    assert_eq!(
        target
            .substitute_from_dir(&dir, std::slice::from_ref(&b), &Trust::default())
            .unwrap(),
        Vec::<StorePath>::new()
    );
}

#[test]
fn untrusted_or_damaged_caches_are_refused() {
    let src_root = tempfile::tempdir().unwrap();
    let source = Store::open(src_root.path()).unwrap();
    let (a, b) = fixture(&source);
    let key = SecretKey::generate("cache-1").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path();
    source
        .copy_to_cache(std::slice::from_ref(&b), dir, Some(&key), Compression::Gzip)
        .unwrap();
    let dst_root = tempfile::tempdir().unwrap();
    let target = Store::open(dst_root.path()).unwrap();
    let good = Trust::new(vec![key.public()]);

    // A key of the same name that is not the cache's.
    let impostor = SecretKey::generate("cache-1").unwrap();
    let e = target
        .substitute_from_dir(
            dir,
            std::slice::from_ref(&b),
            &Trust::new(vec![impostor.public()]),
        )
        .unwrap_err();
    assert!(
        matches!(&e, CacheError::Receive(ReceiveError::Untrusted { path, .. }) if *path == b),
        "{e}"
    );
    assert_untouched(&target);
    // No key at all.
    let e = target
        .substitute_from_dir(dir, std::slice::from_ref(&a), &Trust::default())
        .unwrap_err();
    assert!(
        e.to_string().contains("is not signed by a trusted key"),
        "{e}"
    );
    assert_untouched(&target);

    // One flipped byte in the archive file of `b`: refused by its file hash, after `a`
    // was unpacked; `a` does not become valid either.
    let url = read_info(dir, &b).file.unwrap().url;
    let archive = dir.join(&url);
    let mut bytes = fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(&archive, &bytes).unwrap();
    let e = target
        .substitute_from_dir(dir, std::slice::from_ref(&b), &good)
        .unwrap_err();
    assert!(
        matches!(&e, CacheError::Receive(ReceiveError::FileHash { path, .. }) if *path == b),
        "{e}"
    );
    assert!(e.to_string().contains(&url), "{e}");
    assert_untouched(&target);
    // A file cut short is refused the same way.
    bytes[mid] ^= 1;
    fs::write(&archive, &bytes[..bytes.len() - 1]).unwrap();
    let e = target
        .substitute_from_dir(dir, std::slice::from_ref(&b), &good)
        .unwrap_err();
    assert!(
        matches!(e, CacheError::Receive(ReceiveError::FileHash { .. })),
        "{e}"
    );
    assert_untouched(&target);
    fs::write(&archive, &bytes).unwrap();

    // An info file whose URL leaves the cache.
    let info_path = info_file(dir, &b);
    let text = fs::read_to_string(&info_path).unwrap();
    fs::write(&info_path, text.replace("URL: archive/", "URL: ../")).unwrap();
    let e = target
        .substitute_from_dir(dir, std::slice::from_ref(&b), &good)
        .unwrap_err();
    assert!(matches!(e, CacheError::BadUrl { .. }), "{e}");
    assert_untouched(&target);
    // An info file that does not parse names itself and its line.
    fs::write(
        &info_path,
        text.replace("Compression: gzip", "Compression: lz4"),
    )
    .unwrap();
    let e = target
        .substitute_from_dir(dir, std::slice::from_ref(&b), &good)
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}:3: `lz4`", info_path.display())),
        "{e}"
    );
    fs::write(&info_path, &text).unwrap();

    // A path the cache does not have; a directory that is not a cache.
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("other"), "x").unwrap();
    let other = source
        .add_path(&src.path().join("other"), None)
        .unwrap()
        .path;
    let e = target
        .substitute_from_dir(dir, std::slice::from_ref(&other), &good)
        .unwrap_err();
    assert!(matches!(e, CacheError::NotInCache { .. }), "{e}");
    let e = target
        .substitute_from_dir(src.path(), std::slice::from_ref(&b), &good)
        .unwrap_err();
    assert!(matches!(e, CacheError::NotACache { .. }), "{e}");
    assert_untouched(&target);

    // Intact again: it works.
    assert_eq!(
        target
            .substitute_from_dir(dir, std::slice::from_ref(&b), &good)
            .unwrap(),
        [a, b]
    );
}

#[test]
fn paths_the_cache_lacks_are_reported_with_those_needing_them() {
    let src_root = tempfile::tempdir().unwrap();
    let source = Store::open(src_root.path()).unwrap();
    let (a, b) = fixture(&source);
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("other"), "x").unwrap();
    let other = source
        .add_path(&src.path().join("other"), None)
        .unwrap()
        .path;
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path();
    source
        .copy_to_cache(&[b.clone(), other.clone()], dir, None, Compression::Zstd)
        .unwrap();
    // `a` goes missing: `b` needs it, `other` does not.
    fs::remove_file(info_file(dir, &a)).unwrap();
    let dst_root = tempfile::tempdir().unwrap();
    let target = Store::open(dst_root.path()).unwrap();
    let wanted = [b.clone(), other.clone()];

    // Required: refused before anything is read, naming the path and the cache.
    let e = target
        .substitute_from(&mut DirCache::new(dir), &wanted, &Trust::unsigned(), true)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{a} is not in the binary cache {}", dir.display())
    );
    assert_untouched(&target);

    // Not required: what can be had is made valid, the rest reported.
    let report = target
        .substitute_from(&mut DirCache::new(dir), &wanted, &Trust::unsigned(), false)
        .unwrap();
    assert_eq!(
        report,
        SubstituteReport {
            substituted: vec![other.clone()],
            missing: vec![a.clone()],
            incomplete: vec![b.clone()],
        }
    );
    let valid = target.with_db(|db| db.all_valid()).unwrap();
    assert_eq!(valid, [other]);
}

#[test]
fn uncompressed_caches_work_too() {
    let src_root = tempfile::tempdir().unwrap();
    let source = Store::open(src_root.path()).unwrap();
    let (_, b) = fixture(&source);
    let cache = tempfile::tempdir().unwrap();
    source
        .copy_to_cache(
            std::slice::from_ref(&b),
            cache.path(),
            None,
            Compression::None,
        )
        .unwrap();
    let info = read_info(cache.path(), &b);
    assert!(info.signatures.is_empty());
    let url = info.file.unwrap().url;
    assert_eq!(Path::new(&url).extension().unwrap(), "nxar");
    let dst_root = tempfile::tempdir().unwrap();
    let target = Store::open(dst_root.path()).unwrap();
    let got = target
        .substitute_from_dir(cache.path(), std::slice::from_ref(&b), &Trust::unsigned())
        .unwrap();
    assert_eq!(got.len(), 2);
}

#[test]
fn fuzzed_info_inputs_are_handled() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzzed-info");
    let (mut parsed, mut refused) = (0, 0);
    for entry in fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().path();
        if file.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let data = fs::read(&file).unwrap();
        match CacheInfo::parse(&data, "fuzzed.info") {
            Ok(info) => {
                let text = info.to_text();
                assert_eq!(CacheInfo::parse(text.as_bytes(), "printed").unwrap(), info);
                parsed += 1;
            }
            Err(e) => {
                assert!(e.to_string().starts_with("fuzzed.info"), "{e}");
                refused += 1;
            }
        }
    }
    assert!(
        parsed >= 5 && refused >= 25,
        "{parsed} parsed, {refused} refused"
    );
}

#[test]
fn an_archive_file_holding_more_than_the_archive_is_refused() {
    let src_root = tempfile::tempdir().unwrap();
    let source = Store::open(src_root.path()).unwrap();
    let (a, _) = fixture(&source);
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path();
    source
        .copy_to_cache(std::slice::from_ref(&a), dir, None, Compression::Zstd)
        .unwrap();
    // A second zstd frame after the archive, with the info's file hash and size updated
    // to match (they are not signed).
    let info_path = info_file(dir, &a);
    let file = read_info(dir, &a).file.unwrap();
    let archive = dir.join(&file.url);
    let mut bytes = fs::read(&archive).unwrap();
    bytes.extend(zstd_frame(b"more"));
    fs::write(&archive, &bytes).unwrap();
    let text = fs::read_to_string(&info_path).unwrap();
    let text = text
        .replace(
            &format!("FileSize: {}", file.file_size),
            &format!("FileSize: {}", bytes.len()),
        )
        .replace(
            &format!(
                "FileHash: blake3:{}",
                blake3::Hash::from_bytes(file.file_hash).to_hex()
            ),
            &format!("FileHash: blake3:{}", blake3::hash(&bytes).to_hex()),
        );
    fs::write(&info_path, text).unwrap();
    let dst_root = tempfile::tempdir().unwrap();
    let target = Store::open(dst_root.path()).unwrap();
    let e = target
        .substitute_from_dir(dir, std::slice::from_ref(&a), &Trust::unsigned())
        .unwrap_err();
    assert!(
        matches!(e, CacheError::Receive(ReceiveError::TrailingData { .. })),
        "{e}"
    );
    assert_untouched(&target);
}

/// `data` as one zstd frame.
fn zstd_frame(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = Compression::Zstd.encoder(Vec::new()).unwrap();
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}
