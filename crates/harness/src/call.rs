//! [`Call`]: one request of the two-step protocol as the load loop issues it (create or reuse
//! the agent, then one turn), with what every request of a phase shares ([`PhaseParts`]: the
//! agent's config, the turn's messages, the request metadata) built and JSON-encoded once per
//! phase rather than per request.
//!
//! A target that takes a [`TaskRequest`] gets one from [`Call::into_request`] (the shared parts
//! cloned into it, as the runtime takes a request by value). A target that sends JSON writes the
//! body with [`Call::write_json`]: the shared parts are copied in as the bytes encoded at the
//! start of the phase, and only the task id, the agent and session ids, the iteration and a
//! per-iteration user are encoded per call. The body reads back as the same request (a unit test
//! below compares the two for every kind of call); it leaves out the fields whose value is the
//! server's default (`description`, empty tool and knowledge lists).

use aether_contracts::{AgentConfig, Metadata, TaskRequest, UniversalMessage, UserContext};
use serde::Serialize;
use serde_json::Value;

/// A value and its JSON, encoded once.
pub struct Encoded<T> {
    value: T,
    json: Vec<u8>,
}

impl<T: Serialize> Encoded<T> {
    pub fn new(value: T) -> Result<Self, serde_json::Error> {
        let json = serde_json::to_vec(&value)?;
        Ok(Self { value, json })
    }

    pub fn value(&self) -> &T {
        &self.value
    }
}

/// What every request of a phase shares.
pub struct PhaseParts {
    agent: Encoded<AgentConfig>,
    messages: Encoded<Vec<UniversalMessage>>,
    /// The turn request's metadata less `iteration`, which each call adds.
    metadata: Encoded<Metadata>,
}

/// The metadata key each turn request adds with its iteration number.
const ITERATION: &str = "iteration";

impl PhaseParts {
    /// The parts of a phase whose turns send `messages` with `metadata` (`iteration` in it is
    /// replaced by each call's own).
    pub fn new(agent: AgentConfig, messages: Vec<UniversalMessage>, mut metadata: Metadata) -> Result<Self, String> {
        metadata.remove(ITERATION);
        let encode_error = |what: &str, e: serde_json::Error| format!("encoding the {what} failed: {e}");
        Ok(Self {
            agent: Encoded::new(agent).map_err(|e| encode_error("agent config", e))?,
            messages: Encoded::new(messages).map_err(|e| encode_error("turn's messages", e))?,
            metadata: Encoded::new(metadata).map_err(|e| encode_error("request metadata", e))?,
        })
    }

    pub fn agent(&self) -> &AgentConfig {
        self.agent.value()
    }
}

/// The agent a creation request sends: the phase's, or one made for this iteration alone.
pub enum AgentPart<'a> {
    Shared(&'a Encoded<AgentConfig>),
    Own(Box<AgentConfig>),
}

/// One request of the protocol.
pub enum Call<'a> {
    /// Step one: create (or reuse) an agent.
    CreateAgent { task_id: String, agent: AgentPart<'a> },
    /// Step two: one turn.
    Turn(Turn<'a>),
}

/// A turn of `agent_id` in session `session_id`, with the phase's messages and metadata.
pub struct Turn<'a> {
    pub task_id: String,
    pub agent_id: &'a str,
    pub session_id: String,
    pub iteration: u64,
    /// Sent as the request's `user_context.user_id` when set.
    pub user_id: Option<String>,
    pub parts: &'a PhaseParts,
}

impl<'a> Call<'a> {
    /// Creates the phase's own agent.
    pub fn create_shared_agent(task_id: String, parts: &'a PhaseParts) -> Self {
        Call::CreateAgent {
            task_id,
            agent: AgentPart::Shared(&parts.agent),
        }
    }

    /// Creates an agent made for one iteration.
    pub fn create_own_agent(task_id: String, agent: AgentConfig) -> Self {
        Call::CreateAgent {
            task_id,
            agent: AgentPart::Own(Box::new(agent)),
        }
    }

    pub fn task_id(&self) -> &str {
        match self {
            Call::CreateAgent { task_id, .. } | Call::Turn(Turn { task_id, .. }) => task_id,
        }
    }

    /// The request, the shared parts cloned into it.
    pub fn into_request(self) -> TaskRequest {
        match self {
            Call::CreateAgent { task_id, agent } => TaskRequest::create_agent(
                task_id,
                match agent {
                    AgentPart::Shared(a) => a.value().clone(),
                    AgentPart::Own(a) => *a,
                },
            ),
            Call::Turn(t) => {
                let mut r =
                    TaskRequest::converse(t.task_id, t.agent_id, t.session_id, t.parts.messages.value().clone());
                r.metadata = t.parts.metadata.value().clone();
                r.metadata.insert(ITERATION.into(), Value::from(t.iteration));
                r.user_context = t.user_id.map(|user_id| UserContext {
                    user_id: Some(user_id),
                    ..UserContext::default()
                });
                r
            }
        }
    }

