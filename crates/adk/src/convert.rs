//! Aether's messages and events ↔ adk-rust's `Content`, `Part` and `Event`.
//!
//! Both directions keep what either side reads: text, images (inline bytes or a reference),
//! tool calls with their ids, and tool results. A tool's result travels through adk as the
//! Aether `ToolResult` serialised as the function response, so that it comes back whole (status,
//! error, timing) and the model sees exactly what it sees on the native framework.

use std::sync::Arc;

use adk_core::{Content, Event, FunctionResponseData, Part};
use aether_contracts::{
    ContentPart, FileReference, ImageReference, MessageContent, Metadata, Role, ToolCall, ToolResult, ToolStatus,
    UniversalMessage,
};
use aether_store::SessionEvent;
use base64::Engine as _;
use serde_json::Value;

/// Where an event's adk invocation id is kept in the stored message's metadata.
pub const INVOCATION_KEY: &str = "adk_invocation_id";
/// Where the adk event id is kept.
pub const EVENT_KEY: &str = "adk_event_id";

/// adk's role for a message of `role`.
fn adk_role(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Assistant => "model",
        Role::Tool => "function",
        Role::System => "system",
    }
}

/// One stored event as adk sees it in a session.
pub fn event_of(e: &SessionEvent, agent_name: &str) -> Event {
    let invocation = e
        .message
        .metadata()
        .get(INVOCATION_KEY)
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut event = match e.message.metadata().get(EVENT_KEY).and_then(Value::as_str) {
        Some(id) => Event::with_id(id, invocation),
        None => Event::with_id(format!("aether-{}", e.seq), invocation),
    };
    event.timestamp = e.created_at;
    event.author = match e.message.role {
        Role::User => "user".to_owned(),
        _ => agent_name.to_owned(),
    };
    event.llm_response.content = Some(content_of(&e.message, &e.tool_results));
    event
}

/// A message (with a tool message's results) as adk content.
pub fn content_of(m: &UniversalMessage, results: &[ToolResult]) -> Content {
    let mut parts = Vec::new();
    match &m.content {
        MessageContent::Text(t) if t.is_empty() => {}
        MessageContent::Text(t) => parts.push(Part::Text { text: t.to_string() }),
        MessageContent::Parts(ps) => parts.extend(ps.iter().map(part_of)),
    }
    for c in m.tool_calls().unwrap_or_default() {
        parts.push(Part::FunctionCall {
            name: c.qualified_name().into_owned(),
            args: Value::Object(c.parameters.clone()),
            id: c.call_id.clone(),
            thought_signature: None,
        });
    }
    for r in results {
        parts.push(Part::FunctionResponse {
            function_response: FunctionResponseData::new(
                r.tool_name.clone(),
                serde_json::to_value(r).unwrap_or(Value::Null),
            ),
            id: r.call_id.clone(),
            annotations: None,
        });
    }
    Content {
        role: adk_role(m.role).to_owned(),
        parts,
    }
}

fn part_of(p: &ContentPart) -> Part {
    match p {
        ContentPart::Text(t) => Part::Text { text: t.clone() },
        ContentPart::FunctionCall(c) => Part::FunctionCall {
            name: c.qualified_name().into_owned(),
            args: Value::Object(c.parameters.clone()),
            id: c.call_id.clone(),
            thought_signature: None,
        },
        ContentPart::ImageReference(img) => {
            let mime = image_mime(&img.image_format);
            // What adk has no field for (the format as given, the size, the checks' facts) rides
            // in the part's annotations, so the image comes back as it went.
            let annotations = Some(serde_json::json!({ IMAGE_KEY: {
                "image_format": img.image_format,
                "width": img.width,
                "height": img.height,
                "metadata": img.metadata,
            }}));
            match inline_bytes(&img.image_path) {
                Some(data) => Part::InlineData {
                    mime_type: mime,
                    data,
                    uri: None,
                    annotations,
                },
                None => Part::FileData {
                    mime_type: mime,
                    file_uri: img.image_path.clone(),
                    annotations,
                },
            }
        }
        ContentPart::FileReference(f) => Part::FileData {
            mime_type: f.file_type.clone(),
            file_uri: f.file_path.clone(),
            annotations: Some(serde_json::json!({ FILE_KEY: {
                "file_size": f.file_size,
                "encoding": f.encoding,
                "metadata": f.metadata,
            }})),
        },
    }
}

