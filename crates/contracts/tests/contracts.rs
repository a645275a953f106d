//! Round trips of the wire contracts against JSON written by hand from the reference, and the
//! errors that bad input gets.

use aether_contracts::*;
use serde_json::{json, Value};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Parses `name` as `T`, serialises it back and checks nothing was lost or invented.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(name: &str) -> T {
    let text = fixture(name);
    let parsed: T = from_json_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let original: Value = serde_json::from_str(&text).unwrap();
    let back = serde_json::to_value(&parsed).unwrap();
    assert_json_covers(&original, &back, name);
    let again: T = from_json_value(back.clone()).unwrap();
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        back,
        "{name}: second round trip differs"
    );
    parsed
}

/// Every field of `original` survives in `back` with the same value (`back` may add defaults).
fn assert_json_covers(original: &Value, back: &Value, at: &str) {
    match (original, back) {
        (Value::Object(o), Value::Object(b)) => {
            for (k, v) in o {
                let path = format!("{at}.{k}");
                match b.get(k) {
                    Some(bv) => assert_json_covers(v, bv, &path),
                    None => assert!(v.is_null() || v == &json!({}) || v == &json!(""), "{path} was dropped"),
                }
            }
        }
        (Value::Array(o), Value::Array(b)) => {
            assert_eq!(o.len(), b.len(), "{at}: array length");
            for (i, (x, y)) in o.iter().zip(b).enumerate() {
                assert_json_covers(x, y, &format!("{at}[{i}]"));
            }
        }
        (Value::Number(x), Value::Number(y)) => assert_eq!(x.as_f64(), y.as_f64(), "{at}"),
        (Value::String(x), Value::String(y)) if at.ends_with("_at") || at.ends_with("timestamp") => {
            let x = chrono::DateTime::parse_from_rfc3339(x).unwrap();
            let y = chrono::DateTime::parse_from_rfc3339(y).unwrap();
            assert_eq!(x, y, "{at}");
        }
        _ => assert_eq!(original, back, "{at}"),
    }
}

#[test]
fn create_request_round_trips() {
    let r: TaskRequest = round_trip("task_request_create.json");
    let c = r.agent_config.expect("agent_config");
    assert_eq!(c.model_config.model, "gemini-1.5-pro");
    assert_eq!(c.model_config.temperature, Some(0.2));
    assert_eq!(
        c.model_config.extra.get("top_p"),
        Some(&json!(0.9)),
        "unknown model_config keys are kept"
    );
    assert_eq!(c.available_tools, ["crm_lookup", "demo.kyc_screen"]);
    assert!(r.messages.is_empty());
}

#[test]
fn converse_request_round_trips_with_every_content_part() {
    let r: TaskRequest = round_trip("task_request_converse.json");
    assert_eq!(r.user_id(), Some("u-42"));
    assert_eq!(r.messages.len(), 3);
    let MessageContent::Parts(parts) = &r.messages[1].content else {
        panic!("parts")
    };
    assert!(matches!(parts[0], ContentPart::Text(ref t) if t == "And this scan:"));
    assert!(matches!(parts[1], ContentPart::ImageReference(ref i) if i.image_format == "png"));
    assert!(matches!(parts[2], ContentPart::FileReference(ref f) if f.file_size == Some(2048)));
    assert!(matches!(parts[3], ContentPart::FunctionCall(ref c) if c.qualified_name() == "demo.crm_lookup"));
    assert_eq!(r.available_knowledge[0].source_type, KnowledgeSourceType::VectorStore);
    assert_eq!(r.execution_config.as_ref().unwrap().execution_mode, ExecutionMode::Sync);
    assert_eq!(
        r.user_context.as_ref().unwrap().extra.get("locale"),
        Some(&json!("en-GB"))
    );
}

#[test]
fn results_and_chunks_round_trip() {
    let ok: TaskResult = round_trip("task_result_success.json");
    assert_eq!(ok.status, TaskStatus::Success);
    assert_eq!(ok.tool_results[1].status, ToolStatus::Timeout);
    assert_eq!(
        ok.tool_results[1].error.as_ref().unwrap().code,
        ErrorCode::ToolExecution
    );
    let err: TaskResult = round_trip("task_result_error.json");
    assert_eq!(err.error.unwrap().code, ErrorCode::ModelUpstream);
    let chunk: TaskStreamChunk = round_trip("stream_chunk.json");
    assert_eq!(chunk.chunk_type, TaskChunkType::ToolProposal);
    assert_eq!(chunk.chunk_kind, Some(ChunkKind::ToolProposal));
}

