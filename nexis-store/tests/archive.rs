//! The canonical archive and the tree hash, end to end: real trees written, hashed and
//! unpacked; hand-built malformed streams; the worked example of `docs/archive.md`.

use std::fs;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};

use nexis_store::{
    ARCHIVE_MAGIC, ArchiveError, EntryKind, LimitKind, Limits, Malformation, TreeInfo, hash_path,
    list_archive, remove_tree, unpack_archive, write_archive,
};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// Helpers

/// `n` bytes that do not repeat with any short period.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn write_file(path: &Path, content: &[u8], mode: u32) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// One node of the sample tree.
enum Item {
    File(&'static str, Vec<u8>, u32),
    Dir(&'static str),
    Link(&'static str, &'static str),
}

/// The sample tree: nested and empty directories, an empty file, an executable, relative
/// and dangling symlinks, a 3 MiB file and non-ASCII names.
fn sample() -> Vec<Item> {
    vec![
        Item::File("bin/run", b"#!/bin/sh\necho run\n".to_vec(), 0o755),
        Item::Dir("empty-dir"),
        Item::File("empty-file", Vec::new(), 0o644),
        Item::File("nested/a/b/c/deep.txt", b"deep\n".to_vec(), 0o600),
        Item::File("nested/a/sibling", b"x".to_vec(), 0o644),
        Item::Link("link-relative", "nested/a"),
        Item::Link("link-dangling", "does/not/exist"),
        Item::File("big.bin", noise(3 << 20, 1), 0o644),
        Item::File("ünïcödé-😀.txt", "grüße\n".as_bytes().to_vec(), 0o644),
        Item::Dir("日本語"),
        Item::File("日本語/ファイル", b"\0\x01\x02binary".to_vec(), 0o700),
        Item::File("Zebra", b"upper case sorts first".to_vec(), 0o644),
        Item::File("a.8bytes", b"12345678".to_vec(), 0o644),
    ]
}

/// Create `items` under a new directory `root`, in the given order.
fn build<'a>(root: &Path, items: impl IntoIterator<Item = &'a Item>) {
    fs::create_dir_all(root).unwrap();
    for item in items {
        match item {
            Item::File(path, content, mode) => write_file(&root.join(path), content, *mode),
            Item::Dir(path) => fs::create_dir_all(root.join(path)).unwrap(),
            Item::Link(path, target) => symlink(target, root.join(path)).unwrap(),
        }
    }
}

fn sample_tree() -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    build(&root, &sample());
    (tmp, root)
}

fn archive_of(path: &Path) -> (Vec<u8>, TreeInfo) {
    let mut bytes = Vec::new();
    let info = write_archive(path, &mut bytes).unwrap();
    (bytes, info)
}

