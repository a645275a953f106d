//! [`Runtime`]: everything wired together, and [`RuntimeBuilder`] to configure it.

use std::collections::HashMap;
use std::sync::Arc;

use aether_contracts::{AgentConfig, TaskRequest, TaskResult};
use aether_store::{EventPage, MemoryStore, Page, PageRequest, SessionFilter, SessionRecord, SessionStore};
use tokio::time::Instant;

use crate::agents::{AgentCleanup, AgentManager, ProviderSet};
use crate::clock::Clock;
use crate::config::RuntimeConfig;
use crate::engine::{AdapterRegistry, Assistant, ExecutionEngine, FrameworkAdapter, NativeAdapter};
use crate::error::EngineError;
use crate::ids::IdGen;
use crate::model::{ModelProvider, SimConfig, SimulatedModel};
use crate::sessions::ChatSessions;
use crate::stats::{Stats, StatsSnapshot};
use crate::sweeper::{self, SweepReport};
use crate::tools::demo::{demo_tools, DemoToolConfig};
use crate::tools::{builtin, RegisteredTool, RegistryError, ToolRegistry};

/// Shared state of one runtime.
pub(crate) struct Core {
    pub(crate) config: RuntimeConfig,
    pub(crate) agents: AgentManager,
    pub(crate) sessions: ChatSessions,
    pub(crate) stats: Arc<Stats>,
    pub(crate) ids: Arc<IdGen>,
    pub(crate) clock: Clock,
    pub(crate) tools: Arc<ToolRegistry>,
}

/// Why a runtime could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Tool(#[from] RegistryError),
    #[error("default model provider `{0}` is not registered")]
    UnknownDefaultProvider(String),
    #[error("the idle sweeper needs a tokio runtime: build inside one, or set sweep_interval to None")]
    NoTokioRuntime,
}

/// Configures a [`Runtime`]. With nothing set: the simulated model, the built-in and demo tools,
/// an in-memory store and default limits.
#[derive(Default)]
pub struct RuntimeBuilder {
    config: RuntimeConfig,
    store: Option<Arc<dyn SessionStore>>,
    sim: SimConfig,
    demo: DemoToolConfig,
    tools: Vec<RegisteredTool>,
    providers: Vec<(String, Arc<dyn ModelProvider>)>,
    default_provider: Option<String>,
}

impl RuntimeBuilder {
    pub fn config(mut self, config: RuntimeConfig) -> Self {
        self.config = config;
        self
    }

    pub fn store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Settings of the simulated model (always registered as provider `simulated`).
    pub fn simulated_model(mut self, sim: SimConfig) -> Self {
        self.sim = sim;
        self
    }

    pub fn demo_tools(mut self, demo: DemoToolConfig) -> Self {
        self.demo = demo;
        self
    }

    /// Scales every simulated delay (model and demo tools); 0 removes them.
    pub fn time_scale(mut self, scale: f64) -> Self {
        self.sim.time_scale = scale;
        self.demo.time_scale = scale;
        self
    }

    /// Registers an extra tool.
    pub fn tool(mut self, tool: RegisteredTool) -> Self {
        self.tools.push(tool);
        self
    }

    /// Registers a model provider under `name` (agents pick it with `framework_config.provider`).
    pub fn provider(mut self, name: impl Into<String>, provider: Arc<dyn ModelProvider>) -> Self {
        self.providers.push((name.into(), provider));
        self
    }

    /// Provider used by agents that name none (default `simulated`).
    pub fn default_provider(mut self, name: impl Into<String>) -> Self {
        self.default_provider = Some(name.into());
        self
    }

