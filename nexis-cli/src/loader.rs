//! [`FsLoader`]: the evaluator's window on the real filesystem, and on fetched inputs.

use nexis_store::error_chain as chain;
use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use nexis_config::{DirEntry, LoadError, Loader, normalize, path_input};
use nexis_fetch::{FetchEvent, Fetcher, LOCK_FILE, Lock, LockedInput};
use nexis_store::Store;

use crate::error::Error;

/// Reads configuration files and `path:` inputs from disk, and fetches other inputs into
/// the store through `nexis.lock` when it has [`Inputs`].
///
/// It can stand in a new text for one file ([`FsLoader::with_override`]), so an edit is
/// evaluated before it is written.
#[derive(Debug, Default)]
pub(crate) struct FsLoader {
    replaced: Option<(PathBuf, String)>,
    inputs: Option<Inputs>,
}

impl FsLoader {
    /// A loader that reads `path:` inputs only.
    pub(crate) fn new() -> FsLoader {
        FsLoader::default()
    }

    /// A loader that reads `text` for `path` instead of the file's content.
    pub(crate) fn with_override(path: &Path, text: String) -> FsLoader {
        FsLoader {
            replaced: Some((normalize(path), text)),
            inputs: None,
        }
    }

    /// Fetch inputs other than `path:` into the store at `root`, by the lock file beside
    /// `config`, in `mode`.
    pub(crate) fn fetching(mut self, inputs: Inputs) -> FsLoader {
        self.inputs = Some(inputs);
        self
    }

    /// The inputs, for [`Inputs::finish`] after evaluation.
    pub(crate) fn inputs(&self) -> Option<&Inputs> {
        self.inputs.as_ref()
    }
}

/// How evaluation treats `nexis.lock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LockMode {
    /// Use the entries that apply; lock the inputs that have none; keep the rest.
    Use,
    /// As `Use`, and drop the entries of inputs the configuration no longer has.
    Lock,
    /// Fetch these inputs afresh (all when `None`); drop entries of removed inputs.
    Update(Option<BTreeSet<String>>),
}

/// The fetched inputs of one evaluation and the lock file they come from.
#[derive(Debug)]
pub(crate) struct Inputs {
    root: PathBuf,
    lock_file: PathBuf,
    /// The lock as read (empty when there is no file).
    old: Lock,
    mode: LockMode,
    /// Opened on the first input that needs it (or why it cannot be).
    store: OnceLock<Result<Store, String>>,
    /// The entries this evaluation used or made.
    used: Mutex<Lock>,
    /// One bar per input being fetched (hidden unless stderr is a terminal).
    bars: indicatif::MultiProgress,
}

impl Inputs {
    /// The inputs of the configuration `config`, fetched into the store at `root`, by
    /// `nexis.lock` beside `config` (read now; an invalid lock is an error).
    pub(crate) fn new(
        out: &crate::output::Output,
        root: &Path,
        config: &Path,
        mode: LockMode,
    ) -> Result<Inputs, Error> {
        let lock_file = config.parent().unwrap_or(Path::new(".")).join(LOCK_FILE);
        let old = match fs::read_to_string(&lock_file) {
            Ok(text) => Lock::parse(&text, &lock_file).map_err(|source| Error::Lock { source })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Lock::default(),
            Err(source) => {
                return Err(Error::Read {
                    path: lock_file,
                    source,
                });
            }
        };
        Ok(Inputs {
            root: root.to_owned(),
            lock_file,
            old,
            mode,
            store: OnceLock::new(),
            used: Mutex::new(Lock::default()),
            bars: out.multi(),
        })
    }

    /// The lock file.
    pub(crate) fn lock_file(&self) -> &Path {
        &self.lock_file
    }

