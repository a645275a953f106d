//! The in-memory session store: for tests, the harness's `--store memory`, and as the model of
//! what every durable store must do. Each session has its own lock; sessions never contend.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use parking_lot::Mutex;
use smallvec::SmallVec;

use crate::record::{
    Durability, EventPage, HistoryWindow, Page, PageRequest, SessionFilter, SessionRecord, SessionState, StoreInfo,
};
use crate::{shrink_if_sparse, ById, HasId, SessionEvent, SessionStore, StoreError};

/// A session in memory, compact: the entry holding it is the map's key (its id held once, the
/// runtime's own allocation), the agent and internal-session ids are the latest event's when
/// they are the same (as after every append), and the event count is the log's length.
struct MemSession {
    user_id: Option<Arc<str>>,
    /// The record's agent and internal-session ids where the latest event does not name them: a
    /// session before its first append, or just after an agent switch. `None`: the latest event's.
    ids: Option<Box<Ids>>,
    state: SessionState,
    /// Nanoseconds since the epoch (8 bytes where a `DateTime` takes 12, and no precision lost).
    created_at: i64,
    updated_at: i64,
    /// The log; a one-turn session's two events are held inline.
    events: SmallVec<[Arc<SessionEvent>; 2]>,
}

struct Ids {
    agent_id: Arc<str>,
    internal_session_id: Arc<str>,
}

fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn from_nanos(n: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(n)
}

impl MemSession {
    fn new(r: SessionRecord) -> Self {
        Self {
            user_id: r.user_id,
            ids: Some(Box::new(Ids {
                agent_id: Arc::from(r.agent_id),
                internal_session_id: Arc::from(r.internal_session_id),
            })),
            state: r.state,
            created_at: nanos(r.created_at),
            updated_at: nanos(r.updated_at),
            events: SmallVec::new(),
        }
    }

    /// What a record taken out of its entry leaves behind (never read).
    fn placeholder() -> Self {
        Self {
            user_id: None,
            ids: None,
            state: SessionState::Archived,
            created_at: 0,
            updated_at: 0,
            events: SmallVec::new(),
        }
    }

    /// The agent and internal-session ids the record names.
    fn ids(&self) -> (&str, &str) {
        match (&self.ids, self.events.last()) {
            (Some(ids), _) => (&ids.agent_id, &ids.internal_session_id),
            (None, Some(e)) => (&e.agent_id, &e.internal_session_id),
            (None, None) => ("", ""),
        }
    }

    /// The full record of the session stored under `id`.
    fn record(&self, id: &Arc<str>) -> SessionRecord {
        let (agent_id, internal_session_id) = self.ids();
        SessionRecord {
            session_id: Arc::clone(id),
            user_id: self.user_id.clone(),
            agent_id: agent_id.to_owned(),
            internal_session_id: internal_session_id.to_owned(),
            state: self.state,
            created_at: from_nanos(self.created_at),
            updated_at: from_nanos(self.updated_at),
            event_count: self.events.len() as u64,
        }
    }

    /// Drops its own ids when the latest event names the same (one box and two strings fewer).
    fn share_ids(&mut self) {
        if let (Some(ids), Some(e)) = (&self.ids, self.events.last()) {
            if *ids.agent_id == *e.agent_id && *ids.internal_session_id == *e.internal_session_id {
                self.ids = None;
            }
        }
    }
}

/// A session with its id (the record's own `Arc<str>`: with the runtime, the same allocation as
/// its session's), the key of the store's map: one pointer a slot.
struct Entry {
    id: Arc<str>,
    session: Mutex<MemSession>,
}

impl HasId for Entry {
    fn id(&self) -> &str {
        &self.id
    }
}

