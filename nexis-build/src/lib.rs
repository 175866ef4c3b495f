//! Building NexisOS packages.
//!
//! Turns resolved recipes into derivations (hashed build plans whose hash determines the
//! output paths), schedules them on the package graph in parallel (longest path first),
//! runs each in a Linux-namespace sandbox, and registers the outputs in the store. Also
//! hosts the `system` pipeline the frontends call: config → fetch → build.
//!
//! - [`Derivation`]: the hashed plan; [`Derivation::output_path`] (`docs/derivation.md`).
//! - [`plan`]: resolved recipes ([`nexis_config::PackageGraph`]) to a [`Plan`] of
//!   derivations, sources added to the store or fetched.
//! - [`build`] one derivation, [`build_graph`] many in parallel (critical path first),
//!   [`check`] one again for reproducibility; logs by [`read_log`].
//! - [`run`] a [`SandboxSpec`]: the namespace sandbox (`docs/sandbox.md`).
//! - The pipeline: [`evaluate_with_inputs`] (with [`FsLoader`] and [`Inputs`] over
//!   `nexis.lock`), [`plan_system`], [`build_system`].
//!
//! The sandbox on its own:
//!
//! ```no_run
//! use nexis_build::{SandboxSpec, host_tool_paths, run};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let log = std::fs::File::create("/tmp/build.log")?;
//! let mut spec = SandboxSpec::new("/bin/sh", "/tmp/build-dir", log);
//! spec.args = vec!["-c".into(), "echo hello".into()];
//! spec.env = vec![("PATH".into(), "/usr/bin:/bin".into())];
//! spec.extra_paths = host_tool_paths();
//! let outcome = run(&spec)?;
//! assert!(outcome.success());
//! # Ok(())
//! # }
//! ```

// The sandbox makes raw system calls (clone, mount, pivot_root, seccomp) between clone
// and execve; each `unsafe` block there says why it is sound. No other module may.
#[allow(unsafe_code)]
mod sandbox;

mod builder;
mod derivation;
mod foreign;
mod loader;
mod pipeline;
mod recipe;
mod schedule;

pub use builder::{
    BuildError, BuildSettings, Built, CheckReport, DEFAULT_SOURCE_DATE_EPOCH, build, check,
    log_file, read_log,
};
pub use derivation::{DERIVATION_FORMAT, Derivation, OUT};
pub use loader::{FsLoader, InputEvent, InputProgress, Inputs, InputsError, LockMode, read_lock};
pub use pipeline::{
    Evaluated, PipelineError, SystemBuild, SystemEvents, build_system, closure_outputs,
    evaluate_with_inputs, outputs_needed, plan_system, schedule_options, substitutable,
    substitute_outputs, wanted_packages, write_file_atomic,
};
pub use recipe::{Plan, PlanError, PlanSettings, plan, system};
pub use schedule::{
    BuildEvent, BuildReport, DrvGraph, NodeIndex, ScheduleError, ScheduleOptions, build_graph,
};

pub use sandbox::{
    BUILD_DIR, BUILD_GID, BUILD_UID, Outcome, SandboxError, SandboxSpec, Step, host_tool_paths, run,
};
