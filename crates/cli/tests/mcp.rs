//! MCP tools against real servers: the third-party `@modelcontextprotocol/server-everything`
//! over stdio (installed from npm by `scripts/install-mcp-servers.sh`), and `aether mcp-serve`
//! over stdio and streamable HTTP: discovery with paging, calls, error results, progress into
//! live turns, cancellation, a crashed server restarted, a slow server hitting the timeout.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{
    AgentConfig, ChunkKind, Metadata, TaskChunkType, TaskRequest, TaskStreamChunk, ToolStatus, UniversalMessage,
    UniversalTool,
};
use aether_mcp::{McpClient, McpHub, McpServerConfig, SessionMode, ToolServer};
use aether_runtime::live::{LiveOptions, LiveSession};
use aether_runtime::tools::{FnTool, ProgressSink, RegisteredTool, ToolContext, ToolError, ToolProgress};
use aether_runtime::Runtime;
use common::*;
use serde_json::{json, Value};

/// How long any single wait in these tests may take before the test fails (not a sleep).
const PATIENCE: Duration = Duration::from_secs(20);

/// server-everything over stdio, or `None` (with the reason printed) when it is not installed
/// outside CI. In CI (`CI` set) a missing server fails the test: `.ci/run` installs it.
fn everything() -> Option<McpServerConfig> {
    aether_mcp::testing::server_everything()
}

/// `aether mcp-serve` over stdio, demo tools without latency, two tools per page.
fn aether_stdio(name: &str) -> McpServerConfig {
    McpServerConfig::stdio(
        name,
        env!("CARGO_BIN_EXE_aether"),
        ["mcp-serve", "--tool-latency-ms", "0", "--page-size", "2"],
    )
}

/// `aether mcp-serve --http` as a child process; killed on drop.
struct HttpServe {
    child: Child,
    url: String,
}

impl HttpServe {
    fn start() -> Self {
        let mut child = command(&[
            "mcp-serve",
            "--http",
            "127.0.0.1:0",
            "--tool-latency-ms",
            "0",
            "--page-size",
            "2",
        ])
        .env("AETHER_API_KEYS", "mcp-key=ops")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start aether mcp-serve --http");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.rsplit(' ').next().unwrap().trim().to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "printed the URL: {line}");
        Self { child, url }
    }
}

impl Drop for HttpServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ctx_with_progress() -> (ToolContext, tokio::sync::mpsc::Receiver<ToolProgress>) {
    let (sink, rx) = ProgressSink::channel(64);
    let mut ctx = ToolContext::detached("call-1");
    ctx.progress = Some(sink);
    (ctx, rx)
}

fn args(v: Value) -> Metadata {
    match v {
        Value::Object(m) => m,
        _ => panic!("arguments are an object"),
    }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {PATIENCE:?}"))
}

fn runtime() -> Runtime {
    Runtime::builder().time_scale(0.0).build().unwrap()
}

async fn create(rt: &Runtime, tools: &[&str]) -> String {
    let config = AgentConfig::new("gpt-4o-mini", "You use tools.").with_tools(tools.iter().copied());
    let r = rt.process(TaskRequest::create_agent("create", config)).await;
    assert!(r.is_success(), "create failed: {:?}", r.error);
    r.agent_id.unwrap()
}

fn live(rt: &Runtime, agent: &str, session: &str) -> LiveSession {
    let req = TaskRequest::converse(
        format!("t-{session}"),
        agent,
        session,
        vec![UniversalMessage::user("go")],
    );
    rt.start_live(req, LiveOptions::default()).unwrap()
}

async fn read_turn(s: &mut LiveSession) -> Vec<TaskStreamChunk> {
    let mut out = Vec::new();
    while let Some(c) = within("live chunk", s.next_chunk()).await {
        let last = c.is_final;
        out.push(c);
        if last {
            break;
        }
    }
    out
}

