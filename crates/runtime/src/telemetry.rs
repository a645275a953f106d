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
//! **Cost.** The spans are `tracing` spans at DEBUG on target [`TARGET`], made only when a
//! subscriber asks for that target ([`on`]: the CLI's OpenTelemetry export does, when an OTLP
//! endpoint is set). Otherwise the turn path pays one cached check per span and nothing else: the
//! instrumented futures are boxed on the traced branch only, so the turn's own future does not
//! grow (its size is what the turn path's cost is most sensitive to; see part 8's notes).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tracing::field::Empty;
use tracing::{Instrument as _, Span};

use crate::agents::Agent;
use crate::model::{ModelError, ModelResponse};

/// The target of every GenAI span (the CLI's exporter listens to it).
pub const TARGET: &str = "aether::gen_ai";

/// Whether a subscriber records the GenAI spans (a cached check of a callsite).
#[inline]
pub fn on() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::DEBUG)
}

/// The agent's name for span names: its configured name, else its type.
fn agent_name(agent: &Agent) -> &str {
    agent.config.name.as_deref().unwrap_or(agent.config.agent_type.as_str())
}

/// `create_agent {agent}`: the first step of the protocol (the agent's id is recorded after).
pub(crate) fn create_agent(config: &aether_contracts::AgentConfig) -> Span {
    let name = config.name.as_deref().unwrap_or(config.agent_type.as_str());
    tracing::debug_span!(
        target: TARGET,
        "create_agent",
        otel.name = %format_args!("create_agent {name}"),
        otel.kind = "client",
        gen_ai.operation.name = "create_agent",
        gen_ai.agent.name = name,
        gen_ai.request.model = config.model_config.model.as_str(),
        gen_ai.agent.id = Empty,
        gen_ai.provider.name = Empty,
        error.type = Empty,
    )
}

/// Records what the first step decided.
pub(crate) fn created(span: &Span, agent: &Agent) {
    if span.is_disabled() {
        return;
    }
    span.record("gen_ai.agent.id", &*agent.id);
    span.record("gen_ai.provider.name", agent.provider.info().name.as_str());
}

/// `invoke_agent {agent}`: one turn.
pub(crate) fn invoke_agent(agent: &Agent, conversation: &str) -> Span {
    let info = agent.provider.info();
    tracing::debug_span!(
        target: TARGET,
        "invoke_agent",
        otel.name = %format_args!("invoke_agent {}", agent_name(agent)),
        otel.kind = "internal",
        gen_ai.operation.name = "invoke_agent",
        gen_ai.provider.name = info.name.as_str(),
        gen_ai.agent.id = &*agent.id,
        gen_ai.agent.name = agent_name(agent),
        gen_ai.conversation.id = conversation,
        gen_ai.request.model = agent.config.model_config.model.as_str(),
        aether.model.simulated = info.simulated,
        error.type = Empty,
    )
}

/// `chat {model}`: one model call; [`answered`] or [`failed`] records its outcome.
pub(crate) fn chat(agent: &Agent, conversation: &str) -> Span {
    let info = agent.provider.info();
    let model = agent.config.model_config.model.as_str();
    tracing::debug_span!(
        target: TARGET,
        "chat",
        otel.name = %format_args!("chat {model}"),
        otel.kind = "client",
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = info.name.as_str(),
        gen_ai.request.model = model,
        gen_ai.conversation.id = conversation,
        aether.model.simulated = info.simulated,
        gen_ai.response.model = Empty,
        gen_ai.response.finish_reasons = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        gen_ai.system_instructions = Empty,
        gen_ai.input.messages = Empty,
        gen_ai.output.messages = Empty,
        error.type = Empty,
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
/// (`tool_calls` when it asked for tools, else `stop`) and the tokens.
pub(crate) fn answered(span: &Span, r: &ModelResponse) {
    if span.is_disabled() {
        return;
    }
    span.record("gen_ai.response.model", &*r.served_by);
    span.record(
        "gen_ai.response.finish_reasons",
        if r.tool_calls.is_empty() {
            "[\"stop\"]"
        } else {
            "[\"tool_calls\"]"
        },
    );
    span.record("gen_ai.usage.input_tokens", r.usage.prompt_tokens);
    span.record("gen_ai.usage.output_tokens", r.usage.completion_tokens);
    if capture() {
        let mut out = message("assistant", &r.text);
        out["finish_reason"] = match r.tool_calls.is_empty() {
            true => "stop".into(),
            false => "tool_calls".into(),
        };
        if !r.tool_calls.is_empty() {
            let calls = r
                .tool_calls
                .iter()
                .map(|c| serde_json::json!({"type": "tool_call", "id": c.call_id, "name": c.tool_name, "arguments": c.parameters}));
            if let Some(parts) = out["parts"].as_array_mut() {
                parts.extend(calls);
            }
        }
        span.record("gen_ai.output.messages", serde_json::json!([out]).to_string());
    }
}

/// Records a failure's kind: an error code (`framework.timeout`, …) on a turn, a
/// [`ModelError::kind`] on a model call.
pub(crate) fn failed(span: &Span, code: &str) {
    if !span.is_disabled() {
        span.record("error.type", code);
    }
}

/// Runs one model call in its `chat` span and records its outcome (the traced branch of a model
/// call; the caller boxes it).
pub(crate) async fn chat_call(
    agent: &Agent,
    conversation: &str,
    content: Option<Content>,
    call: impl Future<Output = Result<ModelResponse, ModelError>>,
) -> Result<ModelResponse, ModelError> {
    let span = chat(agent, conversation);
    if let (Some(c), false) = (content, span.is_disabled()) {
        span.record("gen_ai.system_instructions", c.system);
        span.record("gen_ai.input.messages", c.input);
    }
    let r = call.instrument(span.clone()).await;
    match &r {
        Ok(response) => answered(&span, response),
        Err(e) => failed(&span, e.kind()),
    }
    r
}

/// Runs a turn's work in its `invoke_agent` span and records a failure (the traced branch of a
/// turn; the caller boxes it).
pub(crate) async fn invoke_call<O>(
    agent: &Agent,
    conversation: &str,
    work: impl Future<Output = Result<O, crate::EngineError>>,
) -> Result<O, crate::EngineError> {
    let span = invoke_agent(agent, conversation);
    let r = work.instrument(span.clone()).await;
    if let Err(e) = &r {
        failed(&span, e.code().as_str());
    }
    r
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
    /// Lost in an export that failed (refused, timed out, unreachable).
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
