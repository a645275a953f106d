//! `/openapi.json` against the live server: the document names exactly the routes the router
//! serves, declares every path parameter, and every answer of a scripted session over real HTTP
//! (each operation, its errors, the events of a live turn with an approval) has a status the
//! document lists for its operation and a body that validates against the schema it gives.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::common::{agent_body, builder, config, instant, turn, Server};

/// OpenAPI 3.0's `nullable` as JSON Schema, so that a standard validator reads the document.
fn as_json_schema(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for child in o.values_mut() {
                as_json_schema(child);
            }
            if o.remove("nullable") == Some(Value::Bool(true)) {
                match o.get("type").cloned() {
                    Some(Value::String(t)) => {
                        o.insert("type".into(), json!([t, "null"]));
                    }
                    _ => {
                        let inner = Value::Object(std::mem::take(o));
                        o.insert("anyOf".into(), json!([inner, {"type": "null"}]));
                    }
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(as_json_schema),
        _ => {}
    }
}

pub(crate) struct Conformance {
    doc: Value,
    components: Value,
    /// (method, path template, status) answered so far.
    seen: BTreeSet<(String, String, u16)>,
}

impl Conformance {
    pub(crate) fn new(doc: Value) -> Self {
        let mut components = doc["components"].clone();
        as_json_schema(&mut components);
        Self {
            doc,
            components,
            seen: BTreeSet::new(),
        }
    }

    fn validate(&self, schema: &Value, instance: &Value, what: &str) {
        let mut root = Map::new();
        root.insert("components".into(), self.components.clone());
        let mut schema = schema.clone();
        as_json_schema(&mut schema);
        for (k, v) in schema.as_object().unwrap() {
            root.insert(k.clone(), v.clone());
        }
        let v = jsonschema::validator_for(&Value::Object(root)).unwrap_or_else(|e| panic!("{what}: bad schema: {e}"));
        let errors: Vec<String> = v
            .iter_errors(instance)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: {instance} does not match the document: {errors:?}"
        );
    }

    pub(crate) fn operation(&self, method: &Method, template: &str) -> &Value {
        let op = &self.doc["paths"][template][method.as_str().to_lowercase()];
        assert!(op.is_object(), "{method} {template} is not in the document");
        op
    }

    /// Checks one answer against the document; returns its status and body (JSON, or text).
    pub(crate) async fn check(
        &mut self,
        method: Method,
        template: &str,
        resp: reqwest::Response,
    ) -> (StatusCode, Value) {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let what = format!("{method} {template} → {status}");
        let documented = &self.operation(&method, template)["responses"][status.as_str()];
        assert!(
            documented.is_object(),
            "{what}: status not in the document; body {text}"
        );
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(headers["www-authenticate"], "Bearer", "{what}");
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(headers.contains_key("retry-after"), "{what}: no Retry-After");
        }
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        match documented["content"].as_object() {
            None => assert!(text.is_empty(), "{what}: the document promises no body, got {text}"),
            Some(content) => {
                let ty = headers.get("content-type").map(|v| v.to_str().unwrap()).unwrap_or("");
                let (media, spec) = content
                    .iter()
                    .find(|(m, _)| ty.starts_with(m.as_str()))
                    .unwrap_or_else(|| panic!("{what}: content type `{ty}` not in the document"));
                if media == "application/json" {
                    self.validate(&spec["schema"], &body, &what);
                }
            }
        }
        self.seen
            .insert((method.to_string(), template.to_owned(), status.as_u16()));
        (status, body)
    }

    /// Sends a request to `path` (an instance of `template`) and checks the answer.
    async fn call(
        &mut self,
        s: &Server,
        method: &Method,
        template: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = s.req(method.clone(), path, key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        self.check(method.clone(), template, resp).await
    }

    /// Checks one server-sent event against the media type's item schema and the chunk schema.
    pub(crate) fn check_event(&self, frame: &str) -> Value {
        let mut event = Map::new();
        for line in frame.lines() {
            if let Some((k, v)) = line.split_once(": ") {
                event.insert(k.to_owned(), Value::String(v.to_owned()));
            }
        }
        let event = Value::Object(event);
        let item = &self.doc["paths"]["/v1/tasks/stream"]["post"]["responses"]["200"]["content"]["text/event-stream"]
            ["x-itemSchema"];
        self.validate(item, &event, "an SSE event");
        self.validate(
            &json!({"$ref": "#/components/schemas/SseEvent"}),
            &event,
            "an SSE event",
        );
        let chunk: Value = serde_json::from_str(event["data"].as_str().unwrap()).unwrap();
        self.validate(
            &item["properties"]["data"]["contentSchema"],
            &chunk,
            "an SSE event's data",
        );
        assert_eq!(event["event"], chunk["chunk_type"], "event: is the chunk_type");
        assert_eq!(event["id"], chunk["sequence_id"].to_string(), "id: is the sequence_id");
        chunk
    }
}

