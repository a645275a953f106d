//! The in-memory session store: for tests, the harness's `--store memory`, and as the model of
//! what every durable store must do. Each session has its own lock; sessions never contend.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use parking_lot::Mutex;

use crate::record::{
    Durability, EventPage, HistoryWindow, Page, PageRequest, SessionFilter, SessionRecord, SessionState, StoreInfo,
};
use crate::{SessionEvent, SessionStore, StoreError};

/// A session in memory, compact: the id is the map's key (held once), the agent and internal
/// session ids are the events' own shared `Arc<str>` once events name them (a record's copies are
/// dropped for them), and the event count is the log's length.
struct MemSession {
    user_id: Option<Box<str>>,
    agent_id: Arc<str>,
    internal_session_id: Arc<str>,
    state: SessionState,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    events: Vec<Arc<SessionEvent>>,
}

impl MemSession {
    fn new(r: SessionRecord) -> Self {
        Self {
            user_id: r.user_id.map(String::into_boxed_str),
            agent_id: Arc::from(r.agent_id),
            internal_session_id: Arc::from(r.internal_session_id),
            state: r.state,
            created_at: r.created_at,
            updated_at: r.updated_at,
            events: Vec::new(),
        }
    }

    /// The full record of the session stored under `id`.
    fn record(&self, id: &str) -> SessionRecord {
        SessionRecord {
            session_id: id.to_owned(),
            user_id: self.user_id.as_deref().map(str::to_owned),
            agent_id: self.agent_id.to_string(),
            internal_session_id: self.internal_session_id.to_string(),
            state: self.state,
            created_at: self.created_at,
            updated_at: self.updated_at,
            event_count: self.events.len() as u64,
        }
    }

    /// Takes the latest event's ids in place of equal ones of its own (one allocation fewer each).
    fn share_ids(&mut self) {
        if let Some(e) = self.events.last() {
            if !Arc::ptr_eq(&self.agent_id, &e.agent_id) && *self.agent_id == *e.agent_id {
                self.agent_id = Arc::clone(&e.agent_id);
            }
            if !Arc::ptr_eq(&self.internal_session_id, &e.internal_session_id)
                && *self.internal_session_id == *e.internal_session_id
            {
                self.internal_session_id = Arc::clone(&e.internal_session_id);
            }
        }
    }
}

/// Sessions in a sharded map, each behind its own mutex. Nothing survives the process.
/// Growth is bounded by the runtime's sweeper, which archives idle sessions and purges
/// archived ones after their retention ([`SessionStore::purge_archived`]).
#[derive(Default)]
pub struct MemoryStore {
    sessions: DashMap<Arc<str>, Arc<Mutex<MemSession>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn session(&self, id: &str) -> Option<Arc<Mutex<MemSession>>> {
        self.sessions.get(id).map(|s| Arc::clone(s.value()))
    }
}

fn matches(filter: &SessionFilter, r: &SessionRecord) -> bool {
    filter
        .user_id
        .as_deref()
        .is_none_or(|u| r.user_id.as_deref() == Some(u))
        && filter.agent_id.as_deref().is_none_or(|a| r.agent_id == a)
        && filter.state.is_none_or(|s| r.state == s)
}

#[async_trait]
impl SessionStore for MemoryStore {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            kind: "memory",
            durability: Durability::None,
            location: None,
        }
    }

    async fn put_session(&self, record: SessionRecord) -> Result<(), StoreError> {
        let key: Arc<str> = Arc::from(record.session_id.as_str());
        match self.sessions.entry(key) {
            dashmap::Entry::Occupied(e) => {
                let mut s = e.get().lock();
                // The log is the truth for the count; a record never rewrites history.
                let events = std::mem::take(&mut s.events);
                *s = MemSession {
                    events,
                    ..MemSession::new(record)
                };
                s.share_ids();
            }
            dashmap::Entry::Vacant(e) => {
                e.insert(Arc::new(Mutex::new(MemSession::new(record))));
            }
        }
        Ok(())
    }

    async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.session(session_id).map(|s| s.lock().record(session_id)))
    }

    async fn append_events(&self, session_id: &str, events: &[Arc<SessionEvent>]) -> Result<(), StoreError> {
        let session = self
            .session(session_id)
            .ok_or_else(|| StoreError::SessionNotFound(session_id.to_owned()))?;
        let mut s = session.lock();
        for (expected, e) in (s.events.len() as u64..).zip(events) {
            if e.seq != expected {
                return Err(StoreError::SequenceGap {
                    session_id: session_id.to_owned(),
                    expected,
                    got: e.seq,
                });
            }
        }
        if s.events.is_empty() {
            // Most sessions hold one turn: no room for more until a second comes.
            s.events.reserve_exact(events.len());
        }
        s.events.extend(events.iter().cloned());
        s.updated_at = Utc::now();
        s.share_ids();
        Ok(())
    }

    async fn load_window(&self, session_id: &str, max_events: usize) -> Result<HistoryWindow, StoreError> {
        let Some(session) = self.session(session_id) else {
            return Ok(HistoryWindow::default());
        };
        let s = session.lock();
        let start = s.events.len().saturating_sub(max_events);
        Ok(HistoryWindow {
            events: s.events[start..].to_vec(),
            events_before: start as u64,
        })
    }

    async fn events_page(
        &self,
        session_id: &str,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        let session = self
            .session(session_id)
            .ok_or_else(|| StoreError::SessionNotFound(session_id.to_owned()))?;
        let s = session.lock();
        let start = after_seq.map_or(0, |a| (a + 1).min(s.events.len() as u64) as usize);
        let end = (start + limit).min(s.events.len());
        let events = s.events[start..end].to_vec();
        let next_after_seq = (end < s.events.len()).then(|| events.last().map(|e| e.seq)).flatten();
        Ok(EventPage { events, next_after_seq })
    }

    async fn list_sessions(&self, filter: &SessionFilter, page: &PageRequest) -> Result<Page, StoreError> {
        let mut records: Vec<SessionRecord> = self
            .sessions
            .iter()
            .filter(|e| page.after.as_deref().is_none_or(|a| e.key().as_ref() > a))
            .map(|e| e.value().lock().record(e.key()))
            .filter(|r| matches(filter, r))
            .collect();
        records.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        let more = records.len() > page.limit;
        records.truncate(page.limit);
        let next_after = if more {
            records.last().map(|r| r.session_id.clone())
        } else {
            None
        };
        Ok(Page {
            sessions: records,
            next_after,
        })
    }

    async fn set_state(&self, session_id: &str, state: SessionState) -> Result<bool, StoreError> {
        Ok(self.session(session_id).is_some_and(|s| {
            let mut s = s.lock();
            s.state = state;
            s.updated_at = Utc::now();
            true
        }))
    }

    async fn delete_session(&self, session_id: &str) -> Result<bool, StoreError> {
        Ok(self.sessions.remove(session_id).is_some())
    }

    async fn purge_archived(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut purged = 0;
        self.sessions.retain(|_, s| {
            let s = s.lock();
            let expired = s.state == SessionState::Archived && s.updated_at < cutoff;
            purged += u64::from(expired);
            !expired
        });
        Ok(purged)
    }

    async fn session_count(&self) -> Result<u64, StoreError> {
        Ok(self.sessions.len() as u64)
    }
}
