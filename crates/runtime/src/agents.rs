//! Agents, their runners, and controlled reuse.
//!
//! An [`Agent`] is a config made live: resolved tools, a model provider, a system prompt.
//! Agents whose configs are equal are shared, each serving at most `max_sessions_per_agent`
//! chat sessions: a session takes a [`SessionSlot`] with an atomic compare-and-swap, so the cap
//! holds under any concurrency. A [`Runner`] is an agent's execution context, created with its
//! first session and reclaimed when it has no session and no active task.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{AgentConfig, ToolDeclaration};
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use parking_lot::Mutex;
use serde_json::Value;

use crate::clock::Clock;
use crate::error::EngineError;
use crate::ids::IdGen;
use crate::model::{ModelProvider, SystemPrompt};
use crate::stats::Stats;
use crate::tools::{RegisteredTool, ToolRegistry};

/// An agent's execution context: made when its first session binds, reused by the sessions that
/// follow, recycled when idle (`sweeper`). A framework keeps its own per-runner state in
/// [`Runner::framework_state`] (the `adk` framework keeps an ADK runner there), so that state
/// lives and dies with the runner.
pub struct Runner {
    pub id: Arc<str>,
    framework: std::sync::OnceLock<Arc<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Runner {
    pub(crate) fn new(id: Arc<str>) -> Self {
        Self {
            id,
            framework: std::sync::OnceLock::new(),
        }
    }

    /// The framework's state for this runner, made by `init` on first use. A runner serves one
    /// agent, which runs on one framework, so one slot is enough; asking for another type than
    /// the one stored is an error.
    pub fn framework_state<T: Send + Sync + 'static, E>(
        &self,
        init: impl FnOnce() -> Result<T, E>,
    ) -> Result<Option<Arc<T>>, E> {
        let any = match self.framework.get() {
            Some(any) => any,
            None => {
                let made: Arc<dyn std::any::Any + Send + Sync> = Arc::new(init()?);
                // A racing turn of another session may have stored one first: that one is kept.
                self.framework.get_or_init(|| made)
            }
        };
        Ok(Arc::clone(any).downcast::<T>().ok())
    }
}

/// A live agent.
pub struct Agent {
    pub id: Arc<str>,
    pub config: AgentConfig,
    config_key: u64,
    pub created_at: DateTime<Utc>,
    pub tools: Arc<[Arc<RegisteredTool>]>,
    /// What a model reads of those tools, in the same order.
    pub declarations: Arc<[Arc<ToolDeclaration>]>,
    pub provider: Arc<dyn ModelProvider>,
    pub system: SystemPrompt,
    /// `framework_config.tool_timeout_s`, when set.
    pub tool_timeout: Option<Duration>,
    sessions: AtomicUsize,
    active_tasks: AtomicUsize,
    last_used_ms: AtomicU64,
    runner: Mutex<Option<Arc<Runner>>>,
    clock: Clock,
    retired: AtomicBool,
    /// What every span of this agent's turns repeats, made on the first traced turn.
    pub(crate) span_parts: std::sync::OnceLock<Box<SpanParts>>,
}

/// An agent's span names and attribute values, made once and shared by its spans (a value is an
/// `Arc<str>`: a span takes a reference, not a copy).
pub(crate) struct SpanParts {
    pub provider: opentelemetry::Value,
    pub model: opentelemetry::Value,
    pub name: opentelemetry::Value,
    pub simulated: bool,
    pub invoke_name: String,
    pub chat_name: String,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Agent {
    /// Chat sessions bound to this agent now.
    pub fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Acquire)
    }

    pub fn active_tasks(&self) -> usize {
        self.active_tasks.load(Ordering::Acquire)
    }

    /// The runner, when one is live.
    pub fn runner(&self) -> Option<Arc<Runner>> {
        self.runner.lock().clone()
    }

    /// Cleaned up or reclaimed: no new session may bind to it.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    fn touch(&self, now_ms: u64) {
        self.last_used_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    fn touch_now(&self) {
        self.touch(self.clock.now_ms());
    }

    fn idle_for(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.last_used_ms.load(Ordering::Relaxed))
    }
}

