//! Fetching git repositories with gix, through a bare cache repository per URL.
//!
//! [`fetch_git`] keeps one bare repository per URL under the cache directory
//! (`<cache>/<32 hex digits of blake3(URL)>.git`, with `<…>.lock` next to it) and fetches into it
//! incrementally, then writes the chosen commit's tree to the destination — plain files, no
//! `.git`, no index. Remote refs are mirrored under their own names (`refs/heads/…`,
//! `refs/tags/…`); the remote's HEAD goes to `refs/nexis/HEAD` and commits fetched by id to
//! `refs/nexis/revs/<id>`, so everything fetched stays reachable.
//!
//! What is fetched:
//! - `rev` already in the cache (and, with `reference`, reachable from the cached ref): nothing;
//!   no network at all.
//! - `reference`: that ref, found on the remote as given when it starts with `refs/` (or is
//!   `HEAD`), else as `refs/heads/<ref>` then `refs/tags/<ref>`; tags are peeled to their commit.
//!   With `rev` too, `rev` must be reachable from the ref's tip.
//! - neither: the remote's HEAD (its default branch).
//! - only `rev`: the commit by id (protocol v2 servers serve any object they have), else all
//!   branches and tags in full.
//!
//! `shallow` fetches depth 1 when the commit wanted is the tip being fetched, is not in the cache
//! yet, and the cache holds no full history (a full cache stays full: shallow boundaries would
//! cut it); when `rev` is older than the ref's tip, or when the depth-1 fetch fails, the history
//! is fetched in full. A shallow cache reports no `revcount`. Known gap: gix 0.90 sends the
//! `deepen-relative` capability to protocol v0/v1 servers, which then answer a depth-1 request
//! with the whole history (correct, only bigger); v2 servers (git 2.26+, the forges) are fine.
//!
//! The checkout writes regular files (mode 0644, or 0755 when executable in git) and symlinks
//! as symlinks; content is written as stored, without attributes, filters or line-ending
//! conversion. Tree entries named `.`, `..` or `.git` (any case), or containing `/`, are
//! refused. A gitlink (submodule entry) becomes an empty directory unless submodules are asked
//! for; then each is fetched at the gitlink's commit, recursively, from the URL `.gitmodules`
//! gives it (`./` and `../` URLs relative to the parent's URL, `user@host:path` as `ssh://`; a
//! `file://` or local-path submodule URL is refused in a repository that is not itself local).
//!
//! The tree is written into a temporary directory next to the destination and renamed into
//! place, so a failure (or a crash) never leaves a partial destination. Fetching and checking
//! out hold an exclusive lock on the cache repository's lock file; submodules are fetched after
//! it is released.
//!
//! Transports: gix's own for `git://`, `ssh://` (the `ssh` program) and `file://` (which runs
//! the `git-upload-pack` program of the local git installation, as git itself does), and gix's
//! smart-HTTP transport driven by ureq for `http://` and `https://` (see `ureq_http.rs`). The
//! cache repositories are opened isolated from the user's git configuration and environment.

mod ureq_http;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use gix::bstr::{BStr, BString, ByteSlice as _, ByteVec as _};
use gix::protocol::transport::client::blocking_io::Transport;
use gix::remote::Direction;
use gix::remote::fetch::{RefMap, Shallow, Tags};
use gix::{ObjectId, Repository};
use rayon::prelude::*;

use self::ureq_http::UreqHttp;

/// How deep submodules may nest (a repository can list itself as its own submodule).
const MAX_SUBMODULE_DEPTH: usize = 16;

/// How many existing refs a "ref not found" error lists.
const LISTED_REFS: usize = 10;

/// A git repository to fetch, and which commit of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GitSource<'a> {
    /// `https://`, `http://`, `ssh://`, `git://` or `file://` URL (without a `git+` prefix).
    pub url: &'a str,
    /// A branch or tag (`main`, `v1.0`, `refs/heads/main`), resolved on the remote.
    pub reference: Option<&'a str>,
    /// A commit id: 40 hexadecimal digits.
    pub rev: Option<&'a str>,
    /// Fetch only the wanted commit (depth 1) where possible.
    pub shallow: bool,
    /// Fetch and check out submodules too.
    pub submodules: bool,
}

/// How far a git fetch has come, for a progress bar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GitProgress {
    /// Objects received so far.
    pub objects: u64,
    /// Objects to receive, once the server has said.
    pub total_objects: Option<u64>,
    /// Bytes of pack received so far.
    pub bytes: u64,
}

/// Where [`fetch_git_with_progress`] reports.
pub type GitProgressFn<'a> = &'a (dyn Fn(GitProgress) + Sync);

/// How to fetch: depth 1 where possible, and where progress goes.
#[derive(Clone, Copy)]
struct FetchOpts<'a> {
    shallow: bool,
    progress: Option<GitProgressFn<'a>>,
}

/// What [`fetch_git`] checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitFetched {
    /// The commit checked out: 40 lower-case hexadecimal digits.
    pub rev: String,
    /// The full name of the ref resolved (`refs/heads/main`), if one was: the given reference,
    /// or the remote HEAD's target. `None` when only `rev` was given.
    pub reference: Option<String>,
    /// The commit's committer time, in seconds since the epoch.
    pub commit_time: i64,
    /// How many commits the checked-out commit's history has (itself included); `None` when the
    /// cache holds a shallow history.
    pub revcount: Option<u64>,
}

