//! The execution engine: the one path of every request, sync or live.
//!
//! [`Assistant`] (never panics) → [`ExecutionEngine::validate`] (once: the plan, the
//! attachments, the timeout, `metadata.framework`) → [`ExecutionEngine::run`]: the adapter of
//! the agent's framework from the [`AdapterRegistry`] (each built lazily, exactly once), its
//! streaming entry under `execution_config.timeout` → a `TaskResult`. A sync turn runs with the
//! [`Unattended`] observer; a live turn (`crate::live`) with one that streams chunks and asks a
//! person about risky calls. A timeout or a panic ends both the same way: an error result, which
//! a live turn sends as its `error` chunk.

mod assistant;
mod native;
mod observer;
mod turn_loop;
mod validate;

use std::sync::Arc;

use aether_contracts::{TaskRequest, TaskResult};
use async_trait::async_trait;
use tokio::sync::OnceCell;

pub use assistant::Assistant;
pub(crate) use native::NativeAdapter;
pub(crate) use observer::tool_of;
pub use observer::{TurnObserver, Unattended};
pub use turn_loop::{LoopInput, LoopOutcome, Pending, TurnKit, TurnLimits, TurnLoop, TurnScope};
pub(crate) use validate::framework_of;
pub use validate::{RequestPlan, ValidRequest};

use crate::agents::AgentManager;
use crate::error::EngineError;
use crate::multimodal::MediaLimits;
use crate::sessions::ChatSessions;

/// An agent framework behind the execution engine. Request state lives in the call, never in
/// the adapter or the agent.
///
/// The streaming entry, [`execute_stream`](Self::execute_stream), is the one a framework must
/// write: it runs a validated request and reports to `observer` as it goes (model text, planned
/// calls, approval questions, tool progress and results). The synchronous
/// [`execute`](Self::execute) is the same turn with nobody watching ([`Unattended`]), as TGI
/// builds `generate` on `generate_stream`. The engine around it applies the timeout, turns a
/// panic into an error result, and picks the adapter by the agent's framework.
#[async_trait]
pub trait FrameworkAdapter: Send + Sync + 'static {
    fn name(&self) -> &str;

    async fn execute_stream(
        &self,
        request: ValidRequest,
        observer: &mut dyn TurnObserver,
    ) -> Result<TaskResult, EngineError>;

    async fn execute(&self, request: ValidRequest) -> Result<TaskResult, EngineError> {
        self.execute_stream(request, &mut Unattended).await
    }
}

type Factory = Box<dyn Fn() -> Result<Arc<dyn FrameworkAdapter>, String> + Send + Sync>;

struct AdapterEntry {
    factory: Factory,
    adapter: OnceCell<Arc<dyn FrameworkAdapter>>,
}

/// Framework adapters by name, each initialised on first use, exactly once. A handful at most,
/// so a list: finding one is a few string comparisons, and an initialised one is an atomic load.
#[derive(Default)]
pub struct AdapterRegistry {
    entries: Vec<(String, AdapterEntry)>,
}

impl AdapterRegistry {
    /// Registers `name` (replacing an earlier registration of the same name).
    pub fn register(
        &mut self,
        name: impl Into<String>,
        factory: impl Fn() -> Result<Arc<dyn FrameworkAdapter>, String> + Send + Sync + 'static,
    ) {
        let name = name.into();
        self.entries.retain(|(n, _)| *n != name);
        self.entries.push((
            name,
            AdapterEntry {
                factory: Box::new(factory),
                adapter: OnceCell::new(),
            },
        ));
    }

    fn known(&self) -> String {
        let mut names: Vec<&str> = self.entries.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names.join(", ")
    }

