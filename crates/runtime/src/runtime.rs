//! [`Runtime`]: everything wired together, and [`RuntimeBuilder`] to configure it.

use std::collections::HashMap;
use std::sync::Arc;

use aether_contracts::{AgentConfig, AgentReport, TaskRequest, TaskResult};
use aether_store::{EventPage, MemoryStore, Page, PageRequest, SessionFilter, SessionRecord, SessionStore};
use tokio::time::Instant;

use crate::agents::{AgentCleanup, AgentManager, ProviderSet};
use crate::clock::Clock;
use crate::config::RuntimeConfig;
use crate::engine::{
    AdapterRegistry, Assistant, ExecutionEngine, FrameworkAdapter, NativeAdapter, TurnKit, TurnLimits, TurnLoop,
};
use crate::error::EngineError;
use crate::ids::IdGen;
use crate::meter::{GenAiMeter, MeterAlreadyInstalled, MeterSlot};
use crate::model::{ModelProvider, SimConfig, SimulatedModel};
use crate::sessions::{ChatSessions, SessionSettings};
use crate::stats::{Stats, StatsSnapshot};
use crate::sweeper::{SweepReport, Sweeper, Ttls};
use crate::tools::demo::{demo_tools, DemoToolConfig};
use crate::tools::{builtin, RegisteredTool, RegistryError, ToolRegistry};

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
    frameworks: Vec<(String, FrameworkFactory)>,
    loops: Vec<(String, LoopFactory)>,
}

/// Builds a framework adapter from the runtime's native one (which it may delegate to).
type FrameworkFactory =
    Box<dyn Fn(Arc<dyn FrameworkAdapter>) -> Result<Arc<dyn FrameworkAdapter>, String> + Send + Sync>;

