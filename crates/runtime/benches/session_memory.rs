//! Heap bytes per chat session after one turn, and where they go.
//!
//! `cargo bench -p aether-runtime --bench session_memory` (Linux with glibc: heap from
//! `mallinfo2`, every arena). N sessions (default 50,000; `AETHER_BENCH_SESSIONS`) each take one
//! turn on the simulated model at time scale 0 with the memory store, after 2,000 warm-up
//! sessions; the heap's growth divided by N is the figure that `perf run --scenario burst_load
//! --concurrency 1 --iterations N --warmup 0` shows as an RSS slope, without the harness. Then
//! the same turns' parts are rebuilt alone to split it:
//! * the two events (`SessionEvent`: ids, message, timestamps), the question's text and the
//!   chat's internal session id they share (the simulated answer's text is the profile's canned
//!   text, one allocation for all sessions);
//! * the memory store's own share: its map entry, the record and the event list;
//! * the runtime's own share: what archiving the sessions frees (its session map, the chat's
//!   state and window), with the check that the parts add up to the whole.

use std::sync::Arc;

use aether_contracts::{AgentConfig, SessionEvent, TaskRequest, UniversalMessage};
use aether_runtime::model::SimConfig;
use aether_runtime::stats::heap_allocated_bytes;
use aether_runtime::{Runtime, RuntimeConfig};
use aether_store::{MemoryStore, SessionState, SessionStore};

fn heap() -> u64 {
    heap_allocated_bytes().expect("heap statistics need Linux with glibc (mallinfo2)")
}

fn turn(agent: &str, session: &str, i: usize) -> TaskRequest {
    TaskRequest::converse(
        format!("t{i}"),
        agent,
        session,
        vec![UniversalMessage::user(
            "Summarise the account status for customer C-1001.",
        )],
    )
}

fn per(bytes: i64, n: usize) -> f64 {
    bytes as f64 / n as f64
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::var("AETHER_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let store = Arc::new(MemoryStore::new());
    let rt = Runtime::builder()
        .config(RuntimeConfig {
            sweep_interval: None,
            max_active_sessions: 10_000_000,
            max_sessions_per_agent: 10_000_000,
            ..RuntimeConfig::default()
        })
        .store(Arc::clone(&store) as Arc<dyn SessionStore>)
        .simulated_model(SimConfig {
            time_scale: 0.0,
            ..SimConfig::default()
        })
        .time_scale(0.0)
        .build()
        .expect("runtime");
    let agent = rt
        .create_agent(AgentConfig::new("gpt-4o-mini", "You are a concise banking assistant."))
        .await
        .expect("agent")
        .agent_id;
    for i in 0..2_000 {
        assert!(rt.process(turn(&agent, &format!("warm-{i}"), i)).await.error.is_none());
    }
    let before = heap();
    for i in 0..n {
        let r = rt.process(turn(&agent, &format!("burst_load-main-req-{i}"), i)).await;
        assert!(r.error.is_none(), "{:?}", r.error);
    }
    let total = heap() as i64 - before as i64;
    let held = rt.stats().active_sessions;
    assert!(
        held as usize >= n,
        "the runtime holds {held} sessions, fewer than the {n} measured"
    );
    // The runtime's own share: what archiving the sessions frees (they leave the runtime's map;
    // the store keeps their records and events).
    let before_archive = heap();
    for i in 0..n {
        assert!(rt.cleanup_session(&format!("burst_load-main-req-{i}")).await.unwrap());
    }
    let runtime_own = before_archive as i64 - heap() as i64;

    // The parts, rebuilt alone the way a turn builds them: per session one internal session id
    // shared by its events (the agent id is the agent's, shared by all), fresh text.
    let sample = store.load_window("burst_load-main-req-0", 10).await.unwrap().events;
    assert_eq!(sample.len(), 2);
    let question = sample[0].message.text_content().len();
    let answer = sample[1].message.text_content().len();
    let record = store.get_session("burst_load-main-req-0").await.unwrap().unwrap();
    let agent_id: Arc<str> = Arc::clone(&sample[0].agent_id);

    let mut events: Vec<[Arc<SessionEvent>; 2]> = Vec::with_capacity(n);
    let before = heap();
    for _ in 0..n {
        let internal: Arc<str> = Arc::from(&*sample[0].internal_session_id);
        // The question is the request's own text; the simulated answer is the profile's canned
        // text, one for all sessions (a clone shares it).
        let event = |e: &SessionEvent| {
            let message = if e.seq == 0 {
                UniversalMessage::text(e.message.role, Arc::<str>::from(&*e.message.text_content()))
            } else {
                e.message.clone()
            };
            Arc::new(SessionEvent::new(
                e.seq,
                Arc::clone(&internal),
                Arc::clone(&agent_id),
                message,
                Vec::new(),
            ))
        };
        events.push([event(&sample[0]), event(&sample[1])]);
    }
    let events_bytes = heap() as i64 - before as i64;

    let alone = MemoryStore::new();
    let before = heap();
    for (i, pair) in events.iter().enumerate() {
        // The id is one allocation, shared with the runtime's session when the runtime writes
        // the record; alone, the store holds it.
        let id: Arc<str> = Arc::from(format!("burst_load-main-req-{i}"));
        let mut r = record.clone();
        r.session_id = Arc::clone(&id);
        r.state = SessionState::Active;
        alone.put_session(r).await.unwrap();
        alone.append_events(&id, pair).await.unwrap();
    }
    let store_bytes = heap() as i64 - before as i64;

    let events_per = per(events_bytes, n);
    let store_per = per(store_bytes, n);
    let total_per = per(total, n);
    println!("heap bytes per chat session after one turn (simulated model, memory store; {n} sessions)");
    println!("| part | bytes per session |");
    println!("|---|---:|");
    println!("| the two events, the question's text and the internal session id they share | {events_per:.0} |");
    println!("| of which the question's text (the {answer} B simulated answer is the profile's canned text, shared by all) | {question} |");
    println!("| the memory store's map entry, record and event list | {store_per:.0} |");
    println!(
        "| the runtime's own: session map, chat state, window (freed by archiving) | {:.0} |",
        per(runtime_own, n)
    );
    println!(
        "| (check: all − the three parts above; 0 when they add up) | {:.0} |",
        total_per - events_per - store_per - per(runtime_own, n)
    );
    println!("| **all** | **{total_per:.0}** |");
    println!(
        "inline sizes: SessionEvent {} B (of which UniversalMessage {} B), SessionRecord {} B; an Arc adds 16 B, and glibc rounds each allocation up to a multiple of 16 B with 8 B of header",
        std::mem::size_of::<SessionEvent>(),
        std::mem::size_of::<UniversalMessage>(),
        std::mem::size_of::<aether_store::SessionRecord>()
    );
    drop(events);
}
