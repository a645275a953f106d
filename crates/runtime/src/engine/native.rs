//! The native adapter: runs agent creation and conversation turns on this runtime's own agents,
//! sessions, tools and model providers.
//!
//! A turn holds its chat session open (its turn lock) from start to commit. Its new events are
//! built in a pending list that the model sees after the committed window; they reach the window
//! and the store only when the turn succeeds ([`OpenChat::commit`]), so a failed, timed-out or
//! cancelled turn leaves nothing half-written. [`NativeAdapter::model_tool_loop`] is the loop
//! itself: the model is called, the tools it asks for run (after the observer's decisions), and
//! their results go back to it, until it answers or `max_model_calls_per_turn` is reached.

use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{
    AgentContext, AgentReport, ExecutionStats, ProviderName, ProviderReport, Role, TaskRequest, TaskResult, TaskStatus,
    TurnReport, TurnTiming, UniversalMessage,
};
use aether_store::SessionEvent;
use async_trait::async_trait;
use chrono::Utc;
use serde_json::json;
use tokio::time::Instant;

use super::observer::TurnObserver;
use super::turn_loop::{LoopInput, LoopOutcome, Pending, TurnKit, TurnLoop, TurnScope};
use super::{FrameworkAdapter, RequestPlan, ValidRequest};
use crate::agents::{Agent, AgentManager, TaskGuard};
use crate::error::EngineError;
use crate::meter;
use crate::model::{HistoryView, ModelRequest};
use crate::sessions::{ChatSessions, OpenChat};
use crate::stats::Stats;
use crate::telemetry;
use crate::tools::executor::{execute_calls, CallScope};
use crate::tools::ProgressSink;

/// Progress updates of one response's tool calls that may wait for a live observer.
const TOOL_PROGRESS_BUFFER: usize = 64;

/// The runtime's own framework: agents, chat sessions and their counters. With a `turn_loop`,
/// the same frame runs another framework's loop (see `turn_loop`).
#[derive(Clone)]
pub(crate) struct NativeAdapter {
    pub name: Arc<str>,
    pub agents: Arc<AgentManager>,
    pub sessions: Arc<ChatSessions>,
    /// The counters, the GenAI meter and the turn's bounds, shared with every framework's loop.
    pub kit: TurnKit,
    /// Another framework's model↔tool loop; `None` runs the native one.
    pub turn_loop: Option<Arc<dyn TurnLoop>>,
}

#[async_trait]
impl FrameworkAdapter for NativeAdapter {
    fn name(&self) -> &str {
        &self.name
    }

    async fn execute_stream(
        &self,
        request: ValidRequest,
        observer: &mut dyn TurnObserver,
    ) -> Result<TaskResult, EngineError> {
        let started = Instant::now();
        let ValidRequest {
            request,
            plan,
            media_time,
            agent,
            ..
        } = request;
        match plan {
            RequestPlan::CreateAgent(config) => create_agent(&self.agents, &request.task_id, config),
            RequestPlan::Converse { agent_id, session_id } => {
                let turn = Turn {
                    request,
                    agent_id,
                    agent,
                    session_id,
                    started,
                    media_time,
                };
                let result = self.converse(turn, observer).await;
                Stats::incr(&self.kit.stats.turns);
                if result.as_ref().map_or(true, |r| !r.is_success()) {
                    Stats::incr(&self.kit.stats.turns_failed);
                }
                result
            }
        }
    }
}

/// Microseconds with nanosecond resolution.
fn us(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1000.0
}

fn create_agent(
    agents: &AgentManager,
    task_id: &str,
    config: aether_contracts::AgentConfig,
) -> Result<TaskResult, EngineError> {
    let span = match telemetry::on() {
        true => telemetry::create_agent(&config),
        false => None,
    };
    let started = Instant::now();
    let (agent, reused) = agents
        .create_or_reuse(config)
        .inspect_err(|e| telemetry::created(&span, Err(e.code().as_str())))?;
    telemetry::created(&span, Ok(&agent));
    let elapsed = started.elapsed();
    let mut r = TaskResult::success(task_id);
    r.agent_id = Some(agent.id.to_string());
    r.execution_time = Some(elapsed.as_secs_f64());
    let info = agent.provider.info();
    AgentReport::<&str> {
        agent_id: &agent.id,
        reused,
        created_at: agent.created_at,
        model: &agent.config.model_config.model,
        provider: ProviderName {
            name: &info.name,
            simulated: info.simulated,
        },
        tools: agent.tools.iter().map(|t| &*t.full_name).collect(),
        sessions: agent.session_count() as u64,
    }
    .write_into(&mut r.metadata);
    r.metadata.insert("timing".into(), json!({ "total_us": us(elapsed) }));
    Ok(r)
}

