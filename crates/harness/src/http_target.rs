//! [`HttpTarget`]: the runtime behind `aether serve`, driven through its HTTP API exactly as a
//! client would (bearer key, `/v1/tasks`, `/v1/tasks/stream` as server-sent events), so one
//! summary format compares in-process and over-HTTP cost. Each turn request carries a W3C
//! `traceparent` derived from its task id (`trace_ids`). Turns to an `http://` target go through
//! the lean pooled hyper client ([`aether_runtime::model::http_pool`]), so that the harness is not
//! the bottleneck of its own measurement; everything else through reqwest.

use std::sync::Arc;

use aether_contracts::{
    ErrorCode, ErrorPayload, InteractionResponse, TaskRequest, TaskResult, TaskStatus, TaskStreamChunk, TurnReport,
};
use aether_runtime::model::http_pool::{self, HttpPool};
use aether_runtime::model::ProviderInfo;
use aether_runtime::StatsSnapshot;
use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::call::Call;
use crate::http_answer;
use crate::target::{LiveStream, Measured, Target, TargetInfo};
use crate::timeline::ServerSample;
use crate::trace_ids;

/// The W3C header each turn request carries (built once: `from_static` is `const`).
const TRACEPARENT: hyper::header::HeaderName = hyper::header::HeaderName::from_static("traceparent");

/// A server at `base_url` (`http://HOST:PORT`), with an API key.
pub struct HttpTarget {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
    /// The turn path's own client for `http://` targets (`http_pool`), with the request target
    /// of `/v1/tasks` built once; reqwest serves the rest (https, streams, admin and cleanup
    /// calls).
    pool: Option<(HttpPool, hyper::Uri)>,
    /// Learnt from the first answer's metadata.
    provider: Mutex<Option<ProviderInfo>>,
    /// An operator's key: the harness reads `/v1/admin/stats` with it at each interval.
    admin_key: Option<String>,
    /// The run's trace salt: each turn request carries a `traceparent` derived from its task id.
    trace_salt: u64,
}

