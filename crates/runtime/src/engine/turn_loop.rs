//! The seam between a turn's frame and a framework's model↔tool loop.
//!
//! Every framework's turn has the same frame (`native`): the chat session is opened and its turn
//! lock held, the agent bound and its runner (with its session slot) taken, the turn's
//! `invoke_agent` span and metric made, its events committed only when it succeeds, and its
//! result and report written. What differs is the loop inside: who decides when the model is
//! called, which tools run and how, and what events the turn leaves. That loop is a
//! [`TurnLoop`]: the native engine has its own; another framework (crate `aether-adk`) supplies
//! one with [`RuntimeBuilder::framework_loop`](crate::RuntimeBuilder::framework_loop).
//!
//! A loop reads the committed window and this turn's [`Pending`] events, pushes the events the
//! turn makes, reports to the [`TurnObserver`], and returns a [`LoopOutcome`]. It calls models
//! and tools through the [`TurnKit`], which makes their spans, records their GenAI metrics and
//! counts them, the same for every framework.

use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{Metadata, TokenUsage, ToolResult, UniversalMessage};
use aether_store::SessionEvent;
use async_trait::async_trait;
use tokio::time::Instant;

use super::observer::TurnObserver;
use crate::agents::{Agent, Runner};
use crate::approvals::ApprovalConfig;
use crate::error::EngineError;
use crate::meter::{self, MeterSlot, TimedSink};
use crate::model::{DeltaSink, ModelError, ModelRequest, ModelResponse};
use crate::stats::Stats;
use crate::telemetry;

/// A framework's model↔tool loop, run inside the runtime's turn frame.
#[async_trait]
pub trait TurnLoop: Send + Sync + 'static {
    async fn run(&self, input: LoopInput<'_>) -> Result<LoopOutcome, EngineError>;
}

/// What the frame hands a loop for one turn.
pub struct LoopInput<'a> {
    pub agent: &'a Arc<Agent>,
    /// The agent's runner that serves this session (reused across turns, recycled when idle).
    pub runner: &'a Arc<Runner>,
    /// The session's committed window, oldest first.
    pub committed: &'a [Arc<SessionEvent>],
    /// This turn's events so far: the request's messages, then whatever the loop pushes.
    pub pending: &'a mut Pending,
    pub scope: TurnScope<'a>,
    pub observer: &'a mut dyn TurnObserver,
    pub kit: &'a TurnKit,
}

/// Who the turn runs for, as its tools see it.
pub struct TurnScope<'a> {
    pub task_id: &'a Arc<str>,
    pub session_id: &'a Arc<str>,
    pub user_id: Option<Arc<str>>,
    pub metadata: &'a Metadata,
}

/// This turn's new events, numbered after the committed ones. They reach the window and the
/// store only when the turn succeeds.
pub struct Pending {
    pub(crate) events: Vec<Arc<SessionEvent>>,
    pub(crate) base_seq: u64,
    pub(crate) internal_id: Arc<str>,
    pub(crate) agent_id: Arc<str>,
}

impl Pending {
    /// Appends an event: a message and, for a tool message, its calls' results.
    pub fn push(&mut self, message: UniversalMessage, results: Vec<ToolResult>) {
        let seq = self.base_seq + self.events.len() as u64;
        self.events.push(Arc::new(SessionEvent::new(
            seq,
            Arc::clone(&self.internal_id),
            Arc::clone(&self.agent_id),
            message,
            results,
        )));
    }

