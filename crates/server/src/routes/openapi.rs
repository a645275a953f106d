//! `/openapi.json`: the API as it behaves — every route and method the router serves, its path
//! and query parameters, its request body, and every status it can answer with the body's schema.
//!
//! Conventions a generic client can rely on:
//! * Every error that is not a `TaskResult` has the `Error` body (`{"error": {"code", "message",
//!   "field"?}}`); 401 carries `WWW-Authenticate: Bearer`, 429 and 503 carry `Retry-After`.
//! * `POST /v1/tasks` answers a `TaskResult` whatever happened to the turn, under its error code's
//!   status (`ErrorCode::http_status`); a request refused before it ran (bad JSON, a full queue)
//!   has the `Error` body, so those statuses list both.
//! * `POST /v1/tasks/stream` answers `text/event-stream`. Each event has `event:` = the chunk's
//!   `chunk_type`, `id:` = its `sequence_id`, and `data:` = one `TaskStreamChunk` as JSON. OpenAPI
//!   3.0 cannot say that, so the media type carries `x-itemSchema` in the shape OpenAPI 3.2 gives
//!   `itemSchema` for `text/event-stream` (and the `SseEvent` component).
//!
//! The server's tests check the document against the live server (crates/server/tests/openapi.rs).

use std::collections::BTreeMap;

use aether_contracts::{AgentConfig, ErrorCode, TaskChunkType, TaskRequest, TaskResult, UniversalMessage};
use serde_json::{json, Map, Value};

fn example<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A response with a JSON body of `schema`.
fn json_response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn error(description: &str) -> Value {
    json_response(description, schema_ref("Error"))
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string", "minLength": 1}})
}

fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

/// An operation behind the API key: 401 and 429 come with every one of them.
fn operation(summary: &str, id: &str, params: Vec<Value>, body: Option<Value>, responses: Vec<(u16, Value)>) -> Value {
    let mut r = Map::new();
    r.insert(
        "401".into(),
        error("no API key, or an unknown one (`WWW-Authenticate: Bearer`)"),
    );
    r.insert("429".into(), error("the tenant's hard rate limit (`Retry-After`)"));
    for (status, response) in responses {
        r.insert(status.to_string(), response);
    }
    let mut o = json!({"summary": summary, "operationId": id, "security": [{"bearer": []}], "responses": r});
    let in_path = params.iter().any(|p| p["in"] == "path");
    if !params.is_empty() {
        o["parameters"] = Value::Array(params);
    }
    // A 400's description says every reason an operation has for one.
    let mut bad_request = |why: &str| match o["responses"]["400"]["description"].as_str() {
        Some(had) => {
            let both = format!("{had}; or {why}");
            o["responses"]["400"]["description"] = Value::from(both);
        }
        None => o["responses"]["400"] = error(why),
    };
    if in_path {
        bad_request("a path parameter is not valid (not UTF-8 once percent-decoded); `field` names it");
    }
    if let Some(b) = body {
        bad_request("the body is not valid JSON of the expected type; `field` names the field");
        o["requestBody"] = json!({"required": true, "content": {"application/json": b}});
        o["responses"]["413"] = error("the body is larger than the server's limit");
    }
    o
}

/// The statuses of `POST /v1/tasks` beyond 200: each error code's, and 504 for a timeout.
fn task_failures() -> Vec<(u16, Value)> {
    let mut by_status: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    for code in ErrorCode::ALL {
        by_status.entry(code.http_status()).or_default().push(code.as_str());
    }
    let either = json!({"anyOf": [schema_ref("TaskResult"), schema_ref("Error")]});
    let mut out: Vec<(u16, Value)> = by_status
        .into_iter()
        .map(|(status, codes)| {
            let codes = codes.join(", ");
            let (schema, extra) = match status {
                400 => (either.clone(), "; or an Error body for a request that did not parse"),
                503 => (
                    either.clone(),
                    " (`Retry-After`); or an Error body when the admission queue is full",
                ),
                _ => (schema_ref("TaskResult"), ""),
            };
            (
                status,
                json_response(&format!("a TaskResult that failed with {codes}{extra}"), schema),
            )
        })
        .collect();
    out.push((404, error("`agent_id` names no agent of the caller's tenant")));
    out.push((
        504,
        json_response(
            "a TaskResult with status `timeout`: the turn's execution_config.timeout or the server's limit",
            schema_ref("TaskResult"),
        ),
    ));
    out
}

