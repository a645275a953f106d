//! Framework overhead of one turn through the engine, with the simulated model at time scale 0,
//! on each session store.
//!
//! `cargo bench -p aether-runtime --bench turn_overhead` (PostgreSQL from `AETHER_BENCH_PG_URL`,
//! default `postgres://postgres@127.0.0.1:5432/test`; skipped with a note when absent).
//!
//! For each store, from HDR histograms of every turn:
//! * wall time of `Runtime::process` per turn, and framework overhead = wall − model − tools
//!   (model and tool time as the engine measured them; at time scale 0 the model's time is the
//!   simulator's own work: token counting). The store's write is framework work, so it is in the
//!   overhead;
//! * P50 at turns 995–1,004 of long sessions against turns 5–14 of short ones, measured
//!   alternately in the same loop so machine noise hits both alike.

use std::sync::Arc;
use std::time::Instant;

use aether_contracts::{AgentConfig, TaskRequest, TurnReport, UniversalMessage};
use aether_runtime::model::SimConfig;
use aether_runtime::{Runtime, RuntimeConfig};
use aether_store::{BackgroundWrites, MemoryStore, PostgresStore, SessionStore, SqliteStore};
use hdrhistogram::Histogram;

const LONG_AT: u64 = 995;
const SHORT_AT: u64 = 5;
const MEASURED: u64 = 10;

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

fn runtime(store: Arc<dyn SessionStore>) -> Runtime {
    Runtime::builder()
        .config(RuntimeConfig {
            sweep_interval: None,
            max_active_sessions: 1_000_000,
            max_sessions_per_agent: 1_000_000,
            ..RuntimeConfig::default()
        })
        .store(store)
        .simulated_model(SimConfig {
            time_scale: 0.0,
            ..SimConfig::default()
        })
        .time_scale(0.0)
        .build()
        .expect("runtime")
}

fn nanos(us: f64) -> u64 {
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
        let timing = TurnReport::timing(&r.metadata).expect("turn timing");
        let overhead = wall.saturating_sub(nanos(timing.model_us) + nanos(timing.tool_us));
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

struct Row {
    store: String,
    fresh: Sample,
    short: Sample,
    long: Sample,
    fresh_rate: f64,
}

async fn measure(name: &str, store: Arc<dyn SessionStore>, fresh_turns: u64, sessions: usize) -> Row {
    let rt = runtime(store);
    let agent = rt
        .create_agent(AgentConfig::new("gpt-4o-mini", "You are a concise banking assistant."))
        .await
        .expect("agent")
        .agent_id;
    let tag = format!("{name}-{}", std::process::id());
    for i in 0..(fresh_turns / 10).max(100) {
        rt.process(turn(&agent, &format!("{tag}-warm-{i}"), i)).await;
    }
    let mut fresh = Sample::new();
    let started = Instant::now();
    for i in 0..fresh_turns {
        fresh.turn(&rt, turn(&agent, &format!("{tag}-fresh-{i}"), i)).await;
    }
    let fresh_rate = fresh_turns as f64 / started.elapsed().as_secs_f64();

    let long_ids: Vec<String> = (0..sessions).map(|s| format!("{tag}-long-{s}")).collect();
    let short_ids: Vec<String> = (0..sessions).map(|s| format!("{tag}-short-{s}")).collect();
    for id in &long_ids {
        for i in 0..LONG_AT {
            rt.process(turn(&agent, id, i)).await;
        }
    }
    for id in &short_ids {
        for i in 0..SHORT_AT {
            rt.process(turn(&agent, id, i)).await;
        }
    }
    let (mut long, mut short) = (Sample::new(), Sample::new());
    for round in 0..MEASURED {
        for s in 0..sessions {
            long.turn(&rt, turn(&agent, &long_ids[s], LONG_AT + round)).await;
            short.turn(&rt, turn(&agent, &short_ids[s], SHORT_AT + round)).await;
        }
    }
    rt.shutdown().await.expect("flush");
    Row {
        store: name.to_owned(),
        fresh,
        short,
        long,
        fresh_rate,
    }
}

async fn run() {
    let dir = std::env::temp_dir().join(format!("aether-bench-{}", std::process::id()));
    let mut rows = vec![measure("memory", Arc::new(MemoryStore::new()), 20_000, 64).await];
    let sqlite = Arc::new(SqliteStore::open(&dir.join("sync.db")).await.expect("sqlite"));
    rows.push(measure("sqlite (sync)", sqlite, 5_000, 16).await);
    let sqlite_async = Arc::new(SqliteStore::open(&dir.join("async.db")).await.expect("sqlite"));
    rows.push(
        measure(
            "sqlite (async)",
            Arc::new(BackgroundWrites::new(sqlite_async, 8192)),
            5_000,
            16,
        )
        .await,
    );
    let pg_url =
        std::env::var("AETHER_BENCH_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    match PostgresStore::open(&pg_url, 16).await {
        Ok(pg) => rows.push(measure("postgres (sync)", Arc::new(pg), 2_000, 8).await),
        Err(e) => println!("postgres skipped: {e}\n"),
    }
    let _ = std::fs::remove_dir_all(&dir);

    println!("# Turn overhead per store, simulated model at time scale 0 (release build, current-thread runtime)\n");
    println!("| store | sample | turns | wall P50 µs | wall P99 µs | overhead P50 µs | overhead P99 µs |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        for (name, s) in [
            ("fresh session per turn", &r.fresh),
            ("turn ~10", &r.short),
            ("turn ~1000", &r.long),
        ] {
            println!(
                "| {} | {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                r.store,
                s.wall.len(),
                us(&s.wall, 0.5),
                us(&s.wall, 0.99),
                us(&s.overhead, 0.5),
                us(&s.overhead, 0.99)
            );
        }
    }
    println!();
    for r in &rows {
        println!(
            "{:<16} fresh-session turns/s {:>9.0} · turn 1000 / turn 10 (P50 wall) {:.3}x (overhead {:.3}x; target <= 1.2x)",
            r.store,
            r.fresh_rate,
            us(&r.long.wall, 0.5) / us(&r.short.wall, 0.5),
            us(&r.long.overhead, 0.5) / us(&r.short.overhead, 0.5)
        );
    }
    let memory = &rows[0];
    let (p50, p99) = (us(&memory.fresh.overhead, 0.5), us(&memory.fresh.overhead, 0.99));
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!(
        "\nmemory store targets: overhead P50 <= 20 µs: {}  P99 <= 100 µs: {}",
        verdict(p50 <= 20.0),
        verdict(p99 <= 100.0)
    );
}

fn main() {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio")
        .block_on(run());
}