impl HttpTarget {
    pub fn new(base_url: &str, api_key: Option<String>) -> Result<Self, String> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!("--target `{base_url}` must start with http:// or https://"));
        }
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(4096)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let auth = api_key.as_deref().map(http_pool::bearer).transpose()?;
        let pool = match HttpPool::for_base(&base, auth)? {
            Some(pool) => {
                let tasks = pool.uri("/v1/tasks").map_err(|e| e.to_string())?;
                Some((pool, tasks))
            }
            None => None,
        };
        Ok(Self {
            base,
            key: api_key,
            http,
            pool,
            provider: Mutex::new(None),
            admin_key: None,
            // Distinct per run and process (trace ids must not repeat across runs).
            trace_salt: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
                ^ u64::from(std::process::id()).rotate_left(32),
        })
    }

    /// Reads the server's stats route with `key` at each interval (see [`Target::server_sample`]).
    pub fn with_admin_key(mut self, key: Option<String>) -> Self {
        self.admin_key = key;
        self
    }

    /// Checks that the admin key reads the stats route (the error says why not).
    pub async fn check_admin(&self) -> Result<(), String> {
        let Some(key) = &self.admin_key else { return Ok(()) };
        let r = self
            .http
            .get(format!("{}/v1/admin/stats", self.base))
            .bearer_auth(key)
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.base))?;
        match r.status().as_u16() {
            200 => Ok(()),
            404 => Err(format!("{} has no /v1/admin/stats (an older aether serve?)", self.base)),
            s => Err(format!(
                "--admin-key: {} answered {s} on /v1/admin/stats: {}",
                self.base,
                r.text().await.unwrap_or_default()
            )),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    /// Checks that the server answers and the key is accepted.
    pub async fn check(&self) -> Result<(), String> {
        let r = self
            .request(reqwest::Method::GET, "/v1/agents")
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.base))?;
        match r.status().as_u16() {
            200 => Ok(()),
            401 => Err(format!("{} refused the API key (401): give --api-key", self.base)),
            s => Err(format!("{} answered GET /v1/agents with HTTP {s}", self.base)),
        }
    }

    /// Sends the JSON `body` of task `task_id` to `/v1/tasks`: the answer's status and body, or
    /// the failure to report.
    async fn send(&self, task_id: &str, body: Vec<u8>) -> Result<(u16, bytes::Bytes), TaskResult> {
        match &self.pool {
            Some((pool, tasks)) => {
                let traceparent = trace_ids::traceparent_bytes(self.trace_salt, task_id);
                let traceparent = hyper::header::HeaderValue::from_bytes(&traceparent)
                    .map_err(|_| failure(task_id, "the traceparent is not a header value".into()))?;
                match pool.post_json(tasks.clone(), body, &[(TRACEPARENT, traceparent)]).await {
                    Ok((status, body)) => Ok((status.as_u16(), body)),
                    Err(e) => Err(failure(task_id, aether_contracts::error_chain(&e))),
                }
            }
            None => {
                let sent = self
                    .request(reqwest::Method::POST, "/v1/tasks")
                    .header("traceparent", trace_ids::traceparent(self.trace_salt, task_id))
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await;
                let resp = sent.map_err(|e| failure(task_id, format!("HTTP request failed: {e}")))?;
                let status = resp.status().as_u16();
                match resp.bytes().await {
                    Ok(b) => Ok((status, b)),
                    Err(e) => Err(failure(task_id, format!("HTTP {status}: reading the body failed: {e}"))),
                }
            }
        }
    }

    /// Sends `body` and reads the figures straight from the answer's JSON ([`http_answer`]).
    async fn measure(&self, task_id: &str, body: Vec<u8>) -> Measured {
        let (status, body) = match self.send(task_id, body).await {
            Ok(answer) => answer,
            Err(failed) => return Measured::of(failed),
        };
        // Not in the `match` itself: its guard would live through the arms, which lock again.
        let want_provider = self.provider.lock().is_none();
        match http_answer::read(&body, want_provider) {
            Some((measured, provider)) => {
                if let Some(p) = provider {
                    self.provider.lock().get_or_insert(p);
                }
                measured
            }
            None => Measured::of(self.read_whole(task_id, status, &body)),
        }
    }

    /// The answer read whole: 200, and 504 with a `TaskResult` body; anything else is an API
    /// error.
    fn read_whole(&self, task_id: &str, status: u16, body: &[u8]) -> TaskResult {
        match serde_json::from_slice::<TaskResult>(body) {
            Ok(r) => {
                self.learn_provider(&r);
                r
            }
            Err(_) => failure(task_id, format!("HTTP {status}: {}", String::from_utf8_lossy(body))),
        }
    }

    fn learn_provider(&self, r: &TaskResult) {
        if self.provider.lock().is_some() {
            return;
        }
        // Agent-creation answers carry no provider report; the first turn's does.
        if let Ok(p) = TurnReport::provider(&r.metadata) {
            *self.provider.lock() = Some(ProviderInfo {
                name: p.name,
                simulated: p.simulated,
            });
        }
    }
}

fn failure(task_id: &str, message: String) -> TaskResult {
    TaskResult::failure(
        task_id,
        TaskStatus::Error,
        ErrorPayload::new(ErrorCode::InternalError, message),
    )
}

#[async_trait]
impl Target for HttpTarget {
    fn info(&self) -> TargetInfo {
        TargetInfo {
            kind: format!("http {}", self.base),
            store: None,
        }
    }

    fn provider(&self) -> ProviderInfo {
        self.provider.lock().clone().unwrap_or(ProviderInfo {
            name: "unknown (no answer from the server)".into(),
            simulated: false,
        })
    }

    fn trace_id(&self, task_id: &str) -> Option<String> {
        Some(trace_ids::trace_id(self.trace_salt, task_id))
    }

    async fn process(&self, request: TaskRequest) -> TaskResult {
        let task_id = &request.task_id;
        let body = match serde_json::to_vec(&request) {
            Ok(body) => body,
            Err(e) => return failure(task_id, format!("encoding the request failed: {e}")),
        };
        match self.send(task_id, body).await {
            Ok((status, body)) => self.read_whole(task_id, status, &body),
            Err(failed) => failed,
        }
    }

    /// The body written from the call's parts, encoded once per phase.
    async fn call(&self, call: Call<'_>) -> Measured {
        let mut body = Vec::with_capacity(call.json_size_hint());
        match call.write_json(&mut body) {
            Ok(()) => self.measure(call.task_id(), body).await,
            Err(e) => Measured::of(failure(call.task_id(), format!("encoding the request failed: {e}"))),
        }
    }

