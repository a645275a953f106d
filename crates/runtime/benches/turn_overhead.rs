//! Framework overhead of one turn through the engine, with the simulated model at time scale 0.
//!
//! `cargo bench -p aether-runtime --bench turn_overhead`
//!
//! Prints, from HDR histograms of every turn:
//! * wall time of `Runtime::process` per turn, and framework overhead = wall − model − tools
//!   (model and tool time as the engine measured them; at time scale 0 the model's time is the
//!   simulator's own work: token counting and canned text);
//! * P50 at turns 995–1,005 of long sessions against turns 5–15 of short ones, measured
//!   alternately in the same loop so machine noise hits both alike.

use std::time::Instant;

use aether_contracts::{AgentConfig, TaskRequest, TaskResult, UniversalMessage};
use aether_runtime::model::SimConfig;
use aether_runtime::{Runtime, RuntimeConfig};
use hdrhistogram::Histogram;

const FRESH_TURNS: u64 = 20_000;
const SESSIONS: usize = 64;
const LONG_AT: u64 = 995;
const SHORT_AT: u64 = 5;
const MEASURED: u64 = 10;

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

fn runtime() -> Runtime {
    Runtime::builder()
        .config(RuntimeConfig {
            sweep_interval: None,
            max_active_sessions: 1_000_000,
            max_sessions_per_agent: 1_000_000,
            ..RuntimeConfig::default()
        })
        .simulated_model(SimConfig {
            time_scale: 0.0,
            ..SimConfig::default()
        })
        .time_scale(0.0)
        .build()
        .expect("runtime")
}

fn nanos(r: &TaskResult, key: &str) -> u64 {
    let us = r.metadata["timing"][key].as_f64().unwrap_or(0.0);
    (us * 1000.0) as u64
}

struct Sample {
    wall: Histogram<u64>,
    overhead: Histogram<u64>,
}

impl Sample {
    fn new() -> Self {
        Self {
            wall: hist(),
            overhead: hist(),
        }
    }

    async fn turn(&mut self, rt: &Runtime, req: TaskRequest) {
        let t = Instant::now();
        let r = rt.process(req).await;
        let wall = t.elapsed().as_nanos() as u64;
        assert!(r.is_success(), "turn failed: {:?}", r.error);
        let overhead = wall.saturating_sub(nanos(&r, "model_us") + nanos(&r, "tool_us"));
        self.wall.record(wall.max(1)).ok();
        self.overhead.record(overhead.max(1)).ok();
    }
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn turn(agent: &str, session: &str, i: u64) -> TaskRequest {
    TaskRequest::converse(
        format!("t{i}"),
        agent,
        session,
        vec![UniversalMessage::user("What is the status of my account?")],
    )
}

async fn run() {
    let rt = runtime();
    let agent = rt
        .create_agent(AgentConfig::new(
            "gpt-4o-mini",
            "You are a concise banking assistant.",
        ))
        .await
        .expect("agent")
        .agent_id;

    // Warm-up: tokenizer tables, allocator, branch predictors.
    for i in 0..2_000 {
        rt.process(turn(&agent, &format!("warm-{i}"), i)).await;
    }

    // 1. A fresh chat session every turn (per_request).
    let mut fresh = Sample::new();
    let started = Instant::now();
    for i in 0..FRESH_TURNS {
        fresh
            .turn(&rt, turn(&agent, &format!("fresh-{i}"), i))
            .await;
    }
    let fresh_elapsed = started.elapsed();

    // 2. Long versus short sessions, measured alternately.
    let agent2 = rt
        .create_agent(AgentConfig::new(
            "gpt-4o-mini",
            "You are a concise banking assistant. (long)",
        ))
        .await
        .expect("agent")
        .agent_id;
    let long_ids: Vec<String> = (0..SESSIONS).map(|s| format!("long-{s}")).collect();
    let short_ids: Vec<String> = (0..SESSIONS).map(|s| format!("short-{s}")).collect();
    // Spread sessions over two agents (cap 100 sessions each).
    let agent_for = |s: usize| {
        if s % 2 == 0 {
            agent.as_str()
        } else {
            agent2.as_str()
        }
    };
    for (s, id) in long_ids.iter().enumerate() {
        for i in 0..LONG_AT {
            rt.process(turn(agent_for(s), id, i)).await;
        }
    }
    for (s, id) in short_ids.iter().enumerate() {
        for i in 0..SHORT_AT {
            rt.process(turn(agent_for(s), id, i)).await;
        }
    }
    let mut long = Sample::new();
    let mut short = Sample::new();
    for round in 0..MEASURED {
        for s in 0..SESSIONS {
            long.turn(&rt, turn(agent_for(s), &long_ids[s], LONG_AT + round))
                .await;
            short
                .turn(&rt, turn(agent_for(s), &short_ids[s], SHORT_AT + round))
                .await;
        }
    }

    println!("# Turn overhead, simulated model at time scale 0 (release build, current-thread runtime)\n");
    println!("| sample | turns | wall P50 µs | wall P99 µs | overhead P50 µs | overhead P99 µs |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, s) in [
        ("fresh session per turn", &fresh),
        ("turn ~10 of a session", &short),
        ("turn ~1000 of a session", &long),
    ] {
        println!(
            "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            s.wall.len(),
            us(&s.wall, 0.5),
            us(&s.wall, 0.99),
            us(&s.overhead, 0.5),
            us(&s.overhead, 0.99)
        );
    }
    println!();
    println!(
        "fresh-session throughput: {:.0} turns/s on one thread",
        FRESH_TURNS as f64 / fresh_elapsed.as_secs_f64()
    );
    println!(
        "turn 1000 / turn 10, P50 wall: {:.3}x   P50 overhead: {:.3}x   (target <= 1.2x)",
        us(&long.wall, 0.5) / us(&short.wall, 0.5),
        us(&long.overhead, 0.5) / us(&short.overhead, 0.5)
    );
    let p50 = us(&fresh.overhead, 0.5);
    let p99 = us(&fresh.overhead, 0.99);
    println!(
        "targets: overhead P50 <= 20 µs: {}  P99 <= 100 µs: {}",
        verdict(p50 <= 20.0),
        verdict(p99 <= 100.0)
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

fn main() {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio")
        .block_on(run());
}
