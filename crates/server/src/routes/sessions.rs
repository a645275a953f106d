//! `/v1/sessions`: list (keyset paging), show, delete, and a session's events — the caller's
//! tenant's sessions only.

use std::sync::Arc;

use aether_store::{PageRequest, SessionFilter, SessionRecord, SessionState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{parse_query, ApiError, PathParams};
use crate::state::AppState;
use crate::tenants::Tenant;

const MAX_PAGE: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    after: Option<String>,
    limit: Option<usize>,
    agent_id: Option<String>,
    user_id: Option<String>,
    state: Option<String>,
}

pub async fn list(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = parse_query(query)?;
    let limit = page_limit(p.limit)?;
    let state = match p.state.as_deref() {
        None => None,
        Some("active") => Some(SessionState::Active),
        Some("archived") => Some(SessionState::Archived),
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("state must be `active` or `archived`, got `{other}`"),
                Some("state".into()),
            ))
        }
    };
    let filter = SessionFilter {
        user_id: p.user_id,
        agent_id: p.agent_id,
        state,
    };
    // The tenant's ids are the contiguous range after `TENANT:`; stop at the first id outside it.
    let page = PageRequest {
        after: Some(t.scoped(p.after.as_deref().unwrap_or(""))),
        limit,
    };
    let page = s.rt.list_sessions(&filter, &page).await.map_err(ApiError::engine)?;
    let total = page.sessions.len();
    let sessions: Vec<SessionRecord> = page.sessions.into_iter().filter_map(|r| unscope(&t, r)).collect();
    let next = if sessions.len() == total {
        page.next_after
            .as_deref()
            .and_then(|n| t.unscoped(n))
            .map(str::to_owned)
    } else {
        None
    };
    Ok(Json(json!({"sessions": sessions, "next_after": next})))
}

pub async fn show(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    PathParams(id): PathParams<String>,
) -> Result<Json<SessionRecord>, ApiError> {
    let record =
        s.rt.session(&t.scoped(&id))
            .await
            .map_err(ApiError::engine)?
            .and_then(|r| unscope(&t, r))
            .ok_or_else(|| ApiError::not_found("session", &id))?;
    Ok(Json(record))
}

pub async fn delete(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let scoped = t.scoped(&id);
    ensure_exists(&s, &scoped, &id).await?;
    s.rt.delete_session(&scoped).await.map_err(ApiError::engine)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Archives a live session now (as the idle timeout would); the next turn recovers its history.
pub async fn archive(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    let scoped = t.scoped(&id);
    ensure_exists(&s, &scoped, &id).await?;
    let archived = s.rt.cleanup_session(&scoped).await.map_err(ApiError::engine)?;
    Ok(Json(json!({ "archived": archived })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    after_seq: Option<u64>,
    limit: Option<usize>,
}

pub async fn events(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    PathParams(id): PathParams<String>,
    query: Result<Query<EventParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = parse_query(query)?;
    let limit = page_limit(p.limit)?;
    let scoped = t.scoped(&id);
    ensure_exists(&s, &scoped, &id).await?;
    let page =
        s.rt.session_events(&scoped, p.after_seq, limit)
            .await
            .map_err(ApiError::engine)?;
    Ok(Json(
        json!({"events": page.events, "next_after_seq": page.next_after_seq}),
    ))
}

fn unscope(t: &Tenant, mut r: SessionRecord) -> Option<SessionRecord> {
    r.session_id = t.unscoped(&r.session_id)?.into();
    Some(r)
}

/// 404 unless the tenant's session exists.
async fn ensure_exists(s: &AppState, scoped: &str, id: &str) -> Result<(), ApiError> {
    match s.rt.session(scoped).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(ApiError::not_found("session", id)),
        Err(e) => Err(ApiError::engine(e)),
    }
}

/// `limit`: 100 when absent, else 1 to MAX_PAGE.
fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            format!("limit must be 1 to {MAX_PAGE}, got {limit}"),
            Some("limit".into()),
        ));
    }
    Ok(limit)
}
