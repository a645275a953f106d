//! `serve_http`'s in-line answer to a plain stateless `tools/call`, on loopback HTTP: it answers
//! what rmcp answers, byte for byte (the same call made to take rmcp's path is the reference);
//! whatever is not plain goes to rmcp and gets rmcp's answer; the direct client's calls take
//! the in-line path; a client that disconnects cancels the tool.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{Metadata, UniversalTool};
use aether_mcp::{serve_http, McpHub, McpServerConfig, ToolServer};
use aether_tools::{FnTool, RegisteredTool, ToolContext, ToolError, ToolRegistry};
use base64::Engine;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// How long any single wait in these tests may take before the test fails (not a sleep).
const PATIENCE: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {PATIENCE:?}"))
}

fn schema() -> Value {
    json!({"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]})
}

/// `t.echo` answers its arguments; `t.hang` signals that it started, waits an hour, and
/// signals when it is dropped.
fn tools(started: Arc<tokio::sync::Notify>, dropped: Arc<tokio::sync::Notify>) -> Vec<Arc<RegisteredTool>> {
    struct OnDrop(Arc<tokio::sync::Notify>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.notify_one();
        }
    }
    let echo = RegisteredTool::new_async(
        UniversalTool::new("t.echo", "Answers its arguments.", schema()),
        FnTool(|p: Metadata, _ctx: ToolContext| async move { Ok::<_, ToolError>(Value::Object(p)) }),
    )
    .unwrap();
    let hang = RegisteredTool::new_async(
        UniversalTool::new("t.hang", "Waits an hour.", schema()),
        FnTool(move |_p: Metadata, _ctx: ToolContext| {
            let guard = OnDrop(Arc::clone(&dropped));
            let started = Arc::clone(&started);
            async move {
                let _guard = guard;
                started.notify_one();
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, ToolError>(json!({}))
            }
        }),
    )
    .unwrap();
    vec![Arc::new(echo), Arc::new(hang)]
}

struct Served {
    server: ToolServer,
    url: String,
    addr: std::net::SocketAddr,
    started: Arc<tokio::sync::Notify>,
    dropped: Arc<tokio::sync::Notify>,
}

async fn serve() -> Served {
    let started = Arc::new(tokio::sync::Notify::new());
    let dropped = Arc::new(tokio::sync::Notify::new());
    let server = ToolServer::new(tools(Arc::clone(&started), Arc::clone(&dropped)), 50);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_http(listener, server.clone(), &[], None, std::future::pending()));
    Served {
        server,
        url: format!("http://{addr}/mcp"),
        addr,
        started,
        dropped,
    }
}

fn inline(s: &Served) -> u64 {
    s.server.stats().answered_inline.load(Ordering::Relaxed)
}

/// A stateless `tools/call` body, as the direct client writes it.
fn call_body(id: u64, tool: &str, arguments: Value, extra_meta: Value) -> String {
    let mut meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    meta.as_object_mut()
        .unwrap()
        .extend(extra_meta.as_object().cloned().unwrap_or_default());
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments, "_meta": meta}})
    .to_string()
}

/// POSTs `body` with the standard headers (`Mcp-Name: name`) and `extra` ones; status, content
/// type and body.
async fn post(url: &str, name: &str, body: String, extra: &[(&str, &str)]) -> (u16, String, String) {
    aether_mcp::ensure_tls_provider();
    let mut r = reqwest_mcp::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", name);
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    let resp = within("an answer", r.body(body).send()).await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ctype, resp.text().await.unwrap())
}

/// The answer with the tool's own run time (which differs between two calls) set to 0.
fn without_time(body: &str) -> Value {
    let mut v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    if let Some(meta) = v.pointer_mut("/result/_meta").and_then(Value::as_object_mut) {
        meta.insert("aether/execution_us".into(), json!(0));
    }
    v
}

