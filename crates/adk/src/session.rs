//! An adk session service over Aether's chat sessions.
//!
//! ADK chats are Aether chat sessions: the runtime's turn frame opens the session (its turn lock,
//! its bounded window, loaded from the `SessionStore` when needed), and commits the turn's
//! events to the store only when the turn succeeds. So [`AetherSessions`] serves adk the turn's
//! session: `get` reads the session's window, and `append_event` stages adk's events for the
//! loop, which adds them to the turn's pending events. A failed, timed-out or cancelled turn
//! leaves nothing behind, as on the native framework, and ADK chats appear in `aether sessions`,
//! `/v1/sessions`, archive, expiry and the cluster like any other.
//!
//! Sessions are created, listed and deleted through Aether (`/v1/sessions`, `aether sessions`),
//! not through this service: those calls answer a clear error.

use std::collections::HashMap;
use std::sync::Arc;

use adk_core::{AdkError, ErrorCategory, ErrorComponent};
use adk_session::{
    CreateRequest, DeleteRequest, Event, Events, GetRequest, ListRequest, Session, SessionService, State,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::turn::Turn;

/// adk's session service, serving the Aether turn it runs in.
pub(crate) struct AetherSessions;

fn outside(what: &str) -> AdkError {
    AdkError::new(
        ErrorComponent::Session,
        ErrorCategory::Unsupported,
        "aether.session.outside_turn",
        format!(
            "{what}: sessions of the adk framework are Aether chat sessions; create, list and delete them through \
             Aether (/v1/sessions, `aether sessions`)"
        ),
    )
}

/// The turn running in this task, when it serves `session_id`.
fn turn_of(session_id: &str) -> adk_core::Result<Arc<Turn>> {
    match Turn::current() {
        Some(turn) if &*turn.session_id == session_id => Ok(turn),
        Some(turn) => Err(AdkError::not_found(
            ErrorComponent::Session,
            "aether.session.other",
            format!(
                "session `{session_id}` is not the one this turn serves (`{}`)",
                turn.session_id
            ),
        )),
        None => Err(outside("outside an Aether turn")),
    }
}

fn session_of(turn: &Turn, app_name: &str, user_id: &str) -> Box<dyn Session> {
    Box::new(AetherSession {
        id: turn.session_id.to_string(),
        app_name: app_name.to_owned(),
        user_id: user_id.to_owned(),
        events: EventList(Arc::clone(&turn.history)),
        state: StateMap::default(),
        updated: turn.history.last().map_or_else(Utc::now, |e| e.timestamp),
    })
}

#[async_trait]
impl SessionService for AetherSessions {
    async fn create(&self, req: CreateRequest) -> adk_core::Result<Box<dyn Session>> {
        let turn = turn_of(req.session_id.as_deref().unwrap_or_default())?;
        Ok(session_of(&turn, &req.app_name, &req.user_id))
    }

    async fn get(&self, req: GetRequest) -> adk_core::Result<Box<dyn Session>> {
        let turn = turn_of(&req.session_id)?;
        Ok(session_of(&turn, &req.app_name, &req.user_id))
    }

    async fn list(&self, _req: ListRequest) -> adk_core::Result<Vec<Box<dyn Session>>> {
        Err(outside("list"))
    }

    async fn delete(&self, _req: DeleteRequest) -> adk_core::Result<()> {
        Err(outside("delete"))
    }

    async fn append_event(&self, session_id: &str, event: Event) -> adk_core::Result<()> {
        turn_of(session_id)?.staged.lock().push(event);
        Ok(())
    }
}

/// The session's window as adk reads it (shared, not copied, until adk asks for all of it).
struct EventList(Arc<[Event]>);

impl Events for EventList {
    fn all(&self) -> Vec<Event> {
        self.0.to_vec()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn at(&self, index: usize) -> Option<&Event> {
        self.0.get(index)
    }
}

/// adk's session state. Aether keeps none across turns; within a turn adk keeps its own copy.
#[derive(Default)]
struct StateMap(HashMap<String, Value>);

impl State for StateMap {
    fn get(&self, key: &str) -> Option<Value> {
        self.0.get(key).cloned()
    }

    fn set(&mut self, key: String, value: Value) {
        self.0.insert(key, value);
    }

    fn all(&self) -> HashMap<String, Value> {
        self.0.clone()
    }
}

struct AetherSession {
    id: String,
    app_name: String,
    user_id: String,
    events: EventList,
    state: StateMap,
    updated: DateTime<Utc>,
}

impl Session for AetherSession {
    fn id(&self) -> &str {
        &self.id
    }

    fn app_name(&self) -> &str {
        &self.app_name
    }

    fn user_id(&self) -> &str {
        &self.user_id
    }

    fn state(&self) -> &dyn State {
        &self.state
    }

    fn events(&self) -> &dyn Events {
        &self.events
    }

    fn last_update_time(&self) -> DateTime<Utc> {
        self.updated
    }
}