/// One validated conversation turn.
struct Turn {
    request: Box<TaskRequest>,
    agent_id: Option<String>,
    /// The agent routing found by `agent_id`.
    agent: Option<Arc<Agent>>,
    session_id: String,
    /// When the adapter took the turn: its total time counts from here, plus the attachment
    /// checks of validation (`media_time`), the window this runtime measured before part 8.
    started: Instant,
    media_time: Duration,
}

impl NativeAdapter {
    async fn converse(&self, turn: Turn, observer: &mut dyn TurnObserver) -> Result<TaskResult, EngineError> {
        let started_at = Utc::now();
        let mut chat = self.sessions.open(&turn.session_id, turn.request.user_id()).await?;
        let binding = chat.bind(&self.agents, turn.agent_id.as_deref(), turn.agent).await?;
        let agent = Arc::clone(&binding.slot.agent);
        let runner = Arc::clone(&binding.slot.runner);
        let runner_id = Arc::clone(&runner.id);
        let internal_id = Arc::clone(&binding.internal_id);
        let _active = TaskGuard::new(&agent);

        let user_id: Option<Arc<str>> = turn.request.user_id().map(Arc::from);
        let TaskRequest {
            task_id,
            messages,
            metadata,
            ..
        } = *turn.request;
        let task_id: Arc<str> = Arc::from(task_id);
        let mut pending = Pending {
            events: Vec::with_capacity(messages.len() + 3),
            base_seq: chat.next_seq(),
            internal_id: Arc::clone(&internal_id),
            agent_id: Arc::clone(&agent.id),
        };
        for m in messages {
            pending.push(m, Vec::new());
        }
        let chat_id = Arc::clone(chat.id());
        let scope = TurnScope {
            task_id: &task_id,
            session_id: &chat_id,
            user_id,
            metadata: &metadata,
        };
        let work = async {
            let committed = chat.history();
            let outcome = match &self.turn_loop {
                Some(other) => {
                    let input = LoopInput {
                        agent: &agent,
                        runner: &runner,
                        committed,
                        pending: &mut pending,
                        scope,
                        observer,
                        kit: &self.kit,
                    };
                    other.run(input).await?
                }
                None => {
                    self.model_tool_loop(&agent, committed, &mut pending, scope, observer)
                        .await?
                }
            };
            chat.commit(&pending.events).await?;
            Ok::<_, EngineError>(outcome)
        };
        // Traced: boxed, so that this future does not grow for the untraced path.
        let (outcome, trace_id) = match telemetry::on() {
            true => Box::pin(telemetry::invoke_call(&agent, &chat_id, work)).await,
            false => (work.await, None),
        };
        let total = turn.started.elapsed() + turn.media_time;
        if let Some(m) = self.kit.meter.get() {
            m.turn(&meter::TurnDone {
                provider: telemetry::provider_name(&agent),
                model: &agent.config.model_config.model,
                duration: total,
                error: outcome.as_ref().err().map(|e| e.code().as_str()),
            });
        }
        let outcome = outcome?;

        let context = AgentContext {
            session_id: &*chat_id,
            internal_session_id: &*internal_id,
            user_id: chat.user_id(),
            agent_id: &*agent.id,
            runner_id: &*runner_id,
            execution_id: &*task_id,
        };
        let report = self.report(&agent, &chat, &outcome, total, turn.media_time, started_at, context);
        let mut result = TaskResult::with_status(&*task_id, report.execution_stats.status);
        match outcome.answer {
            Some(i) => result.messages.push(pending.events[i].message.clone()),
            None => {
                result.error_message = Some(format!(
                    "the model was still calling tools after {} calls (max_model_calls_per_turn)",
                    outcome.model_calls
                ))
            }
        }
        result.tool_results = pending
            .events
            .iter()
            .flat_map(|e| e.tool_results.iter().cloned())
            .collect();
        result.execution_time = Some(total.as_secs_f64());
        result.session_id = Some(turn.session_id);
        result.agent_id = Some(agent.id.to_string());
        report.write_into(&mut result.metadata);
        if let Some(t) = trace_id {
            // The turn's trace, so that a client (or the harness) can find its spans.
            result.metadata.insert("trace_id".into(), t.into());
        }
        Ok(result)
    }

