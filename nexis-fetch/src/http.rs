//! Downloads over HTTP(S) (ureq with rustls) and from `file://` URLs.
//!
//! A [`Downloader`] tries mirrors in order. Each mirror is retried with exponential
//! backoff on failures that may pass (connection errors, timeouts, a body cut short,
//! HTTP 5xx, 408 and 429, whose `Retry-After` seconds are honoured); any other failure
//! (404 and the other 4xx, a wrong hash, too many redirects, TLS errors) moves on to the
//! next mirror at once. The body is read once, in large chunks, each chunk hashed with
//! both sha256 and blake3 and written out, so the caller learns both digests whatever
//! the pinned hash's algorithm. [`Downloader::download_to_file`] writes to a temporary
//! file beside the destination, truncated before each attempt, and renames it into place
//! only after the hash matched: the destination holds a complete, checked file or nothing.
//!
//! A body shorter than its `Content-Length` is an error. A longer one cannot be seen by an
//! HTTP/1.1 client: the body ends where the header says, and ureq does not reuse a
//! connection with bytes left over, so the download is the announced bytes and the hash
//! check decides.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStringExt as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use sha2::Digest as _;
use ureq::ResponseExt as _;
use ureq::http::header::{CONTENT_LENGTH, LOCATION, RETRY_AFTER};

use crate::hash::{Hash, HashAlgo, hex_value};

/// The `User-Agent` header nexis sends: `nexis/<version>`.
pub const USER_AGENT: &str = concat!("nexis/", env!("CARGO_PKG_VERSION"));

/// Bytes read, hashed and written at a time. Large enough that per-chunk costs vanish,
/// small enough that a chunk is still in cache when the second hash and the write read it.
const CHUNK: usize = 256 * 1024;

/// Chunks in flight between the reading and the writing thread.
const BUFFERS: usize = 4;

/// How a [`Downloader`] talks to servers. `Default` gives the values documented per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadOptions {
    /// Limit on resolving the host and connecting, TLS handshake included. Default 30 s.
    pub connect_timeout: Duration,
    /// Longest wait for data from the server, headers or body (an idle timeout, restarted
    /// by every read). Default 60 s.
    pub read_timeout: Duration,
    /// Limit on one attempt as a whole: request, redirects and body. Default none.
    pub total_timeout: Option<Duration>,
    /// How many times one mirror is tried again after a failure that may pass. Default 3.
    pub retries: u32,
    /// Wait before the first retry; it doubles with each retry, plus up to a quarter of
    /// jitter. Default 250 ms.
    pub backoff: Duration,
    /// Longest wait before a retry, including one a server asked for with `Retry-After`.
    /// Default 30 s.
    pub max_backoff: Duration,
    /// How many redirects are followed; one more is an error. Default 5.
    pub max_redirects: u32,
    /// The `User-Agent` header. Default [`USER_AGENT`].
    pub user_agent: String,
}

impl Default for DownloadOptions {
    fn default() -> DownloadOptions {
        DownloadOptions {
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_mins(1),
            total_timeout: None,
            retries: 3,
            backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            max_redirects: 5,
            user_agent: USER_AGENT.to_owned(),
        }
    }
}

/// Where a download stands; passed to the progress callback after every chunk and at
/// the start of every attempt (with `received` 0, so a retry restarts the count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<'a> {
    /// The mirror being read, as given.
    pub url: &'a str,
    /// Bytes received in this attempt.
    pub received: u64,
    /// The announced length, when the server sent one.
    pub total: Option<u64>,
    /// 0 for the first attempt at this mirror, then 1, 2… for retries.
    pub attempt: u32,
}

/// A finished, checked download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// The mirror that served it, as given (before any redirect).
    pub url_used: String,
    /// Its length in bytes.
    pub bytes: u64,
    /// Its blake3 digest.
    pub blake3: [u8; 32],
    /// Its sha256 digest.
    pub sha256: [u8; 32],
}

impl Downloaded {
    /// The digest of the given algorithm, as a [`Hash`](struct@Hash) (to pin it, or to compare).
    pub fn hash(&self, algo: HashAlgo) -> Hash {
        let digest = match algo {
            HashAlgo::Sha256 => self.sha256,
            HashAlgo::Blake3 => self.blake3,
        };
        Hash { algo, digest }
    }
}