/// Why [`fetch_git`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitError {
    #[error("invalid git rev {rev:?}: expected a commit id of 40 hexadecimal digits")]
    InvalidRev { rev: String },
    #[error("invalid git ref name {reference:?}")]
    InvalidRef { reference: String },
    #[error("unsupported git URL {url}: expected https://, http://, ssh://, git:// or file://")]
    UnsupportedUrl { url: String },
    #[error("{url} does not exist")]
    NoSuchRepository { url: String },
    #[error("{url} is not a git repository")]
    NotARepository { url: String },
    #[error("cannot connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: gix::Error,
    },
    #[error("cannot fetch from {url}")]
    Fetch {
        url: String,
        #[source]
        source: gix::Error,
    },
    #[error("ref {reference} not found in {url}; it has {}", list_refs(.existing))]
    RefNotFound {
        url: String,
        reference: String,
        /// Up to ten of the remote's branches and tags, then `…and N more`.
        existing: Vec<String>,
    },
    #[error("{url} is empty: its HEAD points to the unborn branch {target}")]
    EmptyRepository { url: String, target: String },
    #[error("rev {rev} not found in {url}")]
    RevNotFound { url: String, rev: String },
    #[error("rev {rev} is not in ref {reference} of {url}")]
    RevNotInRef {
        url: String,
        rev: String,
        reference: String,
    },
    #[error("ref {reference} of {url} points to {id}, which is not a commit")]
    NotACommit {
        url: String,
        reference: String,
        id: String,
    },
    #[error("cannot use the git cache {path}")]
    Cache {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open the git cache repository {path}")]
    CacheRepository {
        path: PathBuf,
        #[source]
        source: gix::Error,
    },
    #[error("cannot read object {id} of {url} from the cache")]
    Object {
        url: String,
        id: String,
        #[source]
        source: gix::Error,
    },
    #[error("the destination {path} already exists")]
    DestinationExists { path: PathBuf },
    #[error("checkout of {url} failed at {path}")]
    Checkout {
        url: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing to check out {path:?} from {url}: unsafe name in the tree")]
    UnsafePath { url: String, path: String },
    #[error("cannot read .gitmodules of {url}")]
    Gitmodules {
        url: String,
        #[source]
        source: gix::Error,
    },
    #[error("submodule {path} of {url} has no URL in .gitmodules")]
    SubmoduleUrlMissing { url: String, path: String },
    #[error(
        "submodule {path} of {url}: refusing its local URL {submodule_url} in a remote repository"
    )]
    SubmoduleUrlRefused {
        url: String,
        path: String,
        submodule_url: String,
    },
    #[error("submodules of {url} nest more than {MAX_SUBMODULE_DEPTH} deep")]
    SubmodulesTooDeep { url: String },
    #[error("submodule {path} of {url}")]
    Submodule {
        url: String,
        path: String,
        #[source]
        source: Box<GitError>,
    },
}

/// The commit `HEAD` names in the git repository that holds `dir` (found upwards), for
/// recording which revision of a configuration a system was built from. None outside a
/// repository or before the first commit. Uncommitted changes are not detected.
pub fn head_revision(dir: &Path) -> Option<String> {
    let repo = gix::discover(dir).ok()?;
    let head = repo.head_id().ok()?;
    Some(head.to_string())
}

/// Fetch `source` into its cache repository under `cache` and check its commit out to `dest`,
/// which must not exist (its parent is created if needed).
///
/// # Example
///
/// ```no_run
/// use nexis_fetch::{GitSource, fetch_git};
/// # fn main() -> Result<(), nexis_fetch::GitError> {
/// let source = GitSource {
///     url: "https://example.org/repo.git",
///     reference: Some("main"),
///     rev: None,
///     shallow: true,
///     submodules: false,
/// };
/// let fetched = fetch_git(&source, "/var/cache/nexis/git".as_ref(), "/tmp/repo".as_ref())?;
/// println!("{} at {}", fetched.rev, fetched.commit_time);
/// # Ok(())
/// # }
/// ```
pub fn fetch_git(
    source: &GitSource<'_>,
    cache: &Path,
    dest: &Path,
) -> Result<GitFetched, GitError> {
    fetch_at_depth(source, None, cache, dest, 0)
}

/// [`fetch_git`], reporting the objects and bytes received to `progress` (when they
/// changed, every 25 ms) while a pack comes in.
pub fn fetch_git_with_progress(
    source: &GitSource<'_>,
    progress: GitProgressFn<'_>,
    cache: &Path,
    dest: &Path,
) -> Result<GitFetched, GitError> {
    fetch_at_depth(source, Some(progress), cache, dest, 0)
}

