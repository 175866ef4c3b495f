//! Downloads against a real HTTP/1.1 server on 127.0.0.1 (`common::server`) and from
//! `file://` URLs.

mod common {
    pub(crate) mod files;
    pub(crate) mod server;
}

use std::cell::RefCell;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::files::names;
use common::server::{Server, pattern, respond, write_chunk};
use nexis_fetch::{
    DownloadError, DownloadOptions, Downloaded, Downloader, Hash, HashAlgo, Progress,
};
use sha2::Digest as _;

/// Options for tests: retries quickly.
fn options() -> DownloadOptions {
    DownloadOptions {
        backoff: Duration::from_millis(5),
        ..DownloadOptions::default()
    }
}

fn sha256(data: &[u8]) -> Hash {
    Hash {
        algo: HashAlgo::Sha256,
        digest: sha2::Sha256::digest(data).into(),
    }
}

fn blake3(data: &[u8]) -> Hash {
    Hash {
        algo: HashAlgo::Blake3,
        digest: *blake3::hash(data).as_bytes(),
    }
}

fn no_progress(_: Progress<'_>) {}

/// Download into `dir/out`, returning the error's text on failure.
fn fetch(
    downloader: &Downloader,
    urls: &[impl AsRef<str>],
    expected: Option<&Hash>,
    dir: &Path,
) -> Result<Downloaded, DownloadError> {
    downloader.download_to_file(urls, expected, &dir.join("out"), &no_progress)
}

#[test]
fn large_body_is_streamed_hashed_and_checked() {
    let body = pattern(5_000_000);
    let served = body.clone();
    let server = Server::start(move |_, s| respond(s, "200 OK", &[], &served));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    std::fs::write(&dest, b"an older file is replaced").unwrap();
    let seen = RefCell::new(Vec::new());
    let url = server.url("/big");
    let done = Downloader::new(options())
        .download_to_file(&[&url], Some(&sha256(&body)), &dest, &|p| {
            assert_eq!(p.url, url);
            assert_eq!(p.total, Some(5_000_000));
            seen.borrow_mut().push(p.received);
        })
        .unwrap();
    assert_eq!(done.url_used, url);
    assert_eq!(done.bytes, 5_000_000);
    assert_eq!(done.hash(HashAlgo::Sha256), sha256(&body));
    assert_eq!(done.hash(HashAlgo::Blake3), blake3(&body));
    assert!(std::fs::read(&dest).unwrap() == body);
    assert_eq!(names(dir.path()), ["out"]);
    let seen = seen.into_inner();
    assert_eq!(seen.first(), Some(&0));
    assert_eq!(seen.last(), Some(&5_000_000));
    assert!(seen.len() > 3 && seen.is_sorted(), "{seen:?}");
}

#[test]
fn the_user_agent_names_nexis() {
    let server = Server::start(|req, s| {
        let agent = req.header("user-agent").unwrap_or("none").to_owned();
        respond(s, "200 OK", &[], agent.as_bytes())
    });
    let dir = tempfile::tempdir().unwrap();
    fetch(
        &Downloader::new(options()),
        &[server.url("/")],
        None,
        dir.path(),
    )
    .unwrap();
    let agent = std::fs::read_to_string(dir.path().join("out")).unwrap();
    assert_eq!(agent, format!("nexis/{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(agent, nexis_fetch::USER_AGENT);
}

#[test]
fn a_short_body_is_a_length_error_and_retried() {
    let server =
        Server::start(|_, s| respond(s, "200 OK", &[("Content-Length", "1000")], &[7; 500]));
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/short");
    let downloader = Downloader::new(DownloadOptions {
        retries: 1,
        ..options()
    });
    let err = fetch(&downloader, &[&url], None, dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{url}: body length mismatch: Content-Length announced 1000 bytes, received 500")
    );
    assert_eq!(server.hits("/short"), 2, "a cut body is worth another try");
    assert!(names(dir.path()).is_empty());
}

/// HTTP/1.1 ends the body where `Content-Length` says; what follows is not part of it.
/// The download is the announced bytes, and a hash taken over more bytes does not match.
#[test]
fn bytes_past_the_announced_length_are_not_part_of_the_body() {
    let body = pattern(1500);
    let served = body.clone();
    let server =
        Server::start(move |_, s| respond(s, "200 OK", &[("Content-Length", "1000")], &served));
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/long");
    let downloader = Downloader::new(options());
    let done = fetch(&downloader, &[&url], None, dir.path()).unwrap();
    assert_eq!(done.bytes, 1000);
    assert!(std::fs::read(dir.path().join("out")).unwrap() == body[..1000]);
    let err = fetch(&downloader, &[&url], Some(&sha256(&body)), dir.path()).unwrap_err();
    assert!(matches!(err, DownloadError::HashMismatch { .. }), "{err}");
}

#[test]
fn a_stalled_server_times_out() {
    let server = Server::start(|req, s| {
        if req.path == "/stall-body" {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")?;
            s.write_all(&[1; 100])?;
            s.flush()?;
        }
        thread::sleep(Duration::from_secs(3));
        respond(s, "200 OK", &[], b"too late")
    });
    let downloader = Downloader::new(DownloadOptions {
        read_timeout: Duration::from_millis(300),
        retries: 1,
        ..options()
    });
    let dir = tempfile::tempdir().unwrap();
    for path in ["/stall-body", "/stall-headers"] {
        let url = server.url(path);
        let start = Instant::now();
        let err = fetch(&downloader, &[&url], None, dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{url}: timed out after 300ms waiting for data")
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(server.hits(path), 2, "a timeout is worth another try");
    }
    assert!(names(dir.path()).is_empty());
}

#[test]
fn a_total_timeout_ends_a_trickle() {
    let server = Server::start(|_, s| {
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")?;
        for _ in 0..100 {
            s.write_all(b"x")?;
            s.flush()?;
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    });
    let downloader = Downloader::new(DownloadOptions {
        read_timeout: Duration::from_millis(300),
        total_timeout: Some(Duration::from_millis(400)),
        retries: 0,
        ..options()
    });
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/trickle");
    let err = fetch(&downloader, &[&url], None, dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{url}: timed out after 400ms in total")
    );
}

#[test]
fn server_errors_are_retried() {
    let server = Server::start(|req, s| {
        if req.hit <= 2 {
            respond(s, "503 Service Unavailable", &[], b"busy")
        } else {
            respond(s, "200 OK", &[], b"finally")
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let done = fetch(
        &Downloader::new(options()),
        &[server.url("/flaky")],
        Some(&sha256(b"finally")),
        dir.path(),
    )
    .unwrap();
    assert_eq!(done.bytes, 7);
    assert_eq!(server.hits("/flaky"), 3);

    // Out of retries: the last status is the error.
    let err = fetch(
        &Downloader::new(DownloadOptions {
            retries: 1,
            ..options()
        }),
        &[server.url("/flaky2")],
        None,
        dir.path(),
    )
    .unwrap_err();
    let url = server.url("/flaky2");
    assert_eq!(
        err.to_string(),
        format!("{url}: HTTP 503 Service Unavailable")
    );
    assert_eq!(server.hits("/flaky2"), 2);
}

#[test]
fn retry_after_is_honoured_up_to_the_cap() {
    let server = Server::start(|req, s| {
        let wait = if req.path == "/wait1" { "1" } else { "3600" };
        if req.hit == 1 {
            respond(s, "429 Too Many Requests", &[("Retry-After", wait)], b"")
        } else {
            respond(s, "200 OK", &[], b"ok")
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let downloader = Downloader::new(DownloadOptions {
        max_backoff: Duration::from_secs(2),
        ..options()
    });
    let start = Instant::now();
    fetch(&downloader, &[server.url("/wait1")], None, dir.path()).unwrap();
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(server.hits("/wait1"), 2);

    let start = Instant::now();
    fetch(&downloader, &[server.url("/wait-long")], None, dir.path()).unwrap();
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert!(
        waited < Duration::from_secs(3),
        "the cap applies: {waited:?}"
    );
}

#[test]
fn not_found_moves_to_the_next_mirror_at_once() {
    let server = Server::start(|req, s| match req.path.as_str() {
        "/good" => respond(s, "200 OK", &[], b"content"),
        _ => respond(s, "404 Not Found", &[], b"no"),
    });
    let dir = tempfile::tempdir().unwrap();
    let urls = [server.url("/missing"), server.url("/good")];
    let done = fetch(&Downloader::new(options()), &urls, None, dir.path()).unwrap();
    assert_eq!(done.url_used, urls[1]);
    assert_eq!(server.hits("/missing"), 1, "404 is not retried");
    assert_eq!(server.hits("/good"), 1);
    assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), b"content");
}

#[test]
fn when_every_mirror_fails_each_failure_is_listed() {
    let server = Server::start(|req, s| match req.path.as_str() {
        "/gone" => respond(s, "410 Gone", &[], b""),
        "/teapot" => respond(s, "418 I'm a teapot", &[], b""),
        _ => respond(s, "404 Not Found", &[], b""),
    });
    // A port nobody listens on.
    let refused = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/x", listener.local_addr().unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let downloader = Downloader::new(DownloadOptions {
        retries: 1,
        ..options()
    });
    let urls = [server.url("/a"), server.url("/gone")];
    let err = fetch(&downloader, &urls, None, dir.path()).unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(
        err.to_string(),
        format!(
            "download failed from all 2 mirrors:\n  {}: HTTP 404 Not Found\n  {}: HTTP 410 Gone",
            urls[0], urls[1]
        )
    );

    let urls = [server.url("/teapot"), refused.clone(), server.url("/a")];
    let err = fetch(&downloader, &urls, None, dir.path()).unwrap_err();
    assert!(!err.is_not_found());
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "download failed from all 3 mirrors:");
    assert_eq!(lines[1], format!("  {}: HTTP 418 I'm a teapot", urls[0]));
    assert!(
        lines[2].starts_with(&format!("  {refused}: ")) && lines[2].contains("onnection refused"),
        "{text}"
    );
    assert_eq!(lines[3], format!("  {}: HTTP 404 Not Found", urls[2]));
    assert_eq!(server.hits("/teapot"), 1);
    assert!(names(dir.path()).is_empty());

    let err = fetch(&downloader, &[] as &[String], None, dir.path()).unwrap_err();
    assert_eq!(err.to_string(), "no URL to download from");
}

#[test]
fn redirects_are_followed_up_to_the_limit() {
    // `/r/N` redirects to `/r/N-1`; `/r/0` is the file. Relative and absolute locations.
    let server = Server::start(|req, s| {
        let n: u32 = req.path.trim_start_matches("/r/").parse().unwrap();
        if n == 0 {
            return respond(s, "200 OK", &[], b"at the end");
        }
        let location = format!("/r/{}", n - 1);
        let status = if n.is_multiple_of(2) {
            "302 Found"
        } else {
            "301 Moved Permanently"
        };
        respond(s, status, &[("Location", &location)], b"")
    });
    let dir = tempfile::tempdir().unwrap();
    let downloader = Downloader::new(options());
    let url = server.url("/r/2");
    let done = fetch(
        &downloader,
        &[&url],
        Some(&sha256(b"at the end")),
        dir.path(),
    )
    .unwrap();
    assert_eq!(done.url_used, url);
    assert_eq!(server.hits("/r/0"), 1);

    let url = server.url("/r/10");
    let err = fetch(&downloader, &[&url], None, dir.path()).unwrap_err();
    let chain: Vec<String> = (4..=10)
        .rev()
        .map(|n| server.url(&format!("/r/{n}")))
        .collect();
    let chain = format!("{} → /r/4", chain[..6].join(" → "));
    assert_eq!(
        err.to_string(),
        format!("{url}: too many redirects: the chain reached 6, the limit is 5: {chain}")
    );
    assert_eq!(server.hits("/r/5"), 1);
    assert_eq!(
        server.hits("/r/4"),
        0,
        "the redirect past the limit is not followed"
    );
    assert_eq!(server.hits("/r/10"), 1, "not retried");
}

#[test]
fn a_wrong_hash_leaves_nothing_behind() {
    let server = Server::start(|_, s| respond(s, "200 OK", &[], b"actual content"));
    let dir = tempfile::tempdir().unwrap();
    let downloader = Downloader::new(options());
    let url = server.url("/x.tar.gz");
    for (expected, got) in [
        (sha256(b"pinned content"), sha256(b"actual content")),
        (blake3(b"pinned content"), blake3(b"actual content")),
    ] {
        let err = fetch(&downloader, &[&url], Some(&expected), dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("hash mismatch for {url}: expected {expected}, got {got}")
        );
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }
    assert_eq!(server.hits("/x.tar.gz"), 2, "a wrong hash is not retried");
}

#[test]
fn a_wrong_hash_moves_on_to_the_next_mirror() {
    let server = Server::start(|req, s| {
        let body: &[u8] = if req.path == "/bad" {
            b"tampered"
        } else {
            b"genuine"
        };
        respond(s, "200 OK", &[], body)
    });
    let dir = tempfile::tempdir().unwrap();
    let urls = [server.url("/bad"), server.url("/good")];
    let done = fetch(
        &Downloader::new(options()),
        &urls,
        Some(&sha256(b"genuine")),
        dir.path(),
    )
    .unwrap();
    assert_eq!(done.url_used, urls[1]);
    assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), b"genuine");
    assert_eq!(names(dir.path()), ["out"]);
}

#[test]
fn chunked_bodies_are_accepted_and_a_cut_one_is_not() {
    let body = pattern(700_000);
    let served = body.clone();
    let server = Server::start(move |req, s| {
        respond(s, "200 OK", &[("Transfer-Encoding", "chunked")], b"")?;
        for piece in served.chunks(100_003) {
            write_chunk(s, piece)?;
        }
        if req.path == "/chunked" {
            s.write_all(b"0\r\n\r\n")?;
        }
        Ok(())
    });
    let dir = tempfile::tempdir().unwrap();
    let downloader = Downloader::new(DownloadOptions {
        retries: 0,
        ..options()
    });
    let progress = RefCell::new(None);
    let done = downloader
        .download_to_file(
            &[server.url("/chunked")],
            Some(&blake3(&body)),
            &dir.path().join("out"),
            &|p| *progress.borrow_mut() = Some((p.received, p.total)),
        )
        .unwrap();
    assert_eq!(done.bytes, 700_000);
    assert_eq!(done.hash(HashAlgo::Sha256), sha256(&body));
    assert_eq!(progress.into_inner(), Some((700_000, None)));

    let url = server.url("/chunked-cut");
    let err = fetch(&downloader, &[&url], None, &dir.path().join("sub"));
    let err = err.unwrap_err().to_string();
    // The directory does not exist: a local error, reported as such.
    assert!(
        err.starts_with("cannot create a temporary file in"),
        "{err}"
    );
    let err = fetch(&downloader, &[&url], None, dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{url}: connection closed before the end of the body, after 700000 bytes")
    );
    assert_eq!(
        server.hits("/chunked-cut"),
        1,
        "no request before the temporary file exists"
    );
}

#[test]
fn file_urls_are_read_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("a source #1.tar");
    let body = pattern(600_000);
    std::fs::write(&source, &body).unwrap();
    let url = format!(
        "file://{}",
        source
            .display()
            .to_string()
            .replace('%', "%25")
            .replace(' ', "%20")
            .replace('#', "%23")
    );
    let out = tempfile::tempdir().unwrap();
    let downloader = Downloader::new(options());
    let missing = format!("file://{}/missing.tar", dir.path().display());
    let done = fetch(
        &downloader,
        &[missing.clone(), url.clone()],
        Some(&sha256(&body)),
        out.path(),
    )
    .unwrap();
    assert_eq!(done.url_used, url);
    assert_eq!(done.bytes, 600_000);
    assert_eq!(done.hash(HashAlgo::Blake3), blake3(&body));
    assert!(std::fs::read(out.path().join("out")).unwrap() == body);

    let err = fetch(&downloader, &[&missing], None, out.path()).unwrap_err();
    assert!(err.is_not_found());
    assert!(
        err.to_string().starts_with(&format!(
            "{missing}: cannot read `{}/missing.tar`",
            dir.path().display()
        )),
        "{err}"
    );
    let err = fetch(&downloader, &["ftp://h/x".to_owned()], None, out.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`ftp://h/x`: unsupported URL: expected `http://`, `https://` or `file:///absolute/path`"
    );
}

#[test]
fn get_reads_small_documents_within_a_limit() {
    let server = Server::start(|req, s| match req.path.as_str() {
        "/info" => respond(s, "200 OK", &[], b"StorePath: x\n"),
        "/big" => respond(s, "200 OK", &[], &[b'x'; 5000]),
        "/big-chunked" => {
            respond(s, "200 OK", &[("Transfer-Encoding", "chunked")], b"")?;
            write_chunk(s, &[b'x'; 5000])?;
            s.write_all(b"0\r\n\r\n")
        }
        "/busy" if req.hit == 1 => respond(s, "500 Internal Server Error", &[], b""),
        "/busy" => respond(s, "200 OK", &[], b"ok"),
        _ => respond(s, "404 Not Found", &[], b""),
    });
    let downloader = Downloader::new(options());
    let body = downloader.get(&server.url("/info"), 1000).unwrap().unwrap();
    assert_eq!(body.content_length(), Some(13));
    assert_eq!(body.read_to_vec().unwrap(), b"StorePath: x\n");
    assert!(
        downloader
            .get(&server.url("/nope"), 1000)
            .unwrap()
            .is_none()
    );
    let mut busy = downloader.get(&server.url("/busy"), 1000).unwrap().unwrap();
    let mut text = String::new();
    busy.read_to_string(&mut text).unwrap();
    assert_eq!(text, "ok");
    assert_eq!(server.hits("/busy"), 2);

    let url = server.url("/big");
    let err = downloader.get(&url, 1000).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{url}: body larger than the limit of 1000 bytes")
    );
    let url = server.url("/big-chunked");
    let err = downloader
        .get(&url, 1000)
        .unwrap()
        .unwrap()
        .read_to_vec()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{url}: body larger than the limit of 1000 bytes")
    );
    let exact = downloader
        .get(&url, 5000)
        .unwrap()
        .unwrap()
        .read_to_vec()
        .unwrap();
    assert_eq!(exact.len(), 5000);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("info");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(b"local")
        .unwrap();
    let local = format!("file://{}", path.display());
    assert_eq!(
        downloader
            .get(&local, 10)
            .unwrap()
            .unwrap()
            .read_to_vec()
            .unwrap(),
        b"local"
    );
    assert!(
        downloader
            .get(&format!("{local}.missing"), 10)
            .unwrap()
            .is_none()
    );
}

/// Throughput over loopback, against `curl` when it is installed: `cargo test --release
/// -p nexis-fetch --test http -- --ignored --nocapture throughput`. Serves 1 GiB from
/// memory, so the server costs little; writes into `$NEXIS_BENCH_DIR` (default `.`).
/// Best of three rounds, as other work on the machine only ever slows a round down.
#[test]
#[ignore = "a measurement, not a check; takes some seconds in release mode"]
fn throughput_on_loopback() {
    const SIZE: usize = 1 << 30;
    let block = pattern(1 << 20);
    let server = Server::start(move |_, s| {
        let len = SIZE.to_string();
        respond(s, "200 OK", &[("Content-Length", &len)], b"")?;
        for _ in 0..SIZE / block.len() {
            s.write_all(&block)?;
        }
        Ok(())
    });
    let url = server.url("/gib");
    let dir =
        tempfile::tempdir_in(std::env::var_os("NEXIS_BENCH_DIR").unwrap_or(".".into())).unwrap();
    let out = dir.path().join("out");
    let curl_out = dir.path().join("curl").display().to_string();
    let mb = |secs: f64| f64::from(1u32 << 30) / 1e6 / secs;
    let downloader = Downloader::new(options());
    // Best seconds for: nexis to the last byte read, nexis with fsync and rename, curl to
    // /dev/null, curl to a file.
    let mut best = [f64::INFINITY; 4];
    for _ in 0..3 {
        let last_byte = RefCell::new(Instant::now());
        let start = Instant::now();
        let done = downloader
            .download_to_file(&[&url], None, &out, &|p| {
                if p.received == SIZE as u64 {
                    *last_byte.borrow_mut() = Instant::now();
                }
            })
            .unwrap();
        best[1] = best[1].min(start.elapsed().as_secs_f64());
        best[0] = best[0].min((*last_byte.borrow() - start).as_secs_f64());
        assert_eq!(done.bytes, SIZE as u64);
        std::fs::remove_file(&out).unwrap();
        for (i, target) in [(2, "/dev/null"), (3, curl_out.as_str())] {
            let start = Instant::now();
            let status = std::process::Command::new("curl")
                .args(["-s", "-o", target, &url])
                .status();
            if status.is_ok_and(|s| s.success()) {
                best[i] = best[i].min(start.elapsed().as_secs_f64());
            }
        }
        let _ = std::fs::remove_file(&curl_out);
    }
    println!(
        "nexis download_to_file: {:.0} MB/s to the last byte read, {:.0} MB/s with fsync and rename",
        mb(best[0]),
        mb(best[1])
    );
    println!(
        "curl -o /dev/null: {:.0} MB/s; curl -o a file: {:.0} MB/s (0: curl not installed)",
        mb(best[2]),
        mb(best[3])
    );
}
