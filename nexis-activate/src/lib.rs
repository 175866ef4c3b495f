//! Activating NexisOS systems.
//!
//! Builds the system toplevel (the `etc` tree, the `sw` profile, service files, boot
//! files, the activation manifest), manages generations and profiles, switches atomically
//! (one symlink rename), writes /etc, users and groups, home files and Dinit services,
//! boot loader entries, rollback and drift checks.
//!
//! This crate is filled by the activation issue; nothing is implemented yet.
