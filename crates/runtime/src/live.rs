//! Live turns: a conversation that streams `TaskStreamChunk`s and takes follow-up messages,
//! approval answers, cancel and close while it runs.
//!
//! Chunks of a tool-using turn come in the original's order: `plan.delta` → `plan.summary` →
//! `tool.proposal` (with an `interaction_id` when a person must approve) → `tool.delta`* (progress
//! of running calls, chunk_type `progress`; an MCP server's progress notifications) → `tool.result` →
//! `response.delta`* → `response.final` → `turn.complete`. Failures are `error` chunks whose
//! content is always an `ErrorPayload` object; a cancelled turn ends with a `cancelled` chunk.
//! `sequence_id`s count up from 0 across the whole live session without gaps.
//!
//! Every turn runs through the engine like a sync turn: `execution_config.timeout` (the first
//! request's, for every turn of the session) bounds the whole turn, approval waits included; a
//! turn that times out or panics ends with an `error` chunk carrying the payload a sync answer
//! would carry (a timeout: `framework.execution` with `details.timeout_s`), writes nothing, and
//! the session takes the next message.
//!
//! Chunks go through a bounded channel: a slow consumer slows the turn down, nothing buffers
//! without bound. Cancel drops the running turn: the model call and the tools in flight stop, the
//! turn writes nothing, and the session stays usable. Each live session has its own approval
//! broker; answers are matched by `interaction_id` only and never enter the conversation.

use std::sync::Arc;

use aether_contracts::{
    ChunkKind, ErrorPayload, ExecutionConfig, InteractionResponse, TaskChunkType, TaskRequest, TaskResult,
    TaskStreamChunk, ToolCall, ToolResult, UniversalMessage, CHUNK_VERSION,
};
use async_trait::async_trait;
use chrono::Utc;
use opentelemetry::Context;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch};

use crate::approvals::{ApprovalBroker, ApprovalConfig, ApprovalError, Decision, PendingApproval, TimeoutPolicy};
use crate::engine::{tool_of, Assistant, RequestPlan, TurnObserver, ValidRequest};
use crate::error::EngineError;
use crate::model::{DeltaSink, ModelError};
use crate::tools::{RegisteredTool, ToolProgress};

/// Settings of one live session.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Chunks that may wait for the consumer before the turn itself waits.
    pub buffer: usize,
    /// Approval policy; the runtime's when `None`.
    pub approvals: Option<ApprovalConfig>,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            buffer: 64,
            approvals: None,
        }
    }
}

/// Why a control request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    #[error("the live session has ended")]
    Ended,
    #[error(transparent)]
    Approval(#[from] ApprovalError),
}

enum Control {
    /// A follow-up message, with the trace context it was sent in (when spans are on), so that
    /// its turn is a child of the request that sent it.
    Message(UniversalMessage, Option<Context>),
    Close,
}

/// The current trace context, when spans are on (a turn started from here continues it).
fn current_context() -> Option<Context> {
    aether_contracts::trace::on().then(Context::current)
}

/// The consumer's end of a live session. Control methods (`send_message`, `respond`,
/// `pending_approvals`, `cancel`, `close`) come from its [`LiveController`] (through `Deref`).
pub struct LiveSession {
    task_id: String,
    chunks: mpsc::Receiver<TaskStreamChunk>,
    controller: LiveController,
}

impl LiveSession {
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// The next chunk; `None` once the session has ended and every chunk was read.
    pub async fn next_chunk(&mut self) -> Option<TaskStreamChunk> {
        self.chunks.recv().await
    }

    /// Chunks produced and not yet read (never more than the buffer).
    pub fn buffered(&self) -> usize {
        self.chunks.len()
    }

    /// A handle for control from elsewhere (another task, an HTTP handler).
    pub fn controller(&self) -> LiveController {
        self.controller.clone()
    }
}

impl std::ops::Deref for LiveSession {
    type Target = LiveController;

    fn deref(&self) -> &LiveController {
        &self.controller
    }
}

/// Control of a live session, without its chunk stream.
#[derive(Clone)]
pub struct LiveController {
    control: mpsc::Sender<Control>,
    broker: Arc<ApprovalBroker>,
    cancel: watch::Sender<u64>,
}

