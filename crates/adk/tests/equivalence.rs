//! The same conversation on `native` and on `adk` gives equivalent results: the same tool calls,
//! the same final text from the simulator, history continued on turn two, the same live chunks
//! with an approval, the same image acknowledgement. And the loop is adk's: its invocation ids
//! are on the turn's events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{
    ChunkKind, ContentPart, ImageReference, InteractionResponse, InteractionType, MessageContent, Metadata, Role,
    TaskRequest, TaskResult, TaskStreamChunk, ToolStatus, UniversalMessage,
};
use aether_runtime::approvals::{ApprovalConfig, TimeoutPolicy};
use aether_runtime::live::{LiveOptions, LiveSession};
use aether_runtime::model::SimConfig;
use aether_runtime::tools::demo::DemoToolConfig;
use aether_runtime::{Runtime, RuntimeConfig};
use aether_store::SessionEvent;
use base64::Engine as _;
use serde_json::json;

/// A runtime with both frameworks, an instant simulated model (fixed seed) and instant tools.
fn runtime() -> Runtime {
    runtime_with(RuntimeConfig::default())
}

fn runtime_with(config: RuntimeConfig) -> Runtime {
    let builder = Runtime::builder()
        .config(RuntimeConfig {
            sweep_interval: None,
            ..config
        })
        .simulated_model(SimConfig {
            fixed_latency: Some(Duration::ZERO),
            ..SimConfig::default()
        })
        .demo_tools(DemoToolConfig {
            latency: Duration::ZERO,
            ..DemoToolConfig::default()
        });
    aether_adk::with_adk(builder).build().unwrap()
}

async fn agent_on(rt: &Runtime, framework: &str, tools: &[&str]) -> String {
    let mut config =
        aether_contracts::AgentConfig::new("gpt-4o-mini", "You are a test agent.").with_tools(tools.iter().copied());
    config.framework_config.insert("framework".into(), json!(framework));
    let r = rt.process(TaskRequest::create_agent("create", config)).await;
    assert!(r.is_success(), "create on {framework}: {:?}", r.error);
    r.agent_id.unwrap()
}

async fn turn(rt: &Runtime, agent: &str, session: &str, text: &str) -> TaskResult {
    let r = rt
        .process(TaskRequest::converse(
            format!("t-{session}-{text}"),
            agent,
            session,
            vec![UniversalMessage::user(text)],
        ))
        .await;
    assert!(r.is_success(), "turn `{text}` on {session}: {:?}", r.error);
    r
}

async fn events(rt: &Runtime, session: &str) -> Vec<Arc<SessionEvent>> {
    rt.session_events(session, None, 1000).await.unwrap().events
}

/// One stored event, as far as it must match across frameworks: its role, text and tool calls
/// (names), and each tool result's name and status.
type Shape = (Role, String, Vec<String>, Vec<(String, ToolStatus)>);

