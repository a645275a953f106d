//! What one MCP call over HTTP costs, and how much of it is the HTTP client's: one-at-a-time
//! `builtin.echo` calls on a server that speaks the stateless protocol (start one with
//! `aether mcp-serve --http 127.0.0.1:8765 --allow-anonymous --tool-latency-ms 0`), three ways:
//! `McpClient::call` (the direct client), the same POST with reqwest alone, and the same POST on
//! one hyper connection driven in the calling task (the floor for any client).
//!
//! ```text
//! cargo run --release -p aether-mcp --example call_cost -- http://127.0.0.1:8765/mcp [CALLS]
//! ```
//!
//! `CALL_COST_ONLY=client` (or `hyper`) runs that loop alone, once, without timing: for
//! `valgrind --tool=callgrind`, to count instructions per call (run twice with different CALLS
//! and divide the difference).

use std::time::Instant;

use aether_mcp::{McpClient, McpServerConfig};
use aether_tools::ToolContext;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

const BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"builtin.echo","arguments":{"message":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"w","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}"#;

const HEADERS: [(&str, &str); 5] = [
    ("content-type", "application/json"),
    ("accept", "application/json, text/event-stream"),
    ("mcp-protocol-version", "2026-07-28"),
    ("mcp-method", "tools/call"),
    ("mcp-name", "builtin.echo"),
];

/// P50 and P99 of `samples` (µs).
fn percentiles(mut samples: Vec<u128>) -> (u128, u128) {
    samples.sort_unstable();
    (samples[samples.len() / 2], samples[samples.len() * 99 / 100])
}

/// Runs `call` `n` times; the time of each (µs).
async fn timed<F: std::future::Future<Output = ()>>(n: usize, mut call: impl FnMut() -> F) -> Vec<u128> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        call().await;
        samples.push(started.elapsed().as_micros());
    }
    samples
}

/// One hyper connection, driven by the task that uses it.
struct Inline {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    driver: hyper::client::conn::http1::Connection<hyper_util::rt::TokioIo<tokio::net::TcpStream>, Full<Bytes>>,
    url: String,
    host: String,
}

impl Inline {
    async fn connect(url: &str) -> Self {
        let host = url.trim_start_matches("http://").split('/').next().unwrap().to_owned();
        let tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (sender, driver) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
        Self {
            sender,
            driver,
            url: url.to_owned(),
            host,
        }
    }

    async fn call(&mut self) {
        let mut request = http::Request::post(self.url.as_str()).header("host", self.host.as_str());
        for (k, v) in HEADERS {
            request = request.header(k, v);
        }
        let request = request.body(Full::new(Bytes::from_static(BODY.as_bytes()))).unwrap();
        let sender = &mut self.sender;
        let work = async move {
            let response = sender.send_request(request).await.unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        };
        tokio::select! {
            biased;
            body = work => assert!(!body.is_empty()),
            _ = &mut self.driver => panic!("the server closed the connection"),
        }
    }
}

#[tokio::main]
async fn main() {
    let url = std::env::args().nth(1).expect("usage: call_cost URL [CALLS]");
    let n: usize = std::env::args()
        .nth(2)
        .map_or(3000, |s| s.parse().expect("CALLS is a number"));
    let client = McpClient::new(McpServerConfig::http("x", &url)).unwrap();
    client.connect().await.unwrap();
    let ctx = ToolContext::detached("c");
    let serde_json::Value::Object(args) = serde_json::json!({"message": "x"}) else {
        unreachable!()
    };
    let mut inline = Inline::connect(&url).await;
    match std::env::var("CALL_COST_ONLY").as_deref() {
        Ok("client") => {
            for _ in 0..n {
                client.call("builtin.echo", args.clone(), &ctx).await.unwrap();
            }
            return;
        }
        Ok("hyper") => {
            for _ in 0..n {
                inline.call().await;
            }
            return;
        }
        _ => {}
    }
    aether_mcp::ensure_tls_provider();
    let http = reqwest_mcp::Client::builder().tcp_nodelay(true).build().unwrap();
    println!("stateless protocol: {}", client.is_stateless());
    for round in 0..3 {
        let direct = timed(n, || async {
            client.call("builtin.echo", args.clone(), &ctx).await.unwrap();
        })
        .await;
        let reqwest = timed(n, || async {
            let mut request = http.post(&url).body(BODY);
            for (k, v) in HEADERS {
                request = request.header(k, v);
            }
            request.send().await.unwrap().bytes().await.unwrap();
        })
        .await;
        let mut hyper = Vec::with_capacity(n);
        for _ in 0..n {
            let started = Instant::now();
            inline.call().await;
            hyper.push(started.elapsed().as_micros());
        }
        println!(
            "round {round}: p50/p99 µs: McpClient {:?}, reqwest alone {:?}, hyper inline {:?}",
            percentiles(direct),
            percentiles(reqwest),
            percentiles(hyper)
        );
    }
}
