//! The load generator's pooled HTTP/1.1 client against a real loopback server: connections are
//! reused, never more than the requests in flight, and one the server closes is replaced.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aether_harness::http_pool::HttpPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A minimal HTTP/1.1 server: answers every request with `{"n":K}` (K counts requests), keeps
/// the connection unless `close` is set; counts the connections it accepted.
async fn server(close: bool) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            let requests = Arc::clone(&requests);
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
                    let n = requests.fetch_add(1, Ordering::SeqCst);
                    let body = format!("{{\"n\":{n}}}");
                    let conn = if close { "Connection: close\r\n" } else { "" };
                    let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{conn}\r\n{body}", body.len());
                    if s.write_all(answer.as_bytes()).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (base, accepted)
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
    let (base, accepted) = server(false).await;
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
    let (base, accepted) = server(false).await;
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
    let (base, accepted) = server(true).await;
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
