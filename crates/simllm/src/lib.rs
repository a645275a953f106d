//! `aether sim-llm`: the simulated model over HTTP, speaking the OpenAI-compatible chat
//! completions format (plain and server-sent events, tool calls, usage, images as data URLs),
//! with the same profiles and time scale as in process, and seeded fault injection (429 with
//! `Retry-After`, 500, 503, a slow first byte, a connection dropped mid-stream) plus a
//! concurrency-dependent slowdown, like a real server under load. Every answer says it is
//! simulated (`x-aether-simulated: true`, and `system_fingerprint: "aether-sim-llm"`).
//!
//! Routes: `POST /v1/chat/completions` (OpenAI), `POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse` (Gemini), `GET /v1/models`, `GET /healthz`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_contracts::{
    ContentPart, ImageReference, MessageContent, Metadata, ModelConfig, Role, SessionEvent, ToolCall, ToolDeclaration,
    ToolResult, ToolStatus, UniversalMessage,
};
use aether_providers::multimodal::{self, MediaLimits};
use aether_providers::{
    DeltaSink, HistoryView, ModelError, ModelProvider, ModelRequest, SimConfig, SimulatedModel, SystemPrompt,
};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// A failure the server can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 429 with `Retry-After`.
    RateLimit,
    /// HTTP 500.
    ServerError,
    /// HTTP 503.
    Unavailable,
    /// The answer starts only after `slow_first_byte`.
    SlowFirstByte,
    /// A streamed answer stops after a few pieces without `[DONE]` (a plain one, before its body).
    DropMidStream,
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "429" | "rate_limit" => Ok(Self::RateLimit),
            "500" | "server_error" => Ok(Self::ServerError),
            "503" | "unavailable" => Ok(Self::Unavailable),
            "slow" | "slow_first_byte" => Ok(Self::SlowFirstByte),
            "drop" | "drop_mid_stream" => Ok(Self::DropMidStream),
            other => Err(format!("unknown fault `{other}`: expected 429, 500, 503, slow or drop")),
        }
    }
}

/// Settings of the server.
#[derive(Debug, Clone)]
pub struct SimLlmConfig {
    pub sim: SimConfig,
    /// Share of requests (0..=1) that get one of `faults`, drawn with `sim.seed`.
    pub fault_rate: f64,
    pub faults: Vec<Fault>,
    /// Faults for the first requests, in order (`None`: serve normally), before random ones.
    pub fault_sequence: Vec<Option<Fault>>,
    /// `Retry-After` of a 429, in seconds (scaled by the time scale).
    pub retry_after_s: f64,
    pub slow_first_byte: Duration,
    /// Extra latency per request already in flight (scaled): a server slowing down under load.
    pub slowdown_per_inflight: Duration,
    /// When set, requests must carry `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
}

impl Default for SimLlmConfig {
    fn default() -> Self {
        Self {
            sim: SimConfig::default(),
            fault_rate: 0.0,
            faults: vec![
                Fault::RateLimit,
                Fault::ServerError,
                Fault::Unavailable,
                Fault::SlowFirstByte,
                Fault::DropMidStream,
            ],
            fault_sequence: Vec::new(),
            retry_after_s: 1.0,
            slow_first_byte: Duration::from_secs(2),
            slowdown_per_inflight: Duration::ZERO,
            api_key: None,
        }
    }
}

struct Shared {
    model: SimulatedModel,
    cfg: SimLlmConfig,
    script: Mutex<VecDeque<Option<Fault>>>,
    served: AtomicU64,
    inflight: AtomicUsize,
}

/// A handle to read what the server did.
#[derive(Clone)]
pub struct SimLlm {
    shared: Arc<Shared>,
}

impl SimLlm {
    pub fn new(cfg: SimLlmConfig) -> Self {
        let script = Mutex::new(cfg.fault_sequence.iter().copied().collect());
        Self {
            shared: Arc::new(Shared {
                model: SimulatedModel::new(cfg.sim.clone()),
                cfg,
                script,
                served: AtomicU64::new(0),
                inflight: AtomicUsize::new(0),
            }),
        }
    }