/// What a tree holds, as sorted (path, description) pairs; file modes reduced to the
/// executable bit unless `exact_modes`.
fn describe(root: &Path, exact_modes: bool) -> Vec<(PathBuf, String)> {
    fn walk(root: &Path, path: &Path, exact: bool, out: &mut Vec<(PathBuf, String)>) {
        let meta = fs::symlink_metadata(path).unwrap();
        let rel = path.strip_prefix(root).unwrap().to_owned();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_symlink() {
            out.push((
                rel,
                format!("link {}", fs::read_link(path).unwrap().display()),
            ));
        } else if meta.is_dir() {
            out.push((
                rel,
                if exact {
                    format!("dir {mode:o}")
                } else {
                    "dir".into()
                },
            ));
            let mut names: Vec<_> = fs::read_dir(path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            for child in names {
                walk(root, &child, exact, out);
            }
        } else {
            let content = blake3::hash(&fs::read(path).unwrap()).to_hex();
            let mode = if exact {
                format!("{mode:o}")
            } else {
                (mode & 0o111 != 0).to_string()
            };
            out.push((rel, format!("file {mode} {content}")));
        }
    }
    let mut out = Vec::new();
    walk(root, root, exact_modes, &mut out);
    out
}

// ---------------------------------------------------------------------------------------
// Real trees

#[test]
fn round_trip_keeps_content_modes_and_hash() {
    let (tmp, root) = sample_tree();
    let (bytes, info) = archive_of(&root);
    assert_eq!(info.archive_size, bytes.len() as u64);
    assert_eq!(hash_path(&root).unwrap(), info);
    assert_eq!(info.files, 9);
    // 13 items, plus the root and the implicit directories bin, nested, nested/a,
    // nested/a/b, nested/a/b/c.
    assert_eq!(info.entries, 13 + 1 + 5);
    assert_eq!(
        info.bytes,
        sample()
            .iter()
            .map(|i| match i {
                Item::File(_, c, _) => c.len() as u64,
                _ => 0,
            })
            .sum::<u64>()
    );

    let dest = tmp.path().join("unpacked");
    let unpacked = unpack_archive(&mut bytes.as_slice(), &dest, &Limits::default()).unwrap();
    assert_eq!(unpacked, info);
    assert_eq!(describe(&root, false), describe(&dest, false));
    assert_eq!(hash_path(&dest).unwrap(), info);
    assert_eq!(archive_of(&dest).0, bytes);

    // Canonical modes: files 0444 or 0555, directories 0555; symlinks as they are.
    for (path, what) in describe(&dest, true) {
        let ok = what.starts_with("link ")
            || what == "dir 555"
            || what.starts_with("file 444 ")
            || what.starts_with("file 555 ");
        assert!(ok, "{}: {what}", path.display());
    }
    let mode = |p: &str| fs::metadata(dest.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("bin/run"), 0o555);
    assert_eq!(mode("日本語/ファイル"), 0o555, "any executable bit counts");
    assert_eq!(mode("big.bin"), 0o444);
    assert_eq!(
        fs::read_link(dest.join("link-dangling")).unwrap(),
        Path::new("does/not/exist")
    );

    remove_tree(&dest).unwrap();
    assert!(!dest.exists());
}

#[test]
fn listing_reports_every_entry_in_stream_order() {
    let (_tmp, root) = sample_tree();
    let (bytes, info) = archive_of(&root);
    let listing = list_archive(&mut bytes.as_slice(), &Limits::default()).unwrap();
    assert_eq!(listing.info, info);
    let paths: Vec<_> = listing
        .entries
        .iter()
        .map(|e| e.path.to_str().unwrap())
        .collect();
    assert_eq!(paths[..4], ["", "Zebra", "a.8bytes", "big.bin"]);
    assert_eq!(*paths.last().unwrap(), "日本語/ファイル");
    let big = listing
        .entries
        .iter()
        .find(|e| e.path == Path::new("big.bin"))
        .unwrap();
    // Hashed in parallel chunks, yet the plain blake3 of the content.
    let EntryKind::File { content_hash, .. } = big.kind else {
        panic!("{big:?}");
    };
    assert_eq!(content_hash, *blake3::hash(&noise(3 << 20, 1)).as_bytes());
    let run = listing
        .entries
        .iter()
        .find(|e| e.path == Path::new("bin/run"))
        .unwrap();
    assert_eq!(
        run.kind,
        EntryKind::File {
            executable: true,
            size: 19,
            content_hash: *blake3::hash(b"#!/bin/sh\necho run\n").as_bytes(),
        }
    );
}

#[test]
fn roots_may_be_files_or_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    write_file(&file, b"just a file", 0o755);
    let link = tmp.path().join("link");
    symlink("file", &link).unwrap();
    for src in [&file, &link] {
        let (bytes, info) = archive_of(src);
        assert_eq!(hash_path(src).unwrap(), info);
        assert_eq!(info.entries, 1);
        let dest = tmp.path().join(format!("{}.out", src.display()));
        let unpacked = unpack_archive(&mut bytes.as_slice(), &dest, &Limits::default()).unwrap();
        assert_eq!(unpacked, info);
        assert_eq!(
            fs::symlink_metadata(&dest).unwrap().is_symlink(),
            src == &link,
            "the root symlink is archived, not followed"
        );
    }
    assert_eq!(
        fs::read(tmp.path().join("file.out")).unwrap(),
        b"just a file"
    );
    assert_eq!(
        fs::metadata(tmp.path().join("file.out"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o555
    );
}

#[test]
fn same_tree_in_any_creation_order_gives_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let items = sample();
    let one = tmp.path().join("one");
    build(&one, &items);
    let two = tmp.path().join("two");
    build(&two, items.iter().rev());
    // Modes other than the executable bit, and times, do not count.
    fs::set_permissions(two.join("empty-file"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(two.join("bin/run"), fs::Permissions::from_mode(0o100)).unwrap();
    fs::set_permissions(two.join("empty-dir"), fs::Permissions::from_mode(0o700)).unwrap();
    let (a, info_a) = archive_of(&one);
    let (b, info_b) = archive_of(&two);
    assert!(a == b, "archives differ");
    assert_eq!(info_a, info_b);
    assert_eq!(hash_path(&one).unwrap().hash, hash_path(&two).unwrap().hash);
}

#[test]
fn every_kind_of_change_changes_the_hash() {
    let (_tmp, root) = sample_tree();
    let base = hash_path(&root).unwrap().hash;
    let changed = |change: &dyn Fn(), undo: &dyn Fn(), what: &str| {
        change();
        let after = hash_path(&root).unwrap();
        let (_, written) = archive_of(&root);
        assert_eq!(after, written, "{what}");
        assert_ne!(after.hash, base, "{what} left the hash unchanged");
        undo();
        assert_eq!(hash_path(&root).unwrap().hash, base, "undoing {what}");
    };
    let big = root.join("big.bin");
    let original = fs::read(&big).unwrap();
    let mut flipped = original.clone();
    flipped[2 << 20] ^= 1;
    changed(
        &|| fs::write(&big, &flipped).unwrap(),
        &|| fs::write(&big, &original).unwrap(),
        "one byte",
    );
    let small = root.join("nested/a/b/c/deep.txt");
    changed(
        &|| fs::write(&small, b"deeP\n").unwrap(),
        &|| fs::write(&small, b"deep\n").unwrap(),
        "one byte of a small file",
    );
    let run = root.join("bin/run");
    let run = &run;
    let mode = |m| move || fs::set_permissions(run, fs::Permissions::from_mode(m)).unwrap();
    changed(&mode(0o644), &mode(0o755), "the executable bit");
    let (from, to) = (root.join("Zebra"), root.join("Zebrb"));
    changed(
        &|| fs::rename(&from, &to).unwrap(),
        &|| fs::rename(&to, &from).unwrap(),
        "a name",
    );
    let link = root.join("link-relative");
    let retarget = |t: &'static str| {
        let link = link.clone();
        move || {
            fs::remove_file(&link).unwrap();
            symlink(t, &link).unwrap();
        }
    };
    changed(
        &retarget("nested/b"),
        &retarget("nested/a"),
        "a symlink target",
    );
    let extra = root.join("empty-dir/new");
    changed(
        &|| fs::create_dir(&extra).unwrap(),
        &|| fs::remove_dir(&extra).unwrap(),
        "an added empty directory",
    );
    let empty = root.join("empty-file");
    changed(
        &|| {
            fs::remove_file(&empty).unwrap();
            fs::create_dir(&empty).unwrap();
        },
        &|| {
            fs::remove_dir(&empty).unwrap();
            fs::write(&empty, b"").unwrap();
        },
        "a file turned into an empty directory",
    );
}

#[test]
fn special_files_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    write_file(&root.join("a/ok"), b"fine", 0o644);
    let fifo = root.join("a/pipe");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let check = |err: ArchiveError, kind: &str, path: &Path| {
        assert!(
            matches!(&err, ArchiveError::Unsupported { path: p, kind: k } if p == path && *k == kind),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    };
    check(hash_path(&root).unwrap_err(), "fifo", &fifo);
    check(
        write_archive(&root, &mut Vec::new()).unwrap_err(),
        "fifo",
        &fifo,
    );
    check(hash_path(&fifo).unwrap_err(), "fifo", &fifo);
    fs::remove_file(&fifo).unwrap();

    let socket = root.join("a/socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    check(hash_path(&root).unwrap_err(), "socket", &socket);
    fs::remove_file(&socket).unwrap();

    assert!(hash_path(&root).is_ok());
    let missing = root.join("missing");
    let err = hash_path(&missing).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Io { path, .. } if *path == missing),
        "{err:?}"
    );
}

#[test]
fn files_whose_size_is_not_their_content_are_refused() {
    // procfs files say 0 bytes and hold more; sysfs attributes say 4096 and hold less.
    // Both stand in for a file written to while it is read.
    for path in ["/proc/self/stat", "/sys/kernel/profiling"].map(Path::new) {
        if !path.exists() {
            continue;
        }
        let err = hash_path(path).unwrap_err();
        assert!(
            matches!(&err, ArchiveError::Changed { path: p } if p == path),
            "{err:?}"
        );
        assert!(matches!(
            write_archive(path, &mut Vec::new()).unwrap_err(),
            ArchiveError::Changed { .. }
        ));
    }
}

/// A chain of `depth` nested directories `d/d/d/…` with a file at the bottom.
fn deep_tree(root: &Path, depth: usize) -> PathBuf {
    let mut path = root.to_owned();
    for _ in 0..depth {
        path.push("d");
    }
    fs::create_dir_all(&path).unwrap();
    path
}

#[test]
fn trees_deeper_than_the_default_limit_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // Depth 256 (the limit) round-trips.
    let ok = tmp.path().join("ok");
    deep_tree(&ok, 256);
    let (bytes, info) = archive_of(&ok);
    assert_eq!(hash_path(&ok).unwrap(), info);
    let dest = tmp.path().join("ok.out");
    assert_eq!(
        unpack_archive(&mut bytes.as_slice(), &dest, &Limits::default()).unwrap(),
        info
    );

    let deep = tmp.path().join("deep");
    let bottom = deep_tree(&deep, 257);
    let err = hash_path(&deep).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::TreeLimit { path, what: LimitKind::Depth, limit: 256 } if *path == bottom),
        "{err:?}"
    );
    assert!(matches!(
        write_archive(&deep, &mut Vec::new()).unwrap_err(),
        ArchiveError::TreeLimit {
            what: LimitKind::Depth,
            ..
        }
    ));
}