    /// The turn report.
    #[allow(clippy::too_many_arguments)]
    fn report<'a>(
        &self,
        agent: &'a Agent,
        chat: &OpenChat<'_>,
        o: &'a LoopOutcome,
        total: Duration,
        media_time: Duration,
        started_at: chrono::DateTime<Utc>,
        agent_context: AgentContext<&'a str>,
    ) -> TurnReport<&'a str> {
        let status = match o.answer {
            Some(_) => TaskStatus::Success,
            None => TaskStatus::Partial,
        };
        let info = agent.provider.info();
        TurnReport {
            timing: TurnTiming {
                total_us: us(total),
                model_us: us(o.model_time),
                tool_us: us(o.tool_time),
                approval_us: us(o.approval_time),
                media_us: us(media_time),
                overhead_us: us(total.saturating_sub(o.model_time + o.tool_time + o.approval_time)),
                model_calls: o.model_calls,
                tool_calls: o.tool_calls,
            },
            token_usage: o.usage,
            cost_usd: o.cost_usd,
            provider: ProviderReport {
                name: &info.name,
                model: &agent.config.model_config.model,
                simulated: info.simulated,
                profile: o.served_by.as_deref(),
            },
            session: chat.report(),
            agent_context,
            execution_stats: ExecutionStats {
                started_at,
                finished_at: Utc::now(),
                duration_ms: total.as_secs_f64() * 1000.0,
                status,
            },
        }
    }

    /// The model↔tool loop: the model sees the committed window plus this turn's pending events
    /// (borrowed, nothing copied); the tool calls it asks for run concurrently once the observer
    /// has decided about them; their results go back to it.
    async fn model_tool_loop(
        &self,
        agent: &Agent,
        committed: &[Arc<SessionEvent>],
        pending: &mut Pending,
        scope: TurnScope<'_>,
        observer: &mut dyn TurnObserver,
    ) -> Result<LoopOutcome, EngineError> {
        let mut o = LoopOutcome::default();
        let tool_timeout = self.kit.tool_timeout(agent);
        for _ in 0..self.kit.limits.max_model_calls.max(1) {
            let request = ModelRequest {
                model: &agent.config.model_config,
                system: &agent.system,
                history: HistoryView {
                    committed,
                    pending: &pending.events,
                },
                tools: &agent.declarations,
                metadata: scope.metadata,
            };
            let (response, elapsed) = self
                .kit
                .call_model(agent, scope.session_id, request, observer.sink())
                .await;
            o.model_calls += 1;
            let response = response?;
            o.model_answered(&response, elapsed);

            let mut message = UniversalMessage::assistant(response.text);
            message.author = Some(Arc::clone(&agent.id));
            if response.tool_calls.is_empty() {
                o.answer = Some(pending.events.len());
                pending.push(message, Vec::new());
                break;
            }
            message.set_tool_calls(Some(response.tool_calls));
            pending.push(message, Vec::new());
            let calls = pending
                .events
                .last()
                .and_then(|e| e.message.tool_calls())
                .unwrap_or_default();
            observer.planned(calls).await;
            let t = Instant::now();
            let decisions = observer.decide(&agent.tools, calls, &self.kit.limits.approvals).await;
            o.approval_time += t.elapsed();
            let t = Instant::now();
            let (progress, mut updates) = match observer.wants_tool_progress() {
                true => {
                    let (sink, rx) = ProgressSink::channel(TOOL_PROGRESS_BUFFER);
                    (Some(sink), Some(rx))
                }
                false => (None, None),
            };
            let progress_seen = progress.clone();
            let call_scope = CallScope {
                task_id: scope.task_id,
                session_id: scope.session_id,
                user_id: scope.user_id.clone(),
                progress,
                default_timeout: tool_timeout,
            };
            let running = execute_calls(&agent.tools, calls, &decisions, call_scope);
            let results = match updates.as_mut() {
                None => running.await,
                Some(rx) => {
                    // Forward progress while the calls run; the calls never wait for the observer.
                    tokio::pin!(running);
                    let results = loop {
                        tokio::select! {
                            r = &mut running => break r,
                            Some(update) = rx.recv() => observer.tool_progress(update).await,
                        }
                    };
                    while let Ok(update) = rx.try_recv() {
                        observer.tool_progress(update).await;
                    }
                    if let Some(sink) = progress_seen {
                        self.kit.progress_dropped(sink.dropped());
                    }
                    results
                }
            };
            o.tool_time += t.elapsed();
            o.tool_calls += results.len() as u64;
            observer.tool_results(&results).await;
            self.kit.tools_done(&results);
            let ok = results.iter().filter(|r| r.is_success()).count();
            let summary = UniversalMessage::text(Role::Tool, format!("{ok} of {} tool calls succeeded", results.len()));
            pending.push(summary, results);
        }
        Ok(o)
    }
}
