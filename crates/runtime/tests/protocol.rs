//! The two-step protocol, request validation, agent reuse and the never-panicking entry point.

mod common;

use std::sync::Arc;

use aether_contracts::{ErrorCode, TaskRequest, TaskStatus, UniversalMessage};
use aether_runtime::model::{ModelError, ModelProvider, ModelRequest, ModelResponse, ProviderInfo, SimConfig};
use aether_runtime::{Runtime, RuntimeConfig};
use async_trait::async_trait;
use common::*;
use serde_json::json;

#[tokio::test]
async fn two_step_protocol_creates_then_converses() {
    let rt = instant();
    let created = rt.process(TaskRequest::create_agent("c1", config(&[]))).await;
    assert_eq!(created.status, TaskStatus::Success);
    let agent = created.agent_id.clone().unwrap();
    assert_eq!(meta(&created, "agent.reused"), &json!(false));

    let first = turn(&rt, &agent, "chat-1", "hello").await;
    assert!(first.is_success(), "{:?}", first.error);
    assert!(first.response_text().unwrap().starts_with("[simulated]"));
    assert_eq!(meta(&first, "provider.simulated"), &json!(true));
    assert_eq!(meta(&first, "provider.name"), &json!("simulated"));
    assert_eq!(meta(&first, "session.created"), &json!(true));
    assert!(meta(&first, "token_usage.prompt_tokens").as_u64().unwrap() > 0);
    assert!(meta(&first, "token_usage.completion_tokens").as_u64().unwrap() > 0);
    assert!(meta(&first, "cost_usd").as_f64().unwrap() > 0.0);
    for key in ["total_us", "model_us", "tool_us", "overhead_us"] {
        assert!(
            meta(&first, &format!("timing.{key}"))
                .as_f64()
                .is_some_and(|v| v >= 0.0),
            "timing.{key}"
        );
    }
    let second = turn(&rt, &agent, "chat-1", "again").await;
    assert_eq!(meta(&second, "session.created"), &json!(false));
    assert_eq!(meta(&second, "session.turn"), &json!(2));
    assert_eq!(
        meta(&first, "agent_context.internal_session_id"),
        meta(&second, "agent_context.internal_session_id")
    );
    assert_eq!(second.session_id.as_deref(), Some("chat-1"));
    assert_eq!(second.agent_id.as_deref(), Some(agent.as_str()));
    assert_eq!(rt.stats().sessions_created, 1);
    assert_eq!(rt.stats().turns, 2);
}