#[test]
fn bushy_trees_hash_the_same_in_parallel_and_in_sequence() {
    // 2^10 leaf directories 10 levels down (below and above the depth where hashing
    // stops recursing in parallel), each with a file.
    fn grow(dir: &Path, levels: u32, seed: &mut u64) {
        if levels == 0 {
            *seed += 1;
            write_file(&dir.join("leaf"), &noise(100, *seed), 0o644);
            return;
        }
        for half in ["0", "1"] {
            grow(&dir.join(half), levels - 1, seed);
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    grow(&deep_tree(&root, 8), 10, &mut 0);
    let (bytes, info) = archive_of(&root);
    assert_eq!(hash_path(&root).unwrap(), info);
    assert_eq!(info.files, 1024);
    assert_eq!(info.archive_size, bytes.len() as u64);
}

#[test]
fn unpacking_never_overwrites() {
    let (tmp, root) = sample_tree();
    let (bytes, _) = archive_of(&root);
    let dest = tmp.path().join("exists");
    write_file(&dest.join("keep"), b"mine", 0o644);
    let err = unpack_archive(&mut bytes.as_slice(), &dest, &Limits::default()).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Io { path, .. } if *path == dest),
        "{err:?}"
    );
    assert_eq!(
        fs::read(dest.join("keep")).unwrap(),
        b"mine",
        "an existing dest is left alone"
    );
}

