//! The runtime's spans, named and attributed after the OpenTelemetry GenAI semantic conventions
//! (the `semantic-conventions-genai` repository, status Development, as read in November 2026:
//! `gen_ai.provider.name` replaces `gen_ai.system`).
//!
//! | span | when | kind |
//! |---|---|---|
//! | `create_agent {agent}` | the first step of the two-step protocol | client |
//! | `invoke_agent {agent}` | a turn, sync or live | internal |
//! | `chat {model}` | each model call, streaming included (a turn with tools makes two) | client |
//! | `execute_tool {tool}` | each tool call (they overlap when tools fan out; `aether_tools`) | internal |
//!
//! Attributes: `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
//! `gen_ai.response.model`, `gen_ai.response.finish_reasons`, `gen_ai.usage.input_tokens` /
//! `output_tokens`, `gen_ai.agent.id` / `name`, `gen_ai.conversation.id` (the chat session),
//! `gen_ai.tool.name` / `call.id` / `type`, `error.type`; and `aether.model.simulated = true` when
//! the simulated model answered. Message content (`gen_ai.system_instructions`,
//! `gen_ai.input.messages`, `gen_ai.output.messages`, JSON in the conventions' shape) is recorded
//! on `chat` spans only when the process opts in ([`set_capture_content`]: the CLI does when
//! `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`).
//!
//! **Cost.** The spans are OpenTelemetry spans made directly (see `aether_contracts::trace`),
//! only when the process turned them on ([`on`]: the CLI does when an OTLP endpoint is set).
//! Otherwise the turn path pays one atomic load per span site and nothing else: the traced
//! futures are boxed on the traced branch only, so the turn's own future does not grow (its size
//! is what the turn path's cost is most sensitive to; see part 8's notes).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use aether_contracts::trace::{self as otel, shared};
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::SpanKind;
use opentelemetry::{Context, KeyValue};

use crate::agents::{Agent, SpanParts};
use crate::model::{ModelError, ModelResponse};

/// Whether spans are made (one atomic load).
#[inline]
pub fn on() -> bool {
    otel::on()
}

/// `gen_ai.provider.name` of a provider: the conventions' well-known value where there is one
/// (`gcp.gemini` for Gemini), else the provider's own name (`openai`, `simulated`, `local`).
pub fn provider_name(agent: &Agent) -> &str {
    match agent.provider.info().name.as_str() {
        "gemini" => "gcp.gemini",
        other => other,
    }
}

/// The agent's name for span names: its configured name, else its type.
fn agent_name(agent: &Agent) -> &str {
    agent.config.name.as_deref().unwrap_or(agent.config.agent_type.as_str())
}

fn text(s: &str) -> opentelemetry::Value {
    opentelemetry::Value::from(s.to_owned())
}

/// `create_agent {agent}`: the first step of the protocol (the agent's id is recorded after).
pub(crate) fn create_agent(config: &aether_contracts::AgentConfig) -> Option<Context> {
    let name = config.name.as_deref().unwrap_or(config.agent_type.as_str());
    // Room for what [`created`] adds, so the span's list is not grown then.
    let mut a = Vec::with_capacity(5);
    a.push(KeyValue::new("gen_ai.operation.name", "create_agent"));
    a.push(KeyValue::new("gen_ai.agent.name", text(name)));
    a.push(KeyValue::new("gen_ai.request.model", text(&config.model_config.model)));
    otel::start(format!("create_agent {name}"), SpanKind::Client, a)
}

/// Records what the first step decided, and ends the span.
pub(crate) fn created(cx: &Option<Context>, outcome: Result<&Agent, &str>) {
    let Some(cx) = cx else { return };
    match outcome {
        Ok(agent) => otel::set_all(
            cx,
            [
                KeyValue::new("gen_ai.agent.id", shared(&agent.id)),
                KeyValue::new("gen_ai.provider.name", text(provider_name(agent))),
            ],
        ),
        Err(code) => otel::set(cx, "error.type", text(code)),
    }
    otel::end(cx);
}