fn fetch_at_depth(
    source: &GitSource<'_>,
    progress: Option<GitProgressFn<'_>>,
    cache: &Path,
    dest: &Path,
    depth: usize,
) -> Result<GitFetched, GitError> {
    let url = source.url;
    let rev = source.rev.map(parse_rev).transpose()?;
    let candidates = source.reference.map(ref_candidates).transpose()?;
    check_url(url)?;
    if fs::symlink_metadata(dest).is_ok() {
        return Err(GitError::DestinationExists {
            path: dest.to_owned(),
        });
    }
    let parent = match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).map_err(|source| checkout_error(url, parent, source))?;
    let staging = tempfile::Builder::new()
        .prefix(".nexis-git-")
        .tempdir_in(parent)
        .map_err(|source| checkout_error(url, parent, source))?;

    let (fetched, checkout) = {
        let cached = CacheRepo::open(cache, url)?;
        let repo = &cached.repo;
        let (commit, reference) = resolve(
            repo,
            url,
            rev,
            candidates.as_deref(),
            FetchOpts {
                shallow: source.shallow,
                progress,
            },
        )?;
        let commit_obj = repo
            .find_commit(commit)
            .map_err(|e| object_error(url, commit, e))?;
        let tree = commit_obj
            .tree_id()
            .map_err(|e| object_error(url, commit, e))?;
        let commit_time = commit_obj
            .time()
            .map_err(|e| object_error(url, commit, e))?
            .seconds;
        let revcount = revcount(repo, commit).map_err(|e| object_error(url, commit, e))?;
        let checkout = checkout(repo, url, tree.detach(), staging.path())?;
        let fetched = GitFetched {
            rev: commit.to_string(),
            reference,
            commit_time,
            revcount,
        };
        (fetched, checkout)
        // The cache lock is released here: submodules may live in the same cache repository.
    };

    if source.submodules && !checkout.gitlinks.is_empty() {
        if depth >= MAX_SUBMODULE_DEPTH {
            return Err(GitError::SubmodulesTooDeep {
                url: url.to_owned(),
            });
        }
        fetch_submodules(source, &checkout, cache, depth)?;
    }

    let root = staging.path();
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))
        .map_err(|source| checkout_error(url, root, source))?;
    let root = staging.keep();
    if let Err(source) = fs::rename(&root, dest) {
        // Best effort: the error to report is the rename's.
        let _ = fs::remove_dir_all(&root);
        return Err(checkout_error(url, dest, source));
    }
    Ok(fetched)
}

/// The bare cache repository of one URL, locked while this lives.
struct CacheRepo {
    repo: Repository,
    /// Holds the exclusive lock; closing the file releases it.
    _lock: File,
}

