//! Unpacking archives: good trees in every format, and hostile archives built here at
//! run time (raw tar headers for what the tar writer refuses to produce, patched bytes
//! for zip). Every refusal must name the entry and leave nothing at `dest` (nor beside
//! it).

use std::fs;
use std::io::{Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nexis_fetch::{
    ArchiveKind, EntryError, Limits, UnpackError, UnpackReport, unpack, unpack_file,
};
use tar::{EntryType, Header};
use zip::write::SimpleFileOptions;

// ---------------------------------------------------------------------------------------
// Building archives

/// A tar header written as is: any name (up to 100 bytes), type, size and link.
fn header(name: &[u8], kind: EntryType, size: u64, mode: u32, link: &[u8]) -> Header {
    let mut h = Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_cksum();
    h
}

/// One tar entry.
enum T<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Raw(Box<Header>, Vec<u8>),
}

fn tar(entries: &[T<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            T::Dir(name) => b.append(
                &header(name.as_bytes(), EntryType::Directory, 0, 0o755, b""),
                &[][..],
            ),
            T::File(name, data, mode) => {
                if name.len() > 100 {
                    // The writer emits a GNU long-name entry first.
                    let mut h = Header::new_gnu();
                    h.set_size(data.len() as u64);
                    h.set_mode(*mode);
                    b.append_data(&mut h, name, *data)
                } else {
                    let h = header(
                        name.as_bytes(),
                        EntryType::Regular,
                        data.len() as u64,
                        *mode,
                        b"",
                    );
                    b.append(&h, *data)
                }
            }
            T::Symlink(name, target) => b.append(
                &header(
                    name.as_bytes(),
                    EntryType::Symlink,
                    0,
                    0o777,
                    target.as_bytes(),
                ),
                &[][..],
            ),
            T::Hard(name, target) => b.append(
                &header(
                    name.as_bytes(),
                    EntryType::Link,
                    0,
                    0o644,
                    target.as_bytes(),
                ),
                &[][..],
            ),
            T::Raw(h, data) => b.append(h, &data[..]),
        }
        .unwrap();
    }
    b.into_inner().unwrap()
}

fn compress(kind: ArchiveKind, tar: &[u8]) -> Vec<u8> {
    match kind {
        ArchiveKind::Tar => tar.to_vec(),
        ArchiveKind::TarGz => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        ArchiveKind::TarXz => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        ArchiveKind::TarZst => zstd::encode_all(tar, 3).unwrap(),
        ArchiveKind::Zip => unreachable!("zips are built by `zip_of`"),
    }
}

type ZipW = zip::ZipWriter<Cursor<Vec<u8>>>;

fn zip_of(build: impl FnOnce(&mut ZipW)) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    build(&mut w);
    w.finish().unwrap().into_inner()
}

fn deflated(mode: u32) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(mode)
}

fn zip_file(w: &mut ZipW, name: &str, data: &[u8], mode: u32) {
    w.start_file(name, deflated(mode)).unwrap();
    w.write_all(data).unwrap();
}

/// The offset of a zip's central directory, from its end record (no comment).
fn central_directory(zip: &[u8]) -> usize {
    let eocd = zip.len() - 22;
    assert_eq!(zip[eocd..eocd + 4], [0x50, 0x4b, 0x05, 0x06]);
    u32::from_le_bytes(zip[eocd + 16..eocd + 20].try_into().unwrap()) as usize
}

// ---------------------------------------------------------------------------------------
// Running

fn unpack_ok(
    kind: ArchiveKind,
    bytes: &[u8],
    limits: &Limits,
) -> (tempfile::TempDir, UnpackReport) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let report = unpack(kind, bytes, &dest, limits).unwrap_or_else(|e| panic!("{}", chain(&e)));
    // Nothing is left beside `dest`: no staging directory, no spooled zip.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    (dir, report)
}

/// Unpack, expect a refusal, check that nothing is left, and return the error.
fn refuse_with(kind: ArchiveKind, bytes: &[u8], limits: &Limits) -> UnpackError {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let err = unpack(kind, bytes, &dest, limits).expect_err("the archive must be refused");
    assert!(
        !dest.exists() && dest.symlink_metadata().is_err(),
        "{err}: `dest` exists"
    );
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "{err}: left behind {left:?}");
    err
}