/// A live turn calling `tool` streams its progress as `tool.delta` chunks before `tool.result`.
async fn assert_live_progress(rt: &Runtime, tool: &str, steps: usize) {
    let agent = create(rt, &[tool]).await;
    let mut s = live(rt, &agent, &format!("live-{}", tool.replace('.', "-")));
    let chunks = read_turn(&mut s).await;
    let deltas: Vec<&TaskStreamChunk> = chunks
        .iter()
        .filter(|c| c.chunk_kind == Some(ChunkKind::ToolDelta))
        .collect();
    assert_eq!(deltas.len(), steps, "one tool.delta per progress step: {chunks:#?}");
    assert!(deltas.iter().all(|c| c.chunk_type == TaskChunkType::Progress));
    assert_eq!(deltas.last().unwrap().content["progress"], json!(steps as f64));
    assert_eq!(deltas.last().unwrap().content["total"], json!(steps as f64));
    let first_delta = chunks
        .iter()
        .position(|c| c.chunk_kind == Some(ChunkKind::ToolDelta))
        .unwrap();
    let result = chunks
        .iter()
        .position(|c| c.chunk_kind == Some(ChunkKind::ToolResult))
        .expect("a tool.result");
    assert!(first_delta < result, "progress comes before the result");
    assert_eq!(chunks.last().unwrap().chunk_type, TaskChunkType::Complete);
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_hits_the_timeout_in_a_turn() {
    let Some(cfg) = everything() else { return };
    let rt = runtime();
    let hub = McpHub::attach(
        Arc::clone(rt.tools()),
        vec![cfg.with_timeout(Duration::from_millis(300))],
    )
    .await
    .unwrap();
    // Without arguments the operation takes its default 10 s.
    let agent = create(&rt, &["everything.trigger-long-running-operation"]).await;
    let started = std::time::Instant::now();
    let r = within(
        "the turn",
        rt.process(TaskRequest::converse(
            "t",
            &agent,
            "slow",
            vec![UniversalMessage::user("go")],
        )),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the timeout cut the call short"
    );
    let tr = &r.tool_results[0];
    assert_eq!(tr.status, ToolStatus::Timeout, "{tr:?}");
    assert!(tr.error_message.as_deref().unwrap().contains("timed out"), "{tr:?}");
    assert_eq!(
        hub.client("everything").unwrap().stats().cancelled,
        1,
        "the server was told to cancel"
    );
}

/// Everything `aether mcp-serve` must do on one transport; says whether the client used the
/// stateless protocol.
async fn exercise_aether_server(cfg: McpServerConfig) -> bool {
    let rt = runtime();
    let hub = McpHub::attach(Arc::clone(rt.tools()), vec![cfg]).await.unwrap();
    let served: Vec<_> = rt
        .tools()
        .list()
        .into_iter()
        .filter(|t| t.spec.namespace.as_deref() == Some("aether"))
        .map(|t| t.full_name.to_string())
        .collect();
    // 3 built-in + 6 demo tools, read over 5 pages of 2.
    assert_eq!(served.len(), 9, "{served:?}");
    assert!(
        served.contains(&"aether.builtin_echo".to_owned()) && served.contains(&"aether.demo_crm_lookup".to_owned())
    );
    let client = hub.client("aether").unwrap();

    let ctx = ToolContext::detached("c");
    let v = client
        .call("builtin.echo", args(json!({"message": "hi"})), &ctx)
        .await
        .unwrap();
    assert_eq!(v, json!({"message": "hi"}));
    let outcome = client
        .call_timed("demo.fx_quote", args(json!({"base": "USD", "quote": "EUR"})), &ctx)
        .await;
    assert_eq!(outcome.result.unwrap()["pair"], json!("USD/EUR"));
    assert!(outcome.server_time.is_some(), "the server reports its own time");

    let e = client
        .call(
            "builtin.wait",
            args(json!({"duration_ms": 0, "steps": 1, "fail": true})),
            &ctx,
        )
        .await
        .unwrap_err();
    assert!(
        e.0.contains("failed as asked"),
        "an isError result is a tool error: {e}"
    );
    let e = client.call("builtin.echo", args(json!({})), &ctx).await.unwrap_err();
    assert!(e.0.contains("invalid parameters") && e.0.contains("message"), "{e}");
    let e = client.call("no.such_tool", Metadata::new(), &ctx).await.unwrap_err();
    assert!(e.0.contains("unknown tool"), "{e}");

    let (ctx_p, mut rx) = ctx_with_progress();
    client
        .call("builtin.wait", args(json!({"duration_ms": 20, "steps": 4})), &ctx_p)
        .await
        .unwrap();
    drop(ctx_p);
    let mut n = 0;
    while rx.recv().await.is_some() {
        n += 1;
    }
    assert_eq!(n, 4, "four progress notifications");

    // A live turn streams the server's progress as tool.delta chunks (builtin.wait's
    // example arguments: 100 ms in 4 steps).
    assert_live_progress(&rt, "aether.builtin_wait", 4).await;
    let stateless = client.is_stateless();
    let sessions = if stateless { 0 } else { 1 };
    assert_eq!(
        client.stats().sessions_opened,
        sessions,
        "every call on one pooled session, or none (stateless)"
    );
    stateless
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aether_mcp_serve_over_stdio() {
    assert!(!exercise_aether_server(aether_stdio("aether")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aether_mcp_serve_over_streamable_http() {
    let server = HttpServe::start();
    let mut config = McpServerConfig::http("aether", &server.url);
    config.headers.insert("Authorization".into(), "Bearer mcp-key".into());
    assert!(
        exercise_aether_server(config).await,
        "over HTTP, the stateless protocol: one POST per call"
    );

    // Without a key, or with another one: 401 before any MCP handling.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
                      "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    for key in [None, Some("wrong-key")] {
        let mut r = reqwest::Client::new()
            .post(&server.url)
            .header("accept", "application/json, text/event-stream")
            .json(&init);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::UNAUTHORIZED, "{key:?}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    }
}

#[test]
fn mcp_serve_over_http_needs_keys_and_anonymous_only_on_loopback() {
    let out = command(&["mcp-serve", "--http", "127.0.0.1:0"])
        .env_remove("AETHER_API_KEYS")
        .env_remove("AETHER_SERVE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("needs API keys"), "{}", text(&out.stderr));
    let out = command(&["mcp-serve", "--http", "0.0.0.0:0", "--allow-anonymous"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--allow-anonymous is refused on 0.0.0.0:0"),
        "{}",
        text(&out.stderr)
    );
    // A header for a server that is not there, or for a stdio one, is bad input too.
    let out = command(&["tools", "--mcp-header", "nope=Authorization: Bearer x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no MCP server named `nope`"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_aether_tool_times_out_and_pooled_versus_per_call_sessions() {
    let client = McpClient::new(aether_stdio("aether").with_timeout(Duration::from_millis(200))).unwrap();
    let ctx = ToolContext::detached("c");
    let started = std::time::Instant::now();
    let e = client
        .call("builtin.wait", args(json!({"duration_ms": 60000, "steps": 1})), &ctx)
        .await
        .unwrap_err();
    assert!(e.0.contains("timed out"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
    for i in 0..10 {
        client
            .call("builtin.echo", args(json!({"message": i.to_string()})), &ctx)
            .await
            .unwrap();
    }
    assert_eq!(client.stats().sessions_opened, 1);
    client.shutdown().await;

    let per_call = McpClient::new(aether_stdio("aether").with_session(SessionMode::PerCall)).unwrap();
    for i in 0..3 {
        per_call
            .call("builtin.echo", args(json!({"message": i.to_string()})), &ctx)
            .await
            .unwrap();
    }
    assert_eq!(
        per_call.stats().sessions_opened,
        3,
        "the original's design: a session per call"
    );
}

/// A tool that waits an hour, reporting progress, and signals when it is dropped.
fn slow_tool(dropped: Arc<tokio::sync::Notify>) -> Arc<RegisteredTool> {
    struct OnDrop(Arc<tokio::sync::Notify>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.notify_one();
        }
    }
    let schema =
        json!({"type": "object", "properties": {"job": {"type": "string", "examples": ["j-1"]}}, "required": ["job"]});
    let tool = RegisteredTool::new_async(
        UniversalTool::new("slow.op", "Runs for an hour.", schema),
        FnTool(move |_p: Metadata, ctx: ToolContext| {
            let guard = OnDrop(Arc::clone(&dropped));
            async move {
                let _guard = guard;
                ctx.report_progress(1.0, None, Some("started".into()));
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, ToolError>(json!({}))
            }
        }),
    )
    .unwrap();
    Arc::new(tool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_reach_an_http_server_and_cancelling_a_live_turn_cancels_the_mcp_call() {
    // An MCP server in this process, so the test can see what reaches it.
    let dropped = Arc::new(tokio::sync::Notify::new());
    let echo = Runtime::builder()
        .build()
        .unwrap()
        .tools()
        .resolve("builtin.echo")
        .unwrap();
    let server = ToolServer::new(vec![slow_tool(Arc::clone(&dropped)), echo], 50);
    let seen = Arc::new(parking_lot::Mutex::new(Vec::<http::HeaderMap>::new()));
    let app = axum::Router::new()
        .nest_service("/mcp", aether_mcp::streamable_http_service(server.clone(), &[]))
        .layer(axum::middleware::from_fn({
            let seen = Arc::clone(&seen);
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                seen.lock().push(req.headers().clone());
                next.run(req)
            }
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let rt = runtime();
    let hub = McpHub::attach(Arc::clone(rt.tools()), vec![McpServerConfig::http("inproc", &url)])
        .await
        .unwrap();
    let client = hub.client("inproc").unwrap();
    assert!(client.is_stateless(), "ids and cancel over the stateless protocol");
    let ctx = ToolContext {
        task_id: "task-7".into(),
        session_id: "session-7".into(),
        call_id: "call-7".into(),
        user_id: Some("user-7".into()),
        progress: None,
    };
    client
        .call("builtin.echo", args(json!({"message": "x"})), &ctx)
        .await
        .unwrap();
    let with_ids = seen
        .lock()
        .iter()
        .find(|h| h.contains_key("x-aether-call-id"))
        .cloned()
        .expect("a request carried the call's ids");
    for (h, v) in [
        ("x-aether-task-id", "task-7"),
        ("x-aether-session-id", "session-7"),
        ("x-aether-call-id", "call-7"),
        ("x-aether-user-id", "user-7"),
    ] {
        assert_eq!(with_ids[h], v);
    }

    // Cancel a live turn while the MCP call runs: the server's tool is stopped.
    let agent = create(&rt, &["inproc.slow_op"]).await;
    let mut s = live(&rt, &agent, "cancel-me");
    loop {
        let c = within("a tool.delta", s.next_chunk()).await.expect("stream open");
        if c.chunk_kind == Some(ChunkKind::ToolDelta) {
            assert_eq!(c.content["message"], json!("started"));
            break;
        }
    }
    s.cancel();
    within("the server-side tool to stop", dropped.notified()).await;
    let chunks = read_turn(&mut s).await;
    assert_eq!(chunks.last().unwrap().chunk_type, TaskChunkType::Cancelled);
    assert_eq!(client.stats().cancelled, 1);
    assert_eq!(server.stats().cancelled.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn bad_mcp_flags_get_clear_errors() {
    let out = aether(&["tools", "--mcp", "nothing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("NAME=URL"), "{}", text(&out.stderr));
    let out = aether(&["tools", "--mcp", "gone=/nonexistent/mcp-server"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cannot start"), "{}", text(&out.stderr));
    let out = aether(&["mcp-serve", "--tools", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("`nope` names no tool"),
        "{}",
        text(&out.stderr)
    );
    let cfg = tmp("mcp-bad").join("mcp.toml");
    std::fs::write(&cfg, "[[server]]\nname = \"x\"\nurl = \"ftp://host\"\n").unwrap();
    let out = aether(&["tools", "--mcp-config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("url"), "{}", text(&out.stderr));
}

#[test]
fn tools_lists_an_mcp_servers_tools() {
    let spec = format!("aether={} mcp-serve --tool-latency-ms 0", env!("CARGO_BIN_EXE_aether"));
    let out = aether(&["tools", "--mcp", &spec]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("aether.builtin_echo") && s.contains("mcp"), "{s}");
}

/// GET over plain HTTP/1.1 (no client library needed for one request).
fn http_get(base: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serve_runs_turns_with_mcp_tools_and_counts_them_in_metrics() {
    let spec = format!("aether={} mcp-serve --tool-latency-ms 0", env!("CARGO_BIN_EXE_aether"));
    let Served { mut child, url, .. } = start_serve(
        &[
            "--bind",
            "127.0.0.1:0",
            "--time-scale",
            "0",
            "--store",
            "memory",
            "--allow-anonymous",
            "--mcp",
            &spec,
        ],
        &[],
    );
    let summary = tmp("serve-mcp").join("tr.json");
    let out = aether(&[
        "perf",
        "run",
        "--scenario",
        "tool_regression",
        "--iterations",
        "4",
        "--concurrency",
        "1",
        "--tools",
        "aether.builtin_echo,aether.demo_fx_quote",
        "--target",
        &url,
        "--output",
        summary.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(v["requests"]["succeeded"], 8, "{}", v["errors"]);
    // 4 baseline turns call one tool, 4 fan-out turns call both.
    let metrics = http_get(&url, "/metrics");
    assert!(
        metrics.contains("aether_mcp_calls_total{server=\"aether\"} 12"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aether_mcp_sessions_opened_total{server=\"aether\"} 1"),
        "{metrics}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn tool_regression_reports_the_cost_of_mcp_calls_beside_in_process_ones() {
    let spec = format!("aether={} mcp-serve --tool-latency-ms 0", env!("CARGO_BIN_EXE_aether"));
    let web = HttpServe::start();
    let web_spec = format!("web={}", web.url);
    let summary = tmp("perf-mcp").join("tr.json");
    let out = aether(&[
        "perf",
        "run",
        "--scenario",
        "tool_regression",
        "--iterations",
        "4",
        "--time-scale",
        "0",
        "--tools",
        "crm_lookup,aether.builtin_echo,web.builtin_echo",
        "--mcp",
        &spec,
        "--mcp",
        &web_spec,
        "--mcp-header",
        "web=Authorization: Bearer mcp-key",
        "--tool-call-samples",
        "20",
        "--per-call-session-samples",
        "3",
        "--output",
        summary.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for line in [
        "aether.builtin_echo (stdio per_call)",
        "web.builtin_echo (http stateless)",
    ] {
        assert!(text(&out.stdout).contains(line), "{line}: {}", text(&out.stdout));
    }
    let v: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(v["requests"]["failed"], 0, "{}", v["errors"]);
    let rows = v["tools"]["call_costs"].as_array().expect("call_costs");
    let paths: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("-").to_owned();
            (s("tool"), s("transport"), s("session"))
        })
        .collect();
    let want = |t: &str, tr: &str, se: &str| (t.to_owned(), tr.to_owned(), se.to_owned());
    assert_eq!(
        paths,
        vec![
            want("builtin.echo", "in_process", "-"),
            want("aether.builtin_echo", "stdio", "pooled"),
            want("aether.builtin_echo", "stdio", "per_call"),
            // Over HTTP: the stateless protocol turns use, then a pooled session and a session
            // per call for comparison.
            want("web.builtin_echo", "http", "stateless"),
            want("web.builtin_echo", "http", "pooled"),
            want("web.builtin_echo", "http", "per_call"),
        ]
    );
    for (i, calls) in [(1, 20), (2, 3), (3, 20), (4, 20), (5, 3)] {
        assert_eq!(rows[i]["calls"], calls, "{}", rows[i]);
        assert_eq!(
            rows[i]["own_us"]["count"], calls,
            "the server reports its own time: {}",
            rows[i]
        );
    }
    assert!(rows.iter().all(|r| r["errors"] == 0));
    for i in [2, 5] {
        assert!(
            rows[i]["vs_pooled"]["p50"].as_f64().unwrap() > 1.0,
            "a new session per call costs more: {}",
            rows[i]
        );
    }
    assert!(rows[4]["vs_pooled"].is_object() && rows[3]["vs_pooled"].is_null());

    // A remote target's MCP servers are its own business.
    let out = aether(&[
        "perf",
        "run",
        "--scenario",
        "tool_regression",
        "--target",
        "http://127.0.0.1:9",
        "--mcp",
        &spec,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("aether serve --mcp"),
        "{}",
        text(&out.stderr)
    );
}
