//! [`HttpPool`]: a lean HTTP/1.1 client for one `http://` origin, on hyper's connection API with
//! nothing layered on top: the load generator's `--target` turns, and the model providers'
//! calls to a plain-HTTP endpoint (a local vLLM, llama.cpp server, Ollama, `aether sim-llm`).
//!
//! A general client (reqwest) pays per request for what these callers never use: URL parsing
//! (twice a request: its redirect policy and its answer's URL), a pool keyed by scheme and host,
//! redirect and proxy policy, header maps built from scratch. Here everything constant is built
//! once (the origin's address and `Host`, the key's header, the path prefix), and a request is
//! its body, its path and the caller's few headers.
//!
//! Connections are kept in a stack: a request pops one (or opens one: `TCP_NODELAY`, the
//! connection's task spawned), and pushes it back once its answer has been read whole, so a
//! caller keeps reusing a warm connection and there are never more connections than requests
//! in flight. The stack's lock is held only to pop or push, never across I/O. It is bounded
//! ([`MAX_IDLE`]: a connection beyond it is closed), and a connection idle for longer than
//! [`IDLE_TIMEOUT`] is closed when the pool is next used. A request that hyper refused before
//! writing a byte (the server had closed the idle connection) is sent again on a new connection;
//! one that was written is never sent twice. A caller done with an answer before its body's end
//! (a stream read up to its `[DONE]`) calls [`Answer::finish`], which reads the rest, at most
//! [`DRAIN_BYTES`] within [`DRAIN_LIMIT`], and gives the connection back before the caller's next
//! request; an answer dropped instead has the rest read at once if it has arrived, else in the
//! background within the same bounds. A connection holding half an exchange is never reused.
//!
//! Not served (the caller keeps a general client for them): `https://`, a base with a user,
//! query or fragment, and any call through an HTTP proxy.
//!
//! Counted process-wide, for `/metrics`: the connections opened ([`connections_opened`]) and
//! those idle now in every pool ([`idle_connections`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::time::Instant;

/// Idle connections kept for reuse; more are closed when their answer ends.
pub const MAX_IDLE: usize = 4096;

/// How long an idle connection is kept: one unused for longer is closed at the next use of the
/// pool (a burst's connections do not stay open for ever).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How long the rest of a dropped answer's body is waited for before its connection is closed.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// How much of a dropped answer's body is read before its connection is closed instead.
pub const DRAIN_BYTES: usize = 64 * 1024;

type Conn = SendRequest<Full<Bytes>>;

/// The idle connections, the most recently used last (taken first); each with when it went idle.
type Idle = Arc<Mutex<Stack>>;

/// Connections opened by every pool of the process.
static OPENED: AtomicU64 = AtomicU64::new(0);
/// Connections idle now in every pool of the process.
static IDLE: AtomicU64 = AtomicU64::new(0);

/// Connections the pools of this process have opened (a steady climb under steady load means
/// connections are not being reused).
pub fn connections_opened() -> u64 {
    OPENED.load(Ordering::Relaxed)
}

/// Connections idle now in the pools of this process (each pool at most [`MAX_IDLE`]).
pub fn idle_connections() -> u64 {
    IDLE.load(Ordering::Relaxed)
}

/// One pool's idle connections, counted in [`IDLE`] while held.
#[derive(Default)]
struct Stack(VecDeque<(Conn, Instant)>);

impl Stack {
    fn pop_back(&mut self) -> Option<Conn> {
        let (c, _) = self.0.pop_back()?;
        IDLE.fetch_sub(1, Ordering::Relaxed);
        Some(c)
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        IDLE.fetch_sub(self.0.len() as u64, Ordering::Relaxed);
    }
}

/// A pool of HTTP/1.1 connections to one `http://host:port` origin.
pub struct HttpPool {
    /// `host:port`, resolved by each connect (connects are rare: connections are reused).
    addr: String,
    host: HeaderValue,
    /// The base's path (`/v1`), without a trailing `/`; empty for none.
    prefix: String,
    /// The key's header, sent with every request (marked sensitive: never printed).
    auth: Option<(HeaderName, HeaderValue)>,
    connect_timeout: Option<Duration>,
    idle: Idle,
}

