//! A Gemini provider: `generateContent` and `streamGenerateContent?alt=sse`, with function
//! calling and inline image data, over the shared HTTP endpoint (timeouts, retries honouring
//! `Retry-After`, circuit breaker). The key travels in `x-goog-api-key`, never logged.
//!
//! Gemini's stream has no end marker: a stream that ends without a `finishReason` was cut off
//! and is reported as such. Tool schemas are reduced to the OpenAPI subset Gemini accepts.

use aether_contracts::{ContentPart, MessageContent, Role, ToolCall};
use async_trait::async_trait;
use serde_json::{json, Map, Value};

use super::http::{bad_event, is_simulated, served_by, Auth, Endpoint, EndpointConfig, SseReader};
use super::openai::{decode_name, encode_name};
use super::{DeltaSink, ModelError, ModelProvider, ModelRequest, ModelResponse, ProviderInfo, TokenUsage};
use crate::multimodal;

/// Settings of a Gemini endpoint (`base_url` up to `/v1beta`).
pub type GeminiConfig = EndpointConfig;

/// Google's Gemini API, or anything speaking its format (`aether sim-llm` does).
pub struct GeminiProvider {
    endpoint: Endpoint,
    info: ProviderInfo,
}

/// Keeps the schema keywords Gemini accepts.
fn gemini_schema(v: &Value) -> Value {
    const KEEP: &[&str] = &[
        "type",
        "description",
        "properties",
        "required",
        "enum",
        "items",
        "format",
        "nullable",
        "minimum",
        "maximum",
    ];
    match v {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, val) in o {
                if !KEEP.contains(&k.as_str()) {
                    continue;
                }
                let val = match k.as_str() {
                    "properties" => Value::Object(
                        val.as_object()
                            .map(|p| p.iter().map(|(n, s)| (n.clone(), gemini_schema(s))).collect())
                            .unwrap_or_default(),
                    ),
                    "items" => gemini_schema(val),
                    _ => val.clone(),
                };
                out.insert(k.clone(), val);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

impl GeminiProvider {
    pub fn new(mut cfg: GeminiConfig) -> Result<Self, ModelError> {
        if cfg.name == "openai" {
            cfg.name = "gemini".into();
        }
        Ok(Self {
            info: ProviderInfo {
                name: cfg.name.clone(),
                simulated: false,
            },
            endpoint: Endpoint::new(cfg, Auth::Header("x-goog-api-key"))?,
        })
    }

    fn url(&self, model: &str, stream: bool) -> String {
        let base = &self.endpoint.cfg.base_url;
        if stream {
            format!("{base}/models/{model}:streamGenerateContent?alt=sse")
        } else {
            format!("{base}/models/{model}:generateContent")
        }
    }

    fn body(&self, req: &ModelRequest<'_>) -> Value {
        let mut contents = Vec::with_capacity(req.history.len());
        for e in req.history.iter() {
            let m = &e.message;
            match m.role {
                Role::Tool => {
                    let parts: Vec<Value> = e
                        .tool_results
                        .iter()
                        .map(|r| json!({"functionResponse": {"name": encode_name(&r.tool_name), "response": {"status": r.status, "result": r.result_data, "error": r.error_message}}}))
                        .collect();
                    contents.push(json!({"role": "user", "parts": parts}));
                }
                Role::Assistant => {
                    let mut parts = Vec::new();
                    let text = m.text_content();
                    if !text.is_empty() {
                        parts.push(json!({"text": text}));
                    }
                    for c in m.tool_calls().unwrap_or_default() {
                        parts.push(
                            json!({"functionCall": {"name": encode_name(&c.qualified_name()), "args": c.parameters}}),
                        );
                    }
                    contents.push(json!({"role": "model", "parts": parts}));
                }
                Role::User | Role::System => {
                    let parts: Vec<Value> = match &m.content {
                        MessageContent::Text(t) => vec![json!({"text": &**t})],
                        MessageContent::Parts(parts) => parts
                            .iter()
                            .filter_map(|p| match p {
                                ContentPart::Text(t) => Some(json!({"text": t})),
                                ContentPart::ImageReference(img) => multimodal::to_gemini_part(img)
                                    .or_else(|| Some(json!({"file_data": {"file_uri": img.image_path, "mime_type": img.image_format}}))),
                                ContentPart::FileReference(f) => Some(json!({"text": format!("[file {} ({}, {} bytes)]", f.file_path, f.file_type, f.file_size.unwrap_or(0))})),
                                ContentPart::FunctionCall(_) => None,
                            })
                            .collect(),
                    };
                    contents.push(json!({"role": "user", "parts": parts}));
                }
            }
        }
        let mut body = json!({"contents": contents});
        if !req.system.text.is_empty() {
            body["systemInstruction"] = json!({"parts": [{"text": &*req.system.text}]});
        }
        let mut generation = Map::new();
        if let Some(t) = req.model.temperature {
            generation.insert("temperature".into(), json!(t));
        }
        if let Some(n) = req.model.max_tokens {
            generation.insert("maxOutputTokens".into(), json!(n));
        }
        if !generation.is_empty() {
            body["generationConfig"] = Value::Object(generation);
        }
        if !req.tools.is_empty() {
            let decls: Vec<Value> = req
                .tools
                .iter()
                .map(|t| json!({"name": encode_name(&t.full_name), "description": t.description, "parameters": gemini_schema(&t.parameters_schema)}))
                .collect();
            body["tools"] = json!([{"functionDeclarations": decls}]);
        }
        body
    }

    fn cost(&self, u: &TokenUsage) -> f64 {
        let c = &self.endpoint.cfg;
        u.prompt_tokens as f64 / 1000.0 * c.prompt_price_per_1k
            + u.completion_tokens as f64 / 1000.0 * c.completion_price_per_1k
    }

    async fn call(
        &self,
        req: &ModelRequest<'_>,
        sink: Option<&mut dyn DeltaSink>,
    ) -> Result<ModelResponse, ModelError> {
        let stream = sink.is_some();
        let response = self
            .endpoint
            .send_with_retries(
                &super::http::parse_url(&self.url(&req.model.model, stream), &self.endpoint.cfg.base_url)?,
                &self.body(req),
            )
            .await?;
        let simulated = is_simulated(&response);
        let mut acc = Accumulated::default();
        match sink {
            None => {
                let cfg = &self.endpoint.cfg;
                let v = response.json(cfg.first_byte_timeout, &cfg.base_url).await?;
                acc.absorb(&v, None).await?;
            }
            Some(sink) => {
                let base_url = &self.endpoint.cfg.base_url;
                let mut events = SseReader::new(response, self.endpoint.cfg.first_byte_timeout, base_url);
                while let Some(data) = events.next_data().await? {
                    let v: Value = serde_json::from_str(data).map_err(|e| bad_event(base_url, e))?;
                    acc.absorb(&v, Some(&mut *sink)).await?;
                }
                if !acc.finished {
                    return Err(ModelError::Other(format!(
                        "the stream from {} ended without a finishReason (connection dropped)",
                        self.endpoint.cfg.base_url
                    )));
                }
            }
        }
        Ok(ModelResponse {
            text: acc.text.into(),
            tool_calls: acc.calls,
            cost_usd: self.cost(&acc.usage),
            usage: acc.usage,
            served_by: served_by(acc.model.as_deref().unwrap_or(&req.model.model), simulated),
            truncated: acc.truncated,
        })
    }
}

#[derive(Default)]
struct Accumulated {
    text: String,
    calls: Vec<ToolCall>,
    usage: TokenUsage,
    model: Option<String>,
    finished: bool,
    /// It ended at `maxOutputTokens` (`finishReason: MAX_TOKENS`).
    truncated: bool,
}

impl Accumulated {
    async fn absorb<'s>(&mut self, v: &Value, mut sink: Option<&mut (dyn DeltaSink + 's)>) -> Result<(), ModelError> {
        if let Some(e) = v.get("error") {
            return Err(ModelError::Other(
                e.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("error in the stream")
                    .to_owned(),
            ));
        }
        if let Some(m) = v.get("modelVersion").and_then(Value::as_str) {
            self.model = Some(m.to_owned());
        }
        if let Some(u) = v.get("usageMetadata") {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            let (p, c) = (n("promptTokenCount"), n("candidatesTokenCount"));
            self.usage = TokenUsage {
                prompt_tokens: p,
                completion_tokens: c,
                total_tokens: n("totalTokenCount").max(p + c),
            };
        }
        let Some(candidate) = v.pointer("/candidates/0") else {
            return Ok(());
        };
        if candidate.get("finishReason").is_some_and(|f| !f.is_null()) {
            self.finished = true;
            self.truncated = candidate.get("finishReason").and_then(Value::as_str) == Some("MAX_TOKENS");
        }
        for part in candidate
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(t) = part.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                self.text.push_str(t);
                if let Some(s) = sink.as_deref_mut() {
                    s.deliver(t).await?;
                }
            }
            if let Some(f) = part.get("functionCall") {
                let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
                let parameters = f.get("args").and_then(Value::as_object).cloned().unwrap_or_default();
                let call_id = Some(format!("call-{}", self.calls.len()));
                self.calls.push(ToolCall {
                    tool_name: decode_name(name),
                    parameters,
                    tool_namespace: None,
                    call_id,
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ModelProvider for GeminiProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn generate(&self, req: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        self.endpoint.guarded(self.call(&req, None)).await
    }

    async fn generate_stream(
        &self,
        req: ModelRequest<'_>,
        sink: &mut dyn DeltaSink,
    ) -> Result<ModelResponse, ModelError> {
        self.endpoint.guarded(self.call(&req, Some(sink))).await
    }
}
