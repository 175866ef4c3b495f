//! How evaluation reads files: through a [`Loader`], so this crate does no IO itself.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// A file or directory could not be read, or an input could not be made available.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The path does not exist.
    #[error("{path}: no such file or directory")]
    NotFound {
        /// The missing path.
        path: PathBuf,
    },
    /// Reading failed for another reason.
    #[error("{path}: {source}")]
    Io {
        /// The path being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The loader cannot make this kind of input available.
    #[error("input `{name}` ({url}): {reason}")]
    Input {
        /// The input's name in `[inputs]`.
        name: String,
        /// The input reference as written.
        url: String,
        /// Why it cannot be loaded.
        reason: String,
    },
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirEntry {
    /// Full path of the entry.
    pub path: PathBuf,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// The evaluator's only window on the world.
///
/// The CLI implements it over the filesystem (and, with `nexis-fetch`, over git and
/// HTTP inputs); tests and benchmarks use [`MemoryLoader`]. It is `Sync`: the inputs'
/// directories are asked for in parallel, so a fetching loader fetches them at once.
pub trait Loader: Sync {
    /// Read a whole text file.
    fn read(&self, path: &Path) -> Result<String, LoadError>;

    /// List a directory (any order; the evaluator sorts).
    fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, LoadError>;

    /// Make the input `name` with reference `url` available as a local directory and
    /// return it. `base` is the directory of the module that declared the input, against
    /// which `path:` references are resolved.
    fn input_dir(&self, name: &str, url: &str, base: &Path) -> Result<PathBuf, LoadError>;
}

/// Resolve a `path:` input reference against `base`, lexically.
///
/// Returns `None` for references of another scheme. Loaders share this so that `path:`
/// means the same everywhere.
pub fn path_input(url: &str, base: &Path) -> Option<PathBuf> {
    let rest = url.strip_prefix("path:")?;
    let rest = rest.split('?').next().unwrap_or(rest);
    Some(normalize(&base.join(rest)))
}

/// Lexically normalise a path: drop `.`, apply `..` to the preceding component.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// An in-memory file tree: for tests, benchmarks and fuzzing.
#[derive(Debug, Clone, Default)]
pub struct MemoryLoader {
    files: BTreeMap<PathBuf, String>,
}

impl MemoryLoader {
    /// An empty tree.
    pub fn new() -> MemoryLoader {
        MemoryLoader::default()
    }

    /// Add (or replace) a file.
    pub fn insert(&mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> &mut Self {
        self.files.insert(normalize(&path.into()), text.into());
        self
    }

    /// Every file and its text, by path.
    pub fn files(&self) -> impl Iterator<Item = (&Path, &str)> {
        self.files.iter().map(|(p, t)| (p.as_path(), t.as_str()))
    }

    /// Builder form of [`MemoryLoader::insert`].
    #[must_use]
    pub fn with(mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        self.insert(path, text);
        self
    }
}

impl Loader for MemoryLoader {
    fn read(&self, path: &Path) -> Result<String, LoadError> {
        self.files
            .get(&normalize(path))
            .cloned()
            .ok_or_else(|| LoadError::NotFound { path: path.into() })
    }

    fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, LoadError> {
        let dir = normalize(path);
        let mut out: Vec<DirEntry> = Vec::new();
        for file in self.files.keys() {
            let Ok(rest) = file.strip_prefix(&dir) else {
                continue;
            };
            let mut parts = rest.components();
            let Some(first) = parts.next() else { continue };
            let is_dir = parts.next().is_some();
            let entry = DirEntry {
                path: dir.join(first),
                is_dir,
            };
            if out.last() != Some(&entry) {
                out.push(entry);
            }
        }
        if out.is_empty() {
            return Err(LoadError::NotFound { path: path.into() });
        }
        Ok(out)
    }

    fn input_dir(&self, name: &str, url: &str, base: &Path) -> Result<PathBuf, LoadError> {
        path_input(url, base).ok_or_else(|| LoadError::Input {
            name: name.into(),
            url: url.into(),
            reason: "the in-memory loader reads `path:` inputs only".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_loader_lists_directories() {
        let l = MemoryLoader::new()
            .with("/c/pkgs/packages/a.toml", "")
            .with("/c/pkgs/packages/b/1.0.toml", "")
            .with("/c/pkgs/packages/b/2.0.toml", "");
        let entries = l.read_dir(Path::new("/c/pkgs/packages")).unwrap();
        assert_eq!(
            entries,
            vec![
                DirEntry {
                    path: "/c/pkgs/packages/a.toml".into(),
                    is_dir: false
                },
                DirEntry {
                    path: "/c/pkgs/packages/b".into(),
                    is_dir: true
                },
            ]
        );
        assert!(l.read_dir(Path::new("/nope")).is_err());
    }

    #[test]
    fn path_inputs_resolve_lexically() {
        assert_eq!(
            path_input("path:./pkgs", Path::new("/etc/nexis")),
            Some(PathBuf::from("/etc/nexis/pkgs"))
        );
        assert_eq!(
            path_input("path:../shared", Path::new("/etc/nexis")),
            Some(PathBuf::from("/etc/shared"))
        );
        assert_eq!(path_input("https://x", Path::new("/")), None);
    }
}