    async fn cleanup_agent(&self, agent_id: &str) -> Result<bool, String> {
        let r = self
            .request(reqwest::Method::DELETE, &format!("/v1/agents/{agent_id}"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match r.status().as_u16() {
            204 => Ok(true),
            404 => Ok(false),
            s => Err(format!("DELETE /v1/agents/{agent_id}: HTTP {s}")),
        }
    }

    async fn cleanup_session(&self, session_id: &str) -> Result<bool, String> {
        let r = self
            .request(reqwest::Method::POST, &format!("/v1/sessions/{session_id}/archive"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match r.status().as_u16() {
            200 => Ok(r.json::<serde_json::Value>().await.map_err(|e| e.to_string())?["archived"] == true),
            404 => Ok(false),
            s => Err(format!("POST /v1/sessions/{session_id}/archive: HTTP {s}")),
        }
    }

    /// Tool names are resolved by the server when the agent is created; here they pass as given.
    fn resolve_tool(&self, name: &str) -> Result<String, String> {
        Ok(name.to_owned())
    }

    fn runtime_stats(&self) -> Option<StatsSnapshot> {
        None
    }

    async fn server_sample(&self) -> Option<ServerSample> {
        let key = self.admin_key.as_ref()?;
        let v: Value = self
            .http
            .get(format!("{}/v1/admin/stats", self.base))
            .bearer_auth(key)
            .timeout(std::time::Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?
            .json()
            .await
            .ok()?;
        let mut counters: std::collections::BTreeMap<String, Value> = v
            .get("runtime")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        for (k, ptr) in [
            ("admission_in_flight", "/admission/in_flight"),
            ("admission_queued", "/admission/queued"),
            ("live_turns", "/live_turns/total"),
        ] {
            if let Some(x) = v.pointer(ptr) {
                counters.insert(k.to_owned(), x.clone());
            }
        }
        Some(ServerSample {
            rss_bytes: v.pointer("/process/rss_bytes").and_then(Value::as_u64),
            cpu_seconds: v.pointer("/process/cpu_seconds").and_then(Value::as_f64),
            cpu_pct: None,
            turns: v.pointer("/runtime/turns").and_then(Value::as_u64),
            counters,
        })
    }

    async fn shutdown(&self) -> Result<(), String> {
        Ok(())
    }

    async fn start_live(&self, request: TaskRequest) -> Result<Box<dyn LiveStream>, String> {
        let task_id = request.task_id.clone();
        let resp = self
            .request(reqwest::Method::POST, "/v1/tasks/stream")
            .header("traceparent", trace_ids::traceparent(self.trace_salt, &task_id))
            .json(&request)
            .send()
            .await
            .map_err(|e| format!("HTTP request failed: {e}"))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(format!("HTTP {status}: {body}"));
        }
        Ok(Box::new(SseStream {
            resp: Some(resp),
            buf: String::new(),
            approvals: Arc::new(ApprovalPoster {
                http: self.http.clone(),
                url: format!("{}/v1/live/{task_id}/approvals", self.base),
                key: self.key.clone(),
            }),
        }))
    }
}

struct ApprovalPoster {
    http: reqwest::Client,
    url: String,
    key: Option<String>,
}

/// A live turn read from server-sent events.
struct SseStream {
    resp: Option<reqwest::Response>,
    buf: String,
    approvals: Arc<ApprovalPoster>,
}

#[async_trait]
impl LiveStream for SseStream {
    async fn next_chunk(&mut self) -> Option<TaskStreamChunk> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                    if let Ok(chunk) = serde_json::from_str(data) {
                        return Some(chunk);
                    }
                }
            }
            let resp = self.resp.as_mut()?;
            match resp.chunk().await {
                Ok(Some(bytes)) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                _ => {
                    self.resp = None;
                    return None;
                }
            }
        }
    }

    /// Posts the answer in the background (the trait's answer is synchronous).
    fn respond(&self, response: &InteractionResponse) -> Result<(), String> {
        let p = Arc::clone(&self.approvals);
        let url = format!("{}/{}", p.url, response.interaction_id);
        let body = json!({"approved": response.approved, "user_message": response.user_message});
        tokio::spawn(async move {
            let mut r = p.http.post(url).json(&body);
            if let Some(k) = &p.key {
                r = r.bearer_auth(k);
            }
            if let Err(e) = r.send().await {
                tracing::warn!(error = %e, "posting an approval answer failed");
            }
        });
        Ok(())
    }

    async fn close(&mut self) {
        self.resp = None;
    }
}
