//! `/v1/tasks` (one turn, or agent creation by the two-step protocol; returns a TaskResult) and
//! `/v1/tasks/stream` (the live turn as server-sent events of TaskStreamChunk).
//!
//! Both pass admission control. A client that disconnects drops the handler's future: the sync turn
//! stops where it is (nothing half-written: the runtime commits a turn at its end), the live turn is
//! cancelled.

use std::convert::Infallible;
use std::sync::Arc;

use aether_contracts::{failure_status, ErrorCode, ErrorPayload, TaskRequest, TaskResult, TaskStatus, TaskStreamChunk};
use aether_runtime::live::{LiveController, LiveOptions, LiveSession};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use futures::Stream;
use serde::Deserialize;
use serde_json::Value;

use crate::directory::tenant_agent;
use crate::error::{parse_body, ApiError};
use crate::state::AppState;
use crate::tenants::{Tenant, TENANT_KEY};

pub async fn run(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut req: TaskRequest = parse_body(body)?;
    scope_request(&s, &t, &mut req).await?;
    let _slot = s.admission.enter().await.ok_or_else(|| {
        s.metrics.rejected("queue_full");
        ApiError::unavailable("the server is at capacity: its admission queue is full", 1)
    })?;
    let task_id = req.task_id.clone();
    let timeout = s.limits.request_timeout();
    match tokio::time::timeout(timeout, s.rt.process(req)).await {
        Ok(mut result) => {
            s.metrics.task(&result);
            unscope_result(&t, &mut result);
            // A failed turn never answers 2xx: its error code's status (504 for a timeout).
            let status = failure_status(result.status == TaskStatus::Timeout, result.error.as_ref());
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (status, Json(result)).into_response();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                // `session.busy`: the session's earlier turns outlasted the wait; try again soon.
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static("1"),
                );
            }
            Ok(response)
        }
        Err(_) => {
            let error = ErrorPayload::new(
                ErrorCode::FrameworkExecution,
                format!(
                    "the turn did not finish within the server's {:.0} s limit",
                    timeout.as_secs_f64()
                ),
            )
            .with_details(serde_json::json!({"timeout_s": timeout.as_secs_f64()}));
            let result = TaskResult::failure(task_id, TaskStatus::Timeout, error);
            Ok((StatusCode::GATEWAY_TIMEOUT, Json(result)).into_response())
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct StreamParams {
    /// Keep the live session open after the turn for follow-up messages (`/v1/live/{id}/messages`);
    /// by default the stream ends with the turn.
    #[serde(default)]
    keep_open: bool,
}

pub async fn stream(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    query: Result<Query<StreamParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let params = crate::error::parse_query(query)?;
    let mut req: TaskRequest = parse_body(body)?;
    scope_request(&s, &t, &mut req).await?;
    if s.live.len() >= s.limits.max_live_sessions {
        s.metrics.rejected("live_full");
        return Err(ApiError::unavailable("too many live turns on this server", 1));
    }
    let key = t.scoped(&req.task_id);
    let live =
        s.rt.start_live(req, LiveOptions::default())
            .map_err(|e| ApiError::bad_request(e.to_string(), None))?;
    match s.live.entry(key.clone()) {
        dashmap::Entry::Occupied(_) => {
            live.cancel();
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "task.duplicate",
                "a live turn with this task_id is already running",
            ));
        }
        dashmap::Entry::Vacant(v) => {
            v.insert(live.controller());
        }
    }
    if let Some(c) = &s.cluster {
        if let Err(e) = c.claim_live(&key).await {
            s.live.remove(&key);
            live.cancel();
            return Err(e);
        }
    }
    let guard = LiveGuard {
        state: s.clone(),
        key,
        controller: live.controller(),
        finished: false,
    };
    let state = Streaming {
        live,
        guard,
        tenant: t,
        keep_open: params.keep_open,
        done: false,
    };
    let events = futures::stream::unfold(state, |mut st| async move {
        if st.done {
            st.guard.disarm();
            return None;
        }
        let Some(chunk) = st.live.next_chunk().await else {
            st.guard.disarm();
            return None;
        };
        st.guard.state.metrics.live_chunk(&chunk);
        if chunk.is_final && !st.keep_open {
            st.done = true;
            st.live.close().await;
        }
        Some((Ok(event(&st.tenant, chunk)), st))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

struct Streaming {
    live: LiveSession,
    guard: LiveGuard,
    tenant: Arc<Tenant>,
    keep_open: bool,
    done: bool,
}

/// Leaves the registry when the stream ends; cancels the turn when the client went away first.
struct LiveGuard {
    state: AppState,
    key: String,
    controller: LiveController,
    finished: bool,
}

impl LiveGuard {
    /// The stream ended normally: nothing to cancel.
    fn disarm(&mut self) {
        self.finished = true;
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.state.live.remove(&self.key);
        if let Some(c) = self.state.cluster.clone() {
            let key = std::mem::take(&mut self.key);
            tokio::spawn(async move { c.release_live(&key).await });
        }
        if !self.finished {
            self.controller.cancel();
        }
    }
}

fn event(t: &Tenant, mut chunk: TaskStreamChunk) -> Event {
    if let Some(Value::String(id)) = chunk.content.get_mut("session_id") {
        if let Some(own) = t.unscoped(id) {
            *id = own.to_owned();
        }
    }
    if let Some(Value::Object(metadata)) = chunk.content.get_mut("metadata") {
        unscope_metadata(t, metadata);
    }
    Event::default()
        .event(chunk.chunk_type.as_str())
        .id(chunk.sequence_id.to_string())
        .json_data(&chunk)
        .unwrap_or_else(|_| Event::default().event("error").data("unserialisable chunk"))
}

/// Puts the request in the tenant's id space: its agent must be the tenant's, its session ids
/// become `TENANT:ID`, a new agent is tagged with the tenant.
pub async fn scope_request(s: &AppState, t: &Tenant, req: &mut TaskRequest) -> Result<(), ApiError> {
    if let Some(config) = &mut req.agent_config {
        config.framework_config.insert(TENANT_KEY.into(), Value::from(&*t.name));
    }
    if let Some(id) = &req.agent_id {
        tenant_agent(s, t, id).await?;
    }
    if let Some(id) = &mut req.session_id {
        *id = t.scoped(id);
    }
    if let Some(id) = req.session_context.as_mut().and_then(|c| c.session_id.as_mut()) {
        *id = t.scoped(id);
    }
    Ok(())
}

fn unscope_result(t: &Tenant, r: &mut TaskResult) {
    if let Some(id) = &mut r.session_id {
        if let Some(own) = t.unscoped(id) {
            *id = own.to_owned();
        }
    }
    unscope_metadata(t, &mut r.metadata);
}

/// The session ids a turn's metadata carries (`session_id`, `agent_context.session_id`), back in
/// the tenant's own id space.
fn unscope_metadata(t: &Tenant, metadata: &mut serde_json::Map<String, Value>) {
    let unscope = |id: Option<&mut Value>| {
        if let Some(Value::String(s)) = id {
            if let Some(own) = t.unscoped(s) {
                *s = own.to_owned();
            }
        }
    };
    unscope(metadata.get_mut("session_id"));
    unscope(metadata.get_mut("agent_context").and_then(|c| c.get_mut("session_id")));
}
