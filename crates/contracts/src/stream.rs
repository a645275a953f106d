//! Streaming chunks of a live turn: `TaskStreamChunk` and its two taxonomies.

use crate::enums::impl_as_str;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Metadata;

/// Version stamp every chunk carries.
pub const CHUNK_VERSION: &str = "2025-03-01";

/// Coarse chunk type of the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskChunkType {
    Processing,
    PlanDelta,
    PlanSummary,
    ToolCallRequest,
    ToolApprovalRequest,
    ToolProposal,
    ToolResult,
    UserInputRequest,
    Response,
    Progress,
    Complete,
    Error,
    Cancelled,
}

impl_as_str!(TaskChunkType {
    Processing => "processing",
    PlanDelta => "plan_delta",
    PlanSummary => "plan_summary",
    ToolCallRequest => "tool_call_request",
    ToolApprovalRequest => "tool_approval_request",
    ToolProposal => "tool_proposal",
    ToolResult => "tool_result",
    UserInputRequest => "user_input_request",
    Response => "response",
    Progress => "progress",
    Complete => "complete",
    Error => "error",
    Cancelled => "cancelled",
});

/// Fine-grained, dotted chunk kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ChunkKind {
    #[serde(rename = "plan.delta")]
    PlanDelta,
    #[serde(rename = "plan.summary")]
    PlanSummary,
    #[serde(rename = "tool.proposal")]
    ToolProposal,
    #[serde(rename = "tool.result")]
    ToolResult,
    #[serde(rename = "tool.delta")]
    ToolDelta,
    #[serde(rename = "tool.complete")]
    ToolComplete,
    #[serde(rename = "tool.error")]
    ToolError,
    #[serde(rename = "response.delta")]
    ResponseDelta,
    #[serde(rename = "response.final")]
    ResponseFinal,
    #[serde(rename = "turn.complete")]
    TurnComplete,
    #[serde(rename = "error")]
    Error,
}

/// `TaskStreamChunk {task_id, chunk_type, sequence_id, content, timestamp, is_final, metadata,
/// chunk_kind, chunk_version, interaction_id?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskStreamChunk {
    pub task_id: String,
    pub chunk_type: TaskChunkType,
    pub sequence_id: u64,
    /// A string or an object.
    pub content: serde_json::Value,
    pub timestamp: DateTime<Utc>,
    #[serde(default)]
    pub is_final: bool,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_kind: Option<ChunkKind>,
    #[serde(default = "default_chunk_version")]
    pub chunk_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction_id: Option<String>,
}

fn default_chunk_version() -> String {
    CHUNK_VERSION.to_owned()
}
