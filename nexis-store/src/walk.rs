//! Reading a filesystem tree for hashing and archiving, without following symlinks.
//!
//! Every node is opened relative to its parent directory's descriptor with `O_NOFOLLOW`,
//! so a symlink swapped in for a directory or a file while the tree is read is never
//! followed; a file's type, mode and size come from `fstat` on the opened descriptor, and
//! a file that changes size while it is read is an error.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read as _};
use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::fs::{AtFlags, CWD, Dir, FileType, Mode, OFlags};

use crate::archive::{self, ArchiveError, LimitKind, Limits};
use crate::hash::LARGE_FILE;

/// Bytes read at a time from a file's content.
pub(crate) const CHUNK: usize = 1 << 20;

/// A node of the tree, opened.
#[derive(Debug)]
pub(crate) enum Opened {
    File {
        file: File,
        executable: bool,
        size: u64,
    },
    Dir(Dir),
    Symlink(Vec<u8>),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(rustix::io::Errno) -> ArchiveError {
    move |e| ArchiveError::Io {
        action,
        path: path.to_owned(),
        source: e.into(),
    }
}

/// What a special file is, for error messages.
fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Unknown => "file of unknown type",
    }
}

/// Open the root of a tree.
pub(crate) fn open_root(path: &Path) -> Result<Opened, ArchiveError> {
    open(CWD, path, FileType::Unknown, path)
}

/// Open `name` in `dir`; `hint` is the type the directory listing gave (`Unknown` makes
/// this ask the filesystem). `path` is only for error messages.
pub(crate) fn open<P: rustix::path::Arg + Copy>(
    dir: BorrowedFd<'_>,
    name: P,
    hint: FileType,
    path: &Path,
) -> Result<Opened, ArchiveError> {
    let file_type = if hint == FileType::Unknown {
        let stat = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_err("inspect", path))?;
        FileType::from_raw_mode(stat.st_mode)
    } else {
        hint
    };
    match file_type {
        FileType::RegularFile => {
            // O_NONBLOCK: should a FIFO have replaced the file, opening it must not hang;
            // fstat below then refuses it. Regular files ignore the flag.
            let flags = OFlags::RDONLY
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | OFlags::NOCTTY
                | OFlags::CLOEXEC;
            let fd = rustix::fs::openat(dir, name, flags, Mode::empty())
                .map_err(io_err("open", path))?;
            let stat = rustix::fs::fstat(&fd).map_err(io_err("inspect", path))?;
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::RegularFile => Ok(Opened::File {
                    file: File::from(fd),
                    executable: stat.st_mode & 0o111 != 0,
                    size: u64::try_from(stat.st_size).expect("file sizes are not negative"),
                }),
                FileType::Directory | FileType::Symlink => Err(ArchiveError::Changed {
                    path: path.to_owned(),
                }),
                other => Err(ArchiveError::Unsupported {
                    path: path.to_owned(),
                    kind: kind_name(other),
                }),
            }
        }
        FileType::Directory => {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = rustix::fs::openat(dir, name, flags, Mode::empty())
                .map_err(io_err("open directory", path))?;
            Ok(Opened::Dir(
                Dir::new(fd).map_err(io_err("read directory", path))?,
            ))
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(dir, name, Vec::new())
                .map_err(io_err("read symlink", path))?
                .into_bytes();
            if target.len() > archive::MAX_TARGET_LEN {
                return Err(ArchiveError::TreeLimit {
                    path: path.to_owned(),
                    what: LimitKind::TargetLength,
                    limit: archive::MAX_TARGET_LEN as u64,
                });
            }
            Ok(Opened::Symlink(target))
        }
        other => Err(ArchiveError::Unsupported {
            path: path.to_owned(),
            kind: kind_name(other),
        }),
    }
}

/// The descriptor to open a directory's entries relative to.
pub(crate) fn dir_fd<'a>(dir: &'a Dir, path: &Path) -> Result<BorrowedFd<'a>, ArchiveError> {
    dir.fd().map_err(io_err("read directory", path))
}

/// A directory's entries (without `.` and `..`) in increasing bytewise order of their
/// names, with the types the listing gave.
pub(crate) fn read_dir_sorted(
    dir: &mut Dir,
    path: &Path,
) -> Result<Vec<(CString, FileType)>, ArchiveError> {
    let mut entries = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry.map_err(io_err("read directory", path))?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            entries.push((name.to_owned(), entry.file_type()));
        }
    }
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(entries)
}