/// Why a request got no answer. The cause is the error's `source` (not repeated in its own
/// text): print it with [`aether_contracts::error_chain`].
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot connect to {addr}")]
    Connect { addr: String, source: std::io::Error },
    #[error("connecting to {addr} timed out after {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
    #[error("HTTP handshake with {addr} failed")]
    Handshake { addr: String, source: hyper::Error },
    #[error("HTTP request failed")]
    Request(#[source] hyper::Error),
    #[error("reading the answer's body failed")]
    Body(#[source] hyper::Error),
    #[error("`{0}` is not a valid request path")]
    Path(String),
}

impl PoolError {
    /// The request never reached the server: no connection could be made.
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. } | Self::ConnectTimeout { .. } | Self::Handshake { .. }
        )
    }
}

/// `Authorization: Bearer KEY`, marked sensitive, for [`HttpPool::for_base`].
pub fn bearer(key: &str) -> Result<(HeaderName, HeaderValue), String> {
    key_header(AUTHORIZATION, &format!("Bearer {key}"))
}

/// `NAME: KEY` (an API key in a header of its own), marked sensitive.
pub fn key_header(name: HeaderName, key: &str) -> Result<(HeaderName, HeaderValue), String> {
    let mut value = HeaderValue::from_str(key)
        .map_err(|_| "the API key holds characters an HTTP header cannot carry".to_owned())?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// An answer whose head has arrived: its body is read with [`Answer::chunk`] or
/// [`Answer::bytes`]; the connection goes back to the pool when the body has been read whole
/// (or, dropped before that, once the rest has been read in the background).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// `None` once handed to the background drain.
    body: Option<Incoming>,
    /// Returned to `idle` at the body's end.
    conn: Option<Conn>,
    idle: Idle,
}

impl Answer {
    /// The body's next piece as it arrives, or `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, PoolError> {
        let Some(body) = &mut self.body else {
            return Ok(None);
        };
        loop {
            match body.frame().await {
                None => {
                    if let Some(c) = self.conn.take() {
                        checkin(&self.idle, c);
                    }
                    return Ok(None);
                }
                Some(Err(e)) => return Err(PoolError::Body(e)),
                // Trailers and empty pieces carry no body bytes.
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => return Ok(Some(data)),
                    _ => {}
                },
            }
        }
    }

    /// Reads what is left of the body (a stream past its last event: the body's end, maybe
    /// blank lines), at most [`DRAIN_BYTES`] within [`DRAIN_LIMIT`], so that the connection goes
    /// back to the pool before the caller goes on (a drop would give it back later, racing the
    /// caller's next request); a body that does not end within that closes its connection.
    pub async fn finish(mut self) {
        let (Some(conn), Some(mut body)) = (self.conn.take(), self.body.take()) else {
            return;
        };
        let mut left = DRAIN_BYTES;
        if let Ok(true) = tokio::time::timeout(DRAIN_LIMIT, rest_of(&mut body, &mut left)).await {
            checkin(&self.idle, conn);
        }
    }

    /// The whole body.
    pub async fn bytes(mut self) -> Result<Bytes, PoolError> {
        let Some(first) = self.chunk().await? else {
            return Ok(Bytes::new());
        };
        let Some(second) = self.chunk().await? else {
            return Ok(first);
        };
        let mut all = Vec::with_capacity(first.len() + second.len());
        all.extend_from_slice(&first);
        all.extend_from_slice(&second);
        while let Some(more) = self.chunk().await? {
            all.extend_from_slice(&more);
        }
        Ok(all.into())
    }
}

impl Drop for Answer {
    /// Not read to its end: the rest is read (at once when it has arrived, as it mostly has,
    /// else in the background, bounded), and the connection given back if the body ends;
    /// otherwise it is closed.
    fn drop(&mut self) {
        let (Some(conn), Some(mut body)) = (self.conn.take(), self.body.take()) else {
            return;
        };
        if conn.is_closed() {
            return;
        }
        let idle = Arc::clone(&self.idle);
        let mut left = DRAIN_BYTES;
        match futures::FutureExt::now_or_never(rest_of(&mut body, &mut left)) {
            Some(true) => return checkin(&idle, conn),
            Some(false) => return,
            None => {}
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            if let Ok(true) = tokio::time::timeout(DRAIN_LIMIT, rest_of(&mut body, &mut left)).await {
                checkin(&idle, conn);
            }
        });
    }
}

/// Reads what is left of `body`, at most `left` more bytes: whether it ended (within that).
async fn rest_of(body: &mut Incoming, left: &mut usize) -> bool {
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return false };
        if let Ok(data) = frame.into_data() {
            let Some(l) = left.checked_sub(data.len()) else {
                return false;
            };
            *left = l;
        }
    }
    true
}

