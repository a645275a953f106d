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
    /// A boxed slice, not a `Vec`: most events carry none, and a history holds many events.
    #[serde(default, skip_serializing_if = "no_results")]
    pub tool_results: Box<[ToolResult]>,
    pub created_at: DateTime<Utc>,
    /// Token count, computed once by whoever first needs it.
    #[serde(default, skip_serializing_if = "token_count_unset", with = "token_count_serde")]
    token_count: OnceLock<u32>,
}

fn no_results(r: &impl AsRef<[ToolResult]>) -> bool {
    r.as_ref().is_empty()
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
            tool_results: tool_results.into_boxed_slice(),
            created_at: Utc::now(),
            token_count: OnceLock::new(),
        }
    }

    /// The event's token count, computing it with `count` the first time only.
    pub fn tokens_with(&self, count: impl FnOnce(&Self) -> u32) -> u32 {
        *self.token_count.get_or_init(|| count(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Role;
    use crate::tool::ToolCall;

    /// A history holds many events: their inline size is the per-session memory (glibc hands an
    /// `Arc<SessionEvent>` a 160-byte chunk at 136 bytes, 240 at the 208 this once was).
    #[test]
    fn an_event_and_its_message_stay_small() {
        assert!(
            std::mem::size_of::<UniversalMessage>() <= 56,
            "{}",
            std::mem::size_of::<UniversalMessage>()
        );
        assert!(
            std::mem::size_of::<SessionEvent>() <= 136,
            "{}",
            std::mem::size_of::<SessionEvent>()
        );
    }

    #[test]
    fn rare_fields_round_trip_and_a_plain_message_has_none() {
        let plain = UniversalMessage::user("hi");
        assert_eq!(
            serde_json::to_value(&plain).unwrap(),
            serde_json::json!({"role": "user", "content": "hi"})
        );
        let mut meta = crate::Metadata::new();
        meta.insert("k".into(), serde_json::json!(1));
        let call = ToolCall {
            tool_name: "lookup".into(),
            parameters: crate::Metadata::new(),
            tool_namespace: None,
            call_id: Some("c1".into()),
        };
        let rich = UniversalMessage::text(Role::Assistant, "")
            .with_name("bot")
            .with_tool_calls(vec![call.clone()])
            .with_metadata(meta.clone());
        let wire = serde_json::to_value(&rich).unwrap();
        assert_eq!(wire["name"], "bot");
        assert_eq!(wire["tool_calls"][0]["tool_name"], "lookup");
        assert_eq!(wire["metadata"]["k"], 1);
        let back: UniversalMessage = serde_json::from_value(wire).unwrap();
        assert_eq!(back, rich);
        assert_eq!(back.tool_calls(), Some(&[call][..]));
        // Emptying every rare field compares equal to a message that never had them.
        let mut emptied = back;
        emptied.set_name(None);
        emptied.set_tool_calls(None);
        emptied.set_metadata(crate::Metadata::new());
        assert_eq!(emptied, UniversalMessage::text(Role::Assistant, ""));
        let err = serde_json::from_value::<UniversalMessage>(serde_json::json!({"role": "user", "nme": "x"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `nme`"), "{err}");
    }
}
