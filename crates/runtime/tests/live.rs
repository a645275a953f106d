//! Live turns: chunk order and taxonomy, approvals, cancel, backpressure, follow-ups.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{
    ChunkKind, InteractionResponse, InteractionType, Metadata, TaskChunkType, TaskStreamChunk, ToolStatus,
    UniversalMessage,
};
use aether_runtime::approvals::{ApprovalConfig, TimeoutPolicy};
use aether_runtime::live::{LiveError, LiveOptions, LiveSession};
use aether_runtime::tools::{FnTool, RegisteredTool, ToolContext, ToolError};
use aether_runtime::Runtime;
use common::*;
use serde_json::json;

fn approvals(tools: &[&str], timeout: Duration, on_timeout: TimeoutPolicy) -> Option<ApprovalConfig> {
    let tools: HashMap<String, bool> = tools.iter().map(|t| ((*t).to_owned(), true)).collect();
    Some(ApprovalConfig {
        tools,
        timeout,
        on_timeout,
        ..ApprovalConfig::default()
    })
}

fn live(rt: &Runtime, agent: &str, session: &str, text: &str, options: LiveOptions) -> LiveSession {
    rt.start_live(turn_request(agent, session, text), options).unwrap()
}

/// Reads chunks until the turn's final chunk (complete, error or cancelled).
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

/// Reads until the first chunk of `kind`; returns it.
async fn read_until(s: &mut LiveSession, chunk_type: TaskChunkType) -> TaskStreamChunk {
    loop {
        let c = s.next_chunk().await.expect("stream ended early");
        if c.chunk_type == chunk_type {
            return c;
        }
    }
}

fn kinds(chunks: &[TaskStreamChunk]) -> Vec<&'static str> {
    chunks
        .iter()
        .map(|c| match c.chunk_kind {
            Some(ChunkKind::PlanDelta) => "plan.delta",
            Some(ChunkKind::PlanSummary) => "plan.summary",
            Some(ChunkKind::ToolProposal) => "tool.proposal",
            Some(ChunkKind::ToolResult) => "tool.result",
            Some(ChunkKind::ToolError) => "tool.error",
            Some(ChunkKind::ToolDelta) => "tool.delta",
            Some(ChunkKind::ResponseDelta) => "response.delta",
            Some(ChunkKind::ResponseFinal) => "response.final",
            Some(ChunkKind::TurnComplete) => "turn.complete",
            Some(ChunkKind::Error) => "error",
            _ => "other",
        })
        .collect()
}

