//! Substituting from binary caches over HTTP: a cache written by `Store::copy_to_cache`,
//! served by the loopback server of `common::server` and by nginx when it is installed;
//! caches that are down, slow, untrusted or damaged.

mod common {
    pub(crate) mod server;
}

use nexis_store::error_chain as chain;
use std::cell::RefCell;
use std::fs;
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{Server, respond, static_files};
use nexis_fetch::{DownloadOptions, SubstituteError, Substituter};
use nexis_store::{
    CacheError, CacheInfo, Compression, ReceiveError, SecretKey, Store, StorePath,
    SubstituteReport, Trust,
};

/// A store with `lib`, and `app` referring to it, copied to a binary cache signed by
/// `key`.
struct Fixture {
    _src_root: tempfile::TempDir,
    source: Store,
    lib: StorePath,
    app: StorePath,
    _cache: tempfile::TempDir,
    dir: PathBuf,
    key: SecretKey,
}

impl Fixture {
    fn new() -> Fixture {
        let src_root = tempfile::tempdir().unwrap();
        let source = Store::open(src_root.path()).unwrap();
        let src = tempfile::tempdir().unwrap();
        let lib_dir = src.path().join("lib");
        fs::create_dir_all(&lib_dir).unwrap();
        fs::write(lib_dir.join("lib.so"), common::server::pattern(300_000)).unwrap();
        let lib = source.add_path(&lib_dir, None).unwrap().path;
        let app_dir = src.path().join("app");
        fs::create_dir_all(app_dir.join("bin")).unwrap();
        fs::write(
            app_dir.join("bin/app"),
            format!("#!/bin/sh\nexec {lib}/lib.so\n"),
        )
        .unwrap();
        fs::set_permissions(app_dir.join("bin/app"), fs::Permissions::from_mode(0o755)).unwrap();
        let app = source
            .add_path_with_references(&app_dir, None, std::slice::from_ref(&lib))
            .unwrap()
            .path;
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join("cache");
        let key = SecretKey::generate("cache-1").unwrap();
        source
            .copy_to_cache(
                std::slice::from_ref(&app),
                &dir,
                Some(&key),
                Compression::Zstd,
            )
            .unwrap();
        Fixture {
            _src_root: src_root,
            source,
            lib,
            app,
            _cache: cache,
            dir,
            key,
        }
    }

    fn trust(&self) -> Trust {
        Trust::new(vec![self.key.public()])
    }

    fn info_file(&self, p: &StorePath) -> PathBuf {
        self.dir.join(format!("{}.info", p.hash_part()))
    }

    /// The archive file's URL, relative to the cache.
    fn archive_url(&self, p: &StorePath) -> String {
        let file = self.info_file(p);
        let info = CacheInfo::parse(&fs::read(&file).unwrap(), "t").unwrap();
        info.file.unwrap().url
    }
}

/// Quick retries and short timeouts, for tests.
fn options() -> DownloadOptions {
    DownloadOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_millis(500),
        backoff: Duration::from_millis(5),
        ..Substituter::default_options()
    }
}

/// Warnings, collected.
#[derive(Default)]
struct Warnings(RefCell<Vec<String>>);

impl Warnings {
    fn push(&self, w: &str) {
        self.0.borrow_mut().push(w.to_owned());
    }

    fn take(&self) -> Vec<String> {
        self.0.take()
    }
}

/// An empty store, and where its root is.
fn empty_store() -> (tempfile::TempDir, Store) {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    (root, store)
}

/// Nothing is valid and nothing is left in `.tmp/`.
fn assert_untouched(store: &Store) {
    assert_eq!(store.with_db(|db| db.all_valid()).unwrap(), []);
    assert_eq!(
        fs::read_dir(store.store_dir().join(".tmp"))
            .unwrap()
            .count(),
        0
    );
}

/// A URL on 127.0.0.1 where nothing listens.
fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// Substitute `app` (and so `lib`) from `urls` into an empty store, check that both are
/// valid and that the store verifies clean; the store and its root.
fn substitute_and_verify(
    fx: &Fixture,
    urls: &[String],
    warnings: &Warnings,
) -> (tempfile::TempDir, Store) {
    let (root, target) = empty_store();
    let report = Substituter::with_options(urls, options())
        .unwrap()
        .substitute(&target, std::slice::from_ref(&fx.app), &fx.trust(), &|w| {
            warnings.push(w);
        })
        .unwrap();
    assert_eq!(
        report,
        SubstituteReport {
            substituted: vec![fx.lib.clone(), fx.app.clone()],
            ..SubstituteReport::default()
        }
    );
    let verified = target.verify(None, &|_| {}).unwrap();
    assert!(verified.is_clean(), "{:?}", verified.problems);
    assert_eq!(verified.checked, 2);
    for p in [&fx.lib, &fx.app] {
        let want = fx.source.with_db(|db| db.query(p)).unwrap().unwrap();
        let have = target.with_db(|db| db.query(p)).unwrap().unwrap();
        assert_eq!(have.tree_hash, want.tree_hash);
        assert_eq!(have.references, want.references);
        assert_eq!(have.signatures.len(), 1, "the cache's signature is kept");
    }
    (root, target)
}

