//! `/v1/live/{task_id}/…`: follow-up messages, approval answers, cancel and pending approvals of a
//! live turn running on this instance, within the caller's tenant.

use std::sync::Arc;

use aether_contracts::{InteractionResponse, InteractionType, Metadata, UniversalMessage};
use aether_runtime::live::{LiveController, LiveError};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Tenant;
use crate::error::{parse_body, ApiError};
use crate::state::AppState;

fn controller(s: &AppState, t: &Tenant, task_id: &str) -> Result<LiveController, ApiError> {
    s.live
        .get(&t.scoped(task_id))
        .map(|c| c.value().clone())
        .ok_or_else(|| ApiError::not_found("live turn", task_id))
}

fn ended(task_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "live.ended",
        format!("live turn `{task_id}` has ended"),
    )
}

pub async fn message(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    Path(task_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let msg: UniversalMessage = parse_body(body)?;
    let c = controller(&s, &t, &task_id)?;
    c.send_message(msg).await.map_err(|_| ended(&task_id))?;
    Ok(StatusCode::ACCEPTED)
}

/// The answer to one approval request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalAnswer {
    pub approved: bool,
    #[serde(default)]
    pub user_message: Option<String>,
    #[serde(default)]
    pub response_data: Option<Value>,
}

pub async fn approve(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    Path((task_id, interaction_id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let answer: ApprovalAnswer = parse_body(body)?;
    let c = controller(&s, &t, &task_id)?;
    let response = InteractionResponse {
        interaction_id: interaction_id.clone(),
        interaction_type: InteractionType::ToolApproval,
        approved: answer.approved,
        response_data: answer.response_data,
        user_message: answer.user_message,
        metadata: Metadata::new(),
        timestamp: chrono::Utc::now(),
    };
    match c.respond(&response) {
        Ok(()) => Ok(StatusCode::ACCEPTED),
        Err(LiveError::Ended) => Err(ended(&task_id)),
        Err(LiveError::Approval(e)) => Err(ApiError::new(StatusCode::NOT_FOUND, "approval.unknown", e.to_string())),
    }
}

pub async fn cancel(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    Path(task_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    controller(&s, &t, &task_id)?.cancel();
    Ok(StatusCode::ACCEPTED)
}

pub async fn pending(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    Path(task_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = controller(&s, &t, &task_id)?;
    Ok(Json(json!({ "pending": c.pending_approvals() })))
}