    pub fn build(self) -> Result<Runtime, BuildError> {
        let registry = Arc::new(ToolRegistry::new());
        registry.register(builtin::echo())?;
        registry.register(builtin::timestamp())?;
        registry.register(builtin::wait())?;
        for t in demo_tools(&self.demo) {
            registry.register(t)?;
        }
        for t in self.tools {
            registry.register(t)?;
        }

        let sim = SimulatedModel::new(self.sim);
        let mut providers: HashMap<String, Arc<dyn ModelProvider>> = HashMap::new();
        providers.insert("simulated".into(), Arc::new(sim));
        providers.extend(self.providers);
        let default = self.default_provider.unwrap_or_else(|| "simulated".into());
        if !providers.contains_key(&default) {
            return Err(BuildError::UnknownDefaultProvider(default));
        }

        let config = self.config;
        let clock = Clock::new();
        let stats = Arc::new(Stats::default());
        let ids = Arc::new(IdGen::new());
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let core = Arc::new(Core {
            agents: AgentManager::new(
                config.max_sessions_per_agent,
                Arc::clone(&registry),
                ProviderSet { default, providers },
                Arc::clone(&ids),
                Arc::clone(&stats),
                clock,
            ),
            sessions: ChatSessions::new(store, config.history_window, config.max_active_sessions, clock),
            stats,
            ids,
            clock,
            tools: registry,
            config,
        });

        let mut adapters = AdapterRegistry::default();
        let native_core = Arc::clone(&core);
        adapters.register("native", move || {
            Ok(Arc::new(NativeAdapter::new(Arc::clone(&native_core))) as Arc<dyn FrameworkAdapter>)
        });
        let engine = Arc::new(ExecutionEngine::new(adapters, core.config.default_framework.clone()));

        let sweeper = match core.config.sweep_interval {
            Some(every) => {
                if tokio::runtime::Handle::try_current().is_err() {
                    return Err(BuildError::NoTokioRuntime);
                }
                Some(sweeper::spawn(&core, every))
            }
            None => None,
        };
        Ok(Runtime {
            assistant: Assistant::new(engine),
            core,
            sweeper: parking_lot::Mutex::new(sweeper),
        })
    }
}

/// What creating an agent returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentHandle {
    pub agent_id: String,
    /// An existing agent with an equal config was reused.
    pub reused: bool,
}

/// A running Aether Frame runtime.
pub struct Runtime {
    core: Arc<Core>,
    assistant: Assistant,
    sweeper: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(s) = self.sweeper.get_mut().take() {
            s.abort();
        }
    }
}

impl Runtime {
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// The never-panicking entry point.
    pub fn assistant(&self) -> &Assistant {
        &self.assistant
    }

    /// Processes one request: create an agent or run a turn. Never panics.
    pub async fn process(&self, request: TaskRequest) -> TaskResult {
        self.assistant.process_request(request).await
    }

    /// Step one of the protocol, as a library call.
    pub async fn create_agent(&self, config: AgentConfig) -> Result<AgentHandle, EngineError> {
        let (agent, reused) = self.core.agents.create_or_reuse(config)?;
        Ok(AgentHandle {
            agent_id: agent.id.to_string(),
            reused,
        })
    }

    /// Registers an agent that another instance created on a shared store, under its id (so that
    /// turns naming it can run here). Returns the agent already here when there is one.
    pub async fn adopt_agent(&self, agent_id: &str, config: AgentConfig) -> Result<AgentHandle, EngineError> {
        let agent = self.core.agents.adopt(agent_id, config)?;
        Ok(AgentHandle {
            agent_id: agent.id.to_string(),
            reused: true,
        })
    }

    /// Removes an agent and its runner now, and archives the chat sessions it served.
    /// Returns `None` for an unknown agent.
    pub async fn cleanup_agent(&self, agent_id: &str) -> Result<Option<AgentCleanup>, EngineError> {
        let Some(cleanup) = self.core.agents.cleanup(agent_id) else {
            return Ok(None);
        };
        for chat_id in &cleanup.chat_ids {
            self.cleanup_session(chat_id).await?;
        }
        Ok(Some(cleanup))
    }

    /// Archives a chat session after its in-flight turns finish; the next request on the same
    /// id recovers its history. Returns whether a live session was archived.
    pub async fn cleanup_session(&self, session_id: &str) -> Result<bool, EngineError> {
        let Some(chat) = self.core.sessions.get(session_id) else {
            return Ok(false);
        };
        let (chat, mut st) = {
            let guard = self.core.sessions.lock(&chat.id).await;
            (guard.0, guard.1)
        };
        let archived = self.core.sessions.close(&chat, &mut st).await?;
        if archived {
            Stats::incr(&self.core.stats.reclaimed_sessions);
        }
        Ok(archived)
    }