/// A download that failed. Each message names the URL and what happened.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The list of mirrors was empty.
    #[error("no URL to download from")]
    NoUrls,
    /// Neither `http://`, `https://` nor `file:///absolute/path`.
    #[error("`{url}`: unsupported URL: {reason}")]
    UnsupportedUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The server answered with an error status (or a redirect without a location).
    #[error("{url}: HTTP {status}{}", reason_suffix(reason))]
    Status {
        /// The URL requested (the mirror, before redirects).
        url: String,
        /// The status code.
        status: u16,
        /// The status's reason phrase, empty when unknown.
        reason: String,
        /// How long the server asked to wait (`Retry-After` in seconds), if it did.
        retry_after: Option<Duration>,
    },
    /// No answer within a configured limit.
    #[error("{url}: timed out after {after:?} {phase}")]
    Timeout {
        /// The URL.
        url: String,
        /// What was being waited for: `connecting`, `waiting for data`, `in total`…
        phase: &'static str,
        /// The limit that ran out.
        after: Duration,
    },
    /// The connection could not be made or broke (refused, reset…).
    #[error("{url}: {error}")]
    Io {
        /// The URL.
        url: String,
        /// What the system said.
        error: io::Error,
    },
    /// Another HTTP failure: the host not found, TLS, a malformed response…
    #[error("{url}: {error}")]
    Http {
        /// The URL.
        url: String,
        /// What ureq said.
        error: ureq::Error,
    },
    /// The body ended before the announced `Content-Length`, or ran past it.
    #[error(
        "{url}: body length mismatch: Content-Length announced {announced} bytes, received {received}"
    )]
    Length {
        /// The URL.
        url: String,
        /// The `Content-Length`.
        announced: u64,
        /// The bytes actually received.
        received: u64,
    },
    /// A body without a `Content-Length` (chunked) was cut off.
    #[error("{url}: connection closed before the end of the body, after {received} bytes")]
    Truncated {
        /// The URL.
        url: String,
        /// The bytes received.
        received: u64,
    },
    /// The body is larger than the caller allows.
    #[error("{url}: body larger than the limit of {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// The data does not have the expected hash.
    #[error("hash mismatch for {url}: expected {expected}, got {got}")]
    HashMismatch {
        /// The URL.
        url: String,
        /// The pinned hash.
        expected: Hash,
        /// The hash of what was received, in the same algorithm.
        got: Hash,
    },
    /// The redirect chain is longer than [`DownloadOptions::max_redirects`].
    #[error(
        "{url}: too many redirects: the chain reached {}, the limit is {max}: {}",
        chain.len().saturating_sub(1),
        chain.join(" → ")
    )]
    TooManyRedirects {
        /// The URL.
        url: String,
        /// The limit.
        max: u32,
        /// Every URL requested, then the location the last answer pointed to.
        chain: Vec<String>,
    },
    /// A `file://` URL could not be read.
    #[error("{url}: cannot read `{}`", path.display())]
    File {
        /// The URL.
        url: String,
        /// The file it names.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The temporary file beside the destination could not be created.
    #[error("cannot create a temporary file in `{}`", dir.display())]
    TempFile {
        /// The destination's directory.
        dir: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// Writing the downloaded data failed (a local problem: no mirror is tried after it).
    #[error("cannot write `{}`", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The checked download could not be renamed to its destination.
    #[error("cannot move the download into place at `{}`", path.display())]
    Persist {
        /// The destination.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// Every mirror failed; each failure names its URL.
    #[error("download failed from all {} mirrors:{}", failures.len(), MirrorList(failures))]
    Mirrors {
        /// One error per mirror, in the order they were tried.
        failures: Vec<DownloadError>,
    },
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" {reason}")
    }
}

/// Each mirror's error on its own line, with its causes.
struct MirrorList<'a>(&'a [DownloadError]);

impl fmt::Display for MirrorList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for error in self.0 {
            write!(f, "\n  {error}")?;
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                write!(f, ": {cause}")?;
                source = cause.source();
            }
        }
        Ok(())
    }
}