impl LiveController {
    /// Sends a follow-up user message: the next turn of the same session.
    pub async fn send_message(&self, message: UniversalMessage) -> Result<(), LiveError> {
        self.control
            .send(Control::Message(message, current_context()))
            .await
            .map_err(|_| LiveError::Ended)
    }

    /// Answers an approval request, matched by its exact `interaction_id`.
    pub fn respond(&self, response: &InteractionResponse) -> Result<(), LiveError> {
        Ok(self.broker.respond(response)?)
    }

    /// Approval requests still open, with their expiry.
    pub fn pending_approvals(&self) -> Vec<PendingApproval> {
        self.broker.pending()
    }

    /// Cancels the turn in flight (its model call and tools stop; it ends with a `cancelled`
    /// chunk). The session stays open for further messages.
    pub fn cancel(&self) {
        self.cancel.send_modify(|n| *n += 1);
    }

    /// Ends the session after the turn in flight; the stream then ends.
    pub async fn close(&self) {
        let _ = self.control.send(Control::Close).await;
    }
}

/// Numbers chunks and sends them through the bounded channel.
struct Emitter {
    task_id: String,
    next_seq: u64,
    tx: mpsc::Sender<TaskStreamChunk>,
}

impl Emitter {
    async fn emit(
        &mut self,
        chunk_type: TaskChunkType,
        kind: Option<ChunkKind>,
        stage: &'static str,
        content: Value,
        interaction_id: Option<String>,
        is_final: bool,
    ) -> Result<(), ModelError> {
        let mut metadata = Map::with_capacity(1);
        metadata.insert("stage".into(), Value::from(stage));
        let chunk = TaskStreamChunk {
            task_id: self.task_id.clone(),
            chunk_type,
            sequence_id: self.next_seq,
            content,
            timestamp: Utc::now(),
            is_final,
            metadata,
            chunk_kind: kind,
            chunk_version: CHUNK_VERSION.to_owned(),
            interaction_id,
        };
        self.tx
            .send(chunk)
            .await
            .map_err(|_| ModelError::Other("the live stream's consumer went away".into()))?;
        self.next_seq += 1;
        Ok(())
    }

    async fn error(&mut self, payload: &ErrorPayload) {
        let content = serde_json::to_value(payload).unwrap_or(Value::Null);
        let _ = self
            .emit(
                TaskChunkType::Error,
                Some(ChunkKind::Error),
                "error",
                content,
                None,
                true,
            )
            .await;
    }
}

/// The observer of a live turn: streams, and asks a person about risky calls.
struct LiveObserver<'a> {
    emitter: &'a mut Emitter,
    broker: &'a ApprovalBroker,
    approvals: &'a ApprovalConfig,
}

#[async_trait]
impl DeltaSink for LiveObserver<'_> {
    async fn delta(&mut self, text: &str) -> Result<(), ModelError> {
        self.emitter
            .emit(
                TaskChunkType::Response,
                Some(ChunkKind::ResponseDelta),
                "response",
                Value::from(text),
                None,
                false,
            )
            .await
    }
}