/// Gives `c` back to the idle stack, closing those idle for longer than [`IDLE_TIMEOUT`].
fn checkin(idle: &Mutex<Stack>, c: Conn) {
    if c.is_closed() {
        return;
    }
    let now = Instant::now();
    let mut idle = idle.lock();
    // The least recently used are at the front: close those idle too long.
    while idle.0.front().is_some_and(|(_, since)| now - *since > IDLE_TIMEOUT) {
        idle.0.pop_front();
        IDLE.fetch_sub(1, Ordering::Relaxed);
    }
    if idle.len() < MAX_IDLE {
        idle.0.push_back((c, now));
        IDLE.fetch_add(1, Ordering::Relaxed);
    }
}

impl HttpPool {
    /// A pool for `base` (`http://host[:port][/path]`), sending `auth` with every request;
    /// `None` for a base it does not serve (https, a user, a query or a fragment), which the
    /// caller sends through its general client.
    pub fn for_base(base: &str, auth: Option<(HeaderName, HeaderValue)>) -> Result<Option<Self>, String> {
        let Some(rest) = base.strip_prefix("http://") else {
            return Ok(None);
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() || authority.contains('@') || path.contains(['?', '#']) {
            return Ok(None);
        }
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.ends_with(':') && p.parse::<u16>().is_ok());
        let addr = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let host = HeaderValue::from_str(authority).map_err(|_| format!("`{authority}` is not a valid Host header"))?;
        Ok(Some(Self {
            addr,
            host,
            prefix: path.trim_end_matches('/').to_owned(),
            auth,
            connect_timeout: None,
            idle: Arc::new(Mutex::new(Stack::default())),
        }))
    }

