//! An MCP server's tool as a registry tool `server.tool`: its name made registry-safe, its
//! input schema (or a permissive one when the server's does not compile), and a call that goes
//! through the server's [`McpClient`].

use aether_contracts::{Metadata, UniversalTool};
use aether_tools::{AsyncTool, ParamValidator, RegisteredTool, ToolContext, ToolError};
use async_trait::async_trait;
use rmcp::model::Tool;
use serde_json::{json, Value};

use crate::client::McpClient;
use crate::McpError;

struct McpTool {
    client: McpClient,
    /// The server's own name for the tool.
    remote_name: String,
}

#[async_trait]
impl AsyncTool for McpTool {
    async fn call(&self, params: Metadata, ctx: ToolContext) -> Result<Value, ToolError> {
        // The executor enforces the tool's timeout (and reports it as a timeout).
        self.client
            .call_within(&self.remote_name, params, &ctx, None)
            .await
            .result
    }
}

/// `name` with every character a registry name does not allow replaced by `_`.
pub(crate) fn registry_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The registry tools of one server's tool list.
pub(crate) fn registry_tools(client: &McpClient, tools: Vec<Tool>) -> Result<Vec<RegisteredTool>, McpError> {
    let server = client.name();
    let mut out: Vec<RegisteredTool> = Vec::with_capacity(tools.len());
    for t in tools {
        let short = registry_safe(&t.name);
        if short.is_empty() {
            continue;
        }
        let mut schema = Value::Object((*t.input_schema).clone());
        if let Err(reason) = ParamValidator::compile(&schema) {
            tracing::warn!(server, tool = %t.name, %reason, "MCP tool schema does not compile; arguments go unchecked");
            schema = json!({"type": "object"});
        }
        let description = t.description.as_deref().unwrap_or_default().to_owned();
        let mut spec = UniversalTool::new(format!("{server}.{short}"), description, schema);
        spec.metadata.insert("mcp_server".into(), Value::from(server));
        spec.metadata.insert("mcp_tool".into(), Value::from(t.name.as_ref()));
        if let Some(a) = &t.annotations {
            spec.metadata
                .insert("mcp_annotations".into(), serde_json::to_value(a).unwrap_or(Value::Null));
        }
        let imp = McpTool {
            client: client.clone(),
            remote_name: t.name.to_string(),
        };
        let registered = RegisteredTool::new_async(spec, imp)
            .map_err(|e| McpError::Tools {
                server: server.to_owned(),
                reason: e.to_string(),
            })?
            .with_timeout(client.config().timeout);
        if out.iter().any(|o| o.full_name == registered.full_name) {
            return Err(McpError::Tools {
                server: server.to_owned(),
                reason: format!(
                    "two tools map to `{}` (names differ only in characters the registry does not allow)",
                    registered.full_name
                ),
            });
        }
        out.push(registered);
    }
    Ok(out)
}
