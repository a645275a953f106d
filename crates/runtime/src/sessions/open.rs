//! What a turn does to its chat session, through [`OpenChat`]: read the state from the store
//! (once, or to catch up with other instances), bind to an agent, lend the window, commit the
//! turn's events, report. The types and the invariants are the parent module's (`sessions`).

use std::sync::Arc;

use aether_contracts::SessionReport;
use aether_store::{SessionEvent, SessionRecord, SessionState, StoreError};
use chrono::{DateTime, Utc};

use super::{nanos, Binding, OpenChat, TurnFlags, Window};
use crate::agents::{Agent, AgentManager, SessionSlot};
use crate::error::EngineError;
use crate::stats::Stats;

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
    pub(super) async fn load(&mut self, user_id: Option<&str>) -> Result<(), StoreError> {
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
    pub(super) async fn refresh(&mut self) -> Result<(), StoreError> {
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
        st.turns = st.turns.saturating_add(1);
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
