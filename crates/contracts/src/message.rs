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
///
/// A history holds many messages, and most carry only a role, text and perhaps an author: the
/// rarely used fields (`name`, `tool_calls`, `metadata`) live together in one optional box, so a
/// plain message is 56 bytes instead of 120. Read them with [`Self::name`], [`Self::tool_calls`]
/// and [`Self::metadata`]; set them with the `with_*`/`set_*` methods. The wire form is unchanged.
#[derive(Debug, Clone)]
pub struct UniversalMessage {
    pub role: Role,
    pub content: MessageContent,
    pub author: Option<Arc<str>>,
    /// `None` whenever all three rare fields are empty (the setters keep it so).
    rare: Option<Box<Rare>>,
}

/// The rarely set fields of a message.
#[derive(Debug, Clone, Default, PartialEq)]
struct Rare {
    name: Option<String>,
    tool_calls: Option<Vec<ToolCall>>,
    metadata: Metadata,
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.name.is_none() && self.tool_calls.is_none() && self.metadata.is_empty()
    }
}

/// The message as it is on the wire; what (de)serialisation and the schema see.
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename = "UniversalMessage")]
struct WireMessage {
    role: Role,
    #[serde(default)]
    content: MessageContent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    author: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    metadata: Metadata,
}

/// The same fields borrowed, for serialising without a copy.
#[derive(Serialize)]
struct WireMessageRef<'a> {
    role: Role,
    content: &'a MessageContent,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<&'a Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<&'a [ToolCall]>,
    #[serde(skip_serializing_if = "no_metadata")]
    metadata: &'a Metadata,
}

fn no_metadata(m: &&Metadata) -> bool {
    m.is_empty()
}

impl Serialize for UniversalMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireMessageRef {
            role: self.role,
            content: &self.content,
            author: self.author.as_ref(),
            name: self.name(),
            tool_calls: self.tool_calls(),
            metadata: self.metadata(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for UniversalMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = WireMessage::deserialize(d)?;
        let mut m = UniversalMessage::new(w.role, w.content);
        m.author = w.author;
        m.set_rare(Rare {
            name: w.name,
            tool_calls: w.tool_calls,
            metadata: w.metadata,
        });
        Ok(m)
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for UniversalMessage {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        WireMessage::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        WireMessage::json_schema(generator)
    }
}

impl PartialEq for UniversalMessage {
    fn eq(&self, other: &Self) -> bool {
        self.role == other.role
            && self.content == other.content
            && self.author == other.author
            && self.name() == other.name()
            && self.tool_calls() == other.tool_calls()
            && self.metadata() == other.metadata()
    }
}

/// What [`UniversalMessage::metadata`] lends when a message has none.
static NO_METADATA: std::sync::LazyLock<Metadata> = std::sync::LazyLock::new(Metadata::new);

impl UniversalMessage {
    /// A message with `content` and nothing else.
    pub fn new(role: Role, content: MessageContent) -> Self {
        Self {
            role,
            content,
            author: None,
            rare: None,
        }
    }

    /// A plain-text message. The text is shared, never copied again.
    pub fn text(role: Role, text: impl Into<Arc<str>>) -> Self {
        Self::new(role, MessageContent::Text(text.into()))
    }

    pub fn user(text: impl Into<Arc<str>>) -> Self {
        Self::text(Role::User, text)
    }

    pub fn assistant(text: impl Into<Arc<str>>) -> Self {
        Self::text(Role::Assistant, text)
    }

    /// The participant name (`name` on the wire), when set.
    pub fn name(&self) -> Option<&str> {
        self.rare.as_ref()?.name.as_deref()
    }

    /// The tool calls an assistant message asks for (`tool_calls`), when present.
    pub fn tool_calls(&self) -> Option<&[ToolCall]> {
        self.rare.as_ref()?.tool_calls.as_deref()
    }

    /// The message's metadata; empty when none was set.
    pub fn metadata(&self) -> &Metadata {
        match &self.rare {
            Some(r) => &r.metadata,
            None => &NO_METADATA,
        }
    }

    pub fn set_name(&mut self, name: Option<String>) {
        self.change(|r| r.name = name);
    }

    pub fn set_tool_calls(&mut self, calls: Option<Vec<ToolCall>>) {
        self.change(|r| r.tool_calls = calls);
    }

    /// Takes the tool calls out of the message, leaving none.
    pub fn take_tool_calls(&mut self) -> Option<Vec<ToolCall>> {
        let mut taken = None;
        self.change(|r| taken = r.tool_calls.take());
        taken
    }

    /// Takes the metadata out of the message, leaving none.
    pub fn take_metadata(&mut self) -> Metadata {
        let mut taken = Metadata::new();
        self.change(|r| taken = std::mem::take(&mut r.metadata));
        taken
    }

    pub fn set_metadata(&mut self, metadata: Metadata) {
        self.change(|r| r.metadata = metadata);
    }

    /// Changes the metadata in place.
    pub fn update_metadata(&mut self, f: impl FnOnce(&mut Metadata)) {
        self.change(|r| f(&mut r.metadata));
    }

    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.set_name(Some(name.into()));
        self
    }

    pub fn with_tool_calls(mut self, calls: Vec<ToolCall>) -> Self {
        self.set_tool_calls(Some(calls));
        self
    }

    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.set_metadata(metadata);
        self
    }

    pub fn with_author(mut self, author: impl Into<Arc<str>>) -> Self {
        self.author = Some(author.into());
        self
    }

    fn change(&mut self, f: impl FnOnce(&mut Rare)) {
        let rare = self.rare.get_or_insert_with(Box::default);
        f(rare);
        if rare.is_empty() {
            self.rare = None;
        }
    }

    fn set_rare(&mut self, rare: Rare) {
        self.rare = (!rare.is_empty()).then(|| Box::new(rare));
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
