//! [`HttpPool`]: the load generator's own HTTP/1.1 client for `--target http://…`, on hyper's
//! connection API with nothing layered on top.
//!
//! A general client (reqwest) pays per request for what a load generator never uses: URL
//! parsing, a pool keyed by scheme and host behind its own tasks, redirect and proxy policy,
//! header maps built from scratch. Here everything constant is built once (the target's address
//! and `Host`, the `Authorization` and `Content-Type` values, the paths), and a request is one
//! body buffer plus its `traceparent`.
//!
//! Connections are kept in a stack: a request pops one (or opens one: `TCP_NODELAY`, the
//! connection's task spawned), and pushes it back once its answer has been read whole, so a
//! worker keeps reusing a warm connection and there are never more connections than requests
//! in flight. The stack's lock is held only to pop or push, never across I/O, and it is
//! bounded ([`MAX_IDLE`]): a connection beyond it is closed. A request that hyper refused
//! before writing a byte (the server had closed the idle connection) is sent again on a new
//! connection; one that was written is never sent twice.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;

/// Idle connections kept for reuse; more are closed when their request ends.
pub const MAX_IDLE: usize = 4096;

/// A pool of HTTP/1.1 connections to one `http://host:port` origin.
pub struct HttpPool {
    /// `host:port`, resolved by each connect (connects are rare: connections are reused).
    addr: String,
    host: HeaderValue,
    auth: Option<HeaderValue>,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("HTTP handshake with {addr} failed: {source}")]
    Handshake { addr: String, source: hyper::Error },
    #[error("HTTP request failed: {0}")]
    Request(hyper::Error),
    #[error("reading the answer's body failed: {0}")]
    Body(hyper::Error),
}

impl HttpPool {
    /// A pool for `base` (`http://host:port`, no path); `None` for a base it does not serve
    /// (https, a path prefix), which the caller sends through its general client.
    pub fn for_base(base: &str, api_key: Option<&str>) -> Result<Option<Self>, String> {
        let Some(authority) = base.strip_prefix("http://") else {
            return Ok(None);
        };
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
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
        let auth = api_key
            .map(|k| HeaderValue::from_str(&format!("Bearer {k}")))
            .transpose()
            .map_err(|_| "the API key holds characters an HTTP header cannot carry".to_owned())?;
        Ok(Some(Self {
            addr,
            host,
            auth,
            idle: Mutex::new(Vec::new()),
        }))
    }

    /// Connections open and idle now.
    pub fn idle(&self) -> usize {
        self.idle.lock().len()
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, PoolError> {
        let connect = |source| PoolError::Connect {
            addr: self.addr.clone(),
            source,
        };
        let stream = tokio::net::TcpStream::connect(&self.addr).await.map_err(connect)?;
        stream.set_nodelay(true).map_err(connect)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| PoolError::Handshake {
                addr: self.addr.clone(),
                source,
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "load-generator connection ended");
            }
        });
        Ok(sender)
    }

    /// An idle connection ready to send, or a new one.
    async fn checkout(&self) -> Result<(SendRequest<Full<Bytes>>, bool), PoolError> {
        loop {
            let Some(mut c) = self.idle.lock().pop() else { break };
            // Ready at once, unless the connection's task has not yet taken in the end of the
            // last answer (then it is a moment), or the server closed it (then it errs).
            if !c.is_closed() && c.ready().await.is_ok() {
                return Ok((c, true));
            }
        }
        Ok((self.connect().await?, false))
    }

    fn checkin(&self, c: SendRequest<Full<Bytes>>) {
        if c.is_closed() {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(c);
        }
    }

    /// Sends `body` (JSON) to `path` with `extra` headers and reads the answer whole.
    pub async fn post_json(
        &self,
        path: &'static str,
        body: Vec<u8>,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<(StatusCode, Bytes), PoolError> {
        let mut req = Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = Uri::from_static(path);
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
        if let Some(a) = &self.auth {
            h.insert(AUTHORIZATION, a.clone());
        }
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
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
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(PoolError::Body)?
            .to_bytes();
        self.checkin(conn);
        Ok((status, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_it_cannot_serve_fall_back_and_bad_ones_are_errors() {
        assert!(HttpPool::for_base("https://example.invalid", None).unwrap().is_none());
        assert!(HttpPool::for_base("http://127.0.0.1:9/prefix", None).unwrap().is_none());
        assert!(HttpPool::for_base("http://user@127.0.0.1:9", None).unwrap().is_none());
        let p = HttpPool::for_base("http://127.0.0.1:9", None).unwrap().unwrap();
        assert_eq!(p.addr, "127.0.0.1:9");
        let p = HttpPool::for_base("http://localhost", None).unwrap().unwrap();
        assert_eq!(p.addr, "localhost:80");
        let p = HttpPool::for_base("http://[::1]:8080", None).unwrap().unwrap();
        assert_eq!(
            (p.addr.as_str(), p.host.to_str().unwrap()),
            ("[::1]:8080", "[::1]:8080")
        );
        let e = HttpPool::for_base("http://127.0.0.1:9", Some("bad\nkey"))
            .err()
            .unwrap();
        assert!(e.contains("API key"), "{e}");
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
        let e = p.post_json("/v1/tasks", b"{}".to_vec(), &[]).await.unwrap_err();
        assert!(
            e.to_string().contains(&format!("cannot connect to 127.0.0.1:{port}")),
            "{e}"
        );
    }
}
