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

/// A runtime whose agents use `provider` (registered as `name`), with no simulated delays.
pub fn runtime_with(
    name: &str,
    provider: std::sync::Arc<dyn aether_runtime::model::ModelProvider>,
) -> aether_runtime::Runtime {
    aether_runtime::Runtime::builder()
        .config(aether_runtime::RuntimeConfig {
            sweep_interval: None,
            ..aether_runtime::RuntimeConfig::default()
        })
        .provider(name, provider)
        .default_provider(name)
        .time_scale(0.0)
        .build()
        .unwrap()
}

/// Creates an agent for `model` with `tools`; returns its id.
pub async fn agent_for(rt: &aether_runtime::Runtime, model: &str, tools: &[&str]) -> String {
    let config = aether_contracts::AgentConfig::new(model, "Be brief.").with_tools(tools.iter().copied());
    rt.create_agent(config).await.unwrap().agent_id
}
