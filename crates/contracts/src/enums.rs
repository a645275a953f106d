//! Status and mode enums whose wire values are the original's lowercase strings.

use serde::{Deserialize, Serialize};

/// Outcome of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Success,
    Error,
    Partial,
    Timeout,
    Cancelled,
}

/// How a task is to be executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ExecutionMode {
    #[default]
    Sync,
    Async,
    Streaming,
    Batch,
    Interactive,
}

/// Broad class of a failure, for dashboards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCategory {
    Initialization,
    RuntimeContext,
    ModelInvocation,
    ToolCall,
    StreamInterrupted,
    System,
}

/// Outcome of one tool call. `cancelled` extends the original's set: a denied or
/// cancelled call reports it rather than pretending to be an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ToolStatus {
    Success,
    Error,
    Timeout,
    Unauthorized,
    NotFound,
    Cancelled,
}

macro_rules! impl_as_str {
    ($ty:ty { $($variant:ident => $s:literal),* $(,)? }) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The wire value of this variant.
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $s),* }
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

impl_as_str!(TaskStatus { Success => "success", Error => "error", Partial => "partial", Timeout => "timeout", Cancelled => "cancelled" });
impl_as_str!(ExecutionMode { Sync => "sync", Async => "async", Streaming => "streaming", Batch => "batch", Interactive => "interactive" });
impl_as_str!(ToolStatus { Success => "success", Error => "error", Timeout => "timeout", Unauthorized => "unauthorized", NotFound => "not_found", Cancelled => "cancelled" });
impl_as_str!(ErrorCategory { Initialization => "initialization", RuntimeContext => "runtime_context", ModelInvocation => "model_invocation", ToolCall => "tool_call", StreamInterrupted => "stream_interrupted", System => "system" });

pub(crate) use impl_as_str;
