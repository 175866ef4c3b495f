//! Activating NexisOS systems.
//!
//! Builds the system toplevel (the `etc` tree, declared files, home files, service
//! definitions, the `sw` profile, the activation manifest), manages generations and
//! profiles, and puts a generation in effect on a root atomically, with a journal that
//! makes an interrupted activation finish on the next run (`docs/activation.md`).
//!
//! - [`build_toplevel`]: a system (spec and package outputs) to a [`Toplevel`] in the
//!   store, with its [`Manifest`]; [`accounts`] gives users and groups their ids
//!   ([`Ids`], never reused).
//! - [`Profiles`]: generations (`system-N-link`) and the boot default (`system`).
//! - [`Target`]: a root; [`Target::activate`] a generation as a [`Mode`],
//!   [`Target::recover`] an interrupted activation, [`Target::drift`] what differs from
//!   the running generation, [`Target::boot_entries`] the boot menu.
//! - Services: [`write_services`] (Dinit and runit definitions), [`plan_services`], and a
//!   [`Supervisor`] running for the root ([`connect_services`]) to apply the plan to.
//! - [`write_boot_entries`]: GRUB or Boot Loader Spec entries (`docs/boot.md`).
//! - [`SystemDiff`]: what a switch changes.

mod activate;
mod boot;
mod diff;
mod drift;
mod fsutil;
mod generation;
mod manifest;
mod security;
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
pub use services::{
    Action, Outcome, ServiceAction, ServiceEntry, ServiceError, ServicePlan, ServicesReport,
    Supervisor, apply as apply_services, connect as connect_services, install as install_services,
    plan as plan_services, write_services,
};
pub use toplevel::{SystemInputs, SystemPackage, Toplevel, ToplevelError, build_toplevel};
pub use users::{
    Accounts, AccountsError, BUILTIN_GROUP_IDS, GroupEntry, IDS_FILE, Ids, UserEntry, accounts,
};
