//! Chat sessions: one internal session per chat, ordered turns, parallel chats, agent switch,
//! archive and recovery, deletion, bounded windows, and the idle sweeper's order.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{Metadata, Role};
use aether_runtime::tools::{FnTool, RegisteredTool, ToolContext, ToolError};
use aether_runtime::{Runtime, RuntimeConfig};
use aether_store::SessionState;
use common::*;
use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_turns_on_one_chat_make_one_session_and_an_ordered_history() {
    // 1 ms of model latency gives every turn an await point where another could interleave.
    let rt: Shared = Arc::new(builder(1, 0).build().unwrap());
    let agent = create(&rt, config(&[])).await;
    let handles: Vec<_> = (0..100)
        .map(|i| {
            let (rt, agent) = (Arc::clone(&rt), agent.clone());
            tokio::spawn(async move { turn(&rt, &agent, "shared-chat", &format!("msg {i}")).await })
        })
        .collect();
    let mut internal_ids = HashSet::new();
    for h in handles {
        let r = h.await.unwrap();
        assert!(r.is_success(), "{:?}", r.error);
        internal_ids.insert(
            meta(&r, "agent_context.internal_session_id")
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(internal_ids.len(), 1, "one internal session for the chat");
    assert_eq!(rt.stats().sessions_created, 1);

    let page = rt.store().events_page("shared-chat", None, 1000).await.unwrap();
    assert_eq!(page.events.len(), 200);
    let mut seen = HashSet::new();
    for (i, pair) in page.events.chunks(2).enumerate() {
        assert_eq!(pair[0].seq, 2 * i as u64);
        assert_eq!(pair[0].message.role, Role::User);
        assert_eq!(
            pair[1].message.role,
            Role::Assistant,
            "each turn's reply follows its own message"
        );
        assert!(seen.insert(pair[0].message.text_content().into_owned()));
    }
    assert_eq!(seen.len(), 100);
}

#[tokio::test(start_paused = true)]
async fn turns_on_different_chats_run_in_parallel_and_same_chat_turns_queue() {
    let rt: Shared = Arc::new(builder(100, 0).build().unwrap());
    let agent = create(&rt, config(&[])).await;

    let started = Instant::now();
    let parallel: Vec<_> = (0..10)
        .map(|i| {
            let (rt, agent) = (Arc::clone(&rt), agent.clone());
            tokio::spawn(async move { turn(&rt, &agent, &format!("chat-{i}"), "hi").await })
        })
        .collect();
    for h in parallel {
        assert!(h.await.unwrap().is_success());
    }
    let different = started.elapsed();

    let started = Instant::now();
    let queued: Vec<_> = (0..10)
        .map(|i| {
            let (rt, agent) = (Arc::clone(&rt), agent.clone());
            tokio::spawn(async move { turn(&rt, &agent, "one-chat", &format!("m{i}")).await })
        })
        .collect();
    for h in queued {
        assert!(h.await.unwrap().is_success());
    }
    let same = started.elapsed();

    assert!(
        different < Duration::from_millis(200),
        "10 chats took {different:?}; they waited on each other"
    );
    assert!(
        same >= Duration::from_millis(1000),
        "10 turns of one chat took {same:?}; they overlapped"
    );
    // Request state is per request: each chat holds only its own messages.
    for i in 0..10 {
        let w = rt.store().load_window(&format!("chat-{i}"), 10).await.unwrap();
        assert_eq!(w.events.len(), 2);
    }
}

#[tokio::test]
async fn agent_switch_moves_the_history_to_the_new_agent() {
    let rt = instant();
    let a = create(&rt, config(&[])).await;
    let b = create(&rt, aether_contracts::AgentConfig::new("gemini-1.5-flash", "Agent B")).await;
    let first = turn(&rt, &a, "s", "my name is Ada").await;
    let fresh = turn(&rt, &b, "other", "what is my name?").await;
    let switched = turn(&rt, &b, "s", "what is my name?").await;
    assert!(switched.is_success(), "{:?}", switched.error);
    assert_eq!(meta(&switched, "session.agent_switched"), &json!(true));
    assert_ne!(
        meta(&first, "agent_context.internal_session_id"),
        meta(&switched, "agent_context.internal_session_id"),
        "a fresh internal session for the new agent"
    );
    assert_eq!(switched.agent_id.as_deref(), Some(b.as_str()));
    // The new agent's model saw the earlier turn: more prompt tokens than the same question fresh.
    let prompt = |r| meta(r, "token_usage.prompt_tokens").as_u64().unwrap();
    assert!(
        prompt(&switched) > prompt(&fresh),
        "history moved: {} vs {}",
        prompt(&switched),
        prompt(&fresh)
    );
    assert_eq!(
        rt.agent(&a).unwrap().session_count(),
        0,
        "the old agent's slot is released"
    );
    let record = rt.store().get_session("s").await.unwrap().unwrap();
    assert_eq!(record.agent_id, b);
    assert_eq!(record.event_count, 4);
    assert_eq!(rt.stats().agent_switches, 1);
}

#[tokio::test]
async fn cleanup_archives_and_the_next_request_recovers_the_history() {
    let rt = instant();
    let agent = create(&rt, config(&[])).await;
    turn(&rt, &agent, "s", "one").await;
    let before = turn(&rt, &agent, "s", "two").await;
    assert!(rt.cleanup_session("s").await.unwrap());
    assert_eq!(rt.stats().active_sessions, 0);
    assert_eq!(
        rt.store().get_session("s").await.unwrap().unwrap().state,
        SessionState::Archived
    );

    let after = turn(&rt, &agent, "s", "three").await;
    assert!(after.is_success(), "{:?}", after.error);
    assert_eq!(meta(&after, "session.recovered"), &json!(true));
    assert_eq!(meta(&after, "session.created"), &json!(false));
    assert_eq!(meta(&after, "session.events"), &json!(6));
    assert_ne!(
        meta(&before, "agent_context.internal_session_id"),
        meta(&after, "agent_context.internal_session_id")
    );
    let prompt = |r| meta(r, "token_usage.prompt_tokens").as_u64().unwrap();
    assert!(
        prompt(&after) > prompt(&before),
        "the recovered window reached the model"
    );
    assert_eq!(
        rt.store().get_session("s").await.unwrap().unwrap().state,
        SessionState::Active
    );
    let stats = rt.stats();
    assert_eq!((stats.sessions_created, stats.sessions_recovered), (1, 1));
}

#[tokio::test]
async fn cleanup_of_an_agent_archives_its_sessions_and_releases_its_runner() {
    let rt = instant();
    let agent = create(&rt, config(&[])).await;
    turn(&rt, &agent, "a1", "hi").await;
    turn(&rt, &agent, "a2", "hi").await;
    assert_eq!(rt.stats().active_runners, 1);
    let cleanup = rt.cleanup_agent(&agent).await.unwrap().unwrap();
    assert!(cleanup.runner_released);
    assert_eq!(cleanup.chat_ids.len(), 2);
    let stats = rt.stats();
    assert_eq!(
        (stats.active_agents, stats.active_runners, stats.active_sessions),
        (0, 0, 0)
    );
    assert_eq!(
        (
            stats.agents_cleaned_up,
            stats.reclaimed_runners,
            stats.reclaimed_sessions
        ),
        (1, 1, 2)
    );
    assert!(rt.cleanup_agent(&agent).await.unwrap().is_none());
    // The chats survive in the store and continue with a new agent.
    let again = create(&rt, config(&[])).await;
    let r = turn(&rt, &again, "a1", "back").await;
    assert_eq!(meta(&r, "session.recovered"), &json!(true));
}

#[tokio::test]
async fn delete_is_final() {
    let rt = instant();
    let agent = create(&rt, config(&[])).await;
    turn(&rt, &agent, "gone", "secret").await;
    assert!(rt.delete_session("gone").await.unwrap());
    assert!(rt.store().get_session("gone").await.unwrap().is_none());
    let r = turn(&rt, &agent, "gone", "hello?").await;
    assert_eq!(meta(&r, "session.created"), &json!(true), "no resurrection");
    assert_eq!(meta(&r, "session.events"), &json!(2));
}

#[tokio::test]
async fn a_turn_reads_a_bounded_window_whatever_the_conversation_length() {
    let rt = builder(0, 0)
        .config(RuntimeConfig {
            history_window: 8,
            ..quiet_config()
        })
        .build()
        .unwrap();
    let agent = create(&rt, config(&[])).await;
    let mut prompts = Vec::new();
    for i in 0..60 {
        let r = turn(&rt, &agent, "long", &format!("turn {}", i % 10)).await;
        assert!(meta(&r, "session.window_events").as_u64().unwrap() <= 8);
        prompts.push(meta(&r, "token_usage.prompt_tokens").as_u64().unwrap());
    }
    assert_eq!(
        prompts[20], prompts[59],
        "prompt size stops growing once the window is full"
    );
    assert_eq!(
        rt.store().get_session("long").await.unwrap().unwrap().event_count,
        120,
        "the store keeps it all"
    );
}

/// A tool that says when it started and waits to be released: a turn held mid-flight.
fn gate_tool(started: Arc<Notify>, release: Arc<Notify>) -> RegisteredTool {
    let spec = tool_spec("test.gate", json!({"type": "object"}));
    RegisteredTool::new_async(
        spec,
        FnTool(move |_p: Metadata, _c: ToolContext| {
            let (started, release) = (Arc::clone(&started), Arc::clone(&release));
            async move {
                started.notify_one();
                release.notified().await;
                Ok::<_, ToolError>(json!({"released": true}))
            }
        }),
    )
    .unwrap()
}

/// A runtime with `cfg` and the gate tool, and the gate's two signals (started, release).
fn gated(cfg: RuntimeConfig) -> (Shared, Arc<Notify>, Arc<Notify>) {
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let rt = builder(0, 0)
        .config(cfg)
        .tool(gate_tool(Arc::clone(&started), Arc::clone(&release)))
        .build()
        .unwrap();
    (Arc::new(rt), started, release)
}

#[tokio::test(start_paused = true)]
async fn sweeper_reclaims_sessions_then_runners_then_agents_and_never_a_busy_one() {
    let (rt, started, release) = gated(RuntimeConfig {
        session_idle_ttl: Duration::from_secs(60),
        runner_idle_ttl: Duration::ZERO,
        agent_idle_ttl: Duration::ZERO,
        ..quiet_config()
    });
    let agent = create(&rt, config(&["test.gate"])).await;
    let idle = create(&rt, config(&["crm_lookup"])).await;
    assert!(turn(&rt, &idle, "quiet", "hi").await.is_success());

    let busy = {
        let (rt, agent) = (Arc::clone(&rt), agent.clone());
        tokio::spawn(async move { turn(&rt, &agent, "busy", "run the gate").await })
    };
    started.notified().await;

    let far = Instant::now() + Duration::from_secs(3600);
    assert_eq!(rt.sweep_at(Instant::now()).await.sessions, 0, "nothing is idle yet");
    let report = rt.sweep_at(far).await;
    // The idle chain goes in one pass: its session frees its runner, which frees its agent.
    // The busy turn's session, runner and agent all stay.
    assert_eq!((report.sessions, report.runners, report.agents), (1, 1, 1));
    assert!(rt.agent(&idle).is_none());
    assert!(rt.agent(&agent).is_some());
    assert_eq!(
        rt.store().get_session("quiet").await.unwrap().unwrap().state,
        SessionState::Archived
    );

    release.notify_one();
    assert!(busy.await.unwrap().is_success());
    let report = rt.sweep_at(far + Duration::from_secs(3600)).await;
    assert_eq!((report.sessions, report.runners, report.agents), (1, 1, 1));
    let stats = rt.stats();
    assert_eq!(
        (stats.active_agents, stats.active_runners, stats.active_sessions),
        (0, 0, 0)
    );
    assert_eq!(
        (
            stats.reclaimed_sessions,
            stats.reclaimed_runners,
            stats.reclaimed_agents
        ),
        (2, 2, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn sweeper_keeps_agents_with_sessions_and_evicts_past_the_session_cap() {
    let cfg = RuntimeConfig {
        max_active_sessions: 10,
        agent_idle_ttl: Duration::ZERO,
        ..quiet_config()
    };
    let rt = builder(0, 0).config(cfg).build().unwrap();
    let agent = create(&rt, config(&[])).await;
    for i in 0..15 {
        turn(&rt, &agent, &format!("s{i}"), "hi").await;
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    let report = rt.sweep_at(Instant::now()).await;
    assert_eq!(report.sessions, 6, "down to 90 % of the cap, least recently used first");
    assert_eq!(
        (report.runners, report.agents),
        (0, 0),
        "the agent still serves sessions"
    );
    assert_eq!(rt.stats().active_sessions, 9);
    assert_eq!(
        rt.store().get_session("s0").await.unwrap().unwrap().state,
        SessionState::Archived
    );
    assert_eq!(
        rt.store().get_session("s14").await.unwrap().unwrap().state,
        SessionState::Active
    );
}

/// A hash table keeps its peak size as entries leave: once a burst of sessions past the bound
/// the table is reserved for (`max_active_sessions`) is swept, the sweeper gives the slack back
/// (counted); a sweep that leaves the table within its reservation does not.
#[tokio::test(start_paused = true)]
async fn a_swept_burst_of_sessions_gives_the_session_table_back() {
    let cfg = RuntimeConfig {
        session_idle_ttl: Duration::from_secs(60),
        max_sessions_per_agent: 100_000,
        max_active_sessions: 2_000,
        ..quiet_config()
    };
    let rt = Runtime::builder().config(cfg).time_scale(0.0).build().unwrap();
    let agent = create(&rt, config(&[])).await;
    // One successful turn on each of `n` new sessions named `prefix-i`.
    let sessions = |prefix: &'static str, n: usize| {
        let (rt, agent) = (&rt, &agent);
        async move {
            for i in 0..n {
                let r = turn(rt, agent, &format!("{prefix}-{i}"), "hi").await;
                assert!(r.is_success(), "{:?}", r.error);
            }
        }
    };
    // Within the reservation, idle or not, nothing is shrunk.
    sessions("early", 1_000).await;
    tokio::time::advance(Duration::from_secs(61)).await;
    turn(&rt, &agent, "steady", "hi").await;
    assert_eq!(rt.sweep_at(Instant::now()).await.sessions, 1_000);
    assert_eq!(rt.stats().session_table_shrinks, 0);
    // A burst of ten times the bound (no background sweeper here to hold it to the bound).
    sessions("burst", 20_000).await;
    tokio::time::advance(Duration::from_secs(61)).await;
    turn(&rt, &agent, "steady", "hi").await;
    // The burst goes idle; the one session used since stays.
    assert_eq!(rt.sweep_at(Instant::now()).await.sessions, 20_000);
    assert_eq!(rt.stats().active_sessions, 1);
    assert_eq!(rt.stats().session_table_shrinks, 1);
    // The session left is still served from memory, and the fitted map is not shrunk again.
    let r = turn(&rt, &agent, "steady", "again").await;
    assert!(r.is_success(), "{:?}", r.error);
    assert_eq!(rt.stats().sessions_recovered, 0);
    rt.sweep_at(Instant::now()).await;
    assert_eq!(rt.stats().session_table_shrinks, 1);
}

#[tokio::test(start_paused = true)]
async fn background_sweeper_runs_on_its_interval() {
    let cfg = RuntimeConfig {
        sweep_interval: Some(Duration::from_secs(30)),
        session_idle_ttl: Duration::from_secs(60),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::builder().config(cfg).time_scale(0.0).build().unwrap();
    let agent = rt.create_agent(config(&[])).await.unwrap().agent_id;
    turn(&rt, &agent, "s", "hi").await;
    // Virtual time: the sweeper's ticks at 30 s and 60 s find the session not yet idle long enough.
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(rt.stats().reclaimed_sessions, 0);
    // Its tick at 90 s does.
    tokio::time::sleep(Duration::from_secs(32)).await;
    assert_eq!(rt.stats().reclaimed_sessions, 1);
    assert_eq!(rt.stats().active_sessions, 0);
}

/// A turn waits for the turns before it on its session at most `session_wait`; then it fails
/// with `session.busy` (writing nothing), and the session serves the next turn normally.
#[tokio::test(start_paused = true)]
async fn a_turn_waits_for_its_session_at_most_session_wait_then_is_busy() {
    let (rt, started, release) = gated(RuntimeConfig {
        session_wait: Duration::from_millis(250),
        ..quiet_config()
    });
    let agent = create(&rt, config(&["test.gate"])).await;
    let held = {
        let (rt, agent) = (Arc::clone(&rt), agent.clone());
        tokio::spawn(async move { turn(&rt, &agent, "held", "run the gate").await })
    };
    started.notified().await;

    let waited_from = Instant::now();
    let busy = turn(&rt, &agent, "held", "me too").await;
    let e = busy.error.expect("busy");
    assert_eq!(e.code, aether_contracts::ErrorCode::SessionBusy, "{e:?}");
    assert_eq!(
        waited_from.elapsed(),
        Duration::from_millis(250),
        "exactly the wait (paused clock)"
    );
    assert_eq!(e.details.unwrap()["retry_after_s"], 1);
    assert_eq!(rt.stats().session_busy, 1);
    assert!(
        turn(&rt, &agent, "other", "hi").await.is_success(),
        "other sessions never wait"
    );

    release.notify_one();
    assert!(held.await.unwrap().is_success());
    let page = rt.store().events_page("held", None, 100).await.unwrap();
    assert!(
        page.events.iter().all(|e| e.message.text_content() != "me too"),
        "the refused turn wrote nothing"
    );
    let gate_again = {
        let (rt, agent) = (Arc::clone(&rt), agent.clone());
        tokio::spawn(async move { turn(&rt, &agent, "held", "again").await })
    };
    started.notified().await;
    release.notify_one();
    assert!(
        gate_again.await.unwrap().is_success(),
        "the session serves its next turn"
    );
}
