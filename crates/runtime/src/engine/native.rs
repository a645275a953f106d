//! The native adapter: runs agent creation and conversation turns on this runtime's own agents,
//! sessions, tools and model providers.
//!
//! A turn holds its chat session's lock from start to commit. Its new events are built in a
//! pending list that the model sees after the committed window; they reach the window and the
//! store only when the turn succeeds, so a failed, timed-out or cancelled turn leaves nothing
//! half-written.

use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{Role, TaskRequest, TaskResult, TaskStatus, ToolResult, UniversalMessage};
use aether_store::{SessionEvent, SessionRecord, SessionState};
use async_trait::async_trait;
use chrono::Utc;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::observer::{TurnObserver, Unattended};
use super::{FrameworkAdapter, RequestPlan};
use crate::agents::{Agent, SessionSlot, TaskGuard};
use crate::error::EngineError;
use crate::model::{HistoryView, ModelRequest, TokenUsage};
use crate::runtime::Core;
use crate::sessions::{Binding, ChatState};
use crate::stats::Stats;
use crate::tools::executor::{execute_calls, CallScope};
use crate::tools::ProgressSink;

/// Progress updates of one response's tool calls that may wait for a live observer.
const TOOL_PROGRESS_BUFFER: usize = 64;

pub(crate) struct NativeAdapter {
    core: Arc<Core>,
}

impl NativeAdapter {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

#[async_trait]
impl FrameworkAdapter for NativeAdapter {
    fn name(&self) -> &str {
        "native"
    }

