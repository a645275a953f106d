//! `aether sim-llm`: serve the simulated model over HTTP (OpenAI-compatible format).

use std::time::Duration;

use aether_simllm::{Fault, SimLlm, SimLlmConfig};
use clap::Args;

use crate::exit::CliError;
use crate::sim_args::{comma_list, SimArgs};

#[derive(Args)]
#[command(after_long_help = "\
Routes: POST /v1/chat/completions (plain and stream: true; tools; images as data URLs; usage),
GET /v1/models, GET /healthz. Every answer carries the header x-aether-simulated: true.

Examples:
  aether sim-llm --port 8089 --time-scale 0
  aether sim-llm --port 8089 --model-latency-ms 200 --fault-rate 0.05 --faults 429,503,drop
  aether perf run --scenario burst_load --provider openai --base-url http://127.0.0.1:8089/v1")]
pub struct SimLlmArgs {
    /// Port to listen on.
    #[arg(long, default_value_t = 8089)]
    port: u16,

    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,

    /// Share of requests (0 to 1) that get an injected fault, drawn with --seed.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,

    /// Faults to draw from: 429, 500, 503, slow (slow first byte), drop (connection dropped mid-stream).
    #[arg(long, default_value = "429,500,503,slow,drop")]
    faults: String,

    /// Retry-After of an injected 429, in seconds (scaled by --time-scale).
    #[arg(long, default_value_t = 1.0)]
    retry_after_s: f64,

    /// Delay of a slow first byte, in milliseconds (scaled).
    #[arg(long, default_value_t = 2000)]
    slow_first_byte_ms: u64,

    /// Extra latency per request already in flight, in milliseconds (scaled): slowdown under load.
    #[arg(long, default_value_t = 0.0)]
    slowdown_ms_per_request: f64,

    /// Require this bearer token (taken from the named environment variable).
    #[arg(long, value_name = "NAME")]
    api_key_env: Option<String>,

    #[command(flatten)]
    sim: SimArgs,
}

pub async fn run(a: SimLlmArgs) -> Result<(), CliError> {
    if !(0.0..=1.0).contains(&a.fault_rate) {
        return Err(CliError::usage(format!(
            "--fault-rate must be between 0 and 1, got {}",
            a.fault_rate
        )));
    }
    let faults = comma_list(&a.faults)
        .iter()
        .map(|f| f.parse::<Fault>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(CliError::usage)?;
    let api_key = match &a.api_key_env {
        Some(name) => {
            Some(std::env::var(name).map_err(|_| CliError::usage(format!("--api-key-env: `{name}` is not set")))?)
        }
        None => None,
    };
    let cfg = SimLlmConfig {
        sim: a.sim.sim_config()?,
        fault_rate: a.fault_rate,
        faults,
        fault_sequence: Vec::new(),
        retry_after_s: a.retry_after_s,
        slow_first_byte: Duration::from_millis(a.slow_first_byte_ms),
        slowdown_per_inflight: Duration::from_secs_f64(a.slowdown_ms_per_request.max(0.0) / 1000.0),
        api_key,
    };
    let addr = format!("{}:{}", a.bind, a.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| CliError::usage(format!("cannot listen on {addr}: {e}")))?;
    // The bound address: with --port 0 the system picked the port.
    let addr = listener.local_addr().map_or(addr, |a| a.to_string());
    eprintln!("aether sim-llm: the SIMULATED model, OpenAI-compatible, at http://{addr}/v1 (Ctrl-C to stop)");
    tokio::select! {
        r = SimLlm::new(cfg).serve(listener) => r.map_err(|e| CliError::failed(format!("server failed: {e}"))),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
