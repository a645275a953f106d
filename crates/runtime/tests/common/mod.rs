//! Helpers shared by the runtime's integration tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{AgentConfig, TaskRequest, TaskResult, UniversalMessage, UniversalTool};
use aether_runtime::model::SimConfig;
use aether_runtime::tools::demo::DemoToolConfig;
use aether_runtime::{Runtime, RuntimeBuilder, RuntimeConfig};
use serde_json::Value;

/// Config without the background sweeper, so tests drive sweeps themselves.
pub fn quiet_config() -> RuntimeConfig {
    RuntimeConfig {
        sweep_interval: None,
        ..RuntimeConfig::default()
    }
}

/// A runtime whose model answers after exactly `model_ms` and whose demo tools take `tool_ms`.
pub fn builder(model_ms: u64, tool_ms: u64) -> RuntimeBuilder {
    Runtime::builder()
        .config(quiet_config())
        .simulated_model(SimConfig {
            fixed_latency: Some(Duration::from_millis(model_ms)),
            ..SimConfig::default()
        })
        .demo_tools(DemoToolConfig {
            latency: Duration::from_millis(tool_ms),
            ..DemoToolConfig::default()
        })
}

pub fn instant() -> Runtime {
    builder(0, 0).build().unwrap()
}

pub fn config(tools: &[&str]) -> AgentConfig {
    AgentConfig::new("gpt-4o-mini", "You are a test agent.").with_tools(tools.iter().copied())
}

pub async fn create(rt: &Runtime, config: AgentConfig) -> String {
    let r = rt.process(TaskRequest::create_agent("create", config)).await;
    assert!(r.is_success(), "create failed: {:?}", r.error);
    r.agent_id.unwrap()
}

pub fn turn_request(agent: &str, session: &str, text: &str) -> TaskRequest {
    TaskRequest::converse(
        format!("t-{session}-{text}"),
        agent,
        session,
        vec![UniversalMessage::user(text)],
    )
}

pub async fn turn(rt: &Runtime, agent: &str, session: &str, text: &str) -> TaskResult {
    rt.process(turn_request(agent, session, text)).await
}

/// `metadata.a.b` as a JSON value.
pub fn meta<'r>(r: &'r TaskResult, path: &str) -> &'r Value {
    let mut parts = path.split('.');
    let mut v = r
        .metadata
        .get(parts.next().unwrap())
        .unwrap_or_else(|| panic!("no metadata.{path}"));
    for p in parts {
        v = v.get(p).unwrap_or_else(|| panic!("no metadata.{path}"));
    }
    v
}

pub fn tool_spec(name: &str, schema: Value) -> UniversalTool {
    UniversalTool::new(name, "", schema)
}

pub type Shared = Arc<Runtime>;
