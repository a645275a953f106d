//! [`HarnessError`]: why a run could not happen. A leaf, shared by every stage of a run.

/// Why a run could not happen.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Bad input: a flag, a tool name, a file.
    #[error("{0}")]
    InvalidInput(String),
    /// The runtime could not be built or failed outside any request.
    #[error("{0}")]
    Runtime(String),
}
