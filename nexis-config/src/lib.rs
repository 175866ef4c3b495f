//! The NexisOS configuration language.
//!
//! A machine is described by TOML modules: a root `nexis.toml` and the files it
//! `imports`. This crate parses them with spans, merges them deterministically
//! (independent of import order, with `[defaults]` and `[force]` priorities), checks
//! them against a typed schema ([`SystemSpec`]), substitutes `${…}` references, validates
//! cross-references, and resolves package references against the inputs' recipes into a
//! dependency graph ([`PackageGraph`]). Every error is a [`Diagnostic`] with file, line,
//! column and a hint; independent errors are reported together in one [`EvalError`].
//!
//! The crate does no IO: files come through a [`Loader`]. [`MemoryLoader`] holds them in
//! memory:
//!
//! ```
//! use nexis_config::{evaluate, MemoryLoader};
//!
//! let loader = MemoryLoader::new()
//!     .with("/cfg/nexis.toml", r#"
//!         [inputs]
//!         local = "path:./pkgs"
//!         [system]
//!         hostname = "demo"
//!         [packages]
//!         install = ["hello"]
//!     "#)
//!     .with("/cfg/pkgs/packages/hello.toml", r#"
//!         name = "hello"
//!         version = "2.12.1"
//!         [build]
//!         system = "script"
//!         script = "mkdir -p $out/bin"
//!     "#);
//! let eval = evaluate(&loader, "/cfg/nexis.toml".as_ref()).unwrap();
//! assert_eq!(eval.spec.system.hostname.value, "demo");
//! assert_eq!(eval.packages.get("local#hello").unwrap().version.to_string(), "2.12.1");
//! ```

mod cycles;
mod de;
mod diagnostic;
pub mod edit;
mod eval;
mod interp;
mod loader;
mod merge;
mod resolve;
mod schema;
mod source;
mod spec;
mod validate;
mod value;
mod version;

pub use de::Spanned;
pub use diagnostic::{Diagnostic, EvalError, Label};
pub use eval::{Evaluation, evaluate};
pub use loader::{DirEntry, LoadError, Loader, MemoryLoader, normalize, path_input};
pub use resolve::{DepKind, PackageGraph, ResolvedPackage, SELF_INPUT};
pub use schema::{config_schema, recipe_schema};
pub use source::{FileId, SourceFile, Sources, Span};
pub use spec::*;
pub use validate::{BUILTIN_GROUPS, BUILTIN_SERVICES};
pub use version::{Version, VersionError, VersionReq};