fn shape(events: &[Arc<SessionEvent>]) -> Vec<Shape> {
    events
        .iter()
        .map(|e| {
            (
                e.message.role,
                e.message.text_content().into_owned(),
                e.message
                    .tool_calls()
                    .unwrap_or_default()
                    .iter()
                    .map(|c| c.tool_name.clone())
                    .collect(),
                e.tool_results.iter().map(|r| (r.tool_name.clone(), r.status)).collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn two_turns_with_a_tool_fan_out_match_and_the_loop_is_adks() {
    let tools = ["crm_lookup", "fx_quote"];
    let (native_rt, adk_rt) = (runtime(), runtime());
    let native = agent_on(&native_rt, "native", &tools).await;
    let adk = agent_on(&adk_rt, "adk", &tools).await;

    for text in ["go", "and now?"] {
        let a = turn(&native_rt, &native, "chat", text).await;
        let b = turn(&adk_rt, &adk, "chat", text).await;
        assert_eq!(a.response_text(), b.response_text(), "turn `{text}`: same final text");
        assert!(
            b.response_text()
                .unwrap()
                .starts_with("[simulated] 2 of 2 tool calls succeeded"),
            "{:?}",
            b.response_text()
        );
        let names = |r: &TaskResult| -> Vec<(String, ToolStatus)> {
            r.tool_results.iter().map(|t| (t.tool_name.clone(), t.status)).collect()
        };
        assert_eq!(names(&a), names(&b), "turn `{text}`: same tool calls and outcomes");
        assert_eq!(b.tool_results.len(), 2, "the fan-out ran both tools");
        assert_eq!(a.metadata["timing"]["model_calls"], b.metadata["timing"]["model_calls"]);
        assert_eq!(a.metadata["timing"]["tool_calls"], b.metadata["timing"]["tool_calls"]);
        assert_eq!(
            a.metadata["token_usage"], b.metadata["token_usage"],
            "the model saw the same history"
        );
    }

    let (a, b) = (events(&native_rt, "chat").await, events(&adk_rt, "chat").await);
    assert_eq!(shape(&a), shape(&b), "the same stored conversation");
    assert_eq!(b.len(), 8, "two turns of user, calls, results, answer");
    assert!(
        b.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "contiguous sequence numbers"
    );

    // adk ran the loop: every event it made carries its invocation id, one per turn.
    let made: Vec<&Arc<SessionEvent>> = b.iter().filter(|e| e.message.role != Role::User).collect();
    let ids: Vec<&str> = made
        .iter()
        .map(|e| {
            e.message.metadata()[aether_adk::INVOCATION_KEY]
                .as_str()
                .expect("an adk invocation id")
        })
        .collect();
    assert!(ids.iter().all(|id| id.starts_with("inv-")), "{ids:?}");
    assert_eq!(ids[0], ids[2], "one invocation per turn");
    assert_ne!(ids[0], ids[3], "a new invocation on turn two");
    assert!(
        a.iter()
            .all(|e| !e.message.metadata().contains_key(aether_adk::INVOCATION_KEY)),
        "the native loop has no adk ids"
    );
}

#[tokio::test]
async fn a_sync_turn_refuses_a_call_that_needs_approval_on_both() {
    let tools = ["crm_lookup", "aml_checker"];
    let config = || RuntimeConfig {
        approvals: ApprovalConfig {
            tools: HashMap::from([("aml_checker".to_owned(), true)]),
            ..ApprovalConfig::default()
        },
        ..RuntimeConfig::default()
    };
    let (native_rt, adk_rt) = (runtime_with(config()), runtime_with(config()));
    let native = agent_on(&native_rt, "native", &tools).await;
    let adk = agent_on(&adk_rt, "adk", &tools).await;
    let a = turn(&native_rt, &native, "s", "go").await;
    let b = turn(&adk_rt, &adk, "s", "go").await;
    let aml = b
        .tool_results
        .iter()
        .find(|r| r.tool_name == "demo.aml_checker")
        .unwrap();
    assert_eq!(aml.status, ToolStatus::Cancelled, "not run: nobody to ask");
    assert_eq!(a.tool_results, {
        let mut r = b.tool_results.clone();
        // Timings differ; everything else is the same.
        for (x, y) in r.iter_mut().zip(&a.tool_results) {
            x.execution_time = y.execution_time;
        }
        r
    });
    assert_eq!(a.response_text(), b.response_text());
}

fn kinds(chunks: &[TaskStreamChunk]) -> Vec<Option<ChunkKind>> {
    chunks.iter().map(|c| c.chunk_kind).collect()
}

async fn read_turn(s: &mut LiveSession) -> Vec<TaskStreamChunk> {
    let mut out = Vec::new();
    while let Some(c) = s.next_chunk().await {
        let last = c.is_final;
        out.push(c);
        if last {
            break;
        }
    }
    out
}

/// A live turn whose risky call a person approves, then a follow-up whose approval nobody answers
/// (cancelled at its timeout); returns both turns' chunks.
async fn live_with_approval(rt: &Runtime, agent: &str) -> (Vec<TaskStreamChunk>, Vec<TaskStreamChunk>) {
    let approvals = ApprovalConfig {
        tools: HashMap::from([("aml_checker".to_owned(), true)]),
        timeout: Duration::from_secs(60),
        on_timeout: TimeoutPolicy::AutoCancel,
        ..ApprovalConfig::default()
    };
    let request = TaskRequest::converse("live", agent, "live", vec![UniversalMessage::user("go")]);
    let mut s = rt
        .start_live(
            request,
            LiveOptions {
                approvals: Some(approvals),
                ..LiveOptions::default()
            },
        )
        .unwrap();
    let mut first = Vec::new();
    let id = loop {
        let c = s.next_chunk().await.expect("the turn asks for approval");
        let ask = c.interaction_id.clone();
        first.push(c);
        if let Some(id) = ask {
            break id;
        }
    };
    s.respond(&InteractionResponse {
        interaction_id: id,
        interaction_type: InteractionType::ToolApproval,
        approved: true,
        response_data: None,
        user_message: None,
        metadata: Metadata::new(),
        timestamp: chrono::Utc::now(),
    })
    .unwrap();
    first.extend(read_turn(&mut s).await);
    s.send_message(UniversalMessage::user("thanks")).await.unwrap();
    let second = read_turn(&mut s).await;
    s.close().await;
    (first, second)
}

// Paused time: the follow-up's approval, which nobody answers, times out at once (by policy).
#[tokio::test(start_paused = true)]
async fn a_streamed_turn_with_an_approval_streams_the_same_chunks() {
    let tools = ["crm_lookup", "aml_checker"];
    let (native_rt, adk_rt) = (runtime(), runtime());
    let native = agent_on(&native_rt, "native", &tools).await;
    let adk = agent_on(&adk_rt, "adk", &tools).await;
    let (a1, a2) = live_with_approval(&native_rt, &native).await;
    let (b1, b2) = live_with_approval(&adk_rt, &adk).await;
    assert_eq!(kinds(&a1), kinds(&b1), "the same chunk kinds, in order");
    assert_eq!(kinds(&a2), kinds(&b2), "the follow-up too");
    let text = |chunks: &[TaskStreamChunk]| -> String {
        chunks
            .iter()
            .filter(|c| c.chunk_kind == Some(ChunkKind::ResponseDelta))
            .filter_map(|c| c.content.as_str())
            .collect()
    };
    assert!(
        text(&b1).starts_with("[simulated] 2 of 2 tool calls succeeded"),
        "{}",
        text(&b1)
    );
    assert_eq!(text(&a1), text(&b1), "the same streamed answer");
    assert!(
        b1.iter().chain(&b2).enumerate().all(|(i, c)| c.sequence_id == i as u64),
        "gap-free sequence ids across the two turns"
    );
    assert_eq!(b2.last().unwrap().content["metadata"]["session"]["turn"], json!(2));
}

#[tokio::test]
async fn an_image_reaches_the_model_intact_on_both() {
    let (native_rt, adk_rt) = (runtime(), runtime());
    let native = agent_on(&native_rt, "native", &[]).await;
    let adk = agent_on(&adk_rt, "adk", &[]).await;
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    png.extend((0..2000).map(|i| (i * 31 % 251) as u8));
    let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    let mut message = UniversalMessage::user("");
    message.content = MessageContent::Parts(vec![
        ContentPart::Text("What is in this?".into()),
        ContentPart::ImageReference(ImageReference {
            image_path: format!("data:image/png;base64,{b64}"),
            image_format: "png".into(),
            width: None,
            height: None,
            metadata: Metadata::new(),
        }),
    ]);
    let mut answers = Vec::new();
    for (rt, agent) in [(&native_rt, &native), (&adk_rt, &adk)] {
        let r = rt
            .process(TaskRequest::converse(
                "img",
                agent.as_str(),
                "img",
                vec![message.clone()],
            ))
            .await;
        assert!(r.is_success(), "{:?}", r.error);
        answers.push(r.response_text().unwrap().into_owned());
    }
    assert!(
        answers[1].starts_with("[simulated] Received 1 attachment"),
        "{}",
        answers[1]
    );
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test]
async fn a_turn_that_names_the_other_framework_is_refused() {
    let rt = runtime();
    let adk = agent_on(&rt, "adk", &[]).await;
    let mut request = TaskRequest::converse("x", &adk, "x", vec![UniversalMessage::user("hi")]);
    request.metadata.insert("framework".into(), json!("native"));
    let r = rt.process(request).await;
    let e = r.error.expect("refused");
    assert!(e.message.contains("created on `adk`"), "{}", e.message);
}

/// The ADK runner of an agent's Aether runner, if one was built.
fn adk_runner_of(rt: &Runtime, agent: &str) -> Option<Arc<adk_runner::Runner>> {
    let runner = rt.agent(agent)?.runner()?;
    runner
        .framework_state::<adk_runner::Runner, ()>(|| Err(()))
        .ok()
        .flatten()
}

#[tokio::test]
async fn adk_runners_are_built_once_reused_by_sessions_and_recycled_when_idle() {
    let rt = runtime_with(RuntimeConfig {
        session_idle_ttl: Duration::from_secs(60),
        runner_idle_ttl: Duration::ZERO,
        agent_idle_ttl: Duration::from_secs(24 * 3600),
        ..RuntimeConfig::default()
    });
    let adk = agent_on(&rt, "adk", &["crm_lookup"]).await;
    assert!(adk_runner_of(&rt, &adk).is_none(), "no runner before the first turn");
    turn(&rt, &adk, "one", "go").await;
    let first = adk_runner_of(&rt, &adk).expect("the first turn built an ADK runner");
    turn(&rt, &adk, "two", "go").await;
    let again = adk_runner_of(&rt, &adk).unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "a second session reuses the agent's ADK runner"
    );

    // Idle: the sessions are archived, then the runner (and its ADK runner) recycled.
    let report = rt
        .sweep_at(tokio::time::Instant::now() + Duration::from_secs(3600))
        .await;
    assert_eq!((report.sessions, report.runners), (2, 1));
    assert!(adk_runner_of(&rt, &adk).is_none());
    drop(again);
    assert_eq!(
        Arc::strong_count(&first),
        1,
        "nothing else holds the recycled ADK runner"
    );

    // The next turn (an archived session, recovered from the store) builds a new one.
    let r = turn(&rt, &adk, "one", "and now?").await;
    let session = &r.metadata["session"];
    assert_eq!(session["recovered"], json!(true), "{session}");
    assert_eq!(
        session["events"],
        json!(8),
        "history continued after the first turn's four: {session}"
    );
    let fresh = adk_runner_of(&rt, &adk).unwrap();
    assert!(!Arc::ptr_eq(&first, &fresh));
}

/// Sets its flag when dropped: proof that a cancelled tool's future went away.
struct Dropped(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn cancelling_a_live_adk_turn_stops_adks_invocation_and_stores_nothing() {
    use aether_runtime::tools::{FnTool, RegisteredTool, ToolContext, ToolError};
    use std::sync::atomic::{AtomicBool, Ordering};
    let started = Arc::new(tokio::sync::Notify::new());
    let dropped = Arc::new(AtomicBool::new(false));
    let (s2, d2) = (Arc::clone(&started), Arc::clone(&dropped));
    let stuck = RegisteredTool::new_async(
        aether_contracts::UniversalTool::new("test.stuck", "never finishes", json!({"type": "object"})),
        FnTool(move |_p: Metadata, _c: ToolContext| {
            let (started, guard) = (Arc::clone(&s2), Dropped(Arc::clone(&d2)));
            async move {
                let _guard = guard;
                started.notify_one();
                std::future::pending::<()>().await;
                Ok::<_, ToolError>(json!({}))
            }
        }),
    )
    .unwrap();
    let builder = Runtime::builder()
        .config(RuntimeConfig {
            sweep_interval: None,
            ..RuntimeConfig::default()
        })
        .simulated_model(SimConfig {
            fixed_latency: Some(Duration::ZERO),
            ..SimConfig::default()
        })
        .tool(stuck);
    let rt = aether_adk::with_adk(builder).build().unwrap();
    let agent = agent_on(&rt, "adk", &["test.stuck"]).await;
    let request = TaskRequest::converse("c", &agent, "cancel", vec![UniversalMessage::user("go")]);
    let mut s = rt.start_live(request, LiveOptions::default()).unwrap();
    started.notified().await;
    s.cancel();
    let end = read_turn(&mut s).await;
    assert_eq!(
        end.last().unwrap().chunk_type,
        aether_contracts::TaskChunkType::Cancelled
    );
    assert!(
        dropped.load(Ordering::SeqCst),
        "the running tool was dropped with adk's invocation"
    );
    assert!(events(&rt, "cancel").await.is_empty(), "nothing half-written");

    // The session goes on: a follow-up runs (its tool call is cancelled again, by hand).
    s.send_message(UniversalMessage::user("again")).await.unwrap();
    started.notified().await;
    s.cancel();
    let again = read_turn(&mut s).await;
    assert_eq!(
        again.last().unwrap().chunk_type,
        aether_contracts::TaskChunkType::Cancelled
    );
    s.close().await;
}