impl CacheRepo {
    fn open(cache: &Path, url: &str) -> Result<Self, GitError> {
        let cache_error = |path: &Path, source| GitError::Cache {
            path: path.to_owned(),
            source,
        };
        fs::create_dir_all(cache).map_err(|e| cache_error(cache, e))?;
        let name = blake3::hash(url.as_bytes()).to_hex();
        let name = &name[..32];
        let lock_path = cache.join(format!("{name}.lock"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| cache_error(&lock_path, e))?;
        lock.lock().map_err(|e| cache_error(&lock_path, e))?;

        let path = cache.join(format!("{name}.git"));
        if !path.exists() {
            // Initialise beside it and rename, so a crash never leaves half a repository.
            let staging = tempfile::Builder::new()
                .prefix(&format!(".{name}-"))
                .tempdir_in(cache)
                .map_err(|e| cache_error(cache, e))?;
            gix::ThreadSafeRepository::init_opts(
                staging.path(),
                gix::create::Kind::Bare,
                gix::create::Options::default(),
                gix::open::Options::isolated(),
            )
            .map_err(|source| GitError::CacheRepository {
                path: path.clone(),
                source,
            })?;
            // A note for whoever looks inside the cache.
            fs::write(staging.path().join("description"), format!("{url}\n"))
                .map_err(|e| cache_error(staging.path(), e))?;
            fs::rename(staging.keep(), &path).map_err(|e| cache_error(&path, e))?;
        }
        let repo = gix::open_opts(&path, gix::open::Options::isolated()).map_err(|source| {
            GitError::CacheRepository {
                path: path.clone(),
                source,
            }
        })?;
        Ok(Self { repo, _lock: lock })
    }
}

/// Find the commit to check out, fetching what is missing; returns it and the ref resolved.
fn resolve(
    repo: &Repository,
    url: &str,
    rev: Option<ObjectId>,
    candidates: Option<&[String]>,
    opts: FetchOpts<'_>,
) -> Result<(ObjectId, Option<String>), GitError> {
    // Offline first: a pinned commit already in the cache needs no network.
    if let Some(rev) = rev
        && is_commit(repo, rev)
    {
        match candidates {
            None => return Ok((rev, None)),
            Some(candidates) => {
                for name in candidates {
                    let local = local_ref_name(name);
                    let tip = repo
                        .try_find_reference(local.as_str())
                        .ok()
                        .flatten()
                        .and_then(|mut r| r.peel_to_id().ok())
                        .map(gix::Id::detach);
                    if let Some(tip) = tip
                        && is_ancestor(repo, rev, tip).unwrap_or(false)
                    {
                        return Ok((rev, Some(name.clone())));
                    }
                }
            }
        }
    }

    match (rev, candidates) {
        (_, Some(candidates)) => {
            let (tip, name) = fetch_ref(repo, url, candidates, rev, opts)?;
            if let Some(rev) = rev
                && !is_ancestor(repo, rev, tip).map_err(|e| object_error(url, tip, e))?
            {
                return Err(GitError::RevNotInRef {
                    url: url.to_owned(),
                    rev: rev.to_string(),
                    reference: name,
                });
            }
            Ok((rev.unwrap_or(tip), Some(name)))
        }
        (None, None) => {
            let (tip, name) = fetch_ref(repo, url, &["HEAD".to_owned()], None, opts)?;
            Ok((tip, Some(name)))
        }
        (Some(rev), None) => {
            fetch_rev(repo, url, rev, opts)?;
            Ok((rev, None))
        }
    }
}

/// Fetch the first of `candidates` (full ref names, or `HEAD`) the remote has; return its
/// commit and its full name (for `HEAD`, the branch it points to).
fn fetch_ref(
    repo: &Repository,
    url: &str,
    candidates: &[String],
    rev: Option<ObjectId>,
    opts: FetchOpts<'_>,
) -> Result<(ObjectId, String), GitError> {
    let specs: Vec<String> = candidates
        .iter()
        .map(|name| format!("+{name}:{}", local_ref_name(name)))
        .collect();
    let picked = fetch_specs(repo, url, &specs, opts, |ref_map| {
        pick_ref(ref_map, url, candidates, rev)
    })?;
    let Some(Tip { id: tip, name }) = picked else {
        return Err(GitError::RefNotFound {
            url: url.to_owned(),
            reference: candidates.join(" or "),
            existing: remote_refs(repo, url)?,
        });
    };
    if !is_commit(repo, tip) {
        return Err(GitError::NotACommit {
            url: url.to_owned(),
            reference: name,
            id: tip.to_string(),
        });
    }
    Ok((tip, name))
}

/// A remote ref chosen: its peeled commit and its full name.
struct Tip {
    id: ObjectId,
    name: String,
}

/// The ref map's entry for the first candidate found, or `None` if the remote has none.
fn pick_ref(
    ref_map: &RefMap,
    url: &str,
    candidates: &[String],
    rev: Option<ObjectId>,
) -> Result<Option<Wanted<Tip>>, GitError> {
    for name in candidates {
        let Some(mapping) = ref_map
            .mappings
            .iter()
            .find(|m| m.remote.as_name() == Some(name.as_bytes().as_bstr()))
        else {
            continue;
        };
        let Some(tip) = mapping.remote.peeled_id() else {
            let target = mapping.remote.as_target().unwrap_or_default().to_string();
            return Err(GitError::EmptyRepository {
                url: url.to_owned(),
                target,
            });
        };
        let tip = tip.to_owned();
        let resolved = match mapping.remote.as_target() {
            Some(target) if name == "HEAD" => target.to_string(),
            _ => name.clone(),
        };
        return Ok(Some(Wanted {
            value: Tip {
                id: tip,
                name: resolved,
            },
            tip_is_enough: rev.is_none_or(|rev| rev == tip),
            tip: Some(tip),
        }));
    }
    Ok(None)
}

/// Fetch the commit `rev` by id; if the server will not serve it, fetch all branches and tags.
fn fetch_rev(
    repo: &Repository,
    url: &str,
    rev: ObjectId,
    opts: FetchOpts<'_>,
) -> Result<(), GitError> {
    let spec = format!("+{rev}:refs/nexis/revs/{rev}");
    let wanted = |_: &RefMap| {
        Ok(Some(Wanted {
            value: (),
            tip_is_enough: true,
            tip: Some(rev),
        }))
    };
    match fetch_specs(repo, url, &[spec], opts, wanted) {
        Ok(_) | Err(GitError::Fetch { .. }) if is_commit(repo, rev) => return Ok(()),
        Ok(_) | Err(GitError::Fetch { .. }) => {}
        Err(other) => return Err(other),
    }
    let specs = [
        "+refs/heads/*:refs/heads/*".to_owned(),
        "+refs/tags/*:refs/tags/*".to_owned(),
    ];
    let everything = |_: &RefMap| {
        Ok(Some(Wanted {
            value: (),
            tip_is_enough: false,
            tip: None,
        }))
    };
    fetch_specs(
        repo,
        url,
        &specs,
        FetchOpts {
            shallow: false,
            ..opts
        },
        everything,
    )?;
    if is_commit(repo, rev) {
        Ok(())
    } else {
        Err(GitError::RevNotFound {
            url: url.to_owned(),
            rev: rev.to_string(),
        })
    }
}

/// What a fetch's `pick` found among the remote's refs.
struct Wanted<T> {
    value: T,
    /// Fetching only the tip (depth 1) is enough: no older commit is wanted.
    tip_is_enough: bool,
    /// The commit wanted, when known before fetching.
    tip: Option<ObjectId>,
}

/// Connect, list the refs `specs` name, let `pick` choose from them (and say whether depth 1 is
/// enough), then receive the pack. A failed depth-1 fetch is retried in full. `None` (nothing
/// received) when `pick` found nothing to fetch.
fn fetch_specs<T>(
    repo: &Repository,
    url: &str,
    specs: &[String],
    opts: FetchOpts<'_>,
    mut pick: impl FnMut(&RefMap) -> Result<Option<Wanted<T>>, GitError>,
) -> Result<Option<T>, GitError> {
    let connect_error = |source| GitError::Connect {
        url: url.to_owned(),
        source,
    };
    let mut allow_shallow = opts.shallow;
    loop {
        let remote = remote_with(repo, url, specs)?;
        let prepare = connect(&remote, url)?
            .prepare_fetch(
                gix::progress::Discard,
                gix::remote::ref_map::Options::default(),
            )
            .map_err(connect_error)?;
        let Some(wanted) = pick(prepare.ref_map())? else {
            return Ok(None);
        };
        let tip_present = wanted.tip.is_some_and(|tip| is_commit(repo, tip));
        let (mode, depth_one) =
            shallow_mode(repo, allow_shallow && wanted.tip_is_enough, tip_present).map_err(
                |source| GitError::CacheRepository {
                    path: repo.path().to_owned(),
                    source,
                },
            )?;
        let interrupt = AtomicBool::new(false);
        let received = match opts.progress {
            None => prepare
                .with_shallow(mode)
                .receive(gix::progress::Discard, &interrupt),
            Some(report) => {
                let root = gix::progress::tree::Root::new();
                let done = AtomicBool::new(false);
                std::thread::scope(|scope| {
                    scope.spawn(|| watch_progress(&root, &done, report));
                    let received = prepare
                        .with_shallow(mode)
                        .receive(root.add_child("fetch"), &interrupt);
                    done.store(true, Ordering::Relaxed);
                    received
                })
            }
        };
        match received {
            Ok(_) => return Ok(Some(wanted.value)),
            // Servers may refuse shallow requests (dumb or old servers, some proxies).
            Err(_) if depth_one => allow_shallow = false,
            Err(source) => {
                return Err(GitError::Fetch {
                    url: url.to_owned(),
                    source,
                });
            }
        }
    }
}

/// Report the counters of gix's progress tree `root` to `report` until `done`.
fn watch_progress(root: &gix::progress::tree::Root, done: &AtomicBool, report: GitProgressFn<'_>) {
    let mut tasks = Vec::new();
    let mut last = GitProgress::default();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(25));
        root.sorted_snapshot(&mut tasks);
        // A finished task leaves the tree: its last counts stay.
        let mut now = last;
        for (_, task) in &tasks {
            let Some(value) = &task.progress else {
                continue;
            };
            let step = value.step.load(Ordering::Relaxed) as u64;
            // The names gix 0.90 gives its pack-receiving tasks.
            match task.name.as_str() {
                "read pack" => now.bytes = step,
                "indexing" => {
                    now.objects = step;
                    now.total_objects = value.done_at.map(|n| n as u64);
                }
                _ => {}
            }
        }
        if now != last {
            report(now);
            last = now;
        }
    }
}