    /// Requests received so far (including refused ones).
    pub fn requests(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .route("/v1beta/models/{target}", post(gemini))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(Arc::clone(&self.shared))
    }

    /// Serves on `listener` until the future is dropped.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }
}

fn error(status: StatusCode, message: impl Into<String>, kind: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message.into(), "type": kind}})),
    )
        .into_response()
}

fn simulated(mut r: Response) -> Response {
    r.headers_mut()
        .insert("x-aether-simulated", HeaderValue::from_static("true"));
    r
}

async fn models(State(s): State<Arc<Shared>>) -> Response {
    let data: Vec<Value> = s
        .cfg
        .sim
        .profiles
        .names()
        .into_iter()
        .map(|m| json!({"id": m, "object": "model", "owned_by": "aether-sim-llm"}))
        .collect();
    simulated(Json(json!({"object": "list", "data": data})).into_response())
}

/// What an OpenAI request becomes for the simulated model.
struct Converted {
    system: SystemPrompt,
    events: Vec<Arc<SessionEvent>>,
    tools: Vec<Arc<ToolDeclaration>>,
    model: ModelConfig,
    metadata: Metadata,
}

fn invalid(message: impl Into<String>) -> String {
    message.into()
}

impl Converted {
    fn request(&self) -> ModelRequest<'_> {
        ModelRequest {
            model: &self.model,
            system: &self.system,
            history: HistoryView {
                committed: &self.events,
                pending: &[],
            },
            tools: &self.tools,
            metadata: &self.metadata,
        }
    }
}

fn bad(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, message, "invalid_request_error")
}

/// A tool the client declared, for the simulated model to plan calls to (it never runs here: the
/// client runs it).
fn remote_tool(name: &str, description: Option<&Value>, schema: Value) -> Result<Arc<ToolDeclaration>, String> {
    let valid_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_name {
        return Err(invalid(format!(
            "tool `{name}`: a name uses only letters, digits, `_` and `-`"
        )));
    }
    if !schema.is_object() {
        return Err(invalid(format!(
            "tool `{name}`: `parameters` must be a JSON Schema object"
        )));
    }
    Ok(Arc::new(ToolDeclaration::new(
        format!("remote.{name}"),
        name,
        description.and_then(Value::as_str).unwrap_or_default(),
        schema,
    )))
}