/// Where a file's Aether fields ride in an adk part's annotations.
const FILE_KEY: &str = "aether_file";

/// Where an image's Aether fields ride in an adk part's annotations.
const IMAGE_KEY: &str = "aether_image";

/// An image format as a MIME type (`png`, `image/png` → `image/png`).
fn image_mime(format: &str) -> String {
    let format = format.to_ascii_lowercase();
    match format.starts_with("image/") {
        true => format,
        false => format!("image/{format}"),
    }
}

/// An image from adk: its Aether fields from the annotations, else what the part says.
fn image_of(mime_type: &str, path: String, annotations: Option<&Value>) -> ImageReference {
    let saved = annotations.and_then(|a| a.get(IMAGE_KEY));
    let field = |k: &str| saved.and_then(|s| s.get(k));
    ImageReference {
        image_path: path,
        image_format: field("image_format")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| mime_type.strip_prefix("image/").unwrap_or(mime_type).to_owned()),
        width: field("width").and_then(Value::as_u64).map(|w| w as u32),
        height: field("height").and_then(Value::as_u64).map(|h| h as u32),
        metadata: field("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    }
}

/// The bytes of an inline image (`data:` URL or bare base64); `None` for a path or URL.
fn inline_bytes(path: &str) -> Option<Vec<u8>> {
    let b64 = match path.strip_prefix("data:") {
        Some(rest) => rest.split_once(";base64,")?.1,
        None if path.contains('/') && !path.contains('=') && path.len() < 2048 => return None,
        None => path,
    };
    base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()
}

/// A tool's result as it came back through adk: the Aether result it carried, or for a call
/// adk answered itself (a refusal, a missing tool), an error result that says what adk said.
pub fn result_of(data: &FunctionResponseData, id: Option<&String>) -> ToolResult {
    if let Ok(r) = serde_json::from_value::<ToolResult>(data.response.clone()) {
        return r;
    }
    let message = data
        .response
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| data.response.to_string());
    ToolResult {
        tool_name: data.name.clone(),
        status: ToolStatus::Error,
        result_data: Value::Null,
        error_message: Some(message),
        error: None,
        execution_time: None,
        call_id: id.cloned(),
    }
}

/// adk content as an Aether message, with a tool message's results.
pub fn message_of(c: &Content) -> (UniversalMessage, Vec<ToolResult>) {
    let mut texts: Vec<&str> = Vec::new();
    let mut parts: Vec<ContentPart> = Vec::new();
    let mut calls: Vec<ToolCall> = Vec::new();
    let mut results: Vec<ToolResult> = Vec::new();
    let mut media = false;
    for p in &c.parts {
        match p {
            Part::Text { text } => {
                texts.push(text);
                parts.push(ContentPart::Text(text.clone()));
            }
            Part::FunctionCall { name, args, id, .. } => calls.push(ToolCall {
                tool_name: name.clone(),
                parameters: match args {
                    Value::Object(m) => m.clone(),
                    _ => Metadata::new(),
                },
                tool_namespace: None,
                call_id: id.clone(),
            }),
            Part::FunctionResponse {
                function_response, id, ..
            } => results.push(result_of(function_response, id.as_ref())),
            Part::InlineData {
                mime_type,
                data,
                annotations,
                ..
            } => {
                media = true;
                let b64 = base64::engine::general_purpose::STANDARD.encode(data);
                let path = format!("data:{mime_type};base64,{b64}");
                parts.push(ContentPart::ImageReference(image_of(
                    mime_type,
                    path,
                    annotations.as_ref(),
                )));
            }
            Part::FileData {
                mime_type,
                file_uri,
                annotations,
            } => {
                media = true;
                parts.push(match mime_type.starts_with("image/") {
                    true => ContentPart::ImageReference(image_of(mime_type, file_uri.clone(), annotations.as_ref())),
                    false => {
                        let saved = annotations.as_ref().and_then(|a| a.get(FILE_KEY));
                        let field = |k: &str| saved.and_then(|s| s.get(k));
                        ContentPart::FileReference(FileReference {
                            file_path: file_uri.clone(),
                            file_type: mime_type.clone(),
                            file_size: field("file_size").and_then(Value::as_u64),
                            encoding: field("encoding").and_then(Value::as_str).unwrap_or("utf-8").to_owned(),
                            metadata: field("metadata")
                                .and_then(Value::as_object)
                                .cloned()
                                .unwrap_or_default(),
                        })
                    }
                });
            }
            // Thinking traces and server-side parts: nothing here reads them.
            _ => {}
        }
    }
    let role = match c.role.as_str() {
        _ if !results.is_empty() => Role::Tool,
        "model" | "assistant" => Role::Assistant,
        "system" => Role::System,
        "function" | "tool" => Role::Tool,
        _ => Role::User,
    };
    let mut message = match (role, media) {
        (Role::Tool, _) => UniversalMessage::text(Role::Tool, tool_summary(&results)),
        (_, true) => UniversalMessage::new(role, MessageContent::Parts(parts)),
        (_, false) if texts.len() == 1 => UniversalMessage::text(role, texts[0]),
        (_, false) => UniversalMessage::text(role, Arc::<str>::from(texts.concat())),
    };
    if !calls.is_empty() {
        message.set_tool_calls(Some(calls));
    }
    (message, results)
}

