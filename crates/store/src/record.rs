//! Records and paging types shared by every store.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use aether_contracts::SessionEvent;

/// Lifecycle of a stored chat session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Bound to a live engine session.
    Active,
    /// Torn down (cleanup or idle); its history is kept so the next request recovers it.
    Archived,
}

/// The durable description of one chat session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Business chat-session id, chosen by the client. Shared: the runtime's session, the memory
    /// store's map and this record hold one allocation of it.
    pub session_id: Arc<str>,
    /// Shared like the session id (often the same text: one allocation then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Arc<str>>,
    /// Agent the session is (or was last) bound to.
    pub agent_id: String,
    /// Current internal (engine) session id.
    pub internal_session_id: String,
    pub state: SessionState,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Number of events in the log (also the next `seq`).
    pub event_count: u64,
}

/// The bounded slice of history a turn works on.
#[derive(Debug, Clone, Default)]
pub struct HistoryWindow {
    /// Latest events, oldest first.
    pub events: Vec<Arc<SessionEvent>>,
    /// Events older than the window (summarised, not loaded).
    pub events_before: u64,
}

/// One page of a session's events.
#[derive(Debug, Clone, Default)]
pub struct EventPage {
    pub events: Vec<Arc<SessionEvent>>,
    /// `seq` to pass as `after_seq` for the next page, when there is one.
    pub next_after_seq: Option<u64>,
}

/// Which sessions to list.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub user_id: Option<String>,
    pub agent_id: Option<String>,
    pub state: Option<SessionState>,
}

/// Keyset paging: sessions with id greater than `after`, at most `limit`.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub after: Option<String>,
    pub limit: usize,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            after: None,
            limit: 100,
        }
    }
}

/// One page of sessions.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub sessions: Vec<SessionRecord>,
    /// Id to pass as `after` for the next page, when there is one.
    pub next_after: Option<String>,
}

/// When a store's writes are durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Nothing survives the process.
    None,
    /// A turn's events are durable before its result returns.
    Sync,
    /// Written in the background through a bounded queue, flushed on shutdown.
    Async,
}

/// What a store is, for summaries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreInfo {
    /// `memory`, `sqlite` or `postgres`.
    pub kind: &'static str,
    pub durability: Durability,
    /// Path or URL (without credentials), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}
