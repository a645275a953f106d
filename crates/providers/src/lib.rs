//! Aether Frame's model providers: the [`ModelProvider`] trait every provider implements, the
//! simulated model ([`sim`]) with its profiles and tokenizer, the OpenAI-compatible ([`openai`]),
//! Gemini ([`gemini`]) and local GGUF (`local`, feature `local-llm`) providers over one HTTP
//! endpoint policy (timeouts, retries, circuit breaker; [`http_pool`], the lean HTTP/1.1 client
//! for plain-HTTP endpoints), and [`multimodal`]: image checks and
//! conversion for each wire format. It depends on the contracts alone: a model reads the history
//! as [`SessionEvent`]s and the tools as [`ToolDeclaration`]s.

pub mod gemini;
mod http;
pub mod http_pool;
#[cfg(feature = "local-llm")]
pub mod local;
pub mod multimodal;
pub mod openai;
pub mod profiles;
pub mod resilience;

pub mod sim;
pub mod tokens;

use std::sync::{Arc, OnceLock};

pub use aether_contracts::TokenUsage;
use aether_contracts::{Metadata, ModelConfig, SessionEvent, ToolCall, ToolDeclaration, UniversalMessage};
use async_trait::async_trait;
use serde::Serialize;
use serde_json::json;

pub use http::{check_base_url, EndpointConfig};
pub use profiles::{Profile, ProfileSet};
pub use sim::{SimConfig, SimulatedModel};

/// Who answers: provider name and whether it is a simulation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderInfo {
    pub name: String,
    pub simulated: bool,
}

/// An agent's system prompt, with its token count cached.
#[derive(Debug)]
pub struct SystemPrompt {
    pub text: Arc<str>,
    tokens: OnceLock<u32>,
}

impl SystemPrompt {
    pub fn new(text: impl Into<Arc<str>>) -> Self {
        Self {
            text: text.into(),
            tokens: OnceLock::new(),
        }
    }

    pub fn tokens_with(&self, count: impl FnOnce(&str) -> u32) -> u32 {
        *self.tokens.get_or_init(|| count(&self.text))
    }
}

/// The history a model call sees: the committed window, then this turn's pending events.
/// Both are borrowed; nothing is copied to build a request.
#[derive(Debug, Clone, Copy)]
pub struct HistoryView<'a> {
    pub committed: &'a [Arc<SessionEvent>],
    pub pending: &'a [Arc<SessionEvent>],
}

impl<'a> HistoryView<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &'a Arc<SessionEvent>> + 'a {
        self.committed.iter().chain(self.pending.iter())
    }

    pub fn last(&self) -> Option<&'a Arc<SessionEvent>> {
        self.pending.last().or_else(|| self.committed.last())
    }

    pub fn len(&self) -> usize {
        self.committed.len() + self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One model call.
pub struct ModelRequest<'a> {
    pub model: &'a ModelConfig,
    pub system: &'a SystemPrompt,
    pub history: HistoryView<'a>,
    pub tools: &'a [Arc<ToolDeclaration>],
    /// The request's metadata (simulation controls such as `sim_tool_calls` live here).
    pub metadata: &'a Metadata,
}

/// A call of one user message, no tools and no metadata, its parts owned: what a benchmark of an
/// endpoint or a test sends. [`Self::request`] lends it as a [`ModelRequest`].
pub struct PromptRequest {
    pub model: ModelConfig,
    pub system: SystemPrompt,
    history: [Arc<SessionEvent>; 1],
    metadata: Metadata,
}

impl PromptRequest {
    pub fn new(model: ModelConfig, system: &str, prompt: &str) -> Self {
        let event = SessionEvent::new(
            0,
            Arc::from("prompt"),
            Arc::from("prompt"),
            UniversalMessage::user(prompt),
            vec![],
        );
        Self {
            model,
            system: SystemPrompt::new(system),
            history: [Arc::new(event)],
            metadata: Metadata::new(),
        }
    }

    pub fn request(&self) -> ModelRequest<'_> {
        ModelRequest {
            model: &self.model,
            system: &self.system,
            history: HistoryView {
                committed: &self.history,
                pending: &[],
            },
            tools: &[],
            metadata: &self.metadata,
        }
    }
}

