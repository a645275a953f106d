//! An OpenAI-compatible chat-completions provider (OpenAI, Azure OpenAI, DeepSeek, vLLM,
//! llama.cpp server, Ollama, `aether sim-llm`), with connection reuse: a plain-HTTP endpoint
//! through the lean `http_pool` client, any other (https, a proxy) through reqwest.
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
//!
//! A streamed answer's chunks are read by `chunk`: typed and borrowed from the network read, and
//! a chunk that repeats the last text-only chunk byte for byte around new text is read against
//! that frame without the JSON reader (most of a streamed answer's chunks).

mod chunk;

use std::collections::BTreeMap;

use aether_contracts::{ContentPart, MessageContent, Metadata, Role, ToolCall};
use async_trait::async_trait;
use serde_json::{json, Value};

use super::http::{is_simulated, served_by, Answer, Auth, Endpoint, EndpointConfig, SseReader};
use super::{DeltaSink, ModelError, ModelProvider, ModelRequest, ModelResponse, ProviderInfo, TokenUsage};
use crate::multimodal;
use chunk::{Chunk, ChunkReader};

/// An OpenAI-compatible endpoint.
pub struct OpenAiProvider {
    endpoint: Endpoint,
    info: ProviderInfo,
    /// `{base_url}/chat/completions`, parsed once (not per call).
    chat_url: super::http::RequestUrl,
}

/// Settings of an OpenAI-compatible endpoint.
pub type OpenAiConfig = EndpointConfig;

pub(crate) fn encode_name(name: &str) -> String {
    name.replace('.', "__")
}

pub(crate) fn decode_name(name: &str) -> String {
    name.replace("__", ".")
}

impl OpenAiProvider {
    pub fn new(cfg: OpenAiConfig) -> Result<Self, ModelError> {
        let chat_url = super::http::parse_url(&format!("{}/chat/completions", cfg.base_url), &cfg.base_url)?;
        Ok(Self {
            chat_url,
            info: ProviderInfo {
                name: cfg.name.clone(),
                simulated: false,
            },
            endpoint: Endpoint::new(cfg, Auth::Bearer)?,
        })
    }

    pub fn config(&self) -> &OpenAiConfig {
        &self.endpoint.cfg
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
                    if let Some(calls) = m.tool_calls() {
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
                        "description": t.description,
                        "parameters": t.parameters_schema,
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

    fn cost(&self, usage: &TokenUsage) -> f64 {
        usage.prompt_tokens as f64 / 1000.0 * self.endpoint.cfg.prompt_price_per_1k
            + usage.completion_tokens as f64 / 1000.0 * self.endpoint.cfg.completion_price_per_1k
    }

    /// Posts the chat request (with the endpoint's retries): the answer, and whether the
    /// simulator gave it.
    async fn post(&self, req: &ModelRequest<'_>, stream: bool) -> Result<(Answer, bool), ModelError> {
        let body = self.body(req, stream);
        let response = self.endpoint.send_with_retries(&self.chat_url, &body).await?;
        let simulated = is_simulated(&response);
        Ok((response, simulated))
    }

    async fn complete(&self, req: &ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        let (response, simulated) = self.post(req, false).await?;
        let cfg = &self.endpoint.cfg;
        let v = response.json(cfg.first_byte_timeout, &cfg.base_url).await?;
        let message = v.pointer("/choices/0/message").ok_or_else(|| {
            ModelError::Other(format!(
                "answer from {} has no choices[0].message",
                self.endpoint.cfg.base_url
            ))
        })?;
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
            truncated: v.pointer("/choices/0/finish_reason").and_then(Value::as_str) == Some("length"),
        })
    }

    async fn stream(&self, req: &ModelRequest<'_>, sink: &mut dyn DeltaSink) -> Result<ModelResponse, ModelError> {
        let (response, simulated) = self.post(req, true).await?;
        let base_url = &self.endpoint.cfg.base_url;
        let mut events = SseReader::new(response, self.endpoint.cfg.first_byte_timeout, base_url);
        // Room for the answer asked for at ~4 bytes a token, up to 8 KiB (the rest by doubling).
        let mut text = String::with_capacity(req.model.max_tokens.map_or(0, |n| (n as usize).min(2_048) * 4));
        let mut calls: BTreeMap<u64, (Option<String>, String, String)> = BTreeMap::new();
        let mut usage = TokenUsage::default();
        let mut served_by = req.model.model.clone();
        let mut truncated = false;
        let mut chunks = ChunkReader::default();
        loop {
            let Some(data) = events.next_event().await? else {
                return Err(ModelError::Other(format!(
                    "the stream from {base_url} ended before [DONE] (connection dropped)"
                )));
            };
            if data == b"[DONE]" {
                events.finish().await;
                break;
            }
            // Typed and borrowing: a chunk's text is read in place, nothing else it holds is kept;
            // one that repeats the last text's frame around new text is not parsed again.
            let chunk = match chunks.read(data, base_url)? {
                Chunk::Text(t) => {
                    if !t.is_empty() {
                        text.push_str(t);
                        sink.deliver(t).await?;
                    }
                    continue;
                }
                Chunk::Read(chunk) => chunk,
            };
            if let Some(m) = chunk.model.filter(|m| **m != *served_by) {
                served_by = m.0.into_owned();
            }
            if let Some(u) = chunk.usage.filter(|u| !u.is_null()) {
                usage = usage_of(Some(&u));
            }
            let Some(choice) = chunk.choices.and_then(|c| c.0) else {
                continue;
            };
            truncated |= choice.finish_reason.as_deref() == Some("length");
            let Some(delta) = choice.delta else {
                continue;
            };
            if let Some(t) = delta.content.filter(|t| !t.is_empty()) {
                text.push_str(&t);
                sink.deliver(&t).await?;
            }
            for f in delta.tool_calls.iter().flatten() {
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
            truncated,
        })
    }
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
        self.endpoint.guarded(self.complete(&req)).await
    }

    async fn generate_stream(
        &self,
        req: ModelRequest<'_>,
        sink: &mut dyn DeltaSink,
    ) -> Result<ModelResponse, ModelError> {
        self.endpoint.guarded(self.stream(&req, sink)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_that_is_not_a_url_is_refused_when_the_provider_is_made() {
        let e = OpenAiProvider::new(OpenAiConfig::new("127.0.0.1:8000/v1"))
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains("base_url `127.0.0.1:8000/v1` is not a valid URL"),
            "{e}"
        );
        let p = OpenAiProvider::new(OpenAiConfig::new("http://127.0.0.1:8000/v1/")).unwrap();
        assert_eq!(p.chat_url.url.as_str(), "http://127.0.0.1:8000/v1/chat/completions");
    }
}