/// Check that a child named `name` of a node `depth` levels and `rel_len` bytes of
/// relative path below the root stays within the default limits (so that whatever is
/// archived also unpacks); returns the child's relative path length.
pub(crate) fn check_child(
    depth: u64,
    rel_len: u64,
    name: &CString,
    child_path: &Path,
) -> Result<u64, ArchiveError> {
    let limits = Limits::DEFAULT;
    let child_rel = archive::child_rel_len(rel_len, name.as_bytes().len() as u64);
    let too_big = if depth + 1 > limits.max_depth {
        Some((LimitKind::Depth, limits.max_depth))
    } else if child_rel > limits.max_path_len {
        Some((LimitKind::PathLength, limits.max_path_len))
    } else {
        None
    };
    match too_big {
        Some((what, limit)) => Err(ArchiveError::TreeLimit {
            path: child_path.to_owned(),
            what,
            limit,
        }),
        None => Ok(child_rel),
    }
}

/// Fill `chunk` from `file`; a file that ends early changed since it was inspected.
fn fill(file: &mut File, chunk: &mut [u8], path: &Path) -> Result<(), ArchiveError> {
    file.read_exact(chunk).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ArchiveError::Changed {
                path: path.to_owned(),
            }
        } else {
            ArchiveError::Io {
                action: "read",
                path: path.to_owned(),
                source: e,
            }
        }
    })
}

/// Read exactly `size` bytes of `file` (failing if it is shorter or longer), passing them
/// to `sink` in order, and return their blake3 hash. `buf` is reused between calls.
///
/// A small file is read whole. A large one is read in chunks, each hashed with blake3's
/// multi-threaded mode while the next is read (copying from the page cache costs about
/// as much as hashing), so both overlap.
pub(crate) fn read_content(
    file: &mut File,
    size: u64,
    path: &Path,
    buf: &mut Vec<u8>,
    mut sink: impl FnMut(&[u8]) -> Result<(), ArchiveError>,
) -> Result<[u8; 32], ArchiveError> {
    let mut hasher = blake3::Hasher::new();
    if size < LARGE_FILE {
        let n = usize::try_from(size).expect("less than LARGE_FILE");
        if buf.len() < n {
            buf.resize(n, 0);
        }
        let content = &mut buf[..n];
        fill(file, content, path)?;
        hasher.update(content);
        sink(content)?;
    } else {
        if buf.len() < 2 * CHUNK {
            buf.resize(2 * CHUNK, 0);
        }
        let chunk_len =
            |remaining: u64| usize::try_from(remaining.min(CHUNK as u64)).expect("at most CHUNK");
        let (mut current, mut next) = buf.split_at_mut(CHUNK);
        let mut n = chunk_len(size);
        fill(file, &mut current[..n], path)?;
        let mut remaining = size - n as u64;
        loop {
            let m = chunk_len(remaining);
            let (_, read) = rayon::join(
                || hasher.update_rayon(&current[..n]),
                || fill(file, &mut next[..m], path),
            );
            read?;
            sink(&current[..n])?;
            if m == 0 {
                break;
            }
            std::mem::swap(&mut current, &mut next);
            n = m;
            remaining -= m as u64;
        }
    }
    // The file must end where fstat said it would.
    let mut probe = [0u8; 1];
    loop {
        match file.read(&mut probe) {
            Ok(0) => break,
            Ok(_) => {
                return Err(ArchiveError::Changed {
                    path: path.to_owned(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(ArchiveError::Io {
                    action: "read",
                    path: path.to_owned(),
                    source: e,
                });
            }
        }
    }
    Ok(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_read_and_hashed_whole_at_every_size() {
        let tmp = tempfile::tempdir().unwrap();
        let large = usize::try_from(LARGE_FILE).unwrap();
        let mut buf = Vec::new();
        for size in [0, 1, large - 1, large, large + 1, 2 * CHUNK, 3 * CHUNK + 7] {
            let content: Vec<u8> = (0..size).map(|i| (i * 31 % 251).to_le_bytes()[0]).collect();
            let path = tmp.path().join(format!("f{size}"));
            std::fs::write(&path, &content).unwrap();
            let mut file = File::open(&path).unwrap();
            let mut seen = Vec::new();
            let hash = read_content(&mut file, size as u64, &path, &mut buf, |chunk| {
                seen.extend_from_slice(chunk);
                Ok(())
            })
            .unwrap();
            assert_eq!(hash, *blake3::hash(&content).as_bytes(), "size {size}");
            assert!(seen == content, "size {size}: the sink saw other bytes");

            // Told a size other than the file's, reading fails.
            for wrong in [size as u64 + 1, (size as u64).saturating_sub(1)] {
                if wrong == size as u64 {
                    continue;
                }
                let mut file = File::open(&path).unwrap();
                let err = read_content(&mut file, wrong, &path, &mut buf, |_| Ok(())).unwrap_err();
                assert!(matches!(err, ArchiveError::Changed { .. }), "{err:?}");
            }
        }
    }
}
