//! The direct client's HTTP/1.1 connections to an `http://` server, each driven by the call that
//! uses it.
//!
//! A general client (reqwest) drives every connection in a task of its own, so a request and
//! its answer each cross to another task, usually on another thread: on a loopback MCP call
//! those wake-ups cost more than the server's answer (measured: reqwest alone ~210–330 µs p50
//! per call against a server that wrk sees answer in 117–143 µs; hyper's connection driven
//! inline ~130–170 µs). Here a call pops an idle connection (or opens one: `TCP_NODELAY`), polls the
//! connection itself while it sends and reads, and pushes it back once the answer was read
//! whole. The stack's lock is held only to pop or push, never across I/O; it keeps at most
//! [`MAX_IDLE`] connections (one more is closed) and drops, when popped, any the server has
//! closed meanwhile. A request hyper refused before writing a byte on a reused connection is
//! sent once more on a new one; one that was written is never sent twice.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;

use super::Failure;

/// Idle connections kept for reuse.
pub(crate) const MAX_IDLE: usize = 64;

type Driver = Connection<TokioIo<TcpStream>, Full<Bytes>>;

struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: Driver,
}

/// The connections to one `http://host:port` origin.
pub(crate) struct Connections {
    /// `host:port`, resolved by each connect (rare: connections are reused).
    addr: String,
    host: HeaderValue,
    /// The request target: the URL's path and query.
    path: Uri,
    connect_timeout: Duration,
    idle: Mutex<Vec<Conn>>,
    opened: AtomicU64,
}

impl Connections {
    /// Connections for `url`, or `None` when it is not plain `http://` (TLS goes through reqwest).
    pub(crate) fn for_url(url: &str, connect_timeout: Duration) -> Result<Option<Self>, String> {
        let uri: Uri = url.parse().map_err(|e| format!("bad URL `{url}`: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Ok(None);
        }
        let authority = uri.authority().ok_or_else(|| format!("bad URL `{url}`: no host"))?;
        if authority.as_str().contains('@') {
            return Ok(None);
        }
        let addr = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(80));
        let path = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e| format!("bad URL `{url}`: {e}"))?;
        Ok(Some(Self {
            host: HeaderValue::from_str(authority.as_str()).map_err(|e| format!("bad URL `{url}`: {e}"))?,
            addr,
            path,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
            opened: AtomicU64::new(0),
        }))
    }

    pub(crate) fn path(&self) -> &Uri {
        &self.path
    }

    pub(crate) fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// Connections opened so far (a steady count means they are being reused).
    pub(crate) fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// An idle connection the server has not closed, if any.
    fn checkout(&self) -> Option<Conn> {
        loop {
            let mut conn = self.idle.lock().pop()?;
            // A connection the server closed resolves at once; an open one stays pending.
            if (&mut conn.driver).now_or_never().is_none() {
                return Some(conn);
            }
        }
    }

    fn checkin(&self, conn: Conn) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    async fn connect(&self) -> Result<Conn, Failure> {
        let not_sent = |e: String| Failure::NotSent(format!("{}: {e}", self.addr));
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| not_sent(format!("no connection within {:?}", self.connect_timeout)))?
            .map_err(|e| not_sent(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let (sender, driver) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| not_sent(e.to_string()))?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(Conn { sender, driver })
    }

    /// Sends `request` and hands the answer to `read`, driving the connection meanwhile.
    /// `read` says whether it read the answer whole (the connection can serve another request).
    pub(crate) async fn exchange<T, Fut>(
        &self,
        mut request: Request<Full<Bytes>>,
        read: impl FnOnce(Response<Incoming>) -> Fut,
    ) -> Result<T, Failure>
    where
        Fut: Future<Output = (Result<T, Failure>, bool)>,
    {
        let mut fresh_only = false;
        loop {
            let idle = if fresh_only { None } else { self.checkout() };
            let was_idle = idle.is_some();
            let mut conn = match idle {
                Some(c) => c,
                None => self.connect().await?,
            };
            let Conn { sender, driver } = &mut conn;
            let send = async {
                if let Err(e) = sender.ready().await {
                    return Err((e, Some(request)));
                }
                sender.try_send_request(request).await.map_err(|mut e| {
                    let unsent = e.take_message();
                    (e.into_error(), unsent)
                })
            };
            let (sent, closed) = drive(driver, send).await;
            let response = match sent {
                Ok(r) => r,
                // Nothing was written (hyper handed the request back): a reused connection the
                // server had closed. Once more on a new one.
                Err((_, Some(unsent))) if was_idle => {
                    request = unsent;
                    fresh_only = true;
                    continue;
                }
                Err((e, Some(_))) => return Err(Failure::NotSent(format!("{}: {e}", self.addr))),
                Err((e, None)) => return Err(Failure::Lost(aether_contracts::error_chain(&e))),
            };
            let ((out, whole), closed_reading) = drive(&mut conn.driver, read(response)).await;
            if whole && !closed && !closed_reading {
                self.checkin(conn);
            }
            return out;
        }
    }
}

/// Runs `work` while polling the connection that serves it; says whether the connection ended.
async fn drive<F: Future>(driver: &mut Driver, work: F) -> (F::Output, bool) {
    tokio::pin!(work);
    let mut ended = false;
    loop {
        tokio::select! {
            biased;
            out = &mut work => return (out, ended),
            _ = &mut *driver, if !ended => ended = true,
        }
    }
}
