//! Human-in-the-loop requests and answers (tool approvals, user input).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Metadata;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum InteractionType {
    ToolApproval,
    UserInput,
    Confirmation,
    Cancellation,
}

/// `InteractionRequest {interaction_id, interaction_type, task_id, content, metadata, timestamp}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct InteractionRequest {
    pub interaction_id: String,
    pub interaction_type: InteractionType,
    pub task_id: String,
    pub content: serde_json::Value,
    #[serde(default)]
    pub metadata: Metadata,
    pub timestamp: DateTime<Utc>,
}

/// `InteractionResponse {interaction_id, interaction_type, approved, response_data?, user_message?,
/// metadata, timestamp}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct InteractionResponse {
    pub interaction_id: String,
    pub interaction_type: InteractionType,
    pub approved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_message: Option<String>,
    #[serde(default)]
    pub metadata: Metadata,
    pub timestamp: DateTime<Utc>,
}
