//! Two `aether serve` instances on the real PostgreSQL (`AETHER_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`; skipped with a printed reason when there is none):
//! alternating turns of one session, an agent created on one used on the other, and live-turn
//! control (pending, approval, cancel) sent to the instance that does not run the turn; turns on
//! one session sent to both at once, which wait for the session's lease instead of failing.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use aether_runtime::approvals::ApprovalConfig;
use aether_runtime::model::SimConfig;
use aether_runtime::tools::demo::DemoToolConfig;
use aether_runtime::{Runtime, RuntimeConfig};
use aether_server::cluster::Cluster;
use aether_server::{AppState, ServerConfig, Shared};
use aether_store::{Durability, StoreConfig};
use common::read_sse;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

fn pg_url() -> String {
    std::env::var("AETHER_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

struct Instance {
    base: String,
    rt: Arc<Runtime>,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<std::io::Result<usize>>,
}

async fn instance() -> Option<Instance> {
    let instant = SimConfig {
        time_scale: 0.0,
        ..SimConfig::default()
    };
    instance_with(instant, RuntimeConfig::default().session_wait).await
}

/// An instance whose simulated model answers as `sim` says, whose turns wait at most
/// `session_wait` for their session.
async fn instance_with(sim: SimConfig, session_wait: std::time::Duration) -> Option<Instance> {
    let cluster = match Cluster::connect(&pg_url()).await {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "no PostgreSQL server at {}: {e} (CI is set: a test that needs this service fails instead of skipping)",
                pg_url()
            );
            eprintln!("SKIPPED: no PostgreSQL server at {}: {e}", pg_url());
            return None;
        }
    };
    let store = aether_store::open(&StoreConfig::Postgres {
        url: pg_url(),
        durability: Durability::Sync,
        max_connections: 8,
    })
    .await
    .unwrap();
    let mut approvals = HashMap::new();
    approvals.insert("aml_checker".to_owned(), true);
    let rt = Runtime::builder()
        .store(store)
        .config(RuntimeConfig {
            sweep_interval: None,
            shared_store: true,
            session_wait,
            approvals: ApprovalConfig {
                tools: approvals,
                ..ApprovalConfig::default()
            },
            ..RuntimeConfig::default()
        })
        .simulated_model(sim)
        .demo_tools(DemoToolConfig {
            time_scale: 0.0,
            ..DemoToolConfig::default()
        })
        .build()
        .unwrap();
    let mut cfg = ServerConfig::default();
    cfg.add_env_keys("key-acme=acme").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let rt = Arc::new(rt);
    let state = AppState::with(
        Arc::clone(&rt),
        &cfg,
        Shared {
            cluster: Some(cluster),
            ..Shared::default()
        },
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(aether_server::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Some(Instance { base, rt, stop, done })
}

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new().request(method, url).bearer_auth("key-acme");
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos:x}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_sessions_agents_and_live_control() {
    let (Some(a), Some(b)) = (instance().await, instance().await) else {
        return;
    };
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;

    // An agent created on A, used on B.
    let (st, created) = call(
        post.clone(),
        format!("{}/v1/agents", a.base),
        Some(json!({"agent_type": "support", "system_prompt": unique("Be brief"), "model_config": {"model": "gpt-4o-mini"}})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let agent = created["agent_id"].as_str().unwrap().to_owned();
    let (st, shown) = call(get.clone(), format!("{}/v1/agents/{agent}", b.base), None).await;
    assert_eq!(st, StatusCode::OK, "B adopts A's agent: {shown}");

    // Alternating turns of one session: A, B, A, B, A, B.
    let session = unique("alt");
    for i in 0..6 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let body = json!({"task_id": format!("t{i}"), "agent_id": agent, "session_id": session,
                          "messages": [{"role": "user", "content": format!("turn {i}")}]});
        let (st, r) = call(post.clone(), format!("{base}/v1/tasks"), Some(body)).await;
        assert_eq!(
            (st, r["status"].as_str()),
            (StatusCode::OK, Some("success")),
            "turn {i}: {r}"
        );
    }
    let (_, page) = call(
        get.clone(),
        format!("{}/v1/sessions/{session}/events?limit=100", a.base),
        None,
    )
    .await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 12, "every turn's question and answer: {page}");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64, "contiguous order");
        if i % 2 == 0 {
            assert_eq!(
                e["message"]["content"],
                format!("turn {}", i / 2),
                "questions in the order sent"
            );
        }
    }

    // A live turn on A, controlled through B.
    let (_, risky) = call(
        post.clone(),
        format!("{}/v1/agents", a.base),
        Some(
            json!({"agent_type": "kyc", "system_prompt": unique("Check"), "model_config": {"model": "gpt-4o-mini"},
                    "available_tools": ["aml_checker"]}),
        ),
    )
    .await;
    let risky = risky["agent_id"].as_str().unwrap().to_owned();
    let task = unique("live");
    let mut resp = reqwest::Client::new()
        .post(format!("{}/v1/tasks/stream", a.base))
        .bearer_auth("key-acme")
        .json(
            &json!({"task_id": task, "agent_id": risky, "session_id": unique("live-s"),
                      "messages": [{"role": "user", "content": "check the customer"}]}),
        )
        .send()
        .await
        .unwrap();
    let asked = read_sse(&mut resp, |c| c["chunk_type"] == "tool_approval_request").await;
    let interaction = asked.last().unwrap()["interaction_id"].as_str().unwrap().to_owned();
    let (st, pending) = call(get.clone(), format!("{}/v1/live/{task}/pending", b.base), None).await;
    assert_eq!(st, StatusCode::OK, "{pending}");
    assert_eq!(
        pending["pending"][0]["interaction_id"],
        interaction.as_str(),
        "B asked A"
    );
    let (st, e) = call(
        post.clone(),
        format!("{}/v1/live/{task}/approvals/wrong", b.base),
        Some(json!({"approved": true})),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "A's answer comes back through B: {e}");
    let (st, _) = call(
        post.clone(),
        format!("{}/v1/live/{task}/approvals/{interaction}", b.base),
        Some(json!({"approved": true})),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let rest = read_sse(&mut resp, |_| false).await;
    let result = rest.iter().find(|c| c["chunk_type"] == "tool_result").unwrap();
    assert_eq!(
        result["content"]["status"], "success",
        "the approval sent to B reached the turn on A"
    );
    assert_eq!(
        call(get.clone(), format!("{}/v1/live/nope/pending", b.base), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // Cancel through B.
    let task = unique("live-cancel");
    let mut resp = reqwest::Client::new()
        .post(format!("{}/v1/tasks/stream", a.base))
        .bearer_auth("key-acme")
        .json(
            &json!({"task_id": task, "agent_id": risky, "session_id": unique("live-c"),
                      "messages": [{"role": "user", "content": "check"}]}),
        )
        .send()
        .await
        .unwrap();
    read_sse(&mut resp, |c| c["chunk_type"] == "tool_approval_request").await;
    let (st, _) = call(post.clone(), format!("{}/v1/live/{task}/cancel", b.base), None).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let rest = read_sse(&mut resp, |_| false).await;
    assert!(rest.iter().any(|c| c["chunk_type"] == "cancelled"), "{rest:?}");

    // A live turn whose instance died (it stopped beating): control requests answer 404 at once
    // instead of waiting for an owner that will never reply, and the stale row is dropped.
    let ghost = unique("ghost");
    let pool = sqlx::PgPool::connect(&pg_url()).await.unwrap();
    sqlx::query("INSERT INTO aether_live_turns (task_key, instance) VALUES ($1, 'i-crashed')")
        .bind(format!("acme:{ghost}"))
        .execute(&pool)
        .await
        .unwrap();
    let (st, e) = call(get.clone(), format!("{}/v1/live/{ghost}/pending", b.base), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{e}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM aether_live_turns WHERE task_key = $1")
        .bind(format!("acme:{ghost}"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "the dead instance's row is gone");

    // Deleting on B removes the agent from A too.
    assert_eq!(
        call(reqwest::Method::DELETE, format!("{}/v1/agents/{agent}", b.base), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    while call(get.clone(), format!("{}/v1/agents/{agent}", a.base), None).await.0 != StatusCode::NOT_FOUND {
        tokio::task::yield_now().await;
    }

    for i in [a, b] {
        let _ = i.stop.send(());
        assert_eq!(i.done.await.unwrap().unwrap(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_shared_through_redis() {
    let url = std::env::var("AETHER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = match aether_server::limits::connect_redis(&url).await {
        Ok(r) => r,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{e} (CI is set: a test that needs this service fails instead of skipping)"
            );
            eprintln!("SKIPPED: {e}");
            return;
        }
    };
    // A fresh tenant name, so that buckets left by an earlier run do not count.
    let tenant = unique("t").replace('-', "_");
    let mut cfg = ServerConfig::default();
    cfg.add_env_keys(&format!("key-shared={tenant}")).unwrap();
    cfg.rate_limit = Some(aether_server::RateLimit {
        soft_rps: 0.001,
        hard_rps: 0.002,
        burst: 4.0,
    });
    let mut bases = Vec::new();
    let mut stops = Vec::new();
    for _ in 0..2 {
        let rt = Runtime::builder().build().unwrap();
        let state = AppState::with(
            Arc::new(rt),
            &cfg,
            Shared {
                redis: Some(redis.clone()),
                ..Shared::default()
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        bases.push(format!("http://{}", listener.local_addr().unwrap()));
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push((
            stop,
            tokio::spawn(aether_server::serve(listener, state, async move {
                let _ = stopped.await;
            })),
        ));
    }
    // Alternate between the instances: together they allow the one burst of 4, then 429.
    let http = reqwest::Client::new();
    let mut seen = Vec::new();
    for i in 0..5 {
        let r = http
            .get(format!("{}/v1/agents", bases[i % 2]))
            .bearer_auth("key-shared")
            .send()
            .await
            .unwrap();
        seen.push((
            r.status().as_u16(),
            r.headers().contains_key("x-ratelimit-soft"),
            r.headers().contains_key("retry-after"),
        ));
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
    for (stop, done) in stops {
        let _ = stop.send(());
        done.await.unwrap().unwrap();
    }
}

/// A model that takes 10 ms a call, so that turns sent at once truly overlap.
fn slow_model() -> SimConfig {
    SimConfig {
        time_scale: 1.0,
        fixed_latency: Some(std::time::Duration::from_millis(10)),
        ..SimConfig::default()
    }
}

fn model_calls(instances: &[&Instance]) -> u64 {
    instances.iter().map(|i| i.rt.stats().model_calls).sum()
}

async fn turn(base: &str, agent: &str, session: &str, text: &str) -> (StatusCode, Value) {
    let body = json!({"task_id": unique("t"), "agent_id": agent, "session_id": session,
                      "messages": [{"role": "user", "content": text}]});
    call(reqwest::Method::POST, format!("{base}/v1/tasks"), Some(body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_turns_on_one_session_across_instances_wait_their_turn() {
    let wait = RuntimeConfig::default().session_wait;
    let (Some(a), Some(b)) = (
        instance_with(slow_model(), wait).await,
        instance_with(slow_model(), wait).await,
    ) else {
        return;
    };
    let (st, created) = call(
        reqwest::Method::POST,
        format!("{}/v1/agents", a.base),
        Some(json!({"agent_type": "support", "system_prompt": unique("Be brief"), "model_config": {"model": "gpt-4o-mini"}})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let agent = created["agent_id"].as_str().unwrap().to_owned();

    // What one lone turn costs in model calls.
    let before = model_calls(&[&a, &b]);
    let (st, r) = turn(&b.base, &agent, &unique("lone"), "alone").await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let per_turn = model_calls(&[&a, &b]) - before;
    assert!(per_turn >= 1);

    // 8 clients at once, 4 turns each, one after another, alternating instances: 32 turns on one
    // session, 16 sent to each instance.
    let session = unique("contended");
    let before = model_calls(&[&a, &b]);
    let bases = [a.base.clone(), b.base.clone()];
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (bases, agent, session) = (bases.clone(), agent.clone(), session.clone());
            tokio::spawn(async move {
                for k in 0..4 {
                    let base = &bases[(c + k) % 2];
                    let (st, r) = turn(base, &agent, &session, &format!("client {c} turn {k}")).await;
                    assert_eq!(
                        (st, r["status"].as_str()),
                        (StatusCode::OK, Some("success")),
                        "client {c} turn {k}: {r}"
                    );
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(
        model_calls(&[&a, &b]) - before,
        32 * per_turn,
        "the model was called as 32 lone turns would call it: no hidden retry"
    );

    let (_, page) = call(
        reqwest::Method::GET,
        format!("{}/v1/sessions/{session}/events?limit=1000", b.base),
        None,
    )
    .await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 64, "every turn's question and answer: {page}");
    let mut next_turn = [0usize; 8];
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64, "contiguous history");
        let role = e["message"]["role"].as_str().unwrap();
        if i % 2 == 1 {
            assert_eq!(role, "assistant", "each question is followed by its answer: {e}");
            continue;
        }
        assert_eq!(role, "user", "{e}");
        let text = e["message"]["content"].as_str().unwrap();
        let words: Vec<&str> = text.split(' ').collect();
        let (c, k): (usize, usize) = (words[1].parse().unwrap(), words[3].parse().unwrap());
        assert_eq!(k, next_turn[c], "client {c}'s turns are in its own order");
        next_turn[c] += 1;
    }
    assert_eq!(next_turn, [4; 8]);
    let waits = a.rt.stats().lease_waits + b.rt.stats().lease_waits;
    assert!(waits > 0, "the instances did contend for the session");
    assert_eq!(a.rt.stats().session_busy + b.rt.stats().session_busy, 0);

    for i in [a, b] {
        let _ = i.stop.send(());
        assert_eq!(i.done.await.unwrap().unwrap(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_held_past_the_wait_is_busy_and_a_dead_holders_lease_lapses() {
    let Some(a) = instance_with(slow_model(), std::time::Duration::from_millis(300)).await else {
        return;
    };
    let (_, created) = call(
        reqwest::Method::POST,
        format!("{}/v1/agents", a.base),
        Some(json!({"agent_type": "support", "system_prompt": unique("Be brief"), "model_config": {"model": "gpt-4o-mini"}})),
    )
    .await;
    let agent = created["agent_id"].as_str().unwrap().to_owned();
    let session = unique("held");
    let pool = sqlx::PgPool::connect(&pg_url()).await.unwrap();
    // Another instance holds the session's lease for a minute.
    sqlx::query(
        "INSERT INTO aether_session_leases (session_id, instance, token, expires_at) \
         VALUES ($1, 'i-elsewhere', 1, now() + interval '60 seconds')",
    )
    .bind(format!("acme:{session}"))
    .execute(&pool)
    .await
    .unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/tasks", a.base))
        .bearer_auth("key-acme")
        .json(
            &json!({"task_id": unique("t"), "agent_id": agent, "session_id": session,
                       "messages": [{"role": "user", "content": "hello?"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    let r: Value = resp.json().await.unwrap();
    assert_eq!(r["error"]["code"], "session.busy", "{r}");
    assert!(r["error"]["details"]["waited_s"].as_f64().unwrap() >= 0.3, "{r}");
    assert_eq!(a.rt.stats().session_busy, 1);

    // The holder died: it stops renewing, and its lease lapses after its TTL (here 1 s from now).
    // The next turn, allowed to wait longer, proceeds once it has lapsed.
    sqlx::query("UPDATE aether_session_leases SET expires_at = now() + interval '1 second' WHERE session_id = $1")
        .bind(format!("acme:{session}"))
        .execute(&pool)
        .await
        .unwrap();
    let _ = a.stop.send(());
    assert_eq!(a.done.await.unwrap().unwrap(), 0);
    let Some(patient) = instance_with(slow_model(), std::time::Duration::from_secs(10)).await else {
        return;
    };
    let started = std::time::Instant::now();
    let (st, r) = turn(&patient.base, &agent, &session, "hello again").await;
    assert_eq!((st, r["status"].as_str()), (StatusCode::OK, Some("success")), "{r}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "within the instance-death timeout"
    );
    let held: Option<String> = sqlx::query_scalar("SELECT instance FROM aether_session_leases WHERE session_id = $1")
        .bind(format!("acme:{session}"))
        .fetch_optional(&pool)
        .await
        .unwrap();
    assert_ne!(
        held.as_deref(),
        Some("i-elsewhere"),
        "the dead holder's lease was taken over"
    );
    let _ = patient.stop.send(());
    assert_eq!(patient.done.await.unwrap().unwrap(), 0);
}

/// A private `redis-server` on `port` (no persistence), killed on drop; `None` when it cannot
/// be started (not installed), which fails the test under CI.
struct PrivateRedis(std::process::Child);

impl PrivateRedis {
    fn start(port: u16) -> Option<Self> {
        use std::io::BufRead;
        let spawned = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "cannot start redis-server: {e} (CI is set: a test that needs it fails instead of skipping)"
                );
                eprintln!("SKIPPED: cannot start redis-server: {e}");
                return None;
            }
        };
        // Ready when it says so (no polling).
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("Ready to accept connections") {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "redis-server exited before it was ready"
            );
        }
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Some(Self(child))
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiting_fails_open_while_redis_is_down_then_recovers() {
    let port = common::free_port();
    let Some(redis) = PrivateRedis::start(port) else {
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let conn = aether_server::limits::connect_redis(&url).await.unwrap();
    let mut cfg = ServerConfig::default();
    cfg.add_env_keys("key-r=redis_tenant").unwrap();
    cfg.rate_limit = Some(aether_server::RateLimit {
        soft_rps: 0.001,
        hard_rps: 0.001,
        burst: 2.0,
    });
    let state = AppState::with(
        Arc::new(Runtime::builder().build().unwrap()),
        &cfg,
        Shared {
            redis: Some(conn),
            ..Shared::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(aether_server::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let status = || async {
        http.get(format!("{base}/v1/agents"))
            .bearer_auth("key-r")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(
        [status().await, status().await, status().await],
        [200, 200, 429],
        "limited through Redis"
    );

    // Redis goes away: requests pass (fail open), each counted, none waits long.
    drop(redis);
    let before = aether_server::limits::fail_open_total();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        assert_eq!(status().await, 200, "fails open");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    assert!(aether_server::limits::fail_open_total() >= before + 3);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("aether_rate_limit_fail_open_total"), "{metrics}");

    // Redis is back (empty): the limiter reconnects and limits again.
    let _redis = PrivateRedis::start(port).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut statuses = Vec::new();
    while !statuses.ends_with(&[429]) {
        assert!(
            std::time::Instant::now() < deadline,
            "still not limiting after Redis came back: {statuses:?}"
        );
        statuses.push(status().await);
    }
    let _ = stop.send(());
    done.await.unwrap().unwrap();
}