/// Converts an OpenAI request; the error is the 400 message.
fn convert(body: &Value) -> Result<Converted, String> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("`model` is required (a string)"))?;
    let messages = body.get("messages").and_then(Value::as_array).filter(|m| !m.is_empty());
    let messages = messages.ok_or_else(|| invalid("`messages` is required (a non-empty array)"))?;
    let mut system = String::new();
    let mut events: Vec<Arc<SessionEvent>> = Vec::new();
    let mut pending_results: Vec<ToolResult> = Vec::new();
    let mut call_names: HashMap<String, String> = HashMap::new();
    let (sid, aid): (Arc<str>, Arc<str>) = (Arc::from("sim-llm"), Arc::from("sim-llm"));
    let push = |events: &mut Vec<Arc<SessionEvent>>, m: UniversalMessage, r: Vec<ToolResult>| {
        events.push(Arc::new(SessionEvent::new(
            events.len() as u64,
            Arc::clone(&sid),
            Arc::clone(&aid),
            m,
            r,
        )));
    };
    for (i, m) in messages.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("messages[{i}].role is required")))?;
        if role != "tool" && !pending_results.is_empty() {
            push(
                &mut events,
                UniversalMessage::text(Role::Tool, "tool results"),
                std::mem::take(&mut pending_results),
            );
        }
        match role {
            "system" | "developer" => {
                system.push_str(m.get("content").and_then(Value::as_str).unwrap_or_default());
            }
            "user" => {
                let mut msg = UniversalMessage::user("");
                msg.content = match m.get("content") {
                    Some(Value::String(s)) => MessageContent::Text(Arc::from(s.as_str())),
                    Some(Value::Array(parts)) => MessageContent::Parts(
                        parts
                            .iter()
                            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                                Some("text") => p
                                    .get("text")
                                    .and_then(Value::as_str)
                                    .map(|t| file_reference(t).unwrap_or_else(|| ContentPart::Text(t.to_owned()))),
                                Some("image_url") => p.pointer("/image_url/url").and_then(Value::as_str).map(|u| {
                                    ContentPart::ImageReference(ImageReference {
                                        image_path: u.to_owned(),
                                        image_format: String::new(),
                                        width: None,
                                        height: None,
                                        metadata: Metadata::new(),
                                    })
                                }),
                                _ => None,
                            })
                            .collect(),
                    ),
                    _ => {
                        return Err(invalid(format!(
                            "messages[{i}].content must be a string or an array of parts"
                        )))
                    }
                };
                multimodal::inspect_message(&mut msg, &MediaLimits::default())
                    .map_err(|(part, e)| invalid(format!("messages[{i}].{part}: {e}")))?;
                push(&mut events, msg, Vec::new());
            }
            "assistant" => {
                let mut msg = UniversalMessage::assistant(m.get("content").and_then(Value::as_str).unwrap_or_default());
                if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                    let mut list = Vec::new();
                    for c in calls {
                        let name = c
                            .pointer("/function/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned();
                        let id = c.get("id").and_then(Value::as_str).map(str::to_owned);
                        if let Some(id) = &id {
                            call_names.insert(id.clone(), name.clone());
                        }
                        let args = c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
                        let parameters = serde_json::from_str::<Value>(args)
                            .ok()
                            .and_then(|v| v.as_object().cloned())
                            .unwrap_or_default();
                        list.push(ToolCall {
                            tool_name: name,
                            parameters,
                            tool_namespace: None,
                            call_id: id,
                        });
                    }
                    msg.tool_calls = Some(list);
                }
                push(&mut events, msg, Vec::new());
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let content = m.get("content").and_then(Value::as_str).unwrap_or_default();
                pending_results.push(ToolResult {
                    tool_name: call_names.get(&id).cloned().unwrap_or_else(|| id.clone()),
                    status: ToolStatus::Success,
                    result_data: serde_json::from_str(content).unwrap_or_else(|_| Value::from(content)),
                    error_message: None,
                    error: None,
                    execution_time: None,
                    call_id: Some(id),
                });
            }
            other => {
                return Err(invalid(format!(
                    "messages[{i}].role `{other}` is not system, user, assistant or tool"
                )))
            }
        }
    }
    if !pending_results.is_empty() {
        push(
            &mut events,
            UniversalMessage::text(Role::Tool, "tool results"),
            pending_results,
        );
    }
    let mut tools = Vec::new();
    for t in body.get("tools").and_then(Value::as_array).into_iter().flatten() {
        let f = t
            .get("function")
            .ok_or_else(|| invalid("tools[].function is required"))?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("tools[].function.name is required"))?;
        let schema = f
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object"}));
        tools.push(remote_tool(name, f.get("description"), schema)?);
    }
    let mut config = ModelConfig::new(model);
    config.max_tokens = body.get("max_tokens").and_then(Value::as_u64).map(|n| n as u32);
    let metadata = body
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    Ok(Converted {
        system: SystemPrompt::new(system),
        events,
        tools,
        model: config,
        metadata,
    })
}

/// A file reference as the OpenAI-compatible provider writes it, `[file PATH (TYPE, N bytes)]`
/// (the protocol has no part for a file path).
fn file_reference(text: &str) -> Option<ContentPart> {
    let inner = text.strip_prefix("[file ")?.strip_suffix(" bytes)]")?;
    let (path, rest) = inner.rsplit_once(" (")?;
    let (file_type, size) = rest.rsplit_once(", ")?;
    Some(ContentPart::FileReference(aether_contracts::FileReference {
        file_path: path.to_owned(),
        file_type: file_type.to_owned(),
        file_size: size.parse().ok(),
        encoding: "binary".into(),
        metadata: Metadata::new(),
    }))
}