fn base64_name(name: &str) -> String {
    format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_call_is_answered_in_line_as_rmcp_answers_it() {
    let s = serve().await;
    let cases = [
        ("t.echo", json!({"message": "hi"})),
        // A failed schema check is an isError result, not a refusal.
        ("t.echo", json!({"message": 7})),
    ];
    for (tool, args) in cases {
        let before = inline(&s);
        let fast = post(&s.url, tool, call_body(41, tool, args.clone(), json!({})), &[]).await;
        assert_eq!(inline(&s), before + 1, "answered in line: {fast:?}");
        // The same call with its name base64-encoded (which rmcp decodes): rmcp's path.
        let slow = post(&s.url, &base64_name(tool), call_body(41, tool, args, json!({})), &[]).await;
        assert_eq!(inline(&s), before + 1, "answered by rmcp: {slow:?}");
        assert_eq!((fast.0, &fast.1), (200, &"application/json".to_owned()));
        assert_eq!((slow.0, &slow.1), (fast.0, &fast.1));
        assert_eq!(without_time(&fast.2), without_time(&slow.2), "{} vs {}", fast.2, slow.2);
    }
    let ok = without_time(
        &post(
            &s.url,
            "t.echo",
            call_body(1, "t.echo", json!({"message": "hi"}), json!({})),
            &[],
        )
        .await
        .2,
    );
    assert_eq!(ok["result"]["structuredContent"], json!({"message": "hi"}));
    assert_eq!(ok["result"]["isError"], json!(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_not_plain_gets_rmcps_answer() {
    let s = serve().await;
    let echo = || call_body(3, "t.echo", json!({"message": "x"}), json!({}));
    // Unknown tool: rmcp's JSON-RPC error.
    let (status, _, body) = post(&s.url, "t.nope", call_body(3, "t.nope", json!({}), json!({})), &[]).await;
    assert_eq!(status, 200);
    assert!(body.contains("unknown tool `t.nope`"), "{body}");
    // Mcp-Name not the body's: rmcp's 400.
    let (status, _, body) = post(&s.url, "t.hang", echo(), &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("does not match"), "{body}");
    // A Host that is not allowed: rmcp's 403.
    let (status, _, _) = post(&s.url, "t.echo", echo(), &[("host", "evil.example")]).await;
    assert_eq!(status, 403);
    // A progress token: rmcp answers (JSON here, as nothing is reported before the result).
    let with_progress = call_body(4, "t.echo", json!({"message": "p"}), json!({"progressToken": "p-1"}));
    let (status, _, body) = post(&s.url, "t.echo", with_progress, &[]).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""message":"p""#), "{body}");
    // A body with a field rmcp would have to judge.
    let mut odd: Value = serde_json::from_str(&echo()).unwrap();
    odd["extra"] = json!(1);
    let (status, _, _) = post(&s.url, "t.echo", odd.to_string(), &[]).await;
    assert!(status == 200 || status == 400, "rmcp's answer: {status}");
    // Not JSON at all: refused by rmcp (415, as rmcp words it).
    let (status, _, _) = post(&s.url, "t.echo", "{nope".into(), &[]).await;
    assert!((400..500).contains(&status), "{status}");
    assert_eq!(inline(&s), 0, "none of these was answered in line");
    assert_eq!(
        s.server.stats().calls.load(Ordering::Relaxed),
        2,
        "two ran, both through rmcp"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_direct_clients_calls_are_answered_in_line() {
    let s = serve().await;
    let registry = Arc::new(ToolRegistry::new());
    let hub = within(
        "attach",
        McpHub::attach(Arc::clone(&registry), vec![McpServerConfig::http("s", &s.url)]),
    )
    .await
    .unwrap();
    let client = hub.client("s").unwrap();
    assert!(client.is_stateless());
    let mut args = Metadata::new();
    args.insert("message".into(), json!("direct"));
    for _ in 0..3 {
        let v = within(
            "a call",
            client.call("t.echo", args.clone(), &ToolContext::detached("c")),
        )
        .await
        .unwrap();
        assert_eq!(v, json!({"message": "direct"}));
    }
    assert_eq!(inline(&s), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_cancels_the_tool() {
    let s = serve().await;
    let body = call_body(9, "t.hang", json!({"message": "x"}), json!({}));
    let request = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\nmcp-protocol-version: 2026-07-28\r\n\
         mcp-method: tools/call\r\nmcp-name: t.hang\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    within("the tool to start", s.started.notified()).await;
    assert_eq!(inline(&s), 1);
    drop(tcp);
    within("the tool to be dropped", s.dropped.notified()).await;
    assert_eq!(s.server.stats().cancelled.load(Ordering::Relaxed), 1);
}
