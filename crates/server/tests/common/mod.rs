//! Helpers shared by the server tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aether_runtime::approvals::ApprovalConfig;
use aether_runtime::model::SimConfig;
use aether_runtime::tools::demo::DemoToolConfig;
use aether_runtime::{Runtime, RuntimeBuilder, RuntimeConfig};
use aether_server::{AppState, ServerConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// Reads server-sent events until `stop` says so (or the stream ends); returns the chunks.
pub async fn read_sse(resp: &mut reqwest::Response, mut stop: impl FnMut(&Value) -> bool) -> Vec<Value> {
    let mut buf = String::new();
    let mut chunks = Vec::new();
    loop {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                let chunk: Value = serde_json::from_str(data).unwrap();
                let done = stop(&chunk);
                chunks.push(chunk);
                if done {
                    return chunks;
                }
            }
        }
        match resp.chunk().await.unwrap() {
            Some(bytes) => buf.push_str(std::str::from_utf8(&bytes).unwrap()),
            None => return chunks,
        }
    }
}

/// An `aether serve` in this process, on a loopback port.
pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<usize>>,
}

impl Server {
    pub async fn start(cfg: ServerConfig, rt: Runtime) -> Self {
        Self::start_shared(cfg, rt, aether_server::Shared::default()).await
    }

    /// A server whose state shares what `shared` holds (MCP clients, a cluster, Redis).
    pub async fn start_shared(cfg: ServerConfig, rt: Runtime, shared: aether_server::Shared) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState::with(Arc::new(rt), &cfg, shared);
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(aether_server::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            http: reqwest::Client::new(),
            stop: Some(stop),
            done,
        }
    }

    pub fn req(&self, method: reqwest::Method, path: &str, key: Option<&str>) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.req(method, path, Some(key));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, key, None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, key, Some(body)).await
    }

    pub async fn delete(&self, path: &str, key: &str) -> StatusCode {
        self.call(reqwest::Method::DELETE, path, key, None).await.0
    }

    /// Opens a live turn as tenant acme; the response streams server-sent events.
    pub async fn stream(&self, body: Value) -> reqwest::Response {
        self.req(reqwest::Method::POST, "/v1/tasks/stream", Some("key-acme"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn shutdown(mut self) -> usize {
        let _ = self.stop.take().unwrap().send(());
        self.done.await.unwrap().unwrap()
    }

    /// The text of /metrics.
    pub async fn metrics(&self) -> String {
        let r = self.req(reqwest::Method::GET, "/metrics", None).send().await.unwrap();
        r.text().await.unwrap()
    }

    /// Reads a gauge from /metrics.
    pub async fn gauge(&self, name: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

pub fn config() -> ServerConfig {
    let mut cfg = ServerConfig::default();
    cfg.add_env_keys("key-acme=acme,key-globex=globex").unwrap();
    cfg.validate().unwrap();
    cfg
}

pub fn runtime(sim: SimConfig) -> Runtime {
    builder(sim).build().unwrap()
}

/// The tests' runtime, before it is built: `aml_checker` needs approval, demo tools are instant.
pub fn builder(sim: SimConfig) -> RuntimeBuilder {
    let mut approvals = HashMap::new();
    approvals.insert("aml_checker".to_owned(), true);
    Runtime::builder()
        .config(RuntimeConfig {
            sweep_interval: None,
            approvals: ApprovalConfig {
                tools: approvals,
                ..ApprovalConfig::default()
            },
            ..RuntimeConfig::default()
        })
        .simulated_model(sim)
        .demo_tools(DemoToolConfig {
            time_scale: 0.0,
            ..DemoToolConfig::default()
        })
}

pub fn instant() -> SimConfig {
    SimConfig {
        time_scale: 0.0,
        ..SimConfig::default()
    }
}

/// The model takes `ms` per call (real time).
pub fn slow(ms: u64) -> SimConfig {
    SimConfig {
        time_scale: 1.0,
        fixed_latency: Some(Duration::from_millis(ms)),
        ..SimConfig::default()
    }
}

pub fn agent_body(tools: &[&str]) -> Value {
    json!({"agent_type": "support", "system_prompt": "Be brief.", "model_config": {"model": "gpt-4o-mini"}, "available_tools": tools})
}

pub fn turn(agent: &str, session: &str, task: &str) -> Value {
    json!({"task_id": task, "agent_id": agent, "session_id": session,
           "messages": [{"role": "user", "content": "hello"}]})
}

/// A TCP port free on loopback now (for a private server started on it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