#[test]
fn a_closure_is_substituted_over_http_and_the_store_verifies_clean() {
    let fx = Fixture::new();
    let server = Server::start(static_files(fx.dir.clone()));
    let warnings = Warnings::default();
    let (_root, target) = substitute_and_verify(&fx, &[server.url("/")], &warnings);
    assert_eq!(warnings.take(), Vec::<String>::new());
    assert_eq!(server.hits("/nexis-cache-info"), 1, "read once per run");
    let archive = format!("/{}", fx.archive_url(&fx.lib));
    assert_eq!(server.hits(&archive), 1, "each archive is read once");

    // Valid already: no info and no archive is asked for.
    let report = Substituter::with_options(&[server.url("")], options())
        .unwrap()
        .substitute(&target, std::slice::from_ref(&fx.app), &fx.trust(), &|w| {
            warnings.push(w);
        })
        .unwrap();
    assert_eq!(report, SubstituteReport::default());
    assert_eq!(server.hits(&format!("/{}.info", fx.app.hash_part())), 1);
    assert_eq!(server.hits(&archive), 1);
}

#[test]
fn a_file_url_is_a_cache_too() {
    let fx = Fixture::new();
    let warnings = Warnings::default();
    substitute_and_verify(&fx, &[format!("file://{}/", fx.dir.display())], &warnings);
    assert_eq!(warnings.take(), Vec::<String>::new());
}

#[test]
fn caches_are_asked_by_their_priority() {
    // Two copies of the cache: the first configured has a damaged archive and a worse
    // (higher) priority, so the good one is asked first and the damage never matters.
    let fx = Fixture::new();
    let copy = |name: &str, priority: u32, damage: bool| {
        let dir = fx.dir.with_file_name(name);
        Command::new("cp")
            .arg("-r")
            .arg(&fx.dir)
            .arg(&dir)
            .status()
            .unwrap();
        fs::write(
            dir.join(nexis_store::CACHE_INFO_FILE),
            format!("StoreDir: /nexis/store\nPriority: {priority}\n"),
        )
        .unwrap();
        if damage {
            let archive = dir.join(fx.archive_url(&fx.app));
            let mut bytes = fs::read(&archive).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 1;
            fs::write(&archive, &bytes).unwrap();
        }
        format!("file://{}", dir.display())
    };
    let damaged = copy("damaged", 60, true);
    let good = copy("good", 10, false);
    let warnings = Warnings::default();
    substitute_and_verify(&fx, &[damaged.clone(), good], &warnings);
    assert_eq!(warnings.take(), Vec::<String>::new());
    // Equal priorities keep the configured order: the damaged copy is asked first.
    let also_damaged = copy("damaged-too", 50, true);
    let fine = copy("fine", 50, false);
    let (_root, target) = empty_store();
    let e = Substituter::with_options(&[also_damaged, fine], options())
        .unwrap()
        .substitute(&target, std::slice::from_ref(&fx.app), &fx.trust(), &|_| {})
        .unwrap_err();
    assert!(
        matches!(
            &e,
            SubstituteError::Cache(CacheError::Receive(ReceiveError::FileHash { .. }))
        ),
        "{e}"
    );
}

#[test]
fn paths_signed_by_an_untrusted_key_are_refused_before_any_archive() {
    let fx = Fixture::new();
    let server = Server::start(static_files(fx.dir.clone()));
    let (_root, target) = empty_store();
    let mine = SecretKey::generate("mine").unwrap();
    let e = Substituter::with_options(&[server.url("")], options())
        .unwrap()
        .substitute(
            &target,
            std::slice::from_ref(&fx.app),
            &Trust::new(vec![mine.public()]),
            &|w| panic!("no warning expected: {w}"),
        )
        .unwrap_err();
    assert!(
        matches!(
            &e,
            SubstituteError::Cache(CacheError::Receive(ReceiveError::Untrusted { path, .. }))
                if *path == fx.app
        ),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "{} is not signed by a trusted key (trusted keys: mine; signatures by: cache-1)",
            fx.app
        )
    );
    assert_untouched(&target);
    for p in [&fx.lib, &fx.app] {
        assert_eq!(server.hits(&format!("/{}", fx.archive_url(p))), 0);
    }
}

