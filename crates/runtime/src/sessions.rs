//! Chat sessions: one live internal session per business `session_id`.
//!
//! Each [`ChatSession`] has its own FIFO async mutex: concurrent turns on one chat run one after
//! another in arrival order, and turns on different chats never wait on each other (the map is
//! sharded; no lock is held across chats). The history a turn sees is a bounded window of the
//! latest events kept in memory as shared `Arc`s; older events live only in the store, so a
//! turn's cost does not grow with the conversation.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aether_store::{SessionEvent, SessionState, SessionStore, StoreError};
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use tokio::sync::{Mutex, Notify, OwnedMutexGuard};

use crate::agents::SessionSlot;
use crate::clock::Clock;

/// A chat session's binding to an agent: the internal session id and the agent's slot.
pub(crate) struct Binding {
    pub internal_id: Arc<str>,
    pub slot: SessionSlot,
}

/// State of a chat session, guarded by its turn lock.
pub(crate) struct ChatState {
    /// Archived and removed from the map; a turn that finds this retries on a fresh session.
    pub closed: bool,
    /// History and record have been read from the store.
    pub loaded: bool,
    pub binding: Option<Binding>,
    /// Agent the stored record names (after recovery), for turns that send no `agent_id`.
    pub last_agent_id: Option<String>,
    pub window: VecDeque<Arc<SessionEvent>>,
    /// Events older than the window (in the store only).
    pub events_before_window: u64,
    pub next_seq: u64,
    pub user_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub turns: u64,
}

/// One chat session held in memory.
pub struct ChatSession {
    pub id: Arc<str>,
    state: Arc<Mutex<ChatState>>,
    last_used_ms: AtomicU64,
}

impl ChatSession {
    fn new(id: Arc<str>, now_ms: u64) -> Self {
        Self {
            id,
            state: Arc::new(Mutex::new(ChatState {
                closed: false,
                loaded: false,
                binding: None,
                last_agent_id: None,
                window: VecDeque::new(),
                events_before_window: 0,
                next_seq: 0,
                user_id: None,
                created_at: Utc::now(),
                turns: 0,
            })),
            last_used_ms: AtomicU64::new(now_ms),
        }
    }

    pub(crate) fn touch(&self, now_ms: u64) {
        self.last_used_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    pub(crate) fn last_used_ms(&self) -> u64 {
        self.last_used_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn try_lock(&self) -> Option<OwnedMutexGuard<ChatState>> {
        Arc::clone(&self.state).try_lock_owned().ok()
    }
}

/// Every chat session in memory, and the store behind them.
pub struct ChatSessions {
    map: DashMap<Arc<str>, Arc<ChatSession>>,
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) window: usize,
    max_active: usize,
    pub(crate) pressure: Notify,
    clock: Clock,
}

impl ChatSessions {
    pub(crate) fn new(store: Arc<dyn SessionStore>, window: usize, max_active: usize, clock: Clock) -> Self {
        Self {
            map: DashMap::new(),
            store,
            window: window.max(1),
            max_active: max_active.max(1),
            pressure: Notify::new(),
            clock,
        }
    }

    /// Chat sessions held in memory.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<ChatSession>> {
        self.map.get(id).map(|c| Arc::clone(c.value()))
    }

    /// Waits for the turn lock of chat `id`, creating the chat session if needed. Exactly one
    /// live session exists per id: creation goes through the sharded map's entry.
    pub(crate) async fn lock(&self, id: &str) -> (Arc<ChatSession>, OwnedMutexGuard<ChatState>) {
        loop {
            let chat = match self.get(id) {
                Some(c) => c,
                None => {
                    let now = self.clock.now_ms();
                    let chat = Arc::clone(
                        self.map
                            .entry(Arc::from(id))
                            .or_insert_with(|| Arc::new(ChatSession::new(Arc::from(id), now)))
                            .value(),
                    );
                    if self.map.len() > self.max_active {
                        self.pressure.notify_one();
                    }
                    chat
                }
            };
            let guard = Arc::clone(&chat.state).lock_owned().await;
            if !guard.closed {
                return (chat, guard);
            }
        }
    }

    /// Archives a chat session: releases its agent slot, marks the stored record archived (its
    /// history stays, so the next request recovers it) and drops it from memory.
    pub(crate) async fn close(&self, chat: &Arc<ChatSession>, st: &mut ChatState) -> Result<bool, StoreError> {
        if st.closed {
            return Ok(false);
        }
        st.closed = true;
        st.binding = None;
        // Archive before leaving the map: a newer session for this id must never be overwritten.
        let archived = if st.loaded {
            self.store.set_state(&chat.id, SessionState::Archived).await
        } else {
            Ok(false)
        };
        self.map.remove_if(&chat.id, |_, v| Arc::ptr_eq(v, chat));
        archived.map(|_| true)
    }

    /// Drops a session that never bound to an agent, without touching the store.
    pub(crate) fn discard(&self, chat: &Arc<ChatSession>, st: &mut ChatState) {
        st.closed = true;
        self.map.remove_if(&chat.id, |_, v| Arc::ptr_eq(v, chat));
    }

    /// Sessions idle for at least `ttl_ms`, plus the least recently used ones beyond the cap.
    pub(crate) fn eviction_candidates(&self, now_ms: u64, ttl_ms: u64) -> Vec<Arc<ChatSession>> {
        let mut idle = Vec::new();
        let mut rest = Vec::new();
        for e in self.map.iter() {
            let c = Arc::clone(e.value());
            if now_ms.saturating_sub(c.last_used_ms()) >= ttl_ms {
                idle.push(c);
            } else {
                rest.push(c);
            }
        }
        let remaining = rest.len();
        if remaining > self.max_active {
            // Over the cap: also evict the least recently used, down to 90 % of it.
            let target = self.max_active - self.max_active / 10;
            let evict = remaining - target;
            // Linear-time selection of the `evict` least recently used; no full sort.
            rest.select_nth_unstable_by_key(evict - 1, |c| c.last_used_ms());
            rest.truncate(evict);
            idle.extend(rest);
        }
        idle
    }
}