/// The schemas the document names: the contract types (derived from the Rust types) and the
/// small bodies of the other routes.
fn components() -> Value {
    use aether_contracts::schemars::generate::SchemaSettings;
    use aether_contracts::{InteractionResponse, TaskStreamChunk};
    let mut generator = SchemaSettings::openapi3().into_generator();
    // Registers each type (and what it refers to) among the definitions taken below.
    generator.subschema_for::<AgentConfig>();
    generator.subschema_for::<TaskRequest>();
    generator.subschema_for::<TaskResult>();
    generator.subschema_for::<UniversalMessage>();
    generator.subschema_for::<TaskStreamChunk>();
    generator.subschema_for::<InteractionResponse>();
    let mut schemas = generator.take_definitions(true);
    let string = json!({"type": "string"});
    let time = json!({"type": "string", "format": "date-time"});
    let count = json!({"type": "integer", "minimum": 0});
    let mut add = |name: &str, schema: Value| {
        schemas.insert(name.to_owned(), schema);
    };
    add(
        "Error",
        json!({"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": string, "message": string, "field": string}}}}),
    );
    add(
        "AgentCreated",
        json!({"type": "object", "required": ["agent_id", "reused"], "additionalProperties": false,
               "properties": {"agent_id": string, "reused": {"type": "boolean"}}}),
    );
    let agent = json!({"type": "object", "required": ["agent_id", "model", "tools", "sessions", "active_tasks", "created_at"],
        "properties": {"agent_id": string, "agent_type": {"type": "string", "nullable": true},
                       "name": {"type": "string", "nullable": true}, "model": string,
                       "tools": {"type": "array", "items": string}, "sessions": count, "active_tasks": count,
                       "created_at": time, "config": schema_ref("AgentConfig")}});
    add("Agent", agent);
    add(
        "AgentList",
        json!({"type": "object", "required": ["agents"], "properties": {"agents": {"type": "array", "items": schema_ref("Agent")}}}),
    );
    add(
        "SessionRecord",
        json!({"type": "object", "required": ["session_id", "agent_id", "internal_session_id", "state", "created_at", "updated_at", "event_count"],
               "additionalProperties": false,
               "properties": {"session_id": string, "user_id": string, "agent_id": string, "internal_session_id": string,
                              "state": {"type": "string", "enum": ["active", "archived"]},
                              "created_at": time, "updated_at": time, "event_count": count}}),
    );
    add(
        "SessionPage",
        json!({"type": "object", "required": ["sessions", "next_after"],
               "properties": {"sessions": {"type": "array", "items": schema_ref("SessionRecord")},
                              "next_after": {"type": "string", "nullable": true}}}),
    );
    add(
        "EventPage",
        json!({"type": "object", "required": ["events", "next_after_seq"],
               "properties": {"events": {"type": "array", "items": {"type": "object", "required": ["seq", "message"],
                                 "properties": {"seq": count, "message": schema_ref("UniversalMessage")}}},
                              "next_after_seq": {"type": "integer", "minimum": 0, "nullable": true}}}),
    );
    add(
        "Accepted",
        json!({"type": "object", "required": ["accepted"], "properties": {"accepted": {"type": "boolean", "enum": [true]}}}),
    );
    add(
        "Pending",
        json!({"type": "object", "required": ["pending"], "properties": {"pending": {"type": "array", "items": {"type": "object"}}}}),
    );
    add(
        "ApprovalAnswer",
        json!({"type": "object", "required": ["approved"], "additionalProperties": false,
               "properties": {"approved": {"type": "boolean"}, "user_message": {"type": "string"}, "response_data": {}}}),
    );
    add(
        "SseEvent",
        json!({"type": "object", "required": ["event", "id", "data"], "properties": {
            "event": {"type": "string", "enum": TaskChunkType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>()},
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "data": {"type": "string", "contentMediaType": "application/json", "x-contentSchema": schema_ref("TaskStreamChunk")}}}),
    );
    Value::Object(schemas)
}