fn field_of(r: &aether_contracts::TaskResult) -> String {
    let e = r.error.as_ref().expect("an error payload");
    assert_eq!(e.code, ErrorCode::RequestValidation, "{e}");
    assert_eq!(r.status, TaskStatus::Error);
    e.details
        .as_ref()
        .and_then(|d| d.get("field"))
        .and_then(|f| f.as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn protocol_violations_name_what_is_wrong() {
    let rt = instant();
    let agent = create(&rt, config(&[])).await;

    let mut with_messages = TaskRequest::create_agent("v1", config(&[]));
    with_messages.messages.push(UniversalMessage::user("hi"));
    let r = rt.process(with_messages).await;
    assert_eq!(field_of(&r), "messages");
    assert!(r.error_message.unwrap().contains("first create the agent"));

    let mut both = TaskRequest::create_agent("v2", config(&[]));
    both.agent_id = Some(agent.clone());
    assert_eq!(field_of(&rt.process(both).await), "agent_config");

    let mut no_session = turn_request(&agent, "x", "hi");
    no_session.session_id = None;
    assert_eq!(field_of(&rt.process(no_session).await), "session_id");

    assert_eq!(field_of(&rt.process(TaskRequest::empty("v4")).await), "agent_id");

    let mut no_messages = turn_request(&agent, "x", "hi");
    no_messages.messages.clear();
    assert_eq!(field_of(&rt.process(no_messages).await), "messages");

    let unknown = rt.process(turn_request("agent-nope", "x", "hi")).await;
    assert_eq!(field_of(&unknown), "agent_id");
    assert!(unknown.error_message.unwrap().contains("agent-nope"));

    let mut session_only = turn_request(&agent, "never-seen", "hi");
    session_only.agent_id = None;
    let r = rt.process(session_only).await;
    assert_eq!(field_of(&r), "agent_id");
    assert!(r.error_message.unwrap().contains("never-seen"));

    let mut empty_id = turn_request(&agent, "x", "hi");
    empty_id.agent_id = Some("  ".into());
    assert_eq!(field_of(&rt.process(empty_id).await), "agent_id");

    // Nothing above created a session or a turn's history.
    assert_eq!(rt.stats().sessions_created, 0);
    assert_eq!(
        rt.stats().active_sessions,
        0,
        "failed first turns leave no session in memory"
    );
}

#[tokio::test]
async fn session_id_alone_continues_with_the_sessions_agent() {
    let rt = instant();
    let agent = create(&rt, config(&[])).await;
    assert!(turn(&rt, &agent, "s", "one").await.is_success());
    let mut req = turn_request(&agent, "s", "two");
    req.agent_id = None;
    let r = rt.process(req).await;
    assert!(r.is_success(), "{:?}", r.error);
    assert_eq!(r.agent_id.as_deref(), Some(agent.as_str()));
}

#[tokio::test]
async fn json_entry_point_names_the_bad_field() {
    let rt = instant();
    let r = rt
        .assistant()
        .process_json(r#"{"task_id":"j1","messages":[{"role":"robot","content":"x"}]}"#)
        .await;
    assert_eq!(r.task_id, "j1");
    assert_eq!(field_of(&r), "messages[0].role");
    let r = rt.assistant().process_json("not json").await;
    assert_eq!(r.status, TaskStatus::Error);
    assert_eq!(r.error.unwrap().code, ErrorCode::RequestValidation);
}

#[tokio::test]
async fn equal_configs_share_an_agent_up_to_the_cap() {
    let rt = Runtime::builder()
        .config(RuntimeConfig {
            max_sessions_per_agent: 3,
            ..quiet_config()
        })
        .time_scale(0.0)
        .build()
        .unwrap();
    let a = rt.create_agent(config(&["crm_lookup"])).await.unwrap();
    assert!(!a.reused);
    let again = rt.create_agent(config(&["crm_lookup"])).await.unwrap();
    assert!(again.reused);
    assert_eq!(again.agent_id, a.agent_id);
    let other = rt.create_agent(config(&["fx_quote"])).await.unwrap();
    assert_ne!(other.agent_id, a.agent_id, "a different config never shares");

    for s in 0..3 {
        assert!(turn(&rt, &a.agent_id, &format!("s{s}"), "hi").await.is_success());
    }
    let fresh = rt.create_agent(config(&["crm_lookup"])).await.unwrap();
    assert!(!fresh.reused, "a full agent is not reused");
    assert_ne!(fresh.agent_id, a.agent_id);

    // A client still holding the full agent's id is served by an agent with an equal config.
    let overflow = turn(&rt, &a.agent_id, "s3", "hi").await;
    assert!(overflow.is_success(), "{:?}", overflow.error);
    assert_eq!(overflow.agent_id.as_deref(), Some(fresh.agent_id.as_str()));
    assert_eq!(meta(&overflow, "session.overflow_from"), &json!(a.agent_id));
    assert_eq!(rt.agent(&a.agent_id).unwrap().session_count(), 3, "the cap holds");
    let stats = rt.stats();
    assert_eq!((stats.agents_created, stats.agents_reused), (3, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn capacity_check_is_atomic_under_concurrency() {
    let rt: Shared = Arc::new(
        Runtime::builder()
            .config(RuntimeConfig {
                max_sessions_per_agent: 5,
                ..quiet_config()
            })
            .time_scale(0.0)
            .build()
            .unwrap(),
    );
    let agent = rt.create_agent(config(&[])).await.unwrap().agent_id;
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let (rt, agent) = (Arc::clone(&rt), agent.clone());
            tokio::spawn(async move { turn(&rt, &agent, &format!("u{i}"), "hi").await })
        })
        .collect();
    let mut per_agent = std::collections::HashMap::<String, usize>::new();
    for h in handles {
        let r = h.await.unwrap();
        assert!(r.is_success(), "{:?}", r.error);
        *per_agent.entry(r.agent_id.unwrap()).or_default() += 1;
    }
    assert_eq!(
        rt.agent(&agent).unwrap().session_count(),
        5,
        "the first agent is filled exactly to its cap"
    );
    assert!(
        per_agent.values().all(|n| *n <= 5),
        "no agent serves more than its cap: {per_agent:?}"
    );
    assert_eq!(per_agent.values().sum::<usize>(), 64);
    for (id, n) in &per_agent {
        assert_eq!(rt.agent(id).unwrap().session_count(), *n);
    }
}

struct PanickingModel(ProviderInfo);

#[async_trait]
impl ModelProvider for PanickingModel {
    fn info(&self) -> &ProviderInfo {
        &self.0
    }
    async fn generate(&self, _req: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        panic!("provider bug")
    }
}

#[tokio::test]
async fn a_panic_becomes_an_internal_error_result() {
    let rt = builder(0, 0)
        .provider(
            "broken",
            Arc::new(PanickingModel(ProviderInfo {
                name: "broken".into(),
                simulated: false,
            })),
        )
        .build()
        .unwrap();
    let mut cfg = config(&[]);
    cfg.framework_config.insert("provider".into(), json!("broken"));
    let agent = create(&rt, cfg).await;
    let r = turn(&rt, &agent, "p", "hi").await;
    assert_eq!(r.status, TaskStatus::Error);
    let e = r.error.unwrap();
    assert_eq!(e.code, ErrorCode::InternalError);
    assert!(e.message.contains("provider bug"));
    // The session is not poisoned: the lock was released and nothing was written.
    assert_eq!(rt.store().load_window("p", 10).await.unwrap().events.len(), 0);

    let mut unknown = config(&[]);
    unknown.framework_config.insert("provider".into(), json!("nope"));
    let r = rt.process(TaskRequest::create_agent("c", unknown)).await;
    assert_eq!(r.error.unwrap().code, ErrorCode::FrameworkUnavailable);

    let mut framework = config(&[]);
    framework.framework_config.insert("framework".into(), json!("adk"));
    let r = rt.process(TaskRequest::create_agent("c", framework)).await;
    let e = r.error.unwrap();
    assert_eq!(e.code, ErrorCode::FrameworkUnavailable);
    assert!(e.message.contains("native"), "lists the known frameworks: {e}");
}

#[tokio::test]
async fn model_errors_are_seeded_and_reported_as_upstream() {
    let rt = Runtime::builder()
        .config(quiet_config())
        .simulated_model(SimConfig {
            time_scale: 0.0,
            error_rate: 1.0,
            ..SimConfig::default()
        })
        .build()
        .unwrap();
    let agent = create(&rt, config(&[])).await;
    let r = turn(&rt, &agent, "e", "hi").await;
    assert_eq!(r.status, TaskStatus::Error);
    let e = r.error.unwrap();
    assert_eq!(e.code, ErrorCode::ModelUpstream);
    assert!(e.details.unwrap().get("status").is_some());
    assert_eq!(
        rt.store().load_window("e", 10).await.unwrap().events.len(),
        0,
        "a failed turn writes nothing"
    );
    assert_eq!(rt.stats().turns_failed, 1);
}

#[tokio::test(start_paused = true)]
async fn a_turn_past_its_timeout_ends_with_status_timeout_and_writes_nothing() {
    let rt = builder(5_000, 0).build().unwrap();
    let agent = create(&rt, config(&[])).await;
    let mut req = turn_request(&agent, "slow", "hi");
    req.execution_config = Some(aether_contracts::ExecutionConfig {
        timeout: Some(0.5),
        ..Default::default()
    });
    let r = rt.process(req).await;
    assert_eq!(r.status, TaskStatus::Timeout);
    assert_eq!(r.error.unwrap().code, ErrorCode::FrameworkExecution);
    assert_eq!(rt.store().load_window("slow", 10).await.unwrap().events.len(), 0);
    // The session still works.
    assert!(turn(&rt, &agent, "slow", "again").await.is_success());
}
