//! An OpenAI-compatible chat-completions provider (OpenAI, Azure OpenAI, DeepSeek, vLLM,
//! llama.cpp server, Ollama, `aether sim-llm`), over reqwest with connection reuse.
//!
//! * Plain and streamed (server-sent events) answers; streamed tool-call fragments are
//!   reassembled by index; images go as data URLs; usage is read from the answer.
//! * Timeouts: connect, first byte (also the longest silence inside a stream), total.
//! * Retries on 429 and 5xx and on connection failures, with exponential backoff and jitter,
//!   honouring `Retry-After`; a streamed answer is retried only before its first byte.
//! * A circuit breaker per provider (one per endpoint): after `breaker_threshold` failed calls
//!   in a row it fails fast for `breaker_cooldown`, then lets one call try.
//! * Every failure is a [`ModelError`], which surfaces as `model.upstream` with the status and the
//!   provider's own message. The API key is sent as a bearer token and never logged.
//!
//! Tool names: OpenAI allows `[A-Za-z0-9_-]` only, so `namespace.tool` travels as
//! `namespace__tool` and is mapped back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use aether_contracts::{ContentPart, MessageContent, Metadata, Role, ToolCall};
use async_trait::async_trait;
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{DeltaSink, ModelError, ModelProvider, ModelRequest, ModelResponse, ProviderInfo, TokenUsage};
use crate::multimodal;

/// Settings of one OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Provider name in results (`openai`, `vllm`, ...).
    pub name: String,
    /// Base URL up to `/v1`, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    pub api_key: Option<String>,
    pub connect_timeout: Duration,
    /// Longest wait for the response headers, and for the next piece of a stream.
    pub first_byte_timeout: Duration,
    pub total_timeout: Duration,
    pub max_retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    /// USD per 1,000 prompt and completion tokens, for cost (0 when unknown).
    pub prompt_price_per_1k: f64,
    pub completion_price_per_1k: f64,
}

impl OpenAiConfig {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            name: "openai".into(),
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            api_key: None,
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(60),
            total_timeout: Duration::from_secs(300),
            max_retries: 3,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            prompt_price_per_1k: 0.0,
            completion_price_per_1k: 0.0,
        }
    }
}

/// Fails fast after repeated failures.
struct Breaker {
    failures: AtomicU32,
    open_until_ms: AtomicU64,
    epoch: Instant,
}

impl Breaker {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// An OpenAI-compatible endpoint.
pub struct OpenAiProvider {
    client: reqwest::Client,
    cfg: OpenAiConfig,
    info: ProviderInfo,
    breaker: Breaker,
    calls: AtomicU64,
}

fn encode_name(name: &str) -> String {
    name.replace('.', "__")
}

fn decode_name(name: &str) -> String {
    name.replace("__", ".")
}

/// A failed attempt and whether another may follow.
struct Attempt {
    error: ModelError,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl OpenAiProvider {
    pub fn new(cfg: OpenAiConfig) -> Result<Self, ModelError> {
        let client = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| ModelError::Other(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            info: ProviderInfo {
                name: cfg.name.clone(),
                simulated: false,
            },
            breaker: Breaker {
                failures: AtomicU32::new(0),
                open_until_ms: AtomicU64::new(0),
                epoch: Instant::now(),
            },
            calls: AtomicU64::new(0),
            cfg,
        })
    }

    pub fn config(&self) -> &OpenAiConfig {
        &self.cfg
    }