#[test]
fn enum_values_are_the_originals() {
    fn v<T: serde::Serialize>(x: &T) -> Value {
        serde_json::to_value(x).unwrap()
    }
    let statuses = [
        TaskStatus::Success,
        TaskStatus::Error,
        TaskStatus::Partial,
        TaskStatus::Timeout,
        TaskStatus::Cancelled,
    ];
    assert_eq!(
        statuses.map(|s| v(&s)),
        ["success", "error", "partial", "timeout", "cancelled"].map(|s| json!(s))
    );
    let modes = [
        ExecutionMode::Sync,
        ExecutionMode::Async,
        ExecutionMode::Streaming,
        ExecutionMode::Batch,
        ExecutionMode::Interactive,
    ];
    assert_eq!(
        modes.map(|s| v(&s)),
        ["sync", "async", "streaming", "batch", "interactive"].map(|s| json!(s))
    );
    let codes = [
        (ErrorCode::InternalError, "internal.error"),
        (ErrorCode::RequestValidation, "request.validation"),
        (ErrorCode::FrameworkUnavailable, "framework.unavailable"),
        (ErrorCode::FrameworkExecution, "framework.execution"),
        (ErrorCode::ModelUpstream, "model.upstream"),
        (ErrorCode::StreamInterrupted, "stream.interrupted"),
        (ErrorCode::ApprovalTimeout, "approval.timeout"),
        (ErrorCode::ToolNotDeclared, "tool.not_declared"),
        (ErrorCode::ToolExecution, "tool.execution"),
        (ErrorCode::ToolInvalidParameters, "tool.invalid_parameters"),
        (ErrorCode::SessionBusy, "session.busy"),
        (ErrorCode::StoreUnavailable, "store.unavailable"),
    ];
    for (code, s) in codes {
        assert_eq!(v(&code), json!(s));
        assert_eq!(code.as_str(), s);
        assert_eq!(from_json_value::<ErrorCode>(json!(s)).unwrap(), code);
    }
    assert_eq!(v(&ErrorCategory::RuntimeContext), json!("runtime_context"));
    assert_eq!(v(&ToolStatus::NotFound), json!("not_found"));
    assert_eq!(v(&TaskChunkType::ToolApprovalRequest), json!("tool_approval_request"));
    assert_eq!(v(&ChunkKind::TurnComplete), json!("turn.complete"));
    assert_eq!(v(&InteractionType::ToolApproval), json!("tool_approval"));
}

#[test]
fn unknown_field_is_named() {
    let e = from_json_str::<TaskRequest>(r#"{"task_id": "t", "sesion_id": "typo"}"#).unwrap_err();
    assert!(e.message.contains("unknown field `sesion_id`"), "{e}");
    let e = from_json_str::<TaskRequest>(r#"{"task_id":"t","messages":[{"role":"user","content":"hi","colour":1}]}"#)
        .unwrap_err();
    assert_eq!(e.path, "messages[0].colour");
    assert!(e.message.contains("unknown field `colour`"), "{e}");
    assert!(
        e.to_string().starts_with("messages[0].colour: unknown field `colour`"),
        "{e}"
    );
}

#[test]
fn wrong_type_is_named_with_its_path() {
    let e = from_json_str::<TaskRequest>(r#"{"task_id": 17}"#).unwrap_err();
    assert_eq!(e.path, "task_id");
    assert!(
        e.message.contains("invalid type: integer `17`, expected a string"),
        "{e}"
    );

    let e = from_json_str::<TaskRequest>(r#"{"task_id":"t","messages":[{"role":"robot","content":"x"}]}"#).unwrap_err();
    assert_eq!(e.path, "messages[0].role");
    assert!(e.message.contains("unknown variant `robot`"), "{e}");

    let e = from_json_str::<TaskRequest>(r#"{"task_id":"t","messages":[{"role":"user","content":42}]}"#).unwrap_err();
    assert_eq!(e.path, "messages[0].content");
    assert!(e.message.contains("a string or an array of content parts"), "{e}");

    let bad_part = r#"{"task_id":"t","messages":[{"role":"user","content":[{"video":"x"}]}]}"#;
    let e = from_json_str::<TaskRequest>(bad_part).unwrap_err();
    assert_eq!(e.path, "messages[0].content[0]");
    assert!(e.message.contains("unknown variant `video`"), "{e}");

    let e = from_json_str::<TaskRequest>(
        r#"{"task_id":"t","agent_config":{"agent_type":"a","model_config":{"model":"m","max_tokens":"many"}}}"#,
    )
    .unwrap_err();
    assert_eq!(e.path, "agent_config.model_config.max_tokens");

    let e =
        from_json_str::<TaskRequest>(r#"{"task_id":"t","execution_config":{"execution_mode":"turbo"}}"#).unwrap_err();
    assert_eq!(e.path, "execution_config.execution_mode");
    assert!(
        e.message
            .contains("expected one of `sync`, `async`, `streaming`, `batch`, `interactive`"),
        "{e}"
    );
}

#[test]
fn missing_field_and_broken_json_are_reported() {
    let e = from_json_str::<TaskRequest>(r#"{"messages": []}"#).unwrap_err();
    assert!(e.message.contains("missing field `task_id`"), "{e}");
    let e = from_json_str::<AgentConfig>(r#"{"agent_type":"a"}"#).unwrap_err();
    assert!(e.message.contains("missing field `model_config`"), "{e}");
    let e = from_json_str::<TaskRequest>(r#"{"task_id": "t""#).unwrap_err();
    assert!(e.line.is_some());
    let e = from_json_str::<TaskRequest>(r#"{"task_id": "t"} trailing"#).unwrap_err();
    assert!(e.message.contains("trailing"), "{e}");
}

#[test]
fn content_accepts_string_parts_and_null() {
    let m: UniversalMessage = from_json_str(r#"{"role":"assistant","content":null}"#).unwrap();
    assert_eq!(m.text_content(), "");
    let m: UniversalMessage = from_json_str(r#"{"role":"user","content":[{"text":"a"},{"text":"b"}]}"#).unwrap();
    assert_eq!(m.text_content(), "a\nb");
    assert_eq!(
        serde_json::to_value(UniversalMessage::user("hi")).unwrap(),
        json!({"role":"user","content":"hi"})
    );
}

#[test]
fn chunk_type_names_are_the_wire_values() {
    use aether_contracts::TaskChunkType::*;
    for t in [
        Processing,
        PlanDelta,
        PlanSummary,
        ToolCallRequest,
        ToolApprovalRequest,
        ToolProposal,
        ToolResult,
        UserInputRequest,
        Response,
        Progress,
        Complete,
        Error,
        Cancelled,
    ] {
        assert_eq!(serde_json::to_value(t).unwrap(), t.as_str(), "{t:?}");
    }
}