#[test]
fn a_flipped_byte_in_an_archive_is_refused_by_its_file_hash() {
    let fx = Fixture::new();
    let url = fx.archive_url(&fx.app);
    let archive = fx.dir.join(&url);
    let mut bytes = fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(&archive, &bytes).unwrap();
    let server = Server::start(static_files(fx.dir.clone()));
    let (_root, target) = empty_store();
    let e = app_fails(&fx, &server, &target);
    assert!(
        matches!(
            &e,
            SubstituteError::Cache(CacheError::Receive(ReceiveError::FileHash { path, .. }))
                if *path == fx.app
        ),
        "{e}"
    );
    assert!(e.to_string().contains(&url), "{e}");
    // `lib` was unpacked and checked before, and is not valid either.
    assert_untouched(&target);
}

/// Substitute `fx.app` from `server` (trusting the fixture's key), expecting no warning
/// and a failure; return the error.
fn app_fails(fx: &Fixture, server: &Server, target: &Store) -> SubstituteError {
    Substituter::with_options(&[server.url("")], options())
        .unwrap()
        .substitute(target, std::slice::from_ref(&fx.app), &fx.trust(), &|w| {
            panic!("no warning expected: {w}")
        })
        .unwrap_err()
}

#[test]
fn an_archive_cut_short_in_transfer_is_a_read_error() {
    let fx = Fixture::new();
    let cut = format!("/{}", fx.archive_url(&fx.lib));
    let files = static_files(fx.dir.clone());
    let dir = fx.dir.clone();
    let server = Server::start(move |request, stream| {
        if request.path != cut {
            return files(request, stream);
        }
        // The whole length announced, half of it sent, then the connection closed.
        let body = fs::read(dir.join(&cut[1..])).unwrap();
        let head = format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(&body[..body.len() / 2])
    });
    let (_root, target) = empty_store();
    let e = app_fails(&fx, &server, &target);
    assert!(
        matches!(
            &e,
            SubstituteError::Cache(CacheError::Receive(ReceiveError::ReadFile { path, .. }))
                if *path == fx.lib
        ),
        "{e}"
    );
    let text = chain(&e);
    assert!(text.contains("body length mismatch"), "{text}");
    assert_untouched(&target);
}

#[test]
fn a_cache_that_is_down_is_skipped_with_one_warning() {
    let fx = Fixture::new();
    let server = Server::start(static_files(fx.dir.clone()));
    let down = refused_url();
    let warnings = Warnings::default();
    substitute_and_verify(&fx, &[down.clone(), server.url("")], &warnings);
    let warnings = warnings.take();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(&format!("binary cache {down} is not reachable (")),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].ends_with("; skipping it"), "{}", warnings[0]);
}

#[test]
fn a_slow_cache_is_skipped_after_its_timeout() {
    let fx = Fixture::new();
    let server = Server::start(static_files(fx.dir.clone()));
    // Connections are accepted (by the kernel) and never answered.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let slow = format!("http://{}", silent.local_addr().unwrap());
    let warnings = Warnings::default();
    let start = Instant::now();
    substitute_and_verify(&fx, &[slow.clone(), server.url("")], &warnings);
    let warnings = warnings.take();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(&format!("binary cache {slow} is not reachable (")),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains("timed out"), "{}", warnings[0]);
    // Asked once (with its one retry), not once per path.
    assert!(start.elapsed() < Duration::from_secs(30));
    drop(silent);
}

#[test]
fn caches_for_another_store_are_skipped() {
    let fx = Fixture::new();
    let other = tempfile::tempdir().unwrap();
    fs::write(
        other.path().join("nexis-cache-info"),
        "StoreDir: /nix/store\n",
    )
    .unwrap();
    let nix = Server::start(static_files(other.path().to_owned()));
    let not_a_cache = Server::start(|_, s| respond(s, "404 Not Found", &[], b""));
    let good = Server::start(static_files(fx.dir.clone()));
    let warnings = Warnings::default();
    substitute_and_verify(
        &fx,
        &[nix.url(""), not_a_cache.url(""), good.url("")],
        &warnings,
    );
    let warnings = warnings.take();
    assert_eq!(
        warnings,
        [
            format!(
                "binary cache {} is for the store /nix/store, not /nexis/store; skipping it",
                nix.url("")
            ),
            format!(
                "binary cache {0} is not a binary cache (no {0}/nexis-cache-info); skipping it",
                not_a_cache.url("")
            ),
        ]
    );
}