fn pick_fault(s: &Shared, n: u64) -> Option<Fault> {
    if let Some(f) = s.script.lock().ok().and_then(|mut q| q.pop_front()) {
        return f;
    }
    if s.cfg.fault_rate <= 0.0 || s.cfg.faults.is_empty() {
        return None;
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(s.cfg.sim.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (rng.random::<f64>() < s.cfg.fault_rate).then(|| s.cfg.faults[rng.random_range(0..s.cfg.faults.len())])
}

fn scaled(s: &Shared, d: Duration) -> Duration {
    let f = s.cfg.sim.time_scale;
    if f > 0.0 && f.is_finite() {
        d.mul_f64(f)
    } else {
        Duration::ZERO
    }
}

/// Counts a request as in flight for as long as it lives (moved into a streaming task).
struct InFlight(Arc<Shared>);

impl InFlight {
    /// Enters, returning how many were in flight before.
    fn enter(s: &Arc<Shared>) -> (Self, usize) {
        let before = s.inflight.fetch_add(1, Ordering::AcqRel);
        (Self(Arc::clone(s)), before)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn tool_call_json(c: &ToolCall, i: usize) -> Value {
    let name = c.tool_name.strip_prefix("remote.").unwrap_or(&c.tool_name);
    json!({"index": i, "id": c.call_id, "type": "function", "function": {"name": name, "arguments": Value::Object(c.parameters.clone()).to_string()}})
}

fn usage_json(u: &aether_providers::TokenUsage) -> Value {
    json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens})
}

/// Where a client puts its key.
#[derive(Clone, Copy)]
enum KeyHeader {
    Bearer,
    Goog,
}

/// What every request goes through first: the key, the JSON body, the in-flight count, the
/// injected fault (answered here when it is an error) and the slowdown under load.
async fn admit(
    s: &Arc<Shared>,
    headers: &axum::http::HeaderMap,
    body: &axum::body::Bytes,
    key_header: KeyHeader,
) -> Result<(u64, Value, InFlight, Option<Fault>), Response> {
    let n = s.served.fetch_add(1, Ordering::Relaxed);
    if let Some(key) = &s.cfg.api_key {
        let given = match key_header {
            KeyHeader::Bearer => headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer ")),
            KeyHeader::Goog => headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()),
        };
        if given != Some(key.as_str()) {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "invalid API key",
                "invalid_request_error",
            ));
        }
    }
    let body: Value = serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    let (guard, inflight) = InFlight::enter(s);
    let fault = pick_fault(s, n);
    match fault {
        Some(Fault::RateLimit) => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "simulated rate limit",
                "rate_limit_error",
            );
            let after = format!(
                "{:.3}",
                scaled(s, Duration::from_secs_f64(s.cfg.retry_after_s)).as_secs_f64()
            );
            if let Ok(v) = HeaderValue::from_str(&after) {
                r.headers_mut().insert("retry-after", v);
            }
            return Err(simulated(r));
        }
        Some(Fault::ServerError) => {
            return Err(simulated(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "simulated server error",
                "server_error",
            )))
        }
        Some(Fault::Unavailable) => {
            return Err(simulated(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "simulated overload",
                "server_error",
            )))
        }
        Some(Fault::SlowFirstByte) => tokio::time::sleep(scaled(s, s.cfg.slow_first_byte)).await,
        _ => {}
    }
    if inflight > 0 && !s.cfg.slowdown_per_inflight.is_zero() {
        tokio::time::sleep(scaled(s, s.cfg.slowdown_per_inflight * inflight as u32)).await;
    }
    Ok((n, body, guard, fault))
}

