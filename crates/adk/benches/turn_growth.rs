//! Turn-cost growth on both frameworks: one conversation of 1,000 turns on the simulated model
//! at time scale 0 (memory store), the P50 of turns 1–100 against turns 901–1,000, per framework
//! and as the adk / native ratio. `cargo bench -p aether-adk` (a figure, never a test).

use std::time::{Duration, Instant};

use aether_contracts::{AgentConfig, TaskRequest, UniversalMessage};
use aether_runtime::model::SimConfig;
use aether_runtime::{Runtime, RuntimeConfig};

const TURNS: usize = 1_000;
const EDGE: usize = 100;

fn p50(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// (wall µs, overhead µs) of every turn of one 1,000-turn conversation.
async fn conversation(framework: &str) -> Vec<(f64, f64)> {
    let builder = Runtime::builder()
        .config(RuntimeConfig {
            sweep_interval: None,
            ..RuntimeConfig::default()
        })
        .simulated_model(SimConfig {
            fixed_latency: Some(Duration::ZERO),
            ..SimConfig::default()
        });
    let rt = aether_adk::with_adk(builder).build().expect("runtime");
    let mut config = AgentConfig::new("gpt-4o-mini", "You are a test agent.");
    config.framework_config.insert("framework".into(), framework.into());
    let agent = rt
        .process(TaskRequest::create_agent("create", config))
        .await
        .agent_id
        .expect("agent");
    let mut out = Vec::with_capacity(TURNS);
    for i in 0..TURNS {
        let request = TaskRequest::converse(
            format!("t{i}"),
            &agent,
            "long",
            vec![UniversalMessage::user(format!("message {i}"))],
        );
        let t = Instant::now();
        let r = rt.process(request).await;
        let wall = t.elapsed().as_nanos() as f64 / 1000.0;
        assert!(r.is_success(), "{framework} turn {i}: {:?}", r.error);
        let overhead = r.metadata["timing"]["overhead_us"].as_f64().unwrap_or(f64::NAN);
        out.push((wall, overhead));
    }
    out
}

async fn run() {
    println!("# Turn-cost growth over one 1,000-turn conversation (simulated model, time scale 0, memory store)\n");
    println!("| framework | wall P50 turns 1–100 µs | wall P50 turns 901–1000 µs | growth | overhead P50 early µs | late µs | growth |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut late = Vec::new();
    // Interleaved twice (A B A B), so that drift hits both alike; the second pair is reported.
    for round in 0..2 {
        for framework in ["native", "adk"] {
            let turns = conversation(framework).await;
            let early = &turns[..EDGE];
            let last = &turns[TURNS - EDGE..];
            let (mut ew, mut eo): (Vec<f64>, Vec<f64>) = early.iter().copied().unzip();
            let (mut lw, mut lo): (Vec<f64>, Vec<f64>) = last.iter().copied().unzip();
            let (ew, lw, eo, lo) = (p50(&mut ew), p50(&mut lw), p50(&mut eo), p50(&mut lo));
            if round == 1 {
                println!(
                    "| {framework} | {ew:.1} | {lw:.1} | {:.2}× | {eo:.1} | {lo:.1} | {:.2}× |",
                    lw / ew,
                    lo / eo
                );
                late.push(lw);
            }
        }
    }
    println!("\nturn 1,000 wall P50, adk / native: {:.1}×", late[1] / late[0]);
}

fn main() {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio")
        .block_on(run());
}