    /// Appends the request's JSON to `out` (see the module's header).
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        match self {
            Call::CreateAgent { task_id, agent } => {
                field(out, b"{\"task_id\":", task_id)?;
                out.extend_from_slice(b",\"task_type\":\"agent_creation\",\"agent_config\":");
                match agent {
                    AgentPart::Shared(a) => out.extend_from_slice(&a.json),
                    AgentPart::Own(a) => serde_json::to_writer(&mut *out, a)?,
                }
            }
            Call::Turn(t) => {
                field(out, b"{\"task_id\":", &t.task_id)?;
                field(out, b",\"agent_id\":", t.agent_id)?;
                field(out, b",\"session_id\":", &t.session_id)?;
                if let Some(user_id) = &t.user_id {
                    field(out, b",\"user_context\":{\"user_id\":", user_id)?;
                    out.push(b'}');
                }
                out.extend_from_slice(b",\"messages\":");
                out.extend_from_slice(&t.parts.messages.json);
                // The shared metadata object, reopened to add this call's iteration.
                out.extend_from_slice(b",\"metadata\":");
                let meta = &t.parts.metadata.json;
                out.extend_from_slice(&meta[..meta.len() - 1]);
                if !t.parts.metadata.value().is_empty() {
                    out.push(b',');
                }
                out.extend_from_slice(b"\"iteration\":");
                serde_json::to_writer(&mut *out, &t.iteration)?;
                out.push(b'}');
            }
        }
        out.push(b'}');
        Ok(())
    }

    /// Room for the body, so that [`Self::write_json`] allocates once.
    pub fn json_size_hint(&self) -> usize {
        const IDS_AND_KEYS: usize = 192;
        IDS_AND_KEYS
            + match self {
                Call::CreateAgent { agent, .. } => match agent {
                    AgentPart::Shared(a) => a.json.len(),
                    AgentPart::Own(_) => 512,
                },
                Call::Turn(t) => t.parts.messages.json.len() + t.parts.metadata.json.len(),
            }
    }
}

/// Appends `key` (the JSON before the value) and `value` as a JSON string.
fn field(out: &mut Vec<u8>, key: &[u8], value: &str) -> Result<(), serde_json::Error> {
    out.extend_from_slice(key);
    serde_json::to_writer(&mut *out, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(metadata: Metadata) -> PhaseParts {
        let agent = AgentConfig::new("gpt-4o-mini", "Answer \"briefly\".\n").with_tools(["crm_lookup"]);
        let messages = vec![UniversalMessage::user("héllo \u{1}")];
        PhaseParts::new(agent, messages, metadata).unwrap()
    }

    /// The body, read as the server reads it, is the request `into_request` builds.
    fn assert_same(call: Call<'_>) {
        let mut body = Vec::new();
        call.write_json(&mut body).unwrap();
        let read: TaskRequest =
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
        let hint = call.json_size_hint();
        let want = call.into_request();
        assert_eq!(
            serde_json::to_value(&read).unwrap(),
            serde_json::to_value(&want).unwrap()
        );
        assert!(body.len() <= hint, "{} > {hint}", body.len());
    }

    fn turn(parts: &PhaseParts, user_id: Option<String>) -> Call<'_> {
        Call::Turn(Turn {
            task_id: "run-t7".into(),
            agent_id: "agent-\"1\"",
            session_id: "run-req-7".into(),
            iteration: 7,
            user_id,
            parts,
        })
    }

    #[test]
    fn each_kind_of_call_reads_back_as_its_request() {
        let mut meta = Metadata::new();
        meta.insert("scenario".into(), "burst_load".into());
        meta.insert("tenant".into(), "enterprise_pool".into());
        let p = parts(meta);
        assert_same(Call::create_shared_agent("run-c7".into(), &p));
        let mut own = p.agent().clone();
        own.name = Some("run-7".into());
        assert_same(Call::create_own_agent("run-c7".into(), own));
        assert_same(turn(&p, None));
        assert_same(turn(&p, Some("user-0007".into())));
        // No metadata but the iteration.
        let bare = parts(Metadata::new());
        assert_same(turn(&bare, None));
    }

    #[test]
    fn each_call_sends_its_own_iteration() {
        let mut meta = Metadata::new();
        meta.insert("iteration".into(), "the scenario's".into());
        let p = parts(meta);
        let mut body = Vec::new();
        turn(&p, None).write_json(&mut body).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["metadata"], serde_json::json!({"iteration": 7}));
        assert_same(turn(&p, None));
    }
}