/// A tool message's text: the same as the native framework's.
pub fn tool_summary(results: &[ToolResult]) -> String {
    let ok = results.iter().filter(|r| r.is_success()).count();
    format!("{ok} of {} tool calls succeeded", results.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assistant_message_with_calls_goes_there_and_back() {
        let mut m = UniversalMessage::assistant("looking");
        m.set_tool_calls(Some(vec![ToolCall {
            tool_name: "demo.weather".into(),
            parameters: serde_json::json!({"city": "Oslo"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            tool_namespace: None,
            call_id: Some("c1".into()),
        }]));
        let content = content_of(&m, &[]);
        assert_eq!(content.role, "model");
        let (back, results) = message_of(&content);
        assert_eq!(back.role, Role::Assistant);
        assert_eq!(back.text_content(), "looking");
        assert_eq!(back.tool_calls(), m.tool_calls());
        assert!(results.is_empty());
    }

    #[test]
    fn a_tool_result_comes_back_whole() {
        let r = ToolResult {
            tool_name: "demo.weather".into(),
            status: ToolStatus::Success,
            result_data: serde_json::json!({"temp": 3}),
            error_message: None,
            error: None,
            execution_time: Some(0.01),
            call_id: Some("c1".into()),
        };
        let content = content_of(
            &UniversalMessage::text(Role::Tool, "1 of 1 tool calls succeeded"),
            std::slice::from_ref(&r),
        );
        let (back, results) = message_of(&content);
        assert_eq!(back.role, Role::Tool);
        assert_eq!(results, vec![r]);
        assert_eq!(back.text_content(), "1 of 1 tool calls succeeded");
    }

    #[test]
    fn an_answer_adk_made_itself_is_an_error_result() {
        let data = FunctionResponseData::new(
            "demo.x",
            serde_json::json!({"error": "Tool 'demo.x' requires confirmation"}),
        );
        let r = result_of(&data, Some(&"c9".to_owned()));
        assert_eq!(r.status, ToolStatus::Error);
        assert_eq!(r.error_message.as_deref(), Some("Tool 'demo.x' requires confirmation"));
        assert_eq!(r.call_id.as_deref(), Some("c9"));
    }

    #[test]
    fn an_inline_image_keeps_its_bytes() {
        let png = base64::engine::general_purpose::STANDARD.encode([0x89u8, b'P', b'N', b'G']);
        let m = UniversalMessage::new(
            Role::User,
            MessageContent::Parts(vec![
                ContentPart::Text("what is this".into()),
                ContentPart::ImageReference(ImageReference {
                    image_path: format!("data:image/png;base64,{png}"),
                    image_format: "png".into(),
                    width: None,
                    height: None,
                    metadata: Metadata::new(),
                }),
            ]),
        );
        let content = content_of(&m, &[]);
        assert!(
            matches!(&content.parts[1], Part::InlineData { data, mime_type, .. } if data.len() == 4 && mime_type == "image/png")
        );
        let (back, _) = message_of(&content);
        match &back.content {
            MessageContent::Parts(p) => {
                assert!(
                    matches!(&p[1], ContentPart::ImageReference(i) if i.image_path == format!("data:image/png;base64,{png}") && i.image_format == "png")
                )
            }
            other => panic!("expected parts, got {other:?}"),
        }
    }
}
