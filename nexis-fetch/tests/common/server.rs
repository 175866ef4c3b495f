//! A small HTTP/1.1 server on 127.0.0.1 for tests: one thread per connection, one request
//! per connection (`Connection: close`), a handler that writes whatever bytes the test
//! wants, and a count of the requests per path.

// Each test binary uses part of this.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

/// A request as the handler sees it.
#[derive(Debug)]
pub(crate) struct Request {
    /// The path, query included.
    pub(crate) path: String,
    /// Headers, names in lower case.
    pub(crate) headers: Vec<(String, String)>,
    /// 1 for the first request to this path, 2 for the second…
    pub(crate) hit: usize,
}

impl Request {
    /// The first header with this (lower-case) name.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

type Handler = dyn Fn(&Request, &mut TcpStream) -> io::Result<()> + Send + Sync;

/// The running server; stops accepting when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Listen on a free port of 127.0.0.1 and answer every request with `handler`.
    pub(crate) fn start(
        handler: impl Fn(&Request, &mut TcpStream) -> io::Result<()> + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let thread = {
            let (hits, stop) = (Arc::clone(&hits), Arc::clone(&stop));
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (hits, handler) = (Arc::clone(&hits), Arc::clone(&handler));
                    thread::spawn(move || {
                        // Errors mean the client went away, which some tests cause.
                        let _ = serve(stream, &hits, &*handler);
                    });
                }
            })
        };
        Server {
            addr,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// How many requests reached `path`.
    pub(crate) fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    hits: &Mutex<HashMap<String, usize>>,
    handler: &Handler,
) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split(' ').nth(1).unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let hit = {
        let mut hits = hits.lock().unwrap();
        let count = hits.entry(path.clone()).or_insert(0);
        *count += 1;
        *count
    };
    let mut stream = stream;
    handler(&Request { path, headers, hit }, &mut stream)?;
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Write)
}

/// Write a whole response: status line (`"200 OK"`), the headers, `Content-Length` (unless
/// given, or the response is chunked) and `Connection: close`, then the body.
pub(crate) fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("content-length") && !has("transfer-encoding") {
        write!(head, "Content-Length: {}\r\n", body.len()).unwrap();
    }
    for (name, value) in headers {
        write!(head, "{name}: {value}\r\n").unwrap();
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)
}

/// A handler serving the files under `root` (a binary cache, say): `200` with the file,
/// `404` for anything else. Paths with `..`, `%` or a query are refused with `400`.
pub(crate) fn static_files(
    root: std::path::PathBuf,
) -> impl Fn(&Request, &mut TcpStream) -> io::Result<()> + Send + Sync + 'static {
    move |request, stream| {
        let rel = request.path.trim_start_matches('/');
        if rel.split('/').any(|s| s == "..") || rel.contains(['%', '?']) {
            return respond(stream, "400 Bad Request", &[], b"");
        }
        match std::fs::read(root.join(rel)) {
            Ok(body) => respond(stream, "200 OK", &[], &body),
            Err(_) => respond(stream, "404 Not Found", &[], b"not found"),
        }
    }
}

/// Write `data` as one chunk of a chunked body.
pub(crate) fn write_chunk(stream: &mut TcpStream, data: &[u8]) -> io::Result<()> {
    write!(stream, "{:x}\r\n", data.len())?;
    stream.write_all(data)?;
    stream.write_all(b"\r\n")
}

/// `len` bytes that are the same on every call and not all alike.
pub(crate) fn pattern(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}
