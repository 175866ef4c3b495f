//! The example system in `examples/demo` evaluates, read from disk.

use std::path::{Path, PathBuf};

use nexis_config::{DirEntry, LoadError, Loader, evaluate, path_input};

/// A plain filesystem loader for the test (the CLI has its own).
struct Fs;

impl Loader for Fs {
    fn read(&self, path: &Path) -> Result<String, LoadError> {
        std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LoadError::NotFound { path: path.into() },
            _ => LoadError::Io {
                path: path.into(),
                source: e,
            },
        })
    }
    fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, LoadError> {
        let rd = std::fs::read_dir(path).map_err(|e| LoadError::Io {
            path: path.into(),
            source: e,
        })?;
        Ok(rd
            .filter_map(Result::ok)
            .map(|e| DirEntry {
                is_dir: e.path().is_dir(),
                path: e.path(),
            })
            .collect())
    }
    fn input_dir(&self, name: &str, url: &str, base: &Path) -> Result<PathBuf, LoadError> {
        path_input(url, base).ok_or_else(|| LoadError::Input {
            name: name.into(),
            url: url.into(),
            reason: "path: only".into(),
        })
    }
}

#[test]
fn demo_evaluates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo/nexis.toml");
    let eval = match evaluate(&Fs, &root) {
        Ok(e) => e,
        Err(e) => panic!("{}", e.render(false)),
    };
    println!("{}", serde_json::to_string_pretty(&eval.to_json()).unwrap());
}