    async fn execute(&self, req: TaskRequest, plan: RequestPlan) -> Result<TaskResult, EngineError> {
        match plan {
            RequestPlan::CreateAgent(config) => create_agent(&self.core, &req.task_id, config),
            RequestPlan::Converse { agent_id, session_id } => {
                let result = converse(&self.core, req, agent_id, session_id).await;
                Stats::incr(&self.core.stats.turns);
                if result.as_ref().map_or(true, |r| !r.is_success()) {
                    Stats::incr(&self.core.stats.turns_failed);
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

fn create_agent(core: &Core, task_id: &str, config: aether_contracts::AgentConfig) -> Result<TaskResult, EngineError> {
    let started = Instant::now();
    let (agent, reused) = core.agents.create_or_reuse(config)?;
    let elapsed = started.elapsed();
    let mut r = TaskResult::success(task_id);
    r.agent_id = Some(agent.id.to_string());
    r.execution_time = Some(elapsed.as_secs_f64());
    let tools: Vec<&str> = agent.tools.iter().map(|t| &*t.full_name).collect();
    r.metadata.insert(
        "agent".into(),
        json!({
            "agent_id": &*agent.id,
            "reused": reused,
            "created_at": agent.created_at,
            "model": agent.config.model_config.model,
            "provider": agent.provider.info(),
            "tools": tools,
            "sessions": agent.session_count(),
        }),
    );
    r.metadata.insert("timing".into(), json!({ "total_us": us(elapsed) }));
    Ok(r)
}

/// What happened to the chat session during this turn.
#[derive(Default)]
struct TurnFlags {
    created: bool,
    recovered: bool,
    agent_switched: bool,
    /// The requested agent was full; the session went to an agent with an equal config.
    overflow_from: Option<String>,
}

/// Reads the session's record and history window from the store, once per live session.
async fn load(
    core: &Core,
    id: &str,
    st: &mut ChatState,
    flags: &mut TurnFlags,
    user_id: Option<&str>,
) -> Result<(), EngineError> {
    let store = &core.sessions.store;
    match store.get_session(id).await? {
        Some(record) => {
            let window = store.load_window(id, core.sessions.window).await?;
            st.window = window.events.into();
            st.events_before_window = window.events_before;
            st.next_seq = record.event_count;
            st.last_agent_id = Some(record.agent_id);
            st.user_id = record.user_id.or_else(|| user_id.map(str::to_owned));
            st.created_at = record.created_at;
            flags.recovered = true;
        }
        None => {
            st.user_id = user_id.map(str::to_owned);
            flags.created = true;
        }
    }
    st.loaded = true;
    Ok(())
}

/// With a shared store: catches up with turns another instance appended since this one last
/// wrote (the record's event count is ahead of ours), so the model sees the whole conversation and
/// our next append lands after theirs.
async fn refresh(core: &Core, id: &str, st: &mut ChatState) -> Result<(), EngineError> {
    let store = &core.sessions.store;
    let Some(record) = store.get_session(id).await? else {
        return Ok(());
    };
    if record.event_count != st.next_seq {
        let window = store.load_window(id, core.sessions.window).await?;
        st.window = window.events.into();
        st.events_before_window = window.events_before;
        st.next_seq = record.event_count;
        st.last_agent_id = Some(record.agent_id);
    }
    Ok(())
}

/// Takes a session slot on `agent`; when it is full, overflows to an agent with an equal config
/// (one with room, or a new one). Reuse is decided when the agent is created and the slot is
/// taken at the first turn, so under load several clients can be handed the same nearly-full
/// agent: they are served by a sibling instead of failing. The cap itself is never exceeded.
fn acquire_or_overflow(
    core: &Core,
    agent: Arc<Agent>,
    chat_id: &Arc<str>,
    flags: &mut TurnFlags,
) -> Result<(Arc<Agent>, SessionSlot), EngineError> {
    let mut candidate = agent;
    for _ in 0..16 {
        match core.agents.acquire_slot(&candidate, chat_id) {
            Ok(slot) => return Ok((candidate, slot)),
            Err(EngineError::AgentAtCapacity { agent_id, .. }) => {
                flags.overflow_from.get_or_insert(agent_id);
                candidate = core.agents.create_or_reuse(candidate.config.clone())?.0;
            }
            Err(e) => return Err(e),
        }
    }
    Err(EngineError::Internal(
        "could not find an agent with a free session slot after 16 tries".into(),
    ))
}

/// Chooses the agent for this turn and binds the session to it (new session, recovery or switch).
async fn bind(
    core: &Core,
    chat_id: &Arc<str>,
    st: &mut ChatState,
    agent_id: Option<&str>,
    flags: &mut TurnFlags,
) -> Result<(), EngineError> {
    let target: Arc<Agent> = match agent_id {
        Some(id) => core
            .agents
            .get(id)
            .ok_or_else(|| EngineError::UnknownAgent(id.to_owned()))?,
        None => match st.binding.as_ref().filter(|b| !b.slot.agent.is_retired()) {
            Some(b) => Arc::clone(&b.slot.agent),
            None => st
                .last_agent_id
                .as_deref()
                .and_then(|id| core.agents.get(id))
                .ok_or_else(|| EngineError::SessionWithoutAgent(chat_id.to_string()))?,
        },
    };
    if st.binding.as_ref().is_some_and(|b| Arc::ptr_eq(&b.slot.agent, &target)) {
        return Ok(());
    }
    let previous_agent = st
        .binding
        .as_ref()
        .map(|b| b.slot.agent.id.to_string())
        .or_else(|| st.last_agent_id.clone());
    let (target, slot) = acquire_or_overflow(core, target, chat_id, flags)?;
    if previous_agent.is_some_and(|p| *p != *target.id) {
        flags.agent_switched = true;
        Stats::incr(&core.stats.agent_switches);
    }
    let internal_id = core.ids.next("ses");
    let now = Utc::now();
    core.sessions
        .store
        .put_session(SessionRecord {
            session_id: chat_id.to_string(),
            user_id: st.user_id.clone(),
            agent_id: target.id.to_string(),
            internal_session_id: internal_id.to_string(),
            state: SessionState::Active,
            created_at: st.created_at,
            updated_at: now,
            event_count: st.next_seq,
        })
        .await?;
    st.last_agent_id = Some(target.id.to_string());
    st.binding = Some(Binding { internal_id, slot });
    if flags.created {
        Stats::incr(&core.stats.sessions_created);
    } else if flags.recovered {
        Stats::incr(&core.stats.sessions_recovered);
    }
    Ok(())
}

/// Opens (or recovers) a chat session bound to `agent_id` without a turn.
pub(crate) async fn open_session(
    core: &Core,
    session_id: &str,
    agent_id: &str,
    user_id: Option<&str>,
) -> Result<(), EngineError> {
    let (chat, mut st) = core.sessions.lock(session_id).await;
    let mut flags = TurnFlags::default();
    if !st.loaded {
        load(core, &chat.id, &mut st, &mut flags, user_id).await?;
    }
    if let Err(e) = bind(core, &chat.id, &mut st, Some(agent_id), &mut flags).await {
        if st.binding.is_none() {
            core.sessions.discard(&chat, &mut st);
        }
        return Err(e);
    }
    chat.touch(core.clock.now_ms());
    Ok(())
}

async fn converse(
    core: &Core,
    req: TaskRequest,
    agent_id: Option<String>,
    session_id: String,
) -> Result<TaskResult, EngineError> {
    converse_with(core, req, agent_id, session_id, &mut Unattended).await
}

/// One turn, reporting to `observer` as it goes (a live turn streams; a sync turn does not).
pub(crate) async fn converse_with(
    core: &Core,
    req: TaskRequest,
    agent_id: Option<String>,
    session_id: String,
    observer: &mut dyn TurnObserver,
) -> Result<TaskResult, EngineError> {
    let started = Instant::now();
    let started_at = Utc::now();
    let mut req = req;
    super::validate::inspect_media(&mut req, &core.config.media)?;
    let media_time = started.elapsed();
    let (chat, mut st) = core.sessions.lock(&session_id).await;
    let mut flags = TurnFlags::default();
    if !st.loaded {
        load(core, &chat.id, &mut st, &mut flags, req.user_id()).await?;
    } else if core.config.shared_store {
        refresh(core, &chat.id, &mut st).await?;
    }
    if let Err(e) = bind(core, &chat.id, &mut st, agent_id.as_deref(), &mut flags).await {
        if st.binding.is_none() {
            // Never bound: leave no empty shell behind in memory (the store was not touched).
            core.sessions.discard(&chat, &mut st);
        }
        return Err(e);
    }
    let st = &mut *st;
    let Some(binding) = st.binding.as_ref() else {
        return Err(EngineError::Internal("session bound to no agent after binding".into()));
    };
    let agent = Arc::clone(&binding.slot.agent);
    let runner_id = Arc::clone(&binding.slot.runner.id);
    let internal_id = Arc::clone(&binding.internal_id);
    let _active = TaskGuard::new(&agent, core.clock);

    let base_seq = st.next_seq;
    let user_id: Option<Arc<str>> = req.user_id().map(Arc::from);
    let mut pending: Vec<Arc<SessionEvent>> = Vec::with_capacity(req.messages.len() + 3);
    let new_event = |pending: &Vec<Arc<SessionEvent>>, message: UniversalMessage, results: Vec<ToolResult>| {
        Arc::new(SessionEvent::new(
            base_seq + pending.len() as u64,
            Arc::clone(&internal_id),
            Arc::clone(&agent.id),
            message,
            results,
        ))
    };
    let req_metadata = &req.metadata;
    let task_id: Arc<str> = Arc::from(req.task_id.as_str());
    for m in req.messages {
        let e = new_event(&pending, m, Vec::new());
        pending.push(e);
    }

    let committed: &[Arc<SessionEvent>] = st.window.make_contiguous();
    let mut usage = TokenUsage::default();
    let mut cost_usd = 0.0;
    let mut model_time = Duration::ZERO;
    let mut tool_time = Duration::ZERO;
    let mut approval_time = Duration::ZERO;
    let mut model_calls = 0u32;
    let mut tool_calls = 0u64;
    let mut served_by = None;
    let mut final_index = None;
    let tool_timeout = agent.tool_timeout.unwrap_or(core.config.tool_timeout);

    for _ in 0..core.config.max_model_calls_per_turn.max(1) {
        let request = ModelRequest {
            model: &agent.config.model_config,
            system: &agent.system,
            history: HistoryView {
                committed,
                pending: &pending,
            },
            tools: &agent.tools,
            metadata: req_metadata,
        };
        let t = Instant::now();
        let response = match observer.sink() {
            Some(sink) => agent.provider.generate_stream(request, sink).await,
            None => agent.provider.generate(request).await,
        };
        model_time += t.elapsed();
        model_calls += 1;
        Stats::incr(&core.stats.model_calls);
        let response = response?;
        usage += response.usage;
        cost_usd += response.cost_usd;
        served_by = Some(response.served_by);

        let mut message = UniversalMessage::assistant(response.text);
        message.author = Some(agent.id.to_string());
        if response.tool_calls.is_empty() {
            final_index = Some(pending.len());
            let e = new_event(&pending, message, Vec::new());
            pending.push(e);
            break;
        }
        message.tool_calls = Some(response.tool_calls);
        let e = new_event(&pending, message, Vec::new());
        pending.push(e);
        let calls = pending
            .last()
            .and_then(|e| e.message.tool_calls.as_deref())
            .unwrap_or_default();
        observer.planned(calls).await;
        let t = Instant::now();
        let decisions = observer.decide(&agent.tools, calls, &core.config.approvals).await;
        approval_time += t.elapsed();
        let t = Instant::now();
        let (progress, mut updates) = match observer.wants_tool_progress() {
            true => {
                let (sink, rx) = ProgressSink::channel(TOOL_PROGRESS_BUFFER);
                (Some(sink), Some(rx))
            }
            false => (None, None),
        };
        let progress_seen = progress.clone();
        let scope = CallScope {
            task_id: &task_id,
            session_id: &chat.id,
            user_id: user_id.clone(),
            progress,
            default_timeout: tool_timeout,
        };
        let running = execute_calls(&agent.tools, calls, &decisions, scope);
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
                    Stats::add(&core.stats.tool_progress_dropped, sink.dropped());
                }
                results
            }
        };
        tool_time += t.elapsed();
        tool_calls += results.len() as u64;
        observer.tool_results(&results).await;
        Stats::add(&core.stats.tool_calls, results.len() as u64);
        let ok = results.iter().filter(|r| r.is_success()).count();
        let summary = UniversalMessage::text(Role::Tool, format!("{ok} of {} tool calls succeeded", results.len()));
        let e = new_event(&pending, summary, results);
        pending.push(e);
    }

    // Commit: the store first, then the window, so a failed write changes nothing.
    core.sessions.store.append_events(&chat.id, &pending).await?;
    let window_cap = core.sessions.window;
    for e in &pending {
        st.window.push_back(Arc::clone(e));
        if st.window.len() > window_cap {
            st.window.pop_front();
            st.events_before_window += 1;
        }
    }
    st.next_seq += pending.len() as u64;
    st.turns += 1;
    chat.touch(core.clock.now_ms());

    let total = started.elapsed();
    let overhead = total.saturating_sub(model_time + tool_time + approval_time);
    let status = if final_index.is_some() {
        TaskStatus::Success
    } else {
        TaskStatus::Partial
    };
    let mut result = TaskResult::with_status(req.task_id, status);
    if let Some(i) = final_index {
        result.messages.push(pending[i].message.clone());
    } else {
        result.error_message = Some(format!(
            "the model was still calling tools after {model_calls} calls (max_model_calls_per_turn)"
        ));
    }
    result.tool_results = pending.iter().flat_map(|e| e.tool_results.iter().cloned()).collect();
    result.execution_time = Some(total.as_secs_f64());
    result.session_id = Some(session_id);
    result.agent_id = Some(agent.id.to_string());

    let info = agent.provider.info();
    let m = &mut result.metadata;
    m.insert("token_usage".into(), json!(usage));
    m.insert("cost_usd".into(), json!(cost_usd));
    m.insert(
        "execution_stats".into(),
        json!({
            "started_at": started_at,
            "finished_at": Utc::now(),
            "duration_ms": total.as_secs_f64() * 1000.0,
            "status": status,
        }),
    );
    m.insert(
        "agent_context".into(),
        json!({
            "session_id": &*chat.id,
            "internal_session_id": &*internal_id,
            "user_id": st.user_id,
            "agent_id": &*agent.id,
            "runner_id": &*runner_id,
            "execution_id": &*task_id,
        }),
    );
    m.insert(
        "timing".into(),
        json!({
            "total_us": us(total),
            "model_us": us(model_time),
            "tool_us": us(tool_time),
            "approval_us": us(approval_time),
            "media_us": us(media_time),

            "overhead_us": us(overhead),
            "model_calls": model_calls,
            "tool_calls": tool_calls,
        }),
    );
    let mut provider = Map::with_capacity(4);
    provider.insert("name".into(), Value::from(info.name.as_str()));
    provider.insert("model".into(), Value::from(agent.config.model_config.model.as_str()));
    provider.insert("simulated".into(), Value::from(info.simulated));
    if let Some(p) = served_by {
        provider.insert("profile".into(), Value::from(&*p));
    }
    m.insert("provider".into(), Value::Object(provider));
    m.insert(
        "session".into(),
        json!({
            "created": flags.created,
            "recovered": flags.recovered,
            "agent_switched": flags.agent_switched,
            "overflow_from": flags.overflow_from,
            "turn": st.turns,
            "events": st.next_seq,
            "window_events": st.window.len(),
        }),
    );
    Ok(result)
}