    /// The lock this evaluation leads to, and the lock as it was.
    pub(crate) fn locks(&self) -> (Lock, &Lock) {
        let used = self
            .used
            .lock()
            .expect("no panic while holding the lock")
            .clone();
        let new = match self.mode {
            LockMode::Use => {
                let mut all = self.old.clone();
                all.inputs.extend(used.inputs);
                all
            }
            LockMode::Lock | LockMode::Update(_) => used,
        };
        (new, &self.old)
    }

    /// Make the input available: its locked store path (fetched at the locked pin when
    /// it is not valid), or a fresh fetch when it has no entry that applies or is being
    /// updated.
    fn dir(&self, name: &str, url: &str) -> Result<PathBuf, String> {
        let store = self
            .store
            .get_or_init(|| Store::open(&self.root).map_err(|e| chain(&e)))
            .as_ref()
            .map_err(Clone::clone)?;
        let refresh = match &self.mode {
            LockMode::Update(None) => true,
            LockMode::Update(Some(names)) => names.contains(name),
            LockMode::Use | LockMode::Lock => false,
        };
        let entry = self
            .old
            .inputs
            .get(name)
            .filter(|e| !refresh && e.original == url);
        // Inputs are fetched in parallel, each with its own fetcher; the git cache and
        // the store take their own locks.
        let bar = fetch_bar(&self.bars, name);
        let shown = bar.clone();
        let fetcher = Fetcher::new(store).with_progress(move |event| show(&shown, event));
        let result = fetch_one(&fetcher, url, entry);
        bar.finish_and_clear();
        let (path, locked) = result?;
        self.used
            .lock()
            .map_err(|_| "another input's fetch panicked".to_owned())?
            .inputs
            .insert(name.to_owned(), locked);
        Ok(store.physical(&path))
    }
}

/// A bar in `bars` for fetching `label`: what is being done, and bytes for downloads.
pub(crate) fn fetch_bar(bars: &indicatif::MultiProgress, label: &str) -> indicatif::ProgressBar {
    let bar = bars.add(indicatif::ProgressBar::no_length());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>12} {msg} {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .expect("a valid template"),
    );
    bar.set_prefix(label.to_owned());
    bar
}

/// Show `event` on `bar`.
pub(crate) fn show(bar: &indicatif::ProgressBar, event: FetchEvent) {
    match event {
        FetchEvent::Git => bar.set_message("fetching from git"),
        FetchEvent::GitObjects {
            objects,
            total,
            bytes,
        } => {
            match total {
                Some(total) => bar.set_message(format!("objects {objects}/{total}")),
                None => bar.set_message(format!("objects {objects}")),
            }
            bar.set_position(bytes);
        }
        FetchEvent::Download { received, total } => {
            bar.set_message("downloading");
            if let Some(total) = total {
                bar.set_length(total);
            }
            bar.set_position(received);
        }
        FetchEvent::Unpacking => bar.set_message("unpacking"),
        FetchEvent::Adding => bar.set_message("adding to the store"),
    }
}

/// Realise `entry`, or fetch `url` when there is none.
fn fetch_one(
    fetcher: &Fetcher<'_>,
    url: &str,
    entry: Option<&LockedInput>,
) -> Result<(nexis_store::StorePath, LockedInput), String> {
    Ok(if let Some(e) = entry {
        (fetcher.realise(e).map_err(|e| chain(&e))?, e.clone())
    } else {
        let fetched = fetcher.fetch(url).map_err(|e| chain(&e))?;
        (fetched.path, fetched.locked)
    })
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
        if let Some(dir) = path_input(url, base) {
            return Ok(dir);
        }
        let reason = match &self.inputs {
            Some(inputs) => match inputs.dir(name, url) {
                Ok(dir) => return Ok(dir),
                Err(reason) => reason,
            },
            None => "this command reads `path:` inputs only".into(),
        };
        Err(LoadError::Input {
            name: name.into(),
            url: url.into(),
            reason,
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
            "input `core` (git+https://example.org/p): this command reads `path:` inputs only"
        );
    }
}
