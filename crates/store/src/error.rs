//! Errors of the session stores.

/// What went wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session `{0}` does not exist in the store")]
    SessionNotFound(String),
    #[error("event sequence gap in session `{session_id}`: expected seq {expected}, got {got}")]
    SequenceGap {
        session_id: String,
        expected: u64,
        got: u64,
    },
    #[error("cannot open {target}: {message}")]
    Open { target: String, message: String },
    #[error("store backend error: {0}")]
    Backend(String),
    /// The store cannot be reached or cannot take a write now (database down or restarting,
    /// connection lost, pool exhausted, disk full): the request may succeed when retried later.
    #[error("{0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether retrying later may succeed: the store was down, unreachable or full, not wrong.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}