/// What a model answered: text, or tool calls to run before it answers.
#[derive(Debug, Clone)]
pub struct ModelResponse {
    pub text: Arc<str>,
    pub tool_calls: Vec<ToolCall>,
    pub usage: TokenUsage,
    pub cost_usd: f64,
    /// Which profile or deployment served the call (e.g. `gpt-4o`, or `default`).
    pub served_by: Arc<str>,
    /// The answer stopped at the request's `max_tokens`, not where the model would have ended it
    /// (OpenAI's `finish_reason: length`, Gemini's `MAX_TOKENS`).
    pub truncated: bool,
}

impl ModelResponse {
    /// Why the answer ended, in the OpenAI and OpenTelemetry GenAI vocabulary: `length` when cut
    /// at `max_tokens`, `tool_calls` when it asked for tools, else `stop`.
    pub fn finish_reason(&self) -> &'static str {
        if self.truncated {
            "length"
        } else if self.tool_calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        }
    }
}

/// A failed model call. Always surfaces as ErrorPayload `model.upstream`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    #[error("model rate-limited the request (HTTP 429){}", retry_after_text(*.retry_after_ms))]
    RateLimited { retry_after_ms: Option<u64> },
    #[error("model server error (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    #[error("model call timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("model call failed: {0}")]
    Other(String),
}

fn retry_after_text(ms: Option<u64>) -> String {
    ms.map(|ms| format!("; retry after {ms} ms")).unwrap_or_default()
}

impl ModelError {
    /// What kind of failure, for `error.type` on spans and metrics (a fixed, small set).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server_error",
            Self::Timeout(_) => "timeout",
            Self::Other(_) => "other",
        }
    }

    /// Structured details for the error payload.
    pub fn details(&self) -> serde_json::Value {
        match self {
            Self::RateLimited { retry_after_ms } => {
                json!({ "status": 429, "retry_after_ms": retry_after_ms })
            }
            Self::Server { status, .. } => json!({ "status": status }),
            Self::Timeout(d) => json!({ "status": 504, "timeout_s": d.as_secs_f64() }),
            Self::Other(_) => json!({}),
        }
    }
}

/// A model behind a uniform interface. Implementations must be cheap to call concurrently.
#[async_trait]
pub trait ModelProvider: Send + Sync + 'static {
    fn info(&self) -> &ProviderInfo;

    async fn generate(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError>;

    /// Gets ready to serve `model` (loads tables, opens connections). Called when an agent is
    /// created, so its first turn does not pay for it. Must not block for long.
    fn prepare(&self, _model: &str) {}

    /// Like [`generate`](Self::generate), but hands the answer's text to `sink` as it is produced.
    /// The default streams the whole text as one delta once it is complete.
    async fn generate_stream(
        &self,
        request: ModelRequest<'_>,
        sink: &mut dyn DeltaSink,
    ) -> Result<ModelResponse, ModelError> {
        let response = self.generate(request).await?;
        if !response.text.is_empty() {
            sink.deliver(&response.text).await?;
        }
        Ok(response)
    }
}

/// A provider under the name agents select it by (`framework_config.provider`).
pub type NamedProvider = (String, Arc<dyn ModelProvider>);

/// Receives a streamed answer's text, piece by piece. Sending may wait (backpressure); an error
/// means the consumer is gone and the call should stop. Providers hand each piece over with
/// `deliver` (a method of `dyn DeltaSink`), which takes the piece at once from a sink that never
/// waits ([`DeltaSink::take_now`]) and awaits [`DeltaSink::delta`] otherwise.
#[async_trait]
pub trait DeltaSink: Send {
    async fn delta(&mut self, text: &str) -> Result<(), ModelError>;

    /// Takes `text` at once: `Some(outcome)` from a sink that never waits (a timer, a meter),
    /// which spares each piece the boxed future of [`Self::delta`] (an `async_trait` method);
    /// `None`, the default, from one that may wait, which then gets the piece through `delta`
    /// (so `None` must leave the piece untaken).
    fn take_now(&mut self, text: &str) -> Option<Result<(), ModelError>> {
        let _ = text;
        None
    }
}

impl dyn DeltaSink + '_ {
    /// Hands one piece of the answer over: at once when the sink takes it without waiting
    /// ([`DeltaSink::take_now`]), else through [`DeltaSink::delta`].
    pub async fn deliver(&mut self, text: &str) -> Result<(), ModelError> {
        match self.take_now(text) {
            Some(outcome) => outcome,
            None => self.delta(text).await,
        }
    }
}