pub fn document() -> Value {
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
    let body = |name: &str, ex: Value| json!({"schema": schema_ref(name), "example": ex});
    let ok = |description: &str, name: &str| json_response(description, schema_ref(name));
    let id = || path_param("id", "the id, as the caller's tenant knows it");
    let task_id = || path_param("task_id", "the live turn's task_id");
    let not_found = |what: &str| error(&format!("no {what} with this id in the caller's tenant"));
    let page = |what: &str| {
        query_param(
            "limit",
            &format!("{what} per page (1-1000, default 50)"),
            json!({"type": "integer", "minimum": 1, "maximum": 1000}),
        )
    };
    let live_errors = || {
        vec![
            (404, not_found("live turn")),
            (409, error("the live turn has ended")),
            (
                503,
                error("the instance that runs the turn could not be reached (`Retry-After`)"),
            ),
        ]
    };
    let sse_item = json!({"type": "object", "required": ["event", "data"], "properties": {
        "event": {"type": "string", "description": "the chunk's chunk_type"},
        "id": {"type": "string", "description": "the chunk's sequence_id"},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": schema_ref("TaskStreamChunk")}}});
    let bare = |summary: &str, id: &str, responses: Value| json!({"summary": summary, "operationId": id, "responses": responses});
    let admin = |o: &mut Value| {
        o["responses"]["403"] = error("a tenant's key: this route needs an admin key");
        if let Some(r) = o["responses"].as_object_mut() {
            r.remove("429");
        }
    };
    let mut stats = operation(
        "The whole server's figures, all tenants (admin key)",
        "adminStats",
        vec![],
        None,
        vec![(
            200,
            json_response(
                "runtime counters, admission, live turns by tenant, process RSS and CPU",
                json!({"type": "object"}),
            ),
        )],
    );
    admin(&mut stats);
    let mut profile = operation(
        "A CPU profile of the server over `seconds`, as pprof protobuf or `format=flamegraph` SVG (admin key); one at a time",
        "cpuProfile",
        vec![
            query_param("seconds", "the profile's length (default 30)", json!({"type": "integer", "minimum": 1, "maximum": crate::profiling::MAX_SECONDS})),
            query_param("format", "pprof (default) or flamegraph", json!({"type": "string", "enum": ["pprof", "flamegraph"]})),
        ],
        None,
        vec![
            (200, json!({"description": "the profile", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}, "image/svg+xml": {"schema": {"type": "string"}}}})),
            (400, error("`seconds` or `format` out of range; `field` names it")),
            (409, error("a profile is already running")),
            (500, error("the profiler failed")),
        ],
    );
    admin(&mut profile);
    let mut run_task = operation(
        "Run a turn (or create an agent by the two-step protocol). The body is always a TaskResult for a turn that ran; a failed one never answers 2xx",
        "runTask",
        vec![],
        Some(body("TaskRequest", task.clone())),
        task_failures(),
    );
    run_task["responses"]["200"] = json!({"description": "the TaskResult of a turn that answered (or a partial result that says why it stopped)",
                                          "content": {"application/json": {"schema": schema_ref("TaskResult"), "example": result}}});
    // What a route that reads or writes the session store answers when it fails.
    let store_failures = || {
        vec![
            (500, error("the store failed")),
            (
                503,
                error("the session store is unavailable: `store.unavailable` (`Retry-After`)"),
            ),
        ]
    };
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Aether Frame", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Agents, chat sessions and live turns. Bearer API keys map to tenants; ids are per tenant. Errors have the Error body; 429 and 503 carry Retry-After."},
        "components": {"schemas": components(), "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/v1/agents": {
                "post": operation("Create an agent from an AgentConfig (201; 200 when an equal agent is reused)", "createAgent", vec![], Some(body("AgentConfig", agent.clone())),
                    vec![(201, ok("created", "AgentCreated")), (200, ok("an equal agent, reused", "AgentCreated")),
                         (503, error("the cluster's shared database failed (`Retry-After`)"))]),
                "get": operation("List the tenant's agents", "listAgents", vec![], None,
                    vec![(200, ok("agents", "AgentList")), (503, error("the cluster's shared database failed (`Retry-After`)"))]),
            },
            "/v1/agents/{id}": {
                "get": operation("Show an agent and its config", "getAgent", vec![id()], None,
                    vec![(200, ok("agent", "Agent")), (404, not_found("agent"))]),
                "delete": operation("Remove an agent; its sessions are archived", "deleteAgent", vec![id()], None,
                    [vec![(204, json!({"description": "deleted"})), (404, not_found("agent"))], store_failures()].concat()),
            },
            "/v1/tasks": {"post": run_task},
            "/v1/tasks/stream": {"post": operation(
                "Run a live turn: server-sent events, one TaskStreamChunk each; closing the connection cancels it",
                "streamTask",
                vec![query_param("keep_open", "keep the live session open after the turn for follow-up messages", json!({"type": "boolean", "default": false}))],
                Some(body("TaskRequest", task)),
                vec![
                    (200, json!({"description": "text/event-stream: `event:` is the chunk's chunk_type, `id:` its sequence_id, `data:` the TaskStreamChunk as JSON; the last chunk has is_final",
                                 "content": {"text/event-stream": {"schema": {"type": "string"}, "x-itemSchema": sse_item}}})),
                    (404, error("`agent_id` names no agent of the caller's tenant")),
                    (409, error("a live turn with this task_id is already running")),
                    (503, error("too many live turns on this server, or the shared database failed (`Retry-After`)")),
                ],
            )},
            "/v1/live/{task_id}/messages": {"post": operation("Send a follow-up message (a UniversalMessage) to a live session", "sendLiveMessage", vec![task_id()],
                Some(body("UniversalMessage", example(&UniversalMessage::user("and then?")))),
                [vec![(202, ok("accepted", "Accepted"))], live_errors()].concat())},
            "/v1/live/{task_id}/approvals/{interaction_id}": {"post": operation("Answer a tool approval request", "answerApproval",
                vec![task_id(), path_param("interaction_id", "the approval request's interaction_id")],
                Some(body("ApprovalAnswer", json!({"approved": true, "user_message": "go ahead"}))),
                [vec![(202, ok("accepted", "Accepted"))], live_errors()].concat())},
            "/v1/live/{task_id}/cancel": {"post": operation("Cancel the live turn", "cancelLive", vec![task_id()], None,
                [vec![(202, ok("accepted", "Accepted"))], live_errors()].concat())},
            "/v1/live/{task_id}/pending": {"get": operation("Approval requests waiting for an answer", "pendingApprovals", vec![task_id()], None,
                [vec![(200, ok("pending", "Pending"))], live_errors()].concat())},
            "/v1/sessions": {"get": operation("List the tenant's sessions, paged by id", "listSessions",
                vec![query_param("after", "the next_after of the previous page", json!({"type": "string"})), page("sessions"),
                     query_param("agent_id", "only this agent's", json!({"type": "string"})),
                     query_param("user_id", "only this user's", json!({"type": "string"})),
                     query_param("state", "only sessions in this state", json!({"type": "string", "enum": ["active", "archived"]}))],
                None,
                [vec![(200, ok("page", "SessionPage")), (400, error("a query parameter is out of range or unknown; `field` names it"))], store_failures()].concat())},
            "/v1/sessions/{id}": {
                "get": operation("Show a session's record", "getSession", vec![id()], None,
                    [vec![(200, ok("the record", "SessionRecord")), (404, not_found("session"))], store_failures()].concat()),
                "delete": operation("Delete a session and its history for good", "deleteSession", vec![id()], None,
                    [vec![(204, json!({"description": "deleted"})), (404, not_found("session"))], store_failures()].concat()),
            },
            "/v1/sessions/{id}/events": {"get": operation("A page of a session's events", "sessionEvents",
                vec![id(), query_param("after_seq", "events after this sequence number", json!({"type": "integer", "minimum": 0})), page("events")],
                None,
                [vec![(200, ok("events", "EventPage")), (400, error("a query parameter is out of range or unknown; `field` names it")), (404, not_found("session"))], store_failures()].concat())},
            "/v1/sessions/{id}/archive": {"post": operation("Archive a session now (as the idle timeout would); the next turn recovers its history", "archiveSession", vec![id()], None,
                [vec![(200, json_response("whether a live session was archived", json!({"type": "object", "required": ["archived"], "properties": {"archived": {"type": "boolean"}}}))),
                     (404, not_found("session"))], store_failures()].concat())},
            "/v1/admin/stats": {"get": stats},
            "/debug/pprof/profile": {"get": profile},
            "/healthz": {"get": bare("Liveness", "healthz", json!({"200": json_response("alive", json!({"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["ok"]}}}))}))},
            "/readyz": {"get": bare("Readiness: the store answers a read", "readyz", json!({
                "200": json_response("ready", json!({"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["ready"]}}})),
                "503": json_response("not ready", json!({"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["not_ready"]}}}))}))},
            "/metrics": {"get": bare("Prometheus metrics", "metrics", json!({"200": {"description": "text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}}))},
            "/openapi.json": {"get": bare("This document", "openapi", json!({"200": json_response("the OpenAPI document", json!({"type": "object"}))}))},
        }
    })
}