// ---------------------------------------------------------------------------------------
// Hand-built streams

/// A stream built field by field.
struct Stream(Vec<u8>);

impl Stream {
    fn new() -> Stream {
        Stream(ARCHIVE_MAGIC.to_vec())
    }
    fn raw(mut self, bytes: &[u8]) -> Stream {
        self.0.extend_from_slice(bytes);
        self
    }
    fn u64(self, n: u64) -> Stream {
        self.raw(&n.to_le_bytes())
    }
    fn pad(mut self) -> Stream {
        self.0.resize(self.0.len().next_multiple_of(8), 0);
        self
    }
    fn string(self, s: &[u8]) -> Stream {
        self.u64(s.len() as u64).raw(s).pad()
    }
    fn dir(self, entries: u64) -> Stream {
        self.u64(4).u64(entries)
    }
    fn file(self, content: &[u8]) -> Stream {
        self.u64(1).string(content)
    }
    fn link(self, target: &[u8]) -> Stream {
        self.u64(3).string(target)
    }
}

/// Unpack `bytes` with `limits`; the error, after checking nothing was left behind.
fn unpack_err_with(bytes: &[u8], limits: &Limits) -> ArchiveError {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    let err = unpack_archive(&mut &bytes[..], &dest, limits).unwrap_err();
    assert!(
        fs::symlink_metadata(&dest).is_err(),
        "{} left behind after: {err}",
        dest.display()
    );
    let listed = list_archive(&mut &bytes[..], limits).unwrap_err();
    assert_eq!(
        listed.to_string(),
        err.to_string(),
        "listing and unpacking agree"
    );
    err
}

