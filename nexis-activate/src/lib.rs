//! Activating NexisOS systems.
//!
//! Builds the system toplevel (the `etc` tree, the `sw` profile, the activation
//! manifest), manages generations and profiles, and puts a generation in effect on a
//! root atomically, with a journal that makes an interrupted activation finish on the
//! next run (`docs/activation.md`).
//!
//! - [`build_toplevel`]: a system (spec and package outputs) to a [`Toplevel`] in the
//!   store, with its [`Manifest`].
//! - [`Profiles`]: generations (`system-N-link`) and the boot default (`system`).
//! - [`Target`]: a root; [`Target::activate`] a generation as a [`Mode`],
//!   [`Target::recover`] an interrupted activation.
//!
//! - [`SystemDiff`]: what a switch changes (packages, `/etc`).
//!
//! Still to come (the activation issue): users and groups, home files, services
//! (Dinit), boot entries and the drift check.

mod activate;
mod boot;
mod diff;
mod drift;
mod fsutil;
mod generation;
mod manifest;
mod services;
mod toplevel;
mod users;

pub use activate::{ActivateError, ActivationReport, Mode, Target};
pub use boot::{
    BootEntry, BootError, BootReport, BootSpec, find_initrd, find_kernel, utc, write_boot_entries,
};
pub use diff::SystemDiff;
pub use drift::{Drift, DriftKind};
pub use generation::{Generation, GenerationError, Profiles};
pub use manifest::{
    BootFiles, FileEntry, FileKind, MANIFEST_FILE, MANIFEST_VERSION, Manifest, ManifestPackage,
};
pub use toplevel::{SystemInputs, SystemPackage, Toplevel, ToplevelError, build_toplevel};
pub use users::{
    Accounts, AccountsError, BUILTIN_GROUP_IDS, GroupEntry, IDS_FILE, Ids, UserEntry, accounts,
};
