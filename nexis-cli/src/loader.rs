//! [`FsLoader`]: the evaluator's window on the real filesystem.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nexis_config::{DirEntry, LoadError, Loader, normalize, path_input};

/// Reads configuration files and `path:` inputs from disk.
///
/// It can stand in a new text for one file ([`FsLoader::with_override`]), so an edit is
/// evaluated before it is written.
#[derive(Debug, Default)]
pub(crate) struct FsLoader {
    replaced: Option<(PathBuf, String)>,
}

impl FsLoader {
    pub(crate) fn new() -> FsLoader {
        FsLoader::default()
    }

    /// A loader that reads `text` for `path` instead of the file's content.
    pub(crate) fn with_override(path: &Path, text: String) -> FsLoader {
        FsLoader {
            replaced: Some((normalize(path), text)),
        }
    }
}

fn load_error(path: &Path, source: io::Error) -> LoadError {
    if source.kind() == io::ErrorKind::NotFound {
        LoadError::NotFound { path: path.into() }
    } else {
        LoadError::Io {
            path: path.into(),
            source,
        }
    }
}

impl Loader for FsLoader {
    fn read(&self, path: &Path) -> Result<String, LoadError> {
        if let Some((replaced, text)) = &self.replaced
            && *replaced == normalize(path)
        {
            return Ok(text.clone());
        }
        fs::read_to_string(path).map_err(|e| load_error(path, e))
    }

    fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, LoadError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(path).map_err(|e| load_error(path, e))? {
            let entry = entry.map_err(|e| load_error(path, e))?;
            let path = entry.path();
            // Follow symlinks: a linked recipe folder is a folder.
            let is_dir = path.is_dir();
            out.push(DirEntry { path, is_dir });
        }
        Ok(out)
    }

    fn input_dir(&self, name: &str, url: &str, base: &Path) -> Result<PathBuf, LoadError> {
        path_input(url, base).ok_or_else(|| LoadError::Input {
            name: name.into(),
            url: url.into(),
            reason: "fetching git and HTTP inputs is not implemented yet (nexis-fetch)".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_files_and_maps_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.toml");
        fs::write(&file, "x = 1\n").unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        let loader = FsLoader::new();
        assert_eq!(loader.read(&file).unwrap(), "x = 1\n");
        assert!(matches!(
            loader.read(&dir.path().join("missing.toml")),
            Err(LoadError::NotFound { .. })
        ));
        assert!(matches!(
            loader.read(&dir.path().join("sub")),
            Err(LoadError::Io { .. })
        ));
        let mut entries = loader.read_dir(dir.path()).unwrap();
        entries.sort();
        assert_eq!(
            entries,
            [
                DirEntry {
                    path: file.clone(),
                    is_dir: false
                },
                DirEntry {
                    path: dir.path().join("sub"),
                    is_dir: true
                },
            ]
        );
        let replaced = FsLoader::with_override(&file, "y = 2\n".into());
        assert_eq!(replaced.read(&file).unwrap(), "y = 2\n");
    }

    #[test]
    fn only_path_inputs_are_available() {
        let loader = FsLoader::new();
        assert_eq!(
            loader
                .input_dir("local", "path:./pkgs", Path::new("/etc/nexis"))
                .unwrap(),
            PathBuf::from("/etc/nexis/pkgs")
        );
        let err = loader
            .input_dir("core", "git+https://example.org/p", Path::new("/"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "input `core` (git+https://example.org/p): fetching git and HTTP inputs is not \
             implemented yet (nexis-fetch)"
        );
    }
}