/// The agent's span parts, made on its first traced turn.
fn parts(agent: &Agent) -> &SpanParts {
    agent.span_parts.get_or_init(|| {
        let arc = |s: &str| opentelemetry::Value::String(std::sync::Arc::<str>::from(s).into());
        Box::new(SpanParts {
            provider: arc(provider_name(agent)),
            model: arc(&agent.config.model_config.model),
            name: arc(agent_name(agent)),
            simulated: agent.provider.info().simulated,
            invoke_name: format!("invoke_agent {}", agent_name(agent)),
            chat_name: format!("chat {}", agent.config.model_config.model),
        })
    })
}

/// The attributes every span of an agent's turn shares, in a list with room for `more` (what
/// the span adds later: a span's list grown then is a reallocation on the turn's path).
fn agent_attributes(
    p: &SpanParts,
    operation: &'static str,
    conversation: &std::sync::Arc<str>,
    more: usize,
) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(5 + more);
    a.push(KeyValue::new("gen_ai.operation.name", operation));
    a.push(KeyValue::new("gen_ai.provider.name", p.provider.clone()));
    a.push(KeyValue::new("gen_ai.request.model", p.model.clone()));
    a.push(KeyValue::new("gen_ai.conversation.id", shared(conversation)));
    if p.simulated {
        a.push(KeyValue::new("aether.model.simulated", true));
    }
    a
}

/// `invoke_agent {agent}`: one turn.
fn invoke_agent(agent: &Agent, conversation: &std::sync::Arc<str>) -> Option<Context> {
    let p = parts(agent);
    // The agent's id and name, and `error.type` on a failure.
    let mut a = agent_attributes(p, "invoke_agent", conversation, 3);
    a.push(KeyValue::new("gen_ai.agent.id", shared(&agent.id)));
    a.push(KeyValue::new("gen_ai.agent.name", p.name.clone()));
    otel::start(p.invoke_name.clone(), SpanKind::Internal, a)
}

/// `chat {model}`: one model call; [`answered`] or the failure's kind records its outcome.
fn chat(agent: &Agent, conversation: &std::sync::Arc<str>) -> Option<Context> {
    let p = parts(agent);
    otel::start(
        p.chat_name.clone(),
        SpanKind::Client,
        // What `answered` adds (response model, finish reasons, two token counts, the output
        // when content is captured) or `error.type`, and the request's content when captured.
        agent_attributes(p, "chat", conversation, 7),
    )
}

static CAPTURE: AtomicBool = AtomicBool::new(false);

/// Records message content on `chat` spans from now on (off by default: prompts and answers may
/// hold personal data).
pub fn set_capture_content(on: bool) {
    CAPTURE.store(on, Ordering::Relaxed);
}

/// Whether message content is recorded.
#[inline]
pub(crate) fn capture() -> bool {
    CAPTURE.load(Ordering::Relaxed)
}

/// A request's content, for a `chat` span that records it.
pub(crate) struct Content {
    system: String,
    input: String,
}

/// `{"role": …, "parts": [{"type": "text", "content": …}]}`, the conventions' message shape.
fn message(role: impl serde::Serialize, text: &str) -> serde_json::Value {
    serde_json::json!({"role": role, "parts": [{"type": "text", "content": text}]})
}

/// What the model is sent: the system instructions and the history window.
pub(crate) fn content(r: &crate::model::ModelRequest<'_>) -> Content {
    let input: Vec<serde_json::Value> = r
        .history
        .iter()
        .map(|e| message(e.message.role, &e.message.text_content()))
        .collect();
    Content {
        system: serde_json::json!([{"type": "text", "content": &*r.system.text}]).to_string(),
        input: serde_json::Value::Array(input).to_string(),
    }
}

/// Records a model answer: the model (profile or deployment) that served it, why it stopped
/// (`ModelResponse::finish_reason`: `length`, `tool_calls` or `stop`) and the tokens.
fn answered(cx: &Context, r: &ModelResponse) {
    let reason = r.finish_reason();
    otel::set_all(
        cx,
        [
            KeyValue::new("gen_ai.response.model", shared(&r.served_by)),
            KeyValue::new(
                "gen_ai.response.finish_reasons",
                opentelemetry::Value::Array(vec![opentelemetry::StringValue::from(reason)].into()),
            ),
            KeyValue::new("gen_ai.usage.input_tokens", r.usage.prompt_tokens as i64),
            KeyValue::new("gen_ai.usage.output_tokens", r.usage.completion_tokens as i64),
        ],
    );
    if capture() {
        let mut out = message("assistant", &r.text);
        out["finish_reason"] = reason.into();
        if !r.tool_calls.is_empty() {
            let calls = r.tool_calls.iter().map(|c| {
                serde_json::json!({"type": "tool_call", "id": c.call_id, "name": c.tool_name, "arguments": c.parameters})
            });
            if let Some(parts) = out["parts"].as_array_mut() {
                parts.extend(calls);
            }
        }
        otel::set(cx, "gen_ai.output.messages", serde_json::json!([out]).to_string());
    }
}

