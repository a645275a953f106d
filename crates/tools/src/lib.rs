//! Aether Frame's tools: declaration, registration, resolution, validation and concurrent
//! execution. This crate knows neither the model providers nor the runtime: a model reads a
//! tool's [`ToolDeclaration`] (contracts), and the runtime runs the calls a model asks for through
//! [`executor::execute_calls`], after deciding about each ([`Decision`]).
//!
//! A tool is registered once as a [`RegisteredTool`] under its full name `namespace.name`. Its
//! implementation is either async ([`AsyncTool`], runs on the async workers) or declared
//! blocking ([`BlockingTool`], runs on tokio's blocking pool), so a blocking tool can never stall
//! the workers by accident.

pub mod builtin;
mod decision;
pub mod demo;
pub mod executor;
mod registry;
mod schema;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aether_contracts::{Metadata, ToolDeclaration, UniversalTool};
use async_trait::async_trait;

pub use decision::Decision;
pub use registry::{resolve_among, RegistryError, ResolveError, ToolRegistry};
pub use schema::ParamValidator;

/// What a running tool knows about its call.
#[derive(Debug, Clone)]
pub struct ToolContext {
    pub task_id: Arc<str>,
    pub session_id: Arc<str>,
    pub call_id: Arc<str>,
    /// The user of the turn (`user_context.user_id` or `metadata.user_id`), when known.
    pub user_id: Option<Arc<str>>,
    /// Where the tool reports progress; `Some` only when someone watches (a live turn).
    pub progress: Option<ProgressSink>,
}

/// The id of nothing (a call outside a turn has no task or session), shared, not allocated per call.
pub fn no_id() -> Arc<str> {
    static EMPTY: OnceLock<Arc<str>> = OnceLock::new();
    Arc::clone(EMPTY.get_or_init(|| Arc::from("")))
}

impl ToolContext {
    /// A context for calling a tool outside a turn (tests, the MCP server, benchmarks).
    pub fn detached(call_id: impl Into<Arc<str>>) -> Self {
        Self {
            task_id: no_id(),
            session_id: no_id(),
            call_id: call_id.into(),
            user_id: None,
            progress: None,
        }
    }

    /// Reports progress of this call, if anyone listens. Never blocks: when the listener is
    /// behind, the update is dropped (progress is advisory; the result is what counts).
    pub fn report_progress(&self, progress: f64, total: Option<f64>, message: Option<String>) {
        if let Some(sink) = &self.progress {
            sink.report(ToolProgress {
                call_id: Arc::clone(&self.call_id),
                progress,
                total,
                message,
            });
        }
    }
}

/// One progress update of a running tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolProgress {
    pub call_id: Arc<str>,
    /// Work done so far, in the tool's own unit; grows with each update.
    pub progress: f64,
    /// Work in all, when the tool knows it.
    pub total: Option<f64>,
    pub message: Option<String>,
}

/// The sending end of a turn's progress channel (bounded; a full channel drops updates and
/// counts them).
#[derive(Debug, Clone)]
pub struct ProgressSink {
    tx: tokio::sync::mpsc::Sender<ToolProgress>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl ProgressSink {
    /// A sink and its receiver, holding at most `capacity` updates.
    pub fn channel(capacity: usize) -> (Self, tokio::sync::mpsc::Receiver<ToolProgress>) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        (
            Self {
                tx,
                dropped: Arc::default(),
            },
            rx,
        )
    }

    pub fn report(&self, update: ToolProgress) {
        if self.tx.try_send(update).is_err() {
            self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Updates dropped because the listener was behind or gone.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
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
    /// What a model reads of this tool.
    pub declaration: Arc<ToolDeclaration>,
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
        let short_name: Arc<str> = Arc::from(short);
        let full_name: Arc<str> = Arc::from(full.as_str());
        spec.namespace = Some(ns.to_owned());
        spec.name = full;
        let declaration = Arc::new(ToolDeclaration::new(
            Arc::clone(&full_name),
            Arc::clone(&short_name),
            spec.description.clone(),
            spec.parameters_schema.clone(),
        ));
        Ok(Self {
            spec,
            full_name,
            short_name,
            imp,
            timeout: None,
            validator,
            declaration,
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

    /// Runs the tool once, without validation or timeout (the executor adds both): async tools
    /// on this task, blocking ones on the blocking pool. A panic becomes an error.
    pub async fn invoke(&self, params: Metadata, ctx: ToolContext) -> Result<serde_json::Value, ToolError> {
        use futures::FutureExt;
        let fut = async {
            match &self.imp {
                ToolImpl::Async(t) => t.call(params, ctx).await,
                ToolImpl::Blocking(t) => {
                    let t = Arc::clone(t);
                    tokio::task::spawn_blocking(move || t.call(params, ctx))
                        .await
                        .unwrap_or_else(|e| Err(ToolError(format!("blocking tool failed to complete: {e}"))))
                }
            }
        };
        std::panic::AssertUnwindSafe(fut)
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(ToolError::new("tool panicked")))
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
        &self.declaration.sample_arguments
    }
}
