//! The history a model reads: [`SessionEvent`], one entry of a chat session's append-only log.
//! The store keeps these events and the runtime's window lends them to a model call; living here,
//! they let a model provider read a conversation without knowing the store.

use std::sync::{Arc, OnceLock};

use crate::message::UniversalMessage;
use crate::tool::ToolResult;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An immutable event of a chat session: a message, and for tool events the tool results.
/// Events are shared as `Arc<SessionEvent>` between the live window, the store and the model,
/// never copied.
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionEvent {
    /// Position in the session's log, from 0, without gaps.
    pub seq: u64,
    /// The internal (engine) session that wrote it; changes on an agent switch.
    pub internal_session_id: Arc<str>,
    pub agent_id: Arc<str>,
    pub message: UniversalMessage,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_results: Vec<ToolResult>,
    pub created_at: DateTime<Utc>,
    /// Token count, computed once by whoever first needs it.
    #[serde(default, skip_serializing_if = "token_count_unset", with = "token_count_serde")]
    token_count: OnceLock<u32>,
}

fn token_count_unset(c: &OnceLock<u32>) -> bool {
    c.get().is_none()
}

mod token_count_serde {
    use std::sync::OnceLock;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(c: &OnceLock<u32>, s: S) -> Result<S::Ok, S::Error> {
        match c.get() {
            Some(v) => s.serialize_some(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OnceLock<u32>, D::Error> {
        let cell = OnceLock::new();
        if let Some(v) = Option::<u32>::deserialize(d)? {
            let _ = cell.set(v);
        }
        Ok(cell)
    }
}

impl SessionEvent {
    pub fn new(
        seq: u64,
        internal_session_id: Arc<str>,
        agent_id: Arc<str>,
        message: UniversalMessage,
        tool_results: Vec<ToolResult>,
    ) -> Self {
        Self {
            seq,
            internal_session_id,
            agent_id,
            message,
            tool_results,
            created_at: Utc::now(),
            token_count: OnceLock::new(),
        }
    }

    /// The event's token count, computing it with `count` the first time only.
    pub fn tokens_with(&self, count: impl FnOnce(&Self) -> u32) -> u32 {
        *self.token_count.get_or_init(|| count(self))
    }
}
