//! The OpenAI-compatible chat completions route: requests converted into the simulated model's
//! (messages to session events, tools to declarations, images inspected), answers plain or as
//! server-sent events with tool calls in fragments.

use std::collections::HashMap;
use std::sync::Arc;

use aether_contracts::{
    ContentPart, ImageReference, MessageContent, Metadata, ModelConfig, Role, SessionEvent, ToolCall, ToolResult,
    ToolStatus, UniversalMessage,
};
use aether_providers::multimodal::{self, MediaLimits};
use aether_providers::{ModelProvider, SystemPrompt};
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::faults::{admit, Fault, KeyHeader};
use crate::request::{file_reference, invalid, remote_tool, Converted};
use crate::sse::{model_error, sse_response, stream_text, Template};
use crate::{bad, simulated, Shared};

/// Converts an OpenAI request; the error is the 400 message.
pub(crate) fn convert(body: &Value) -> Result<Converted, String> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("`model` is required (a string)"))?;
    let messages = body.get("messages").and_then(Value::as_array).filter(|m| !m.is_empty());
    let messages = messages.ok_or_else(|| invalid("`messages` is required (a non-empty array)"))?;
    let mut system = String::new();
    let mut events: Vec<Arc<SessionEvent>> = Vec::new();
    let mut pending_results: Vec<ToolResult> = Vec::new();
    let mut call_names: HashMap<String, String> = HashMap::new();
    let (sid, aid): (Arc<str>, Arc<str>) = (Arc::from("sim-llm"), Arc::from("sim-llm"));
    let push = |events: &mut Vec<Arc<SessionEvent>>, m: UniversalMessage, r: Vec<ToolResult>| {
        events.push(Arc::new(SessionEvent::new(
            events.len() as u64,
            Arc::clone(&sid),
            Arc::clone(&aid),
            m,
            r,
        )));
    };
    for (i, m) in messages.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("messages[{i}].role is required")))?;
        if role != "tool" && !pending_results.is_empty() {
            push(
                &mut events,
                UniversalMessage::text(Role::Tool, "tool results"),
                std::mem::take(&mut pending_results),
            );
        }
        match role {
            "system" | "developer" => {
                system.push_str(m.get("content").and_then(Value::as_str).unwrap_or_default());
            }
            "user" => {
                let mut msg = UniversalMessage::user("");
                msg.content = match m.get("content") {
                    Some(Value::String(s)) => MessageContent::Text(Arc::from(s.as_str())),
                    Some(Value::Array(parts)) => MessageContent::Parts(
                        parts
                            .iter()
                            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                                Some("text") => p
                                    .get("text")
                                    .and_then(Value::as_str)
                                    .map(|t| file_reference(t).unwrap_or_else(|| ContentPart::Text(t.to_owned()))),
                                Some("image_url") => p.pointer("/image_url/url").and_then(Value::as_str).map(|u| {
                                    ContentPart::ImageReference(ImageReference {
                                        image_path: u.to_owned(),
                                        image_format: String::new(),
                                        width: None,
                                        height: None,
                                        metadata: Metadata::new(),
                                    })
                                }),
                                _ => None,
                            })
                            .collect(),
                    ),
                    _ => {
                        return Err(invalid(format!(
                            "messages[{i}].content must be a string or an array of parts"
                        )))
                    }
                };
                multimodal::inspect_message(&mut msg, &MediaLimits::default())
                    .map_err(|(part, e)| invalid(format!("messages[{i}].{part}: {e}")))?;
                push(&mut events, msg, Vec::new());
            }
            "assistant" => {
                let mut msg = UniversalMessage::assistant(m.get("content").and_then(Value::as_str).unwrap_or_default());
                if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                    let mut list = Vec::new();
                    for c in calls {
                        let name = c
                            .pointer("/function/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned();
                        let id = c.get("id").and_then(Value::as_str).map(str::to_owned);
                        if let Some(id) = &id {
                            call_names.insert(id.clone(), name.clone());
                        }
                        let args = c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
                        let parameters = serde_json::from_str::<Value>(args)
                            .ok()
                            .and_then(|v| v.as_object().cloned())
                            .unwrap_or_default();
                        list.push(ToolCall {
                            tool_name: name,
                            parameters,
                            tool_namespace: None,
                            call_id: id,
                        });
                    }
                    msg.set_tool_calls(Some(list));
                }
                push(&mut events, msg, Vec::new());
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let content = m.get("content").and_then(Value::as_str).unwrap_or_default();
                pending_results.push(ToolResult {
                    tool_name: call_names.get(&id).cloned().unwrap_or_else(|| id.clone()),
                    status: ToolStatus::Success,
                    result_data: serde_json::from_str(content).unwrap_or_else(|_| Value::from(content)),
                    error_message: None,
                    error: None,
                    execution_time: None,
                    call_id: Some(id),
                });
            }
            other => {
                return Err(invalid(format!(
                    "messages[{i}].role `{other}` is not system, user, assistant or tool"
                )))
            }
        }
    }
    if !pending_results.is_empty() {
        push(
            &mut events,
            UniversalMessage::text(Role::Tool, "tool results"),
            pending_results,
        );
    }
    let mut tools = Vec::new();
    for t in body.get("tools").and_then(Value::as_array).into_iter().flatten() {
        let f = t
            .get("function")
            .ok_or_else(|| invalid("tools[].function is required"))?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("tools[].function.name is required"))?;
        let schema = f
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object"}));
        tools.push(remote_tool(name, f.get("description"), schema)?);
    }
    let mut config = ModelConfig::new(model);
    config.max_tokens = body.get("max_tokens").and_then(Value::as_u64).map(|n| n as u32);
    let metadata = body
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    Ok(Converted {
        system: SystemPrompt::new(system),
        events,
        tools,
        model: config,
        metadata,
    })
}

