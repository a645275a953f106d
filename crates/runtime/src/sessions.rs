//! Chat sessions: one live internal session per business `session_id`, and the invariants of
//! its state.
//!
//! Each [`ChatSession`] has its own FIFO async mutex: concurrent turns on one chat run one after
//! another in arrival order, and turns on different chats never wait on each other (the map is
//! sharded; no lock is held across chats). The history a turn sees is a bounded window of the
//! latest events kept in memory as shared `Arc`s; older events live only in the store, so a
//! turn's cost does not grow with the conversation.
//!
//! A turn works through an [`OpenChat`], which this module alone can change:
//! * [`ChatSessions::open`] takes the chat's turn lock (and, with a shared store, the session's
//!   lease: see `lease`), waiting at most `session_wait`, and makes its state current: the first use
//!   reads the record and the window from the store (recovery after an archive or a restart);
//!   with a shared store, a later use catches up with turns other instances appended.
//! * [`OpenChat::bind`] picks the turn's agent and takes a session slot on it (a new session,
//!   a recovery or an agent switch writes the record). A chat that never bound is dropped again,
//!   so a failed first turn leaves no empty shell behind.
//! * [`OpenChat::history`] lends the committed window to the model; nothing is copied.
//! * [`OpenChat::commit`] appends a turn's events to the store first and to the window second,
//!   so a failed write changes nothing; the next sequence number and the window's bound move
//!   together.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aether_contracts::SessionReport;
use aether_store::{ById, HasId, SessionEvent, SessionRecord, SessionState, SessionStore, StoreError};
use arc_swap::ArcSwapOption;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use smallvec::SmallVec;
use tokio::sync::{Mutex, Notify, OwnedMutexGuard};
use tokio::time::Instant;

use crate::agents::{Agent, AgentManager, SessionSlot};
use crate::clock::Clock;
use crate::error::EngineError;
use crate::ids::IdGen;
use crate::lease::{HeldLease, LeaseError, Leases};
use crate::stats::Stats;

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
            map: DashMap::new(),
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

