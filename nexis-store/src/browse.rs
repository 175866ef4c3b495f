//! Reading inside valid store paths: what `nexis store ls` and `nexis store cat` show.
//!
//! A location is a store path optionally followed by components inside it
//! (`/nexis/store/<hash>-<name>/bin/tool`). Symlinks inside the path are never followed:
//! a location that goes through one is refused with the link's target, so what is read
//! is always inside the named store path.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use crate::path::{PathError, STORE_DIR, StorePath};
use crate::store::Store;

/// Reading inside a store path failed.
#[derive(Debug, thiserror::Error)]
pub enum BrowseError {
    /// The location does not start with a store path.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The location holds `..`.
    #[error("`{}`: `..` is not allowed in a store location", .0.display())]
    ParentComponent(PathBuf),
    /// The store path is not valid.
    #[error("{0} is not valid in the store")]
    NotValid(StorePath),
    /// Nothing is at the location.
    #[error("`{}` does not exist", .0.display())]
    NotFound(PathBuf),
    /// A component of the location (or, for reading a file, the location itself) is a
    /// symlink.
    #[error("`{}` is a symlink to `{}`; symlinks in the store are not followed", path.display(), target.display())]
    Symlink {
        /// The location up to the symlink.
        path: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// Something other than a directory is used as one.
    #[error("`{}` is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// A file was asked for and this is not one.
    #[error("`{}` is a directory, not a file", .0.display())]
    IsADirectory(PathBuf),
    /// A filesystem operation failed.
    #[error("`{}`: {source}", path.display())]
    Io {
        /// The location.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreEntry {
    /// The entry's location, `/nexis/store/<hash>-<name>/…`.
    pub location: PathBuf,
    /// What it is.
    pub kind: StoreEntryKind,
}

/// What a store entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEntryKind {
    /// A directory.
    Directory,
    /// A regular file.
    File {
        /// Whether it is executable.
        executable: bool,
        /// Its size in bytes.
        size: u64,
    },
    /// A symlink.
    Symlink {
        /// Where it points.
        target: PathBuf,
    },
}

impl Store {
    /// Find a location inside a valid store path: the path and where the location is on
    /// disk. No symlink on the way is followed; the location itself may be one.
    pub fn resolve(&self, location: &Path) -> Result<(StorePath, PathBuf), BrowseError> {
        let text = location.to_string_lossy();
        let rest = location
            .strip_prefix(STORE_DIR)
            .map_err(|_| PathError::NotInStore(text.clone().into_owned()))?;
        let mut components = rest.components();
        let base = match components.next() {
            Some(Component::Normal(base)) => base.to_string_lossy(),
            _ => return Err(PathError::NotInStore(text.into_owned()).into()),
        };
        let path = StorePath::from_base_name(&base)?;
        if !self.with_db(|db| db.is_valid(&path))? {
            return Err(BrowseError::NotValid(path));
        }
        let mut physical = self.physical(&path);
        let mut logical = PathBuf::from(path.to_string());
        for component in components {
            let name: &OsStr = match component {
                Component::Normal(name) => name,
                Component::CurDir => continue,
                _ => return Err(BrowseError::ParentComponent(location.to_owned())),
            };
            let meta = fs::symlink_metadata(&physical).map_err(|source| BrowseError::Io {
                path: logical.clone(),
                source,
            })?;
            if meta.is_symlink() {
                let target = fs::read_link(&physical).unwrap_or_default();
                return Err(BrowseError::Symlink {
                    path: logical,
                    target,
                });
            }
            if !meta.is_dir() {
                return Err(BrowseError::NotADirectory(logical));
            }
            physical.push(name);
            logical.push(name);
        }
        match fs::symlink_metadata(&physical) {
            Ok(_) => Ok((path, physical)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(BrowseError::NotFound(logical)),
            Err(source) => Err(BrowseError::Io {
                path: logical,
                source,
            }),
        }
    }

    /// Open the regular file at a location inside a valid store path (for reading it).
    pub fn open_file(&self, location: &Path) -> Result<File, BrowseError> {
        let (_, physical) = self.resolve(location)?;
        let io = |source| BrowseError::Io {
            path: location.to_owned(),
            source,
        };
        let meta = fs::symlink_metadata(&physical).map_err(io)?;
        if meta.is_symlink() {
            return Err(BrowseError::Symlink {
                path: location.to_owned(),
                target: fs::read_link(&physical).unwrap_or_default(),
            });
        }
        if meta.is_dir() {
            return Err(BrowseError::IsADirectory(location.to_owned()));
        }
        File::open(&physical).map_err(io)
    }

    /// List a location: a directory's entries (all the way down with `recursive`), in
    /// name order, or the file or symlink itself.
    pub fn list(&self, location: &Path, recursive: bool) -> Result<Vec<StoreEntry>, BrowseError> {
        let (_, physical) = self.resolve(location)?;
        let logical = location.components().collect::<PathBuf>();
        let mut out = Vec::new();
        let top = entry(&physical, logical.clone())?;
        if top.kind != StoreEntryKind::Directory {
            out.push(top);
            return Ok(out);
        }
        list_dir(&physical, &logical, recursive, &mut out)?;
        Ok(out)
    }
}

fn entry(physical: &Path, location: PathBuf) -> Result<StoreEntry, BrowseError> {
    let io = |source| BrowseError::Io {
        path: location.clone(),
        source,
    };
    let meta = fs::symlink_metadata(physical).map_err(io)?;
    let kind = if meta.is_dir() {
        StoreEntryKind::Directory
    } else if meta.is_symlink() {
        StoreEntryKind::Symlink {
            target: fs::read_link(physical).map_err(io)?,
        }
    } else {
        StoreEntryKind::File {
            executable: meta.permissions().mode() & 0o111 != 0,
            size: meta.len(),
        }
    };
    Ok(StoreEntry { location, kind })
}

fn list_dir(
    physical: &Path,
    logical: &Path,
    recursive: bool,
    out: &mut Vec<StoreEntry>,
) -> Result<(), BrowseError> {
    let io = |source| BrowseError::Io {
        path: logical.to_owned(),
        source,
    };
    let mut names: Vec<_> = fs::read_dir(physical)
        .map_err(io)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    names.sort_unstable_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for name in names {
        let child = entry(&physical.join(&name), logical.join(&name))?;
        let is_dir = child.kind == StoreEntryKind::Directory;
        out.push(child);
        if recursive && is_dir {
            list_dir(&physical.join(&name), &logical.join(&name), recursive, out)?;
        }
    }
    Ok(())
}
