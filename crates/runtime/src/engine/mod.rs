//! The execution engine: validates a request, picks the framework adapter through a registry
//! (each adapter built lazily, exactly once) and runs it under the request's timeout.

mod assistant;
mod native;
pub(crate) mod observer;
pub(crate) mod validate;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{TaskRequest, TaskResult};
use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::OnceCell;

pub use assistant::Assistant;
pub(crate) use native::{converse_with, open_session, NativeAdapter};
pub use validate::RequestPlan;

use crate::error::EngineError;

/// An agent engine behind the execution engine. Request state lives in the call, never in
/// the adapter or the agent.
#[async_trait]
pub trait FrameworkAdapter: Send + Sync + 'static {
    fn name(&self) -> &str;

    async fn execute(&self, request: TaskRequest, plan: RequestPlan) -> Result<TaskResult, EngineError>;
}

type Factory = Box<dyn Fn() -> Result<Arc<dyn FrameworkAdapter>, String> + Send + Sync>;

struct AdapterEntry {
    factory: Factory,
    adapter: OnceCell<Arc<dyn FrameworkAdapter>>,
}

/// Framework adapters by name, each initialised on first use, exactly once.
#[derive(Default)]
pub struct AdapterRegistry {
    entries: HashMap<String, AdapterEntry>,
}

impl AdapterRegistry {
    pub fn register(
        &mut self,
        name: impl Into<String>,
        factory: impl Fn() -> Result<Arc<dyn FrameworkAdapter>, String> + Send + Sync + 'static,
    ) {
        self.entries.insert(
            name.into(),
            AdapterEntry {
                factory: Box::new(factory),
                adapter: OnceCell::new(),
            },
        );
    }

    fn known(&self) -> String {
        let mut names: Vec<&str> = self.entries.keys().map(String::as_str).collect();
        names.sort_unstable();
        names.join(", ")
    }

    pub async fn get(&self, name: &str) -> Result<&dyn FrameworkAdapter, EngineError> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| EngineError::FrameworkUnavailable(name.to_owned(), self.known()))?;
        entry
            .adapter
            .get_or_try_init(|| async { (entry.factory)() })
            .await
            .map(|a| a.as_ref())
            .map_err(|e| EngineError::FrameworkUnavailable(format!("{name} ({e})"), self.known()))
    }
}

/// Validates and routes requests.
pub struct ExecutionEngine {
    adapters: AdapterRegistry,
    default_framework: String,
}

impl ExecutionEngine {
    pub fn new(adapters: AdapterRegistry, default_framework: impl Into<String>) -> Self {
        Self {
            adapters,
            default_framework: default_framework.into(),
        }
    }

    /// The framework a request asks for: `agent_config.framework_config.framework`, else
    /// `metadata.framework`, else the default.
    fn framework_of<'r>(&'r self, req: &'r TaskRequest) -> &'r str {
        req.agent_config
            .as_ref()
            .and_then(|c| c.framework_config.get("framework"))
            .or_else(|| req.metadata.get("framework"))
            .and_then(Value::as_str)
            .unwrap_or(&self.default_framework)
    }

    pub async fn execute(&self, mut request: TaskRequest) -> Result<TaskResult, EngineError> {
        // The framework is read before validation takes the agent config out of the request.
        let adapter = self.adapters.get(self.framework_of(&request)).await?;
        let plan = validate::plan(&mut request)?;
        let timeout = request
            .execution_config
            .as_ref()
            .and_then(|c| c.timeout)
            .filter(|t| t.is_finite() && *t > 0.0)
            .map(Duration::from_secs_f64);
        match timeout {
            Some(limit) => tokio::time::timeout(limit, adapter.execute(request, plan))
                .await
                .map_err(|_| EngineError::Timeout(limit))?,
            None => adapter.execute(request, plan).await,
        }
    }
}