fn unpack_err(bytes: &[u8]) -> ArchiveError {
    unpack_err_with(bytes, &Limits::default())
}

#[track_caller]
fn assert_malformed(bytes: &[u8], offset: u64, path: &str, what: &Malformation) {
    match unpack_err(bytes) {
        ArchiveError::Malformed {
            offset: o,
            path: p,
            what: w,
        } if o == offset && p == Path::new(path) && w == *what => {}
        other => panic!("expected {what:?} at {offset} in {path:?}, got {other:?}"),
    }
}

#[test]
fn a_valid_hand_built_stream_unpacks() {
    let bytes = Stream::new()
        .dir(3)
        .string(b"a")
        .dir(0)
        .string(b"b")
        .link(b"a")
        .string(b"c")
        .u64(2)
        .string(b"#!")
        .0;
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    let info = unpack_archive(&mut bytes.as_slice(), &dest, &Limits::default()).unwrap();
    assert_eq!(info.archive_size, bytes.len() as u64);
    assert_eq!(hash_path(&dest).unwrap(), info);
    assert_eq!(archive_of(&dest).0, bytes);
}

#[test]
fn bad_magic() {
    let mut bytes = Stream::new().file(b"").0;
    bytes[15] = b'2';
    assert_malformed(&bytes, 0, "", &Malformation::BadMagic);
}

#[test]
fn unknown_tags() {
    for tag in [0, 5, u64::MAX] {
        let bytes = Stream::new().dir(1).string(b"x").u64(tag).0;
        assert_malformed(&bytes, 48, "x", &Malformation::UnknownTag(tag));
    }
}

#[test]
fn names_must_be_sorted_and_unique() {
    let bytes = Stream::new()
        .dir(2)
        .string(b"b")
        .file(b"")
        .string(b"a")
        .file(b"")
        .0;
    let what = Malformation::Unsorted {
        name: b"a".to_vec(),
        previous: b"b".to_vec(),
    };
    assert_malformed(&bytes, 64, "", &what);
    // Bytewise, not by locale: `B` (0x42) sorts before `a` (0x61), `a` before `ä`.
    let bytes = Stream::new()
        .dir(2)
        .string("ä".as_bytes())
        .file(b"")
        .string(b"a")
        .file(b"")
        .0;
    assert!(matches!(
        unpack_err(&bytes),
        ArchiveError::Malformed {
            what: Malformation::Unsorted { .. },
            ..
        }
    ));
    let bytes = Stream::new()
        .dir(2)
        .string(b"a")
        .file(b"")
        .string(b"a")
        .file(b"")
        .0;
    assert_malformed(&bytes, 64, "", &Malformation::Duplicate(b"a".to_vec()));
    // A prefix sorts first; the error names the directory holding the entries.
    let bytes = Stream::new()
        .dir(1)
        .string(b"sub")
        .dir(2)
        .string(b"ab")
        .file(b"")
        .string(b"a")
        .file(b"")
        .0;
    let err = unpack_err(&bytes);
    assert_eq!(
        err.to_string(),
        "malformed archive at byte 96 in `sub`: entry `a` after `ab`: names must be in increasing bytewise order"
    );
}

