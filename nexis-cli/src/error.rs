//! Every way a `nexis` command can fail.

use std::io;
use std::path::PathBuf;

use nexis_config::EvalError;
use nexis_config::edit::EditError;

/// A failed command. [`crate::output::Output::report`] prints it once, with its causes.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The current directory is needed to find the configuration.
    #[error("cannot determine the current directory")]
    CurrentDir {
        #[source]
        source: io::Error,
    },
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Fetching an input failed.
    #[error("cannot fetch `{input}`")]
    Fetch {
        input: String,
        #[source]
        source: Box<nexis_fetch::FetchError>,
    },
    /// `nexis update NAME` names no input of the configuration.
    #[error("no input `{name}` in the configuration (inputs: {known})")]
    UnknownInput { name: String, known: String },
    /// A file or directory could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `nexis init` does not overwrite an existing configuration.
    #[error("{} already exists; not overwriting it", path.display())]
    AlreadyExists { path: PathBuf },
    /// The configuration does not evaluate; the diagnostics say why.
    #[error("{} has errors", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: EvalError,
    },
    /// An edit was computed but not written, because the result would not evaluate.
    #[error("{} was left unchanged: the edited configuration has errors", path.display())]
    Rejected {
        path: PathBuf,
        #[source]
        source: EvalError,
    },
    /// The config file could not be edited as asked.
    #[error("cannot edit {}", path.display())]
    Edit {
        path: PathBuf,
        #[source]
        source: EditError,
    },
    /// `nexis config get` was given a key path that does not parse.
    #[error(transparent)]
    KeyPath(EditError),
    /// `nexis config get` was given a key the configuration does not have.
    #[error("no key `{key}` in the configuration")]
    UnknownKey { key: String },
    /// A generation could not be activated.
    #[error(transparent)]
    Activate(#[from] nexis_activate::ActivateError),
    /// The profile of generations failed.
    #[error(transparent)]
    Generation(#[from] nexis_activate::GenerationError),
    /// The system toplevel could not be made.
    #[error(transparent)]
    Toplevel(#[from] nexis_activate::ToplevelError),
    /// The user and group id state could not be read or written.
    #[error(transparent)]
    Accounts(#[from] nexis_activate::AccountsError),
    /// A step of the system pipeline (lock, plan, substitutes, scheduling) failed.
    #[error(transparent)]
    Pipeline(#[from] nexis_build::PipelineError),
    /// Some builds failed; each was reported.
    #[error("{failed} of {wanted} builds failed")]
    BuildsFailed { failed: usize, wanted: usize },
    /// `nexis build --check`: some rebuilds differ (or failed); each was reported.
    #[error("{count} of {checked} checked outputs are not reproducible")]
    NotReproducible { count: usize, checked: usize },
    /// `nexis log PATH`: no log is kept for the path.
    #[error("no build log for {path}")]
    NoLog { path: String },
    /// The store failed.
    #[error("store operation failed")]
    Store {
        #[source]
        source: nexis_store::StoreError,
    },
    /// Adding a path to the store failed.
    #[error("cannot add {} to the store", path.display())]
    Add {
        path: PathBuf,
        #[source]
        source: nexis_store::AddError,
    },
    /// Exporting failed.
    #[error("cannot export to {to}")]
    Export {
        to: String,
        #[source]
        source: Box<nexis_store::ExportError>,
    },
    /// Importing failed; the store is unchanged.
    #[error("cannot import {from}")]
    Import {
        from: String,
        #[source]
        source: Box<nexis_store::ImportError>,
    },
    /// Copying to a binary cache failed.
    #[error("cannot copy to {url}")]
    CopyTo {
        url: String,
        #[source]
        source: Box<nexis_store::CacheError>,
    },
    /// Copying from a binary cache failed; the store is unchanged.
    #[error("cannot copy from {url}")]
    CopyFrom {
        url: String,
        #[source]
        source: Box<nexis_fetch::SubstituteError>,
    },
    /// Substituting from the configured binary caches failed; the store is unchanged.
    #[error("cannot substitute from {caches}")]
    Substitute {
        caches: String,
        #[source]
        source: Box<nexis_fetch::SubstituteError>,
    },
    /// A secret key file does not hold a secret key.
    #[error("{} does not hold a secret key", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: nexis_store::SignError,
    },
    /// A `--trusted-key` is not a public key.
    #[error(transparent)]
    TrustedKey { source: nexis_store::SignError },
    /// A key could not be made.
    #[error("cannot make a key")]
    GenerateKey {
        #[source]
        source: nexis_store::SignError,
    },
    /// An argument is not a store path.
    #[error(transparent)]
    StorePath { source: nexis_store::PathError },
    /// A store path argument is not valid in the store.
    #[error("{path} is not valid in the store")]
    NotValid { path: String },
    /// `why-depends` found no chain.
    #[error("{from} does not depend on {to}")]
    NoDependency { from: String, to: String },
    /// Arguments that do not go together.
    #[error("{message}")]
    Usage { message: String },
    /// Adding several paths to the store failed (the cause names the file).
    #[error("cannot add the {count} paths to the store")]
    AddMany {
        count: usize,
        #[source]
        source: nexis_store::AddError,
    },
    /// Reading inside a store path failed.
    #[error("cannot read {} in the store", location.display())]
    Browse {
        location: PathBuf,
        #[source]
        source: nexis_store::BrowseError,
    },
    /// Hashing a tree failed.
    #[error("cannot hash {}", path.display())]
    Hash {
        path: PathBuf,
        #[source]
        source: nexis_store::ArchiveError,
    },
    /// Writing data to stdout failed.
    #[error("cannot write to standard output")]
    Stdout {
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The evaluation errors behind this error, to be rendered with their source lines.
    pub(crate) fn eval_error(&self) -> Option<&EvalError> {
        match self {
            Error::Invalid { source, .. } | Error::Rejected { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether stdout was closed by the reader (`nexis schema | head`): not worth a
    /// message.
    pub(crate) fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Stdout { source } if source.kind() == io::ErrorKind::BrokenPipe)
    }
}