/// An anonymous remote for `url` fetching `specs`, without automatic tags.
fn remote_with<'r>(
    repo: &'r Repository,
    url: &str,
    specs: &[String],
) -> Result<gix::Remote<'r>, GitError> {
    repo.remote_at(url)
        .and_then(|remote| {
            remote
                .with_fetch_tags(Tags::None)
                .with_refspecs(specs.iter().map(String::as_str), Direction::Fetch)
        })
        .map_err(|source| GitError::Connect {
            url: url.to_owned(),
            source,
        })
}

/// Connect to `remote`: gix's transports, or its HTTP transport over ureq for http(s).
fn connect<'a, 'r>(
    remote: &'a gix::Remote<'r>,
    url: &str,
) -> Result<gix::remote::Connection<'a, 'static, 'r, Box<dyn Transport + Send>>, GitError> {
    check_local_repository(url)?;
    let connect_error = |source| GitError::Connect {
        url: url.to_owned(),
        source,
    };
    if is_http(url) {
        let (gix_url, version) = remote
            .sanitized_url_and_version(Direction::Fetch)
            .map_err(connect_error)?;
        let transport = gix::protocol::transport::client::blocking_io::http::connect_http(
            UreqHttp::new(),
            gix_url,
            version,
            false,
        );
        Ok(remote.to_connection_with_transport(Box::new(transport) as Box<dyn Transport + Send>))
    } else {
        remote.connect(Direction::Fetch).map_err(connect_error)
    }
}

/// How to treat the shallow boundary; `true` when that is a depth-1 fetch. A commit already in
/// the cache needs no deepening: its ref is updated without (or with an empty) pack.
fn shallow_mode(
    repo: &Repository,
    want_shallow: bool,
    tip_present: bool,
) -> gix::Result<(Shallow, bool)> {
    let is_shallow = repo.is_shallow()?;
    let is_fresh = repo.references()?.all()?.next().is_none();
    Ok(if want_shallow && tip_present {
        (Shallow::NoChange, false)
    } else if want_shallow && (is_shallow || is_fresh) {
        (
            Shallow::DepthAtRemote(1.try_into().expect("1 is not zero")),
            true,
        )
    } else if !want_shallow && is_shallow {
        (Shallow::undo(), false)
    } else {
        (Shallow::NoChange, false)
    })
}

