//! Git fixtures for the tests: repositories built with the `git` CLI at test time (fixed
//! identities and dates, no user or system configuration), a `git daemon` and a `git
//! http-backend` behind a small CGI-speaking HTTP server, both on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The `git` used to build fixtures and run servers.
const GIT: &str = "git";

/// A temporary directory of fixture repositories.
pub(crate) struct Fixtures {
    root: tempfile::TempDir,
}

impl Fixtures {
    pub(crate) fn new() -> Self {
        Self {
            root: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// The directory the repositories live in.
    pub(crate) fn root(&self) -> &Path {
        self.root.path()
    }

    /// A fresh path under the fixture directory (for caches and destinations).
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// The `file://` URL of repository `name`.
    pub(crate) fn url(&self, name: &str) -> String {
        format!("file://{}", self.path(name).display())
    }

    /// `git init -b main` a new repository `name`.
    pub(crate) fn init(&self, name: &str) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).expect("create repository directory");
        git(&dir, &["init", "-q", "-b", "main"], 0);
        dir
    }

    /// Write `content` to `file` in repository `repo` (creating parent directories).
    pub(crate) fn write(&self, repo: &str, file: &str, content: &str) {
        let path = self.path(repo).join(file);
        std::fs::create_dir_all(path.parent().expect("file has a parent")).expect("mkdir");
        std::fs::write(path, content).expect("write fixture file");
    }

    /// Stage everything and commit at `time` (author and committer); return the commit id.
    pub(crate) fn commit(&self, repo: &str, message: &str, time: i64) -> String {
        let dir = self.path(repo);
        git(&dir, &["add", "-A"], time);
        git(
            &dir,
            &["commit", "-q", "--allow-empty", "-m", message],
            time,
        );
        self.rev(repo, "HEAD")
    }

    /// `git rev-parse` in repository `repo`.
    pub(crate) fn rev(&self, repo: &str, what: &str) -> String {
        git(&self.path(repo), &["rev-parse", what], 0)
    }

    /// Run `git args…` in repository `repo` at `time`; return its trimmed stdout.
    pub(crate) fn git(&self, repo: &str, args: &[&str], time: i64) -> String {
        git_with_input(&self.path(repo), args, time, b"")
    }

    /// Like [`Self::git`], with `input` on stdin (for `mktree`, `hash-object --stdin`).
    pub(crate) fn git_with_input(&self, repo: &str, args: &[&str], input: &str) -> String {
        git_with_input(&self.path(repo), args, 0, input.as_bytes())
    }
}

/// Run git in `dir` with fixed identity and dates, isolated from user and system configuration.
pub(crate) fn git(dir: &Path, args: &[&str], time: i64) -> String {
    git_with_input(dir, args, time, b"")
}

fn git_with_input(dir: &Path, args: &[&str], time: i64, input: &[u8]) -> String {
    let date = format!("@{time} +0000");
    let mut child = Command::new(GIT)
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args([
            "-c",
            "protocol.file.allow=always",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run git");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .expect("write git's stdin");
    let output = child.wait_with_output().expect("wait for git");
    assert!(
        output.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("git output is UTF-8")
        .trim()
        .to_owned()
}

/// A free TCP port on 127.0.0.1 (free when this returns; the race is acceptable in tests).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Wait until something accepts connections on `port`.
fn wait_for_port(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server exited before listening: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "server on port {port} did not start"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// `git daemon` serving every repository under a directory; killed on drop.
pub(crate) struct GitDaemon {
    child: Child,
    pub(crate) port: u16,
}

impl GitDaemon {
    pub(crate) fn start(base: &Path) -> Self {
        let port = free_port();
        // `git daemon` runs `git-daemon` as a child and killing `git` would leave it
        // running: start the daemon itself.
        let exec_path = Command::new(GIT)
            .arg("--exec-path")
            .output()
            .expect("git --exec-path");
        let exec_path = String::from_utf8(exec_path.stdout).expect("a UTF-8 path");
        let mut child = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .arg("--reuseaddr")
            .arg(format!("--base-path={}", base.display()))
            .arg("--export-all")
            .arg(format!("--port={port}"))
            .arg("--listen=127.0.0.1")
            .arg(base)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start git daemon");
        wait_for_port(port, &mut child);
        Self { child, port }
    }

    pub(crate) fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-request-per-connection HTTP/1.1 server running `git http-backend` as CGI for every
/// request, with `GIT_PROJECT_ROOT` set to a directory. Stops accepting when dropped.
pub(crate) struct HttpBackend {
    pub(crate) port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Which git protocol the HTTP server lets the backend speak.
#[derive(Clone, Copy)]
pub(crate) enum Protocol {
    /// Whatever the client asks for (v2 for gix).
    Any,
    /// Protocol v0 only: the client's `Git-Protocol` header is dropped. A v0 server serves
    /// only advertised tips (`uploadpack.allowReachableSHA1InWant` is off).
    V0,
}

const HTTP_BACKEND: &str = "/usr/lib/git-core/git-http-backend";

impl HttpBackend {
    pub(crate) fn start(project_root: &Path, protocol: Protocol) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind HTTP server");
        let port = listener.local_addr().expect("local address").port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let root = project_root.to_owned();
        let stopped = std::sync::Arc::clone(&stop);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let root = root.clone();
                thread::spawn(move || {
                    let _ = serve_cgi(stream, &root, protocol);
                });
            }
        });
        Self { port, stop }
    }

    pub(crate) fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Serve one request: parse it, run the CGI, translate its `Status:` and headers.
fn serve_cgi(stream: TcpStream, root: &Path, protocol: Protocol) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));

    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let length: usize = header("content-length").parse().unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;

    let mut command = Command::new(HTTP_BACKEND);
    command
        .env_clear()
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", length.to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1");
    for (name, value) in &headers {
        if name == "git-protocol" && matches!(protocol, Protocol::V0) {
            continue;
        }
        let name = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
        command.env(name, value);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = thread::spawn(move || stdin.write_all(&body));
    let mut output = Vec::new();
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_end(&mut output)?;
    let _ = writer.join();
    child.wait()?;

    let split = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            output
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        })
        .unwrap_or((output.len(), output.len()));
    let cgi_headers = String::from_utf8_lossy(&output[..split.0]).into_owned();
    let response_body = &output[split.1..];
    let mut status = "200 OK".to_owned();
    let mut response = Vec::new();
    for line in cgi_headers.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("status") {
            value.trim().clone_into(&mut status);
        } else {
            response.extend_from_slice(format!("{name}:{value}\r\n").as_bytes());
        }
    }
    let mut stream = stream;
    stream.write_all(format!("HTTP/1.1 {status}\r\n").as_bytes())?;
    stream.write_all(&response)?;
    stream.write_all(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            response_body.len()
        )
        .as_bytes(),
    )?;
    stream.write_all(response_body)?;
    stream.flush()
}