/// Builds a framework's model↔tool loop from the runtime's turn kit.
type LoopFactory = Box<dyn Fn(TurnKit) -> Result<Arc<dyn TurnLoop>, String> + Send + Sync>;

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

    /// Registers another agent framework under `name` (agents choose it with
    /// `framework_config.framework`, or `metadata.framework` when they are created). It is built
    /// on first use from the runtime's native adapter, which it may delegate to.
    pub fn framework(
        mut self,
        name: impl Into<String>,
        build: impl Fn(Arc<dyn FrameworkAdapter>) -> Result<Arc<dyn FrameworkAdapter>, String> + Send + Sync + 'static,
    ) -> Self {
        self.frameworks.push((name.into(), Box::new(build)));
        self
    }

    /// Registers another agent framework under `name` that runs inside the runtime's turn frame
    /// (sessions, runners, spans, metrics, commit, report: see `engine::TurnLoop`) and brings
    /// only its model↔tool loop. The loop is built on first use.
    pub fn framework_loop(
        mut self,
        name: impl Into<String>,
        build: impl Fn(TurnKit) -> Result<Arc<dyn TurnLoop>, String> + Send + Sync + 'static,
    ) -> Self {
        self.loops.push((name.into(), Box::new(build)));
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
        // Its table reserved for the same bound as the runtime's session map.
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::with_reserved(config.max_active_sessions)));
        let agents = Arc::new(AgentManager::new(
            config.max_sessions_per_agent,
            Arc::clone(&registry),
            ProviderSet { default, providers },
            Arc::clone(&ids),
            Arc::clone(&stats),
            clock,
        ));
        let sessions = Arc::new(ChatSessions::new(
            store,
            SessionSettings {
                window: config.history_window,
                max_active: config.max_active_sessions,
                shared_store: config.shared_store,
                wait: config.session_wait,
                lease_ttl: config.session_lease_ttl,
                instance: config.instance_name.as_deref().map(Arc::from),
            },
            clock,
            ids,
            Arc::clone(&stats),
        ));

        let mut adapters = AdapterRegistry::default();
        let meter = Arc::new(MeterSlot::default());
        let native = NativeAdapter {
            name: Arc::from("native"),
            agents: Arc::clone(&agents),
            sessions: Arc::clone(&sessions),
            kit: TurnKit {
                stats: Arc::clone(&stats),
                meter: Arc::clone(&meter),
                limits: TurnLimits {
                    max_model_calls: config.max_model_calls_per_turn,
                    tool_timeout: config.tool_timeout,
                    approvals: config.approvals.clone(),
                },
            },
            turn_loop: None,
        };
        for (name, build) in self.loops {
            let frame = native.clone();
            adapters.register(name.clone(), move || {
                let turn_loop = build(frame.kit.clone())?;
                let adapter = NativeAdapter {
                    name: Arc::from(name.as_str()),
                    turn_loop: Some(turn_loop),
                    ..frame.clone()
                };
                Ok(Arc::new(adapter) as Arc<dyn FrameworkAdapter>)
            });
        }
        let native: Arc<dyn FrameworkAdapter> = Arc::new(native);
        for (name, build) in self.frameworks {
            let native = Arc::clone(&native);
            adapters.register(name, move || build(Arc::clone(&native)));
        }
        adapters.register("native", move || Ok(Arc::clone(&native)));
        let engine = Arc::new(ExecutionEngine::new(
            adapters,
            config.default_framework.clone(),
            Arc::clone(&agents),
            Arc::clone(&sessions),
            config.media,
        ));

        let sweeper = Arc::new(Sweeper {
            sessions: Arc::clone(&sessions),
            agents: Arc::clone(&agents),
            stats: Arc::clone(&stats),
            clock,
            ttls: Ttls {
                session_idle: config.session_idle_ttl,
                runner_idle: config.runner_idle_ttl,
                agent_idle: config.agent_idle_ttl,
                archive: config.archive_ttl,
            },
        });
        let sweeping = match config.sweep_interval {
            Some(every) => {
                if tokio::runtime::Handle::try_current().is_err() {
                    return Err(BuildError::NoTokioRuntime);
                }
                Some(sweeper.spawn(every))
            }
            None => None,
        };
        Ok(Runtime {
            assistant: Assistant::new(engine),
            agents,
            sessions,
            stats,
            clock,
            tools: registry,
            config,
            sweeper,
            sweeping: parking_lot::Mutex::new(sweeping),
            meter,
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
    config: RuntimeConfig,
    assistant: Assistant,
    agents: Arc<AgentManager>,
    sessions: Arc<ChatSessions>,
    stats: Arc<Stats>,
    clock: Clock,
    tools: Arc<ToolRegistry>,
    sweeper: Arc<Sweeper>,
    sweeping: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    meter: Arc<MeterSlot>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(s) = self.sweeping.get_mut().take() {
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
    pub fn process(&self, request: TaskRequest) -> impl std::future::Future<Output = TaskResult> + Send + '_ {
        self.assistant.process_request(request)
    }

    /// Step one of the protocol, as a library call.
    /// It takes the same path as a `TaskRequest` with `agent_config`: validated, then created by
    /// the adapter of the agent's framework.
    pub async fn create_agent(&self, config: AgentConfig) -> Result<AgentHandle, EngineError> {
        let request = TaskRequest::create_agent("create_agent", config);
        let result = self.assistant.engine().execute(request).await?;
        let report = AgentReport::read(&result.metadata).map_err(|e| EngineError::Internal(e.to_string()))?;
        Ok(AgentHandle {
            agent_id: report.agent_id,
            reused: report.reused,
        })
    }

    /// Registers an agent that another instance created on a shared store, under its id (so that
    /// turns naming it can run here). Returns the agent already here when there is one.
    pub async fn adopt_agent(&self, agent_id: &str, config: AgentConfig) -> Result<AgentHandle, EngineError> {
        let agent = self.agents.adopt(agent_id, config)?;
        Ok(AgentHandle {
            agent_id: agent.id.to_string(),
            reused: true,
        })
    }

    /// Removes an agent and its runner now, and archives the chat sessions it served.
    /// Returns `None` for an unknown agent.
    pub async fn cleanup_agent(&self, agent_id: &str) -> Result<Option<AgentCleanup>, EngineError> {
        let Some((agent, runner_released)) = self.agents.cleanup(agent_id) else {
            return Ok(None);
        };
        let chat_ids = self.sessions.bound_to(&agent);
        for chat_id in &chat_ids {
            self.cleanup_session(chat_id).await?;
        }
        Ok(Some(AgentCleanup {
            agent_id: agent_id.to_owned(),
            chat_ids: chat_ids.iter().map(|c| c.to_string()).collect(),
            runner_released,
        }))
    }

    /// Archives a chat session after its in-flight turns finish; the next request on the same
    /// id recovers its history. Returns whether a live session was archived.
    pub async fn cleanup_session(&self, session_id: &str) -> Result<bool, EngineError> {
        let Some(chat) = self.sessions.get(session_id) else {
            return Ok(false);
        };
        let (chat, mut st) = {
            let guard = self.sessions.lock(&chat.id).await;
            (guard.0, guard.1)
        };
        let archived = self.sessions.close(&chat, &mut st).await?;
        if archived {
            Stats::incr(&self.stats.reclaimed_sessions);
        }
        Ok(archived)
    }

    /// Deletes a chat session for good: the live session, its history and its archive.
    pub async fn delete_session(&self, session_id: &str) -> Result<bool, EngineError> {
        let (chat, mut st) = self.sessions.lock(session_id).await;
        let was_live = st.is_loaded();
        self.sessions.close(&chat, &mut st).await?;
        let deleted = self.sessions.store.delete_session(session_id).await?;
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
        {
            let mut chat = self.sessions.open(session_id, user_id).await?;
            chat.bind(&self.agents, Some(agent_id), None).await?;
            chat.touch();
        }
        self.sessions
            .store
            .get_session(session_id)
            .await?
            .ok_or_else(|| EngineError::Internal(format!("session `{session_id}` vanished after creation")))
    }

    /// The stored record of a chat session.
    pub async fn session(&self, session_id: &str) -> Result<Option<SessionRecord>, EngineError> {
        Ok(self.sessions.store.get_session(session_id).await?)
    }

    /// A page of a session's events: those after `after_seq`, at most `limit`.
    pub async fn session_events(
        &self,
        session_id: &str,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<EventPage, EngineError> {
        Ok(self.sessions.store.events_page(session_id, after_seq, limit).await?)
    }

    /// Sessions by user, agent or state, paged by id.
    pub async fn list_sessions(&self, filter: &SessionFilter, page: &PageRequest) -> Result<Page, EngineError> {
        Ok(self.sessions.store.list_sessions(filter, page).await?)
    }

    /// Marks a live session as used now, so the idle timeout starts again. `false` when the
    /// session is not live in this runtime.
    pub fn keep_alive(&self, session_id: &str) -> bool {
        match self.sessions.get(session_id) {
            Some(chat) => {
                chat.touch(self.clock.now_ms());
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
        if let Some(s) = self.sweeping.lock().take() {
            s.abort();
        }
        Ok(self.sessions.store.flush().await?)
    }

    /// Starts a live session with the turn in `request` (agent_id and/or session_id, and
    /// messages): its chunks stream from the returned handle, which also takes follow-up
    /// messages, approval answers, cancel and close.
    pub fn start_live(
        &self,
        request: TaskRequest,
        options: crate::live::LiveOptions,
    ) -> Result<crate::live::LiveSession, EngineError> {
        let approvals = options
            .approvals
            .clone()
            .unwrap_or_else(|| self.config.approvals.clone());
        crate::live::start(self.assistant.clone(), request, options, approvals)
    }

    /// Runs the idle sweeper once as if the time were `now`.
    pub async fn sweep_at(&self, now: Instant) -> SweepReport {
        self.sweeper.sweep(now).await
    }

    /// Installs the meter that every turn's GenAI measurements go to (see [`crate::meter`]): one
    /// per runtime, for its whole life (combine several with [`crate::meter::FanOut`]).
    pub fn install_meter(&self, meter: Arc<dyn GenAiMeter>) -> Result<(), MeterAlreadyInstalled> {
        self.meter.install(meter)
    }

    /// Counters and gauges.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot(
            self.agents.len() as u64,
            self.agents.live_runners(),
            self.sessions.len() as u64,
        )
    }

    /// The tool registry; clone the `Arc` to add or refresh tools later (MCP servers do).
    pub fn tools(&self) -> &Arc<ToolRegistry> {
        &self.tools
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.sessions.store
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Looks up a live agent.
    pub fn agent(&self, agent_id: &str) -> Option<Arc<crate::agents::Agent>> {
        self.agents.get(agent_id)
    }

    /// The live agents that `keep` selects (a snapshot; agents come and go meanwhile).
    pub fn agents_where(&self, keep: impl Fn(&crate::agents::Agent) -> bool) -> Vec<Arc<crate::agents::Agent>> {
        self.agents.filter(keep)
    }
}