impl DownloadError {
    /// Whether trying the same URL again may succeed.
    fn is_transient(&self) -> bool {
        match self {
            DownloadError::Status { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            DownloadError::Timeout { .. }
            | DownloadError::Io { .. }
            | DownloadError::Length { .. }
            | DownloadError::Truncated { .. } => true,
            DownloadError::Http { error, .. } => matches!(
                error,
                ureq::Error::HostNotFound
                    | ureq::Error::ConnectionFailed
                    | ureq::Error::Protocol(_)
                    | ureq::Error::BodyStalled
            ),
            _ => false,
        }
    }

    /// Whether the failure is on this machine, so no other mirror can help.
    fn is_local(&self) -> bool {
        matches!(
            self,
            DownloadError::TempFile { .. }
                | DownloadError::Write { .. }
                | DownloadError::Persist { .. }
        )
    }

    /// Whether the resource is absent (HTTP 404 or 410, or a missing `file://` file).
    pub fn is_not_found(&self) -> bool {
        match self {
            DownloadError::Status { status, .. } => matches!(status, 404 | 410),
            DownloadError::File { source, .. } => source.kind() == io::ErrorKind::NotFound,
            DownloadError::Mirrors { failures } => failures.iter().all(DownloadError::is_not_found),
            _ => false,
        }
    }
}

/// Downloads over HTTP(S) and from `file://` URLs; see the module documentation.
///
/// Cheap to clone (the connection pool is shared); safe to use from many threads.
#[derive(Debug, Clone)]
pub struct Downloader {
    agent: ureq::Agent,
    options: DownloadOptions,
}

impl Default for Downloader {
    fn default() -> Downloader {
        Downloader::new(DownloadOptions::default())
    }
}

/// What kind of URL a mirror is.
enum Source {
    Http,
    File(PathBuf),
}

impl Downloader {
    /// A downloader with these options.
    pub fn new(options: DownloadOptions) -> Downloader {
        let config = ureq::Agent::config_builder()
            // Statuses are read here: 404 moves on, 5xx retries.
            .http_status_as_error(false)
            .user_agent(options.user_agent.as_str())
            // The bytes as stored: a `.tar.gz` must not arrive decompressed.
            .accept_encoding("identity")
            .max_redirects(options.max_redirects)
            // One redirect too many comes back as the 3xx response, so the error can show
            // the chain, which ureq's own error does not.
            .max_redirects_will_error(false)
            .save_redirect_history(true)
            .timeout_resolve(Some(options.connect_timeout))
            .timeout_connect(Some(options.connect_timeout))
            .timeout_per_read(Some(options.read_timeout))
            .timeout_per_write(Some(options.read_timeout))
            .timeout_global(options.total_timeout)
            .build();
        Downloader {
            agent: config.new_agent(),
            options,
        }
    }

    /// The options it was made with.
    pub fn options(&self) -> &DownloadOptions {
        &self.options
    }

    /// Download from the first mirror that works into `dest`, checking `expected`.
    ///
    /// The data goes to a temporary file beside `dest` (truncated before each attempt),
    /// which is synced and renamed to `dest` only when the hash matched; on any error
    /// nothing is left at `dest` and no temporary file remains. An existing `dest` is
    /// replaced. Without `expected`, the caller gets both digests to pin.
    ///
    /// ```no_run
    /// use std::path::Path;
    /// use nexis_fetch::{Downloader, Hash, HashAlgo};
    ///
    /// let hash: Hash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".parse()?;
    /// let done = Downloader::default().download_to_file(
    ///     &["https://example.org/x.tar.gz", "https://mirror.example.net/x.tar.gz"],
    ///     Some(&hash),
    ///     Path::new("/tmp/x.tar.gz"),
    ///     &|p| eprintln!("{} {}/{:?}", p.url, p.received, p.total),
    /// )?;
    /// assert_eq!(done.hash(HashAlgo::Sha256), hash);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn download_to_file<U: AsRef<str>>(
        &self,
        urls: &[U],
        expected: Option<&Hash>,
        dest: &Path,
        progress: &dyn Fn(Progress<'_>),
    ) -> Result<Downloaded, DownloadError> {
        if urls.is_empty() {
            return Err(DownloadError::NoUrls);
        }
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".nexis-download-")
            .tempfile_in(dir)
            .map_err(|source| DownloadError::TempFile {
                dir: dir.to_owned(),
                source,
            })?;
        let temp_path = temp.path().to_owned();
        let write_error = |source| DownloadError::Write {
            path: temp_path.clone(),
            source,
        };
        let file = temp.as_file();
        let mut failures = Vec::new();
        for url in urls {
            let url = url.as_ref();
            let attempt = |attempt: u32| {
                file.set_len(0)
                    .and_then(|()| (&mut &*file).seek(SeekFrom::Start(0)))
                    .map_err(write_error)?;
                let mut sink = Sink {
                    file,
                    path: &temp_path,
                };
                let done = self.fetch(url, attempt, &mut sink, progress)?;
                check_hash(url, expected, &done)?;
                Ok(done)
            };
            match self.with_retries(url, attempt) {
                Ok(done) => {
                    file.sync_all().map_err(write_error)?;
                    temp.persist(dest).map_err(|e| DownloadError::Persist {
                        path: dest.to_owned(),
                        source: e.error,
                    })?;
                    // The rename is durable once the directory is synced; a failure here
                    // leaves a complete, checked file, so it is not worth an error.
                    if let Ok(d) = File::open(dir) {
                        let _ = d.sync_all();
                    }
                    return Ok(done);
                }
                Err(e) if e.is_local() => return Err(e),
                Err(e) => failures.push(e),
            }
        }
        Err(combine(failures))
    }