#[test]
fn paths_no_cache_has_are_reported_unless_required() {
    let fx = Fixture::new();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("other"), "x").unwrap();
    let other = fx
        .source
        .add_path(&src.path().join("other"), None)
        .unwrap()
        .path;
    let server = Server::start(static_files(fx.dir.clone()));
    let substituter = Substituter::with_options(&[server.url("")], options()).unwrap();
    let wanted = [other.clone(), fx.app.clone()];

    let (_root, target) = empty_store();
    let e = substituter
        .clone()
        .require_all(true)
        .substitute(&target, &wanted, &fx.trust(), &|_| {})
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{other} is not in the binary cache {}", server.url(""))
    );
    assert_untouched(&target);
    assert_eq!(server.hits(&format!("/{}", fx.archive_url(&fx.lib))), 0);

    let report = substituter
        .substitute(&target, &wanted, &fx.trust(), &|_| {})
        .unwrap();
    assert_eq!(
        report,
        SubstituteReport {
            substituted: vec![fx.lib.clone(), fx.app.clone()],
            missing: vec![other],
            incomplete: vec![],
        }
    );
}

#[test]
fn archive_urls_leaving_the_cache_are_refused() {
    let fx = Fixture::new();
    let info = fx.info_file(&fx.app);
    let text = fs::read_to_string(&info).unwrap();
    let server = Server::start(static_files(fx.dir.clone()));
    for bad in [
        "../archive/",
        "/archive/",
        "http://elsewhere.example/archive/",
    ] {
        fs::write(&info, text.replace("URL: archive/", &format!("URL: {bad}"))).unwrap();
        let (_root, target) = empty_store();
        let e = Substituter::with_options(&[server.url("")], options())
            .unwrap()
            .substitute(&target, std::slice::from_ref(&fx.app), &fx.trust(), &|_| {})
            .unwrap_err();
        assert!(
            matches!(e, SubstituteError::BadArchiveUrl { .. }),
            "{bad}: {e}"
        );
        assert_untouched(&target);
    }
}

#[test]
fn nginx_serves_a_cache() {
    let fx = Fixture::new();
    let Some(nginx) = Nginx::start(&fx.dir) else {
        return;
    };
    let warnings = Warnings::default();
    substitute_and_verify(
        &fx,
        &[refused_url(), format!("http://127.0.0.1:{}/", nginx.port)],
        &warnings,
    );
    assert_eq!(warnings.take().len(), 1);

    // A damaged archive behind nginx is refused the same way.
    let archive = fx.dir.join(fx.archive_url(&fx.lib));
    let mut bytes = fs::read(&archive).unwrap();
    bytes[10] ^= 1;
    fs::write(&archive, &bytes).unwrap();
    let (_root, target) = empty_store();
    let e = Substituter::with_options(&[format!("http://127.0.0.1:{}", nginx.port)], options())
        .unwrap()
        .substitute(&target, std::slice::from_ref(&fx.app), &fx.trust(), &|_| {})
        .unwrap_err();
    assert!(
        matches!(
            e,
            SubstituteError::Cache(CacheError::Receive(ReceiveError::FileHash { .. }))
        ),
        "{e}"
    );
    assert_untouched(&target);
}

/// nginx serving a directory on a free port of 127.0.0.1, stopped when dropped.
struct Nginx {
    child: Child,
    port: u16,
    _prefix: tempfile::TempDir,
}

impl Nginx {
    /// `None`, after saying so, when nginx is not installed.
    fn start(root: &Path) -> Option<Nginx> {
        let Some(bin) = find_nginx() else {
            eprintln!("skipping: nginx not installed");
            return None;
        };
        // The port is free when asked for; another process could take it before nginx
        // does, so a start that fails is tried again on another port.
        for _ in 0..3 {
            let prefix = tempfile::tempdir().unwrap();
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let p = prefix.path().display();
            let conf = prefix.path().join("nginx.conf");
            // Single process (no workers switching to another user who could not read
            // the temporary directory), everything it writes under the prefix.
            fs::write(
                &conf,
                format!(
                    "daemon off;\n\
                     master_process off;\n\
                     pid {p}/nginx.pid;\n\
                     error_log {p}/error.log;\n\
                     events {{ worker_connections 64; }}\n\
                     http {{\n\
                       access_log {p}/access.log;\n\
                       client_body_temp_path {p}/body;\n\
                       proxy_temp_path {p}/proxy;\n\
                       fastcgi_temp_path {p}/fastcgi;\n\
                       uwsgi_temp_path {p}/uwsgi;\n\
                       scgi_temp_path {p}/scgi;\n\
                       server {{\n\
                         listen 127.0.0.1:{port};\n\
                         root {};\n\
                       }}\n\
                     }}\n",
                    root.display()
                ),
            )
            .unwrap();
            let mut child = Command::new(&bin)
                .arg("-p")
                .arg(prefix.path())
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(prefix.path().join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Nginx {
                        child,
                        port,
                        _prefix: prefix,
                    });
                }
                if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = fs::read_to_string(prefix.path().join("error.log"));
                    eprintln!("nginx did not start on port {port}: {log:?}");
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("nginx is installed but would not start");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nginx` on `PATH`, or where Debian and the upstream packages put it.
fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"].map(PathBuf::from))
        .map(|d| d.join("nginx"))
        .find(|f| f.is_file())
}