#[test]
fn bad_names() {
    for name in [&b"."[..], b"..", b"a/b", b"/", b"a\0b"] {
        let bytes = Stream::new().dir(1).string(name).file(b"").0;
        assert_malformed(&bytes, 32, "", &Malformation::BadName(name.to_vec()));
    }
    let bytes = Stream::new().dir(1).string(b"").file(b"").0;
    assert_malformed(&bytes, 32, "", &Malformation::EmptyName);
    let long = vec![b'n'; 256];
    let bytes = Stream::new().dir(1).string(&long).file(b"").0;
    assert_malformed(&bytes, 32, "", &Malformation::NameTooLong(256));
    // 255 bytes is fine.
    let bytes = Stream::new().dir(1).string(&long[..255]).file(b"").0;
    assert!(list_archive(&mut bytes.as_slice(), &Limits::default()).is_ok());
}

#[test]
fn bad_symlink_targets() {
    let bytes = Stream::new().link(b"").0;
    assert_malformed(&bytes, 24, "", &Malformation::EmptyTarget);
    let bytes = Stream::new().link(b"a\0b").0;
    assert_malformed(
        &bytes,
        24,
        "",
        &Malformation::TargetWithNul(b"a\0b".to_vec()),
    );
    let long = vec![b'x'; 4096];
    let bytes = Stream::new().link(&long).0;
    assert_malformed(&bytes, 24, "", &Malformation::TargetTooLong(4096));
    let bytes = Stream::new().link(&long[..4095]).0;
    assert!(list_archive(&mut bytes.as_slice(), &Limits::default()).is_ok());
}

#[test]
fn padding_must_be_zero() {
    // After a name.
    let mut bytes = Stream::new().dir(1).string(b"abc").file(b"").0;
    bytes[43] = 1;
    assert_malformed(&bytes, 43, "", &Malformation::NonZeroPadding);
    // After file content.
    let mut bytes = Stream::new().file(b"hello").0;
    bytes[39] = 0x80;
    assert_malformed(&bytes, 37, "", &Malformation::NonZeroPadding);
    // After a symlink target.
    let mut bytes = Stream::new().link(b"t").0;
    bytes[33] = 1;
    assert_malformed(&bytes, 33, "", &Malformation::NonZeroPadding);
}