    pub async fn get(&self, name: &str) -> Result<&dyn FrameworkAdapter, EngineError> {
        let entry = self
            .entries
            .iter()
            .find_map(|(n, e)| (n == name).then_some(e))
            .ok_or_else(|| EngineError::FrameworkUnavailable(name.to_owned(), self.known()))?;
        if let Some(adapter) = entry.adapter.get() {
            return Ok(adapter.as_ref());
        }
        entry
            .adapter
            .get_or_try_init(|| async { (entry.factory)() })
            .await
            .map(|a| a.as_ref())
            .map_err(|e| EngineError::FrameworkUnavailable(format!("{name} ({e})"), self.known()))
    }
}

/// Validates requests, routes each to its framework's adapter, and bounds it by its timeout.
pub struct ExecutionEngine {
    adapters: AdapterRegistry,
    default_framework: String,
    agents: Arc<AgentManager>,
    sessions: Arc<ChatSessions>,
    media: MediaLimits,
}

impl ExecutionEngine {
    pub(crate) fn new(
        adapters: AdapterRegistry,
        default_framework: impl Into<String>,
        agents: Arc<AgentManager>,
        sessions: Arc<ChatSessions>,
        media: MediaLimits,
    ) -> Self {
        Self {
            adapters,
            default_framework: default_framework.into(),
            agents,
            sessions,
            media,
        }
    }

    /// Validates a request once, for [`run`](Self::run).
    /// Takes the request as it is or already boxed (a `ValidRequest` holds it boxed).
    pub fn validate(&self, request: impl Into<Box<TaskRequest>>) -> Result<ValidRequest, EngineError> {
        validate::validate(request.into(), &self.media)
    }

    /// The framework that runs `request`: a new agent's own (validation recorded
    /// `metadata.framework` in its config); for a turn, the agent's, found by `agent_id` or
    /// through the session's binding. A turn whose `metadata.framework` names another is refused.
    async fn adapter_for(&self, request: &mut ValidRequest) -> Result<&dyn FrameworkAdapter, EngineError> {
        let agent = match &request.plan {
            RequestPlan::CreateAgent(config) => {
                let name = framework_of(config).unwrap_or(&self.default_framework);
                return self.adapters.get(name).await;
            }
            RequestPlan::Converse { agent_id: Some(id), .. } => self.agents.get(id),
            RequestPlan::Converse {
                agent_id: None,
                session_id,
            } => match self.sessions.get(session_id) {
                Some(chat) => chat.bound_agent(),
                None => match self.sessions.store.get_session(session_id).await? {
                    Some(record) => self.agents.get(&record.agent_id),
                    None => None,
                },
            },
        };
        let Some(agent) = agent else {
            // No agent to ask: the adapter says what is wrong (unknown agent, unbound session).
            let name = request.framework.as_deref().unwrap_or(&self.default_framework);
            return self.adapters.get(name).await;
        };
        let bound = framework_of(&agent.config).unwrap_or(&self.default_framework);
        if let Some(asked) = request.framework.as_deref().filter(|a| *a != bound) {
            return Err(EngineError::validation(
                "metadata.framework",
                format!(
                    "`{asked}` contradicts the agent's framework: agent `{}` was created on `{bound}`, and every \
                     turn on it runs there (create another agent to use `{asked}`)",
                    agent.id
                ),
            ));
        }
        let adapter = self.adapters.get(bound).await;
        request.agent = Some(agent);
        adapter
    }

    /// Runs a validated request on its framework, reporting to `observer`, within its timeout.
    pub async fn run(
        &self,
        mut request: ValidRequest,
        observer: &mut dyn TurnObserver,
    ) -> Result<TaskResult, EngineError> {
        let adapter = self.adapter_for(&mut request).await?;
        match request.timeout {
            Some(limit) => tokio::time::timeout(limit, adapter.execute_stream(request, observer))
                .await
                .map_err(|_| EngineError::Timeout(limit))?,
            None => adapter.execute_stream(request, observer).await,
        }
    }

    /// Validates and runs a request with nobody watching.
    pub async fn execute(&self, request: TaskRequest) -> Result<TaskResult, EngineError> {
        let request = self.validate(request)?;
        self.run(request, &mut Unattended).await
    }
}
