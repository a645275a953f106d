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
//! the simulated model answered. Message content is not recorded.
//!
//! **Cost.** The spans are `tracing` spans at DEBUG on target [`TARGET`], made only when a
//! subscriber asks for that target ([`on`]: the CLI's OpenTelemetry export does, when an OTLP
//! endpoint is set). Otherwise the turn path pays one cached check per span and nothing else: the
//! instrumented futures are boxed on the traced branch only, so the turn's own future does not
//! grow (its size is what the turn path's cost is most sensitive to; see part 8's notes).

use std::future::Future;

use tracing::field::Empty;
use tracing::{Instrument as _, Span};

use crate::agents::Agent;
use crate::model::ModelResponse;

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
        error.type = Empty,
    )
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
}

/// Records a failure's error code (`model.upstream`, `framework.timeout`, …).
pub(crate) fn failed(span: &Span, code: &str) {
    if !span.is_disabled() {
        span.record("error.type", code);
    }
}

/// Runs one model call in its `chat` span and records its outcome (the traced branch of a model
/// call; the caller boxes it).
pub(crate) async fn chat_call<T>(
    agent: &Agent,
    conversation: &str,
    call: impl Future<Output = Result<ModelResponse, T>>,
) -> Result<ModelResponse, T> {
    let span = chat(agent, conversation);
    let r = call.instrument(span.clone()).await;
    match &r {
        Ok(response) => answered(&span, response),
        Err(_) => failed(&span, aether_contracts::ErrorCode::ModelUpstream.as_str()),
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
