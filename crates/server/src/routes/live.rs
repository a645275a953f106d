//! `/v1/live/{task_id}/…`: follow-up messages, approval answers, cancel and pending approvals of a
//! live turn, within the caller's tenant. The turn runs on one instance; in a cluster, a request
//! that lands elsewhere is forwarded to it (see [`crate::cluster`]).

use std::sync::Arc;

use aether_contracts::{InteractionResponse, InteractionType, Metadata, UniversalMessage};
use aether_runtime::live::LiveError;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::Tenant;
use crate::cluster::LiveAction;
use crate::error::{parse_body, ApiError};
use crate::state::AppState;

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

fn task_part(key: &str) -> &str {
    key.split_once(':').map_or(key, |(_, task)| task)
}

/// Applies `action` to live turn `key` (`TENANT:task_id`) if it runs on this instance.
pub async fn perform_local(s: &AppState, key: &str, action: LiveAction) -> Result<Value, ApiError> {
    let task_id = task_part(key);
    let c = s
        .live
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

/// Here, or on the instance that runs the turn.
async fn perform(s: &AppState, t: &Tenant, task_id: &str, action: LiveAction) -> Result<Value, ApiError> {
    let key = t.scoped(task_id);
    if s.live.contains_key(&key) {
        return perform_local(s, &key, action).await;
    }
    if let Some(c) = &s.cluster {
        if let Some((status, body)) = c.forward(&key, action).await? {
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
    Err(ApiError::not_found("live turn", task_id))
}

pub async fn message(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    Path(task_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let message: UniversalMessage = parse_body(body)?;
    let v = perform(&s, &t, &task_id, LiveAction::Message { message }).await?;
    Ok((StatusCode::ACCEPTED, Json(v)))
}

pub async fn approve(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    Path((task_id, interaction_id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let answer: ApprovalAnswer = parse_body(body)?;
    let v = perform(&s, &t, &task_id, LiveAction::Approve { interaction_id, answer }).await?;
    Ok((StatusCode::ACCEPTED, Json(v)))
}

pub async fn cancel(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    Path(task_id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let v = perform(&s, &t, &task_id, LiveAction::Cancel).await?;
    Ok((StatusCode::ACCEPTED, Json(v)))
}

pub async fn pending(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    Path(task_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(perform(&s, &t, &task_id, LiveAction::Pending).await?))
}