#[async_trait]
impl TurnObserver for LiveObserver<'_> {
    fn sink(&mut self) -> Option<&mut dyn DeltaSink> {
        Some(self)
    }

    async fn planned(&mut self, calls: &[ToolCall]) {
        let names: Vec<String> = calls.iter().map(|c| c.qualified_name().into_owned()).collect();
        let delta = format!("Calling {}.", names.join(", "));
        let _ = self
            .emitter
            .emit(
                TaskChunkType::PlanDelta,
                Some(ChunkKind::PlanDelta),
                "plan",
                Value::from(delta),
                None,
                false,
            )
            .await;
        let summary = json!({ "tool_calls": calls });
        let _ = self
            .emitter
            .emit(
                TaskChunkType::PlanSummary,
                Some(ChunkKind::PlanSummary),
                "plan",
                summary,
                None,
                false,
            )
            .await;
    }

    async fn decide(
        &mut self,
        tools: &[Arc<RegisteredTool>],
        calls: &[ToolCall],
        _cfg: &ApprovalConfig,
    ) -> Vec<Decision> {
        let cfg = self.approvals;
        let mut waits = Vec::with_capacity(calls.len());
        for call in calls {
            let needs = tool_of(tools, call).is_some_and(|t| cfg.requires(t));
            let mut content = json!({
                "tool_name": call.qualified_name(),
                "call_id": call.call_id,
                "parameters": call.parameters,
                "requires_approval": needs,
            });
            if needs {
                let (info, answer) = self.broker.ask(
                    &call.qualified_name(),
                    call.call_id.clone(),
                    call.parameters.clone(),
                    cfg.timeout,
                );
                content["expires_at"] = json!(info.expires_at);
                let id = info.interaction_id.clone();
                let _ = self
                    .emitter
                    .emit(
                        TaskChunkType::ToolApprovalRequest,
                        Some(ChunkKind::ToolProposal),
                        "tool",
                        content,
                        Some(id.clone()),
                        false,
                    )
                    .await;
                waits.push(Some((id, answer)));
            } else {
                let _ = self
                    .emitter
                    .emit(
                        TaskChunkType::ToolProposal,
                        Some(ChunkKind::ToolProposal),
                        "tool",
                        content,
                        None,
                        false,
                    )
                    .await;
                waits.push(None);
            }
        }
        let broker = self.broker;
        let decisions = waits.into_iter().map(|w| async move {
            let Some((id, answer)) = w else {
                return Decision::Approved;
            };
            match tokio::time::timeout(cfg.timeout, answer).await {
                Ok(Ok(true)) => Decision::Approved,
                Ok(Ok(false)) => Decision::Denied("denied by the reviewer".into()),
                Ok(Err(_)) => Decision::Denied("the approval request was withdrawn".into()),
                Err(_) => {
                    broker.forget(&id);
                    match cfg.on_timeout {
                        TimeoutPolicy::AutoApprove => Decision::Approved,
                        TimeoutPolicy::AutoCancel => Decision::TimedOut(cfg.timeout),
                    }
                }
            }
        });
        futures::future::join_all(decisions).await
    }

    fn wants_tool_progress(&self) -> bool {
        true
    }

    async fn tool_progress(&mut self, update: ToolProgress) {
        let content = json!({
            "call_id": update.call_id,
            "progress": update.progress,
            "total": update.total,
            "message": update.message,
        });
        let _ = self
            .emitter
            .emit(
                TaskChunkType::Progress,
                Some(ChunkKind::ToolDelta),
                "tool",
                content,
                None,
                false,
            )
            .await;
    }

    async fn tool_results(&mut self, results: &[ToolResult]) {
        for r in results {
            let kind = if r.is_success() {
                ChunkKind::ToolResult
            } else {
                ChunkKind::ToolError
            };
            let content = serde_json::to_value(r).unwrap_or(Value::Null);
            let _ = self
                .emitter
                .emit(TaskChunkType::ToolResult, Some(kind), "tool", content, None, false)
                .await;
        }
    }
}

/// Validates `request` as a turn and starts the live session. Its turns run through the same
/// engine as sync turns (`Assistant::process_stream`): the agent's framework, the timeout of
/// `execution_config.timeout` (approval waits included), a panic turned into an `error` chunk.
pub(crate) fn start(
    assistant: Assistant,
    request: TaskRequest,
    options: LiveOptions,
    approvals: ApprovalConfig,
) -> Result<LiveSession, EngineError> {
    let first = assistant.engine().validate(request)?;
    let RequestPlan::Converse { agent_id, session_id } = first.plan() else {
        return Err(EngineError::validation(
            "agent_config",
            "a live session converses with an existing agent: send agent_id + session_id + messages",
        ));
    };
    let (agent_id, session_id) = (agent_id.clone(), session_id.clone());
    let (tx, chunks) = mpsc::channel(options.buffer.max(1));
    let (control, control_rx) = mpsc::channel(16);
    let (cancel, cancel_rx) = watch::channel(0u64);
    let task_id = first.request().task_id.clone();
    let broker = Arc::new(ApprovalBroker::new(&task_id));
    let emitter = Emitter {
        task_id: task_id.clone(),
        next_seq: 0,
        tx,
    };
    let session = Session {
        execution_config: first.request().execution_config.clone(),
        assistant,
        base_task: task_id.clone(),
        agent_id,
        session_id,
        broker: Arc::clone(&broker),
        approvals,
    };
    // The first turn continues the trace of the request that started the session.
    tokio::spawn(session.run(first, current_context(), emitter, control_rx, cancel_rx));
    Ok(LiveSession {
        task_id,
        chunks,
        controller: LiveController {
            control,
            broker,
            cancel,
        },
    })
}