/// A chat session's hold on an agent and its runner; released on drop. Two pointers: every
/// live session holds one. (Which sessions an agent serves is found from the sessions' side when
/// the agent is cleaned up, so binding a session takes no per-agent lock.)
pub struct SessionSlot {
    pub agent: Arc<Agent>,
    pub runner: Arc<Runner>,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.agent.sessions.fetch_sub(1, Ordering::AcqRel);
        self.agent.touch_now();
    }
}

/// Marks a task active on an agent for as long as it lives.
pub(crate) struct TaskGuard {
    agent: Arc<Agent>,
}

impl TaskGuard {
    pub(crate) fn new(agent: &Arc<Agent>) -> Self {
        agent.active_tasks.fetch_add(1, Ordering::AcqRel);
        Self {
            agent: Arc::clone(agent),
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.agent.active_tasks.fetch_sub(1, Ordering::AcqRel);
        self.agent.touch_now();
    }
}

/// Model providers by name.
#[derive(Clone)]
pub struct ProviderSet {
    pub(crate) default: String,
    pub(crate) providers: HashMap<String, Arc<dyn ModelProvider>>,
}

impl ProviderSet {
    fn select(&self, config: &AgentConfig) -> Result<Arc<dyn ModelProvider>, EngineError> {
        let name = config
            .framework_config
            .get("provider")
            .or_else(|| config.model_config.extra.get("provider"))
            .and_then(Value::as_str)
            .unwrap_or(&self.default);
        self.providers.get(name).cloned().ok_or_else(|| {
            let mut known: Vec<&str> = self.providers.keys().map(String::as_str).collect();
            known.sort_unstable();
            EngineError::ProviderUnavailable(name.to_owned(), known.join(", "))
        })
    }
}

/// Hashes a JSON value with object keys in sorted order, so equal configs hash equal whatever
/// order their keys arrived in.
fn canonical_hash(v: &Value, h: &mut impl Hasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => (2u8, n.to_string()).hash(h),
        Value::String(s) => (3u8, s).hash(h),
        Value::Array(a) => {
            (4u8, a.len()).hash(h);
            a.iter().for_each(|x| canonical_hash(x, h));
        }
        Value::Object(o) => {
            (5u8, o.len()).hash(h);
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort_unstable();
            for k in keys {
                k.hash(h);
                canonical_hash(&o[k], h);
            }
        }
    }
}

fn config_key(config: &AgentConfig) -> u64 {
    let mut h = DefaultHasher::new();
    canonical_hash(&serde_json::to_value(config).unwrap_or(Value::Null), &mut h);
    h.finish()
}

/// What explicit cleanup of an agent released.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AgentCleanup {
    pub agent_id: String,
    /// Chat sessions that were bound to it (the caller archives them).
    pub chat_ids: Vec<String>,
    pub runner_released: bool,
}

/// Owns every live agent.
pub struct AgentManager {
    agents: DashMap<Arc<str>, Arc<Agent>>,
    by_config: DashMap<u64, Vec<Arc<Agent>>>,
    live_runners: AtomicU64,
    cap: usize,
    registry: Arc<ToolRegistry>,
    providers: ProviderSet,
    ids: Arc<IdGen>,
    stats: Arc<Stats>,
    clock: Clock,
}

