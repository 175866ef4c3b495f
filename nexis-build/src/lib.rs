//! Building NexisOS packages.
//!
//! Turns resolved recipes into derivations (hashed build plans whose hash determines the
//! output paths), schedules them on the package graph in parallel (longest path first),
//! runs each in a Linux-namespace sandbox, and registers the outputs in the store. Also
//! hosts the `system` pipeline the frontends call: config → fetch → build.
//!
//! This crate is filled by the build issue; nothing is implemented yet.