#[test]
fn every_truncation_is_an_error() {
    let (_tmp, root) = {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("tree");
        build(
            &root,
            &[
                Item::File("a/file", b"content!x".to_vec(), 0o755),
                Item::Link("a/link", "file"),
                Item::Dir("b"),
                Item::File("c", b"".to_vec(), 0o644),
            ],
        );
        (tmp, root)
    };
    let (bytes, _) = archive_of(&root);
    for len in 0..bytes.len() {
        match unpack_err(&bytes[..len]) {
            ArchiveError::Truncated { offset, .. } => assert_eq!(offset, len as u64),
            other => panic!("cut at {len}: {other:?}"),
        }
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    let (_tmp, root) = sample_tree();
    let (bytes, _) = archive_of(&root);
    for tail in [&[0u8][..], &[0; 8], b"garbage!"] {
        let mut long = bytes.clone();
        long.extend_from_slice(tail);
        assert_malformed(&long, bytes.len() as u64, "", &Malformation::TrailingBytes);
    }
}

#[test]
fn huge_length_fields_are_refused_before_allocating() {
    let huge = 1 << 62;
    // A file size: the content limit.
    let bytes = Stream::new().u64(1).u64(huge).0;
    assert!(matches!(
        unpack_err(&bytes),
        ArchiveError::Limit {
            offset: 24,
            what: LimitKind::Bytes,
            ..
        }
    ));
    // Names and targets: their format bounds.
    let bytes = Stream::new().dir(1).u64(huge).0;
    assert_malformed(&bytes, 32, "", &Malformation::NameTooLong(huge));
    let bytes = Stream::new().u64(3).u64(huge).0;
    assert_malformed(&bytes, 24, "", &Malformation::TargetTooLong(huge));
    let bytes = Stream::new().u64(3).u64(u64::MAX).0;
    assert_malformed(&bytes, 24, "", &Malformation::TargetTooLong(u64::MAX));
    // An entry count: the entry limit.
    let bytes = Stream::new().dir(huge).0;
    assert!(matches!(
        unpack_err(&bytes),
        ArchiveError::Limit {
            offset: 24,
            what: LimitKind::Entries,
            ..
        }
    ));
    let bytes = Stream::new().dir(u64::MAX).0;
    assert!(matches!(
        unpack_err(&bytes),
        ArchiveError::Limit {
            what: LimitKind::Entries,
            ..
        }
    ));
    // Even with no limits at all, a huge size is only ever a truncated stream.
    let none = Limits {
        max_depth: u64::MAX,
        max_entries: u64::MAX,
        max_bytes: u64::MAX,
        max_path_len: u64::MAX,
    };
    let bytes = Stream::new().u64(1).u64(u64::MAX).0;
    assert!(matches!(
        unpack_err_with(&bytes, &none),
        ArchiveError::Truncated { .. }
    ));
    let bytes = Stream::new().dir(u64::MAX - 1).0;
    assert!(matches!(
        unpack_err_with(&bytes, &none),
        ArchiveError::Truncated { .. }
    ));
    // The root and 2^64 - 1 entries are more than any limit can allow.
    let bytes = Stream::new().dir(u64::MAX).0;
    assert!(matches!(
        unpack_err_with(&bytes, &none),
        ArchiveError::Limit {
            what: LimitKind::Entries,
            ..
        }
    ));
}

#[test]
fn depth_limit() {
    let mut s = Stream::new();
    for _ in 0..300 {
        s = s.dir(1).string(b"d");
    }
    let bytes = s.dir(0).0;
    let err = unpack_err(&bytes);
    let ArchiveError::Limit {
        path,
        what: LimitKind::Depth,
        limit: 256,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(path.components().count(), 257);

    let limits = Limits {
        max_depth: 300,
        ..Limits::DEFAULT
    };
    assert!(list_archive(&mut bytes.as_slice(), &limits).is_ok());
}

#[test]
fn entry_byte_and_path_limits() {
    let mut s = Stream::new().dir(20);
    for i in 0..20 {
        s = s.string(format!("f{i:02}").as_bytes()).file(b"12345");
    }
    let bytes = s.0;
    let limits = |max_entries, max_bytes, max_path_len| Limits {
        max_entries,
        max_bytes,
        max_path_len,
        ..Limits::DEFAULT
    };
    assert!(list_archive(&mut bytes.as_slice(), &limits(21, 100, 3)).is_ok());
    assert!(matches!(
        unpack_err_with(&bytes, &limits(20, 100, 3)),
        ArchiveError::Limit {
            offset: 24,
            what: LimitKind::Entries,
            limit: 20,
            ..
        }
    ));
    // The 20th file would bring the content to 100 bytes.
    let err = unpack_err_with(&bytes, &limits(21, 99, 3));
    assert!(
        matches!(
            &err,
            ArchiveError::Limit { what: LimitKind::Bytes, limit: 99, path, .. } if path == Path::new("f19")
        ),
        "{err:?}"
    );
    assert!(matches!(
        unpack_err_with(&bytes, &limits(21, 100, 2)),
        ArchiveError::Limit {
            offset: 32,
            what: LimitKind::PathLength,
            limit: 2,
            ..
        }
    ));
}

#[test]
fn errors_after_entries_were_created_remove_them() {
    // `a` (a directory holding a file, made read-only once complete) is created before
    // the unsorted `0` is found.
    let bytes = Stream::new()
        .dir(2)
        .string(b"a")
        .dir(1)
        .string(b"f")
        .file(b"data")
        .string(b"0")
        .file(b"")
        .0;
    assert!(matches!(
        unpack_err(&bytes),
        ArchiveError::Malformed {
            what: Malformation::Unsorted { .. },
            ..
        }
    ));
}

// ---------------------------------------------------------------------------------------
// The worked example of docs/archive.md

/// The archive as the document shows it: `offset  8 bytes in hex` per line.
fn hex_lines(bytes: &[u8]) -> Vec<String> {
    bytes
        .chunks(8)
        .enumerate()
        .map(|(i, word)| {
            let hex: Vec<_> = word.iter().map(|b| format!("{b:02x}")).collect();
            format!("{:04x}  {}", i * 8, hex.join(" "))
        })
        .collect()
}

fn hex(hash: &[u8; 32]) -> String {
    blake3::Hash::from_bytes(*hash).to_hex().to_string()
}

/// The example's hashes, computed here from the document's definition (not with the
/// library), so that the library, the document and this test must all agree: the
/// content hashes, node hashes and the tree hash, with their labels in the document.
fn example_hashes_by_hand(hello: &[u8], greet: &[u8]) -> Vec<(&'static str, String)> {
    let file = |exec: u8, content: &[u8]| {
        let mut b = b"nexis-tree-v1\0file\0".to_vec();
        b.push(exec);
        b.extend_from_slice(&(content.len() as u64).to_le_bytes());
        b.extend_from_slice(blake3::hash(content).as_bytes());
        *blake3::hash(&b).as_bytes()
    };
    let (greet_node, hello_node) = (file(1, greet), file(0, hello));
    let mut dir = b"nexis-tree-v1\0dir\0".to_vec();
    dir.extend_from_slice(&2u64.to_le_bytes());
    for (name, hash) in [(&b"greet"[..], greet_node), (b"hello", hello_node)] {
        dir.extend_from_slice(&(name.len() as u64).to_le_bytes());
        dir.extend_from_slice(name);
        dir.extend_from_slice(&hash);
    }
    vec![
        ("blake3(greet content)", hex(blake3::hash(greet).as_bytes())),
        ("blake3(hello content)", hex(blake3::hash(hello).as_bytes())),
        ("greet node", hex(&greet_node)),
        ("hello node", hex(&hello_node)),
        ("tree hash", hex(blake3::hash(&dir).as_bytes())),
    ]
}

#[test]
fn the_documented_example_is_true() {
    let hello = b"hi\n";
    let greet = b"#!/bin/sh\necho hi\n";
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("example");
    build(
        &root,
        &[
            Item::File("hello", hello.to_vec(), 0o644),
            Item::File("greet", greet.to_vec(), 0o755),
        ],
    );
    let (bytes, info) = archive_of(&root);
    let hashes = example_hashes_by_hand(hello, greet);
    assert_eq!(hashes.last().unwrap().1, info.hash_hex());
    assert_eq!(info.archive_size, 128);

    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/archive.md");
    let doc = fs::read_to_string(&doc_path).unwrap();
    let lines = hex_lines(&bytes);
    let stale = lines
        .iter()
        .any(|l| !doc.lines().any(|d| d.starts_with(l.as_str())))
        || hashes.iter().any(|(_, h)| !doc.contains(h.as_str()));
    assert!(
        !stale,
        "docs/archive.md is out of date; the example's archive is\n{}\nand its hashes\n{}",
        lines.join("\n"),
        hashes
            .iter()
            .map(|(label, h)| format!("{label}: {h}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Inputs the fuzzer found

#[test]
fn fuzzed_inputs_are_handled() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzzed");
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let bytes = fs::read(&path).unwrap();
        let listed = list_archive(&mut bytes.as_slice(), &Limits::default());
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("dest");
        let unpacked = unpack_archive(&mut bytes.as_slice(), &dest, &Limits::default());
        match (listed, unpacked) {
            (Ok(listing), Ok(info)) => assert_eq!(listing.info, info, "{}", path.display()),
            (Err(a), Err(b)) => {
                assert_eq!(a.to_string(), b.to_string(), "{}", path.display());
                assert!(!dest.exists(), "{}", path.display());
            }
            (a, b) => panic!("{}: list {a:?}, unpack {b:?}", path.display()),
        }
        count += 1;
    }
    assert!(count > 0, "no inputs in {}", dir.display());
}