    fn body(&self, req: &ModelRequest<'_>, stream: bool) -> Value {
        let mut messages = Vec::with_capacity(req.history.len() + 1);
        if !req.system.text.is_empty() {
            messages.push(json!({"role": "system", "content": &*req.system.text}));
        }
        for e in req.history.iter() {
            let m = &e.message;
            match m.role {
                Role::Tool => {
                    for r in &e.tool_results {
                        let content = if r.is_success() {
                            r.result_data.to_string()
                        } else {
                            json!({"status": r.status, "error": r.error_message}).to_string()
                        };
                        messages.push(json!({"role": "tool", "tool_call_id": r.call_id, "content": content}));
                    }
                }
                Role::Assistant => {
                    let mut msg = json!({"role": "assistant", "content": m.text_content()});
                    if let Some(calls) = &m.tool_calls {
                        msg["tool_calls"] = calls
                            .iter()
                            .map(|c| {
                                json!({"id": c.call_id, "type": "function", "function": {
                                    "name": encode_name(&c.qualified_name()),
                                    "arguments": Value::Object(c.parameters.clone()).to_string(),
                                }})
                            })
                            .collect();
                    }
                    messages.push(msg);
                }
                Role::User | Role::System => {
                    let role = if m.role == Role::User { "user" } else { "system" };
                    let content = match &m.content {
                        MessageContent::Text(t) => Value::from(&**t),
                        MessageContent::Parts(parts) => Value::Array(
                            parts
                                .iter()
                                .filter_map(|p| match p {
                                    ContentPart::Text(t) => Some(json!({"type": "text", "text": t})),
                                    ContentPart::ImageReference(img) => multimodal::to_openai_part(img).or_else(|| {
                                        Some(json!({"type": "image_url", "image_url": {"url": img.image_path}}))
                                    }),
                                    ContentPart::FileReference(f) => Some(json!({"type": "text", "text": format!(
                                        "[file {} ({}, {} bytes)]", f.file_path, f.file_type, f.file_size.unwrap_or(0))})),
                                    ContentPart::FunctionCall(_) => None,
                                })
                                .collect(),
                        ),
                    };
                    messages.push(json!({"role": role, "content": content}));
                }
            }
        }
        let mut body = json!({"model": req.model.model, "messages": messages, "stream": stream});
        if stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        if let Some(t) = req.model.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(m) = req.model.max_tokens {
            body["max_tokens"] = json!(m);
        }
        if !req.tools.is_empty() {
            body["tools"] = req
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": encode_name(&t.full_name),
                        "description": t.spec.description,
                        "parameters": t.spec.parameters_schema,
                    }})
                })
                .collect();
        }
        // Simulation controls pass through for `aether sim-llm`; real endpoints ignore `metadata`.
        let sim: Metadata = req
            .metadata
            .iter()
            .filter(|(k, _)| k.starts_with("sim_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !sim.is_empty() {
            body["metadata"] = Value::Object(sim);
        }
        body
    }

    fn check_breaker(&self) -> Result<(), ModelError> {
        let until = self.breaker.open_until_ms.load(Ordering::Acquire);
        let now = self.breaker.now_ms();
        if now < until {
            return Err(ModelError::Other(format!(
                "circuit open for {}: {} failed calls in a row; next try in {} ms",
                self.cfg.base_url,
                self.breaker.failures.load(Ordering::Relaxed),
                until - now
            )));
        }
        Ok(())
    }

    fn record(&self, ok: bool) {
        if ok {
            self.breaker.failures.store(0, Ordering::Release);
            return;
        }
        let n = self.breaker.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.cfg.breaker_threshold {
            let until = self.breaker.now_ms() + self.cfg.breaker_cooldown.as_millis() as u64;
            self.breaker.open_until_ms.store(until, Ordering::Release);
            tracing::warn!(endpoint = %self.cfg.base_url, failures = n, "circuit opened");
        }
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>, rng: &mut rand::rngs::SmallRng) -> Duration {
        if let Some(d) = retry_after {
            return d.min(self.cfg.backoff_max);
        }
        let base = self
            .cfg
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cfg.backoff_max);
        base.mul_f64(rng.random_range(0.5..1.5))
    }

    async fn send(&self, body: &Value) -> Result<reqwest::Response, Attempt> {
        let url = format!("{}/chat/completions", self.cfg.base_url);
        let mut rb = self.client.post(&url).json(body);
        if let Some(key) = &self.cfg.api_key {
            rb = rb.bearer_auth(key);
        }
        let response = match tokio::time::timeout(self.cfg.first_byte_timeout, rb.send()).await {
            Err(_) => {
                return Err(Attempt {
                    error: ModelError::Timeout(self.cfg.first_byte_timeout),
                    retryable: true,
                    retry_after: None,
                })
            }
            Ok(Err(e)) => {
                let what = if e.is_connect() {
                    "cannot connect to"
                } else {
                    "request failed at"
                };
                return Err(Attempt {
                    error: ModelError::Other(format!("{what} {url}: {}", error_chain(&e))),
                    retryable: true,
                    retry_after: None,
                });
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(Duration::from_secs_f64);
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or(text);
        let error = match status.as_u16() {
            429 => ModelError::RateLimited {
                retry_after_ms: retry_after.map(|d| d.as_millis() as u64),
            },
            code => ModelError::Server { status: code, message },
        };
        Err(Attempt {
            error,
            retryable: status.as_u16() == 429 || status.is_server_error(),
            retry_after,
        })
    }

    /// Sends with retries; `None` when the breaker refuses.
    async fn send_with_retries(&self, body: &Value) -> Result<reqwest::Response, ModelError> {
        self.check_breaker()?;
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(super::sim::splitmix64(call));
        for attempt in 0.. {
            match self.send(body).await {
                Ok(r) => return Ok(r),
                Err(a) if a.retryable && attempt < self.cfg.max_retries => {
                    let wait = self.backoff(attempt, a.retry_after, &mut rng);
                    tracing::debug!(attempt, error = %a.error, "model call failed; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
                Err(a) => return Err(a.error),
            }
        }
        unreachable!("the loop returns")
    }

    fn cost(&self, usage: &TokenUsage) -> f64 {
        usage.prompt_tokens as f64 / 1000.0 * self.cfg.prompt_price_per_1k
            + usage.completion_tokens as f64 / 1000.0 * self.cfg.completion_price_per_1k
    }

    async fn complete(&self, req: &ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        let body = self.body(req, false);
        let response = self.send_with_retries(&body).await?;
        let simulated = is_simulated(&response);
        let v: Value = tokio::time::timeout(self.cfg.first_byte_timeout, response.json())
            .await
            .map_err(|_| ModelError::Timeout(self.cfg.first_byte_timeout))?
            .map_err(|e| ModelError::Other(format!("unreadable answer from {}: {e}", self.cfg.base_url)))?;
        let message = v
            .pointer("/choices/0/message")
            .ok_or_else(|| ModelError::Other(format!("answer from {} has no choices[0].message", self.cfg.base_url)))?;
        let text = message.get("content").and_then(Value::as_str).unwrap_or_default();
        let tool_calls = message
            .get("tool_calls")
            .and_then(Value::as_array)
            .map(|calls| {
                calls
                    .iter()
                    .map(|c| {
                        tool_call(
                            c.get("id").and_then(Value::as_str),
                            c.pointer("/function/name").and_then(Value::as_str).unwrap_or_default(),
                            c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}"),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let usage = usage_of(v.get("usage"));
        Ok(ModelResponse {
            text: text.into(),
            tool_calls,
            cost_usd: self.cost(&usage),
            usage,
            served_by: served_by(
                v.get("model").and_then(Value::as_str).unwrap_or(&req.model.model),
                simulated,
            ),
        })
    }

    async fn stream(&self, req: &ModelRequest<'_>, sink: &mut dyn DeltaSink) -> Result<ModelResponse, ModelError> {
        let body = self.body(req, true);
        let response = self.send_with_retries(&body).await?;
        let simulated = is_simulated(&response);
        let mut bytes = response.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut text = String::new();
        let mut calls: BTreeMap<u64, (Option<String>, String, String)> = BTreeMap::new();
        let mut usage = TokenUsage::default();
        let mut served_by = req.model.model.clone();
        let mut done = false;
        while !done {
            let next = tokio::time::timeout(self.cfg.first_byte_timeout, bytes.next())
                .await
                .map_err(|_| ModelError::Timeout(self.cfg.first_byte_timeout))?;
            let chunk = match next {
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    return Err(ModelError::Other(format!(
                        "the stream from {} broke off: {}",
                        self.cfg.base_url,
                        error_chain(&e)
                    )))
                }
                None => {
                    return Err(ModelError::Other(format!(
                        "the stream from {} ended before [DONE] (connection dropped)",
                        self.cfg.base_url
                    )))
                }
            };
            buf.extend_from_slice(&chunk);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line);
                let Some(data) = line.trim().strip_prefix("data:") else {
                    continue;
                };
                let data = data.trim();
                if data == "[DONE]" {
                    done = true;
                    break;
                }
                let v: Value = serde_json::from_str(data)
                    .map_err(|e| ModelError::Other(format!("bad stream event from {}: {e}", self.cfg.base_url)))?;
                if let Some(m) = v.get("model").and_then(Value::as_str) {
                    served_by = m.to_owned();
                }
                if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                    usage = usage_of(Some(u));
                }
                let Some(delta) = v.pointer("/choices/0/delta") else {
                    continue;
                };
                if let Some(t) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                    text.push_str(t);
                    sink.delta(t).await?;
                }
                for f in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let index = f.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let entry = calls.entry(index).or_default();
                    if let Some(id) = f.get("id").and_then(Value::as_str) {
                        entry.0 = Some(id.to_owned());
                    }
                    if let Some(n) = f.pointer("/function/name").and_then(Value::as_str) {
                        entry.1.push_str(n);
                    }
                    if let Some(a) = f.pointer("/function/arguments").and_then(Value::as_str) {
                        entry.2.push_str(a);
                    }
                }
            }
        }
        let tool_calls = calls
            .into_values()
            .map(|(id, name, args)| tool_call(id.as_deref(), &name, &args))
            .collect();
        Ok(ModelResponse {
            text: text.into(),
            tool_calls,
            cost_usd: self.cost(&usage),
            usage,
            served_by: self::served_by(&served_by, simulated),
        })
    }
}

/// `aether sim-llm` marks its answers; results then say the numbers are simulated.
fn is_simulated(r: &reqwest::Response) -> bool {
    r.headers()
        .get("x-aether-simulated")
        .is_some_and(|v| v.as_bytes() == b"true")
}

fn served_by(model: &str, simulated: bool) -> std::sync::Arc<str> {
    if simulated {
        format!("{model} (simulated by aether sim-llm)").into()
    } else {
        model.into()
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

fn tool_call(id: Option<&str>, name: &str, arguments: &str) -> ToolCall {
    let parameters = match serde_json::from_str::<Value>(if arguments.trim().is_empty() { "{}" } else { arguments }) {
        Ok(Value::Object(m)) => m,
        _ => {
            let mut m = Metadata::new();
            m.insert("_unparsed_arguments".into(), Value::from(arguments));
            m
        }
    };
    ToolCall {
        tool_name: decode_name(name),
        parameters,
        tool_namespace: None,
        call_id: id.map(str::to_owned),
    }
}

fn usage_of(u: Option<&Value>) -> TokenUsage {
    let n = |k: &str| u.and_then(|u| u.get(k)).and_then(Value::as_u64).unwrap_or(0);
    let (p, c) = (n("prompt_tokens"), n("completion_tokens"));
    TokenUsage {
        prompt_tokens: p,
        completion_tokens: c,
        total_tokens: n("total_tokens").max(p + c),
    }
}

#[async_trait]
impl ModelProvider for OpenAiProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn generate(&self, req: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        let r = tokio::time::timeout(self.cfg.total_timeout, self.complete(&req))
            .await
            .unwrap_or(Err(ModelError::Timeout(self.cfg.total_timeout)));
        self.record(r.is_ok());
        r
    }

    async fn generate_stream(
        &self,
        req: ModelRequest<'_>,
        sink: &mut dyn DeltaSink,
    ) -> Result<ModelResponse, ModelError> {
        let r = tokio::time::timeout(self.cfg.total_timeout, self.stream(&req, sink))
            .await
            .unwrap_or(Err(ModelError::Timeout(self.cfg.total_timeout)));
        self.record(r.is_ok());
        r
    }
}
