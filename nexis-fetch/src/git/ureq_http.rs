//! gix's smart-HTTP transport driven by ureq.
//!
//! gix ships curl and reqwest backends; both would add a second HTTP and TLS stack (curl's C
//! library, or tokio and hyper) next to the ureq the rest of the crate uses. gix-transport's
//! `http-client` feature exposes the transport over the small [`Http`] trait instead, which this
//! module implements.
//!
//! Requests are lazy: `get` and `post` return readers, and the request is sent on the first read
//! of the headers or the body. For a POST that is after gix wrote the whole request body (a fetch
//! request: wants, haves, a few capabilities — small) and dropped the writer, as the trait
//! requires, so the body is sent from memory with a `Content-Length`. Errors surface on that
//! first read as `io::Error`s, which is where the transport expects them: 401 becomes
//! `PermissionDenied` wrapping [`AuthenticationRequired`], any other non-success status an
//! `Other` error naming the status and the URL.
//!
//! Redirects: followed (up to 10) for the first GET only, never from https to http; the new base
//! URL is reported through [`Http::redirected_base_url`] so the POSTs go to the same server.
//! gix's `http.*` configuration (proxy, extra headers, timeouts) is not read: the cache
//! repositories are opened isolated from the user's git configuration anyway.

use std::any::Any;
use std::io::{self, BufReader, Cursor, Read, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gix::bstr::BString;
use gix_transport::client::AuthenticationRequired;
use gix_transport::client::blocking_io::http::{GetResponse, Http, PostBodyDataKind, PostResponse};
use ureq::ResponseExt as _;

/// How many redirects the first request may follow (git follows curl's default of 50; ten is
/// plenty for forges).
const MAX_REDIRECTS: u32 = 10;

/// The [`Http`] implementation: one ureq agent (connection pool) per transport.
pub(super) struct UreqHttp {
    agent: ureq::Agent,
    /// The base URL after a followed redirect, shared with the requests that discover it.
    redirected_base: Arc<Mutex<Option<String>>>,
}

impl UreqHttp {
    pub(super) fn new() -> Self {
        let agent = ureq::Agent::config_builder()
            // Statuses are turned into the errors gix expects below, with the 401 details.
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .max_redirects(MAX_REDIRECTS)
            .build()
            .new_agent();
        Self {
            agent,
            redirected_base: Arc::new(Mutex::new(None)),
        }
    }

    fn request(
        &self,
        url: &str,
        base_url: &str,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
        post_body: Option<Arc<Mutex<Vec<u8>>>>,
    ) -> Shared {
        let headers = headers
            .into_iter()
            .filter_map(|line| {
                let (name, value) = line.as_ref().split_once(':')?;
                Some((name.trim().to_owned(), value.trim().to_owned()))
            })
            .collect();
        Arc::new(Mutex::new(State::Pending(Box::new(Pending {
            agent: self.agent.clone(),
            url: url.to_owned(),
            base_url: base_url.to_owned(),
            headers,
            post_body,
            redirected_base: Arc::clone(&self.redirected_base),
        }))))
    }
}

impl Http for UreqHttp {
    type Headers = BufReader<HeadersReader>;
    type ResponseBody = BufReader<BodyReader>;
    type PostBody = PostBody;

    fn get(
        &mut self,
        url: &str,
        base_url: &str,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> gix::Result<GetResponse<Self::Headers, Self::ResponseBody>> {
        let shared = self.request(url, base_url, headers, None);
        Ok(GetResponse {
            headers: BufReader::new(HeadersReader(Arc::clone(&shared))),
            body: BufReader::new(BodyReader(shared)),
        })
    }

    fn post(
        &mut self,
        url: &str,
        base_url: &str,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
        _body: PostBodyDataKind,
    ) -> gix::Result<PostResponse<Self::Headers, Self::ResponseBody, Self::PostBody>> {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let shared = self.request(url, base_url, headers, Some(Arc::clone(&buffer)));
        Ok(PostResponse {
            post_body: PostBody(buffer),
            headers: BufReader::new(HeadersReader(Arc::clone(&shared))),
            body: BufReader::new(BodyReader(shared)),
        })
    }

    fn configure(&mut self, _config: &dyn Any) -> gix::Result {
        Ok(())
    }

    fn redirected_base_url(&self) -> Option<String> {
        lock(&self.redirected_base).clone()
    }
}

/// The request/response pair shared by a response's headers and body readers.
type Shared = Arc<Mutex<State>>;

enum State {
    Pending(Box<Pending>),
    Ready(Response),
    /// The request failed; the first read returned the full error, later reads this summary.
    Failed(io::ErrorKind, String),
}

struct Pending {
    agent: ureq::Agent,
    url: String,
    base_url: String,
    /// `(name, value)` pairs.
    headers: Vec<(String, String)>,
    /// `Some` for a POST: what gix wrote through [`PostBody`].
    post_body: Option<Arc<Mutex<Vec<u8>>>>,
    redirected_base: Arc<Mutex<Option<String>>>,
}

/// A response as received: its headers, one `name: value` line each, and its body.
struct Response {
    headers: Cursor<Vec<u8>>,
    body: ureq::BodyReader<'static>,
}

impl State {
    /// The response, sending the request if that has not happened yet.
    fn response(&mut self) -> io::Result<&mut Response> {
        if let State::Pending(_) = self {
            let State::Pending(pending) =
                std::mem::replace(self, State::Failed(io::ErrorKind::Other, String::new()))
            else {
                unreachable!("matched as pending just above")
            };
            match pending.send() {
                Ok(response) => *self = State::Ready(response),
                Err(err) => {
                    *self = State::Failed(err.kind(), err.to_string());
                    return Err(err);
                }
            }
        }
        match self {
            State::Ready(response) => Ok(response),
            State::Failed(kind, message) => Err(io::Error::new(*kind, message.clone())),
            State::Pending(_) => unreachable!("the request was sent just above"),
        }
    }
}

impl Pending {
    /// Send the request and receive the response's headers.
    fn send(self) -> io::Result<Response> {
        let result = match &self.post_body {
            None => {
                let mut request = self.agent.get(&self.url);
                for (name, value) in &self.headers {
                    request = request.header(name, value);
                }
                request.call()
            }
            Some(buffer) => {
                let body = std::mem::take(&mut *lock(buffer));
                let mut request = self.agent.post(&self.url).config().max_redirects(0).build();
                for (name, value) in &self.headers {
                    request = request.header(name, value);
                }
                request.send(&body[..])
            }
        };
        let response = result.map_err(|err| match err {
            ureq::Error::Io(err) => err,
            other => io::Error::other(other),
        })?;

        let redirected = self
            .url
            .parse::<ureq::http::Uri>()
            .is_ok_and(|requested| requested != *response.get_uri());
        if redirected {
            let final_url = response.get_uri().to_string();
            if self.url.starts_with("https:") && !final_url.starts_with("https:") {
                return Err(io::Error::other(format!(
                    "refusing the redirect from {} to {final_url}: not https",
                    self.url
                )));
            }
            let tail = self.url.strip_prefix(&self.base_url).unwrap_or_default();
            match final_url.strip_suffix(tail) {
                Some(base) if !tail.is_empty() => {
                    *lock(&self.redirected_base) = Some(base.to_owned());
                }
                _ => {
                    return Err(io::Error::other(format!(
                        "the redirect from {} to {final_url} does not keep the request path {tail:?}",
                        self.url
                    )));
                }
            }
        }

        let status = response.status();
        if status == ureq::http::StatusCode::UNAUTHORIZED {
            let www_authenticate = response
                .headers()
                .get_all(ureq::http::header::WWW_AUTHENTICATE)
                .iter()
                .map(|value| BString::from(value.as_bytes()))
                .collect();
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                AuthenticationRequired { www_authenticate },
            ));
        }
        if !status.is_success() {
            return Err(io::Error::other(format!(
                "HTTP status {status} from {}",
                self.url
            )));
        }
        let mut headers = Vec::new();
        for (name, value) in response.headers() {
            headers.extend_from_slice(name.as_str().as_bytes());
            headers.extend_from_slice(b": ");
            headers.extend_from_slice(value.as_bytes());
            headers.push(b'\n');
        }
        Ok(Response {
            headers: Cursor::new(headers),
            body: response.into_body().into_reader(),
        })
    }
}

/// The response headers, one `name: value` line each; reading sends the request.
pub(super) struct HeadersReader(Shared);

impl Read for HeadersReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        lock(&self.0).response()?.headers.read(buf)
    }
}

/// The response body; reading sends the request.
pub(super) struct BodyReader(Shared);

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        lock(&self.0).response()?.body.read(buf)
    }
}

/// The body of a POST, collected in memory until the request is sent.
pub(super) struct PostBody(Arc<Mutex<Vec<u8>>>);

impl Write for PostBody {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Lock, ignoring poisoning: the data (bytes, a URL) stays consistent whatever panicked.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
