//! What both wire formats convert into: the simulated model's request (system prompt, history as
//! session events, tools as declarations, metadata), and the conversions they share.

use std::sync::Arc;

use aether_contracts::{ContentPart, Metadata, ModelConfig, SessionEvent, ToolDeclaration};
use aether_providers::{HistoryView, ModelRequest, SystemPrompt};
use serde_json::Value;

/// What an OpenAI request becomes for the simulated model.
pub(crate) struct Converted {
    pub(crate) system: SystemPrompt,
    pub(crate) events: Vec<Arc<SessionEvent>>,
    pub(crate) tools: Vec<Arc<ToolDeclaration>>,
    pub(crate) model: ModelConfig,
    pub(crate) metadata: Metadata,
}

pub(crate) fn invalid(message: impl Into<String>) -> String {
    message.into()
}

impl Converted {
    pub(crate) fn request(&self) -> ModelRequest<'_> {
        ModelRequest {
            model: &self.model,
            system: &self.system,
            history: HistoryView {
                committed: &self.events,
                pending: &[],
            },
            tools: &self.tools,
            metadata: &self.metadata,
        }
    }
}

/// A tool the client declared, for the simulated model to plan calls to (it never runs here: the
/// client runs it).
pub(crate) fn remote_tool(
    name: &str,
    description: Option<&Value>,
    schema: Value,
) -> Result<Arc<ToolDeclaration>, String> {
    let valid_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_name {
        return Err(invalid(format!(
            "tool `{name}`: a name uses only letters, digits, `_` and `-`"
        )));
    }
    if !schema.is_object() {
        return Err(invalid(format!(
            "tool `{name}`: `parameters` must be a JSON Schema object"
        )));
    }
    Ok(Arc::new(ToolDeclaration::new(
        format!("remote.{name}"),
        name,
        description.and_then(Value::as_str).unwrap_or_default(),
        schema,
    )))
}

/// A file reference as the OpenAI-compatible provider writes it, `[file PATH (TYPE, N bytes)]`
/// (the protocol has no part for a file path).
pub(crate) fn file_reference(text: &str) -> Option<ContentPart> {
    let inner = text.strip_prefix("[file ")?.strip_suffix(" bytes)]")?;
    let (path, rest) = inner.rsplit_once(" (")?;
    let (file_type, size) = rest.rsplit_once(", ")?;
    Some(ContentPart::FileReference(aether_contracts::FileReference {
        file_path: path.to_owned(),
        file_type: file_type.to_owned(),
        file_size: size.parse().ok(),
        encoding: "binary".into(),
        metadata: Metadata::new(),
    }))
}
