//! [`FsLoader`]: the evaluator's window on the real filesystem, and on fetched inputs.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use nexis_config::{DirEntry, LoadError, Loader, normalize, path_input};
use nexis_fetch::{FetchEvent, Fetcher, LOCK_FILE, Lock, LockError, LockedInput};
use nexis_store::Store;
use nexis_store::error_chain as chain;

/// What fetching one input is doing, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputEvent {
    /// The fetch reports progress.
    Fetch(FetchEvent),
    /// The input is available (or failed): its display can go.
    Done,
}

/// Where [`Inputs`] reports progress: the input's name and the event. Called from the
/// threads that fetch inputs in parallel.
pub type InputProgress = Box<dyn Fn(&str, InputEvent) + Send + Sync>;

/// `nexis.lock` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    /// Reading the file failed.
    #[error("cannot read {}", path.display())]
    Read {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// It does not parse.
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// Reads configuration files and `path:` inputs from disk, and fetches other inputs into
/// the store through `nexis.lock` when it has [`Inputs`].
///
/// It can stand in a new text for one file ([`FsLoader::with_override`]), so an edit is
/// evaluated before it is written.
#[derive(Debug, Default)]
pub struct FsLoader {
    replaced: Option<(PathBuf, String)>,
    inputs: Option<Inputs>,
}

impl FsLoader {
    /// A loader that reads `path:` inputs only.
    pub fn new() -> FsLoader {
        FsLoader::default()
    }

    /// A loader that reads `text` for `path` instead of the file's content.
    pub fn with_override(path: &Path, text: String) -> FsLoader {
        FsLoader {
            replaced: Some((normalize(path), text)),
            inputs: None,
        }
    }

    /// Fetch inputs other than `path:` through `inputs` (into its store, by its lock).
    #[must_use]
    pub fn fetching(mut self, inputs: Inputs) -> FsLoader {
        self.inputs = Some(inputs);
        self
    }

    /// The inputs, after evaluation: the lock they lead to.
    pub fn into_inputs(self) -> Option<Inputs> {
        self.inputs
    }
}

/// How evaluation treats `nexis.lock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockMode {
    /// Use the entries that apply; lock the inputs that have none; keep the rest.
    Use,
    /// As `Use`, and drop the entries of inputs the configuration no longer has.
    Lock,
    /// Fetch these inputs afresh (all when `None`); drop entries of removed inputs.
    Update(Option<BTreeSet<String>>),
}

/// The fetched inputs of one evaluation and the lock file they come from.
pub struct Inputs {
    root: PathBuf,
    lock_file: PathBuf,
    /// The lock as read (empty when there is no file).
    old: Lock,
    mode: LockMode,
    /// Opened on the first input that needs it (or why it cannot be).
    store: OnceLock<Result<Store, String>>,
    /// The entries this evaluation used or made.
    used: Mutex<Lock>,
    /// Where progress goes.
    progress: Option<InputProgress>,
}

impl std::fmt::Debug for Inputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs")
            .field("root", &self.root)
            .field("lock_file", &self.lock_file)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Inputs {
    /// The inputs of the configuration `config`, fetched into the store at `root`, by
    /// `nexis.lock` beside `config` (read now; an invalid lock is an error).
    pub fn new(root: &Path, config: &Path, mode: LockMode) -> Result<Inputs, InputsError> {
        let lock_file = config.parent().unwrap_or(Path::new(".")).join(LOCK_FILE);
        let old = read_lock(&lock_file)?;
        Ok(Inputs {
            root: root.to_owned(),
            lock_file,
            old,
            mode,
            store: OnceLock::new(),
            used: Mutex::new(Lock::default()),
            progress: None,
        })
    }

    /// Report each input's progress to `progress`.
    #[must_use]
    pub fn with_progress(mut self, progress: InputProgress) -> Inputs {
        self.progress = Some(progress);
        self
    }

    /// The lock file.
    pub fn lock_file(&self) -> &Path {
        &self.lock_file
    }

    /// The lock this evaluation leads to, and the lock as it was.
    pub fn locks(&self) -> (Lock, &Lock) {
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
        let mut fetcher = Fetcher::new(store);
        if let Some(progress) = &self.progress {
            fetcher = fetcher.with_progress(move |event| progress(name, InputEvent::Fetch(event)));
        }
        let result = fetch_one(&fetcher, url, entry);
        if let Some(progress) = &self.progress {
            progress(name, InputEvent::Done);
        }
        let (path, locked) = result?;
        self.used
            .lock()
            .map_err(|_| "another input's fetch panicked".to_owned())?
            .inputs
            .insert(name.to_owned(), locked);
        Ok(store.physical(&path))
    }
}

/// The lock at `file`; an empty one when there is no such file.
pub fn read_lock(file: &Path) -> Result<Lock, InputsError> {
    match fs::read_to_string(file) {
        Ok(text) => Ok(Lock::parse(&text, file)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Lock::default()),
        Err(source) => Err(InputsError::Read {
            path: file.to_owned(),
            source,
        }),
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
