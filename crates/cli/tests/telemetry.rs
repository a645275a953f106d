//! OpenTelemetry export as a user turns it on: `aether perf run` with the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, against an OTLP/HTTP receiver on loopback. The spans follow the
//! GenAI conventions; export is off without an endpoint and with `OTEL_SDK_DISABLED=true`.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::routing::post;
use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use parking_lot::Mutex;
use prost::Message as _;

/// One received span: name, ids, times and attributes.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    start: u64,
    end: u64,
    attrs: HashMap<String, String>,
    service: String,
    /// Each link's trace and span id, in hex.
    links: Vec<(String, String)>,
}

/// One received histogram data point: metric name, attributes, count (cumulative).
#[derive(Debug, Clone)]
struct Point {
    name: String,
    attrs: HashMap<String, String>,
    count: u64,
}

/// The largest count of each metric whose attributes include `has` (the points are cumulative,
/// possibly sent more than once), summed over attribute sets.
fn counted(points: &[Point], name: &str, has: &[(&str, &str)]) -> u64 {
    let mut best: HashMap<Vec<(String, String)>, u64> = HashMap::new();
    for p in points.iter().filter(|p| p.name == name) {
        if has.iter().all(|(k, v)| p.attrs.get(*k).map(String::as_str) == Some(*v)) {
            let mut key: Vec<_> = p.attrs.clone().into_iter().collect();
            key.sort();
            let e = best.entry(key).or_default();
            *e = (*e).max(p.count);
        }
    }
    best.values().sum()
}

/// An OTLP/HTTP receiver (`POST /v1/traces` and `/v1/metrics`, protobuf) on a loopback port.
async fn receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let (url, spans, _) = receiver_with_metrics().await;
    (url, spans)
}

async fn receiver_with_metrics() -> (String, Arc<Mutex<Vec<Span>>>, Arc<Mutex<Vec<Point>>>) {
    let got: Arc<Mutex<Vec<Span>>> = Arc::default();
    let points: Arc<Mutex<Vec<Point>>> = Arc::default();
    let sink = Arc::clone(&got);
    let point_sink = Arc::clone(&points);
    let app = axum::Router::new().route(
        "/v1/metrics",
        post(move |body: Bytes| {
            let sink = Arc::clone(&point_sink);
            async move {
                use opentelemetry_proto::tonic::metrics::v1::metric::Data;
                let req = ExportMetricsServiceRequest::decode(body).expect("an OTLP protobuf metrics export");
                for rm in req.resource_metrics {
                    for sm in rm.scope_metrics {
                        for m in sm.metrics {
                            if let Some(Data::Histogram(h)) = m.data {
                                for dp in h.data_points {
                                    let attrs = attributes(&dp.attributes);
                                    sink.lock().push(Point {
                                        name: m.name.clone(),
                                        attrs,
                                        count: dp.count,
                                    });
                                }
                            }
                        }
                    }
                }
                ""
            }
        }),
    );
    let app = app.route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
                for rs in req.resource_spans {
                    let service = rs
                        .resource
                        .iter()
                        .flat_map(|r| r.attributes.iter())
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| kv.value.as_ref()?.value.as_ref().map(text))
                        .unwrap_or_default();
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            let attrs = attributes(&s.attributes);
                            sink.lock().push(Span {
                                name: s.name,
                                trace_id: s.trace_id,
                                span_id: s.span_id,
                                parent: s.parent_span_id,
                                start: s.start_time_unix_nano,
                                end: s.end_time_unix_nano,
                                attrs,
                                service: service.clone(),
                                links: s.links.iter().map(|l| (hex(&l.trace_id), hex(&l.span_id))).collect(),
                            });
                        }
                    }
                }
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got, points)
}

/// Key-value attributes as strings.
fn attributes(kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .filter_map(|kv| Some((kv.key.clone(), text(kv.value.as_ref()?.value.as_ref()?))))
        .collect()
}

fn text(v: &Any) -> String {
    match v {
        Any::StringValue(s) => s.clone(),
        Any::BoolValue(b) => b.to_string(),
        Any::IntValue(i) => i.to_string(),
        Any::DoubleValue(d) => d.to_string(),
        // An array of strings as JSON (`gen_ai.response.finish_reasons`).
        Any::ArrayValue(a) => {
            let items: Vec<String> = a
                .values
                .iter()
                .filter_map(|v| v.value.as_ref())
                .map(|v| format!("{:?}", text(v)))
                .collect();
            format!("[{}]", items.join(","))
        }
        other => format!("{other:?}"),
    }
}

