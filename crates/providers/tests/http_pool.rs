//! The lean pooled HTTP/1.1 client (the load generator's and the providers' for plain-HTTP
//! endpoints) against a real loopback server: connections are
//! reused, never more than the requests in flight; one the server closes (saying so, or silently
//! while it is idle) is replaced; one whose request was abandoned is never reused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aether_providers::http_pool::{bearer, HttpPool, PoolError, DRAIN_LIMIT, IDLE_TIMEOUT};
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
    /// Answers the head and one piece of a chunked body that never ends; notifies `done` when
    /// the client closes the connection.
    Endless,
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
                    if mode == Mode::Endless {
                        let piece = format!("{{\"n\":{n}}}");
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{piece}\r\n",
                            piece.len()
                        );
                        s.write_all(head.as_bytes()).await.unwrap();
                        while s.read(&mut [0u8; 64]).await.is_ok_and(|n| n > 0) {}
                        done.notify_one();
                        return;
                    }
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

/// The `traceparent` each request carries (the server checks it arrives).
fn traceparent() -> [(hyper::header::HeaderName, hyper::header::HeaderValue); 1] {
    [(
        hyper::header::HeaderName::from_static("traceparent"),
        hyper::header::HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    )]
}

/// A pool for `base` sending the test's key (the servers here check it arrives).
fn pool_for(base: &str) -> HttpPool {
    HttpPool::for_base(base, Some(bearer("k1").unwrap())).unwrap().unwrap()
}

/// One POST of `{}` with a `traceparent`, as the harness sends a turn.
async fn post(pool: &HttpPool) -> Result<(hyper::StatusCode, bytes::Bytes), PoolError> {
    let uri = pool.uri("/v1/tasks").expect("a valid path");
    pool.post_json(uri, b"{}".to_vec(), &traceparent()).await
}

/// One POST of `{}` to `uri`: the answer once its head has arrived, its body unread.
async fn open(pool: &HttpPool, uri: hyper::Uri) -> aether_providers::http_pool::Answer {
    pool.send(
        uri,
        "application/json",
        bytes::Bytes::from_static(b"{}"),
        &traceparent(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_one_after_another_share_one_connection() {
    let Server { base, accepted, .. } = server(Mode::Keep).await;
    let pool = pool_for(&base);
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
    let pool = Arc::new(pool_for(&base));
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
    let pool = pool_for(&base);
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
    let pool = pool_for(&s.base);
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
    let pool = pool_for(&s.base);
    tokio::select! {
        r = post(&pool) => panic!("a mute server answered: {r:?}"),
        () = s.done.notified() => {}
    }
    assert_eq!(pool.idle(), 0);
    assert_eq!(s.accepted.load(Ordering::SeqCst), 1);
}

/// An answer read piece by piece gives its connection back at its end; one dropped before its
/// end gives it back once the rest has been read in the background. (One thread: each yield
/// lets the connection's task, the drain and the I/O driver run, with nothing else competing.)
#[tokio::test(flavor = "current_thread")]
async fn a_streamed_answer_returns_its_connection_only_once_read_to_its_end() {
    let Server { base, accepted, .. } = server(Mode::Keep).await;
    let pool = pool_for(&format!("{base}/prefix/"));
    let uri = pool.uri("/v1/tasks").unwrap();
    assert_eq!(uri, "/prefix/v1/tasks");
    let mut answer = open(&pool, uri.clone()).await;
    assert_eq!(answer.status, 200);
    let mut body = Vec::new();
    while let Some(piece) = answer.chunk().await.unwrap() {
        assert_eq!(pool.idle(), 0, "lent while its body is being read");
        body.extend_from_slice(&piece);
    }
    assert_eq!(body, b"{\"n\":0}");
    assert_eq!(pool.idle(), 1, "given back at the body's end");
    let half_read = open(&pool, uri.clone()).await;
    drop(half_read);
    // The drain is a task of its own: let it run (a bounded number of turns, no clock).
    for _ in 0..1000 {
        if pool.idle() == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(pool.idle(), 1, "the rest was read and the connection given back");
    let (status, body) = post(&pool).await.unwrap();
    assert_eq!((status.as_u16(), &body[..]), (200, &b"{\"n\":2}"[..]));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// An answer dropped midway whose body never ends is not waited for without end: after
/// `DRAIN_LIMIT` its connection is closed, never reused.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_dropped_answer_whose_body_never_ends_has_its_connection_closed() {
    let s = server(Mode::Endless).await;
    let pool = pool_for(&s.base);
    let mut answer = open(&pool, hyper::Uri::from_static("/v1/tasks")).await;
    assert_eq!(answer.chunk().await.unwrap().unwrap(), &b"{\"n\":0}"[..]);
    let dropped = tokio::time::Instant::now();
    drop(answer);
    s.done.notified().await;
    assert!(dropped.elapsed() >= DRAIN_LIMIT, "closed after {:?}", dropped.elapsed());
    assert_eq!(pool.idle(), 0);
}

/// Connections left idle past [`IDLE_TIMEOUT`] (a burst's extra ones) are closed when the pool
/// is next used; the one in use stays.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn connections_idle_past_the_timeout_are_closed_at_the_next_use() {
    let Server { base, accepted, .. } = server(Mode::Keep).await;
    let pool = pool_for(&base);
    let (a, b) = tokio::join!(post(&pool), post(&pool));
    assert_eq!((a.unwrap().0.as_u16(), b.unwrap().0.as_u16()), (200, 200));
    assert_eq!((pool.idle(), accepted.load(Ordering::SeqCst)), (2, 2));
    tokio::time::advance(IDLE_TIMEOUT / 2).await;
    post(&pool).await.unwrap();
    assert_eq!(pool.idle(), 2, "not yet idle too long");
    tokio::time::advance(IDLE_TIMEOUT).await;
    post(&pool).await.unwrap();
    assert_eq!(pool.idle(), 1, "the one unused for longer than the timeout was closed");
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "the one in use was reused");
}

/// A caller done with an answer whose body never ends (a stream held open after its last
/// event) waits for its end at most `DRAIN_LIMIT`; the connection is then closed.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn finishing_an_answer_whose_body_never_ends_waits_no_longer_than_the_limit() {
    let s = server(Mode::Endless).await;
    let pool = pool_for(&s.base);
    let answer = open(&pool, hyper::Uri::from_static("/v1/tasks")).await;
    let started = tokio::time::Instant::now();
    answer.finish().await;
    assert_eq!(started.elapsed(), DRAIN_LIMIT);
    s.done.notified().await;
    assert_eq!(pool.idle(), 0, "its connection was closed, not kept");
}
