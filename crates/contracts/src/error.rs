//! The error payload every failure carries on the wire, and its stable codes.

use serde::{Deserialize, Serialize};

use crate::enums::{impl_as_str, ErrorCategory};

/// Stable, dotted error codes of the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ErrorCode {
    #[serde(rename = "internal.error")]
    InternalError,
    #[serde(rename = "request.validation")]
    RequestValidation,
    #[serde(rename = "framework.unavailable")]
    FrameworkUnavailable,
    #[serde(rename = "framework.execution")]
    FrameworkExecution,
    #[serde(rename = "model.upstream")]
    ModelUpstream,
    #[serde(rename = "stream.interrupted")]
    StreamInterrupted,
    #[serde(rename = "approval.timeout")]
    ApprovalTimeout,
    #[serde(rename = "tool.not_declared")]
    ToolNotDeclared,
    #[serde(rename = "tool.execution")]
    ToolExecution,
    #[serde(rename = "tool.invalid_parameters")]
    ToolInvalidParameters,
    /// The session stayed busy with earlier turns past the server's wait; retry later.
    #[serde(rename = "session.busy")]
    SessionBusy,
    /// The session store could not be reached or could not take the write (database down or
    /// restarting, disk full); nothing of the turn was stored; retry later.
    #[serde(rename = "store.unavailable")]
    StoreUnavailable,
}

impl_as_str!(ErrorCode {
    InternalError => "internal.error",
    RequestValidation => "request.validation",
    FrameworkUnavailable => "framework.unavailable",
    FrameworkExecution => "framework.execution",
    ModelUpstream => "model.upstream",
    StreamInterrupted => "stream.interrupted",
    ApprovalTimeout => "approval.timeout",
    ToolNotDeclared => "tool.not_declared",
    ToolExecution => "tool.execution",
    ToolInvalidParameters => "tool.invalid_parameters",
    SessionBusy => "session.busy",
    StoreUnavailable => "store.unavailable",
});

impl ErrorCode {
    /// The broad category a code belongs to.
    pub const fn category(self) -> ErrorCategory {
        match self {
            Self::InternalError | Self::StoreUnavailable => ErrorCategory::System,
            Self::RequestValidation | Self::SessionBusy => ErrorCategory::RuntimeContext,
            Self::FrameworkUnavailable => ErrorCategory::Initialization,
            Self::FrameworkExecution => ErrorCategory::RuntimeContext,
            Self::ModelUpstream => ErrorCategory::ModelInvocation,
            Self::StreamInterrupted => ErrorCategory::StreamInterrupted,
            Self::ApprovalTimeout | Self::ToolNotDeclared | Self::ToolExecution | Self::ToolInvalidParameters => {
                ErrorCategory::ToolCall
            }
        }
    }

    /// The HTTP status of a failed result with this code (`aether serve`): one per code, so
    /// that a client that trusts the status never takes a failed turn for an answer. A result
    /// whose `status` is `timeout` answers 504 whatever its code ([`failure_status`]).
    pub const fn http_status(self) -> u16 {
        match self {
            Self::RequestValidation | Self::ToolNotDeclared | Self::ToolInvalidParameters => 400,
            Self::ApprovalTimeout => 408,
            Self::InternalError | Self::FrameworkExecution => 500,
            Self::FrameworkUnavailable => 501,
            Self::ModelUpstream | Self::StreamInterrupted | Self::ToolExecution => 502,
            Self::SessionBusy | Self::StoreUnavailable => 503,
        }
    }
}

/// The HTTP status of a result: 504 when it timed out, its error code's status when it failed
/// with one, else 200 (an answer, or a partial result that says why it stopped).
pub fn failure_status(timed_out: bool, error: Option<&ErrorPayload>) -> u16 {
    match (timed_out, error) {
        (true, _) => 504,
        (false, Some(e)) => e.code.http_status(),
        (false, None) => 200,
    }
}

/// `ErrorPayload {code, message, source?, details?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ErrorPayload {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl ErrorPayload {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            source: None,
            details: None,
        }
    }

    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl std::fmt::Display for ErrorPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// An error with its causes, `outer: inner: …`, for messages that must say what really failed
/// (an HTTP client's "error sending request" alone names nothing).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_answers_a_non_2xx_status() {
        let codes = [
            ErrorCode::InternalError,
            ErrorCode::RequestValidation,
            ErrorCode::FrameworkUnavailable,
            ErrorCode::FrameworkExecution,
            ErrorCode::ModelUpstream,
            ErrorCode::StreamInterrupted,
            ErrorCode::ApprovalTimeout,
            ErrorCode::ToolNotDeclared,
            ErrorCode::ToolExecution,
            ErrorCode::ToolInvalidParameters,
            ErrorCode::SessionBusy,
            ErrorCode::StoreUnavailable,
        ];
        for code in codes {
            let e = ErrorPayload::new(code, "x");
            let status = failure_status(false, Some(&e));
            assert!((400..600).contains(&status), "{code:?}: {status}");
            assert_eq!(failure_status(true, Some(&e)), 504, "{code:?} timed out");
        }
        assert_eq!(ErrorCode::RequestValidation.http_status(), 400);
        assert_eq!(ErrorCode::ModelUpstream.http_status(), 502);
        assert_eq!(failure_status(false, None), 200);
    }
}