fn answer(id: &str, approved: bool) -> InteractionResponse {
    InteractionResponse {
        interaction_id: id.into(),
        interaction_type: InteractionType::ToolApproval,
        approved,
        response_data: None,
        user_message: None,
        metadata: Metadata::new(),
        timestamp: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn a_tool_using_live_turn_streams_in_the_original_order() {
    let rt = instant();
    let agent = create(&rt, config(&["crm_lookup", "fx_quote"])).await;
    let mut s = live(&rt, &agent, "live-1", "go", LiveOptions::default());
    let chunks = read_turn(&mut s).await;
    let k = kinds(&chunks);
    let deltas = k.iter().filter(|k| **k == "response.delta").count();
    assert!(deltas > 3, "the answer streams in pieces: {k:?}");
    let mut expected = vec![
        "plan.delta",
        "plan.summary",
        "tool.proposal",
        "tool.proposal",
        "tool.result",
        "tool.result",
    ];
    expected.extend(std::iter::repeat_n("response.delta", deltas));
    expected.extend(["response.final", "turn.complete"]);
    assert_eq!(k, expected);
    assert!(
        chunks.iter().enumerate().all(|(i, c)| c.sequence_id == i as u64),
        "gap-free sequence ids"
    );
    assert!(chunks
        .iter()
        .all(|c| c.chunk_version == "2025-03-01" && c.task_id == s.task_id()));
    assert_eq!(chunks.last().unwrap().chunk_type, TaskChunkType::Complete);
    let streamed: String = chunks
        .iter()
        .filter(|c| c.chunk_kind == Some(ChunkKind::ResponseDelta))
        .map(|c| c.content.as_str().unwrap())
        .collect();
    let final_text = chunks
        .iter()
        .find(|c| c.chunk_kind == Some(ChunkKind::ResponseFinal))
        .unwrap()
        .content
        .as_str()
        .unwrap();
    assert_eq!(streamed, final_text, "the deltas add up to the final answer");

    // A follow-up continues the same session, numbering on.
    s.send_message(UniversalMessage::user("and now?")).await.unwrap();
    let second = read_turn(&mut s).await;
    assert_eq!(second[0].sequence_id, chunks.len() as u64);
    let done = second.last().unwrap();
    assert_eq!(done.content["metadata"]["session"]["turn"], json!(2));
    s.close().await;
    assert!(s.next_chunk().await.is_none(), "closed: the stream ends");
}

#[tokio::test]
async fn approvals_granted_denied_and_answered_for_a_wrong_id() {
    let rt = instant();
    let agent = create(&rt, config(&["crm_lookup", "aml_checker"])).await;
    let opts = LiveOptions {
        approvals: approvals(&["aml_checker"], Duration::from_secs(60), TimeoutPolicy::AutoCancel),
        ..LiveOptions::default()
    };

    let mut s = live(&rt, &agent, "approve", "go", opts.clone());
    let ask = read_until(&mut s, TaskChunkType::ToolApprovalRequest).await;
    let id = ask.interaction_id.clone().expect("an interaction id");
    assert_eq!(ask.content["tool_name"], "demo.aml_checker");
    let pending = s.pending_approvals();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].interaction_id, id);
    assert!(pending[0].expires_at > pending[0].requested_at);
    // A wrong id is refused, names what is pending, and runs nothing.
    let err = s.respond(&answer("ix-bogus", true)).unwrap_err();
    assert!(matches!(err, LiveError::Approval(_)));
    assert!(err.to_string().contains(&id), "{err}");
    assert_eq!(s.pending_approvals().len(), 1, "still waiting");
    s.respond(&answer(&id, true)).unwrap();
    let rest = read_turn(&mut s).await;
    let results: Vec<_> = rest
        .iter()
        .filter(|c| c.chunk_type == TaskChunkType::ToolResult)
        .collect();
    assert!(
        results.iter().all(|c| c.content["status"] == "success"),
        "approved: both ran"
    );

    let mut s = live(&rt, &agent, "deny", "go", opts);
    let ask = read_until(&mut s, TaskChunkType::ToolApprovalRequest).await;
    s.respond(&answer(ask.interaction_id.as_deref().unwrap(), false))
        .unwrap();
    let rest = read_turn(&mut s).await;
    let aml = rest
        .iter()
        .find(|c| c.content["tool_name"] == "demo.aml_checker")
        .unwrap();
    assert_eq!(aml.content["status"], "cancelled");
    assert!(aml.content["error_message"].as_str().unwrap().contains("denied"));
    let crm = rest
        .iter()
        .find(|c| c.content["tool_name"] == "demo.crm_lookup")
        .unwrap();
    assert_eq!(crm.content["status"], "success", "only the risky call is held back");
    // The answer never entered the conversation as user text.
    let events = rt.session_events("deny", None, 100).await.unwrap().events;
    let user_texts: Vec<_> = events
        .iter()
        .filter(|e| e.message.role == aether_contracts::Role::User)
        .collect();
    assert_eq!(user_texts.len(), 1);
    assert_eq!(user_texts[0].message.text_content(), "go");
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_approval_times_out_by_policy() {
    let rt = instant();
    let agent = create(&rt, config(&["aml_checker"])).await;
    for (policy, status) in [
        (TimeoutPolicy::AutoCancel, "cancelled"),
        (TimeoutPolicy::AutoApprove, "success"),
    ] {
        let opts = LiveOptions {
            approvals: approvals(&["aml_checker"], Duration::from_secs(5), policy),
            ..LiveOptions::default()
        };
        let mut s = live(&rt, &agent, &format!("timeout-{policy:?}"), "go", opts);
        let chunks = read_turn(&mut s).await;
        let result = chunks
            .iter()
            .find(|c| c.chunk_type == TaskChunkType::ToolResult)
            .unwrap();
        assert_eq!(result.content["status"], status, "{policy:?}");
        if policy == TimeoutPolicy::AutoCancel {
            assert_eq!(result.content["error"]["code"], "approval.timeout");
        }
        assert!(s.pending_approvals().is_empty());
    }
}

#[tokio::test]
async fn two_live_turns_on_one_reused_agent_keep_their_own_approvals() {
    let rt = instant();
    let agent = create(&rt, config(&["aml_checker"])).await;
    let again = create(&rt, config(&["aml_checker"])).await;
    assert_eq!(agent, again, "the agent is shared");
    let opts = LiveOptions {
        approvals: approvals(&["aml_checker"], Duration::from_secs(60), TimeoutPolicy::AutoCancel),
        ..LiveOptions::default()
    };
    let mut a = live(&rt, &agent, "user-a", "go", opts.clone());
    let mut b = live(&rt, &agent, "user-b", "go", opts);
    let ask_a = read_until(&mut a, TaskChunkType::ToolApprovalRequest)
        .await
        .interaction_id
        .unwrap();
    let ask_b = read_until(&mut b, TaskChunkType::ToolApprovalRequest)
        .await
        .interaction_id
        .unwrap();
    assert_ne!(ask_a, ask_b);
    assert!(
        a.respond(&answer(&ask_b, true)).is_err(),
        "B's question cannot be answered on A's session"
    );
    a.respond(&answer(&ask_a, true)).unwrap();
    b.respond(&answer(&ask_b, false)).unwrap();
    let ra = read_turn(&mut a).await;
    let rb = read_turn(&mut b).await;
    let status = |cs: &[TaskStreamChunk]| {
        cs.iter()
            .find(|c| c.chunk_type == TaskChunkType::ToolResult)
            .unwrap()
            .content["status"]
            .clone()
    };
    assert_eq!(status(&ra), "success");
    assert_eq!(status(&rb), "cancelled");
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_the_tool_in_flight_and_the_session_goes_on() {
    let finished = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&finished);
    let slow = RegisteredTool::new_async(
        tool_spec("test.slow", json!({"type": "object"})),
        FnTool(move |_p: Metadata, _c: ToolContext| {
            let flag = Arc::clone(&flag);
            async move {
                tokio::time::sleep(Duration::from_secs(10)).await;
                flag.store(true, Ordering::SeqCst);
                Ok::<_, ToolError>(json!({}))
            }
        }),
    )
    .unwrap();
    let rt = builder(0, 0).tool(slow).build().unwrap();
    let agent = create(&rt, config(&["test.slow"])).await;
    let mut s = live(&rt, &agent, "cancel", "go", LiveOptions::default());
    read_until(&mut s, TaskChunkType::ToolProposal).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // the tool is now running
    s.cancel();
    let end = read_turn(&mut s).await;
    assert_eq!(end.last().unwrap().chunk_type, TaskChunkType::Cancelled);
    assert!(end.last().unwrap().is_final);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!finished.load(Ordering::SeqCst), "the cancelled tool never completed");
    assert_eq!(
        rt.session_events("cancel", None, 10)
            .await
            .map(|p| p.events.len())
            .unwrap_or(0),
        0,
        "nothing half-written"
    );

    s.send_message(UniversalMessage::user("hello again")).await.unwrap();
    let next = read_turn(&mut s).await;
    assert_eq!(
        next.last().unwrap().chunk_type,
        TaskChunkType::Complete,
        "the session goes on after a cancel"
    );
}

