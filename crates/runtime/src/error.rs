//! Engine errors and their mapping onto the wire `ErrorPayload`.

use std::time::Duration;

use aether_contracts::{ErrorCode, ErrorPayload, TaskStatus};
use serde_json::json;

use crate::model::ModelError;
use crate::tools::ResolveError;

/// Everything that can make a request fail. Tool failures are not here: they become
/// `ToolResult`s and the turn goes on.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid request: field `{field}`: {message}")]
    Validation { field: String, message: String },
    #[error("unknown agent_id `{0}`: it was never created here or has been cleaned up; create it again from its agent_config")]
    UnknownAgent(String),
    #[error("session `{0}` is not bound to a live agent; send agent_id with the request")]
    SessionWithoutAgent(String),
    #[error("agent `{agent_id}` already serves {cap} sessions (max_sessions_per_agent); create an agent again to get a new one")]
    AgentAtCapacity { agent_id: String, cap: usize },
    #[error("framework `{0}` is not available (known: {1})")]
    FrameworkUnavailable(String, String),
    #[error("model provider `{0}` is not configured (known: {1})")]
    ProviderUnavailable(String, String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("tool resolution failed: {0}")]
    Tool(#[from] ResolveError),
    #[error("session store failed: {0}")]
    Store(#[from] aether_store::StoreError),
    /// A framework failed the turn, or was asked for something it cannot do.
    #[error("framework `{framework}`: {message}")]
    Framework { framework: String, message: String },
    /// The session stayed busy (turns before this one, here or on another instance) past
    /// `session_wait`.
    #[error("the session is busy: earlier turns held it for {:.1} s, longer than this server's session wait; retry later", waited.as_secs_f64())]
    SessionBusy { waited: Duration },
    #[error("the turn exceeded its timeout of {0:?}")]
    Timeout(Duration),
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The task status this error gives a result.
    pub fn status(&self) -> TaskStatus {
        match self {
            Self::Timeout(_) => TaskStatus::Timeout,
            _ => TaskStatus::Error,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Validation { .. } | Self::UnknownAgent(_) | Self::SessionWithoutAgent(_) => {
                ErrorCode::RequestValidation
            }
            Self::AgentAtCapacity { .. } | Self::Timeout(_) | Self::Framework { .. } => ErrorCode::FrameworkExecution,
            Self::FrameworkUnavailable(..) | Self::ProviderUnavailable(..) => ErrorCode::FrameworkUnavailable,
            Self::Model(_) => ErrorCode::ModelUpstream,
            Self::SessionBusy { .. } => ErrorCode::SessionBusy,
            Self::Tool(_) => ErrorCode::ToolNotDeclared,
            Self::Store(e) if e.is_unavailable() => ErrorCode::StoreUnavailable,
            Self::Store(_) | Self::Internal(_) => ErrorCode::InternalError,
        }
    }

    /// The wire payload: code, message, the component at fault and structured details.
    pub fn payload(&self) -> ErrorPayload {
        let mut p = ErrorPayload::new(self.code(), self.to_string());
        let details = match self {
            Self::Validation { field, .. } => Some(json!({ "field": field })),
            Self::UnknownAgent(id) => Some(json!({ "field": "agent_id", "agent_id": id })),
            Self::SessionWithoutAgent(id) => Some(json!({ "field": "agent_id", "session_id": id })),
            Self::AgentAtCapacity { agent_id, cap } => {
                Some(json!({ "agent_id": agent_id, "max_sessions_per_agent": cap }))
            }
            Self::Model(m) => Some(m.details()),
            Self::Tool(ResolveError::NotFound { name, suggestions }) => {
                Some(json!({ "tool": name, "suggestions": suggestions }))
            }
            Self::Tool(ResolveError::Ambiguous { name, candidates }) => {
                Some(json!({ "tool": name, "candidates": candidates }))
            }
            Self::Timeout(d) => Some(json!({ "timeout_s": d.as_secs_f64() })),
            Self::SessionBusy { waited } => Some(json!({ "waited_s": waited.as_secs_f64(), "retry_after_s": 1 })),
            Self::Store(e) if e.is_unavailable() => Some(json!({ "retry_after_s": 1 })),
            _ => None,
        };
        p.details = details;
        p.source = Some(
            match self {
                Self::Model(_) => "model",
                Self::Tool(_) => "tools",
                Self::Store(_) => "store",
                Self::Validation { .. } | Self::UnknownAgent(_) | Self::SessionWithoutAgent(_) => "engine.validation",
                _ => "engine",
            }
            .to_owned(),
        );
        p
    }
}
