//! The Gemini `generateContent` and `streamGenerateContent` routes: requests converted into the
//! simulated model's, answers as Gemini candidates.

use std::sync::Arc;

use aether_contracts::{
    ContentPart, ImageReference, MessageContent, Metadata, ModelConfig, Role, SessionEvent, ToolCall, ToolResult,
    ToolStatus, UniversalMessage,
};
use aether_providers::multimodal::{self, MediaLimits};
use aether_providers::{ModelProvider, SystemPrompt};
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::faults::{admit, Fault, KeyHeader};
use crate::request::{file_reference, invalid, remote_tool, Converted};
use crate::sse::{model_error, sse_response, stream_text, Template};
use crate::{bad, error, simulated, Shared};

/// Converts a Gemini `generateContent` request; the error is the 400 message.
pub(crate) fn convert_gemini(body: &Value, model: &str) -> Result<Converted, String> {
    let contents = body.get("contents").and_then(Value::as_array).filter(|c| !c.is_empty());
    let contents = contents.ok_or_else(|| invalid("`contents` is required (a non-empty array)"))?;
    let system: String = body
        .pointer("/systemInstruction/parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let (sid, aid): (Arc<str>, Arc<str>) = (Arc::from("sim-llm"), Arc::from("sim-llm"));
    let mut events: Vec<Arc<SessionEvent>> = Vec::new();
    for (i, c) in contents.iter().enumerate() {
        let role = c.get("role").and_then(Value::as_str).unwrap_or("user");
        let parts = c
            .get("parts")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(format!("contents[{i}].parts is required")))?;
        let seq = events.len() as u64;
        let results: Vec<ToolResult> = parts
            .iter()
            .filter_map(|p| p.get("functionResponse"))
            .map(|f| ToolResult {
                tool_name: f.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                status: ToolStatus::Success,
                result_data: f.get("response").cloned().unwrap_or(Value::Null),
                error_message: None,
                error: None,
                execution_time: None,
                call_id: None,
            })
            .collect();
        if !results.is_empty() {
            let m = UniversalMessage::text(Role::Tool, "tool results");
            events.push(Arc::new(SessionEvent::new(
                seq,
                Arc::clone(&sid),
                Arc::clone(&aid),
                m,
                results,
            )));
            continue;
        }
        if role == "model" {
            let text: String = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            let mut m = UniversalMessage::assistant(text);
            let calls: Vec<ToolCall> = parts
                .iter()
                .filter_map(|p| p.get("functionCall"))
                .map(|f| ToolCall {
                    tool_name: f.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    parameters: f.get("args").and_then(Value::as_object).cloned().unwrap_or_default(),
                    tool_namespace: None,
                    call_id: None,
                })
                .collect();
            if !calls.is_empty() {
                m.set_tool_calls(Some(calls));
            }
            events.push(Arc::new(SessionEvent::new(
                seq,
                Arc::clone(&sid),
                Arc::clone(&aid),
                m,
                vec![],
            )));
            continue;
        }
        let mut m = UniversalMessage::user("");
        m.content = MessageContent::Parts(
            parts
                .iter()
                .filter_map(|p| {
                    if let Some(t) = p.get("text").and_then(Value::as_str) {
                        return Some(file_reference(t).unwrap_or_else(|| ContentPart::Text(t.to_owned())));
                    }
                    let d = p.get("inline_data").or_else(|| p.get("inlineData"))?;
                    let mime = d
                        .get("mime_type")
                        .or_else(|| d.get("mimeType"))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let data = d.get("data").and_then(Value::as_str).unwrap_or_default();
                    Some(ContentPart::ImageReference(ImageReference {
                        image_path: format!("data:{mime};base64,{data}"),
                        image_format: String::new(),
                        width: None,
                        height: None,
                        metadata: Metadata::new(),
                    }))
                })
                .collect(),
        );
        multimodal::inspect_message(&mut m, &MediaLimits::default())
            .map_err(|(part, e)| invalid(format!("contents[{i}].{part}: {e}")))?;
        events.push(Arc::new(SessionEvent::new(
            seq,
            Arc::clone(&sid),
            Arc::clone(&aid),
            m,
            vec![],
        )));
    }
    let mut tools = Vec::new();
    for t in body
        .pointer("/tools/0/functionDeclarations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("functionDeclarations[].name is required"))?;
        let schema = t
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object"}));
        tools.push(remote_tool(name, t.get("description"), schema)?);
    }
    let mut config = ModelConfig::new(model);
    config.max_tokens = body
        .pointer("/generationConfig/maxOutputTokens")
        .and_then(Value::as_u64)
        .map(|n| n as u32);
    Ok(Converted {
        system: SystemPrompt::new(system),
        events,
        tools,
        model: config,
        metadata: Metadata::new(),
    })
}

