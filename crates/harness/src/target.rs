//! What the harness drives. [`InProcess`] runs the runtime in this process through its public
//! API, like any library user; other targets (a server over HTTP) implement the same trait.

use std::future::Future;
use std::pin::Pin;

use aether_contracts::{
    AgentReport, InteractionResponse, ReportError, TaskRequest, TaskResult, TaskStreamChunk, TurnFigures, TurnReport,
};
use aether_runtime::live::{LiveOptions, LiveSession};

use aether_runtime::model::ProviderInfo;
use aether_runtime::{Runtime, StatsSnapshot};
use aether_store::StoreInfo;
use async_trait::async_trait;
use serde::Serialize;

use crate::call::Call;

/// What a target is, for the summary.
#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    /// `in_process`, or how the runtime is reached.
    pub kind: String,
    pub store: Option<StoreInfo>,
}

#[async_trait]
pub trait Target: Send + Sync + 'static {
    fn info(&self) -> TargetInfo;

    /// The default model provider, for the summary.
    fn provider(&self) -> ProviderInfo;

    async fn process(&self, request: TaskRequest) -> TaskResult;

    /// One request of the load loop, with the turn's figures read from its report: by default
    /// [`Self::process`] of the call's request. A target that receives answers as JSON reads the
    /// figures from the JSON itself rather than through the report's value tree (see
    /// `http_answer`), and one that sends JSON writes the body from the call's parts, encoded
    /// once per phase ([`Call::write_json`]).
    async fn call(&self, call: Call<'_>) -> Measured {
        Measured::of(self.process(call.into_request()).await)
    }

    /// The trace id the request of `task_id` was sent with, when the target is reached by a
    /// traced protocol (over HTTP: its `traceparent`).
    fn trace_id(&self, _task_id: &str) -> Option<String> {
        None
    }

    async fn cleanup_agent(&self, agent_id: &str) -> Result<bool, String>;

    async fn cleanup_session(&self, session_id: &str) -> Result<bool, String>;

    /// Resolves a tool name by the resolver rules; the error says why not.
    fn resolve_tool(&self, name: &str) -> Result<String, String>;

    /// The runtime's counters, when the target can read them.
    fn runtime_stats(&self) -> Option<StatsSnapshot>;

    /// A server's own figures (RSS, CPU, counters) now, when the target is a server that lets
    /// the harness read them; read at the end of every interval of the time series.
    async fn server_sample(&self) -> Option<crate::timeline::ServerSample> {
        None
    }

    /// Makes every accepted write durable (flushes the store).
    async fn shutdown(&self) -> Result<(), String>;

    /// Starts a live turn; its chunks come from the returned stream.
    async fn start_live(&self, request: TaskRequest) -> Result<Box<dyn LiveStream>, String>;
}

/// A task's result and the turn's figures from its report.
pub struct Measured {
    /// The result. A target that read the answer's report itself ([`Self::read`]) may leave its
    /// `metadata` empty; otherwise the load loop reads the report from it.
    pub result: TaskResult,
    /// The figures when the target already read them (`None`: read them from the result's
    /// metadata when they are wanted, see [`Self::figures`]).
    pub figures: Option<Result<TurnFigures, ReportError>>,
    /// The rest of the report the load loop reads, when the target already read it.
    pub read: Option<ReadReport>,
}

/// The parts of a result's report, besides its figures, that the load loop reads: read by a
/// target from the answer itself, so that the result's `metadata` is never built as a map.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadReport {
    /// The turn's trace (`metadata.trace_id`).
    pub trace_id: Option<String>,
    /// Agent creation's `metadata.agent.reused`; `None` when the report has no `agent` part.
    pub agent_reused: Option<bool>,
}

impl Measured {
    /// A result whose figures are read from its metadata if asked for (agent creation's never
    /// are).
    pub fn of(result: TaskResult) -> Self {
        Self {
            result,
            figures: None,
            read: None,
        }
    }

