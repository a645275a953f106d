//! `TaskRequest` in, `TaskResult` out: the envelope of every turn.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::agent::{AgentConfig, KnowledgeSource};
use crate::enums::{ExecutionMode, TaskStatus};
use crate::error::ErrorPayload;
use crate::message::UniversalMessage;
use crate::tool::{ToolResult, UniversalTool};
use crate::Metadata;

/// `TaskRequest`. Two shapes are valid (the two-step protocol):
/// * create an agent: `agent_config` and no messages;
/// * converse: `agent_id` (or an existing `session_id`), the business `session_id`, and messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskRequest {
    pub task_id: String,
    #[serde(default = "default_task_type")]
    pub task_type: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_context: Option<UserContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_context: Option<SessionContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_context: Option<ExecutionContext>,
    #[serde(default)]
    pub messages: Vec<UniversalMessage>,
    #[serde(default)]
    pub available_tools: Vec<UniversalTool>,
    #[serde(default)]
    pub available_knowledge: Vec<KnowledgeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_config: Option<ExecutionConfig>,
    #[serde(default)]
    pub metadata: Metadata,
    /// Business chat-session id, chosen by the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_config: Option<AgentConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

fn default_task_type() -> String {
    "chat".to_owned()
}

impl TaskRequest {
    /// Step one of the protocol: create (or reuse) an agent.
    pub fn create_agent(task_id: impl Into<String>, config: AgentConfig) -> Self {
        let mut r = Self::empty(task_id);
        r.agent_config = Some(config);
        r.task_type = "agent_creation".to_owned();
        r
    }

    /// Step two: one turn of `agent_id` in chat session `session_id`.
    pub fn converse(
        task_id: impl Into<String>,
        agent_id: impl Into<String>,
        session_id: impl Into<String>,
        messages: Vec<UniversalMessage>,
    ) -> Self {
        let mut r = Self::empty(task_id);
        r.agent_id = Some(agent_id.into());
        r.session_id = Some(session_id.into());
        r.messages = messages;
        r
    }

    pub fn empty(task_id: impl Into<String>) -> Self {
        Self {
            task_id: task_id.into(),
            task_type: default_task_type(),
            description: String::new(),
            user_context: None,
            session_context: None,
            execution_context: None,
            messages: Vec::new(),
            available_tools: Vec::new(),
            available_knowledge: Vec::new(),
            execution_config: None,
            metadata: Metadata::new(),
            session_id: None,
            agent_config: None,
            agent_id: None,
        }
    }

    /// The user id, from `user_context.user_id` or `metadata.user_id`.
    pub fn user_id(&self) -> Option<&str> {
        self.user_context
            .as_ref()
            .and_then(|u| u.user_id.as_deref())
            .or_else(|| self.metadata.get("user_id").and_then(|v| v.as_str()))
    }
}

/// Who is asking. Unknown keys are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    #[serde(flatten)]
    pub extra: Metadata,
}

/// Session hints from the client. Unknown keys are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SessionContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(flatten)]
    pub extra: Metadata,
}

/// Execution identity and tracing. Unknown keys are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExecutionContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(flatten)]
    pub extra: Metadata,
}

/// How to run the task. `timeout` is in seconds.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExecutionConfig {
    #[serde(default)]
    pub execution_mode: ExecutionMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(flatten)]
    pub extra: Metadata,
}

/// `TaskResult`. `execution_time` is in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskResult {
    pub task_id: String,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_data: Option<serde_json::Value>,
    #[serde(default)]
    pub messages: Vec<UniversalMessage>,
    #[serde(default)]
    pub tool_results: Vec<ToolResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorPayload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_time: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

impl TaskResult {
    /// A successful result with nothing in it yet.
    pub fn success(task_id: impl Into<String>) -> Self {
        Self::with_status(task_id, TaskStatus::Success)
    }

    pub fn with_status(task_id: impl Into<String>, status: TaskStatus) -> Self {
        Self {
            task_id: task_id.into(),
            status,
            result_data: None,
            messages: Vec::new(),
            tool_results: Vec::new(),
            error_message: None,
            error: None,
            execution_time: None,
            created_at: Some(Utc::now()),
            metadata: Metadata::new(),
            session_id: None,
            agent_id: None,
        }
    }

    /// A failed result carrying `error` (status `error` unless told otherwise).
    pub fn failure(task_id: impl Into<String>, status: TaskStatus, error: ErrorPayload) -> Self {
        let mut r = Self::with_status(task_id, status);
        r.error_message = Some(error.message.clone());
        r.error = Some(error);
        r
    }

    pub fn is_success(&self) -> bool {
        self.status == TaskStatus::Success
    }

    /// Text of the last assistant message, if any.
    pub fn response_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.messages.last().map(|m| m.text_content())
    }
}