/// Up to [`LISTED_REFS`] of the remote's branches and tags, for a "ref not found" error.
fn remote_refs(repo: &Repository, url: &str) -> Result<Vec<String>, GitError> {
    let connect_error = |source| GitError::Connect {
        url: url.to_owned(),
        source,
    };
    let specs = [
        "refs/heads/*:refs/heads/*".to_owned(),
        "refs/tags/*:refs/tags/*".to_owned(),
    ];
    let remote = remote_with(repo, url, &specs)?;
    let (ref_map, _handshake) = connect(&remote, url)?
        .ref_map(
            gix::progress::Discard,
            gix::remote::ref_map::Options::default(),
        )
        .map_err(connect_error)?;
    let mut names: Vec<String> = ref_map
        .remote_refs
        .iter()
        .map(|r| r.unpack().0.to_string())
        .filter(|name| name.starts_with("refs/heads/") || name.starts_with("refs/tags/"))
        .collect();
    // Branches before tags, each sorted.
    names.sort_by(|a, b| (a.starts_with("refs/tags/"), a).cmp(&(b.starts_with("refs/tags/"), b)));
    if names.len() > LISTED_REFS {
        let more = names.len() - LISTED_REFS;
        names.truncate(LISTED_REFS);
        names.push(format!("…and {more} more"));
    }
    Ok(names)
}

fn list_refs(existing: &[String]) -> String {
    if existing.is_empty() {
        "no branches or tags".to_owned()
    } else {
        existing.join(", ")
    }
}

/// The local name a remote ref is mirrored to.
fn local_ref_name(name: &str) -> String {
    if name == "HEAD" {
        "refs/nexis/HEAD".to_owned()
    } else {
        name.to_owned()
    }
}

/// The full names a user's ref may stand for, in the order they are tried.
fn ref_candidates(reference: &str) -> Result<Vec<String>, GitError> {
    let invalid = || GitError::InvalidRef {
        reference: reference.to_owned(),
    };
    if reference == "HEAD" {
        return Ok(vec!["HEAD".to_owned()]);
    }
    let names = if reference.starts_with("refs/") {
        vec![reference.to_owned()]
    } else {
        vec![
            format!("refs/heads/{reference}"),
            format!("refs/tags/{reference}"),
        ]
    };
    for name in &names {
        gix::refs::FullName::try_from(name.as_str()).map_err(|_| invalid())?;
        // Refspec syntax that a valid ref name could still carry.
        if name.contains([':', '*']) {
            return Err(invalid());
        }
    }
    Ok(names)
}

fn parse_rev(rev: &str) -> Result<ObjectId, GitError> {
    if rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()) {
        ObjectId::from_hex(rev.to_ascii_lowercase().as_bytes()).map_err(|_| GitError::InvalidRev {
            rev: rev.to_owned(),
        })
    } else {
        Err(GitError::InvalidRev {
            rev: rev.to_owned(),
        })
    }
}

