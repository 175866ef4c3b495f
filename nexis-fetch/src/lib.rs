//! Fetching NexisOS inputs ("flakes") and substitutes.
//!
//! Owns input references (`git+https://…?ref=…&rev=…`, `https://…/x.tar.gz`,
//! `path:./dir`), git through gix, HTTP through ureq, safe unpacking of archives, hash
//! pinning, the `nexis.lock` file, and downloading substitutes from binary caches. It
//! implements `nexis_config::Loader` so evaluation can read git and HTTP inputs.
//!
//! This crate is filled by the fetch issue; nothing is implemented yet.