async fn chat(State(s): State<Arc<Shared>>, headers: axum::http::HeaderMap, body: axum::body::Bytes) -> Response {
    let (n, body, guard, fault) = match admit(&s, &headers, &body, KeyHeader::Bearer).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let c = match convert(&body) {
        Ok(c) => c,
        Err(message) => return bad(message),
    };
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let id = format!("chatcmpl-sim-{n:x}");
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if !stream {
        if fault == Some(Fault::DropMidStream) {
            let broken =
                futures::stream::once(async { Err::<Vec<u8>, _>(std::io::Error::other("simulated connection drop")) });
            return simulated(Response::new(Body::from_stream(broken)));
        }
        let req = c.request();
        let r = match s.model.generate(req).await {
            Ok(r) => r,
            Err(e) => return simulated(model_error(e)),
        };
        drop(guard);
        let calls: Vec<Value> = r
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, c)| tool_call_json(c, i))
            .collect();
        let mut message = json!({"role": "assistant", "content": if r.text.is_empty() { Value::Null } else { Value::from(&*r.text) }});
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        let finish = if r.tool_calls.is_empty() { "stop" } else { "tool_calls" };
        return simulated(
            Json(json!({
                "id": id, "object": "chat.completion", "created": created, "model": c.model.model,
                "system_fingerprint": "aether-sim-llm",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage_json(&r.usage),
            }))
            .into_response(),
        );
    }

    // Streamed: the simulated model writes pieces into a bounded channel feeding the body.
    let (tx, rx) = mpsc::channel::<Result<String, std::io::Error>>(64);
    let shared = Arc::clone(&s);
    let model_name = c.model.model.clone();
    tokio::spawn(async move {
        let _guard = guard;
        let frame = |delta: Value, finish: Value| {
            format!(
                "data: {}\n\n",
                json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model_name,
                       "system_fingerprint": "aether-sim-llm", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            )
        };
        if tx
            .send(Ok(frame(json!({"role": "assistant"}), Value::Null)))
            .await
            .is_err()
        {
            return;
        }
        let piece = |text: &str| frame(json!({"content": text}), Value::Null);
        let Some(r) = stream_text(&shared, &c, fault, &tx, &piece).await else {
            return;
        };
        // Tool calls go out in fragments, as real servers send them: name first, arguments in two pieces.
        for (i, call) in r.tool_calls.iter().enumerate() {
            let full = tool_call_json(call, i);
            let args = full["function"]["arguments"].as_str().unwrap_or("{}").to_owned();
            let (a, b) = args.split_at(args.len() / 2);
            let head = json!({"tool_calls": [{"index": i, "id": full["id"], "type": "function", "function": {"name": full["function"]["name"], "arguments": a}}]});
            let tail = json!({"tool_calls": [{"index": i, "function": {"arguments": b}}]});
            if tx.send(Ok(frame(head, Value::Null))).await.is_err()
                || tx.send(Ok(frame(tail, Value::Null))).await.is_err()
            {
                return;
            }
        }
        let finish = if r.tool_calls.is_empty() { "stop" } else { "tool_calls" };
        let _ = tx.send(Ok(frame(json!({}), Value::from(finish)))).await;
        let usage = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model_name, "choices": [], "usage": usage_json(&r.usage)});
        let _ = tx.send(Ok(format!("data: {usage}\n\ndata: [DONE]\n\n"))).await;
    });
    sse_response(rx)
}

/// Where a streaming handler sends its SSE frames (an `Err` cuts the connection).
type Frames = mpsc::Sender<Result<String, std::io::Error>>;

/// Sends each streamed piece of text as one frame; with `drop_after`, cuts the connection after
/// that many pieces (an injected drop).
struct FrameSink<'a> {
    tx: &'a Frames,
    frame: &'a (dyn Fn(&str) -> String + Send + Sync),
    sent: usize,
    drop_after: Option<usize>,
}

#[async_trait::async_trait]
impl DeltaSink for FrameSink<'_> {
    async fn delta(&mut self, text: &str) -> Result<(), ModelError> {
        if self.drop_after.is_some_and(|n| self.sent >= n) {
            let _ = self
                .tx
                .send(Err(std::io::Error::other("simulated connection drop")))
                .await;
            return Err(ModelError::Other("dropped".into()));
        }
        self.sent += 1;
        self.tx
            .send(Ok((self.frame)(text)))
            .await
            .map_err(|_| ModelError::Other("client gone".into()))
    }
}

/// Streams the simulated answer's text as frames made by `frame`. `None` when the stream ended
/// early: an injected drop, a model error (sent as an error event), or the client gone.
async fn stream_text(
    shared: &Shared,
    c: &Converted,
    fault: Option<Fault>,
    tx: &Frames,
    frame: &(dyn Fn(&str) -> String + Send + Sync),
) -> Option<aether_providers::ModelResponse> {
    let drop_after = (fault == Some(Fault::DropMidStream)).then_some(3);
    let mut sink = FrameSink {
        tx,
        frame,
        sent: 0,
        drop_after,
    };
    let r = match shared.model.generate_stream(c.request(), &mut sink).await {
        Ok(r) => r,
        Err(_) if drop_after.is_some() => return None,
        Err(e) => {
            let _ = tx
                .send(Ok(format!(
                    "data: {}\n\n",
                    json!({"error": {"message": e.to_string()}})
                )))
                .await;
            return None;
        }
    };
    if drop_after.is_some() && r.text.is_empty() {
        let _ = tx.send(Err(std::io::Error::other("simulated connection drop"))).await;
        return None;
    }
    Some(r)
}

