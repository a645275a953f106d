//! `/healthz`, `/readyz`, `/metrics` (Prometheus) and `/openapi.json`. No API key needed; none of
//! them shows a tenant's data.

use aether_contracts::{AgentConfig, TaskRequest, TaskResult, UniversalMessage};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::state::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the store answers a read.
pub async fn readyz(State(s): State<AppState>) -> Response {
    let store = s.rt.store();
    match store.get_session("aether:readyz-probe").await {
        Ok(_) => Json(json!({"status": "ready", "store": store.info()})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "store_error": e.to_string()})),
        )
            .into_response(),
    }
}

pub async fn metrics(State(s): State<AppState>) -> Response {
    // /proc reads are file I/O: off the async threads.
    let process = s.clone();
    let heap = tokio::task::spawn_blocking(move || {
        process.metrics.collect_process();
        aether_runtime::stats::heap_allocated_bytes()
    })
    .await
    .ok()
    .flatten();
    let m = &s.metrics;
    if let Some(bytes) = heap {
        // The allocator's allocated bytes (glibc mallinfo2), beside process_resident_memory_bytes.
        m.gauge("process_heap_allocated_bytes", bytes as f64);
    }
    let stats = s.rt.stats();
    m.gauge("aether_active_sessions", stats.active_sessions as f64);
    m.gauge("aether_active_agents", stats.active_agents as f64);
    m.gauge("aether_active_runners", stats.active_runners as f64);
    m.gauge("aether_admission_queue_depth", s.admission.queued() as f64);
    m.gauge("aether_turns_in_flight", s.admission.in_flight() as f64);
    m.gauge("aether_live_turns", s.live.len() as f64);
    if let Ok(Value::Object(fields)) = serde_json::to_value(&stats) {
        for (name, v) in fields {
            if name.starts_with("active_") {
                continue;
            }
            if let Some(v) = v.as_u64() {
                m.counter_total(format!("aether_runtime_{name}_total"), v);
            }
        }
    }
    for c in &s.mcp {
        let st = c.stats();
        let server = ("server", c.name());
        m.labeled_total("aether_mcp_calls_total", server, st.calls);
        m.labeled_total("aether_mcp_calls_failed_total", server, st.failed);
        m.labeled_total("aether_mcp_calls_cancelled_total", server, st.cancelled);
        m.labeled_total("aether_mcp_sessions_opened_total", server, st.sessions_opened);
        m.labeled_total("aether_mcp_restarts_total", server, st.restarts);
    }
    // The OTLP span export, when on (process-wide): what it delivered and what it dropped.
    if let Some(e) = aether_runtime::telemetry::SPAN_EXPORT.read() {
        m.labeled_total(
            "aether_otel_spans_dropped_total",
            ("reason", "queue_full"),
            e.dropped_queue_full,
        );
        m.labeled_total(
            "aether_otel_spans_dropped_total",
            ("reason", "export_failed"),
            e.dropped_export_failed,
        );
        m.counter_total("aether_otel_spans_exported_total".into(), e.exported);
        m.gauge("aether_otel_queue_capacity", e.queue_capacity as f64);
        m.gauge("aether_otel_queue_high_water", e.queue_high_water as f64);
    }
    let mut text = m.render();
    if let Some(t) = &s.store_timings {
        text.push_str(&t.render());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The API's routes, with the JSON Schemas of the contract types (derived from the types
/// themselves) and examples serialised from them.
pub async fn openapi() -> Json<Value> {
    Json(document())
}

fn example<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

pub fn document() -> Value {
    use aether_contracts::schemars::generate::SchemaSettings;
    use aether_contracts::{InteractionResponse, TaskStreamChunk};
    let mut generator = SchemaSettings::openapi3().into_generator();
    let schema_of = |v: aether_contracts::schemars::Schema| serde_json::to_value(v).unwrap_or(Value::Null);
    let agent_schema = schema_of(generator.subschema_for::<AgentConfig>());
    let task_schema = schema_of(generator.subschema_for::<TaskRequest>());
    let result_schema = schema_of(generator.subschema_for::<TaskResult>());
    let message_schema = schema_of(generator.subschema_for::<UniversalMessage>());
    let chunk_schema = schema_of(generator.subschema_for::<TaskStreamChunk>());
    let _ = generator.subschema_for::<InteractionResponse>();
    let schemas = Value::Object(generator.take_definitions(true));
    let agent = example(&AgentConfig::new("gpt-4o-mini", "You are a helpful assistant.").with_tools(["builtin.echo"]));
    let task = example(&TaskRequest::converse(
        "task-1",
        "agent-1",
        "session-1",
        vec![UniversalMessage::user("Hello")],
    ));
    let mut result = TaskResult::success("task-1");
    result.session_id = Some("session-1".into());
    result.messages = vec![UniversalMessage::assistant("Hi!")];
    let result = example(&result);
    let secured = json!([{"bearer": []}]);
    let json_body = |schema: &Value, ex: &Value| json!({"required": true, "content": {"application/json": {"schema": schema, "example": ex}}});
    let ok = |desc: &str, ex: Value| json!({"description": desc, "content": {"application/json": {"example": ex}}});
    let typed = |desc: &str, schema: &Value, ex: Value| json!({"description": desc, "content": {"application/json": {"schema": schema, "example": ex}}});
    let err = json!({"description": "error: {\"error\": {\"code\", \"message\", \"field\"?}}"});
    let errors = json!({"400": err, "401": err, "404": err, "413": err, "429": err, "503": err});
    let op = |summary: &str, body: Option<Value>, response: Value| {
        let mut o = json!({"summary": summary, "security": secured, "responses": errors});
        o["responses"]["200"] = response;
        if let Some(b) = body {
            o["requestBody"] = b;
        }
        o
    };
    // A failed turn's TaskResult, under the status of its error code (or 504 when it timed out).
    let with_failed_results = |mut o: Value, schema: &Value| {
        let mut codes: std::collections::BTreeMap<u16, Vec<&str>> = std::collections::BTreeMap::new();
        for code in aether_contracts::ErrorCode::ALL {
            codes.entry(code.http_status()).or_default().push(code.as_str());
        }
        for (status, which) in codes {
            let which = which.join(", ");
            let retry = if status == 503 { "; with Retry-After" } else { "" };
            o["responses"][status.to_string()] = json!({
                "description": format!("a TaskResult that failed with {which}{retry} (or an error body for a request refused before it ran)"),
                "content": {"application/json": {"schema": schema}},
            });
        }
        o["responses"]["504"] = json!({
            "description": "a TaskResult with status timeout: the turn's execution_config.timeout or the server's limit",
            "content": {"application/json": {"schema": schema}},
        });
        o
    };
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Aether Frame", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Agents, chat sessions and live turns. Bearer API keys map to tenants; ids are per tenant."},
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/v1/agents": {
                "post": op("Create an agent from an AgentConfig (201; 200 when an equal agent is reused)", Some(json_body(&agent_schema, &agent)), ok("created", json!({"agent_id": "agent-1", "reused": false}))),
                "get": op("List the tenant's agents", None, ok("agents", json!({"agents": []}))),
            },
            "/v1/agents/{id}": {
                "get": op("Show an agent and its config", None, ok("agent", json!({"agent_id": "agent-1", "config": agent}))),
                "delete": op("Remove an agent; its sessions are archived (204)", None, json!({"description": "deleted"})),
            },
            "/v1/tasks": {"post": with_failed_results(op("Run a turn (or create an agent by the two-step protocol). The body is always a TaskResult; a failed one never answers 2xx: 504 when it timed out (the turn's execution_config.timeout or the server's limit), else by its error code: request.validation, tool.not_declared, tool.invalid_parameters 400; approval.timeout 408; internal.error, framework.execution 500; framework.unavailable 501; model.upstream, stream.interrupted, tool.execution 502; session.busy 503 with Retry-After (the session stayed busy with earlier turns, on this instance or another, past the server's session wait)", Some(json_body(&task_schema, &task)), typed("TaskResult", &result_schema, result.clone())), &result_schema)},
            "/v1/tasks/stream": {"post": op("Run a live turn: server-sent events, one TaskStreamChunk each (`?keep_open=true` keeps the session for follow-up messages); closing the connection cancels it", Some(json_body(&task_schema, &task)), json!({"description": "text/event-stream; each event's data is a TaskStreamChunk", "content": {"text/event-stream": {"schema": chunk_schema}}}))},
            "/v1/live/{task_id}/messages": {"post": op("Send a follow-up message (a UniversalMessage) to a live session (202)", Some(json_body(&message_schema, &example(&UniversalMessage::user("and then?")))), json!({"description": "accepted"}))},
            "/v1/live/{task_id}/approvals/{interaction_id}": {"post": op("Answer a tool approval request (202)", Some(json_body(&json!({"type": "object", "required": ["approved"], "properties": {"approved": {"type": "boolean"}, "user_message": {"type": "string"}, "response_data": {}}}), &json!({"approved": true, "user_message": "go ahead"}))), json!({"description": "accepted"}))},
            "/v1/live/{task_id}/cancel": {"post": op("Cancel the live turn (202)", None, json!({"description": "accepted"}))},
            "/v1/live/{task_id}/pending": {"get": op("Approval requests waiting for an answer", None, ok("pending", json!({"pending": []})))},
            "/v1/sessions": {"get": op("List sessions (`after`, `limit` ≤ 1000, `agent_id`, `user_id`, `state`)", None, ok("page", json!({"sessions": [], "next_after": null})))},
            "/v1/sessions/{id}": {
                "get": op("Show a session's record", None, ok("SessionRecord", json!({}))),
                "delete": op("Delete a session and its history for good (204)", None, json!({"description": "deleted"})),
            },
            "/v1/sessions/{id}/events": {"get": op("A page of a session's events (`after_seq`, `limit`)", None, ok("events", json!({"events": [], "next_after_seq": null})))},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "Readiness: the store answers", "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition format"}}}},
            "/debug/pprof/profile": {"get": {"summary": "A CPU profile of the server over `seconds` (1-60, default 30), as pprof protobuf or `format=flamegraph` SVG (admin key)", "parameters": [{"name": "seconds", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 60}}, {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["pprof", "flamegraph"]}}], "responses": {"200": {"description": "the profile"}, "400": {"description": "seconds or format out of range"}, "401": {"description": "no key or an unknown one"}, "403": {"description": "a tenant's key"}, "409": {"description": "a profile is already running"}}}},
            "/v1/admin/stats": {"get": {"summary": "The whole server's figures, all tenants (admin key)", "responses": {"200": {"description": "runtime counters, admission, live turns by tenant, process RSS and CPU"}, "401": {"description": "no key or an unknown one"}, "403": {"description": "a tenant's key"}}}},
        }
    })
}
