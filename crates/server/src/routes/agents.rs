//! `/v1/agents`: create from an AgentConfig, list, show, delete — all within the caller's tenant.

use std::sync::Arc;

use aether_contracts::AgentConfig;
use aether_runtime::agents::Agent;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::directory::tenant_agent;
use crate::error::{parse_body, ApiError, PathParams};
use crate::state::AppState;
use crate::tenants::{Tenant, TENANT_KEY};

pub async fn create(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut config: AgentConfig = parse_body(body)?;
    config.framework_config.insert(TENANT_KEY.into(), Value::from(&*t.name));
    let recorded = s.cluster.as_ref().map(|_| config.clone());
    let handle =
        s.rt.create_agent(config)
            .await
            .map_err(|e| ApiError::bad_request(e.to_string(), None))?;
    if let (Some(c), Some(config)) = (&s.cluster, recorded) {
        c.put_agent(&handle.agent_id, &t.name, &config).await?;
    }
    let status = if handle.reused {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(json!({"agent_id": handle.agent_id, "reused": handle.reused})),
    )
        .into_response())
}

pub async fn list(State(s): State<AppState>, Extension(t): Extension<Arc<Tenant>>) -> Result<Json<Value>, ApiError> {
    if let Some(c) = &s.cluster {
        for id in c.agent_ids(&t.name).await? {
            tenant_agent(&s, &t, &id).await?;
        }
    }
    let mut agents: Vec<Value> =
        s.rt.agents_where(|a| t.owns(a))
            .iter()
            .map(|a| view(a, false))
            .collect();
    agents.sort_by(|a, b| a["agent_id"].as_str().cmp(&b["agent_id"].as_str()));
    Ok(Json(json!({ "agents": agents })))
}

pub async fn show(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    let agent = tenant_agent(&s, &t, &id).await?;
    Ok(Json(view(&agent, true)))
}

pub async fn delete(
    State(s): State<AppState>,
    Extension(t): Extension<Arc<Tenant>>,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    tenant_agent(&s, &t, &id).await?;
    if let Some(c) = &s.cluster {
        c.delete_agent(&id, &t.name).await?;
    }
    match s.rt.cleanup_agent(&id).await {
        Ok(Some(_)) => Ok(StatusCode::NO_CONTENT),
        Ok(None) => Err(ApiError::not_found("agent", &id)),
        Err(e) => Err(ApiError::engine(e)),
    }
}

fn view(a: &Agent, with_config: bool) -> Value {
    let mut v = json!({
        "agent_id": &*a.id,
        "agent_type": a.config.agent_type,
        "name": a.config.name,
        "model": a.config.model_config.model,
        "tools": a.tools.iter().map(|t| &*t.full_name).collect::<Vec<_>>(),
        "sessions": a.session_count(),
        "active_tasks": a.active_tasks(),
        "created_at": a.created_at,
    });
    if with_config {
        v["config"] = serde_json::to_value(&a.config).unwrap_or(Value::Null);
    }
    v
}