/// `aether perf run` of tool_regression (turns with one tool, then with several at once) with
/// `env`; waits for it to exit (it flushes its spans first).
async fn run_with(env: Vec<(&'static str, String)>) -> std::process::Output {
    run_with_summary(env).await.0
}

/// [`run_with`], and the summary it wrote (if it wrote one).
async fn run_with_summary(env: Vec<(&'static str, String)>) -> (std::process::Output, Option<serde_json::Value>) {
    // A directory per run: tests run at once.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = tmp(&format!(
        "otel-run-{}",
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    tokio::task::spawn_blocking(move || {
        let mut c = command(&[
            "perf",
            "run",
            "--scenario",
            "tool_regression",
            "--iterations",
            "3",
            "--time-scale",
            "0",
            "--tool-call-samples",
            "5",
            "-q",
            "-o",
            dir.join("s.json").to_str().unwrap(),
        ]);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let summary = std::fs::read(dir.join("s.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        (out, summary)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_run_exports_gen_ai_spans_to_an_otlp_endpoint() {
    let (url, got, points) = receiver_with_metrics().await;
    let (out, summary) = run_with_summary(vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", url.clone()),
        ("OTEL_SERVICE_NAME", "aether-test".into()),
    ])
    .await;
    assert!(out.status.success(), "{}", text_of(&out.stderr));
    let spans = got.lock().clone();
    let named = |prefix: &str| spans.iter().filter(|s| s.name.starts_with(prefix)).collect::<Vec<_>>();
    let (creates, turns, chats, tools) = (
        named("create_agent "),
        named("invoke_agent "),
        named("chat "),
        named("execute_tool "),
    );
    assert_eq!(turns.len(), 6, "two phases of three turns: {:?}", names(&spans));
    assert!(creates.len() >= 6, "{:?}", names(&spans));
    assert!(spans.iter().all(|s| s.service == "aether-test"), "OTEL_SERVICE_NAME");
    for t in &turns {
        let a = &t.attrs;
        assert_eq!(a["gen_ai.operation.name"], "invoke_agent");
        assert_eq!(a["gen_ai.provider.name"], "simulated");
        assert_eq!(a["aether.model.simulated"], "true", "the simulated model says so");
        assert!(
            a.contains_key("gen_ai.agent.id") && a.contains_key("gen_ai.conversation.id"),
            "{a:?}"
        );
        // A turn with tools: one model call to plan them, one to answer.
        let my_chats: Vec<_> = chats.iter().filter(|c| c.parent == t.span_id).collect();
        assert_eq!(my_chats.len(), 2, "chat spans of {t:?}");
        let finish: Vec<&str> = my_chats
            .iter()
            .map(|c| c.attrs["gen_ai.response.finish_reasons"].as_str())
            .collect();
        assert!(
            finish.contains(&"[\"tool_calls\"]") && finish.contains(&"[\"stop\"]"),
            "{finish:?}"
        );
        for c in &my_chats {
            assert!(
                !c.attrs.contains_key("gen_ai.input.messages") && !c.attrs.contains_key("gen_ai.output.messages"),
                "no message content unless asked for"
            );
            assert!(c.attrs["gen_ai.usage.input_tokens"].parse::<u64>().unwrap() > 0);
            assert!(c.attrs.contains_key("gen_ai.response.model") && c.attrs.contains_key("gen_ai.request.model"));
        }
        assert!(
            tools.iter().any(|x| x.parent == t.span_id),
            "the tools run inside the turn"
        );
    }
    for x in &tools {
        assert_eq!(x.attrs["gen_ai.tool.type"], "function");
        assert!(x.attrs.contains_key("gen_ai.tool.call.id"), "{:?}", x.attrs);
        assert!(x.name.ends_with(x.attrs["gen_ai.tool.name"].as_str()));
    }
    // The fan-out phase: calls of one turn overlap in time.
    let overlapping = turns.iter().any(|t| {
        let mine: Vec<_> = tools.iter().filter(|x| x.parent == t.span_id).collect();
        mine.iter().any(|a| {
            mine.iter()
                .any(|b| a.span_id != b.span_id && a.start < b.end && b.start < a.end)
        })
    });
    assert!(overlapping, "fan-out tool spans overlap");

    // The GenAI metrics, from the same recording point: one per span of the same operation.
    let points = points.lock().clone();
    let sim = [("gen_ai.provider.name", "simulated")];
    assert_eq!(
        counted(&points, "gen_ai.invoke_agent.duration", &sim),
        turns.len() as u64,
        "{points:?}"
    );
    assert_eq!(
        counted(
            &points,
            "gen_ai.client.operation.duration",
            &[("gen_ai.operation.name", "chat")]
        ),
        chats.len() as u64
    );
    assert_eq!(
        counted(&points, "gen_ai.client.token.usage", &[("gen_ai.token.type", "output")]),
        chats.len() as u64,
        "output tokens, once per answered call"
    );
    // Tool spans also come from the per-call cost table (calls outside turns, unmetered).
    let in_turns = tools
        .iter()
        .filter(|x| turns.iter().any(|t| t.span_id == x.parent))
        .count() as u64;
    assert_eq!(counted(&points, "gen_ai.execute_tool.duration", &[]), in_turns);

    // The summary's slowest requests name their turns' traces (each result's `metadata.trace_id`).
    let summary = summary.expect("a summary");
    let slowest = summary["slowest"].as_array().expect("slowest requests");
    assert!(!slowest.is_empty());
    for r in slowest {
        let trace = r["trace_id"].as_str().unwrap_or_else(|| panic!("no trace id: {r}"));
        assert!(
            turns.iter().any(|t| hex(&t.trace_id) == trace),
            "{trace} is an exported turn's trace"
        );
    }
}

/// A collector that takes connections and never answers: exports hang until their timeout, the
/// queue fills, spans are dropped and counted, and the turns do not notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_costs_dropped_spans_not_turns() {
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", hole.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hole.incoming() {
            held.push(c);
        }
    });
    let dir = tmp("otel-hole");
    let summary = dir.join("s.json");
    let out = {
        let summary = summary.clone();
        tokio::task::spawn_blocking(move || {
            command(&[
                "perf",
                "run",
                "--scenario",
                "burst_load",
                "--iterations",
                "2000",
                "--concurrency",
                "8",
                "--time-scale",
                "0",
                "-q",
                "-o",
                summary.to_str().unwrap(),
            ])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &url)
            .env("OTEL_BSP_MAX_QUEUE_SIZE", "64")
            .env("OTEL_EXPORTER_OTLP_TIMEOUT", "500")
            .output()
            .unwrap()
        })
        .await
        .unwrap()
    };
    let stderr = text_of(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["requests"]["failed"], 0, "no turn failed: {}", s["requests"]);
    let e = &s["span_export"];
    assert_eq!(e["queue_capacity"], 64, "{e}");
    assert!(
        e["queue_high_water"].as_u64().unwrap() <= 64,
        "the queue stays bounded: {e}"
    );
    assert!(e["dropped_queue_full"].as_u64().unwrap() > 0, "a full queue drops: {e}");
    assert_eq!(
        stderr.matches("spans are being dropped").count(),
        1,
        "one warning, not one per span: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_exported_without_an_endpoint_or_with_the_sdk_disabled() {
    let (url, got) = receiver().await;
    let out = run_with(vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", url.clone()),
        ("OTEL_SDK_DISABLED", "true".into()),
    ])
    .await;
    assert!(out.status.success(), "{}", text_of(&out.stderr));
    assert_eq!(
        got.lock().len(),
        0,
        "OTEL_SDK_DISABLED=true: the process exited, nothing was sent"
    );
    let out = run_with(vec![]).await;
    assert!(out.status.success());
    assert_eq!(
        text_of(&out.stderr),
        "",
        "no endpoint: no warning about a missing collector"
    );
    // A collector that is not there: a warning and dropped spans, never a failed turn.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let out = run_with(vec![("OTEL_EXPORTER_OTLP_ENDPOINT", closed)]).await;
    assert!(out.status.success(), "{}", text_of(&out.stderr));
    assert!(
        text_of(&out.stderr).contains("spans are being dropped"),
        "{}",
        text_of(&out.stderr)
    );
    // Bad settings are refused at start, with exit 2 and the setting named.
    for (var, value, says) in [
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "carrier-pigeon",
            "expected http/protobuf, http/json or grpc",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "collector:4318",
            "expected an http:// or https:// URL",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://collector:43180000",
            "the port is not a number",
        ),
    ] {
        let out = run_with(vec![(var, value.into())]).await;
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        assert!(
            text_of(&out.stderr).contains(says),
            "{var}={value}: {}",
            text_of(&out.stderr)
        );
    }
}

