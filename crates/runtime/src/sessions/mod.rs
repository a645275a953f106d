//! Chat sessions: one live internal session per business `session_id`, and the invariants of
//! its state.
//!
//! Each [`ChatSession`] has its own FIFO async mutex: concurrent turns on one chat run one after
//! another in arrival order, and turns on different chats never wait on each other (the map is
//! sharded; no lock is held across chats). The history a turn sees is a bounded window of the
//! latest events kept in memory as shared `Arc`s; older events live only in the store, so a
//! turn's cost does not grow with the conversation.
//!
//! A turn works through an `OpenChat` (its methods in `open`), which this module alone can
//! change:
//! * `ChatSessions::open` takes the chat's turn lock (and, with a shared store, the session's
//!   lease: see `lease`), waiting at most `session_wait`, and makes its state current: the first use
//!   reads the record and the window from the store (recovery after an archive or a restart);
//!   with a shared store, a later use catches up with turns other instances appended.
//! * `OpenChat::bind` picks the turn's agent and takes a session slot on it (a new session,
//!   a recovery or an agent switch writes the record). A chat that never bound is dropped again,
//!   so a failed first turn leaves no empty shell behind.
//! * `OpenChat::history` lends the committed window to the model; nothing is copied.
//! * `OpenChat::commit` appends a turn's events to the store first and to the window second,
//!   so a failed write changes nothing; the next sequence number and the window's bound move
//!   together.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aether_store::{ById, HasId, SessionEvent, SessionState, SessionStore, StoreError};
use arc_swap::ArcSwapOption;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use smallvec::SmallVec;
use tokio::sync::{Mutex, Notify, OwnedMutexGuard};
use tokio::time::Instant;

use crate::agents::{Agent, SessionSlot};
use crate::clock::Clock;
use crate::error::EngineError;
use crate::ids::IdGen;
use crate::lease::{HeldLease, LeaseError, Leases};
use crate::stats::Stats;

mod open;

/// A chat session's binding to an agent: the internal session id and the agent's slot.
pub(crate) struct Binding {
    pub internal_id: Arc<str>,
    pub slot: SessionSlot,
}

/// State of a chat session, guarded by its turn lock; changed only through this module.
pub(crate) struct ChatState {
    /// Archived and removed from the map; a turn that finds this retries on a fresh session.
    closed: bool,
    /// History and record have been read from the store.
    loaded: bool,
    binding: Option<Binding>,
    /// Agent the stored record names (after recovery), for turns that send no `agent_id`.
    last_agent_id: Option<Arc<str>>,
    /// The latest events, oldest first; a one-turn session's two are held inline.
    window: Window,
    next_seq: u64,
    /// Shared with the store's record; the session id's own allocation when they are equal.
    user_id: Option<Arc<str>>,
    /// Nanoseconds since the epoch (8 bytes where a `DateTime` takes 12).
    created_at: i64,
    turns: u32,
}

/// A session's window: up to two events inline (a one-turn session allocates no list).
type Window = SmallVec<[Arc<SessionEvent>; 2]>;

fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

impl ChatState {
    /// Whether this process has read (or created) the session's state.
    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded
    }
}

/// One chat session held in memory.
pub struct ChatSession {
    pub id: Arc<str>,
    state: Arc<Mutex<ChatState>>,
    last_used_ms: AtomicU64,
    /// The agent the session is bound to, readable without the turn lock (the engine routes a
    /// turn that names no agent by it).
    bound_agent: ArcSwapOption<Agent>,
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
                window: Window::new(),
                next_seq: 0,
                user_id: None,
                created_at: nanos(Utc::now()),
                turns: 0,
            })),
            last_used_ms: AtomicU64::new(now_ms),
            bound_agent: ArcSwapOption::empty(),
        }
    }

    /// The agent this session was last bound to in this process.
    pub(crate) fn bound_agent(&self) -> Option<Arc<Agent>> {
        self.bound_agent.load_full()
    }

    pub(crate) fn touch(&self, now_ms: u64) {
        self.last_used_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    pub(crate) fn last_used_ms(&self) -> u64 {
        self.last_used_ms.load(Ordering::Relaxed)
    }

    /// `text` as a shared string: the session id's own allocation when it is the same text (a
    /// user id often is), else a new one.
    fn share<S: AsRef<str> + Into<Arc<str>>>(&self, text: S) -> Arc<str> {
        if *self.id == *text.as_ref() {
            Arc::clone(&self.id)
        } else {
            text.into()
        }
    }

    pub(crate) fn try_lock(&self) -> Option<OwnedMutexGuard<ChatState>> {
        Arc::clone(&self.state).try_lock_owned().ok()
    }
}

