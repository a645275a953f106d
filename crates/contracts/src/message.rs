//! `UniversalMessage` and its content parts: text, function calls, files and images.

use std::sync::Arc;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::tool::ToolCall;
use crate::Metadata;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    System,
    Tool,
}

/// `UniversalMessage {role, content: string | ContentPart[], author?, name?, tool_calls?, metadata{}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UniversalMessage {
    pub role: Role,
    #[serde(default)]
    pub content: MessageContent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

impl UniversalMessage {
    /// A plain-text message. The text is shared, never copied again.
    pub fn text(role: Role, text: impl Into<Arc<str>>) -> Self {
        Self {
            role,
            content: MessageContent::Text(text.into()),
            author: None,
            name: None,
            tool_calls: None,
            metadata: Metadata::new(),
        }
    }

    pub fn user(text: impl Into<Arc<str>>) -> Self {
        Self::text(Role::User, text)
    }

    pub fn assistant(text: impl Into<Arc<str>>) -> Self {
        Self::text(Role::Assistant, text)
    }

    /// Concatenated text of the message (text parts only), borrowed where possible.
    pub fn text_content(&self) -> std::borrow::Cow<'_, str> {
        match &self.content {
            MessageContent::Text(t) => std::borrow::Cow::Borrowed(t),
            MessageContent::Parts(parts) => {
                let mut texts = parts.iter().filter_map(|p| match p {
                    ContentPart::Text(t) => Some(t.as_str()),
                    _ => None,
                });
                match (texts.next(), texts.next()) {
                    (None, _) => std::borrow::Cow::Borrowed(""),
                    (Some(one), None) => std::borrow::Cow::Borrowed(one),
                    (Some(a), Some(b)) => {
                        let mut s = String::from(a);
                        s.push('\n');
                        s.push_str(b);
                        for t in texts {
                            s.push('\n');
                            s.push_str(t);
                        }
                        std::borrow::Cow::Owned(s)
                    }
                }
            }
        }
    }
}

/// Message content: a plain string or a list of parts.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageContent {
    Text(Arc<str>),
    Parts(Vec<ContentPart>),
}

impl Default for MessageContent {
    fn default() -> Self {
        MessageContent::Text(Arc::from(""))
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for MessageContent {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MessageContent".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let part = generator.subschema_for::<ContentPart>();
        schemars::json_schema!({
            "description": "A string, or an array of content parts",
            "anyOf": [{"type": "string"}, {"type": "array", "items": part}]
        })
    }
}

impl Serialize for MessageContent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MessageContent::Text(t) => s.serialize_str(t),
            MessageContent::Parts(p) => p.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ContentVisitor;
        impl<'de> Visitor<'de> for ContentVisitor {
            type Value = MessageContent;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MessageContent::Text(Arc::from(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MessageContent::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(part) = seq.next_element::<ContentPart>()? {
                    parts.push(part);
                }
                Ok(MessageContent::Parts(parts))
            }
        }
        d.deserialize_any(ContentVisitor)
    }
}

/// One part of a message. On the wire an object with exactly one of the keys
/// `text`, `function_call`, `file_reference`, `image_reference`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ContentPart {
    Text(String),
    FunctionCall(ToolCall),
    FileReference(FileReference),
    ImageReference(ImageReference),
}

/// `file_reference {file_path, file_type, file_size?, encoding, metadata}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FileReference {
    pub file_path: String,
    pub file_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
    #[serde(default = "default_encoding")]
    pub encoding: String,
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

fn default_encoding() -> String {
    "utf-8".to_owned()
}

/// `image_reference {image_path, image_format, width?, height?, metadata}`. An inline image
/// puts its bytes in `image_path` as base64, raw or as a `data:` URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ImageReference {
    pub image_path: String,
    pub image_format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}