/// Sessions in a sharded map, each behind its own mutex. Nothing survives the process.
/// Growth is bounded by the runtime's sweeper, which archives idle sessions and purges
/// archived ones after their retention ([`SessionStore::purge_archived`]).
pub struct MemoryStore {
    sessions: DashMap<ById<Entry>, ()>,
    /// The sessions its table is reserved for ([`crate::reserved_map`]).
    reserved: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store whose table holds [`crate::MAX_RESERVED`] sessions (the runtime's default bound of
    /// active sessions) without growing: ~1.2 MB of table from the start.
    pub fn new() -> Self {
        Self::with_reserved(crate::MAX_RESERVED)
    }

    /// A store whose table holds `sessions` (at most [`crate::MAX_RESERVED`]) without growing;
    /// 0 starts it empty, to grow with its contents.
    pub fn with_reserved(sessions: usize) -> Self {
        Self {
            sessions: crate::reserved_map(sessions),
            reserved: sessions,
        }
    }

    fn session(&self, id: &str) -> Option<Arc<Entry>> {
        self.sessions.get(id).map(|s| Arc::clone(&s.key().0))
    }
}

impl Entry {
    /// Takes a new record: the log is the truth for the count, and a record never rewrites
    /// history.
    fn replace(&self, new: MemSession) {
        let mut s = self.session.lock();
        let events = std::mem::take(&mut s.events);
        *s = MemSession { events, ..new };
        s.share_ids();
    }
}

impl std::ops::Deref for Entry {
    type Target = Mutex<MemSession>;
    fn deref(&self) -> &Mutex<MemSession> {
        &self.session
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
        let fresh = Arc::new(Entry {
            id: Arc::clone(&record.session_id),
            session: Mutex::new(MemSession::new(record)),
        });
        // Under the shard's lock either way, so a put and a delete of one id never interleave.
        match self.sessions.entry(ById(Arc::clone(&fresh))) {
            dashmap::Entry::Occupied(e) => {
                let new = std::mem::replace(&mut *fresh.lock(), MemSession::placeholder());
                e.key().0.replace(new);
            }
            dashmap::Entry::Vacant(e) => {
                e.insert(());
            }
        }
        Ok(())
    }

    async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.session(session_id).map(|s| s.lock().record(&s.id)))
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
        s.updated_at = nanos(Utc::now());
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
            .filter(|e| page.after.as_deref().is_none_or(|a| &*e.key().0.id > a))
            .map(|e| e.key().0.lock().record(&e.key().0.id))
            .filter(|r| matches(filter, r))
            .collect();
        records.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        let more = records.len() > page.limit;
        records.truncate(page.limit);
        let next_after = if more {
            records.last().map(|r| r.session_id.to_string())
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
            s.updated_at = nanos(Utc::now());
            true
        }))
    }

    async fn delete_session(&self, session_id: &str) -> Result<bool, StoreError> {
        Ok(self.sessions.remove(session_id).is_some())
    }

    async fn purge_archived(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut purged = 0;
        self.sessions.retain(|e, _| {
            let s = e.0.lock();
            let expired = s.state == SessionState::Archived && s.updated_at < nanos(cutoff);
            purged += u64::from(expired);
            !expired
        });
        if purged > 0 && shrink_if_sparse(&self.sessions, self.reserved) {
            tracing::debug!(
                left = self.sessions.len(),
                "memory store: session table shrunk after a purge"
            );
        }
        Ok(purged)
    }

    async fn session_count(&self) -> Result<u64, StoreError> {
        Ok(self.sessions.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table_slots;

    /// One entry a session: 96 bytes take a 128-byte chunk behind their `Arc` (112 took 144).
    #[test]
    fn an_entry_stays_small() {
        let entry = std::mem::size_of::<Entry>();
        assert!(entry <= 96, "Entry is {entry} B");
        assert_eq!(std::mem::size_of::<ById<Entry>>(), 8);
    }

    /// A purge that empties the store after a burst gives the table's slack back.
    #[tokio::test]
    async fn a_purge_after_a_burst_gives_the_table_back() {
        let store = MemoryStore::with_reserved(0);
        let now = Utc::now();
        let ids: Vec<Arc<str>> = (0..40_000).map(|i| Arc::from(format!("s{i}"))).collect();
        for id in &ids {
            store
                .put_session(SessionRecord {
                    session_id: Arc::clone(id),
                    user_id: None,
                    agent_id: "agent".into(),
                    internal_session_id: format!("ses-{id}"),
                    state: SessionState::Active,
                    created_at: now,
                    updated_at: now,
                    event_count: 0,
                })
                .await
                .unwrap();
        }
        let peak = table_slots(&store.sessions);
        assert_eq!(store.archive_sessions(&ids[100..]).await.unwrap(), 39_900);
        let cutoff = Utc::now() + chrono::Duration::seconds(1);
        assert_eq!(store.purge_archived(cutoff).await.unwrap(), 39_900);
        let left = table_slots(&store.sessions);
        assert!(left < peak / 16, "{left} slots left of {peak}");
        assert_eq!(store.session_count().await.unwrap(), 100);
        assert!(store.get_session("s99").await.unwrap().is_some());
    }
}
