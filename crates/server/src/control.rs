//! Live-turn control, in one place: the actions a client may take on a running live turn
//! ([`LiveAction`]: a follow-up message, an approval answer, cancel, the pending approvals), the
//! registry of this instance's live turns ([`LiveTurns`]), running an action here
//! ([`perform_local`]), and sending it to the instance that runs the turn ([`perform`] through a
//! [`Forward`], which the cluster implements over PostgreSQL NOTIFY).

use aether_contracts::{InteractionResponse, InteractionType, Metadata, UniversalMessage};
use aether_runtime::live::{LiveController, LiveError};
use async_trait::async_trait;
use axum::http::StatusCode;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::ApiError;

/// This instance's live turns by `TENANT:task_id`, bounded by `limits.max_live_sessions`; an
/// entry leaves when its stream ends or its client goes away.
pub type LiveTurns = DashMap<String, LiveController>;

/// The answer to one approval request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalAnswer {
    pub approved: bool,
    #[serde(default)]
    pub user_message: Option<String>,
    #[serde(default)]
    pub response_data: Option<Value>,
}

/// A control action on a live turn, as forwarded between instances.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum LiveAction {
    Message {
        message: UniversalMessage,
    },
    Approve {
        interaction_id: String,
        answer: ApprovalAnswer,
    },
    Cancel,
    Pending,
}

/// Sends an action to the instance that runs live turn `key`.
#[async_trait]
pub trait Forward: Send + Sync {
    /// The owner's answer (HTTP status and body); `Ok(None)` when no live instance runs it.
    async fn forward(&self, key: &str, action: LiveAction) -> Result<Option<(u16, Value)>, ApiError>;
}

fn task_part(key: &str) -> &str {
    key.split_once(':').map_or(key, |(_, task)| task)
}

/// Applies `action` to live turn `key` (`TENANT:task_id`) if it runs on this instance.
pub async fn perform_local(live: &LiveTurns, key: &str, action: LiveAction) -> Result<Value, ApiError> {
    let task_id = task_part(key);
    let c = live
        .get(key)
        .map(|c| c.value().clone())
        .ok_or_else(|| ApiError::not_found("live turn", task_id))?;
    let ended = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "live.ended",
            format!("live turn `{task_id}` has ended"),
        )
    };
    let accepted = json!({"accepted": true});
    match action {
        LiveAction::Message { message } => {
            c.send_message(message).await.map_err(|_| ended())?;
            Ok(accepted)
        }
        LiveAction::Approve { interaction_id, answer } => {
            let response = InteractionResponse {
                interaction_id,
                interaction_type: InteractionType::ToolApproval,
                approved: answer.approved,
                response_data: answer.response_data,
                user_message: answer.user_message,
                metadata: Metadata::new(),
                timestamp: chrono::Utc::now(),
            };
            match c.respond(&response) {
                Ok(()) => Ok(accepted),
                Err(LiveError::Ended) => Err(ended()),
                Err(LiveError::Approval(e)) => {
                    Err(ApiError::new(StatusCode::NOT_FOUND, "approval.unknown", e.to_string()))
                }
            }
        }
        LiveAction::Cancel => {
            c.cancel();
            Ok(accepted)
        }
        LiveAction::Pending => Ok(json!({ "pending": c.pending_approvals() })),
    }
}

/// Applies `action` to live turn `key` (`TENANT:task_id`) here, or on the instance that runs it.
pub async fn perform(
    live: &LiveTurns,
    elsewhere: Option<&dyn Forward>,
    key: &str,
    action: LiveAction,
) -> Result<Value, ApiError> {
    if live.contains_key(key) {
        return perform_local(live, key, action).await;
    }
    if let Some(f) = elsewhere {
        if let Some((status, body)) = f.forward(key, action).await? {
            if status == 200 {
                return Ok(body);
            }
            let code = match body["code"].as_str() {
                Some("not_found") => "not_found",
                Some("live.ended") => "live.ended",
                Some("approval.unknown") => "approval.unknown",
                _ => "internal.error",
            };
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            return Err(ApiError::new(
                status,
                code,
                body["message"].as_str().unwrap_or("").to_owned(),
            ));
        }
    }
    Err(ApiError::not_found("live turn", task_part(key)))
}
