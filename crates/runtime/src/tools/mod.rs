//! Tools: declaration, registration, resolution, validation and concurrent execution.
//!
//! A tool is registered once as a [`RegisteredTool`] under its full name `namespace.name`. Its
//! implementation is either async ([`AsyncTool`], runs on the async workers) or declared
//! blocking ([`BlockingTool`], runs on tokio's blocking pool), so a blocking tool can never stall
//! the workers by accident.

pub mod builtin;
pub mod demo;
pub(crate) mod executor;
mod registry;
mod schema;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aether_contracts::{Metadata, UniversalTool};
use async_trait::async_trait;

pub use registry::{resolve_among, RegistryError, ResolveError, ToolRegistry};
pub use schema::ParamValidator;

use crate::model::tokens::{self, Tokenizer};

/// What a running tool knows about its call.
#[derive(Debug, Clone)]
pub struct ToolContext {
    pub task_id: Arc<str>,
    pub session_id: Arc<str>,
    pub call_id: Arc<str>,
}

/// A tool's failure; it becomes a `ToolResult` with status `error`, never a failed turn.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

impl ToolError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// A tool that runs on the async workers. It must not block.
#[async_trait]
pub trait AsyncTool: Send + Sync + 'static {
    async fn call(&self, params: Metadata, ctx: ToolContext) -> Result<serde_json::Value, ToolError>;
}

/// A tool that blocks (file or CPU work, a synchronous client). Runs off the async workers.
pub trait BlockingTool: Send + Sync + 'static {
    fn call(&self, params: Metadata, ctx: ToolContext) -> Result<serde_json::Value, ToolError>;
}

/// How a tool runs.
#[derive(Clone)]
pub enum ToolImpl {
    Async(Arc<dyn AsyncTool>),
    Blocking(Arc<dyn BlockingTool>),
}

/// An async tool made from a closure.
pub struct FnTool<F>(pub F);

#[async_trait]
impl<F, Fut> AsyncTool for FnTool<F>
where
    F: Fn(Metadata, ToolContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<serde_json::Value, ToolError>> + Send + 'static,
{
    async fn call(&self, params: Metadata, ctx: ToolContext) -> Result<serde_json::Value, ToolError> {
        (self.0)(params, ctx).await
    }
}

/// A tool in the registry: its declaration, compiled parameter schema and implementation.
pub struct RegisteredTool {
    pub spec: UniversalTool,
    /// `namespace.name`.
    pub full_name: Arc<str>,
    /// The part after the namespace.
    pub short_name: Arc<str>,
    pub imp: ToolImpl,
    /// Per-call timeout of this tool, overriding the agent's and the runtime's.
    pub timeout: Option<Duration>,
    validator: ParamValidator,
    sample_arguments: Metadata,
    call_tokens: OnceLock<u32>,
}

impl std::fmt::Debug for RegisteredTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredTool")
            .field("full_name", &self.full_name)
            .finish_non_exhaustive()
    }
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl RegisteredTool {
    /// Registers an async tool. `spec.name` is `namespace.name`, or a bare name with
    /// `spec.namespace` set.
    pub fn new_async(spec: UniversalTool, tool: impl AsyncTool) -> Result<Self, RegistryError> {
        Self::new(spec, ToolImpl::Async(Arc::new(tool)))
    }

    /// Registers a tool that blocks; it will run on the blocking pool.
    pub fn new_blocking(spec: UniversalTool, tool: impl BlockingTool) -> Result<Self, RegistryError> {
        Self::new(spec, ToolImpl::Blocking(Arc::new(tool)))
    }

    pub fn new(mut spec: UniversalTool, imp: ToolImpl) -> Result<Self, RegistryError> {
        let full = match (&spec.namespace, spec.name.split_once('.')) {
            (_, Some(_)) => spec.name.clone(),
            (Some(ns), None) => format!("{ns}.{}", spec.name),
            (None, None) => {
                return Err(RegistryError::InvalidName {
                    name: spec.name.clone(),
                    reason: "expected `namespace.name` (or set `namespace`)".into(),
                })
            }
        };
        let (ns, short) = full.rsplit_once('.').unwrap_or(("", full.as_str()));
        if !ns.split('.').all(valid_segment) || !valid_segment(short) {
            return Err(RegistryError::InvalidName {
                name: full.clone(),
                reason: "segments must be non-empty and use only letters, digits, `_` and `-`".into(),
            });
        }
        let validator =
            ParamValidator::compile(&spec.parameters_schema).map_err(|reason| RegistryError::InvalidSchema {
                name: full.clone(),
                reason,
            })?;
        let sample_arguments = crate::model::sim::sample_arguments(&spec.parameters_schema);
        let short_name: Arc<str> = Arc::from(short);
        spec.namespace = Some(ns.to_owned());
        spec.name = full.clone();
        Ok(Self {
            spec,
            full_name: Arc::from(full),
            short_name,
            imp,
            timeout: None,
            validator,
            sample_arguments,
            call_tokens: OnceLock::new(),
        })
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether a call needs a human's approval (`metadata.requires_approval`).
    pub fn requires_approval(&self) -> bool {
        self.spec
            .metadata
            .get("requires_approval")
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    pub fn is_blocking(&self) -> bool {
        matches!(self.imp, ToolImpl::Blocking(_))
    }

    /// Checks parameters against the tool's JSON Schema; the error names each offending field.
    pub fn validate(&self, params: &Metadata) -> Result<(), String> {
        self.validator.validate(params)
    }

    /// Arguments a simulated model passes (from the schema's examples).
    pub fn sample_arguments(&self) -> &Metadata {
        &self.sample_arguments
    }

    /// Tokens a model spends to call this tool, counted once.
    pub(crate) fn call_tokens(&self, tokenizer: Tokenizer) -> u32 {
        *self.call_tokens.get_or_init(|| {
            let args = serde_json::to_string(&self.sample_arguments).unwrap_or_default();
            tokens::count(tokenizer, &self.full_name) + tokens::count(tokenizer, &args) + 4
        })
    }
}