/// `aether serve` continues the caller's W3C trace: its HTTP server span is a child of the
/// `traceparent`'s span, and the turn's spans are children of the server span. Its JSON log
/// line of the request names the trace and the span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_continues_the_callers_trace() {
    let (collector, got) = receiver().await;
    let served = tokio::task::spawn_blocking(move || {
        start_serve(
            &[
                "--bind",
                "127.0.0.1:0",
                "--time-scale",
                "0",
                "--store",
                "memory",
                "--log-format",
                "json",
                "--log-level",
                "info",
            ],
            &[
                ("AETHER_API_KEYS", "k=team"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
            ],
        )
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let traceparent = format!("00-{trace}-{parent}-01");
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("{}{path}", served.url))
            .bearer_auth("k")
            .header("traceparent", &traceparent)
            .json(&body)
            .send()
    };
    let created: serde_json::Value = post(
        "/v1/agents",
        serde_json::json!({"agent_type": "support", "system_prompt": "Be brief.", "model_config": {"model": "gpt-4o-mini"}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let agent = created["agent_id"].as_str().unwrap().to_owned();
    let turn = post(
        "/v1/tasks",
        serde_json::json!({"task_id": "t1", "agent_id": agent, "session_id": "s1",
                           "messages": [{"role": "user", "content": "Hello"}]}),
    )
    .await
    .unwrap();
    assert_eq!(turn.status(), 200);
    let answer: serde_json::Value = turn.json().await.unwrap();
    assert_eq!(
        answer["metadata"]["trace_id"], trace,
        "the answer names its trace: {}",
        answer["metadata"]
    );
    // A live turn (server-sent events) continues the trace too: its turn runs after the
    // response has begun, on the live session's task, as a child of the request's span.
    let live_parent = "b7ad6b7169203331";
    let live = http
        .post(format!("{}/v1/tasks/stream", served.url))
        .bearer_auth("k")
        .header("traceparent", format!("00-{trace}-{live_parent}-01"))
        .json(
            &serde_json::json!({"task_id": "t2", "agent_id": agent, "session_id": "s1",
                                  "messages": [{"role": "user", "content": "Again"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let events = live.text().await.unwrap();
    assert!(events.contains("turn.complete"), "{events}");
    let logs = stop(served).await;

    let spans = got.lock().clone();
    let server = spans
        .iter()
        .find(|s| s.name == "POST /v1/tasks")
        .unwrap_or_else(|| panic!("no server span: {:?}", names(&spans)));
    assert_eq!(hex(&server.trace_id), trace, "the caller's trace continues");
    assert_eq!(hex(&server.parent), parent, "a child of the caller's span");
    assert_eq!(server.attrs["http.response.status_code"], "200");
    let turn = spans
        .iter()
        .find(|s| s.name.starts_with("invoke_agent ") && s.parent == server.span_id)
        .expect("the turn runs inside the request");
    assert_eq!(hex(&turn.trace_id), trace);
    let create = spans.iter().find(|s| s.name == "POST /v1/agents").unwrap();
    assert_eq!(hex(&create.trace_id), trace);
    let stream = spans.iter().find(|s| s.name == "POST /v1/tasks/stream").unwrap();
    assert_eq!(hex(&stream.parent), live_parent);
    let turns: Vec<_> = spans.iter().filter(|s| s.name.starts_with("invoke_agent ")).collect();
    assert_eq!(turns.len(), 2, "{:?}", names(&spans));
    assert!(
        turns
            .iter()
            .any(|t| t.parent == stream.span_id && hex(&t.trace_id) == trace),
        "the live turn is a child of its request's span"
    );

    // The request's JSON log line carries its trace and the server span's id.
    let line: serde_json::Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["fields"]["route"] == "/v1/tasks")
        .unwrap_or_else(|| panic!("no JSON log line of POST /v1/tasks:\n{logs}"));
    assert_eq!(line["trace_id"], trace, "{line}");
    assert_eq!(line["span_id"], hex(&server.span_id), "{line}");
}

/// SIGTERM: the server drains, flushes its spans and exits 0; what it logged after starting.
async fn stop(served: Served) -> String {
    let (mut child, mut stderr) = (served.child, served.stderr);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (status, logs) = tokio::task::spawn_blocking(move || {
        let mut logs = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut logs).unwrap();
        (child.wait().unwrap(), logs)
    })
    .await
    .unwrap();
    assert!(status.success(), "{logs}");
    logs
}

/// Serves `app` on a loopback port, noting the `traceparent` header of every request it gets.
async fn serve_noting_traceparents(app: axum::Router) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = app.layer(axum::middleware::from_fn({
        let seen = Arc::clone(&seen);
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            if let Some(tp) = req.headers().get("traceparent").and_then(|v| v.to_str().ok()) {
                seen.lock().push(tp.to_owned());
            }
            next.run(req)
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

/// `aether chat ARGS` with spans exported to `collector` (and `var` set, if given); waits for it to
/// exit (it flushes its spans first).
async fn chat_exporting_to(
    collector: String,
    args: &[&str],
    var: Option<(&'static str, &'static str)>,
) -> std::process::Output {
    let mut full = vec!["chat".to_owned()];
    full.extend(args.iter().map(|a| (*a).to_owned()));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = full.iter().map(String::as_str).collect();
        let mut c = command(&args);
        c.envs(var).env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector);
        c.output().unwrap()
    })
    .await
    .unwrap()
}

/// `aether chat` exporting to `collector`, one turn that calls `builtin.echo` of the MCP server
/// `NAME=URL` given as `mcp`; it must succeed.
async fn chat_echo_over_mcp(collector: String, mcp: &str) {
    let name = mcp.split('=').next().unwrap();
    let tool = format!("{name}.builtin_echo");
    let args = [
        "--mcp",
        mcp,
        "--tools",
        &tool,
        "--store",
        "memory",
        "--time-scale",
        "0",
        "-p",
        "Echo this.",
    ];
    let out = chat_exporting_to(collector, &args, None).await;
    assert!(out.status.success(), "{}", text_of(&out.stderr));
}

/// Lowercase hex of an id.
fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The exported span that a `traceparent` a server received names as its parent (checked to be
/// in the same trace).
fn parent_of<'a>(traceparent: &str, spans: &'a [Span]) -> &'a Span {
    assert!(aether_contracts::trace::is_traceparent(traceparent), "{traceparent}");
    let parts: Vec<&str> = traceparent.split('-').collect();
    let parent = spans
        .iter()
        .find(|s| hex(&s.span_id) == parts[2])
        .unwrap_or_else(|| panic!("no exported span {}: {:?}", parts[2], names(spans)));
    assert_eq!(hex(&parent.trace_id), parts[1], "the server joins the turn's trace");
    parent
}

fn names(spans: &[Span]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A model request carries the `chat` span's context: an OpenAI-compatible server and a Gemini
/// one (fakes on loopback that note the header) see a `traceparent` whose trace and parent are the
/// exported `chat` span's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_requests_carry_the_chat_spans_traceparent() {
    let openai = serde_json::json!({
        "id": "c1", "object": "chat.completion", "model": "fake-model",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Hello there."}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    });
    let gemini = serde_json::json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Hello there."}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3},
        "modelVersion": "fake-model"
    });
    for (provider, route, answer, key, convention) in [
        ("openai", "/v1/chat/completions", openai, "OPENAI_API_KEY", "openai"),
        ("gemini", "/v1/models/{call}", gemini, "GEMINI_API_KEY", "gcp.gemini"),
    ] {
        let (collector, got) = receiver().await;
        let app = axum::Router::new().route(route, post(move || async move { axum::Json(answer) }));
        let (addr, seen) = serve_noting_traceparents(app).await;
        let base = format!("http://{addr}/v1");
        let out = chat_exporting_to(
            collector,
            &[
                "--provider",
                provider,
                "--base-url",
                &base,
                "--store",
                "memory",
                "-p",
                "Hi",
            ],
            Some((key, "test-key")),
        )
        .await;
        assert!(out.status.success(), "{provider}: {}", text_of(&out.stderr));
        let seen = seen.lock().clone();
        assert_eq!(
            seen.len(),
            1,
            "{provider}: one model request, with its traceparent: {seen:?}"
        );
        let spans = got.lock().clone();
        let chat = parent_of(&seen[0], &spans);
        assert!(
            chat.name.starts_with("chat "),
            "{provider}: the model server is a child of the chat span"
        );
        assert_eq!(chat.attrs["gen_ai.provider.name"], convention, "the conventions' value");
        assert_eq!(
            chat.attrs["gen_ai.response.model"], "fake-model",
            "{provider}: {:?}",
            chat.attrs
        );
    }
}

/// Over `--target`, each request carries a `traceparent`; the server continues those traces, and
/// the summary names the trace ids of the slowest requests, which are the server's spans' traces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_runs_slowest_requests_lead_to_the_servers_traces() {
    let (collector, got) = receiver().await;
    let served = tokio::task::spawn_blocking(move || {
        start_serve(
            &["--bind", "127.0.0.1:0", "--time-scale", "0", "--store", "memory"],
            &[
                ("AETHER_API_KEYS", "k=team"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
            ],
        )
    })
    .await
    .unwrap();
    let dir = tmp("otel-target");
    let summary = dir.join("s.json");
    let out = {
        let (summary, url) = (summary.clone(), served.url.clone());
        tokio::task::spawn_blocking(move || {
            command(&[
                "perf",
                "run",
                "--scenario",
                "burst_load",
                "--target",
                &url,
                "--api-key",
                "k",
                "--iterations",
                "30",
                "--concurrency",
                "3",
                "-q",
                "-o",
                summary.to_str().unwrap(),
            ])
            .output()
            .unwrap()
        })
        .await
        .unwrap()
    };
    assert!(out.status.success(), "{}", text_of(&out.stderr));
    stop(served).await;

    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let slowest = s["slowest"].as_array().expect("the slowest requests");
    assert_eq!(slowest.len(), 10, "{slowest:?}");
    let ms: Vec<f64> = slowest.iter().map(|r| r["latency_ms"].as_f64().unwrap()).collect();
    assert!(ms.windows(2).all(|w| w[0] >= w[1]), "slowest first: {ms:?}");
    let spans = got.lock().clone();
    for r in slowest {
        let trace = r["trace_id"].as_str().expect("a trace id over --target");
        let server = spans
            .iter()
            .find(|sp| sp.name == "POST /v1/tasks" && hex(&sp.trace_id) == trace)
            .unwrap_or_else(|| panic!("no server span of trace {trace} ({})", r["task_id"]));
        assert!(
            spans
                .iter()
                .any(|sp| sp.name.starts_with("invoke_agent ") && sp.parent == server.span_id),
            "the turn's spans are in the same trace"
        );
    }
}

/// With `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`, chat spans carry the system
/// instructions, the messages sent and the answer, as JSON in the conventions' shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_content_is_recorded_only_on_opt_in() {
    let (url, got) = receiver().await;
    let out = run_with(vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", url),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true".into()),
    ])
    .await;
    assert!(out.status.success(), "{}", text_of(&out.stderr));
    let spans = got.lock().clone();
    let chats: Vec<_> = spans.iter().filter(|s| s.name.starts_with("chat ")).collect();
    assert!(!chats.is_empty());
    for c in &chats {
        let input: serde_json::Value = serde_json::from_str(&c.attrs["gen_ai.input.messages"]).unwrap();
        assert_eq!(input[0]["role"], "user", "{input}");
        assert_eq!(input[0]["parts"][0]["type"], "text");
        assert!(!input[0]["parts"][0]["content"].as_str().unwrap().is_empty());
        let system: serde_json::Value = serde_json::from_str(&c.attrs["gen_ai.system_instructions"]).unwrap();
        assert_eq!(system[0]["type"], "text");
        let output: serde_json::Value = serde_json::from_str(&c.attrs["gen_ai.output.messages"]).unwrap();
        assert_eq!(output[0]["role"], "assistant");
        let finish = output[0]["finish_reason"].as_str().unwrap();
        if finish == "tool_calls" {
            let parts = output[0]["parts"].as_array().unwrap();
            assert!(
                parts.iter().any(|p| p["type"] == "tool_call" && p["name"].is_string()),
                "{output}"
            );
        }
    }
    assert!(
        chats
            .iter()
            .any(|c| c.attrs["gen_ai.input.messages"].contains("\"role\":\"tool\"")),
        "the answering call sees the tool results"
    );
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`: spans reach a gRPC collector (tonic's, in process), and
/// the turns' exports run on the exporter's own runtime (no "no reactor running" panic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_grpc_collector() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;

    #[derive(Clone, Default)]
    struct Collector(Arc<Mutex<Vec<String>>>);
    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let names = request
                .into_inner()
                .resource_spans
                .into_iter()
                .flat_map(|rs| rs.scope_spans)
                .flat_map(|ss| ss.spans)
                .map(|s| s.name);
            self.0.lock().extend(names);
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let service = TraceServiceServer::new(collector.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    let out = run_with(vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", url),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
    ])
    .await;
    let stderr = text_of(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let names = collector.0.lock().clone();
    assert_eq!(
        names.iter().filter(|n| n.starts_with("invoke_agent ")).count(),
        6,
        "every turn's span, over gRPC: {names:?}"
    );
    assert!(names.iter().any(|n| n.starts_with("execute_tool ")));
}

/// An MCP tool call carries the `execute_tool` span's context: an MCP server over streamable
/// HTTP (in this process, so the test sees its requests) gets a `traceparent` header whose trace
/// and parent are the exported `execute_tool` span's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_calls_carry_the_execute_tool_spans_traceparent() {
    let (collector, got) = receiver().await;
    let echo = aether_runtime::Runtime::builder()
        .build()
        .unwrap()
        .tools()
        .resolve("builtin.echo")
        .unwrap();
    let server = aether_mcp::ToolServer::new(vec![echo], 50);
    let app = axum::Router::new().nest_service("/mcp", aether_mcp::streamable_http_service(server, &[]));
    let (addr, seen) = serve_noting_traceparents(app).await;
    let mcp = format!("inproc=http://{addr}/mcp");
    chat_echo_over_mcp(collector, &mcp).await;
    let seen = seen.lock().clone();
    assert_eq!(
        seen.len(),
        1,
        "the tools/call request alone carries the turn's context: {seen:?}"
    );
    let spans = got.lock().clone();
    let tool = parent_of(&seen[0], &spans);
    assert_eq!(
        tool.name, "execute_tool inproc.builtin_echo",
        "the MCP server is a child of the execute_tool span"
    );
}

/// `aether mcp-serve` continues its caller's trace: the `tools/call` server span it exports is a
/// child of the `execute_tool` span of the `aether chat` turn that called it (one trace across two
/// processes, the context carried in the request's `_meta`), with the MCP conventions' attributes;
/// SIGTERM stops the server and its spans are flushed on the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_serve_continues_the_callers_trace() {
    use std::io::BufRead as _;
    let (collector, got) = receiver().await;
    let mut served = command(&[
        "mcp-serve",
        "--http",
        "127.0.0.1:0",
        "--allow-anonymous",
        "--tool-latency-ms",
        "0",
    ]);
    served
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = served.spawn().expect("start aether mcp-serve --http");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.rsplit(' ').next().unwrap().trim().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "printed the URL: {line}");
    let mcp = format!("served={url}");
    chat_echo_over_mcp(collector, &mcp).await;
    // A plain HTTP client (a gateway, say) that sends the context only as the HTTP header, over
    // an MCP session (2025-06-18): the header is the parent.
    let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    header_only_call(&url, &format!("00-{trace}-{parent}-01"), None).await;
    // A gateway that traces its own HTTP hop: the header names its span, `_meta` the caller's.
    // `_meta` is the parent and the header's span is linked (the MCP conventions).
    let (meta_trace, meta_parent, hop) = (
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
        "53995c3f42cd8ad8",
    );
    header_only_call(
        &url,
        &format!("00-{trace}-{hop}-01"),
        Some(&format!("00-{meta_trace}-{meta_parent}-01")),
    )
    .await;
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "mcp-serve stops cleanly on SIGTERM: {status}");

    let spans = got.lock().clone();
    let server = spans
        .iter()
        .find(|s| s.name == "tools/call builtin.echo")
        .unwrap_or_else(|| panic!("no server span from mcp-serve: {:?}", names(&spans)));
    let caller = spans
        .iter()
        .find(|s| s.span_id == server.parent)
        .unwrap_or_else(|| panic!("the server span's parent was not exported: {:?}", names(&spans)));
    assert_eq!(caller.name, "execute_tool served.builtin_echo");
    assert_eq!(server.trace_id, caller.trace_id, "one trace across the processes");
    let a = &server.attrs;
    assert_eq!(a["mcp.method.name"], "tools/call");
    assert_eq!(a["gen_ai.operation.name"], "execute_tool");
    assert_eq!(a["gen_ai.tool.name"], "builtin.echo");
    assert_eq!(a["network.transport"], "tcp");
    assert!(!a["jsonrpc.request.id"].is_empty(), "{a:?}");
    assert!(!a.contains_key("error.type"), "{a:?}");

    let from_header = spans
        .iter()
        .find(|s| s.name == "tools/call builtin.echo" && hex(&s.trace_id) == trace)
        .unwrap_or_else(|| panic!("no server span in the header's trace: {:?}", names(&spans)));
    assert_eq!(hex(&from_header.parent), parent, "the header's span is the parent");
    assert!(from_header.links.is_empty(), "{:?}", from_header.links);

    let both = spans
        .iter()
        .find(|s| s.name == "tools/call builtin.echo" && hex(&s.trace_id) == meta_trace)
        .unwrap_or_else(|| panic!("no server span in _meta's trace: {:?}", names(&spans)));
    assert_eq!(hex(&both.parent), meta_parent, "_meta's span is the parent");
    assert_eq!(
        both.links,
        [(trace.to_owned(), hop.to_owned())],
        "the header's span is linked"
    );
    // The turn's own call sends the same context both ways: a parent, no link.
    assert!(server.links.is_empty(), "{:?}", server.links);
}

/// Over stdio too: `aether chat` starts `aether mcp-serve` as its MCP server (the child inherits
/// the OTLP endpoint), and the child's `tools/call` span, over a pipe, is a child of the turn's
/// `execute_tool` span, carried in the request's `_meta`. `chat` shuts its MCP servers down
/// before it exits (it closes the child's stdin and waits for it), so the child has flushed
/// its spans by the time `chat` ends; before, the child was killed and its spans lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_serve_over_stdio_continues_the_callers_trace() {
    let (collector, got) = receiver().await;
    let mcp = format!("piped={} mcp-serve --tool-latency-ms 0", env!("CARGO_BIN_EXE_aether"));
    chat_echo_over_mcp(collector, &mcp).await;
    let spans = got.lock().clone();
    let server = spans
        .iter()
        .find(|s| s.name == "tools/call builtin.echo")
        .unwrap_or_else(|| panic!("no server span from the stdio child: {:?}", names(&spans)));
    let caller = spans
        .iter()
        .find(|s| s.span_id == server.parent)
        .unwrap_or_else(|| panic!("the server span's parent was not exported: {:?}", names(&spans)));
    assert_eq!(caller.name, "execute_tool piped.builtin_echo");
    assert_eq!(server.trace_id, caller.trace_id, "one trace across the processes");
    assert_eq!(server.attrs["network.transport"], "pipe");
    assert_eq!(server.attrs["gen_ai.tool.name"], "builtin.echo");
}

/// `builtin.echo` called over an MCP session with raw JSON-RPC, `traceparent` as a header and,
/// when `meta` is given, another in the request's `_meta`.
async fn header_only_call(url: &str, traceparent: &str, meta: Option<&str>) {
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value, session: Option<&str>| {
        let mut r = http
            .post(url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body);
        if let Some(id) = session {
            r = r.header("mcp-session-id", id);
        }
        r
    };
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "gateway", "version": "1"}}});
    let resp = post(init, None).send().await.unwrap();
    assert!(resp.status().is_success(), "initialize: {}", resp.status());
    let session = resp.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = resp.bytes().await.unwrap();
    let initialized = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let resp = post(initialized, Some(&session)).send().await.unwrap();
    assert!(resp.status().is_success(), "initialized: {}", resp.status());
    let mut call = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "builtin.echo", "arguments": {"message": "via a gateway"}}});
    if let Some(tp) = meta {
        call["params"]["_meta"] = serde_json::json!({ "traceparent": tp });
    }
    let resp = post(call, Some(&session))
        .header("traceparent", traceparent)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "tools/call: {}", resp.status());
    let body = resp.text().await.unwrap();
    assert!(body.contains("via a gateway"), "{body}");
}

/// The adk framework makes the same spans as the native one, in the same tree: the runtime's
/// GenAI spans, once each (adk-rust's own tracing spans are not exported beside them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adk_turn_makes_the_same_spans_as_a_native_one() {
    let mut trees = Vec::new();
    for framework in ["native", "adk"] {
        let (collector, got) = receiver().await;
        let out = chat_exporting_to(
            collector,
            &[
                "--framework",
                framework,
                "--time-scale",
                "0",
                "--tools",
                "crm_lookup,fx_quote",
                "--store",
                "memory",
                "-p",
                "go",
            ],
            None,
        )
        .await;
        assert!(out.status.success(), "{framework}: {}", text_of(&out.stderr));
        let spans = got.lock().clone();
        let invoke = spans
            .iter()
            .find(|s| s.name.starts_with("invoke_agent "))
            .unwrap_or_else(|| panic!("{framework}: no invoke_agent span in {:?}", names(&spans)));
        for s in spans
            .iter()
            .filter(|s| s.name.starts_with("chat ") || s.name.starts_with("execute_tool "))
        {
            assert_eq!(s.parent, invoke.span_id, "{framework}: {} is the turn's child", s.name);
        }
        let mut tree: Vec<String> = names(&spans).iter().map(|n| (*n).to_owned()).collect();
        tree.sort();
        trees.push(tree);
    }
    assert_eq!(trees[0], trees[1], "the same spans on both frameworks");
    let count = |prefix: &str| trees[1].iter().filter(|n| n.starts_with(prefix)).count();
    assert_eq!(
        (count("chat "), count("execute_tool "), count("invoke_agent ")),
        (2, 2, 1)
    );
}