/// The live server's `/openapi.json`.
pub(crate) async fn document(s: &Server) -> Value {
    let resp = s.http.get(format!("{}/openapi.json", s.base)).send().await.unwrap();
    resp.json().await.unwrap()
}

/// Reads events until one satisfies `stop` or the stream ends; each is checked.
async fn events(
    c: &Conformance,
    resp: &mut reqwest::Response,
    buf: &mut String,
    stop: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            if frame.trim().is_empty() || frame.starts_with(':') {
                continue;
            }
            let chunk = c.check_event(&frame);
            let done = stop(&chunk);
            out.push(chunk);
            if done {
                return out;
            }
        }
        match resp.chunk().await.unwrap() {
            Some(b) => buf.push_str(std::str::from_utf8(&b).unwrap()),
            None => return out,
        }
    }
}

/// The (method, path) pairs the router serves, read from its source.
fn router_routes() -> BTreeSet<(String, String)> {
    let source = include_str!("../../src/lib.rs");
    let mut routes = BTreeSet::new();
    for line in source.lines().filter(|l| l.trim_start().starts_with(".route(\"")) {
        let path = line.split('"').nth(1).unwrap();
        let handlers = &line[line.find(',').unwrap()..];
        for method in ["get", "post", "put", "patch", "delete"] {
            if handlers.contains(&format!("{method}(")) {
                routes.insert((method.to_owned(), path.to_owned()));
            }
        }
    }
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_the_api_as_it_behaves() {
    let mut cfg = config();
    cfg.add_env_keys("key-limited=limited").unwrap();
    cfg.add_env_admin_keys("key-admin");
    for t in cfg.tenants.iter_mut().filter(|t| t.name == "limited") {
        t.rate_limit = Some(aether_server::RateLimit {
            soft_rps: 0.001,
            hard_rps: 0.001,
            burst: 1.0,
        });
    }
    cfg.limits.max_body_bytes = 64 * 1024;
    cfg.validate().unwrap();
    let s = Server::start(cfg, builder(instant()).build().unwrap()).await;
    let doc = document(&s).await;

    // The document and the router name the same operations; every path parameter is declared.
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| (m.clone(), path.clone())))
        .collect();
    assert_eq!(documented, router_routes(), "documented operations = routed operations");
    for (method, path) in &documented {
        let op = &doc["paths"][path][method];
        assert!(op["operationId"].is_string(), "{method} {path}: operationId");
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(p["required"], true, "{method} {path}");
                p["name"].as_str().unwrap()
            })
            .collect();
        let in_path: BTreeSet<&str> = path
            .split('{')
            .skip(1)
            .map(|rest| rest.split('}').next().unwrap())
            .collect();
        assert_eq!(declared, in_path, "{method} {path}: path parameters declared");
    }

    let mut c = Conformance::new(doc);
    let send = |method: Method, path: &str, key: Option<&str>, body: Option<Value>| {
        let mut r = s.req(method, path, key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send()
    };
    let acme = Some("key-acme");
    let (g, p, d) = (Method::GET, Method::POST, Method::DELETE);

    // Agents: 201, 200 (reused), 400, 401, 413, 429; show 200/404; list; delete 204/404.
    let (_, created) = c
        .call(
            &s,
            &p,
            "/v1/agents",
            "/v1/agents",
            acme,
            Some(agent_body(&["aml_checker"])),
        )
        .await;
    let agent = created["agent_id"].as_str().unwrap().to_owned();
    c.call(
        &s,
        &p,
        "/v1/agents",
        "/v1/agents",
        acme,
        Some(agent_body(&["aml_checker"])),
    )
    .await;
    c.call(
        &s,
        &p,
        "/v1/agents",
        "/v1/agents",
        acme,
        Some(json!({"model_config": 7})),
    )
    .await;
    c.call(&s, &p, "/v1/agents", "/v1/agents", None, Some(agent_body(&[])))
        .await;
    let huge = json!({"system_prompt": "x".repeat(100_000), "model_config": {"model": "m"}});
    c.call(&s, &p, "/v1/agents", "/v1/agents", acme, Some(huge)).await;
    for _ in 0..2 {
        c.call(&s, &g, "/v1/agents", "/v1/agents", Some("key-limited"), None)
            .await;
    }
    c.call(&s, &g, "/v1/agents", "/v1/agents", acme, None).await;
    c.call(&s, &g, "/v1/agents/{id}", &format!("/v1/agents/{agent}"), acme, None)
        .await;
    c.call(&s, &g, "/v1/agents/{id}", "/v1/agents/nope", acme, None).await;
    let (_, other) = c
        .call(
            &s,
            &p,
            "/v1/agents",
            "/v1/agents",
            acme,
            Some(agent_body(&["crm_lookup"])),
        )
        .await;
    let other = other["agent_id"].as_str().unwrap().to_owned();

    // Turns: 200, 400 as a TaskResult and as an Error, 404.
    c.call(&s, &p, "/v1/tasks", "/v1/tasks", acme, Some(turn(&other, "s1", "t1")))
        .await;
    let no_messages = json!({"task_id": "t2", "agent_id": other, "session_id": "s1", "messages": []});
    c.call(&s, &p, "/v1/tasks", "/v1/tasks", acme, Some(no_messages)).await;
    c.call(&s, &p, "/v1/tasks", "/v1/tasks", acme, Some(json!({"task_id": 5})))
        .await;
    c.call(
        &s,
        &p,
        "/v1/tasks",
        "/v1/tasks",
        acme,
        Some(turn("agent-nope", "s1", "t3")),
    )
    .await;

    // A live turn with an approval: every event checked; pending, 409 for a duplicate, 404 for
    // an unknown interaction, 202 for the answer; 404 for unknown turns.
    let mut live = send(p.clone(), "/v1/tasks/stream", acme, Some(turn(&agent, "s2", "live-1")))
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert!(live.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut buf = String::new();
    let asked = events(&c, &mut live, &mut buf, |e| e["chunk_type"] == "tool_approval_request").await;
    let interaction = asked.last().unwrap()["interaction_id"].as_str().unwrap().to_owned();
    c.call(
        &s,
        &g,
        "/v1/live/{task_id}/pending",
        "/v1/live/live-1/pending",
        acme,
        None,
    )
    .await;
    c.call(
        &s,
        &p,
        "/v1/tasks/stream",
        "/v1/tasks/stream",
        acme,
        Some(turn(&agent, "s3", "live-1")),
    )
    .await;
    c.call(
        &s,
        &p,
        "/v1/tasks/stream",
        "/v1/tasks/stream",
        acme,
        Some(turn("agent-nope", "s3", "live-2")),
    )
    .await;
    let approvals = "/v1/live/{task_id}/approvals/{interaction_id}";
    c.call(
        &s,
        &p,
        approvals,
        "/v1/live/live-1/approvals/wrong",
        acme,
        Some(json!({"approved": true})),
    )
    .await;
    c.call(
        &s,
        &p,
        approvals,
        &format!("/v1/live/live-1/approvals/{interaction}"),
        acme,
        Some(json!({"approved": "yes"})),
    )
    .await;
    c.call(
        &s,
        &p,
        approvals,
        &format!("/v1/live/live-1/approvals/{interaction}"),
        acme,
        Some(json!({"approved": true})),
    )
    .await;
    let rest = events(&c, &mut live, &mut buf, |_| false).await;
    assert!(
        rest.iter().any(|e| e["is_final"] == true),
        "the stream ends with its final chunk"
    );
    c.call(
        &s,
        &p,
        "/v1/live/{task_id}/messages",
        "/v1/live/live-1/messages",
        acme,
        Some(json!({"role": "user", "content": "more"})),
    )
    .await;
    c.call(&s, &p, "/v1/live/{task_id}/cancel", "/v1/live/nope/cancel", acme, None)
        .await;
    let mut open = send(
        p.clone(),
        "/v1/tasks/stream?keep_open=true",
        acme,
        Some(turn(&other, "s4", "live-3")),
    )
    .await
    .unwrap();
    let mut buf = String::new();
    events(&c, &mut open, &mut buf, |e| e["is_final"] == true).await;
    c.call(
        &s,
        &p,
        "/v1/live/{task_id}/messages",
        "/v1/live/live-3/messages",
        acme,
        Some(json!({"role": "user", "content": "more"})),
    )
    .await;
    c.call(
        &s,
        &p,
        "/v1/live/{task_id}/cancel",
        "/v1/live/live-3/cancel",
        acme,
        None,
    )
    .await;
    // The follow-up turn ends (answered or cancelled); the session stays open until we leave.
    events(&c, &mut open, &mut buf, |e| e["is_final"] == true).await;
    drop(open);
    c.call(
        &s,
        &p,
        "/v1/tasks/stream",
        "/v1/tasks/stream?keep_open=maybe",
        acme,
        Some(turn(&other, "s5", "live-4")),
    )
    .await;

    // Sessions: list (and its bad parameters), show, events, archive, delete.
    c.call(&s, &g, "/v1/sessions", "/v1/sessions?limit=2", acme, None).await;
    for bad in [
        "/v1/sessions?state=gone",
        "/v1/sessions?limit=0",
        "/v1/sessions?limit=x",
        "/v1/sessions?colour=red",
    ] {
        let (_, e) = c.call(&s, &g, "/v1/sessions", bad, acme, None).await;
        assert!(e["error"]["field"].is_string(), "{bad}: the field is named: {e}");
    }
    c.call(&s, &g, "/v1/sessions/{id}", "/v1/sessions/s1", acme, None).await;
    c.call(&s, &g, "/v1/sessions/{id}", "/v1/sessions/nope", acme, None)
        .await;
    c.call(
        &s,
        &g,
        "/v1/sessions/{id}/events",
        "/v1/sessions/s1/events?limit=1",
        acme,
        None,
    )
    .await;
    c.call(
        &s,
        &g,
        "/v1/sessions/{id}/events",
        "/v1/sessions/s1/events?after_seq=-1",
        acme,
        None,
    )
    .await;
    c.call(
        &s,
        &g,
        "/v1/sessions/{id}/events",
        "/v1/sessions/nope/events",
        acme,
        None,
    )
    .await;
    c.call(
        &s,
        &p,
        "/v1/sessions/{id}/archive",
        "/v1/sessions/s1/archive",
        acme,
        None,
    )
    .await;
    c.call(
        &s,
        &p,
        "/v1/sessions/{id}/archive",
        "/v1/sessions/nope/archive",
        acme,
        None,
    )
    .await;
    c.call(&s, &d, "/v1/sessions/{id}", "/v1/sessions/s1", acme, None).await;
    c.call(&s, &d, "/v1/sessions/{id}", "/v1/sessions/s1", acme, None).await;
    c.call(&s, &d, "/v1/agents/{id}", &format!("/v1/agents/{other}"), acme, None)
        .await;
    c.call(&s, &d, "/v1/agents/{id}", &format!("/v1/agents/{other}"), acme, None)
        .await;

    // Operators' routes and the unauthenticated ones.
    c.call(&s, &g, "/v1/admin/stats", "/v1/admin/stats", Some("key-admin"), None)
        .await;
    c.call(&s, &g, "/v1/admin/stats", "/v1/admin/stats", acme, None).await;
    c.call(
        &s,
        &g,
        "/debug/pprof/profile",
        "/debug/pprof/profile?seconds=0",
        Some("key-admin"),
        None,
    )
    .await;
    c.call(
        &s,
        &g,
        "/debug/pprof/profile",
        "/debug/pprof/profile?seconds=1",
        acme,
        None,
    )
    .await;
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        c.call(&s, &g, path, path, None, None).await;
    }

    let statuses = |m: &str, t: &str| -> BTreeSet<u16> {
        c.seen
            .iter()
            .filter(|(sm, st, _)| sm == m && st == t)
            .map(|(_, _, s)| *s)
            .collect()
    };
    assert_eq!(
        statuses("POST", "/v1/agents"),
        BTreeSet::from([200, 201, 400, 401, 413])
    );
    assert_eq!(statuses("GET", "/v1/agents"), BTreeSet::from([200, 429]));
    assert_eq!(statuses("POST", "/v1/tasks"), BTreeSet::from([200, 400, 404]));
    assert_eq!(statuses("POST", "/v1/tasks/stream"), BTreeSet::from([400, 404, 409]));
    assert_eq!(statuses("POST", approvals), BTreeSet::from([202, 400, 404]));
    assert_eq!(statuses("DELETE", "/v1/sessions/{id}"), BTreeSet::from([204, 404]));
    assert_eq!(statuses("DELETE", "/v1/agents/{id}"), BTreeSet::from([204, 404]));
    assert_eq!(statuses("GET", "/v1/admin/stats"), BTreeSet::from([200, 403]));
    let operations: BTreeSet<(String, String)> = c.seen.iter().map(|(m, t, _)| (m.to_lowercase(), t.clone())).collect();
    assert_eq!(operations, documented, "every operation was called");
    s.shutdown().await;
}
