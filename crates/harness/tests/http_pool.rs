//! The load generator's pooled HTTP/1.1 client against a real loopback server: connections are
//! reused, never more than the requests in flight; one the server closes (saying so, or silently
//! while it is idle) is replaced; one whose request was abandoned is never reused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aether_harness::http_pool::HttpPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// What the test server does after reading a request.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Answers and keeps the connection.
    Keep,
    /// Answers with `Connection: close` and closes.
    Close,
    /// Answers as if keeping the connection; closes it without a word when told.
    HangUp,
    /// Never answers.
    Mute,
}

/// A minimal HTTP/1.1 server: answers every request with `{"n":K}` (K counts requests) as `mode`
/// says; counts the connections it accepted. `HangUp` closes a connection after its answer once
/// `go` is notified; the server notifies `done` when it has (`HangUp`), or when it has taken a
/// request it will not answer (`Mute`).
struct Server {
    base: String,
    accepted: Arc<AtomicUsize>,
    go: Arc<Notify>,
    done: Arc<Notify>,
}

async fn server(mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (go, done) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let counted = Arc::clone(&accepted);
    let out = Server {
        base: base.clone(),
        accepted: Arc::clone(&accepted),
        go: Arc::clone(&go),
        done: Arc::clone(&done),
    };
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            let requests = Arc::clone(&requests);
            let (go, done) = (Arc::clone(&go), Arc::clone(&done));
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // Read one request: the head, then Content-Length bytes of body.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    assert!(head.contains("authorization: bearer k1"), "{head}");
                    assert!(head.contains("traceparent: 00-"), "{head}");
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                    if mode == Mode::Mute {
                        done.notify_one();
                        // Holds the connection open, unanswered, until the client drops it.
                        let _ = s.read(&mut [0u8; 1]).await;
                        return;
                    }
                    let n = requests.fetch_add(1, Ordering::SeqCst);
                    let body = format!("{{\"n\":{n}}}");
                    let conn = if mode == Mode::Close {
                        "Connection: close\r\n"
                    } else {
                        ""
                    };
                    let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{conn}\r\n{body}", body.len());
                    if s.write_all(answer.as_bytes()).await.is_err() || mode == Mode::Close {
                        return;
                    }
                    if mode == Mode::HangUp {
                        go.notified().await;
                        drop(s);
                        done.notify_one();
                        return;
                    }
                }
            });
        }
    });
    out
}

/// One POST of `{}` with a `traceparent`, as the harness sends a turn.
async fn post(pool: &HttpPool) -> Result<(hyper::StatusCode, bytes::Bytes), aether_harness::http_pool::PoolError> {
    let traceparent = (
        hyper::header::HeaderName::from_static("traceparent"),
        hyper::header::HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    );
    pool.post_json("/v1/tasks", b"{}".to_vec(), &[traceparent]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_one_after_another_share_one_connection() {
    let Server { base, accepted, .. } = server(Mode::Keep).await;
    let pool = HttpPool::for_base(&base, Some("k1")).unwrap().unwrap();
    for i in 0..50 {
        let (status, body) = post(&pool).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, format!("{{\"n\":{i}}}").as_bytes());
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(pool.idle(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_open_more_connections_than_are_in_flight() {
    let Server { base, accepted, .. } = server(Mode::Keep).await;
    let pool = Arc::new(HttpPool::for_base(&base, Some("k1")).unwrap().unwrap());
    for _ in 0..5 {
        let round = (0..16).map(|_| {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { post(&pool).await })
        });
        for r in futures::future::join_all(round).await {
            assert_eq!(r.unwrap().unwrap().0, 200);
        }
    }
    let opened = accepted.load(Ordering::SeqCst);
    assert!((1..=16).contains(&opened), "{opened} connections for 16 in flight");
    assert_eq!(pool.idle(), opened);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_server_closes_is_replaced() {
    let Server { base, accepted, .. } = server(Mode::Close).await;
    let pool = HttpPool::for_base(&base, Some("k1")).unwrap().unwrap();
    for i in 0..5 {
        let (status, body) = post(&pool).await.unwrap();
        assert_eq!((status.as_u16(), &body[..]), (200, format!("{{\"n\":{i}}}").as_bytes()));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        5,
        "one connection per answer that said close"
    );
}

/// A server that hangs up on an idle connection between requests, without a word: the next
/// request does not fail and is not sent twice; it goes out on a new connection. (The hang-up
/// must have reached the client's runtime: a request that races it is written and fails, as
/// with any HTTP/1.1 client. One thread, and a yield: tokio polls its I/O driver before it
/// resumes a yielded task.)
#[tokio::test(flavor = "current_thread")]
async fn a_connection_closed_silently_while_idle_is_replaced_before_anything_is_written() {
    let s = server(Mode::HangUp).await;
    let pool = HttpPool::for_base(&s.base, Some("k1")).unwrap().unwrap();
    for i in 0..5 {
        let (status, body) = post(&pool).await.unwrap();
        assert_eq!((status.as_u16(), &body[..]), (200, format!("{{\"n\":{i}}}").as_bytes()));
        assert_eq!(pool.idle(), 1, "the answered connection went back to the pool");
        // The server closes that idle connection before the next request takes it.
        s.go.notify_one();
        s.done.notified().await;
        tokio::task::yield_now().await;
    }
    // One connection per answer, and every request answered once (the count in each body).
    assert_eq!(s.accepted.load(Ordering::SeqCst), 5);
}

/// A request given up mid-exchange (its future dropped) takes its connection with it: a
/// connection holding half an exchange is never handed to the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_request_does_not_return_its_connection() {
    let s = server(Mode::Mute).await;
    let pool = HttpPool::for_base(&s.base, Some("k1")).unwrap().unwrap();
    tokio::select! {
        r = post(&pool) => panic!("a mute server answered: {r:?}"),
        () = s.done.notified() => {}
    }
    assert_eq!(pool.idle(), 0);
    assert_eq!(s.accepted.load(Ordering::SeqCst), 1);
}