/// A server-sent-events response fed by `rx`.
fn sse_response(rx: mpsc::Receiver<Result<String, std::io::Error>>) -> Response {
    let body = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/event-stream"));
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    simulated(r)
}

fn model_error(e: ModelError) -> Response {
    match e {
        ModelError::RateLimited { .. } => error(StatusCode::TOO_MANY_REQUESTS, e.to_string(), "rate_limit_error"),
        ModelError::Timeout(_) => error(StatusCode::GATEWAY_TIMEOUT, e.to_string(), "timeout"),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), "server_error"),
    }
}

/// Converts a Gemini `generateContent` request; the error is the 400 message.
fn convert_gemini(body: &Value, model: &str) -> Result<Converted, String> {
    let contents = body.get("contents").and_then(Value::as_array).filter(|c| !c.is_empty());
    let contents = contents.ok_or_else(|| invalid("`contents` is required (a non-empty array)"))?;
    let system: String = body
        .pointer("/systemInstruction/parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let (sid, aid): (Arc<str>, Arc<str>) = (Arc::from("sim-llm"), Arc::from("sim-llm"));
    let mut events: Vec<Arc<SessionEvent>> = Vec::new();
    for (i, c) in contents.iter().enumerate() {
        let role = c.get("role").and_then(Value::as_str).unwrap_or("user");
        let parts = c
            .get("parts")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(format!("contents[{i}].parts is required")))?;
        let seq = events.len() as u64;
        let results: Vec<ToolResult> = parts
            .iter()
            .filter_map(|p| p.get("functionResponse"))
            .map(|f| ToolResult {
                tool_name: f.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                status: ToolStatus::Success,
                result_data: f.get("response").cloned().unwrap_or(Value::Null),
                error_message: None,
                error: None,
                execution_time: None,
                call_id: None,
            })
            .collect();
        if !results.is_empty() {
            let m = UniversalMessage::text(Role::Tool, "tool results");
            events.push(Arc::new(SessionEvent::new(
                seq,
                Arc::clone(&sid),
                Arc::clone(&aid),
                m,
                results,
            )));
            continue;
        }
        if role == "model" {
            let text: String = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            let mut m = UniversalMessage::assistant(text);
            let calls: Vec<ToolCall> = parts
                .iter()
                .filter_map(|p| p.get("functionCall"))
                .map(|f| ToolCall {
                    tool_name: f.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    parameters: f.get("args").and_then(Value::as_object).cloned().unwrap_or_default(),
                    tool_namespace: None,
                    call_id: None,
                })
                .collect();
            if !calls.is_empty() {
                m.tool_calls = Some(calls);
            }
            events.push(Arc::new(SessionEvent::new(
                seq,
                Arc::clone(&sid),
                Arc::clone(&aid),
                m,
                vec![],
            )));
            continue;
        }
        let mut m = UniversalMessage::user("");
        m.content = MessageContent::Parts(
            parts
                .iter()
                .filter_map(|p| {
                    if let Some(t) = p.get("text").and_then(Value::as_str) {
                        return Some(file_reference(t).unwrap_or_else(|| ContentPart::Text(t.to_owned())));
                    }
                    let d = p.get("inline_data").or_else(|| p.get("inlineData"))?;
                    let mime = d
                        .get("mime_type")
                        .or_else(|| d.get("mimeType"))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let data = d.get("data").and_then(Value::as_str).unwrap_or_default();
                    Some(ContentPart::ImageReference(ImageReference {
                        image_path: format!("data:{mime};base64,{data}"),
                        image_format: String::new(),
                        width: None,
                        height: None,
                        metadata: Metadata::new(),
                    }))
                })
                .collect(),
        );
        multimodal::inspect_message(&mut m, &MediaLimits::default())
            .map_err(|(part, e)| invalid(format!("contents[{i}].{part}: {e}")))?;
        events.push(Arc::new(SessionEvent::new(
            seq,
            Arc::clone(&sid),
            Arc::clone(&aid),
            m,
            vec![],
        )));
    }
    let mut tools = Vec::new();
    for t in body
        .pointer("/tools/0/functionDeclarations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("functionDeclarations[].name is required"))?;
        let schema = t
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object"}));
        tools.push(remote_tool(name, t.get("description"), schema)?);
    }
    let mut config = ModelConfig::new(model);
    config.max_tokens = body
        .pointer("/generationConfig/maxOutputTokens")
        .and_then(Value::as_u64)
        .map(|n| n as u32);
    Ok(Converted {
        system: SystemPrompt::new(system),
        events,
        tools,
        model: config,
        metadata: Metadata::new(),
    })
}