impl OpenChat<'_> {
    pub(crate) fn id(&self) -> &Arc<str> {
        &self.chat.id
    }

    pub(crate) fn user_id(&self) -> Option<&str> {
        self.st.user_id.as_deref()
    }

    /// Sequence number the turn's first new event gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.st.next_seq
    }

    /// The committed window, oldest first, borrowed.
    pub(crate) fn history(&mut self) -> &[Arc<SessionEvent>] {
        &self.st.window
    }

    /// Reads the session's record and history window from the store, once per live session.
    async fn load(&mut self, user_id: Option<&str>) -> Result<(), StoreError> {
        let store = &self.sessions.store;
        let st = &mut *self.st;
        match store.get_session(&self.chat.id).await? {
            Some(record) => {
                let window = store.load_window(&self.chat.id, self.sessions.window).await?;
                st.window = Window::from_vec(window.events);
                st.next_seq = record.event_count;
                st.last_agent_id = Some(Arc::from(record.agent_id));
                st.user_id = match record.user_id {
                    Some(u) => Some(self.chat.share(u)),
                    None => user_id.map(|u| self.chat.share(u)),
                };
                st.created_at = nanos(record.created_at);
                self.flags.recovered = true;
            }
            None => {
                st.user_id = user_id.map(|u| self.chat.share(u));
                self.flags.created = true;
            }
        }
        st.loaded = true;
        Ok(())
    }

    /// With a shared store: catches up with turns another instance appended since this one last
    /// wrote (the record's event count is ahead of ours), so the model sees the whole
    /// conversation and our next append lands after theirs.
    async fn refresh(&mut self) -> Result<(), StoreError> {
        let store = &self.sessions.store;
        let Some(record) = store.get_session(&self.chat.id).await? else {
            return Ok(());
        };
        let st = &mut *self.st;
        if record.event_count != st.next_seq {
            let window = store.load_window(&self.chat.id, self.sessions.window).await?;
            st.window = Window::from_vec(window.events);
            st.next_seq = record.event_count;
            st.last_agent_id = Some(Arc::from(record.agent_id));
        }
        Ok(())
    }

    /// Chooses the agent for this turn (`agent_id`, else the session's) and binds the session to
    /// it: a new session, a recovery or a switch takes a slot and writes the record. When this
    /// fails and the session never bound, it is dropped from memory (the store was not touched).
    /// `found` is the agent `agent_id` names, when the caller has already looked it up.
    pub(crate) async fn bind(
        &mut self,
        agents: &AgentManager,
        agent_id: Option<&str>,
        found: Option<Arc<Agent>>,
    ) -> Result<&Binding, EngineError> {
        if let Err(e) = self.try_bind(agents, agent_id, found).await {
            if self.st.binding.is_none() {
                self.sessions.discard(&self.chat, &mut self.st);
            }
            return Err(e);
        }
        self.st
            .binding
            .as_ref()
            .ok_or_else(|| EngineError::Internal("session bound to no agent after binding".into()))
    }

    async fn try_bind(
        &mut self,
        agents: &AgentManager,
        agent_id: Option<&str>,
        found: Option<Arc<Agent>>,
    ) -> Result<(), EngineError> {
        let st = &mut *self.st;
        let target: Arc<Agent> = match agent_id {
            Some(id) => found
                .filter(|a| *a.id == *id)
                .or_else(|| agents.get(id))
                .ok_or_else(|| EngineError::UnknownAgent(id.to_owned()))?,
            None => match st.binding.as_ref().filter(|b| !b.slot.agent.is_retired()) {
                Some(b) => Arc::clone(&b.slot.agent),
                None => st
                    .last_agent_id
                    .as_deref()
                    .and_then(|id| agents.get(id))
                    .ok_or_else(|| EngineError::SessionWithoutAgent(self.chat.id.to_string()))?,
            },
        };
        if st.binding.as_ref().is_some_and(|b| Arc::ptr_eq(&b.slot.agent, &target)) {
            return Ok(());
        }
        let previous_agent = st
            .binding
            .as_ref()
            .map(|b| Arc::clone(&b.slot.agent.id))
            .or_else(|| st.last_agent_id.clone());
        let (target, slot) = acquire_or_overflow(agents, target, &mut self.flags)?;
        // Named as bound before the store write: an agent cleaned up from now on finds this
        // session (`ChatSessions::bound_to`), and one retired just before is refused here.
        let was_bound = self.chat.bound_agent.swap(Some(Arc::clone(&target)));
        if target.is_retired() {
            self.chat.bound_agent.store(was_bound);
            return Err(EngineError::UnknownAgent(target.id.to_string()));
        }
        let stats = &self.sessions.stats;
        if previous_agent.is_some_and(|p| *p != *target.id) {
            self.flags.agent_switched = true;
            Stats::incr(&stats.agent_switches);
        }
        let internal_id = self.sessions.ids.next("ses");
        self.sessions
            .store
            .put_session(SessionRecord {
                session_id: Arc::clone(&self.chat.id),
                user_id: st.user_id.clone(),
                agent_id: target.id.to_string(),
                internal_session_id: internal_id.to_string(),
                state: SessionState::Active,
                created_at: DateTime::from_timestamp_nanos(st.created_at),
                updated_at: Utc::now(),
                event_count: st.next_seq,
            })
            .await
            .inspect_err(|_| self.chat.bound_agent.store(was_bound.clone()))?;
        // The agent's own id, shared (not a copy per session).
        st.last_agent_id = Some(Arc::clone(&target.id));
        st.binding = Some(Binding { internal_id, slot });
        if self.flags.created {
            Stats::incr(&stats.sessions_created);
        } else if self.flags.recovered {
            Stats::incr(&stats.sessions_recovered);
        }
        Ok(())
    }

    /// Marks the session as used now (its idle timeout starts again).
    pub(crate) fn touch(&self) {
        self.chat.touch(self.sessions.clock.now_ms());
    }

    /// Makes a turn's events part of the session: the store first, then the window (evicting
    /// the oldest beyond its bound), so a failed write changes nothing.
    pub(crate) async fn commit(&mut self, events: &[Arc<SessionEvent>]) -> Result<(), StoreError> {
        self.sessions.store.append_events(&self.chat.id, events).await?;
        let cap = self.sessions.window;
        let st = &mut *self.st;
        if st.window.is_empty() {
            // Most sessions hold one turn: no room for more until a second comes.
            st.window.reserve_exact(events.len().min(cap));
        }
        st.window.extend(events.iter().cloned());
        if st.window.len() > cap {
            let over = st.window.len() - cap;
            st.window.drain(..over);
        }
        st.next_seq += events.len() as u64;
        st.turns += 1;
        self.touch();
        Ok(())
    }

    /// What this turn did to the session, for the turn report.
    pub(crate) fn report(&self) -> SessionReport {
        SessionReport {
            created: self.flags.created,
            recovered: self.flags.recovered,
            agent_switched: self.flags.agent_switched,
            overflow_from: self.flags.overflow_from.clone(),
            turn: u64::from(self.st.turns),
            events: self.st.next_seq,
            window_events: self.st.window.len() as u64,
        }
    }
}

/// Takes a session slot on `agent`; when it is full, overflows to an agent with an equal config
/// (one with room, or a new one). Reuse is decided when the agent is created and the slot is
/// taken at the first turn, so under load several clients can be handed the same nearly-full
/// agent: they are served by a sibling instead of failing. The cap itself is never exceeded.
fn acquire_or_overflow(
    agents: &AgentManager,
    agent: Arc<Agent>,
    flags: &mut TurnFlags,
) -> Result<(Arc<Agent>, SessionSlot), EngineError> {
    let mut candidate = agent;
    for _ in 0..16 {
        match agents.acquire_slot(&candidate) {
            Ok(slot) => return Ok((candidate, slot)),
            Err(EngineError::AgentAtCapacity { agent_id, .. }) => {
                flags.overflow_from.get_or_insert(agent_id);
                candidate = agents.create_or_reuse(candidate.config.clone())?.0;
            }
            Err(e) => return Err(e),
        }
    }
    Err(EngineError::Internal(
        "could not find an agent with a free session slot after 16 tries".into(),
    ))
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
