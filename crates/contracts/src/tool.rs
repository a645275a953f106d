//! Tool declarations, calls, requests and results.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::enums::ToolStatus;
use crate::error::ErrorPayload;
use crate::Metadata;

/// `ToolCall {tool_name, parameters{}, tool_namespace?, call_id?}`: a model asking for a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    pub tool_name: String,
    #[serde(default)]
    pub parameters: Metadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
}

impl ToolCall {
    /// The name as the resolver should see it: `namespace.name` when a namespace is given.
    pub fn qualified_name(&self) -> std::borrow::Cow<'_, str> {
        match &self.tool_namespace {
            Some(ns) if !self.tool_name.contains('.') => format!("{ns}.{}", self.tool_name).into(),
            _ => self.tool_name.as_str().into(),
        }
    }
}

/// `UniversalTool`: a tool's declaration, with its JSON-Schema parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UniversalTool {
    /// Full name, `namespace.tool`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "empty_object_schema")]
    pub parameters_schema: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default)]
    pub required_permissions: Vec<String>,
    #[serde(default)]
    pub supports_streaming: bool,
    /// Carries `requires_approval` among others.
    #[serde(default)]
    pub metadata: Metadata,
}

impl UniversalTool {
    /// A declaration with a name (`namespace.tool`), a description and a JSON-Schema for its
    /// parameters; no permissions, no streaming, empty metadata.
    pub fn new(name: impl Into<String>, description: impl Into<String>, parameters_schema: serde_json::Value) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            parameters_schema,
            namespace: None,
            required_permissions: Vec::new(),
            supports_streaming: false,
            metadata: Metadata::new(),
        }
    }
}

fn empty_object_schema() -> serde_json::Value {
    serde_json::json!({"type": "object"})
}

/// `ToolRequest {tool_name, tool_namespace?, parameters, timeout?, metadata, session_id?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ToolRequest {
    pub tool_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_namespace: Option<String>,
    #[serde(default)]
    pub parameters: Metadata,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

/// `ToolResult {tool_name, status, result_data, error_message?, error?, execution_time?}`.
/// `call_id` extends the original so that results pair with calls unambiguously.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ToolResult {
    pub tool_name: String,
    pub status: ToolStatus,
    #[serde(default)]
    pub result_data: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorPayload>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_time: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
}

impl ToolResult {
    pub fn is_success(&self) -> bool {
        self.status == ToolStatus::Success
    }
}

/// A tool as a model sees it: its name, what it does, the JSON Schema of its parameters, and the
/// arguments a simulated model passes. Built once per registered tool and shared by every model
/// request of the agents that have it; a provider reads only this, never the tool itself.
#[derive(Debug)]
pub struct ToolDeclaration {
    /// `namespace.name`.
    pub full_name: Arc<str>,
    /// The part after the namespace.
    pub short_name: Arc<str>,
    pub description: String,
    pub parameters_schema: serde_json::Value,
    /// Each required property's first example, else its default, else its first enum value, else
    /// a value of its type.
    pub sample_arguments: Metadata,
    call_tokens: OnceLock<u32>,
}

impl ToolDeclaration {
    pub fn new(
        full_name: impl Into<Arc<str>>,
        short_name: impl Into<Arc<str>>,
        description: impl Into<String>,
        parameters_schema: serde_json::Value,
    ) -> Self {
        let sample_arguments = sample_arguments(&parameters_schema);
        Self {
            full_name: full_name.into(),
            short_name: short_name.into(),
            description: description.into(),
            parameters_schema,
            sample_arguments,
            call_tokens: OnceLock::new(),
        }
    }

    /// Tokens a model spends to call this tool, counted with `count` the first time only.
    pub fn call_tokens_with(&self, count: impl FnOnce(&Self) -> u32) -> u32 {
        *self.call_tokens.get_or_init(|| count(self))
    }
}

/// Parameters a simulated call passes for a schema: each required property's first example,
/// else its default, else its first enum value, else a value of its type.
pub fn sample_arguments(schema: &serde_json::Value) -> Metadata {
    let mut args = Metadata::new();
    let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else {
        return args;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    for (name, prop) in props {
        if !required.contains(&name.as_str()) {
            continue;
        }
        let value = prop
            .get("examples")
            .and_then(|e| e.as_array())
            .and_then(|e| e.first())
            .or_else(|| prop.get("default"))
            .or_else(|| prop.get("enum").and_then(|e| e.as_array()).and_then(|e| e.first()))
            .cloned()
            .unwrap_or_else(|| match prop.get("type").and_then(|t| t.as_str()) {
                Some("integer") => 1.into(),
                Some("number") => 1.0.into(),
                Some("boolean") => true.into(),
                Some("array") => serde_json::Value::Array(Vec::new()),
                Some("object") => serde_json::Value::Object(Metadata::new()),
                _ => format!("sample-{name}").into(),
            });
        args.insert(name.clone(), value);
    }
    args
}