#[tokio::test]
async fn a_slow_consumer_holds_the_producer_back() {
    let rt = instant();
    let agent = create(&rt, config(&[])).await;
    let mut s = live(
        &rt,
        &agent,
        "slow",
        "tell me everything",
        LiveOptions {
            buffer: 4,
            ..LiveOptions::default()
        },
    );
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    assert_eq!(s.buffered(), 4, "the turn waits for the consumer; nothing piles up");
    let chunks = read_turn(&mut s).await;
    assert!(chunks.len() > 20);
    assert!(chunks.iter().enumerate().all(|(i, c)| c.sequence_id == i as u64));
}

#[tokio::test]
async fn a_sync_turn_never_runs_a_tool_that_needs_approval() {
    let mut cfg = quiet_config();
    cfg.approvals.tools.insert("aml_checker".into(), true);
    let rt = builder(0, 0).config(cfg).build().unwrap();
    let agent = create(&rt, config(&["aml_checker", "crm_lookup"])).await;
    let r = turn(&rt, &agent, "sync", "go").await;
    assert!(r.is_success());
    let aml = r
        .tool_results
        .iter()
        .find(|t| t.tool_name == "demo.aml_checker")
        .unwrap();
    assert_eq!(aml.status, ToolStatus::Cancelled);
    assert!(aml.error_message.as_ref().unwrap().contains("live session"));
    let crm = r
        .tool_results
        .iter()
        .find(|t| t.tool_name == "demo.crm_lookup")
        .unwrap();
    assert_eq!(crm.status, ToolStatus::Success);
}

#[tokio::test]
async fn a_tools_progress_streams_as_tool_delta_chunks_before_its_result() {
    let rt = instant();
    // builtin.wait's example arguments: 100 ms in 4 steps, a progress update after each.
    let agent = create(&rt, config(&["builtin.wait"])).await;
    let mut s = live(&rt, &agent, "progress", "go", LiveOptions::default());
    let chunks = read_turn(&mut s).await;
    let k = kinds(&chunks);
    let first_result = k.iter().position(|k| *k == "tool.result").expect("a tool.result");
    let deltas: Vec<_> = chunks
        .iter()
        .filter(|c| c.chunk_kind == Some(ChunkKind::ToolDelta))
        .collect();
    assert_eq!(deltas.len(), 4, "{k:?}");
    assert!(
        k[..first_result].iter().filter(|k| **k == "tool.delta").count() == 4,
        "before the result: {k:?}"
    );
    assert!(deltas
        .iter()
        .all(|c| c.chunk_type == TaskChunkType::Progress && c.content["total"] == json!(4.0)));
    assert_eq!(deltas[3].content["message"], json!("step 4 of 4"));
    assert!(deltas[0].content["call_id"].is_string());
    assert_eq!(rt.stats().tool_progress_dropped, 0);
    s.close().await;
}
