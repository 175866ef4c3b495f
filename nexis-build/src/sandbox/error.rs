//! What can go wrong running a build in the sandbox, and where.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// A sandbox run that could not start the builder or did not finish.
///
/// A builder that runs and fails is not an error: its status is in the
/// [`Outcome`](super::Outcome).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// A path of the spec cannot be used inside the sandbox.
    #[error("invalid sandbox path {}: {reason}", path.display())]
    InvalidPath { path: PathBuf, reason: &'static str },
    /// An argument, variable or the hostname contains a NUL byte.
    #[error("the {what} {value:?} contains a NUL byte")]
    Nul { what: &'static str, value: String },
    /// An environment variable name that is empty or contains `=`.
    #[error("invalid environment variable name {name:?}")]
    EnvName { name: String },
    /// A host path to bind into the sandbox cannot be read.
    #[error("reading the host path {}", path.display())]
    HostPath {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The parent's side of the set-up failed (pipes, file descriptors).
    #[error("{what} for the sandbox")]
    Prepare {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// `clone` refused the new namespaces (user namespaces disabled, limits reached).
    #[error("creating the sandbox's namespaces")]
    Clone {
        #[source]
        source: io::Error,
    },
    /// Writing the uid or gid map of the sandbox's user namespace failed.
    #[error("writing {}", path.display())]
    IdMap {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A step inside the new namespaces failed, before the builder started.
    #[error("setting up the sandbox: {step}")]
    Setup {
        step: Step,
        #[source]
        source: io::Error,
    },
    /// `execve` of the builder failed (a missing program, no permission, bad ELF).
    #[error("executing the builder {} in the sandbox", program.display())]
    Exec {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The build ran longer than the spec's timeout and was killed.
    #[error("the build timed out after {}", humane(*timeout))]
    Timeout { timeout: Duration },
    /// Waiting for the sandbox failed.
    #[error("waiting for the sandbox")]
    Wait {
        #[source]
        source: io::Error,
    },
    /// The sandbox's init process ended without reporting the builder's status (it was
    /// killed from outside, or the builder could not be waited for).
    #[error("the sandbox ended ({status}) without the builder's exit status")]
    Lost { status: ExitStatus },
}

fn humane(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// One step of setting the sandbox up, named with the path it worked on (the path as seen
/// inside the sandbox, unless said otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Waiting for the parent to write the uid/gid maps (the parent went away).
    WaitForIdMaps,
    SetHostname {
        name: String,
    },
    LoopbackUp,
    MakeMountsPrivate,
    /// Mounting the temporary root used while the sandbox's root is assembled (on the
    /// host's build directory, in the sandbox's private mount namespace).
    MountStaging {
        host: PathBuf,
    },
    Mount {
        fstype: &'static str,
        path: PathBuf,
    },
    BindMount {
        host: PathBuf,
        path: PathBuf,
    },
    Remount {
        path: PathBuf,
        read_only: bool,
    },
    CreateDir {
        path: PathBuf,
    },
    CreateFile {
        path: PathBuf,
    },
    WriteFile {
        path: PathBuf,
    },
    Symlink {
        path: PathBuf,
        target: PathBuf,
    },
    PivotRoot {
        path: PathBuf,
    },
    DetachOldRoot,
    Chdir {
        path: PathBuf,
    },
    StartBuilder,
    RedirectOutput,
    ResetSignals,
    CloseFds,
    NoNewPrivs,
    Seccomp,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::WaitForIdMaps => f.write_str("waiting for the uid/gid maps"),
            Step::SetHostname { name } => write!(f, "setting the hostname to {name:?}"),
            Step::LoopbackUp => f.write_str("bringing up the loopback interface"),
            Step::MakeMountsPrivate => f.write_str("making the mount tree private"),
            Step::MountStaging { host } => {
                write!(f, "mounting the staging tmpfs on {} (host)", host.display())
            }
            Step::Mount { fstype, path } => write!(f, "mounting {fstype} at {}", path.display()),
            Step::BindMount { host, path } => {
                write!(f, "bind-mounting {} at {}", host.display(), path.display())
            }
            Step::Remount { path, read_only } => write!(
                f,
                "remounting {} {}",
                path.display(),
                if *read_only {
                    "read-only"
                } else {
                    "nosuid,nodev"
                }
            ),
            Step::CreateDir { path } => write!(f, "creating the directory {}", path.display()),
            Step::CreateFile { path } => write!(f, "creating the file {}", path.display()),
            Step::WriteFile { path } => write!(f, "writing {}", path.display()),
            Step::Symlink { path, target } => write!(
                f,
                "creating the symlink {} -> {}",
                path.display(),
                target.display()
            ),
            Step::PivotRoot { path } => write!(f, "pivoting the root to {}", path.display()),
            Step::DetachOldRoot => f.write_str("detaching the old root"),
            Step::Chdir { path } => write!(f, "changing the directory to {}", path.display()),
            Step::StartBuilder => f.write_str("starting the builder process"),
            Step::RedirectOutput => f.write_str("redirecting the builder's stdin/stdout/stderr"),
            Step::ResetSignals => f.write_str("resetting the builder's signal mask"),
            Step::CloseFds => f.write_str("closing inherited file descriptors"),
            Step::NoNewPrivs => f.write_str("setting no_new_privs"),
            Step::Seccomp => f.write_str("installing the seccomp filter"),
        }
    }
}