impl AgentManager {
    pub(crate) fn new(
        cap: usize,
        registry: Arc<ToolRegistry>,
        providers: ProviderSet,
        ids: Arc<IdGen>,
        stats: Arc<Stats>,
        clock: Clock,
    ) -> Self {
        Self {
            agents: DashMap::new(),
            by_config: DashMap::new(),
            live_runners: AtomicU64::new(0),
            cap: cap.max(1),
            registry,
            providers,
            ids,
            stats,
            clock,
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Agent>> {
        self.agents.get(id).map(|a| Arc::clone(a.value()))
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn filter(&self, keep: impl Fn(&Agent) -> bool) -> Vec<Arc<Agent>> {
        self.agents
            .iter()
            .filter(|a| !a.is_retired() && keep(a.value()))
            .map(|a| Arc::clone(a.value()))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    pub fn live_runners(&self) -> u64 {
        self.live_runners.load(Ordering::Relaxed)
    }

    /// Returns an existing agent with an equal config and a free session slot, or creates one.
    /// The boolean says whether it was reused. Unknown tools fail here, with suggestions.
    pub(crate) fn create_or_reuse(&self, config: AgentConfig) -> Result<(Arc<Agent>, bool), EngineError> {
        let key = config_key(&config);
        let now = self.clock.now_ms();
        let mut bucket = self.by_config.entry(key).or_default();
        // Newest first: the newest agent is the one most likely to have room. Cheap checks come
        // first; the full config comparison only guards against a hash collision.
        if let Some(agent) = bucket
            .iter()
            .rev()
            .find(|a| a.session_count() < self.cap && !a.is_retired() && a.config == config)
        {
            agent.touch(now);
            Stats::incr(&self.stats.agents_reused);
            return Ok((Arc::clone(agent), true));
        }
        let agent = self.build(self.ids.next("agent"), config, key, now)?;
        // In the id map before it can be found for reuse: a client handed this agent must be
        // able to resolve its id at once.
        self.agents.insert(Arc::clone(&agent.id), Arc::clone(&agent));
        bucket.push(Arc::clone(&agent));
        drop(bucket);
        Stats::incr(&self.stats.agents_created);
        Ok((agent, false))
    }

    /// Registers an agent created elsewhere (another instance on a shared store) under its own id;
    /// returns the one already here when there is one.
    pub(crate) fn adopt(&self, id: &str, config: AgentConfig) -> Result<Arc<Agent>, EngineError> {
        if let Some(a) = self.get(id) {
            return Ok(a);
        }
        let key = config_key(&config);
        let now = self.clock.now_ms();
        let mut bucket = self.by_config.entry(key).or_default();
        let agent = match self.agents.entry(Arc::from(id)) {
            dashmap::Entry::Occupied(e) => return Ok(Arc::clone(e.get())),
            dashmap::Entry::Vacant(v) => {
                let agent = self.build(Arc::from(id), config, key, now)?;
                v.insert(Arc::clone(&agent));
                agent
            }
        };
        bucket.push(Arc::clone(&agent));
        Stats::incr(&self.stats.agents_created);
        Ok(agent)
    }

    fn build(&self, id: Arc<str>, config: AgentConfig, key: u64, now: u64) -> Result<Arc<Agent>, EngineError> {
        let tools = config
            .available_tools
            .iter()
            .map(|name| self.registry.resolve(name))
            .collect::<Result<Vec<_>, _>>()?;
        let provider = self.providers.select(&config)?;
        provider.prepare(&config.model_config.model);
        let tool_timeout = config
            .framework_config
            .get("tool_timeout_s")
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64);
        Ok(Arc::new(Agent {
            id,
            system: SystemPrompt::new(config.system_prompt.as_str()),
            config,
            config_key: key,
            created_at: Utc::now(),
            declarations: tools.iter().map(|t| Arc::clone(&t.declaration)).collect(),
            tools: tools.into(),
            provider,
            tool_timeout,
            sessions: AtomicUsize::new(0),
            active_tasks: AtomicUsize::new(0),
            last_used_ms: AtomicU64::new(now),
            runner: Mutex::new(None),
            clock: self.clock,
            retired: AtomicBool::new(false),
            span_parts: std::sync::OnceLock::new(),
        }))
    }

    /// Takes a session slot on `agent` (atomically, under the cap) and makes sure it has a runner.
    pub(crate) fn acquire_slot(&self, agent: &Arc<Agent>) -> Result<SessionSlot, EngineError> {
        if agent.is_retired() {
            return Err(EngineError::UnknownAgent(agent.id.to_string()));
        }
        agent
            .sessions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.cap).then_some(n + 1))
            .map_err(|_| EngineError::AgentAtCapacity {
                agent_id: agent.id.to_string(),
                cap: self.cap,
            })?;
        let runner = {
            let mut slot = agent.runner.lock();
            match &*slot {
                Some(r) => Arc::clone(r),
                None => {
                    let r = Arc::new(Runner::new(self.ids.next("runner")));
                    *slot = Some(Arc::clone(&r));
                    self.live_runners.fetch_add(1, Ordering::Relaxed);
                    Stats::incr(&self.stats.runners_created);
                    r
                }
            }
        };
        agent.touch(self.clock.now_ms());
        Ok(SessionSlot {
            agent: Arc::clone(agent),
            runner,
        })
    }

    fn retire(&self, agent: &Arc<Agent>) {
        agent.retired.store(true, Ordering::Release);
        if let Some(mut bucket) = self.by_config.get_mut(&agent.config_key) {
            bucket.retain(|a| !Arc::ptr_eq(a, agent));
        }
        self.by_config.remove_if(&agent.config_key, |_, b| b.is_empty());
        self.agents.remove(&agent.id);
    }

    fn release_runner(&self, agent: &Agent) -> bool {
        let released = agent.runner.lock().take().is_some();
        if released {
            self.live_runners.fetch_sub(1, Ordering::Relaxed);
            Stats::incr(&self.stats.reclaimed_runners);
        }
        released
    }

    /// Removes an agent now (no session binds to it afterwards); returns it and whether its
    /// runner was released. The caller archives the chat sessions bound to it.
    pub(crate) fn cleanup(&self, id: &str) -> Option<(Arc<Agent>, bool)> {
        let agent = self.get(id)?;
        self.retire(&agent);
        let runner_released = self.release_runner(&agent);
        Stats::incr(&self.stats.agents_cleaned_up);
        Some((agent, runner_released))
    }

    /// Sweeper phase 2: runners with no session and no active task, idle for `ttl`.
    pub(crate) fn reclaim_runners(&self, now_ms: u64, ttl: Duration) -> u64 {
        let ttl = ttl.as_millis() as u64;
        let mut n = 0;
        for entry in self.agents.iter() {
            let a = entry.value();
            if a.session_count() != 0 || a.active_tasks() != 0 || a.idle_for(now_ms) < ttl {
                continue;
            }
            let mut slot = a.runner.lock();
            // Re-check under the runner lock: a session binding takes its slot before this lock.
            if slot.is_some() && a.session_count() == 0 && a.active_tasks() == 0 {
                *slot = None;
                self.live_runners.fetch_sub(1, Ordering::Relaxed);
                Stats::incr(&self.stats.reclaimed_runners);
                n += 1;
            }
        }
        n
    }

    /// Sweeper phase 3: agents with no runner, no session and no active task, idle for `ttl`.
    pub(crate) fn reclaim_agents(&self, now_ms: u64, ttl: Duration) -> u64 {
        let ttl = ttl.as_millis() as u64;
        let candidates: Vec<Arc<Agent>> = self
            .agents
            .iter()
            .filter(|e| {
                let a = e.value();
                a.session_count() == 0
                    && a.active_tasks() == 0
                    && a.idle_for(now_ms) >= ttl
                    && a.runner.lock().is_none()
            })
            .map(|e| Arc::clone(e.value()))
            .collect();
        let mut n = 0;
        for agent in candidates {
            // Decided under the config bucket's lock, so a concurrent reuse either sees the agent
            // retired or has refreshed its idle time first.
            let Some(mut bucket) = self.by_config.get_mut(&agent.config_key) else {
                continue;
            };
            let still_idle = agent.session_count() == 0
                && agent.active_tasks() == 0
                && agent.idle_for(now_ms) >= ttl
                && agent.runner.lock().is_none();
            if still_idle {
                agent.retired.store(true, Ordering::Release);
                bucket.retain(|a| !Arc::ptr_eq(a, &agent));
            }
            drop(bucket);
            if still_idle {
                self.by_config.remove_if(&agent.config_key, |_, b| b.is_empty());
                self.agents.remove(&agent.id);
                Stats::incr(&self.stats.reclaimed_agents);
                n += 1;
            }
        }
        n
    }
}
