//! Helpers shared by the sim-llm tests: a server on a free loopback port.
#![allow(dead_code)]

use aether_runtime::model::SimConfig;
use aether_simllm::{SimLlm, SimLlmConfig};

/// Serves `cfg` on 127.0.0.1 and returns the server and `http://ADDR`.
pub async fn serve(cfg: SimLlmConfig) -> (SimLlm, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sim = SimLlm::new(cfg);
    tokio::spawn(sim.clone().serve(listener));
    (sim, format!("http://{addr}"))
}

/// The simulated model with no delays.
pub fn instant() -> SimLlmConfig {
    SimLlmConfig {
        sim: SimConfig {
            time_scale: 0.0,
            ..SimConfig::default()
        },
        ..SimLlmConfig::default()
    }
}