/// Gemini's `finishReason`: `MAX_TOKENS` when the answer was cut at the request's limit, else
/// `STOP` (tool calls too).
fn gemini_finish(r: &aether_providers::ModelResponse) -> &'static str {
    if r.truncated {
        "MAX_TOKENS"
    } else {
        "STOP"
    }
}

pub(crate) fn gemini_candidate(parts: Value, finish: Option<&str>) -> Value {
    let mut c = json!({"index": 0, "content": {"role": "model", "parts": parts}});
    if let Some(f) = finish {
        c["finishReason"] = json!(f);
    }
    c
}

pub(crate) fn gemini_usage(u: &aether_providers::TokenUsage) -> Value {
    json!({"promptTokenCount": u.prompt_tokens, "candidatesTokenCount": u.completion_tokens, "totalTokenCount": u.total_tokens})
}

pub(crate) fn gemini_calls(calls: &[ToolCall]) -> Vec<Value> {
    calls
        .iter()
        .map(|c| json!({"functionCall": {"name": c.tool_name.strip_prefix("remote.").unwrap_or(&c.tool_name), "args": c.parameters}}))
        .collect()
}

/// `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`.
pub(crate) async fn gemini(
    State(s): State<Arc<Shared>>,
    axum::extract::Path(target): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some((model, action)) = target.rsplit_once(':') else {
        return bad(format!(
            "`{target}`: expected MODEL:generateContent or MODEL:streamGenerateContent"
        ));
    };
    let stream = match action {
        "generateContent" => false,
        "streamGenerateContent" => true,
        other => return error(StatusCode::NOT_FOUND, format!("unknown method `{other}`"), "not_found"),
    };
    let (_n, body, guard, fault) = match admit(&s, &headers, &body, KeyHeader::Goog).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let c = match convert_gemini(&body, model) {
        Ok(c) => c,
        Err(message) => return bad(message),
    };
    if !stream {
        if fault == Some(Fault::DropMidStream) {
            let broken =
                futures::stream::once(async { Err::<Vec<u8>, _>(std::io::Error::other("simulated connection drop")) });
            return simulated(Response::new(Body::from_stream(broken)));
        }
        let r = match s.model.generate(c.request()).await {
            Ok(r) => r,
            Err(e) => return simulated(model_error(e)),
        };
        drop(guard);
        let mut parts: Vec<Value> = Vec::new();
        if !r.text.is_empty() {
            parts.push(json!({"text": &*r.text}));
        }
        parts.extend(gemini_calls(&r.tool_calls));
        return simulated(
            Json(json!({"candidates": [gemini_candidate(Value::Array(parts), Some(gemini_finish(&r)))], "usageMetadata": gemini_usage(&r.usage), "modelVersion": model}))
                .into_response(),
        );
    }
    let (tx, rx) = mpsc::channel::<Result<String, std::io::Error>>(64);
    let shared = Arc::clone(&s);
    let model = model.to_owned();
    tokio::spawn(async move {
        let _guard = guard;
        let template = Template::new(
            &json!({"candidates": [gemini_candidate(json!([{"text": Template::TEXT}]), None)]}),
            "\r\n\r\n",
        );
        let piece = |text: &str| template.frame(text);
        let Some(r) = stream_text(&shared, &c, fault, &tx, &piece).await else {
            return;
        };
        let last = json!({
            "candidates": [gemini_candidate(Value::Array(gemini_calls(&r.tool_calls)), Some(gemini_finish(&r)))],
            "usageMetadata": gemini_usage(&r.usage),
            "modelVersion": model,
        });
        let _ = tx.send(Ok(format!("data: {last}\r\n\r\n"))).await;
    });
    sse_response(rx)
}