    pub fn events(&self) -> &[Arc<SessionEvent>] {
        &self.events
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// What a loop measured and how it ended.
#[derive(Debug, Default)]
pub struct LoopOutcome {
    pub usage: TokenUsage,
    pub cost_usd: f64,
    pub model_time: Duration,
    pub tool_time: Duration,
    pub approval_time: Duration,
    pub model_calls: u32,
    pub tool_calls: u64,
    /// Which profile or deployment served the last model call.
    pub served_by: Option<Arc<str>>,
    /// The pending event holding the model's answer; `None` when it was still calling tools.
    pub answer: Option<usize>,
}

impl LoopOutcome {
    /// Adds one answered model call.
    pub fn model_answered(&mut self, response: &ModelResponse, elapsed: Duration) {
        self.usage += response.usage;
        self.cost_usd += response.cost_usd;
        self.served_by = Some(Arc::clone(&response.served_by));
        self.model_time += elapsed;
    }
}

/// The bounds of one turn.
#[derive(Clone, Debug)]
pub struct TurnLimits {
    pub max_model_calls: usize,
    /// For tools that set no timeout of their own, unless the agent sets one.
    pub tool_timeout: Duration,
    pub approvals: ApprovalConfig,
}

/// The runtime's services for a loop: one way to call a model and to account for tool calls,
/// spanned, metered and counted alike on every framework.
#[derive(Clone)]
pub struct TurnKit {
    pub(crate) stats: Arc<Stats>,
    pub(crate) meter: Arc<MeterSlot>,
    pub(crate) limits: TurnLimits,
}

impl TurnKit {
    pub fn limits(&self) -> &TurnLimits {
        &self.limits
    }

    /// The timeout of a tool call that sets none of its own.
    pub fn tool_timeout(&self, agent: &Agent) -> Duration {
        agent.tool_timeout.unwrap_or(self.limits.tool_timeout)
    }

    /// Calls the agent's model once, in its `chat` span, recording the GenAI metrics and the
    /// runtime's counter. With a `sink` the answer streams into it. Returns the answer and how
    /// long the call took.
    pub async fn call_model(
        &self,
        agent: &Agent,
        session_id: &Arc<str>,
        request: ModelRequest<'_>,
        sink: Option<&mut dyn DeltaSink>,
    ) -> (Result<ModelResponse, ModelError>, Duration) {
        let traced = telemetry::on();
        // Boxed: it lives across the call, and the turn's future must not grow.
        let content = match traced && telemetry::capture() {
            true => Some(Box::new(telemetry::content(&request))),
            false => None,
        };
        let t = Instant::now();
        let metered = self.meter.get();
        // Metered and streamed: chunk times noted on the way (boxed, off the unmetered path).
        let mut timed: Option<Box<TimedSink<'_>>> = None;
        let call = match (sink, metered) {
            (Some(sink), Some(_)) => {
                let timed = timed.insert(Box::new(TimedSink::new(sink, t)));
                agent.provider.generate_stream(request, &mut **timed)
            }
            (Some(sink), None) => agent.provider.generate_stream(request, sink),
            (None, _) => agent.provider.generate(request),
        };
        // Traced: boxed, so that this future does not grow for the untraced path.
        let response = match traced {
            true => Box::pin(telemetry::chat_call(agent, session_id, content, call)).await,
            false => call.await,
        };
        let elapsed = t.elapsed();
        Stats::incr(&self.stats.model_calls);
        if let Some(m) = metered {
            m.model_call(&meter::ModelCall {
                provider: telemetry::provider_name(agent),
                model: &agent.config.model_config.model,
                duration: elapsed,
                error: response.as_ref().err().map(|e| e.kind()),
                usage: response.as_ref().ok().map(|r| r.usage),
                stream: timed.and_then(|s| s.timing()),
            });
        }
        (response, elapsed)
    }

    /// Accounts for tool calls that finished: the runtime's counter, and the GenAI metric of
    /// each call that ran (a refused call has no execution time).
    pub fn tools_done(&self, results: &[ToolResult]) {
        Stats::add(&self.stats.tool_calls, results.len() as u64);
        if let Some(m) = self.meter.get() {
            for r in results.iter().filter(|r| r.execution_time.is_some()) {
                m.tool_call(&meter::ToolCall {
                    name: &r.tool_name,
                    duration: Duration::from_secs_f64(r.execution_time.unwrap_or_default().max(0.0)),
                    error: r.error.as_ref().map(|e| e.code.as_str()),
                });
            }
        }
    }

    /// Counts tool progress updates that a full buffer dropped.
    pub fn progress_dropped(&self, n: u64) {
        Stats::add(&self.stats.tool_progress_dropped, n);
    }
}