fn refuse(kind: ArchiveKind, bytes: &[u8]) -> UnpackError {
    refuse_with(kind, bytes, &Limits::DEFAULT)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The refusal names `entry` and its reason matches.
fn assert_entry(err: &UnpackError, entry: &str, matches: impl FnOnce(&EntryError) -> bool) {
    let UnpackError::Entry { name, reason } = err else {
        panic!("not an entry error: {}", chain(err));
    };
    assert_eq!(name, entry, "{}", chain(err));
    assert!(matches(reason), "unexpected reason: {}", chain(err));
    assert!(
        err.to_string().starts_with(&format!("entry `{entry}`: ")),
        "{err}"
    );
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

// ---------------------------------------------------------------------------------------
// Good archives

/// The small tree every format carries: an executable, a plain file, a symlink inside
/// the tree, an empty directory, all under one top-level directory.
fn sample_tar() -> Vec<u8> {
    tar(&[
        T::Dir("pkg-1.0/"),
        T::Dir("pkg-1.0/bin/"),
        T::File("pkg-1.0/bin/run", b"#!/bin/sh\necho hi\n", 0o4775),
        T::File("pkg-1.0/README", b"hello\n", 0o664),
        T::Symlink("pkg-1.0/bin/readme", "../README"),
        T::Dir("pkg-1.0/empty/"),
    ])
}

fn sample_zip() -> Vec<u8> {
    zip_of(|w| {
        w.add_directory("pkg-1.0/", deflated(0o755)).unwrap();
        w.add_directory("pkg-1.0/bin/", deflated(0o755)).unwrap();
        zip_file(w, "pkg-1.0/bin/run", b"#!/bin/sh\necho hi\n", 0o775);
        zip_file(w, "pkg-1.0/README", b"hello\n", 0o664);
        w.add_symlink("pkg-1.0/bin/readme", "../README", deflated(0o777))
            .unwrap();
        w.add_directory("pkg-1.0/empty/", deflated(0o755)).unwrap();
    })
}

fn check_sample(dest: &Path, report: &UnpackReport) {
    assert_eq!(
        *report,
        UnpackReport {
            files: 2,
            dirs: 2,
            symlinks: 1,
            bytes: 24,
            stripped: Some("pkg-1.0".into()),
        }
    );
    assert_eq!(
        fs::read(dest.join("bin/run")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(fs::read(dest.join("README")).unwrap(), b"hello\n");
    assert_eq!(
        mode(&dest.join("bin/run")),
        0o755,
        "setuid and group write dropped"
    );
    assert_eq!(mode(&dest.join("README")), 0o644);
    assert_eq!(mode(&dest.join("bin")), 0o755);
    assert_eq!(mode(dest), 0o755);
    assert_eq!(
        fs::read_link(dest.join("bin/readme")).unwrap(),
        Path::new("../README")
    );
    assert_eq!(fs::read(dest.join("bin/readme")).unwrap(), b"hello\n");
    assert!(fs::read_dir(dest.join("empty")).unwrap().next().is_none());
    let mut top: Vec<_> = fs::read_dir(dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(top, ["README", "bin", "empty"]);
}

#[test]
fn every_format_round_trips_a_small_tree() {
    let tar = sample_tar();
    for kind in [
        ArchiveKind::Tar,
        ArchiveKind::TarGz,
        ArchiveKind::TarXz,
        ArchiveKind::TarZst,
    ] {
        let (dir, report) = unpack_ok(kind, &compress(kind, &tar), &Limits::DEFAULT);
        check_sample(&dir.path().join("out"), &report);
    }
    let zip = sample_zip();
    let (dir, report) = unpack_ok(ArchiveKind::Zip, &zip, &Limits::DEFAULT);
    check_sample(&dir.path().join("out"), &report);
    // In place, from a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.zip");
    fs::write(&file, &zip).unwrap();
    let report = unpack_file(
        ArchiveKind::Zip,
        &file,
        &dir.path().join("out"),
        &Limits::DEFAULT,
    )
    .unwrap();
    check_sample(&dir.path().join("out"), &report);
    let file = dir.path().join("a.tar.zst");
    fs::write(&file, compress(ArchiveKind::TarZst, &tar)).unwrap();
    let report = unpack_file(
        ArchiveKind::TarZst,
        &file,
        &dir.path().join("out2"),
        &Limits::DEFAULT,
    )
    .unwrap();
    check_sample(&dir.path().join("out2"), &report);
}

#[test]
fn several_top_level_entries_are_not_stripped() {
    let bytes = tar(&[
        T::Dir("a/"),
        T::File("a/x", b"x", 0o644),
        T::File("b", b"y", 0o644),
    ]);
    let (dir, report) = unpack_ok(ArchiveKind::Tar, &bytes, &Limits::DEFAULT);
    assert_eq!(report.stripped, None);
    assert_eq!((report.files, report.dirs), (2, 1));
    let out = dir.path().join("out");
    assert_eq!(fs::read(out.join("a/x")).unwrap(), b"x");
    assert_eq!(fs::read(out.join("b")).unwrap(), b"y");
    // Two directories at the top.
    let bytes = tar(&[T::File("a/x", b"x", 0o644), T::File("b/y", b"y", 0o644)]);
    let (_dir, report) = unpack_ok(ArchiveKind::Tar, &bytes, &Limits::DEFAULT);
    assert_eq!(report.stripped, None);
    assert_eq!(report.dirs, 2);
}

#[test]
fn a_single_top_level_file_is_not_stripped() {
    let bytes = tar(&[T::File("only.txt", b"x", 0o644)]);
    let (dir, report) = unpack_ok(ArchiveKind::Tar, &bytes, &Limits::DEFAULT);
    assert_eq!(report.stripped, None);
    assert_eq!(fs::read(dir.path().join("out/only.txt")).unwrap(), b"x");
    // A single top-level symlink is not a directory either.
    let bytes = tar(&[T::Symlink("link", "elsewhere")]);
    let (_dir, report) = unpack_ok(ArchiveKind::Tar, &bytes, &Limits::DEFAULT);
    assert_eq!((report.stripped, report.symlinks), (None, 1));
}

#[test]
fn the_top_level_directory_may_be_implied_and_dot_prefixed() {
    // GitHub-style `./` prefixes and no entry for the directory itself.
    let bytes = tar(&[
        T::Dir("./"),
        T::File("./src-2/a", b"a", 0o644),
        T::File("src-2//b/./c", b"c", 0o755),
    ]);
    let (dir, report) = unpack_ok(ArchiveKind::Tar, &bytes, &Limits::DEFAULT);
    assert_eq!(report.stripped.as_deref(), Some("src-2"));
    assert_eq!((report.files, report.dirs), (2, 1));
    assert_eq!(mode(&dir.path().join("out/b/c")), 0o755);
}

#[test]
fn long_names_pax_paths_and_hard_links_are_read() {
    let long = format!("top/{}/file", "d".repeat(150));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = Header::new_ustar();
    h.set_size(3);
    h.set_mode(0o644);
    b.append_pax_extensions([("path", &b"top/pax-named"[..])])
        .unwrap();
    b.append_data(&mut h, "top/short", &b"pax"[..]).unwrap();
    let mut bytes = b.into_inner().unwrap();
    bytes.truncate(bytes.len() - 1024);
    let rest = tar(&[
        T::File(&long, b"long", 0o644),
        T::Hard("top/again", "top/pax-named"),
    ]);
    bytes.extend_from_slice(&rest);
    let (dir, report) = unpack_ok(ArchiveKind::Tar, &bytes, &Limits::DEFAULT);
    let out = dir.path().join("out");
    assert_eq!(fs::read(out.join("pax-named")).unwrap(), b"pax");
    assert!(!out.join("short").exists());
    assert_eq!(fs::read(out.join(&long[4..])).unwrap(), b"long");
    assert_eq!(fs::read(out.join("again")).unwrap(), b"pax");
    assert_eq!((report.files, report.bytes), (3, 10));
}

#[test]
fn an_empty_archive_gives_an_empty_directory() {
    let (dir, report) = unpack_ok(
        ArchiveKind::TarGz,
        &compress(ArchiveKind::TarGz, &tar(&[])),
        &Limits::DEFAULT,
    );
    assert_eq!(report, UnpackReport::default());
    assert!(
        fs::read_dir(dir.path().join("out"))
            .unwrap()
            .next()
            .is_none()
    );
}

// ---------------------------------------------------------------------------------------
// Hostile names

#[test]
fn parent_components_are_refused() {
    for name in ["../evil", "a/../../evil", "a/../b"] {
        let bytes = tar(&[T::Raw(
            Box::new(header(name.as_bytes(), EntryType::Regular, 1, 0o644, b"")),
            b"x".to_vec(),
        )]);
        let err = refuse(ArchiveKind::Tar, &bytes);
        assert_entry(&err, name, |r| matches!(r, EntryError::ParentDir));
    }
    let bytes = zip_of(|w| zip_file(w, "../evil", b"x", 0o644));
    let err = refuse(ArchiveKind::Zip, &bytes);
    assert_entry(&err, "../evil", |r| matches!(r, EntryError::ParentDir));
}

#[test]
fn absolute_names_are_refused() {
    let bytes = tar(&[T::Raw(
        Box::new(header(b"/etc/evil", EntryType::Regular, 1, 0o644, b"")),
        b"x".to_vec(),
    )]);
    let err = refuse(ArchiveKind::TarGz, &compress(ArchiveKind::TarGz, &bytes));
    assert_entry(&err, "/etc/evil", |r| matches!(r, EntryError::Absolute));
    let bytes = zip_of(|w| zip_file(w, "/etc/evil", b"x", 0o644));
    let err = refuse(ArchiveKind::Zip, &bytes);
    assert_entry(&err, "/etc/evil", |r| matches!(r, EntryError::Absolute));
}

#[test]
fn duplicate_names_are_refused() {
    // Zip: the same name twice in the central directory (the writer refuses that, so `b`
    // is renamed `a` in the bytes).
    let mut twice = zip_of(|w| {
        zip_file(w, "x/a", b"1", 0o644);
        zip_file(w, "x/b", b"2", 0o644);
    });
    let cd = central_directory(&twice);
    let second = cd + 46 + 3; // the first record has no extra field or comment
    assert_eq!(&twice[second + 46..second + 49], b"x/b");
    twice[second + 48] = b'a';
    let dot_a = zip_of(|w| {
        zip_file(w, "a", b"1", 0o644);
        zip_file(w, "./a", b"2", 0o644);
    });
    for (kind, bytes, entry) in [
        (
            ArchiveKind::Tar,
            tar(&[T::File("a", b"1", 0o644), T::File("./a", b"2", 0o644)]),
            "./a",
        ),
        (ArchiveKind::Tar, tar(&[T::Dir("d/"), T::Dir("d")]), "d"),
        (
            ArchiveKind::Tar,
            tar(&[T::Symlink("a", "b"), T::Dir("a/")]),
            "a/",
        ),
        (ArchiveKind::Zip, dot_a, "./a"),
        (ArchiveKind::Zip, twice, "x/a"),
    ] {
        assert_entry(&refuse(kind, &bytes), entry, |r| {
            matches!(r, EntryError::Duplicate { .. })
        });
    }
    // A directory implied by earlier entries cannot become a file.
    let bytes = tar(&[T::File("a/b", b"1", 0o644), T::File("a", b"2", 0o644)]);
    assert_entry(&refuse(ArchiveKind::Tar, &bytes), "a", |r| {
        matches!(r, EntryError::NotADirectory { .. })
    });
}

// ---------------------------------------------------------------------------------------
// Symlinks and hard links

#[test]
fn nothing_is_written_through_a_symlink() {
    // `a` -> `/etc` is refused at `a` itself.
    let bytes = tar(&[T::Symlink("a", "/etc"), T::File("a/passwd", b"x", 0o644)]);
    let err = refuse(ArchiveKind::Tar, &bytes);
    assert_entry(
        &err,
        "a",
        |r| matches!(r, EntryError::AbsoluteTarget { target } if target == "/etc"),
    );
    // A symlink inside the tree is still never a parent, of a file or a directory, in a
    // tarball or a zip.
    let zip = zip_of(|w| {
        w.add_symlink("a", "b", deflated(0o777)).unwrap();
        zip_file(w, "a/passwd", b"x", 0o644);
    });
    let through = |link| {
        tar(&[
            T::Dir("b/"),
            T::Symlink("a", link),
            T::File("a/passwd", b"x", 0o644),
        ])
    };
    for (kind, bytes, entry) in [
        (ArchiveKind::Tar, through("b"), "a/passwd"),
        (ArchiveKind::Tar, through("."), "a/passwd"),
        (
            ArchiveKind::Tar,
            tar(&[T::Symlink("a", "b"), T::Dir("a/sub/")]),
            "a/sub/",
        ),
        (ArchiveKind::Zip, zip, "a/passwd"),
    ] {
        assert_entry(
            &refuse(kind, &bytes),
            entry,
            |r| matches!(r, EntryError::ThroughSymlink { link } if link == Path::new("a")),
        );
    }
    // Nor a file.
    let bytes = tar(&[T::File("f", b"x", 0o644), T::File("f/g", b"y", 0o644)]);
    assert_entry(&refuse(ArchiveKind::Tar, &bytes), "f/g", |r| {
        matches!(r, EntryError::UnderFile { .. })
    });
}

#[test]
fn symlinks_out_of_the_tree_are_refused() {
    for (name, target) in [("up", ".."), ("d/up", "../../etc"), ("d/x", "y/../../../z")] {
        let bytes = tar(&[T::Symlink(name, target)]);
        let err = refuse(ArchiveKind::Tar, &bytes);
        assert_entry(
            &err,
            name,
            |r| matches!(r, EntryError::EscapingTarget { target: t } if t == target),
        );
    }
    // Lexically `e` -> `d/s/..` is `d`, but `d/s` is a symlink to the root, so `e` is
    // the root's parent: found when the finished tree is checked, whether `e` comes
    // before or after the symlink it goes through.
    for (kind, bytes, entry) in [
        (
            ArchiveKind::Tar,
            tar(&[
                T::Dir("d/"),
                T::Symlink("d/s", ".."),
                T::Symlink("e", "d/s/.."),
            ]),
            "e",
        ),
        (
            ArchiveKind::Tar,
            tar(&[
                T::Symlink("e", "d/s/../x"),
                T::Dir("d/"),
                T::Symlink("d/s", ".."),
            ]),
            "e",
        ),
        (
            ArchiveKind::Zip,
            zip_of(|w| w.add_symlink("l", "../../x", deflated(0o777)).unwrap()),
            "l",
        ),
    ] {
        assert_entry(&refuse(kind, &bytes), entry, |r| {
            matches!(r, EntryError::EscapingTarget { .. })
        });
    }
    let bytes = zip_of(|w| w.add_symlink("l", "/etc/shadow", deflated(0o777)).unwrap());
    assert_entry(&refuse(ArchiveKind::Zip, &bytes), "l", |r| {
        matches!(r, EntryError::AbsoluteTarget { .. })
    });
}

#[test]
fn symlinks_must_stay_in_a_stripped_top_level_directory() {
    // Inside the archive `top/l` -> `../top/f` is `top/f`, but once `top` is stripped it
    // would point out of `dest`.
    let bytes = tar(&[
        T::File("top/f", b"x", 0o644),
        T::Symlink("top/l", "../top/f"),
    ]);
    let err = refuse(ArchiveKind::Tar, &bytes);
    assert_entry(
        &err,
        "top/l",
        |r| matches!(r, EntryError::EscapesStripped { top, .. } if top == "top"),
    );
    // Loops stay inside and are kept as they are.
    let bytes = tar(&[T::Symlink("top/a", "b"), T::Symlink("top/b", "a")]);
    let (dir, report) = unpack_ok(ArchiveKind::Tar, &bytes, &Limits::DEFAULT);
    assert_eq!(report.symlinks, 2);
    assert_eq!(
        fs::read_link(dir.path().join("out/a")).unwrap(),
        Path::new("b")
    );
}

#[test]
fn hard_links_must_name_an_earlier_file_inside() {
    for target in ["../../etc/passwd", "/etc/passwd"] {
        let bytes = tar(&[T::Hard("h", target)]);
        assert_entry(
            &refuse(ArchiveKind::Tar, &bytes),
            "h",
            |r| matches!(r, EntryError::LinkOutside { target: t } if t == target),
        );
    }
    // A file that comes later, a directory, a symlink.
    for entries in [
        &[T::Hard("h", "later"), T::File("later", b"x", 0o644)][..],
        &[T::Dir("d/"), T::Hard("h", "d")],
        &[
            T::File("f", b"x", 0o644),
            T::Symlink("s", "f"),
            T::Hard("h", "s"),
        ],
    ] {
        assert_entry(&refuse(ArchiveKind::Tar, &tar(entries)), "h", |r| {
            matches!(r, EntryError::LinkNotFile { .. })
        });
    }
}

// ---------------------------------------------------------------------------------------
// Entry types

#[test]
fn special_files_are_refused() {
    for (kind, what) in [
        (EntryType::Char, "character device"),
        (EntryType::Block, "block device"),
        (EntryType::Fifo, "fifo"),
        (EntryType::GNUSparse, "sparse file"),
        (EntryType::new(b'V'), "tar entry of type `V`"),
    ] {
        let bytes = tar(&[
            T::Dir("d/"),
            T::Raw(Box::new(header(b"d/node", kind, 0, 0o644, b"")), Vec::new()),
        ]);
        let err = refuse(ArchiveKind::Tar, &bytes);
        assert_entry(
            &err,
            "d/node",
            |r| matches!(r, EntryError::Special { what: w } if w == what),
        );
        assert!(err.to_string().contains(what), "{err}");
    }
    for (mode, what) in [
        (0o010_644, "fifo"),
        (0o140_644, "socket"),
        (0o020_644, "character device"),
    ] {
        let bytes = zip_of(|w| {
            let options = SimpleFileOptions::default().external_attributes(mode << 16);
            w.start_file("node", options).unwrap();
        });
        let err = refuse(ArchiveKind::Zip, &bytes);
        assert_entry(
            &err,
            "node",
            |r| matches!(r, EntryError::Special { what: w } if w == what),
        );
    }
}

// ---------------------------------------------------------------------------------------
// Limits and bombs

#[test]
fn a_declared_10_gib_entry_is_refused_before_reading_it() {
    // Only the header: the data is never read.
    let mut h = Header::new_gnu();
    h.set_path("big").unwrap();
    h.set_size(10 << 30);
    h.set_mode(0o644);
    h.set_cksum();
    let mut bytes = h.as_bytes().to_vec();
    bytes.extend_from_slice(&[0; 4096]);
    let err = refuse(ArchiveKind::Tar, &bytes);
    assert_entry(
        &err,
        "big",
        |r| matches!(r, EntryError::FileTooLarge { size, declared: true, .. } if *size == 10 << 30),
    );
    // A GNU sparse file claiming 10 GiB.
    let mut h = header(b"sparse", EntryType::GNUSparse, 0, 0o644, b"");
    h.as_gnu_mut().unwrap().realsize = *b"\x80\0\0\0\0\0\0\x02\x80\0\0\0";
    h.set_cksum();
    let bytes = tar(&[T::Raw(Box::new(h), Vec::new())]);
    assert_entry(
        &refuse(ArchiveKind::TarZst, &compress(ArchiveKind::TarZst, &bytes)),
        "sparse",
        |r| matches!(r, EntryError::Special { .. }),
    );
}

#[test]
fn a_highly_compressed_tarball_stops_at_the_limits() {
    let zeros = vec![0u8; 32 << 20];
    let bytes = tar(&[T::File("z", &zeros, 0o644)]);
    let gz = compress(ArchiveKind::TarGz, &bytes);
    assert!(gz.len() < 1 << 20);
    // Total size: stops at the first chunk past 1 MiB.
    let limits = Limits {
        max_bytes: 1 << 20,
        max_file_size: 64 << 20,
        ..Limits::DEFAULT
    };
    // The declared size is over the limit already.
    assert_entry(&refuse_with(ArchiveKind::TarGz, &gz, &limits), "z", |r| {
        matches!(r, EntryError::TotalTooLarge { .. })
    });
    // The ratio, counted as the stream is read.
    let limits = Limits {
        max_ratio: 50,
        ratio_grace: 1 << 20,
        ..Limits::DEFAULT
    };
    let err = refuse_with(ArchiveKind::TarGz, &gz, &limits);
    assert_entry(
        &err,
        "z",
        |r| matches!(r, EntryError::Ratio { unpacked, limit: 50, .. } if *unpacked < 2 << 20),
    );
    // Under the default limits it is fine.
    let (_dir, report) = unpack_ok(ArchiveKind::TarGz, &gz, &Limits::DEFAULT);
    assert_eq!(report.bytes, 32 << 20);
}

#[test]
fn a_zip_bomb_is_refused_by_declared_and_actual_sizes() {
    let zeros = vec![0u8; 64 << 20];
    let bytes = zip_of(|w| zip_file(w, "bomb", &zeros, 0o644));
    assert!(bytes.len() < 256 << 10, "{}", bytes.len());
    // Declared size over the limit.
    let limits = Limits {
        max_file_size: 1 << 20,
        ..Limits::DEFAULT
    };
    assert_entry(
        &refuse_with(ArchiveKind::Zip, &bytes, &limits),
        "bomb",
        |r| matches!(r, EntryError::FileTooLarge { declared: true, .. }),
    );
    // Declared ratio.
    let limits = Limits {
        max_ratio: 100,
        ratio_grace: 1 << 20,
        ..Limits::DEFAULT
    };
    assert_entry(
        &refuse_with(ArchiveKind::Zip, &bytes, &limits),
        "bomb",
        |r| matches!(r, EntryError::Ratio { .. }),
    );
    // The default ratio limit (1000:1) refuses deflated zeros too.
    assert_entry(&refuse(ArchiveKind::Zip, &bytes), "bomb", |r| {
        matches!(r, EntryError::Ratio { .. })
    });
    // A central directory that lies: it declares 1000 bytes, the stream holds 64 MiB.
    let mut lying = bytes.clone();
    let cd = central_directory(&lying);
    lying[cd + 24..cd + 28].copy_from_slice(&1000u32.to_le_bytes());
    let err = refuse(ArchiveKind::Zip, &lying);
    let UnpackError::Entry { name, .. } = &err else {
        panic!("{}", chain(&err))
    };
    assert_eq!(name, "bomb", "{}", chain(&err));
}

#[test]
fn a_declared_10_gib_zip_entry_is_refused() {
    let mut bytes = zip_of(|w| zip_file(w, "big", b"small", 0o644));
    let cd = central_directory(&bytes);
    // Declared: 0xFFFFFFFE bytes (~4 GiB, under the zip64 marker) over 5 compressed.
    bytes[cd + 24..cd + 28].copy_from_slice(&0xFFFF_FFFEu32.to_le_bytes());
    let limits = Limits {
        max_file_size: 1 << 30,
        ..Limits::DEFAULT
    };
    assert_entry(
        &refuse_with(ArchiveKind::Zip, &bytes, &limits),
        "big",
        |r| matches!(r, EntryError::FileTooLarge { declared: true, .. }),
    );
}

#[test]
fn entry_count_name_length_and_depth_are_limited() {
    let bytes = tar(&[
        T::File("a", b"", 0o644),
        T::File("b", b"", 0o644),
        T::File("c", b"", 0o644),
    ]);
    let limits = Limits {
        max_entries: 2,
        ..Limits::DEFAULT
    };
    assert_entry(&refuse_with(ArchiveKind::Tar, &bytes, &limits), "c", |r| {
        matches!(r, EntryError::TooManyEntries { limit: 2 })
    });
    let deep = "d/".repeat(10) + "f";
    let bytes = tar(&[T::File(&deep, b"", 0o644)]);
    let limits = Limits {
        max_depth: 10,
        ..Limits::DEFAULT
    };
    assert_entry(
        &refuse_with(ArchiveKind::Tar, &bytes, &limits),
        &deep,
        |r| {
            matches!(
                r,
                EntryError::TooDeep {
                    depth: 11,
                    limit: 10
                }
            )
        },
    );
    let limits = Limits {
        max_path_len: 20,
        ..Limits::DEFAULT
    };
    assert_entry(
        &refuse_with(ArchiveKind::Tar, &bytes, &limits),
        &deep,
        |r| matches!(r, EntryError::NameTooLong { len: 21, limit: 20 }),
    );
    let bytes = tar(&[T::File("a", b"12345", 0o644), T::File("b", b"12345", 0o644)]);
    let limits = Limits {
        max_bytes: 9,
        ..Limits::DEFAULT
    };
    assert_entry(&refuse_with(ArchiveKind::Tar, &bytes, &limits), "b", |r| {
        matches!(
            r,
            EntryError::TotalTooLarge {
                total: 10,
                limit: 9
            }
        )
    });
    // A hard link counts its file again.
    let bytes = tar(&[T::File("a", b"12345", 0o644), T::Hard("b", "a")]);
    assert_entry(&refuse_with(ArchiveKind::Tar, &bytes, &limits), "b", |r| {
        matches!(r, EntryError::TotalTooLarge { .. })
    });
}

#[test]
fn implied_directories_count_as_entries() {
    // One entry, ten directories.
    let deep = "d/".repeat(10) + "f";
    let bytes = tar(&[T::File(&deep, b"", 0o644)]);
    let limits = Limits {
        max_entries: 10,
        ..Limits::DEFAULT
    };
    assert_entry(
        &refuse_with(ArchiveKind::Tar, &bytes, &limits),
        &deep,
        |r| matches!(r, EntryError::TooManyEntries { limit: 10 }),
    );
    let limits = Limits {
        max_entries: 11,
        ..Limits::DEFAULT
    };
    let (_dir, report) = unpack_ok(ArchiveKind::Tar, &bytes, &limits);
    assert_eq!(
        (report.files, report.dirs, report.stripped.as_deref()),
        (1, 9, Some("d"))
    );
}

#[test]
fn checking_symlinks_is_bounded() {
    // Targets of 2,000 components: each check looks up 2,000 paths of growing length.
    let target = "a/".repeat(2000) + "x";
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..4 {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, format!("top/l{i}"), &target).unwrap();
    }
    let bytes = b.into_inner().unwrap();
    let limits = Limits {
        max_resolve_bytes: 1 << 20,
        ..Limits::DEFAULT
    };
    assert_entry(
        &refuse_with(ArchiveKind::Tar, &bytes, &limits),
        "top/l0",
        |r| matches!(r, EntryError::SymlinkBudget { limit } if *limit == 1 << 20),
    );
    let (dir, report) = unpack_ok(ArchiveKind::Tar, &bytes, &Limits::DEFAULT);
    assert_eq!(report.symlinks, 4);
    assert_eq!(
        fs::read_link(dir.path().join("out/l3")).unwrap(),
        Path::new(&target)
    );
}

#[test]
fn oversized_extension_headers_are_not_read_into_memory() {
    let size = (2 << 20) as u64;
    let h = header(b"././@LongLink", EntryType::GNULongName, size, 0o644, b"");
    let mut bytes = h.as_bytes().to_vec();
    bytes.extend(std::iter::repeat_n(b'a', 4096));
    let err = refuse(ArchiveKind::Tar, &bytes);
    assert_entry(
        &err,
        "././@LongLink",
        |r| matches!(r, EntryError::ExtensionTooLarge { what: "GNU long name", size: s } if *s == size),
    );
}

#[test]
fn truncated_and_corrupt_streams_are_refused() {
    let full = sample_tar();
    // Cut at an entry boundary: no end-of-archive marker.
    let cut = &full[..512 * 2];
    let err = refuse(ArchiveKind::Tar, cut);
    assert!(
        matches!(err, UnpackError::Truncated { .. }),
        "{}",
        chain(&err)
    );
    // Cut inside a file's data.
    let cut = &full[..512 * 3 + 5];
    let err = refuse(ArchiveKind::Tar, cut);
    assert_entry(&err, "pkg-1.0/bin/run", |r| {
        matches!(
            r,
            EntryError::SizeMismatch {
                declared: 18,
                actual: 5,
                more: false
            }
        )
    });
    // A gzip stream cut before its trailer: the tar is complete, the CRC is not there.
    let gz = compress(ArchiveKind::TarGz, &full);
    let err = refuse(ArchiveKind::TarGz, &gz[..gz.len() - 4]);
    assert!(matches!(err, UnpackError::Read { .. }), "{}", chain(&err));
    // Not an archive at all.
    let err = refuse(ArchiveKind::TarXz, b"not xz");
    assert!(matches!(err, UnpackError::Read { .. }), "{}", chain(&err));
    let err = refuse(ArchiveKind::Zip, b"not a zip");
    assert!(matches!(err, UnpackError::Zip { .. }), "{}", chain(&err));
    // A pax size that disagrees with the header.
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("size", &b"3"[..])]).unwrap();
    b.append(
        &header(b"f", EntryType::Regular, 5, 0o644, b""),
        &b"12345"[..],
    )
    .unwrap();
    let err = refuse(ArchiveKind::Tar, &b.into_inner().unwrap());
    assert_entry(&err, "f", |r| matches!(r, EntryError::PaxSize { .. }));
}

#[test]
fn an_existing_destination_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("keep"), b"k").unwrap();
    let err = unpack(ArchiveKind::Tar, &sample_tar()[..], &dest, &Limits::DEFAULT).unwrap_err();
    assert!(matches!(err, UnpackError::DestExists { .. }), "{err}");
    assert_eq!(fs::read(dest.join("keep")).unwrap(), b"k");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    // A dangling symlink counts as existing too.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink("nowhere", &link).unwrap();
    let err = unpack(ArchiveKind::Tar, &sample_tar()[..], &link, &Limits::DEFAULT).unwrap_err();
    assert!(matches!(err, UnpackError::DestExists { .. }), "{err}");
}