    /// Deletes a chat session for good: the live session, its history and its archive.
    pub async fn delete_session(&self, session_id: &str) -> Result<bool, EngineError> {
        let (chat, mut st) = self.core.sessions.lock(session_id).await;
        let was_live = st.loaded;
        self.core.sessions.close(&chat, &mut st).await?;
        let deleted = self.core.sessions.store.delete_session(session_id).await?;
        Ok(deleted || was_live)
    }

    /// Creates (or recovers) chat session `session_id` bound to `agent_id` without running a turn,
    /// and returns its record. A later turn continues it.
    pub async fn create_session(
        &self,
        session_id: &str,
        agent_id: &str,
        user_id: Option<&str>,
    ) -> Result<SessionRecord, EngineError> {
        crate::engine::open_session(&self.core, session_id, agent_id, user_id).await?;
        self.core
            .sessions
            .store
            .get_session(session_id)
            .await?
            .ok_or_else(|| EngineError::Internal(format!("session `{session_id}` vanished after creation")))
    }

    /// The stored record of a chat session.
    pub async fn session(&self, session_id: &str) -> Result<Option<SessionRecord>, EngineError> {
        Ok(self.core.sessions.store.get_session(session_id).await?)
    }

    /// A page of a session's events: those after `after_seq`, at most `limit`.
    pub async fn session_events(
        &self,
        session_id: &str,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<EventPage, EngineError> {
        Ok(self
            .core
            .sessions
            .store
            .events_page(session_id, after_seq, limit)
            .await?)
    }

    /// Sessions by user, agent or state, paged by id.
    pub async fn list_sessions(&self, filter: &SessionFilter, page: &PageRequest) -> Result<Page, EngineError> {
        Ok(self.core.sessions.store.list_sessions(filter, page).await?)
    }

    /// Marks a live session as used now, so the idle timeout starts again. `false` when the
    /// session is not live in this runtime.
    pub fn keep_alive(&self, session_id: &str) -> bool {
        match self.core.sessions.get(session_id) {
            Some(chat) => {
                chat.touch(self.core.clock.now_ms());
                true
            }
            None => false,
        }
    }

    /// Expires a session now (as the idle timeout would): archived, recoverable by the next turn.
    pub async fn expire_session(&self, session_id: &str) -> Result<bool, EngineError> {
        self.cleanup_session(session_id).await
    }

    /// Stops the background sweeper and waits until the store has made every accepted write
    /// durable (a no-op for synchronous stores). Call before exiting.
    pub async fn shutdown(&self) -> Result<(), EngineError> {
        if let Some(s) = self.sweeper.lock().take() {
            s.abort();
        }
        Ok(self.core.sessions.store.flush().await?)
    }

    /// Starts a live session with the turn in `request` (agent_id and/or session_id, and
    /// messages): its chunks stream from the returned handle, which also takes follow-up
    /// messages, approval answers, cancel and close.
    pub fn start_live(
        &self,
        request: TaskRequest,
        options: crate::live::LiveOptions,
    ) -> Result<crate::live::LiveSession, EngineError> {
        crate::live::start(Arc::clone(&self.core), request, options)
    }

    /// Runs the idle sweeper once as if the time were `now`.
    pub async fn sweep_at(&self, now: Instant) -> SweepReport {
        sweeper::sweep(&self.core, now).await
    }

    /// Counters and gauges.
    pub fn stats(&self) -> StatsSnapshot {
        self.core.stats.snapshot(
            self.core.agents.len() as u64,
            self.core.agents.live_runners(),
            self.core.sessions.len() as u64,
        )
    }

    /// The tool registry; clone the `Arc` to add or refresh tools later (MCP servers do).
    pub fn tools(&self) -> &Arc<ToolRegistry> {
        &self.core.tools
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.core.sessions.store
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.core.config
    }

    /// Looks up a live agent.
    pub fn agent(&self, agent_id: &str) -> Option<Arc<crate::agents::Agent>> {
        self.core.agents.get(agent_id)
    }

    /// The live agents that `keep` selects (a snapshot; agents come and go meanwhile).
    pub fn agents_where(&self, keep: impl Fn(&crate::agents::Agent) -> bool) -> Vec<Arc<crate::agents::Agent>> {
        self.core.agents.filter(keep)
    }
}