/// What every turn of one live session shares.
struct Session {
    assistant: Assistant,
    base_task: String,
    agent_id: Option<String>,
    session_id: String,
    broker: Arc<ApprovalBroker>,
    approvals: ApprovalConfig,
    /// The first request's; every turn of the session runs under it (its timeout too).
    execution_config: Option<ExecutionConfig>,
}

impl Session {
    /// Turn `turn`'s request for a follow-up message, validated like any request.
    fn follow_up(&self, turn: u64, message: UniversalMessage) -> Result<ValidRequest, EngineError> {
        let mut next = TaskRequest::empty(format!("{}-{turn}", self.base_task));
        next.agent_id = self.agent_id.clone();
        next.session_id = Some(self.session_id.clone());
        next.messages = vec![message];
        next.execution_config = self.execution_config.clone();
        self.assistant.engine().validate(next)
    }

    async fn run(
        self,
        first: ValidRequest,
        mut trace: Option<Context>,
        mut emitter: Emitter,
        mut control: mpsc::Receiver<Control>,
        mut cancel: watch::Receiver<u64>,
    ) {
        let mut next: Result<ValidRequest, EngineError> = Ok(first);
        for turn in 1u64.. {
            cancel.borrow_and_update();
            let outcome = match next {
                Ok(request) => {
                    let mut observer = LiveObserver {
                        emitter: &mut emitter,
                        broker: &self.broker,
                        approvals: &self.approvals,
                    };
                    let fut = self.assistant.process_stream(request, &mut observer);
                    tokio::select! {
                        r = in_context(fut, trace.take()) => Some(r),
                        _ = cancel.changed() => None,
                    }
                }
                Err(e) => Some(TaskResult::failure(String::new(), e.status(), e.payload())),
            };
            self.broker.clear();
            match outcome {
                Some(result) => finish(&mut emitter, &result).await,
                None => {
                    let content = json!({ "reason": "cancelled by the client", "turn": turn });
                    let _ = emitter
                        .emit(TaskChunkType::Cancelled, None, "cancelled", content, None, true)
                        .await;
                }
            }
            if emitter.tx.is_closed() {
                return;
            }
            next = match control.recv().await {
                Some(Control::Message(m, cx)) => {
                    trace = cx;
                    self.follow_up(turn + 1, m)
                }
                Some(Control::Close) | None => return,
            };
        }
    }
}

/// Runs `fut` in `cx` when there is one (traced: boxed, so that the untraced turn's future does
/// not grow).
async fn in_context<F: std::future::Future>(fut: F, cx: Option<Context>) -> F::Output {
    use opentelemetry::context::FutureExt as _;
    match cx {
        Some(cx) => Box::pin(fut.with_context(cx)).await,
        None => fut.await,
    }
}

async fn finish(emitter: &mut Emitter, result: &TaskResult) {
    if let Some(err) = &result.error {
        emitter.error(err).await;
        return;
    }
    let text = result.response_text().unwrap_or_default().into_owned();
    let _ = emitter
        .emit(
            TaskChunkType::Response,
            Some(ChunkKind::ResponseFinal),
            "response",
            Value::from(text),
            None,
            false,
        )
        .await;
    let summary = json!({
        "status": result.status,
        "session_id": result.session_id,
        "agent_id": result.agent_id,
        "metadata": result.metadata,
    });
    let _ = emitter
        .emit(
            TaskChunkType::Complete,
            Some(ChunkKind::TurnComplete),
            "complete",
            summary,
            None,
            true,
        )
        .await;
}