    /// Open `url` for reading a body of at most `limit` bytes: a binary cache's info file,
    /// or an archive file streamed, read once, into the store's receiver. `Ok(None)` when it does not exist (HTTP 404 or 410, or a missing
    /// file). Failures before the body starts are retried; reading the [`Body`] past
    /// `limit`, or short of its `Content-Length`, fails with a [`DownloadError`] inside
    /// the `io::Error` (or directly from [`Body::read_to_vec`]).
    pub fn get(&self, url: &str, limit: u64) -> Result<Option<Body>, DownloadError> {
        let result = self.with_retries(url, |_| {
            let (reader, announced): (Box<dyn Read + Send>, _) = match classify(url)? {
                Source::File(path) => {
                    let file = File::open(&path).map_err(|source| DownloadError::File {
                        url: url.to_owned(),
                        path,
                        source,
                    })?;
                    (Box::new(file), None)
                }
                Source::Http => {
                    let response = self.request(url)?;
                    let announced = content_length(&response);
                    (Box::new(response.into_body().into_reader()), announced)
                }
            };
            if announced.is_some_and(|a| a > limit) {
                return Err(DownloadError::TooLarge {
                    url: url.to_owned(),
                    limit,
                });
            }
            Ok(Body {
                url: url.to_owned(),
                reader,
                announced,
                received: 0,
                limit,
                options: self.options.clone(),
            })
        });
        match result {
            Ok(body) => Ok(Some(body)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Run `attempt` (given the retry number) until it succeeds, fails for good, or the
    /// retries are spent, sleeping between tries.
    fn with_retries<T>(
        &self,
        url: &str,
        mut attempt: impl FnMut(u32) -> Result<T, DownloadError>,
    ) -> Result<T, DownloadError> {
        let mut retry = 0;
        loop {
            match attempt(retry) {
                Err(e) if e.is_transient() && retry < self.options.retries => {
                    thread::sleep(self.delay(url, retry, &e));
                    retry += 1;
                }
                result => return result,
            }
        }
    }

    /// How long to wait before retry number `retry + 1`.
    fn delay(&self, url: &str, retry: u32, error: &DownloadError) -> Duration {
        let cap = self.options.max_backoff;
        if let DownloadError::Status {
            retry_after: Some(wait),
            ..
        } = error
        {
            return (*wait).min(cap);
        }
        let base = self
            .options
            .backoff
            .saturating_mul(1 << retry.min(16))
            .min(cap);
        // Up to a quarter more, different per process and URL so that many clients
        // failing together do not come back together.
        let mut hasher = blake3::Hasher::new();
        hasher.update(&std::process::id().to_le_bytes());
        hasher.update(&retry.to_le_bytes());
        hasher.update(url.as_bytes());
        let bytes = hasher.finalize();
        let fraction = f64::from(bytes.as_bytes()[0]) / 1024.0;
        base.saturating_add(base.mul_f64(fraction)).min(cap)
    }

    /// One attempt at one mirror: stream the body into `sink`, hashing it.
    fn fetch(
        &self,
        url: &str,
        attempt: u32,
        sink: &mut Sink<'_>,
        progress: &dyn Fn(Progress<'_>),
    ) -> Result<Downloaded, DownloadError> {
        let report = |received, total| {
            progress(Progress {
                url,
                received,
                total,
                attempt,
            });
        };
        match classify(url)? {
            Source::File(path) => {
                let mut file = File::open(&path).map_err(|source| DownloadError::File {
                    url: url.to_owned(),
                    path: path.clone(),
                    source,
                })?;
                let total = file.metadata().ok().map(|m| m.len());
                report(0, total);
                pump(&mut file, sink, &mut |r| report(r, total)).map_err(|e| match e {
                    PumpError::Read(source, _) => DownloadError::File {
                        url: url.to_owned(),
                        path: path.clone(),
                        source,
                    },
                    PumpError::Write(e) => e,
                })
            }
            Source::Http => {
                let response = self.request(url)?;
                let announced = content_length(&response);
                let mut body = response.into_body().into_reader();
                report(0, announced);
                let done =
                    pump(&mut body, sink, &mut |r| report(r, announced)).map_err(|e| match e {
                        PumpError::Read(error, received) => {
                            read_error(url, error, announced, received, &self.options)
                        }
                        PumpError::Write(e) => e,
                    })?;
                if let Some(announced) = announced
                    && announced != done.bytes
                {
                    return Err(DownloadError::Length {
                        url: url.to_owned(),
                        announced,
                        received: done.bytes,
                    });
                }
                Ok(done)
            }
        }
        .map(|done| Downloaded {
            url_used: url.to_owned(),
            ..done
        })
    }

    /// Send the request and accept only a 2xx answer.
    fn request(&self, url: &str) -> Result<ureq::http::Response<ureq::Body>, DownloadError> {
        let response = self
            .agent
            .get(url)
            .call()
            .map_err(|e| ureq_error(url, e, &self.options))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let header = |name: ureq::http::header::HeaderName| {
            response.headers().get(name).and_then(|v| v.to_str().ok())
        };
        if status.is_redirection()
            && let Some(location) = header(LOCATION)
        {
            let mut chain: Vec<String> = response.get_redirect_history().map_or_else(
                || vec![url.to_owned()],
                |h| h.iter().map(ToString::to_string).collect(),
            );
            chain.push(location.to_owned());
            return Err(DownloadError::TooManyRedirects {
                url: url.to_owned(),
                max: self.options.max_redirects,
                chain,
            });
        }
        Err(DownloadError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or_default().to_owned(),
            retry_after: header(RETRY_AFTER)
                .and_then(|v| v.trim().parse().ok())
                .map(Duration::from_secs),
        })
    }
}

/// The announced body length, if the response has one.
fn content_length(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn check_hash(url: &str, expected: Option<&Hash>, done: &Downloaded) -> Result<(), DownloadError> {
    match expected {
        Some(expected) if done.hash(expected.algo) != *expected => {
            Err(DownloadError::HashMismatch {
                url: url.to_owned(),
                expected: *expected,
                got: done.hash(expected.algo),
            })
        }
        _ => Ok(()),
    }
}

/// One failure as it is; several as the list of every mirror's failure.
fn combine(mut failures: Vec<DownloadError>) -> DownloadError {
    if failures.len() == 1 {
        failures.pop().expect("one failure")
    } else {
        DownloadError::Mirrors { failures }
    }
}

/// Tell HTTP(S) from `file://` URLs, and decode a file URL's path.
fn classify(url: &str) -> Result<Source, DownloadError> {
    let unsupported = |reason| DownloadError::UnsupportedUrl {
        url: url.to_owned(),
        reason,
    };
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http" | "https") => Ok(Source::Http),
        Some("file") => {
            let rest = &url["file://".len()..];
            let rest = rest.strip_prefix("localhost").unwrap_or(rest);
            if !rest.starts_with('/') {
                return Err(unsupported(
                    "a file URL must be `file:///absolute/path` (no host)",
                ));
            }
            // The query and fragment are not part of the file's name.
            let path = rest.split(['?', '#']).next().unwrap_or(rest);
            let bytes = percent_decode(path)
                .ok_or_else(|| unsupported("bad percent-encoding in the path"))?;
            Ok(Source::File(PathBuf::from(OsString::from_vec(bytes))))
        }
        _ => Err(unsupported(
            "expected `http://`, `https://` or `file:///absolute/path`",
        )),
    }
}

/// `%XX` sequences decoded; `None` for a `%` not followed by two hexadecimal digits or
/// a NUL byte.
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let pair = b.get(i + 1..i + 3)?;
            if !pair.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let byte = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
            if byte == 0 {
                return None;
            }
            out.push(byte);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// A ureq error as this crate's, naming the URL (and the limit, for timeouts).
fn ureq_error(url: &str, error: ureq::Error, options: &DownloadOptions) -> DownloadError {
    let url = url.to_owned();
    match error {
        ureq::Error::Timeout(t) => {
            let (phase, after) = match t {
                ureq::Timeout::Resolve => ("resolving the host", options.connect_timeout),
                ureq::Timeout::Connect => ("connecting", options.connect_timeout),
                ureq::Timeout::PerWrite => ("sending the request", options.read_timeout),
                ureq::Timeout::Global => {
                    ("in total", options.total_timeout.unwrap_or(Duration::ZERO))
                }
                // Per read, and any other (unset, so unreachable) limit.
                _ => ("waiting for data", options.read_timeout),
            };
            DownloadError::Timeout { url, phase, after }
        }
        ureq::Error::Io(error) => DownloadError::Io { url, error },
        error => DownloadError::Http { url, error },
    }
}

/// Whether `error` carries an error of type `T`.
fn wraps<T: std::error::Error + 'static>(error: &io::Error) -> bool {
    matches!(error.get_ref(), Some(inner) if inner.is::<T>())
}

/// An error while reading the body, `received` bytes into it.
fn read_error(
    url: &str,
    error: io::Error,
    announced: Option<u64>,
    received: u64,
    options: &DownloadOptions,
) -> DownloadError {
    // ureq hands its own errors (timeouts, protocol) through `Read` wrapped in io::Error.
    if wraps::<ureq::Error>(&error) {
        return ureq_error(url, ureq::Error::from(error), options);
    }
    if error.kind() == io::ErrorKind::UnexpectedEof {
        return match announced {
            Some(announced) => DownloadError::Length {
                url: url.to_owned(),
                announced,
                received,
            },
            None => DownloadError::Truncated {
                url: url.to_owned(),
                received,
            },
        };
    }
    DownloadError::Io {
        url: url.to_owned(),
        error,
    }
}

/// The file a download is written to, with its name for errors.
struct Sink<'a> {
    file: &'a File,
    path: &'a Path,
}

enum PumpError {
    /// Reading failed after this many bytes.
    Read(io::Error, u64),
    /// Writing failed.
    Write(DownloadError),
}

/// Copy `reader` to `sink` in [`CHUNK`]-sized pieces, hashing each with sha256 and
/// blake3; `progress` gets the running count.
///
/// Two stages overlap, each on its own thread and each touching a chunk while it is in
/// cache: this one reads and takes sha256 (the slower hash), a scoped writer thread takes
/// blake3 and writes. [`BUFFERS`] chunks circulate between them, so neither waits for the
/// other unless it is the slower one. On one core this costs a thread switch per chunk.
fn pump(
    reader: &mut dyn Read,
    sink: &mut Sink<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<Downloaded, PumpError> {
    let file = sink.file;
    thread::scope(|scope| {
        let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(BUFFERS);
        let (free_tx, free_rx) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
        for _ in 0..BUFFERS {
            free_tx
                .send(vec![0u8; CHUNK])
                .expect("the channel has room for every buffer");
        }
        let writer = scope.spawn(move || {
            let mut blake3 = blake3::Hasher::new();
            for (buf, len) in full_rx {
                blake3.update(&buf[..len]);
                (&mut &*file).write_all(&buf[..len])?;
                // Fails only when the reader has stopped, which is no concern here.
                let _ = free_tx.send(buf);
            }
            Ok::<_, io::Error>(*blake3.finalize().as_bytes())
        });

        let mut sha256 = sha2::Sha256::new();
        let mut received = 0u64;
        let read = loop {
            // No buffer comes back only when the writer failed; its error is reported.
            let Ok(mut buf) = free_rx.recv() else {
                break Ok(());
            };
            let (filled, end) = match fill(reader, &mut buf) {
                Ok(filled) => filled,
                Err((e, filled)) => break Err(PumpError::Read(e, received + filled as u64)),
            };
            if filled > 0 {
                sha256.update(&buf[..filled]);
                received += filled as u64;
                if full_tx.send((buf, filled)).is_err() {
                    break Ok(());
                }
                progress(received);
            }
            if end {
                break Ok(());
            }
        };
        drop(full_tx);
        let blake3 = writer
            .join()
            .expect("the writer thread does not panic")
            .map_err(|source| {
                PumpError::Write(DownloadError::Write {
                    path: sink.path.to_owned(),
                    source,
                })
            })?;
        read?;
        Ok(Downloaded {
            url_used: String::new(),
            bytes: received,
            blake3,
            sha256: sha256.finalize().into(),
        })
    })
}

/// Read into `buf` until it is full or the data ends: the length read and whether the
/// data ended, or the error and the length read before it.
fn fill(reader: &mut dyn Read, buf: &mut [u8]) -> Result<(usize, bool), (io::Error, usize)> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Ok((filled, true)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((e, filled)),
        }
    }
    Ok((filled, false))
}

