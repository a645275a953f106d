//! Agent configuration and knowledge sources.

use serde::{Deserialize, Serialize};

use crate::Metadata;

/// `AgentConfig {agent_type, system_prompt, model_config, available_tools[], name?, description?,
/// framework_config{}}`. Two configs that compare equal may share one agent (controlled reuse).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub agent_type: String,
    #[serde(default)]
    pub system_prompt: String,
    pub model_config: ModelConfig,
    /// Tool names, resolved at agent creation (`namespace.name` or a unique short name).
    #[serde(default)]
    pub available_tools: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub framework_config: Metadata,
}

impl AgentConfig {
    /// A minimal config for `model` with a system prompt and tools.
    pub fn new(model: impl Into<String>, system_prompt: impl Into<String>) -> Self {
        Self {
            agent_type: "conversational".to_owned(),
            system_prompt: system_prompt.into(),
            model_config: ModelConfig::new(model),
            available_tools: Vec::new(),
            name: None,
            description: None,
            framework_config: Metadata::new(),
        }
    }

    pub fn with_tools<I, S>(mut self, tools: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.available_tools = tools.into_iter().map(Into::into).collect();
        self
    }
}

/// `model_config {model, temperature, max_tokens, ...}`; unknown keys are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ModelConfig {
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(flatten)]
    pub extra: Metadata,
}

impl ModelConfig {
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            temperature: None,
            max_tokens: None,
            extra: Metadata::new(),
        }
    }
}

/// Where a knowledge source lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum KnowledgeSourceType {
    File,
    Database,
    Api,
    VectorStore,
}

/// `KnowledgeSource {name, source_type, location, description, access_config{}, metadata{}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct KnowledgeSource {
    pub name: String,
    pub source_type: KnowledgeSourceType,
    pub location: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub access_config: Metadata,
    #[serde(default)]
    pub metadata: Metadata,
}