impl HasId for ChatSession {
    fn id(&self) -> &str {
        &self.id
    }
}

/// Every chat session in memory, and the store behind them.
pub struct ChatSessions {
    /// Each session is its own key (one pointer a slot), found by its id.
    map: DashMap<ById<ChatSession>, ()>,
    pub(crate) store: Arc<dyn SessionStore>,
    window: usize,
    max_active: usize,
    /// Other instances append to the same store: every turn catches up first.
    shared_store: bool,
    /// The store's session leases, with a shared store that offers them.
    leases: Option<Arc<Leases>>,
    /// The longest a turn waits for its session (lock and lease).
    wait: Duration,
    pub(crate) pressure: Notify,
    clock: Clock,
    ids: Arc<IdGen>,
    stats: Arc<Stats>,
}

/// How the chat sessions are kept.
pub(crate) struct SessionSettings {
    pub window: usize,
    pub max_active: usize,
    pub shared_store: bool,
    pub wait: Duration,
    pub lease_ttl: Duration,
    /// The name leases are held under (`RuntimeConfig::instance_name`); else a generated one.
    pub instance: Option<Arc<str>>,
}

impl ChatSessions {
    pub(crate) fn new(
        store: Arc<dyn SessionStore>,
        settings: SessionSettings,
        clock: Clock,
        ids: Arc<IdGen>,
        stats: Arc<Stats>,
    ) -> Self {
        let leases = settings
            .shared_store
            .then(|| {
                let instance = settings.instance.clone().unwrap_or_else(|| ids.next("instance"));
                Leases::of(&store, instance, settings.lease_ttl, Arc::clone(&stats))
            })
            .flatten();
        Self {
            // Reserved for the bound up front: below it the table never grows (nor rehashes
            // under a shard's lock on a turn's path).
            map: aether_store::reserved_map(settings.max_active.max(1)),
            store,
            window: settings.window.max(1),
            max_active: settings.max_active.max(1),
            shared_store: settings.shared_store,
            leases,
            wait: settings.wait,
            pressure: Notify::new(),
            clock,
            ids,
            stats,
        }
    }

