//! Built-in tools: `builtin.echo`, `builtin.timestamp` and `builtin.wait` (takes a while and
//! reports progress: the tool that exercises timeouts, cancellation and `tool.delta` chunks).

use aether_contracts::{Metadata, UniversalTool};
use serde_json::json;

use super::{FnTool, RegisteredTool, ToolContext, ToolError};

/// `builtin.echo {message}` → `{message}`.
pub fn echo() -> RegisteredTool {
    let schema = json!({
        "type": "object",
        "properties": {"message": {"type": "string", "description": "Text to echo back", "examples": ["hello"]}},
        "required": ["message"],
        "additionalProperties": false
    });
    RegisteredTool::new_async(
        UniversalTool::new("builtin.echo", "Returns its input unchanged.", schema),
        FnTool(|params: Metadata, _ctx: ToolContext| async move {
            Ok::<_, ToolError>(json!({ "message": params.get("message").cloned().unwrap_or_default() }))
        }),
    )
    .unwrap_or_else(|e| unreachable!("built-in tool is valid: {e}"))
}

/// `builtin.timestamp {}` → `{utc, unix_ms}`.
pub fn timestamp() -> RegisteredTool {
    let schema = json!({"type": "object", "properties": {}, "additionalProperties": false});
    RegisteredTool::new_async(
        UniversalTool::new("builtin.timestamp", "Returns the current UTC time.", schema),
        FnTool(|_params: Metadata, _ctx: ToolContext| async move {
            let now = chrono::Utc::now();
            Ok::<_, ToolError>(json!({ "utc": now.to_rfc3339(), "unix_ms": now.timestamp_millis() }))
        }),
    )
    .unwrap_or_else(|e| unreachable!("built-in tool is valid: {e}"))
}

/// Longest `builtin.wait`.
pub const MAX_WAIT_MS: u64 = 600_000;

/// `builtin.wait {duration_ms, steps}` → `{waited_ms, steps}` after `duration_ms`, reporting
/// progress after each of `steps` equal parts. `fail: true` makes it fail at the end (an error
/// result on purpose).
pub fn wait() -> RegisteredTool {
    let schema = json!({
        "type": "object",
        "properties": {
            "duration_ms": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_MS, "examples": [100]},
            "steps": {"type": "integer", "minimum": 1, "maximum": 1000, "examples": [4]},
            "fail": {"type": "boolean", "description": "fail at the end instead of succeeding"}
        },
        "required": ["duration_ms", "steps"],
        "additionalProperties": false
    });
    RegisteredTool::new_async(
        UniversalTool::new(
            "builtin.wait",
            "Waits duration_ms, reporting progress in steps; fails at the end when fail is true.",
            schema,
        ),
        FnTool(|params: Metadata, ctx: ToolContext| async move {
            let total = params.get("duration_ms").and_then(|v| v.as_u64()).unwrap_or(0);
            let steps = params.get("steps").and_then(|v| v.as_u64()).unwrap_or(1).max(1);
            let step = std::time::Duration::from_millis(total) / steps as u32;
            for i in 1..=steps {
                tokio::time::sleep(step).await;
                ctx.report_progress(i as f64, Some(steps as f64), Some(format!("step {i} of {steps}")));
            }
            if params.get("fail").and_then(|v| v.as_bool()).unwrap_or(false) {
                return Err(ToolError::new(format!("builtin.wait failed as asked after {total} ms")));
            }
            Ok::<_, ToolError>(json!({ "waited_ms": total, "steps": steps }))
        }),
    )
    .unwrap_or_else(|e| unreachable!("built-in tool is valid: {e}"))
}
