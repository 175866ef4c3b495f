//! Fetching NexisOS inputs ("flakes") and substitutes.
//!
//! Owns input references (`git+https://…?ref=…&rev=…`, `https://…/x.tar.gz`,
//! `path:./dir`), git through gix, HTTP through ureq, safe unpacking of archives, hash
//! pinning, the `nexis.lock` file, and downloading substitutes from binary caches
//! (still to come: transitive inputs, `follows`, parallel fetching).
//!
//! Inputs into the store: a [`Fetcher`] fetches a reference and adds it to the store as a
//! content-addressed path, describing it as a [`LockedInput`] for the [`Lock`]
//! (`nexis.lock`, `docs/lock.md`); [`Fetcher::realise`] turns a locked input back into
//! its store path, without network when the path is valid. `nexis-cli`'s loader uses
//! them so evaluation reads git and HTTP inputs.
//!
//! Git: [`fetch_git`] fetches a [`GitSource`] into a bare cache repository per URL (gix; shallow
//! where possible; offline when the pinned rev is cached) and checks the commit out without `.git`.
//!
//! HTTP: a [`Downloader`] fetches files over HTTP(S) (ureq, rustls) or from `file://`,
//! trying mirrors in order with retries, hashing with sha256 and blake3 as it streams, and
//! [`Downloader::download_to_file`] renames into place only a file whose hash matched.
//!
//! Substitutes: a [`Substituter`] makes store paths valid from binary caches
//! (`http://`, `https://`, `file://`), asked in order, a cache that is down skipped after
//! one warning; it is the HTTP backend ([`Caches`]) of nexis-store's one closure walk,
//! `Store::substitute_from`, so every path is verified before any becomes valid.
//!
//! References: [`InputRef`] parses and prints the one reference syntax
//! (`docs/inputs.md`) — [`GitInput`], [`UrlInput`] (an archive or a plain file, by its
//! suffix), [`PathInput`] — canonically, so that `parse(print(x)) == x`; [`Hash`] is the
//! `sha256`/`blake3` pin, read in SRI or hexadecimal form and printed in SRI form.
//!
//! Unpacking: [`unpack`] turns an untrusted tarball (gzip, xz, zstd, plain) or zip into a
//! new directory, refusing escaping names and links, writes through symlinks, special
//! files and duplicates, enforcing [`Limits`] as it writes, and stripping a single
//! top-level directory; a refusal leaves nothing at the destination.
//!
//! ```
//! use nexis_fetch::{ArchiveKind, InputRef, UrlKind};
//!
//! let input: InputRef = "https://example.org/hello-2.12.tar.gz?hash=sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".parse()?;
//! let InputRef::Url(url) = &input else { unreachable!() };
//! assert_eq!(url.kind(), UrlKind::Archive(ArchiveKind::TarGz));
//! assert_eq!(url.url.to_string(), "https://example.org/hello-2.12.tar.gz");
//! # Ok::<(), nexis_fetch::InputRefError>(())
//! ```

mod fetch;
mod git;
mod hash;
mod http;
mod lock;
mod reference;
mod substitute;
mod unpack;

pub use fetch::{FetchError, FetchEvent, Fetched, Fetcher, SOURCE_NAME};
pub use git::{
    GitError, GitFetched, GitProgress, GitProgressFn, GitSource, fetch_git,
    fetch_git_with_progress, head_revision,
};
pub use hash::{Hash, HashAlgo, HashError};
pub use http::{
    Body, DownloadError, DownloadOptions, Downloaded, Downloader, Progress, USER_AGENT,
};
pub use lock::{LOCK_FILE, LOCK_VERSION, Lock, LockError, LockedInput, LockedSource};
pub use reference::{
    FetchUrl, GitInput, GitTransport, GitUrl, InputRef, InputRefError, InputRefErrorKind,
    InvalidRefName, InvalidRev, PathInput, RefName, Rev, UrlInput, UrlKind, UrlScheme,
};
pub use substitute::{Caches, SubstituteError, Substituter};
pub use unpack::{
    ArchiveKind, EntryError, Limits, MAX_EXTENSION_LEN, MAX_TRAILING_LEN, UnpackError,
    UnpackReport, unpack, unpack_file,
};
