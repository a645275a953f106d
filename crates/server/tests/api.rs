//! The HTTP API over real HTTP on loopback: every route, tenancy, auth, limits, SSE, approvals,
//! cancel on disconnect, timeouts and graceful shutdown.

mod common;
#[path = "api/fuzz.rs"]
mod fuzz;
#[path = "api/openapi.rs"]
mod openapi;

use aether_server::RateLimit;
use common::{agent_body, config, instant, read_sse, runtime, slow, turn, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_within_a_tenant_and_none_across() {
    let s = Server::start(config(), runtime(instant())).await;
    let (acme, globex) = ("key-acme", "key-globex");

    // Agents.
    let (st, created) = s.post("/v1/agents", acme, agent_body(&["crm_lookup"])).await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let agent = created["agent_id"].as_str().unwrap().to_owned();
    let (st, again) = s.post("/v1/agents", acme, agent_body(&["crm_lookup"])).await;
    assert_eq!(
        (st, again["reused"].as_bool()),
        (StatusCode::OK, Some(true)),
        "equal config reused"
    );
    let (_, list) = s.get("/v1/agents", acme).await;
    assert_eq!(list["agents"].as_array().unwrap().len(), 1);
    let (_, list) = s.get("/v1/agents", globex).await;
    assert!(
        list["agents"].as_array().unwrap().is_empty(),
        "globex sees none of acme's agents"
    );
    let (st, shown) = s.get(&format!("/v1/agents/{agent}"), acme).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(shown["tools"][0], "demo.crm_lookup");
    assert_eq!(
        s.get(&format!("/v1/agents/{agent}"), globex).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(s.get("/v1/agents/agent-nope", acme).await.0, StatusCode::NOT_FOUND);

    // Turns.
    let (st, r) = s.post("/v1/tasks", acme, turn(&agent, "s1", "t1")).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "success");
    assert_eq!(r["session_id"], "s1", "the tenant sees its own id");
    let (st, r) = s.post("/v1/tasks", globex, turn(&agent, "s1", "t2")).await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "another tenant's agent does not exist for globex: {r}"
    );

    // The same session id in another tenant is another session.
    let (_, g_agent) = s.post("/v1/agents", globex, agent_body(&[])).await;
    let g_agent = g_agent["agent_id"].as_str().unwrap().to_owned();
    assert_ne!(g_agent, agent, "equal configs in two tenants are two agents");
    let (st, _) = s.post("/v1/tasks", globex, turn(&g_agent, "s1", "t3")).await;
    assert_eq!(st, StatusCode::OK);

    // Sessions.
    let (_, page) = s.get("/v1/sessions", acme).await;
    let ids: Vec<&str> = page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["s1"]);
    let (_, e) = s.get("/v1/sessions/s1/events", acme).await;
    assert_eq!(
        e["events"].as_array().unwrap().len(),
        4,
        "acme's s1: user, tool call, tool result, answer"
    );
    let (_, e) = s.get("/v1/sessions/s1/events?limit=1", globex).await;
    assert_eq!(e["events"].as_array().unwrap().len(), 1);
    assert_eq!(e["next_after_seq"], 0);
    let (_, e) = s.get("/v1/sessions/s1/events?after_seq=0", globex).await;
    assert_eq!(
        e["events"].as_array().unwrap().len(),
        1,
        "globex's s1 (no tools): user turn and answer"
    );
    assert_eq!(s.get("/v1/sessions/nope", acme).await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/v1/sessions?limit=0", acme).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(s.delete("/v1/sessions/s1", acme).await, StatusCode::NO_CONTENT);
    assert_eq!(s.get("/v1/sessions/s1", acme).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        s.get("/v1/sessions/s1", globex).await.0,
        StatusCode::OK,
        "globex's s1 untouched"
    );
    assert_eq!(s.delete("/v1/sessions/s1", acme).await, StatusCode::NOT_FOUND);

    // Agents go.
    assert_eq!(
        s.delete(&format!("/v1/agents/{agent}"), globex).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.delete(&format!("/v1/agents/{agent}"), acme).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.get(&format!("/v1/agents/{agent}"), acme).await.0,
        StatusCode::NOT_FOUND
    );

    // Bad input: the field is named.
    let (st, e) = s
        .post(
            "/v1/tasks",
            acme,
            json!({"task_id": "x", "messages": [{"role": "robot", "content": "hi"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"]["field"], "messages[0].role", "{e}");
    let resp = s
        .req(reqwest::Method::POST, "/v1/tasks", Some(acme))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // Keys.
    let resp = s.req(reqwest::Method::GET, "/v1/agents", None).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    assert_eq!(s.get("/v1/agents", "wrong-key").await.0, StatusCode::UNAUTHORIZED);
    // A body refused before it was read closes the connection, and says so; one that was read
    // keeps it.
    let post = |key: &'static str| {
        s.req(reqwest::Method::POST, "/v1/agents", Some(key))
            .json(&agent_body(&[]))
            .send()
    };
    let refused = post("wrong-key").await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers()["connection"], "close");
    let served = post(acme).await.unwrap();
    assert!(served.status().is_success());
    assert!(served.headers().get("connection").is_none(), "{:?}", served.headers());

    // Operations.
    assert_eq!(s.get("/healthz", "").await.1["status"], "ok");
    assert_eq!(s.get("/readyz", "").await.1["status"], "ready");
    let (_, doc) = s.get("/openapi.json", "").await;
    assert!(doc["paths"]["/v1/tasks/stream"]["post"].is_object());
    let body = &doc["paths"]["/v1/tasks"]["post"]["requestBody"]["content"]["application/json"];
    assert_eq!(body["schema"]["$ref"], "#/components/schemas/TaskRequest");
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert!(
        schemas["TaskRequest"]["properties"]["task_id"].is_object(),
        "schemas derived from the types"
    );
    assert!(schemas["UniversalMessage"]["properties"]["role"].is_object());
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &r[..r.find('"').unwrap()];
        assert!(schemas.contains_key(name), "dangling $ref to {name}");
    }
    assert_eq!(
        doc["paths"]["/v1/tasks"]["post"]["requestBody"]["content"]["application/json"]["example"]["task_id"],
        "task-1"
    );
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(r#"aether_http_requests_total{route="/v1/tasks",method="POST",status="200"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("aether_http_request_duration_seconds_bucket"),
        "a histogram"
    );
    assert!(metrics.contains("aether_runtime_turns_total"), "{metrics}");
    assert!(!metrics.contains(&agent), "no agent id as a label");
    assert!(!metrics.contains("s1"), "no session id as a label");
    assert_eq!(s.shutdown().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_bodies_rate_limits_full_queues_and_timeouts() {
    let mut cfg = config();
    cfg.limits.max_body_bytes = 4096;
    cfg.limits.max_in_flight = 1;
    cfg.limits.admission_queue = 0;
    cfg.limits.request_timeout_s = 0.4;
    cfg.tenants.push(aether_server::TenantConfig {
        name: "tiny".into(),
        api_key_sha256: vec![aether_server::config::key_hash("key-tiny")],
        rate_limit: Some(RateLimit {
            soft_rps: 0.001,
            hard_rps: 0.002,
            burst: 4.0,
        }),
    });
    let s = Server::start(cfg, runtime(slow(300))).await;
    let (_, a) = s.post("/v1/agents", "key-acme", agent_body(&[])).await;
    let agent = a["agent_id"].as_str().unwrap().to_owned();

    // 413.
    let big = json!({"task_id": "big", "agent_id": agent, "session_id": "b",
                     "messages": [{"role": "user", "content": "x".repeat(10_000)}]});
    let (st, e) = s.post("/v1/tasks", "key-acme", big).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{e}");

    // A burst of 4 at most (2 under the soft limit), then 429 with Retry-After.
    let mut seen = Vec::new();
    for _ in 0..5 {
        let r = s
            .req(reqwest::Method::GET, "/v1/agents", Some("key-tiny"))
            .send()
            .await
            .unwrap();
        let soft = r.headers().get("x-ratelimit-soft").is_some();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        seen.push((r.status().as_u16(), soft, retry.is_some_and(|s| s >= 1)));
    }
    assert_eq!(
        seen,
        [
            (200, false, false),
            (200, false, false),
            (200, true, false),
            (200, true, false),
            (429, false, true)
        ]
    );
    assert_eq!(
        s.get("/v1/agents", "key-acme").await.0,
        StatusCode::OK,
        "limits are per tenant"
    );

    // One slot, no queue: a second turn while the first runs gets 503.
    let first = {
        let http = s.http.clone();
        let url = format!("{}/v1/tasks", s.base);
        let body = turn(&agent, "q1", "q1");
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth("key-acme")
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    while s.gauge("aether_turns_in_flight").await < 1.0 {
        tokio::task::yield_now().await;
    }
    let resp = s
        .req(reqwest::Method::POST, "/v1/tasks", Some("key-acme"))
        .json(&turn(&agent, "q2", "q2"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(first.await.unwrap(), StatusCode::OK);

    // 504 with a TaskResult body: the agent's tools make it two model calls (600 ms > 400 ms).
    let (_, slow_agent) = s.post("/v1/agents", "key-acme", agent_body(&["crm_lookup"])).await;
    let slow_agent = slow_agent["agent_id"].as_str().unwrap().to_owned();
    let (st, r) = s
        .post("/v1/tasks", "key-acme", turn(&slow_agent, "slow", "slow-task"))
        .await;
    assert_eq!(st, StatusCode::GATEWAY_TIMEOUT, "{r}");
    assert_eq!(r["task_id"], "slow-task");
    assert_eq!(r["status"], "timeout");
    assert_eq!(r["error"]["code"], "framework.execution");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_turns_stream_in_order_take_approvals_and_cancel_on_disconnect() {
    let s = Server::start(config(), runtime(instant())).await;
    let (_, a) = s.post("/v1/agents", "key-acme", agent_body(&["crm_lookup"])).await;
    let agent = a["agent_id"].as_str().unwrap().to_owned();

    // A whole turn: ordered sequence ids, ends with the final chunk, then the stream closes.
    let mut resp = s.stream(turn(&agent, "live-1", "live-1")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let chunks = read_sse(&mut resp, |_| false).await;
    let seqs: Vec<u64> = chunks.iter().map(|c| c["sequence_id"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "gap-free order: {seqs:?}");
    assert!(chunks.last().unwrap()["is_final"].as_bool().unwrap());
    assert!(chunks.iter().any(|c| c["chunk_type"] == "tool_result"));
    assert_eq!(
        s.get("/v1/sessions/live-1/events", "key-acme").await.1["events"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    // Approvals through the API: the turn waits until the answer arrives.
    let (_, risky) = s.post("/v1/agents", "key-acme", agent_body(&["aml_checker"])).await;
    let risky = risky["agent_id"].as_str().unwrap().to_owned();
    let mut resp = s.stream(turn(&risky, "live-2", "live-2")).await;
    let asked = read_sse(&mut resp, |c| c["chunk_type"] == "tool_approval_request").await;
    let interaction = asked.last().unwrap()["interaction_id"].as_str().unwrap().to_owned();
    let (_, pending) = s.get("/v1/live/live-2/pending", "key-acme").await;
    assert_eq!(pending["pending"][0]["interaction_id"], interaction.as_str());
    assert_eq!(
        s.get("/v1/live/live-2/pending", "key-globex").await.0,
        StatusCode::NOT_FOUND,
        "not globex's"
    );
    let (st, _) = s
        .post(
            "/v1/live/live-2/approvals/wrong-id",
            "key-acme",
            json!({"approved": true}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, e) = s
        .post(
            &format!("/v1/live/live-2/approvals/{interaction}"),
            "key-acme",
            json!({"approved": "yes"}),
        )
        .await;
    assert_eq!(
        (st, e["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("approved"))
    );
    let (st, _) = s
        .post(
            &format!("/v1/live/live-2/approvals/{interaction}"),
            "key-acme",
            json!({"approved": true}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let rest = read_sse(&mut resp, |_| false).await;
    let result = rest.iter().find(|c| c["chunk_type"] == "tool_result").unwrap();
    assert_eq!(result["content"]["status"], "success", "{result}");

    // Disconnect mid-turn: the turn is cancelled, leaves the registry, and writes nothing.
    let mut resp = s.stream(turn(&risky, "live-3", "live-3")).await;
    read_sse(&mut resp, |c| c["chunk_type"] == "tool_approval_request").await;
    assert_eq!(s.gauge("aether_live_turns").await, 1.0);
    drop(resp);
    while s.gauge("aether_live_turns").await > 0.0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        s.get("/v1/live/live-3/pending", "key-acme").await.0,
        StatusCode::NOT_FOUND
    );
    let (_, events) = s.get("/v1/sessions/live-3/events", "key-acme").await;
    assert!(
        events["events"].as_array().is_none_or(|e| e.is_empty()),
        "a cancelled turn writes nothing: {events}"
    );

    // Cancel through the API.
    let mut resp = s.stream(turn(&risky, "live-4", "live-4")).await;
    read_sse(&mut resp, |c| c["chunk_type"] == "tool_approval_request").await;
    let (st, _) = s
        .call(reqwest::Method::POST, "/v1/live/live-4/cancel", "key-acme", None)
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let rest = read_sse(&mut resp, |_| false).await;
    assert!(rest.iter().any(|c| c["chunk_type"] == "cancelled"), "{rest:?}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_accepted_turns() {
    let s = Server::start(config(), runtime(slow(200))).await;
    let (_, a) = s.post("/v1/agents", "key-acme", agent_body(&[])).await;
    let agent = a["agent_id"].as_str().unwrap().to_owned();
    let turns: Vec<_> = (0..8)
        .map(|i| {
            let http = s.http.clone();
            let url = format!("{}/v1/tasks", s.base);
            let body = turn(&agent, &format!("g{i}"), &format!("g{i}"));
            tokio::spawn(async move {
                let r = http.post(url).bearer_auth("key-acme").json(&body).send().await.unwrap();
                (r.status(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    while s.gauge("aether_turns_in_flight").await < 8.0 {
        tokio::task::yield_now().await;
    }
    let base = s.base.clone();
    assert_eq!(s.shutdown().await, 0, "nothing left at the deadline");
    for t in turns {
        let (st, r) = t.await.unwrap();
        assert_eq!(st, StatusCode::OK);
        assert_eq!(r["status"], "success", "{r}");
    }
    assert!(
        reqwest::get(format!("{base}/healthz")).await.is_err(),
        "no longer accepting"
    );
}

/// The stats route reads the whole server, all tenants, and only with an admin key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_stats_need_an_admin_key_and_see_every_tenant() {
    let mut cfg = config();
    cfg.add_env_admin_keys("ops-key, ");
    let s = Server::start(cfg, runtime(instant())).await;
    for (key, tenant) in [("key-acme", "a"), ("key-globex", "g")] {
        let (_, created) = s.post("/v1/agents", key, agent_body(&[])).await;
        let agent = created["agent_id"].as_str().unwrap().to_owned();
        let (st, _) = s
            .post("/v1/tasks", key, turn(&agent, tenant, &format!("t-{tenant}")))
            .await;
        assert_eq!(st, StatusCode::OK);
    }
    let (st, stats) = s.get("/v1/admin/stats", "ops-key").await;
    assert_eq!(st, StatusCode::OK, "{stats}");
    assert_eq!(stats["runtime"]["turns"], 2, "both tenants' turns: {stats}");
    assert_eq!(stats["tenants"], json!(["acme", "globex"]));
    assert!(stats["process"]["rss_bytes"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["process"]["cpu_seconds"].as_f64().unwrap() > 0.0, "{stats}");
    assert_eq!(stats["admission"]["in_flight"], 0);
    assert_eq!(stats["live_turns"]["total"], 0);

    let (st, body) = s.get("/v1/admin/stats", "key-acme").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a tenant's key: {body}");
    assert_eq!(body["error"]["code"], "auth.admin_required", "{body}");
    assert_eq!(s.get("/v1/admin/stats", "nope").await.0, StatusCode::UNAUTHORIZED);
    let r = s
        .req(reqwest::Method::GET, "/v1/admin/stats", None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // An admin key is not a tenant key.
    assert_eq!(s.get("/v1/agents", "ops-key").await.0, StatusCode::UNAUTHORIZED);

    // A CPU profile of the server: admin only, bounded, one at a time.
    let (st, _) = s.get("/debug/pprof/profile?seconds=1", "key-acme").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, body) = s.get("/debug/pprof/profile?seconds=61", "ops-key").await;
    assert_eq!(
        (st, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("seconds")),
        "{body}"
    );
    let (st, body) = s.get("/debug/pprof/profile?seconds=1&format=png", "ops-key").await;
    assert_eq!(
        (st, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("format")),
        "{body}"
    );
    // The profiler is process-wide: while one runs (here, held by the test), the route says 409.
    let held = aether_server::profiling::Profiling::start().unwrap();
    let (st, busy) = s.get("/debug/pprof/profile?seconds=1", "ops-key").await;
    assert_eq!(
        (st, busy["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("profile.busy")),
        "{busy}"
    );
    drop(held);
    let svg = s
        .req(
            reqwest::Method::GET,
            "/debug/pprof/profile?seconds=1&format=flamegraph",
            Some("ops-key"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(svg.status(), StatusCode::OK);
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(svg.text().await.unwrap().contains("<svg"));
    let pb = s
        .req(reqwest::Method::GET, "/debug/pprof/profile?seconds=1", Some("ops-key"))
        .send()
        .await
        .unwrap();
    assert_eq!(pb.headers()["content-type"], "application/octet-stream");
    assert!(!pb.bytes().await.unwrap().is_empty(), "a pprof protobuf");
    let (_, doc) = s.get("/openapi.json", "key-acme").await;
    assert!(doc["paths"]["/debug/pprof/profile"]["get"].is_object(), "documented");
    s.shutdown().await;

    // A bad hash in [admin] is named.
    let mut bad = config();
    bad.admin.api_key_sha256.push("abc".into());
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("admin.api_key_sha256[0]"), "{e}");
}

mod turn_path {
    //! One path for a turn, seen over real HTTP: a live turn keeps `execution_config.timeout` like a
    //! sync turn, a panic ends a live turn with an `error` chunk instead of a dropped stream, and an
    //! agent's framework is its own for every turn.

    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    use crate::common::{agent_body, builder, config, instant, read_sse, slow, Server};
    use aether_contracts::{Metadata, TaskResult, UniversalTool};
    use aether_runtime::engine::{FrameworkAdapter, TurnObserver, ValidRequest};
    use aether_runtime::model::{ModelError, ModelProvider, ModelRequest, ModelResponse, ProviderInfo};
    use aether_runtime::tools::{FnTool, RegisteredTool, ToolContext};
    use aether_runtime::EngineError;
    use async_trait::async_trait;
    use reqwest::StatusCode;
    use serde_json::{json, Value};

    async fn create(s: &Server, body: Value) -> String {
        let (status, a) = s.post("/v1/agents", "key-acme", body).await;
        assert!(status.is_success(), "{status} {a}");
        a["agent_id"].as_str().unwrap().to_owned()
    }

    fn turn_with(agent: &str, session: &str, task: &str, extra: Value) -> Value {
        let mut body = json!({"task_id": task, "agent_id": agent, "session_id": session,
                              "messages": [{"role": "user", "content": "hello"}]});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        body
    }

    /// Opens `/v1/tasks/stream?keep_open=true`: the live session stays for follow-up messages.
    async fn open_live(s: &Server, body: Value) -> reqwest::Response {
        let r = s
            .req(
                reqwest::Method::POST,
                "/v1/tasks/stream?keep_open=true",
                Some("key-acme"),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r
    }

    async fn follow_up(s: &Server, task: &str, text: &str) {
        let (status, v) = s
            .post(
                &format!("/v1/live/{task}/messages"),
                "key-acme",
                json!({"role": "user", "content": text}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    }

    async fn events(s: &Server, session: &str) -> usize {
        let (_, v) = s.get(&format!("/v1/sessions/{session}/events"), "key-acme").await;
        v["events"].as_array().map_or(0, Vec::len)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_turn_keeps_its_timeout_writes_nothing_and_the_session_takes_the_next_message() {
        // The model takes 3 s; the request allows 0.2 s.
        let s = Server::start(config(), builder(slow(3000)).build().unwrap()).await;
        let agent = create(&s, agent_body(&[])).await;
        let timeout = json!({"execution_config": {"timeout": 0.2}});

        let t = Instant::now();
        let (status, sync) = s
            .post(
                "/v1/tasks",
                "key-acme",
                turn_with(&agent, "sync-1", "sync-1", timeout.clone()),
            )
            .await;
        let sync_elapsed = t.elapsed();
        assert_eq!(
            (status, sync["status"].as_str()),
            (StatusCode::GATEWAY_TIMEOUT, Some("timeout")),
            "{sync}"
        );

        let t = Instant::now();
        let mut resp = open_live(&s, turn_with(&agent, "live-1", "live-1", timeout)).await;
        let chunks = read_sse(&mut resp, |c| c["is_final"] == true).await;
        let live_elapsed = t.elapsed();
        eprintln!(
            "timeout 0.2 s against a 3 s model: sync answer in {sync_elapsed:?}, live error chunk in {live_elapsed:?}"
        );
        let last = chunks.last().unwrap();
        assert_eq!(last["chunk_type"], "error", "{chunks:?}");
        assert_eq!(
            last["content"], sync["error"],
            "the live error carries the sync payload"
        );
        assert_eq!(last["content"]["code"], "framework.execution");
        assert_eq!(last["content"]["details"]["timeout_s"], 0.2);
        assert!(
            live_elapsed.as_secs_f64() < 1.5,
            "the live turn ended after {live_elapsed:?}, not within its 0.2 s timeout"
        );
        assert_eq!(events(&s, "live-1").await, 0, "a timed-out turn writes nothing");

        // The session is still open: the next message runs (under the same timeout) and ends alike.
        follow_up(&s, "live-1", "again").await;
        let next = read_sse(&mut resp, |c| c["is_final"] == true).await;
        let last = next.last().unwrap();
        assert_eq!(last["chunk_type"], "error", "{next:?}");
        assert_eq!(last["content"]["details"]["timeout_s"], 0.2);
        assert!(
            last["sequence_id"].as_u64() > chunks.last().unwrap()["sequence_id"].as_u64(),
            "sequence ids go on across turns"
        );
        assert_eq!(events(&s, "live-1").await, 0);
        drop(resp);
        // /metrics counts the three timeouts by their code: the sync one and both live ones.
        let metrics = s.metrics().await;
        let line = metrics
            .lines()
            .find(|l| l.starts_with("aether_turn_errors_total{") && l.contains("code=\"framework.execution\""))
            .unwrap_or_else(|| panic!("no framework.execution count in\n{metrics}"));
        assert!(line.ends_with(" 3"), "{line}");
        s.shutdown().await;
    }

    /// A model provider with a bug: it panics.
    struct PanickingModel(ProviderInfo);

    #[async_trait]
    impl ModelProvider for PanickingModel {
        fn info(&self) -> &ProviderInfo {
            &self.0
        }

        async fn generate(&self, _request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
            panic!("provider bug")
        }
    }

    fn panicking_tool() -> RegisteredTool {
        let spec = UniversalTool::new("test.panics", "panics", json!({"type": "object"}));
        RegisteredTool::new_async(spec, FnTool(|_: Metadata, _: ToolContext| async { panic!("tool bug") })).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn panics_in_a_live_turn_end_in_chunks_not_a_dropped_stream() {
        let info = ProviderInfo {
            name: "panicky".into(),
            simulated: true,
        };
        let rt = builder(instant())
            .tool(panicking_tool())
            .provider("panicky", Arc::new(PanickingModel(info)))
            .build()
            .unwrap();
        let s = Server::start(config(), rt).await;

        // A panicking tool is the tool's failure: a `tool.error` chunk, and the turn completes.
        let agent = create(&s, agent_body(&["test.panics"])).await;
        let mut resp = open_live(&s, turn_with(&agent, "tool-1", "tool-1", json!({}))).await;
        let chunks = read_sse(&mut resp, |c| c["is_final"] == true).await;
        let failed = chunks.iter().find(|c| c["chunk_type"] == "tool_result").unwrap();
        assert_eq!(failed["chunk_kind"], "tool.error", "{failed}");
        assert!(failed["content"]["error_message"]
            .as_str()
            .unwrap()
            .contains("panicked"));
        assert_eq!(chunks.last().unwrap()["chunk_type"], "complete");
        drop(resp);

        // A panic in the turn itself (here the model provider): an `error` chunk with the payload a
        // sync request gets, nothing written, and the live session takes the next message.
        let mut body = agent_body(&[]);
        body["framework_config"] = json!({"provider": "panicky"});
        let agent = create(&s, body).await;
        let (status, sync) = s
            .post(
                "/v1/tasks",
                "key-acme",
                turn_with(&agent, "sync-p", "sync-p", json!({})),
            )
            .await;
        assert_eq!(sync["error"]["code"], "internal.error", "{sync}");
        assert_eq!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "a failed turn never answers 2xx"
        );
        let mut resp = open_live(&s, turn_with(&agent, "model-1", "model-1", json!({}))).await;
        let chunks = read_sse(&mut resp, |c| c["is_final"] == true).await;
        let last = chunks.last().unwrap();
        assert_eq!(last["chunk_type"], "error", "{chunks:?}");
        assert_eq!(last["content"]["code"], "internal.error");
        assert!(last["content"]["message"].as_str().unwrap().contains("provider bug"));
        follow_up(&s, "model-1", "again").await;
        let next = read_sse(&mut resp, |c| c["is_final"] == true).await;
        assert_eq!(next.last().unwrap()["chunk_type"], "error", "{next:?}");
        assert_eq!(events(&s, "model-1").await, 0);
        drop(resp);
        s.shutdown().await;
    }

    /// A second framework for the test: it delegates to the native one and marks what it ran.
    struct Probe {
        native: Arc<dyn FrameworkAdapter>,
        runs: Arc<AtomicU64>,
    }

    #[async_trait]
    impl FrameworkAdapter for Probe {
        fn name(&self) -> &str {
            "probe"
        }

        async fn execute_stream(
            &self,
            request: ValidRequest,
            observer: &mut dyn TurnObserver,
        ) -> Result<TaskResult, EngineError> {
            self.runs.fetch_add(1, Ordering::Relaxed);
            let mut r = self.native.execute_stream(request, observer).await?;
            r.metadata.insert("ran_on".into(), json!("probe"));
            Ok(r)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_agent_keeps_its_framework_for_every_turn() {
        let runs = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&runs);
        let rt = builder(instant())
            .framework("probe", move |native| {
                Ok(Arc::new(Probe {
                    native,
                    runs: Arc::clone(&counted),
                }) as Arc<dyn FrameworkAdapter>)
            })
            .build()
            .unwrap();
        let s = Server::start(config(), rt).await;
        let ran_on = |r: &Value| r["metadata"]["ran_on"].as_str().unwrap_or("native").to_owned();

        // Created on `probe` by its config: every turn runs there, with or without agent_id.
        let mut body = agent_body(&[]);
        body["framework_config"] = json!({"framework": "probe"});
        let agent = create(&s, body).await;
        assert_eq!(runs.load(Ordering::Relaxed), 1, "creation ran on probe");
        for (i, req) in [
            turn_with(&agent, "f-1", "t1", json!({})),
            json!({"task_id": "t2", "session_id": "f-1", "messages": [{"role": "user", "content": "and then?"}]}),
            turn_with(&agent, "f-1", "t3", json!({"metadata": {"framework": "probe"}})),
        ]
        .into_iter()
        .enumerate()
        {
            let (status, r) = s.post("/v1/tasks", "key-acme", req).await;
            assert_eq!((status, r["status"].as_str()), (StatusCode::OK, Some("success")), "{r}");
            assert_eq!(ran_on(&r), "probe", "turn {i}: {r}");
        }
        assert_eq!(runs.load(Ordering::Relaxed), 4);

        // A turn that asks for another framework is refused, naming the field.
        let (status, r) = s
            .post(
                "/v1/tasks",
                "key-acme",
                turn_with(&agent, "f-1", "t4", json!({"metadata": {"framework": "native"}})),
            )
            .await;
        assert_eq!(
            (status, r["status"].as_str()),
            (StatusCode::BAD_REQUEST, Some("error")),
            "{r}"
        );
        assert_eq!(r["error"]["code"], "request.validation", "{r}");
        assert_eq!(r["error"]["details"]["field"], "metadata.framework", "{r}");
        assert_eq!(runs.load(Ordering::Relaxed), 4, "the refused turn ran nowhere");

        // Created through the two-step protocol with metadata.framework: recorded on the agent.
        let (_, created) = s
            .post(
                "/v1/tasks",
                "key-acme",
                json!({"task_id": "c2", "agent_config": agent_body(&["crm_lookup"]), "metadata": {"framework": "probe"}}),
            )
            .await;
        let second = created["agent_id"].as_str().unwrap();
        let (_, r) = s
            .post("/v1/tasks", "key-acme", turn_with(second, "f-2", "t5", json!({})))
            .await;
        assert_eq!(ran_on(&r), "probe", "{r}");

        // An agent created with no framework runs on the default one; an unknown one is refused.
        let plain = create(&s, agent_body(&["crm_lookup"])).await;
        let (_, r) = s
            .post("/v1/tasks", "key-acme", turn_with(&plain, "f-3", "t6", json!({})))
            .await;
        assert_eq!(ran_on(&r), "native", "{r}");
        let mut body = agent_body(&[]);
        body["framework_config"] = json!({"framework": "langchain"});
        let (status, r) = s.post("/v1/agents", "key-acme", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{r}");
        assert!(r["error"]["message"].as_str().unwrap().contains("langchain"), "{r}");
        s.shutdown().await;
    }
}

mod dashboard {
    //! The Grafana dashboard (`deploy/grafana/aether-serve.json`) cannot rot: every metric and
    //! every label its panels query exists in the `/metrics` of a server that took load — turns
    //! with tools, a failed turn, MCP calls (server-everything, required under `CI`) — or that
    //! registers the series at zero.

    use std::collections::BTreeSet;
    use std::sync::Arc;

    use aether_mcp::{McpHub, McpServerConfig};
    use aether_server::Shared;

    use super::common::{agent_body, config, instant, read_sse, turn, Server};
    use super::*;

    const DASHBOARD: &str = include_str!("../../../deploy/grafana/aether-serve.json");

    /// server-everything over stdio, or `None` outside CI when it is not installed.
    fn everything() -> Option<McpServerConfig> {
        aether_mcp::testing::server_everything()
    }

    /// The PromQL of every panel.
    fn queries() -> Vec<String> {
        let d: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
        let panels = d["panels"].as_array().expect("panels");
        assert!(panels.len() >= 10, "{} panels", panels.len());
        panels
            .iter()
            .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
            .map(|t| t["expr"].as_str().expect("every target has an expr").to_owned())
            .collect()
    }

    /// The series names a query reads (`aether_*`, `gen_ai_*` and `process_*`).
    fn series(expr: &str) -> BTreeSet<String> {
        expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| {
                (w.starts_with("aether_") || w.starts_with("gen_ai_") || w.starts_with("process_"))
                    && !w.starts_with("gen_ai_token_type")
                    && !w.starts_with("gen_ai_provider_name")
                    && !w.starts_with("gen_ai_request_model")
                    && !w.starts_with("gen_ai_tool_name")
            })
            .map(str::to_owned)
            .collect()
    }

    /// The labels of its `by (...)` clauses.
    fn grouped_by(expr: &str) -> BTreeSet<String> {
        let mut labels = BTreeSet::new();
        let mut rest = expr;
        while let Some(i) = rest.find("by (") {
            let tail = &rest[i + 4..];
            let end = tail.find(')').expect("a closed by clause");
            labels.extend(tail[..end].split(',').map(|l| l.trim().to_owned()));
            rest = &tail[end..];
        }
        labels
    }

    /// The exposition lines of one series.
    fn lines<'a>(metrics: &'a str, name: &str) -> Vec<&'a str> {
        metrics
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_panel_query_reads_series_and_labels_that_exist() {
        // The store timed as `aether serve` times it (store latency panel).
        let (store, store_timings) = aether_server::store_timing::timed(Arc::new(aether_store::MemoryStore::new()));
        // A second provider whose every call fails (failures by error type).
        let failing = aether_runtime::model::SimulatedModel::new(aether_runtime::model::SimConfig {
            error_rate: 1.0,
            error_kinds: vec![aether_runtime::model::sim::SimErrorKind::ServerError],
            ..instant()
        });
        let rt = common::builder(instant())
            .store(store)
            .provider("failing", Arc::new(failing))
            .build()
            .unwrap();
        let mcp = everything();
        let hub = match &mcp {
            Some(c) => Some(McpHub::attach(Arc::clone(rt.tools()), vec![c.clone()]).await.unwrap()),
            None => None,
        };
        let shared = Shared {
            mcp: hub.as_ref().map(|h| h.clients().to_vec()).unwrap_or_default(),
            store_timings: Some(store_timings),
            ..Shared::default()
        };
        let s = Server::start_shared(config(), rt, shared).await;

        // Load: a turn with a tool (and an MCP tool when there is one), a failed turn.
        let mut tools = vec!["crm_lookup"];
        if mcp.is_some() {
            tools.push("everything.echo");
        }
        let (status, created) = s
            .post(
                "/v1/tasks",
                "key-acme",
                json!({
                    "task_id": "create", "agent_config": agent_body(&tools)
                }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let agent = created["agent_id"].as_str().unwrap().to_owned();
        let (status, r) = s.post("/v1/tasks", "key-acme", turn(&agent, "dash-1", "t1")).await;
        assert_eq!((status, r["status"].as_str()), (StatusCode::OK, Some("success")), "{r}");
        assert_eq!(r["metadata"]["agent_context"]["session_id"], "dash-1", "{r}");
        let mut bad = turn(&agent, "dash-2", "t2");
        bad["execution_config"] = json!({"timeout": 0});
        let (_, r) = s.post("/v1/tasks", "key-acme", bad).await;
        assert_eq!(r["error"]["code"], "request.validation", "{r}");

        // A turn whose model call fails.
        let mut failing = agent_body(&[]);
        failing["framework_config"] = json!({"provider": "failing"});
        let (_, created) = s
            .post(
                "/v1/tasks",
                "key-acme",
                json!({"task_id": "create-failing", "agent_config": failing}),
            )
            .await;
        let failing_agent = created["agent_id"].as_str().expect("the failing agent").to_owned();
        let (status, r) = s
            .post("/v1/tasks", "key-acme", turn(&failing_agent, "dash-4", "t4"))
            .await;
        assert_eq!(r["error"]["code"], "model.upstream", "{r}");
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{r}");

        // A live turn: its turn.complete chunk counts like a sync turn.
        let mut resp = s.stream(turn(&agent, "dash-3", "t3")).await;
        let chunks = read_sse(&mut resp, |c| c["is_final"] == true).await;
        let complete = chunks.last().unwrap();
        assert_eq!(complete["chunk_kind"], "turn.complete");
        assert_eq!(
            complete["content"]["metadata"]["agent_context"]["session_id"], "dash-3",
            "the tenant sees its own session id, not the server's scoped one"
        );
        drop(resp);

        let metrics = s.metrics().await;
        let mut checked = 0;
        for expr in queries() {
            let names = series(&expr);
            assert!(
                !names.is_empty(),
                "a panel query reads no aether or process series: {expr}"
            );
            for name in &names {
                if name.starts_with("aether_mcp_") && mcp.is_none() {
                    continue;
                }
                assert!(
                    !lines(&metrics, name).is_empty(),
                    "`{name}` (in `{expr}`) is not in /metrics:\n{metrics}"
                );
                checked += 1;
            }
            for label in grouped_by(&expr) {
                let found = names
                    .iter()
                    .any(|n| lines(&metrics, n).iter().any(|l| l.contains(&format!("{label}=\""))));
                assert!(
                    found || (mcp.is_none() && names.iter().all(|n| n.starts_with("aether_mcp_"))),
                    "label `{label}` of `{expr}` is on none of its series"
                );
            }
        }
        assert!(checked >= 20, "{checked} series checked");
        // The figures behind the panels moved with the load.
        // The GenAI series, from the runtime's one recording point.
        let count = |name: &str, has: &[&str]| -> Vec<u64> {
            lines(&metrics, name)
                .into_iter()
                .filter(|l| has.iter().all(|h| l.contains(h)))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
                .collect()
        };
        let ok_model = "gen_ai_request_model=\"gpt-4o-mini\"";
        let turns = count("gen_ai_invoke_agent_duration_seconds_count", &[ok_model, "simulated"]);
        assert_eq!(
            turns.iter().sum::<u64>(),
            3,
            "a sync, a live and a failed turn: {turns:?}"
        );
        assert_eq!(
            count(
                "gen_ai_invoke_agent_duration_seconds_count",
                &["error_type=\"model.upstream\""]
            ),
            vec![1],
            "the failed turn, by its error code"
        );
        assert_eq!(
            count(
                "gen_ai_client_operation_duration_seconds_count",
                &["error_type=\"server_error\""]
            ),
            vec![1],
            "the failed model call, by its kind"
        );
        let calls: u64 = count(
            "gen_ai_client_operation_duration_seconds_count",
            &["gen_ai_operation_name=\"chat\"", "gen_ai_provider_name=\"simulated\""],
        )
        .iter()
        .sum();
        assert!(calls >= 2, "a model call per sync and live turn at least: {calls}");
        let input: u64 = count("gen_ai_client_token_usage_count", &["gen_ai_token_type=\"input\""])
            .iter()
            .sum();
        assert_eq!(
            input,
            calls - 1,
            "input tokens recorded once per answered call (not the failed one)"
        );
        let tools: u64 = count("gen_ai_execute_tool_duration_seconds_count", &["crm_lookup"])
            .iter()
            .sum();
        assert!(tools >= 1, "the tool calls, by tool name:\n{metrics}");
        let first: u64 = count(
            "gen_ai_client_operation_time_to_first_chunk_seconds_count",
            &["simulated"],
        )
        .iter()
        .sum();
        assert!(first >= 1, "the live turn's streamed call");
        assert!(
            lines(&metrics, "aether_turn_duration_seconds").is_empty()
                && lines(&metrics, "aether_tokens_total").is_empty(),
            "no second turn histogram or token count beside the GenAI ones"
        );
        assert!(lines(&metrics, "aether_turn_errors_total")
            .iter()
            .any(|l| l.contains("code=\"request.validation\"") && l.ends_with(" 1")));
        // The turns wrote their events through the timed store.
        assert!(
            lines(&metrics, "aether_store_duration_seconds_count")
                .iter()
                .any(|l| l.contains("op=\"append_events\",outcome=\"ok\"") && !l.ends_with(" 0")),
            "store calls are timed"
        );
        if mcp.is_some() {
            assert!(
                lines(&metrics, "aether_mcp_calls_total")
                    .iter()
                    .any(|l| l.contains("server=\"everything\"") && !l.ends_with(" 0")),
                "the MCP tool was called"
            );
        }
        s.shutdown().await;
        if let Some(mut h) = hub {
            h.shutdown().await;
        }
    }
}
