//! What every command is given: the output and the global options.

use std::path::{Path, PathBuf};

use crate::GlobalArgs;
use crate::error::Error;
use crate::output::Output;

/// Where the configuration is when `--config` is not given and `./nexis.toml` is absent.
pub(crate) const SYSTEM_CONFIG: &str = "/etc/nexis/nexis.toml";

/// The global options, resolved, and the output.
#[derive(Debug)]
pub(crate) struct Context {
    /// Where data and messages go.
    pub(crate) out: Output,
    /// `--json`.
    pub(crate) json: bool,
    /// `--config`, as given.
    config: Option<PathBuf>,
    /// `--root`: the system the store commands work on; the configuration commands do
    /// not touch the system, so they only log it.
    root: PathBuf,
}

impl Context {
    pub(crate) fn new(out: Output, global: &GlobalArgs) -> Context {
        Context {
            out,
            json: global.json,
            config: global.config.clone(),
            root: global.root.clone(),
        }
    }

    /// Whether `--config` was given.
    pub(crate) fn config_given(&self) -> bool {
        self.config.is_some()
    }

    /// `--root`.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The configuration file: `--config` made absolute, or the default for the current
    /// directory (see [`default_config_path`]).
    pub(crate) fn config_path(&self) -> Result<PathBuf, Error> {
        let cwd = std::env::current_dir().map_err(|source| Error::CurrentDir { source })?;
        let path = match &self.config {
            Some(path) => nexis_config::normalize(&cwd.join(path)),
            None => default_config_path(&cwd),
        };
        self.out.debug(2, &format!("config {}", path.display()));
        self.out.debug(2, &format!("root {}", self.root.display()));
        Ok(path)
    }
}

/// `DIR/nexis.toml` when it exists in the directory `cwd`, else `/etc/nexis/nexis.toml`.
pub(crate) fn default_config_path(cwd: &Path) -> PathBuf {
    let local = cwd.join("nexis.toml");
    if local.is_file() {
        local
    } else {
        PathBuf::from(SYSTEM_CONFIG)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_local_when_present() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            default_config_path(dir.path()),
            PathBuf::from("/etc/nexis/nexis.toml")
        );
        std::fs::write(dir.path().join("nexis.toml"), "").unwrap();
        assert_eq!(
            default_config_path(dir.path()),
            dir.path().join("nexis.toml")
        );
    }

    #[test]
    fn a_directory_named_nexis_toml_is_not_a_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("nexis.toml")).unwrap();
        assert_eq!(
            default_config_path(dir.path()),
            PathBuf::from(SYSTEM_CONFIG)
        );
    }
}