fn is_http(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// Refuse unsupported schemes up front.
fn check_url(url: &str) -> Result<(), GitError> {
    let supported = ["https://", "http://", "ssh://", "git://", "file://"];
    if supported.iter().any(|scheme| url.starts_with(scheme)) {
        Ok(())
    } else {
        Err(GitError::UnsupportedUrl {
            url: url.to_owned(),
        })
    }
}

/// Give `file://` URLs precise errors before connecting (gix's would be generic).
fn check_local_repository(url: &str) -> Result<(), GitError> {
    if let Some(path) = url.strip_prefix("file://") {
        let path = Path::new(path);
        if !path.exists() {
            return Err(GitError::NoSuchRepository {
                url: url.to_owned(),
            });
        }
        let is_repo = gix::discover::is_git(path).is_ok()
            || gix::discover::is_git(&path.join(".git")).is_ok();
        if !is_repo {
            return Err(GitError::NotARepository {
                url: url.to_owned(),
            });
        }
    }
    Ok(())
}

fn is_commit(repo: &Repository, id: ObjectId) -> bool {
    matches!(
        repo.try_find_header(id),
        Ok(Some(header)) if header.kind() == gix::object::Kind::Commit
    )
}

/// Whether `ancestor` is `tip` or in its (locally available) history.
fn is_ancestor(repo: &Repository, ancestor: ObjectId, tip: ObjectId) -> gix::Result<bool> {
    if ancestor == tip {
        return Ok(true);
    }
    for info in repo.rev_walk([tip]).all()? {
        if info?.id == ancestor {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The number of commits in `commit`'s history, or `None` if the cache is shallow.
fn revcount(repo: &Repository, commit: ObjectId) -> gix::Result<Option<u64>> {
    if repo.is_shallow()? {
        return Ok(None);
    }
    let mut count = 0;
    for info in repo.rev_walk([commit]).all()? {
        info?;
        count += 1;
    }
    Ok(Some(count))
}

/// What [`checkout`] leaves for the submodule pass.
struct Checkout {
    /// The URL the tree came from.
    url: String,
    /// Gitlinks: path in the tree (`/`-separated), directory written, commit.
    gitlinks: Vec<(BString, PathBuf, ObjectId)>,
    /// The top-level `.gitmodules` blob, if any.
    gitmodules: Option<ObjectId>,
    /// The cache repository's path, to read `.gitmodules` after the lock is released.
    repo_path: PathBuf,
}

/// Write the tree `tree` under `root` (an existing, empty directory).
fn checkout(
    repo: &Repository,
    url: &str,
    tree: ObjectId,
    root: &Path,
) -> Result<Checkout, GitError> {
    let mut files: Vec<(PathBuf, ObjectId, bool)> = Vec::new();
    let mut links: Vec<(PathBuf, ObjectId)> = Vec::new();
    let mut gitlinks = Vec::new();
    let mut gitmodules = None;

    // Directories are created during the walk, before any symlink exists, so no write below
    // can go through a symlink; files are created with O_EXCL, which also refuses symlinks.
    let mut stack: Vec<(ObjectId, PathBuf, BString)> =
        vec![(tree, root.to_owned(), BString::default())];
    while let Some((tree_id, dir, rel)) = stack.pop() {
        let tree = repo
            .find_tree(tree_id)
            .map_err(|e| object_error(url, tree_id, e))?;
        let decoded = tree
            .decode()
            .map_err(|e| object_error(url, tree_id, gix::Error::from_error(e)))?;
        for entry in &decoded.entries {
            let mut entry_rel = rel.clone();
            if !entry_rel.is_empty() {
                entry_rel.push_byte(b'/');
            }
            entry_rel.push_str(entry.filename);
            if !is_safe_name(entry.filename) {
                return Err(GitError::UnsafePath {
                    url: url.to_owned(),
                    path: entry_rel.to_string(),
                });
            }
            let path = dir.join(OsStr::from_bytes(entry.filename));
            let id = entry.oid.to_owned();
            match entry.mode.kind() {
                gix::object::tree::EntryKind::Tree => {
                    fs::create_dir(&path).map_err(|e| checkout_error(url, &path, e))?;
                    stack.push((id, path, entry_rel));
                }
                gix::object::tree::EntryKind::Blob => {
                    if rel.is_empty() && entry.filename == ".gitmodules" {
                        gitmodules = Some(id);
                    }
                    files.push((path, id, false));
                }
                gix::object::tree::EntryKind::BlobExecutable => files.push((path, id, true)),
                gix::object::tree::EntryKind::Link => links.push((path, id)),
                gix::object::tree::EntryKind::Commit => {
                    fs::create_dir(&path).map_err(|e| checkout_error(url, &path, e))?;
                    gitlinks.push((entry_rel, path, id));
                }
            }
        }
    }

    let shared = repo.clone().into_sync();
    files.par_iter().try_for_each_init(
        || shared.to_thread_local(),
        |repo, (path, id, executable)| {
            let blob = repo.find_blob(*id).map_err(|e| object_error(url, *id, e))?;
            let mut file = File::options()
                .write(true)
                .create_new(true)
                .mode(if *executable { 0o755 } else { 0o644 })
                .open(path)
                .map_err(|e| checkout_error(url, path, e))?;
            file.write_all(&blob.data)
                .map_err(|e| checkout_error(url, path, e))
        },
    )?;
    for (path, id) in &links {
        let blob = repo.find_blob(*id).map_err(|e| object_error(url, *id, e))?;
        std::os::unix::fs::symlink(OsStr::from_bytes(&blob.data), path)
            .map_err(|e| checkout_error(url, path, e))?;
    }
    Ok(Checkout {
        url: url.to_owned(),
        gitlinks,
        gitmodules,
        repo_path: repo.path().to_owned(),
    })
}

/// A tree entry name that is safe to create: not `.`, `..` or `.git` (any case), no `/`, no NUL.
fn is_safe_name(name: &BStr) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.eq_ignore_ascii_case(b".git")
        && !name.contains(&b'/')
        && !name.contains(&0)
}

/// Fetch each gitlink of `checkout` at its commit into the directory it left for it.
fn fetch_submodules(
    parent: &GitSource<'_>,
    checkout: &Checkout,
    cache: &Path,
    depth: usize,
) -> Result<(), GitError> {
    let url = checkout.url.as_str();
    let gitmodules_error = |source| GitError::Gitmodules {
        url: url.to_owned(),
        source,
    };
    let modules = match checkout.gitmodules {
        Some(id) => {
            // Opened without the lock: objects in a cache repository are never removed.
            let repo = gix::open_opts(&checkout.repo_path, gix::open::Options::isolated())
                .map_err(|source| GitError::CacheRepository {
                    path: checkout.repo_path.clone(),
                    source,
                })?;
            let blob = repo.find_blob(id).map_err(|e| object_error(url, id, e))?;
            gix::submodule::File::from_bytes(&blob.data, None, &gix::config::File::default())
                .map_err(gitmodules_error)?
        }
        None => gix::submodule::File::from_bytes(b"", None, &gix::config::File::default())
            .map_err(gitmodules_error)?,
    };
    for (rel, dir, commit) in &checkout.gitlinks {
        let path = rel.to_string();
        let submodule_url = modules
            .name_by_path(rel.as_bstr())
            .and_then(|name| modules.config().string_by("submodule", Some(name), "url"))
            .filter(|u| !u.is_empty())
            .ok_or_else(|| GitError::SubmoduleUrlMissing {
                url: url.to_owned(),
                path: path.clone(),
            })?;
        let submodule_url = resolve_submodule_url(url, &submodule_url.to_str_lossy());
        let is_local =
            |u: &str| u.starts_with("file://") || u.starts_with('/') || u.starts_with('.');
        if is_local(&submodule_url) && !url.starts_with("file://") {
            return Err(GitError::SubmoduleUrlRefused {
                url: url.to_owned(),
                path,
                submodule_url,
            });
        }
        let submodule_url = if submodule_url.starts_with('/') {
            format!("file://{submodule_url}")
        } else {
            scp_to_ssh(&submodule_url).unwrap_or(submodule_url)
        };
        let rev = commit.to_string();
        let source = GitSource {
            url: &submodule_url,
            reference: None,
            rev: Some(&rev),
            shallow: parent.shallow,
            submodules: true,
        };
        let wrap = |source| GitError::Submodule {
            url: url.to_owned(),
            path: path.clone(),
            source: Box::new(source),
        };
        fs::remove_dir(dir).map_err(|e| wrap(checkout_error(url, dir, e)))?;
        fetch_at_depth(&source, None, cache, dir, depth + 1).map_err(wrap)?;
    }
    Ok(())
}

/// Resolve a `.gitmodules` URL: `./x` and `../x` are relative to the parent's URL, as git does
/// (`../x` from `https://host/org/repo.git` is `https://host/org/x`).
fn resolve_submodule_url(parent: &str, url: &str) -> String {
    if !(url.starts_with("./") || url.starts_with("../")) {
        return url.to_owned();
    }
    let mut base = parent.trim_end_matches('/').to_owned();
    // The path starts after `scheme://authority`; `..` never climbs above it.
    let path_start = base.find("://").map_or(0, |i| {
        base[i + 3..].find('/').map_or(base.len(), |j| i + 3 + j)
    });
    let mut rest = url;
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("../") {
            let cut = base[path_start..]
                .rfind('/')
                .map_or(path_start, |i| path_start + i);
            base.truncate(cut);
            rest = r;
        } else {
            break;
        }
    }
    format!("{base}/{rest}")
}

/// `user@host:path` (git's scp-like syntax, common in `.gitmodules`) as an `ssh://` URL;
/// `None` for anything else.
fn scp_to_ssh(url: &str) -> Option<String> {
    if url.contains("://") {
        return None;
    }
    let (host, path) = url.split_once(':')?;
    if host.is_empty() || host.contains('/') || path.is_empty() {
        return None;
    }
    let path = path.strip_prefix('/').unwrap_or(path);
    Some(format!("ssh://{host}/{path}"))
}

fn object_error(url: &str, id: ObjectId, source: gix::Error) -> GitError {
    GitError::Object {
        url: url.to_owned(),
        id: id.to_string(),
        source,
    }
}

fn checkout_error(url: &str, path: &Path, source: io::Error) -> GitError {
    GitError::Checkout {
        url: url.to_owned(),
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_submodule_urls_resolve_against_the_parent() {
        let cases = [
            (
                "https://h/org/repo.git",
                "../sub.git",
                "https://h/org/sub.git",
            ),
            ("https://h/org/repo.git/", "../sub", "https://h/org/sub"),
            ("https://h/org/repo", "./sub", "https://h/org/repo/sub"),
            ("https://h/repo", "../../x", "https://h/x"),
            ("file:///tmp/a/main", "../sub", "file:///tmp/a/sub"),
            ("git://127.0.0.1:9/main", "../sub", "git://127.0.0.1:9/sub"),
            ("https://h/org/repo", "https://other/x", "https://other/x"),
        ];
        for (parent, url, expected) in cases {
            assert_eq!(
                resolve_submodule_url(parent, url),
                expected,
                "{parent} + {url}"
            );
        }
    }

    #[test]
    fn scp_like_urls_become_ssh_urls() {
        assert_eq!(
            scp_to_ssh("git@github.com:org/repo.git").as_deref(),
            Some("ssh://git@github.com/org/repo.git")
        );
        assert_eq!(
            scp_to_ssh("host:/srv/repo").as_deref(),
            Some("ssh://host/srv/repo")
        );
        for other in ["https://h/x", "relative/path", "/abs:path", "c:", ":x"] {
            assert_eq!(scp_to_ssh(other), None, "{other}");
        }
    }

    #[test]
    fn ref_names_expand_to_branch_then_tag() {
        assert_eq!(
            ref_candidates("main").unwrap(),
            ["refs/heads/main", "refs/tags/main"]
        );
        assert_eq!(ref_candidates("refs/tags/v1").unwrap(), ["refs/tags/v1"]);
        assert_eq!(ref_candidates("HEAD").unwrap(), ["HEAD"]);
        for bad in ["a b", "x:y", "a..b", "*", ""] {
            assert!(
                matches!(ref_candidates(bad), Err(GitError::InvalidRef { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn revs_are_40_hex_digits() {
        let rev = "0123456789ABCDEF0123456789abcdef01234567";
        assert_eq!(
            parse_rev(rev).unwrap().to_string(),
            rev.to_ascii_lowercase()
        );
        for bad in [
            "",
            "abc",
            &rev[..39],
            "g123456789abcdef0123456789abcdef01234567",
        ] {
            assert!(
                matches!(parse_rev(bad), Err(GitError::InvalidRev { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn unsafe_tree_names_are_refused() {
        for bad in ["", ".", "..", ".git", ".GIT", ".Git", "a/b", "a\0b"] {
            assert!(!is_safe_name(bad.as_bytes().as_bstr()), "{bad:?}");
        }
        for good in [".gitignore", ".git2", "a", "...", "git"] {
            assert!(is_safe_name(good.as_bytes().as_bstr()), "{good:?}");
        }
    }
}