/// A small document being read; see [`Downloader::get`].
pub struct Body {
    url: String,
    reader: Box<dyn Read + Send>,
    announced: Option<u64>,
    received: u64,
    limit: u64,
    /// For naming the limit in a timeout error.
    options: DownloadOptions,
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("url", &self.url)
            .field("announced", &self.announced)
            .field("received", &self.received)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Body {
    /// The URL it comes from, as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The announced length (`Content-Length`), if any.
    pub fn content_length(&self) -> Option<u64> {
        self.announced
    }

    /// The whole body.
    pub fn read_to_vec(mut self) -> Result<Vec<u8>, DownloadError> {
        let mut out = Vec::new();
        match self.read_to_end(&mut out) {
            Ok(_) => Ok(out),
            Err(e) if wraps::<DownloadError>(&e) => Err(*e
                .into_inner()
                .expect("checked to hold an error")
                .downcast::<DownloadError>()
                .expect("checked to be a DownloadError")),
            Err(error) => Err(DownloadError::Io {
                url: self.url,
                error,
            }),
        }
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for one byte past the limit, so a longer body shows.
        let room = self.limit.saturating_sub(self.received).saturating_add(1);
        let max = usize::try_from(room).unwrap_or(usize::MAX).min(buf.len());
        let n = self.reader.read(&mut buf[..max]).map_err(|e| {
            io::Error::other(read_error(
                &self.url,
                e,
                self.announced,
                self.received,
                &self.options,
            ))
        })?;
        self.received += n as u64;
        if self.received > self.limit {
            return Err(io::Error::other(DownloadError::TooLarge {
                url: self.url.clone(),
                limit: self.limit,
            }));
        }
        if n == 0
            && !buf.is_empty()
            && let Some(announced) = self.announced
            && announced != self.received
        {
            return Err(io::Error::other(DownloadError::Length {
                url: self.url.clone(),
                announced,
                received: self.received,
            }));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_are_decoded() {
        let Ok(Source::File(p)) = classify("file:///srv/a%20b/x.tar?hash=1") else {
            panic!()
        };
        assert_eq!(p, Path::new("/srv/a b/x.tar"));
        let Ok(Source::File(p)) = classify("FILE://localhost/x") else {
            panic!()
        };
        assert_eq!(p, Path::new("/x"));
        for bad in [
            "file://host/x",
            "file:x",
            "file:///a%zz",
            "file:///a%00",
            "ftp://h/x",
            "h/x",
        ] {
            let err = classify(bad).err().unwrap().to_string();
            assert!(
                err.starts_with(&format!("`{bad}`: unsupported URL")),
                "{err}"
            );
        }
        assert!(matches!(classify("HTTPS://h/x"), Ok(Source::Http)));
    }

    #[test]
    fn downloaders_and_errors_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Downloader>();
        send_sync::<DownloadError>();
    }

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let downloader = Downloader::new(DownloadOptions {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..DownloadOptions::default()
        });
        let error = DownloadError::NoUrls;
        for (retry, base) in [(0, 100), (1, 200), (2, 400)] {
            let d = downloader.delay("http://h/x", retry, &error);
            let base = Duration::from_millis(base);
            assert!(d >= base && d <= base + base / 4, "{retry}: {d:?}");
        }
        assert_eq!(
            downloader.delay("http://h/x", 10, &error),
            Duration::from_secs(1)
        );
        let asked = DownloadError::Status {
            url: String::new(),
            status: 429,
            reason: String::new(),
            retry_after: Some(Duration::from_secs(100)),
        };
        assert_eq!(
            downloader.delay("http://h/x", 0, &asked),
            Duration::from_secs(1)
        );
    }
}
