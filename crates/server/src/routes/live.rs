//! `/v1/live/{task_id}/…`: follow-up messages, approval answers, cancel and pending approvals of a
//! live turn, within the caller's tenant. The turn runs on one instance; in a cluster, a request
//! that lands elsewhere is forwarded to it (see [`crate::control`]).

use std::sync::Arc;

use aether_contracts::UniversalMessage;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use bytes::Bytes;
use serde_json::Value;

use crate::control::{perform as perform_anywhere, ApprovalAnswer, Forward, LiveAction};
use crate::error::{parse_body, ApiError, PathParams};
use crate::state::AppState;
use crate::tenants::Tenant;

/// Here, or on the instance that runs the turn.
async fn perform(s: &AppState, t: &Tenant, task_id: &str, action: LiveAction) -> Result<Value, ApiError> {
    let elsewhere = s.cluster.as_deref().map(|c| c as &dyn Forward);
    perform_anywhere(&s.live, elsewhere, &t.scoped(task_id), action).await
}

pub async fn message(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    PathParams(task_id): PathParams<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let message: UniversalMessage = parse_body(body)?;
    let v = perform(&s, &t, &task_id, LiveAction::Message { message }).await?;
    Ok((StatusCode::ACCEPTED, Json(v)))
}

pub async fn approve(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    PathParams((task_id, interaction_id)): PathParams<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let answer: ApprovalAnswer = parse_body(body)?;
    let v = perform(&s, &t, &task_id, LiveAction::Approve { interaction_id, answer }).await?;
    Ok((StatusCode::ACCEPTED, Json(v)))
}

pub async fn cancel(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    PathParams(task_id): PathParams<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let v = perform(&s, &t, &task_id, LiveAction::Cancel).await?;
    Ok((StatusCode::ACCEPTED, Json(v)))
}

pub async fn pending(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    PathParams(task_id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(perform(&s, &t, &task_id, LiveAction::Pending).await?))
}
