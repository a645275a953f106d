//! Aether's tools (built-in, demo, MCP) as adk tools, with the same names and schemas.
//!
//! adk decides when a tool runs (its `LlmAgent` dispatches the model's calls, in parallel here,
//! after its confirmation step); the call itself goes through Aether's executor, so parameter
//! validation, timeouts, the `execute_tool` span and the metrics are the native framework's.
//! The result goes back to adk as the Aether `ToolResult`, serialised (see `convert`).

use std::sync::Arc;

use adk_core::{AdkError, Tool, ToolContext};
use aether_contracts::{Metadata, ToolCall};
use aether_runtime::tools::executor::{execute_calls, CallScope};
use aether_runtime::tools::{Decision, RegisteredTool};
use async_trait::async_trait;
use serde_json::Value;

use crate::turn::Turn;

/// One Aether tool, as adk calls it.
pub(crate) struct AetherTool {
    tool: Arc<RegisteredTool>,
}

impl AetherTool {
    pub fn new(tool: Arc<RegisteredTool>) -> Self {
        Self { tool }
    }
}

#[async_trait]
impl Tool for AetherTool {
    fn name(&self) -> &str {
        &self.tool.full_name
    }

    fn description(&self) -> &str {
        &self.tool.declaration.description
    }

    fn parameters_schema(&self) -> Option<Value> {
        Some(self.tool.declaration.parameters_schema.clone())
    }

    async fn execute(&self, ctx: Arc<dyn ToolContext>, args: Value) -> adk_core::Result<Value> {
        let turn = Turn::current()
            .ok_or_else(|| AdkError::tool("Aether's tools run only inside an Aether turn (Runtime::process)"))?;
        let call = ToolCall {
            tool_name: self.tool.full_name.to_string(),
            parameters: match args {
                Value::Object(m) => m,
                _ => Metadata::new(),
            },
            tool_namespace: None,
            call_id: Some(ctx.function_call_id().to_owned()),
        };
        let scope = CallScope {
            task_id: &turn.task_id,
            session_id: &turn.session_id,
            user_id: turn.user_id.clone(),
            progress: None,
            default_timeout: turn.kit.tool_timeout(&turn.agent),
        };
        let results = execute_calls(
            std::slice::from_ref(&self.tool),
            std::slice::from_ref(&call),
            &[Decision::Approved],
            scope,
        )
        .await;
        turn.kit.tools_done(&results);
        let result = results
            .into_iter()
            .next()
            .ok_or_else(|| AdkError::tool(format!("tool `{}` returned no result", self.tool.full_name)))?;
        serde_json::to_value(&result).map_err(|e| AdkError::tool(format!("tool result: {e}")))
    }
}
