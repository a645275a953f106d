//! Built-in tools: `builtin.echo` and `builtin.timestamp`.

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