pub(crate) fn tool_call_json(c: &ToolCall, i: usize) -> Value {
    let name = c.tool_name.strip_prefix("remote.").unwrap_or(&c.tool_name);
    json!({"index": i, "id": c.call_id, "type": "function", "function": {"name": name, "arguments": Value::Object(c.parameters.clone()).to_string()}})
}

pub(crate) fn usage_json(u: &aether_providers::TokenUsage) -> Value {
    json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens})
}

pub(crate) async fn chat(
    State(s): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (n, body, guard, fault) = match admit(&s, &headers, &body, KeyHeader::Bearer).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let c = match convert(&body) {
        Ok(c) => c,
        Err(message) => return bad(message),
    };
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let id = format!("chatcmpl-sim-{n:x}");
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if !stream {
        if fault == Some(Fault::DropMidStream) {
            let broken =
                futures::stream::once(async { Err::<Vec<u8>, _>(std::io::Error::other("simulated connection drop")) });
            return simulated(Response::new(Body::from_stream(broken)));
        }
        let req = c.request();
        let r = match s.model.generate(req).await {
            Ok(r) => r,
            Err(e) => return simulated(model_error(e)),
        };
        drop(guard);
        let calls: Vec<Value> = r
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, c)| tool_call_json(c, i))
            .collect();
        let mut message = json!({"role": "assistant", "content": if r.text.is_empty() { Value::Null } else { Value::from(&*r.text) }});
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        let finish = r.finish_reason();
        return simulated(
            Json(json!({
                "id": id, "object": "chat.completion", "created": created, "model": c.model.model,
                "system_fingerprint": "aether-sim-llm",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage_json(&r.usage),
            }))
            .into_response(),
        );
    }

    // Streamed: the simulated model writes pieces into a bounded channel feeding the body.
    let (tx, rx) = mpsc::channel::<Result<String, std::io::Error>>(64);
    let shared = Arc::clone(&s);
    let model_name = c.model.model.clone();
    tokio::spawn(async move {
        let _guard = guard;
        let frame = |delta: Value, finish: Value| {
            format!(
                "data: {}\n\n",
                json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model_name,
                       "system_fingerprint": "aether-sim-llm", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            )
        };
        if tx
            .send(Ok(frame(json!({"role": "assistant"}), Value::Null)))
            .await
            .is_err()
        {
            return;
        }
        let template = Template::new(
            &json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model_name,
                "system_fingerprint": "aether-sim-llm", "choices": [{"index": 0, "delta": {"content": Template::TEXT}, "finish_reason": null}]}),
            "\n\n",
        );
        let piece = |text: &str| template.frame(text);
        let Some(r) = stream_text(&shared, &c, fault, &tx, &piece).await else {
            return;
        };
        // Tool calls go out in fragments, as real servers send them: name first, arguments in two pieces.
        for (i, call) in r.tool_calls.iter().enumerate() {
            let full = tool_call_json(call, i);
            let args = full["function"]["arguments"].as_str().unwrap_or("{}").to_owned();
            let (a, b) = args.split_at(args.len() / 2);
            let head = json!({"tool_calls": [{"index": i, "id": full["id"], "type": "function", "function": {"name": full["function"]["name"], "arguments": a}}]});
            let tail = json!({"tool_calls": [{"index": i, "function": {"arguments": b}}]});
            if tx.send(Ok(frame(head, Value::Null))).await.is_err()
                || tx.send(Ok(frame(tail, Value::Null))).await.is_err()
            {
                return;
            }
        }
        let finish = r.finish_reason();
        let _ = tx.send(Ok(frame(json!({}), Value::from(finish)))).await;
        let usage = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model_name, "choices": [], "usage": usage_json(&r.usage)});
        let _ = tx.send(Ok(format!("data: {usage}\n\ndata: [DONE]\n\n"))).await;
    });
    sse_response(rx)
}