    /// The turn's trace id, when the runtime traced it.
    pub fn trace_id(&self) -> Option<&str> {
        match &self.read {
            Some(r) => r.trace_id.as_deref(),
            None => self.result.metadata.get("trace_id").and_then(serde_json::Value::as_str),
        }
    }

    /// Whether agent creation reused an agent; an error names what is missing or malformed.
    pub fn agent_reused(&self) -> Result<bool, ReportError> {
        match &self.read {
            Some(ReadReport {
                agent_reused: Some(reused),
                ..
            }) => Ok(*reused),
            // No `agent` part (a malformed one was left to the full read): said as the full read says it.
            Some(_) => AgentReport::reused(&aether_contracts::Metadata::new()),
            None => AgentReport::reused(&self.result.metadata),
        }
    }

    /// The figures; an error names the report part that is missing or malformed.
    pub fn figures(&mut self) -> Result<TurnFigures, ReportError> {
        match self.figures.take() {
            Some(read) => read,
            None => TurnReport::figures(&self.result.metadata),
        }
    }
}

/// The consumer's side of a live turn.
#[async_trait]
pub trait LiveStream: Send {
    async fn next_chunk(&mut self) -> Option<TaskStreamChunk>;
    fn respond(&self, response: &InteractionResponse) -> Result<(), String>;
    async fn close(&mut self);
}

#[async_trait]
impl LiveStream for LiveSession {
    async fn next_chunk(&mut self) -> Option<TaskStreamChunk> {
        LiveSession::next_chunk(self).await
    }

    fn respond(&self, response: &InteractionResponse) -> Result<(), String> {
        self.controller().respond(response).map_err(|e| e.to_string())
    }

    async fn close(&mut self) {
        self.controller().close().await;
    }
}

/// The runtime, in this process.
pub struct InProcess {
    pub runtime: Runtime,
    /// The provider its agents use by default.
    pub provider: ProviderInfo,
}

#[async_trait]
impl Target for InProcess {
    fn info(&self) -> TargetInfo {
        TargetInfo {
            kind: "in_process".into(),
            store: Some(self.runtime.store().info()),
        }
    }

    fn provider(&self) -> ProviderInfo {
        self.provider.clone()
    }

    // Written out rather than `async fn`: the box holds the runtime's future alone, not a copy of
    // the request beside it (the harness must not add to what it measures).
    fn process<'s, 'f>(&'s self, request: TaskRequest) -> Pin<Box<dyn Future<Output = TaskResult> + Send + 'f>>
    where
        's: 'f,
        Self: 'f,
    {
        Box::pin(self.runtime.process(request))
    }

    // One box, holding the runtime's future (the default would box twice).
    fn call<'s, 'c, 'f>(&'s self, call: Call<'c>) -> Pin<Box<dyn Future<Output = Measured> + Send + 'f>>
    where
        's: 'f,
        'c: 'f,
        Self: 'f,
    {
        let turn = self.runtime.process(call.into_request());
        Box::pin(async move { Measured::of(turn.await) })
    }

    async fn cleanup_agent(&self, agent_id: &str) -> Result<bool, String> {
        self.runtime
            .cleanup_agent(agent_id)
            .await
            .map(|c| c.is_some())
            .map_err(|e| e.to_string())
    }

    async fn cleanup_session(&self, session_id: &str) -> Result<bool, String> {
        self.runtime
            .cleanup_session(session_id)
            .await
            .map_err(|e| e.to_string())
    }

    fn resolve_tool(&self, name: &str) -> Result<String, String> {
        self.runtime
            .tools()
            .resolve(name)
            .map(|t| t.full_name.to_string())
            .map_err(|e| e.to_string())
    }

    fn runtime_stats(&self) -> Option<StatsSnapshot> {
        Some(self.runtime.stats())
    }

    async fn shutdown(&self) -> Result<(), String> {
        self.runtime.shutdown().await.map_err(|e| e.to_string())
    }

    async fn start_live(&self, request: TaskRequest) -> Result<Box<dyn LiveStream>, String> {
        let session = self
            .runtime
            .start_live(request, LiveOptions::default())
            .map_err(|e| e.to_string())?;
        Ok(Box::new(session))
    }
}
