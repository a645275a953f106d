//! One path for a turn, seen over real HTTP: a live turn keeps `execution_config.timeout` like a
//! sync turn, a panic ends a live turn with an `error` chunk instead of a dropped stream, and an
//! agent's framework is its own for every turn.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use aether_contracts::{Metadata, TaskResult, UniversalTool};
use aether_runtime::engine::{FrameworkAdapter, TurnObserver, ValidRequest};
use aether_runtime::model::{ModelError, ModelProvider, ModelRequest, ModelResponse, ProviderInfo};
use aether_runtime::tools::{FnTool, RegisteredTool, ToolContext};
use aether_runtime::EngineError;
use async_trait::async_trait;
use common::{agent_body, builder, config, instant, read_sse, slow, Server};
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
        (StatusCode::OK, Some("timeout")),
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
    let (_, sync) = s
        .post(
            "/v1/tasks",
            "key-acme",
            turn_with(&agent, "sync-p", "sync-p", json!({})),
        )
        .await;
    assert_eq!(sync["error"]["code"], "internal.error", "{sync}");
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
    assert_eq!((status, r["status"].as_str()), (StatusCode::OK, Some("error")), "{r}");
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