    /// Gives up a connect after `limit`.
    pub fn with_connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = Some(limit);
        self
    }

    /// Connections open and idle now.
    pub fn idle(&self) -> usize {
        self.idle.lock().len()
    }

    /// `path` (`/chat/completions`) under the base's path, as a request target; built once by a
    /// caller that sends to it often.
    pub fn uri(&self, path: &str) -> Result<Uri, PoolError> {
        let full = format!("{}{path}", self.prefix);
        Uri::try_from(full.as_str()).map_err(|_| PoolError::Path(full))
    }

    async fn connect(&self) -> Result<Conn, PoolError> {
        let connect = |source| PoolError::Connect {
            addr: self.addr.clone(),
            source,
        };
        let tcp = tokio::net::TcpStream::connect(&self.addr);
        let stream = match self.connect_timeout {
            Some(after) => tokio::time::timeout(after, tcp)
                .await
                .map_err(|_| PoolError::ConnectTimeout {
                    addr: self.addr.clone(),
                    after,
                })?,
            None => tcp.await,
        }
        .map_err(connect)?;
        stream.set_nodelay(true).map_err(connect)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| PoolError::Handshake {
                addr: self.addr.clone(),
                source,
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "pooled HTTP connection ended");
            }
        });
        OPENED.fetch_add(1, Ordering::Relaxed);
        Ok(sender)
    }

    /// An idle connection ready to send, or a new one.
    async fn checkout(&self) -> Result<(Conn, bool), PoolError> {
        loop {
            let Some(mut c) = self.idle.lock().pop_back() else {
                break;
            };
            // Ready at once, unless the connection's task has not yet taken in the end of the
            // last answer (then it is a moment), or the server closed it (then it errs).
            if !c.is_closed() && c.ready().await.is_ok() {
                return Ok((c, true));
            }
        }
        Ok((self.connect().await?, false))
    }

    /// Sends `body` to `uri` (from [`Self::uri`], or a static path) with `content_type` and
    /// `extra` headers; the answer once its head has arrived.
    pub async fn send(
        &self,
        uri: Uri,
        content_type: &'static str,
        body: Bytes,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Answer, PoolError> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
        if let Some((name, value)) = &self.auth {
            h.insert(name, value.clone());
        }
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        for (name, value) in extra {
            h.insert(name, value.clone());
        }
        let (mut conn, mut reused) = self.checkout().await?;
        let response = loop {
            match conn.try_send_request(req).await {
                Ok(r) => break r,
                // Never written: the idle connection had been closed by the server. Once more on
                // a new connection (a fresh one failing the same way is an error).
                Err(mut e) if reused && e.message().is_some() => {
                    req = e.take_message().expect("checked above");
                    conn = self.connect().await?;
                    reused = false;
                }
                Err(e) => return Err(PoolError::Request(e.into_error())),
            }
        };
        let (head, body) = response.into_parts();
        Ok(Answer {
            status: head.status,
            headers: head.headers,
            body: Some(body),
            conn: Some(conn),
            idle: Arc::clone(&self.idle),
        })
    }

    /// Sends `body` (JSON) to `uri` (from [`Self::uri`], built once by a caller that sends to it
    /// often) with `extra` headers, and reads the answer whole.
    pub async fn post_json(
        &self,
        uri: Uri,
        body: Vec<u8>,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<(StatusCode, Bytes), PoolError> {
        let answer = self.send(uri, "application/json", Bytes::from(body), extra).await?;
        let status = answer.status;
        Ok((status, answer.bytes().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_it_cannot_serve_fall_back_and_bad_ones_are_errors() {
        assert!(HttpPool::for_base("https://example.invalid", None).unwrap().is_none());
        assert!(HttpPool::for_base("http://user@127.0.0.1:9", None).unwrap().is_none());
        assert!(HttpPool::for_base("http://127.0.0.1:9/v1?x=1", None).unwrap().is_none());
        assert!(HttpPool::for_base("http:///v1", None).unwrap().is_none());
        let p = HttpPool::for_base("http://127.0.0.1:9", None).unwrap().unwrap();
        assert_eq!((p.addr.as_str(), p.prefix.as_str()), ("127.0.0.1:9", ""));
        let p = HttpPool::for_base("http://localhost", None).unwrap().unwrap();
        assert_eq!(p.addr, "localhost:80");
        let p = HttpPool::for_base("http://[::1]:8080", None).unwrap().unwrap();
        assert_eq!(
            (p.addr.as_str(), p.host.to_str().unwrap()),
            ("[::1]:8080", "[::1]:8080")
        );
        let p = HttpPool::for_base("http://127.0.0.1:8000/v1/", None).unwrap().unwrap();
        assert_eq!((p.addr.as_str(), p.prefix.as_str()), ("127.0.0.1:8000", "/v1"));
        assert_eq!(p.uri("/chat/completions").unwrap(), "/v1/chat/completions");
        assert!(matches!(p.uri("/a b"), Err(PoolError::Path(_))));
        let e = bearer("bad\nkey").err().unwrap();
        assert!(e.contains("API key"), "{e}");
        let (name, value) = bearer("k1").unwrap();
        assert_eq!((name, value.is_sensitive()), (AUTHORIZATION, true));
        assert_eq!(format!("{value:?}"), "Sensitive", "a key is never printed");
    }

    /// The process-wide counts follow the pools: connections opened, idle ones held, and none
    /// left counted once a pool is gone. (The only test of this binary that opens a connection.)
    #[tokio::test(flavor = "current_thread")]
    async fn idle_and_opened_connections_are_counted_process_wide() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 1024];
                    while let Ok(n @ 1..) = s.read(&mut buf).await {
                        got.extend_from_slice(&buf[..n]);
                        // Each request is a head alone (an empty body): answer each one whole.
                        while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                            got.drain(..end + 4);
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if s.write_all(ok).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        let (opened, idle) = (connections_opened(), idle_connections());
        let pool = HttpPool::for_base(&base, None).unwrap().unwrap();
        let uri = || Uri::from_static("/");
        let (a, b) = tokio::join!(
            pool.send(uri(), "text/plain", Bytes::new(), &[]),
            pool.send(uri(), "text/plain", Bytes::new(), &[])
        );
        assert_eq!(&a.unwrap().bytes().await.unwrap()[..], b"ok");
        assert_eq!(&b.unwrap().bytes().await.unwrap()[..], b"ok");
        assert_eq!((connections_opened() - opened, idle_connections() - idle), (2, 2));
        let again = pool.send(uri(), "text/plain", Bytes::new(), &[]).await.unwrap();
        assert_eq!(idle_connections() - idle, 1, "one lent out");
        again.bytes().await.unwrap();
        assert_eq!((connections_opened() - opened, idle_connections() - idle), (2, 2));
        drop(pool);
        assert_eq!(idle_connections(), idle, "a pool gone holds none");
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_address() {
        // A port that was just free: nothing listens there now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = HttpPool::for_base(&format!("http://127.0.0.1:{port}"), None)
            .unwrap()
            .unwrap();
        let e = p
            .post_json(p.uri("/v1/tasks").unwrap(), b"{}".to_vec(), &[])
            .await
            .unwrap_err();
        assert!(e.is_connect());
        let text = aether_contracts::error_chain(&e);
        assert!(
            text.starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")) && text.contains("refused"),
            "{text}"
        );
        assert_eq!(text.matches("refused").count(), 1, "the cause once: {text}");
    }
}
