//! Wire contracts of Aether Frame.
//!
//! Every type here keeps the JSON field names and lowercase enum values of the original
//! Python Aether Frame, so a team moving over finds familiar shapes. Parsing goes through
//! [`parse::from_json_str`], which names the offending field in every error.

pub mod agent;
pub mod enums;
pub mod error;
pub mod history;
pub mod interaction;
pub mod message;
pub mod parse;
pub mod report;
pub mod stream;
pub mod task;
pub mod tool;
pub mod trace;

#[cfg(feature = "schema")]
pub use schemars;

pub use agent::{AgentConfig, KnowledgeSource, KnowledgeSourceType, ModelConfig};
pub use enums::{ErrorCategory, ExecutionMode, TaskStatus, ToolStatus};
pub use error::{error_chain, failure_status, ErrorCode, ErrorPayload};
pub use history::SessionEvent;
pub use interaction::{InteractionRequest, InteractionResponse, InteractionType};
pub use message::{ContentPart, FileReference, ImageReference, MessageContent, Role, UniversalMessage};
pub use parse::{from_json_slice, from_json_str, from_json_value, ContractError};
pub use report::{
    simulated_provider, AgentContext, AgentReport, ExecutionStats, ProviderName, ProviderReport, ReportError,
    SessionReport, TokenUsage, TurnFigures, TurnReport, TurnTiming, SIMULATED_PROFILE_MARK,
};
pub use stream::{ChunkKind, TaskChunkType, TaskStreamChunk, CHUNK_VERSION};
pub use task::{ExecutionConfig, ExecutionContext, SessionContext, TaskRequest, TaskResult, UserContext};
pub use tool::{ToolCall, ToolDeclaration, ToolRequest, ToolResult, UniversalTool};

/// Free-form JSON object, as used by every `metadata` field.
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// FNV-1a, 64 bits: a fast, stable, non-cryptographic hash (image signatures, the demo tools'
/// deterministic answers).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