    /// Chat sessions held in memory.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Locks chat `id` for a turn and makes its state current (see the module header). With a
    /// shared store the turn also takes the session's lease (see `lease`); the lock and the lease
    /// together are waited for at most `session_wait`, then the turn fails with `session.busy`.
    pub(crate) async fn open(&self, id: &str, user_id: Option<&str>) -> Result<OpenChat<'_>, EngineError> {
        let started = Instant::now();
        let deadline = started + self.wait;
        let Ok((chat, st)) = tokio::time::timeout_at(deadline, self.lock(id)).await else {
            return Err(self.busy(started));
        };
        let lease = match &self.leases {
            Some(leases) => match leases.acquire(&chat.id, deadline).await {
                Ok(held) => Some(held),
                Err(LeaseError::Busy) => return Err(self.busy(started)),
                Err(LeaseError::Store(e)) => return Err(e.into()),
            },
            None => None,
        };
        let mut open = OpenChat {
            sessions: self,
            chat,
            _lease: lease,
            st,
            flags: TurnFlags::default(),
        };
        if !open.st.loaded {
            open.load(user_id).await?;
        } else if self.shared_store {
            open.refresh().await?;
        }
        Ok(open)
    }

    fn busy(&self, started: Instant) -> EngineError {
        Stats::incr(&self.stats.session_busy);
        EngineError::SessionBusy {
            waited: started.elapsed(),
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<ChatSession>> {
        self.map.get(id).map(|c| Arc::clone(&c.key().0))
    }

    /// Waits for the turn lock of chat `id`, creating the chat session if needed. Exactly one
    /// live session exists per id: creation goes through the sharded map's entry.
    pub(crate) async fn lock(&self, id: &str) -> (Arc<ChatSession>, OwnedMutexGuard<ChatState>) {
        loop {
            let chat = match self.get(id) {
                Some(c) => c,
                None => {
                    let now = self.clock.now_ms();
                    // The session is its own key; a racing turn may have put one in first.
                    let fresh = Arc::new(ChatSession::new(Arc::from(id), now));
                    let chat = match self.map.entry(ById(Arc::clone(&fresh))) {
                        dashmap::Entry::Occupied(e) => Arc::clone(&e.key().0),
                        dashmap::Entry::Vacant(e) => {
                            e.insert(());
                            fresh
                        }
                    };
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
        if !Self::detach(chat, st) {
            return Ok(false);
        }
        // Archive before leaving the map: a newer session for this id must never be overwritten.
        let archived = if st.loaded {
            self.store.set_state(&chat.id, SessionState::Archived).await
        } else {
            Ok(false)
        };
        self.forget(chat);
        archived.map(|_| true)
    }

    /// [`Self::close`] for many sessions, locked by the caller, with one store write for all of
    /// them: the idle sweeper's batch. Returns how many were closed here; they leave memory even
    /// when the store write fails, as with [`Self::close`] (their history is stored; only the
    /// archived mark is missing, so their records stay active until the next request recovers
    /// them).
    pub(crate) async fn close_batch(
        &self,
        held: &mut [(Arc<ChatSession>, OwnedMutexGuard<ChatState>)],
    ) -> (u64, Result<u64, StoreError>) {
        let mut closed = 0;
        let mut stored = Vec::with_capacity(held.len());
        for (chat, st) in held.iter_mut() {
            let loaded = st.loaded;
            if Self::detach(chat, st) {
                closed += 1;
                if loaded {
                    stored.push(Arc::clone(&chat.id));
                }
            }
        }
        let archived = if stored.is_empty() {
            Ok(0)
        } else {
            self.store.archive_sessions(&stored).await
        };
        for (chat, _) in held.iter() {
            self.forget(chat);
        }
        (closed, archived)
    }

    /// Marks a locked session closed and lets go of its agent; `false` when it already was.
    fn detach(chat: &ChatSession, st: &mut ChatState) -> bool {
        if st.closed {
            return false;
        }
        st.closed = true;
        st.binding = None;
        chat.bound_agent.store(None);
        true
    }

    /// Drops a session that never bound to an agent, without touching the store.
    fn discard(&self, chat: &Arc<ChatSession>, st: &mut ChatState) {
        st.closed = true;
        self.forget(chat);
    }

    /// The chat sessions bound to `agent` now (a scan of the map: agent cleanup is rare, and
    /// binding stays free of per-agent bookkeeping).
    pub(crate) fn bound_to(&self, agent: &Arc<Agent>) -> Vec<Arc<str>> {
        self.map
            .iter()
            .filter(|e| {
                e.key()
                    .0
                    .bound_agent
                    .load()
                    .as_ref()
                    .is_some_and(|a| Arc::ptr_eq(a, agent))
            })
            .map(|e| Arc::clone(&e.key().0.id))
            .collect()
    }

    /// Shrinks the map's table when a sweep left it sparse (see [`aether_store::shrink_if_sparse`]).
    pub(crate) fn shrink_if_sparse(&self) -> bool {
        aether_store::shrink_if_sparse(&self.map, self.max_active)
    }

    /// Removes `chat` from the map, when it is still the session there for its id.
    fn forget(&self, chat: &Arc<ChatSession>) {
        self.map.remove_if(&*chat.id, |k, _| Arc::ptr_eq(&k.0, chat));
    }

    /// Sessions idle for at least `ttl_ms`, plus the least recently used ones beyond the cap.
    pub(crate) fn eviction_candidates(&self, now_ms: u64, ttl_ms: u64) -> Vec<Arc<ChatSession>> {
        let mut idle = Vec::new();
        let mut rest = Vec::new();
        for e in self.map.iter() {
            let c = Arc::clone(&e.key().0);
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

/// What happened to the chat session during one turn.
#[derive(Default)]
struct TurnFlags {
    created: bool,
    recovered: bool,
    agent_switched: bool,
    /// The requested agent was full; the session went to an agent with an equal config.
    overflow_from: Option<String>,
}

/// A chat session locked for one turn. Dropping it releases the turn lock.
pub(crate) struct OpenChat<'s> {
    sessions: &'s ChatSessions,
    chat: Arc<ChatSession>,
    /// The session's lease with a shared store, given back when the turn ends.
    _lease: Option<HeldLease>,
    st: OwnedMutexGuard<ChatState>,
    flags: TurnFlags,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every live session holds one of each: their inline sizes are the runtime's share of the
    /// per-session memory (glibc hands out chunks in steps of 16 bytes, 8 of them its header).
    #[test]
    fn a_live_session_stays_small() {
        let (session, state, locked) = (
            std::mem::size_of::<ChatSession>(),
            std::mem::size_of::<ChatState>(),
            std::mem::size_of::<Mutex<ChatState>>(),
        );
        println!("ChatSession {session} B, ChatState {state} B, behind its mutex {locked} B");
        assert!(session <= 40, "ChatSession is {session} B");
        assert!(state <= 112, "ChatState is {state} B");
        assert!(std::mem::size_of::<Window>() <= 24);
    }
}