fn gemini_candidate(parts: Value, finish: Option<&str>) -> Value {
    let mut c = json!({"index": 0, "content": {"role": "model", "parts": parts}});
    if let Some(f) = finish {
        c["finishReason"] = json!(f);
    }
    c
}

fn gemini_usage(u: &aether_providers::TokenUsage) -> Value {
    json!({"promptTokenCount": u.prompt_tokens, "candidatesTokenCount": u.completion_tokens, "totalTokenCount": u.total_tokens})
}

fn gemini_calls(calls: &[ToolCall]) -> Vec<Value> {
    calls
        .iter()
        .map(|c| json!({"functionCall": {"name": c.tool_name.strip_prefix("remote.").unwrap_or(&c.tool_name), "args": c.parameters}}))
        .collect()
}

/// `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`.
async fn gemini(
    State(s): State<Arc<Shared>>,
    axum::extract::Path(target): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some((model, action)) = target.rsplit_once(':') else {
        return bad(format!(
            "`{target}`: expected MODEL:generateContent or MODEL:streamGenerateContent"
        ));
    };
    let stream = match action {
        "generateContent" => false,
        "streamGenerateContent" => true,
        other => return error(StatusCode::NOT_FOUND, format!("unknown method `{other}`"), "not_found"),
    };
    let (_n, body, guard, fault) = match admit(&s, &headers, &body, KeyHeader::Goog).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let c = match convert_gemini(&body, model) {
        Ok(c) => c,
        Err(message) => return bad(message),
    };
    if !stream {
        if fault == Some(Fault::DropMidStream) {
            let broken =
                futures::stream::once(async { Err::<Vec<u8>, _>(std::io::Error::other("simulated connection drop")) });
            return simulated(Response::new(Body::from_stream(broken)));
        }
        let r = match s.model.generate(c.request()).await {
            Ok(r) => r,
            Err(e) => return simulated(model_error(e)),
        };
        drop(guard);
        let mut parts: Vec<Value> = Vec::new();
        if !r.text.is_empty() {
            parts.push(json!({"text": &*r.text}));
        }
        parts.extend(gemini_calls(&r.tool_calls));
        return simulated(
            Json(json!({"candidates": [gemini_candidate(Value::Array(parts), Some("STOP"))], "usageMetadata": gemini_usage(&r.usage), "modelVersion": model}))
                .into_response(),
        );
    }
    let (tx, rx) = mpsc::channel::<Result<String, std::io::Error>>(64);
    let shared = Arc::clone(&s);
    let model = model.to_owned();
    tokio::spawn(async move {
        let _guard = guard;
        let piece = |text: &str| {
            let frame = json!({"candidates": [gemini_candidate(json!([{"text": text}]), None)]});
            format!("data: {frame}\r\n\r\n")
        };
        let Some(r) = stream_text(&shared, &c, fault, &tx, &piece).await else {
            return;
        };
        let last = json!({
            "candidates": [gemini_candidate(Value::Array(gemini_calls(&r.tool_calls)), Some("STOP"))],
            "usageMetadata": gemini_usage(&r.usage),
            "modelVersion": model,
        });
        let _ = tx.send(Ok(format!("data: {last}\r\n\r\n"))).await;
    });
    sse_response(rx)
}