/// Runs one model call in its `chat` span and records its outcome (the traced branch of a model
/// call; the caller boxes it).
pub(crate) async fn chat_call(
    agent: &Agent,
    conversation: &std::sync::Arc<str>,
    content: Option<Box<Content>>,
    call: impl Future<Output = Result<ModelResponse, ModelError>>,
) -> Result<ModelResponse, ModelError> {
    let Some(cx) = chat(agent, conversation) else {
        return call.await;
    };
    if let Some(c) = content {
        otel::set_all(
            &cx,
            [
                KeyValue::new("gen_ai.system_instructions", c.system),
                KeyValue::new("gen_ai.input.messages", c.input),
            ],
        );
    }
    let r = call.with_context(cx.clone()).await;
    match &r {
        Ok(response) => answered(&cx, response),
        Err(e) => otel::set(&cx, "error.type", e.kind()),
    }
    otel::end(&cx);
    r
}

/// Runs a turn's work in its `invoke_agent` span and records a failure (the traced branch of a
/// turn; the caller boxes it). Also returns the span's trace id (hex), which the turn's result
/// carries as `metadata.trace_id`.
pub(crate) async fn invoke_call<O>(
    agent: &Agent,
    conversation: &std::sync::Arc<str>,
    work: impl Future<Output = Result<O, crate::EngineError>>,
) -> (Result<O, crate::EngineError>, Option<String>) {
    let Some(cx) = invoke_agent(agent, conversation) else {
        return (work.await, None);
    };
    let r = work.with_context(cx.clone()).await;
    if let Err(e) = &r {
        otel::set(&cx, "error.type", e.code().as_str());
    }
    otel::end(&cx);
    let trace = otel::trace_id_hex(&cx);
    (r, Some(trace))
}

/// What became of the finished spans handed to the exporter (the CLI's OTLP export counts into
/// [`SPAN_EXPORT`]; the server's `/metrics` and the perf summary read it). Process-wide, as the
/// exporter is.
#[derive(Debug)]
pub struct SpanExport {
    /// The export queue's bound (0: no export).
    pub capacity: AtomicU64,
    /// The most spans that were ever waiting at once (≤ `capacity`).
    pub high_water: AtomicU64,
    /// Delivered to the collector.
    pub exported: AtomicU64,
    /// Dropped because the queue was full (the collector slow or down): turns never wait.
    pub dropped_queue_full: AtomicU64,
    /// Lost to failing exports: in an export that failed (refused, timed out, unreachable), or
    /// dropped as it finished during the back-off window that follows a failed export.
    pub dropped_export_failed: AtomicU64,
}

/// The process's span export counters.
pub static SPAN_EXPORT: SpanExport = SpanExport {
    capacity: AtomicU64::new(0),
    high_water: AtomicU64::new(0),
    exported: AtomicU64::new(0),
    dropped_queue_full: AtomicU64::new(0),
    dropped_export_failed: AtomicU64::new(0),
};

/// A reading of [`SPAN_EXPORT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct SpanExportStats {
    pub queue_capacity: u64,
    pub queue_high_water: u64,
    pub exported: u64,
    pub dropped_queue_full: u64,
    pub dropped_export_failed: u64,
}

impl SpanExportStats {
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_export_failed
    }
}

impl SpanExport {
    /// The counters now; `None` when spans are not exported.
    pub fn read(&self) -> Option<SpanExportStats> {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let capacity = get(&self.capacity);
        (capacity > 0).then(|| SpanExportStats {
            queue_capacity: capacity,
            queue_high_water: get(&self.high_water),
            exported: get(&self.exported),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_export_failed: get(&self.dropped_export_failed),
        })
    }
}
