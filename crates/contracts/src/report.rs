//! [`TurnReport`]: what one turn reports about itself — where its time went, what it cost, who
//! answered (and whether that was the simulated model), and what happened to its chat session.
//!
//! On the wire the report is spread over the top-level keys of `TaskResult.metadata`
//! (`timing`, `token_usage`, `cost_usd`, `provider`, `session`, `agent_context`,
//! `execution_stats`), exactly as the original Aether Frame put them. The engine writes them with
//! [`TurnReport::write_into`]; every reader (the harness in process and over HTTP, `aether chat`)
//! reads them back with [`TurnReport::read`], so a renamed key is an error that names the key,
//! never a silent zero.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::enums::TaskStatus;
use crate::Metadata;

/// Token accounting of a model call or a turn (metadata key `token_usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl std::ops::AddAssign for TokenUsage {
    fn add_assign(&mut self, o: Self) {
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.total_tokens += o.total_tokens;
    }
}

/// Where a turn's time went, in microseconds (metadata key `timing`).
/// `overhead_us` is the framework's own cost: total − model − tools − approval waits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnTiming {
    pub total_us: f64,
    pub model_us: f64,
    pub tool_us: f64,
    pub approval_us: f64,
    pub media_us: f64,
    pub overhead_us: f64,
    pub model_calls: u32,
    pub tool_calls: u64,
}

/// Who answered (metadata key `provider`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderReport {
    /// The provider's name (`simulated`, `openai`, `gemini`, `local`, or a registered name).
    pub name: String,
    /// The model the agent asked for.
    pub model: String,
    /// True when the answer came from the simulated model: no real model was called.
    pub simulated: bool,
    /// The profile or deployment that served the last call, when the provider says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// What the turn did to its chat session (metadata key `session`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionReport {
    /// The chat session was new.
    pub created: bool,
    /// The chat session was read back from the store (after an archive or a restart).
    pub recovered: bool,
    pub agent_switched: bool,
    /// The requested agent was full; the session went to an agent with an equal config.
    pub overflow_from: Option<String>,
    /// Turns of this session in this process.
    pub turn: u64,
    /// Events in the session's whole history.
    pub events: u64,
    /// Events in the in-memory window a turn sees.
    pub window_events: u64,
}

/// The ids a turn ran under (metadata key `agent_context`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentContext {
    pub session_id: String,
    pub internal_session_id: String,
    pub user_id: Option<String>,
    pub agent_id: String,
    pub runner_id: String,
    pub execution_id: String,
}

/// When the turn ran (metadata key `execution_stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionStats {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: f64,
    pub status: TaskStatus,
}

/// A model provider as an agent-creation answer names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderName {
    pub name: String,
    /// True for the simulated model.
    pub simulated: bool,
}

/// What an agent-creation answer reports (metadata key `agent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentReport {
    pub agent_id: String,
    /// An existing agent with an equal config was reused.
    pub reused: bool,
    pub created_at: DateTime<Utc>,
    pub model: String,
    pub provider: ProviderName,
    /// The tools it resolved, by full name.
    pub tools: Vec<String>,
    /// Chat sessions bound to it now.
    pub sessions: u64,
}

impl AgentReport {
    pub fn write_into(&self, metadata: &mut Metadata) {
        put(metadata, "agent", self);
    }

    pub fn read(metadata: &Metadata) -> Result<Self, ReportError> {
        part(metadata, "agent")
    }

    /// Only whether the agent was reused.
    pub fn reused(metadata: &Metadata) -> Result<bool, ReportError> {
        #[derive(Deserialize)]
        struct Reused {
            reused: bool,
        }
        Ok(part::<Reused>(metadata, "agent")?.reused)
    }
}

/// Everything a completed turn reports about itself. See the module header for where it lives
/// on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnReport {
    pub timing: TurnTiming,
    pub token_usage: TokenUsage,
    pub cost_usd: f64,
    pub provider: ProviderReport,
    pub session: SessionReport,
    pub agent_context: AgentContext,
    pub execution_stats: ExecutionStats,
}

/// What a load generator reads of a turn: the report's measurements, without its ids and
/// timestamps (nothing to allocate or parse that it would throw away).
#[derive(Debug, Clone, PartialEq)]
pub struct TurnFigures {
    pub timing: TurnTiming,
    pub token_usage: TokenUsage,
    pub cost_usd: f64,
    pub provider: ProviderReport,
    /// Whether the turn started its chat session.
    pub session_created: bool,
}

/// A turn report that could not be read: which metadata key, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("turn report: metadata.{key}: {message}")]
pub struct ReportError {
    pub key: &'static str,
    pub message: String,
}

/// Reads the typed value under `key`, without copying the JSON.
fn part<T: DeserializeOwned>(metadata: &Metadata, key: &'static str) -> Result<T, ReportError> {
    let value = metadata.get(key).ok_or_else(|| ReportError {
        key,
        message: "missing".into(),
    })?;
    T::deserialize(value).map_err(|e| ReportError {
        key,
        message: e.to_string(),
    })
}

fn put<T: Serialize>(metadata: &mut Metadata, key: &str, value: &T) {
    // These types serialise infallibly (plain structs of numbers, strings and timestamps).
    let value = serde_json::to_value(value).unwrap_or(Value::Null);
    metadata.insert(key.to_owned(), value);
}

impl TurnReport {
    /// Writes the report into a result's metadata under its wire keys.
    pub fn write_into(&self, metadata: &mut Metadata) {
        put(metadata, "timing", &self.timing);
        put(metadata, "token_usage", &self.token_usage);
        metadata.insert("cost_usd".into(), Value::from(self.cost_usd));
        put(metadata, "provider", &self.provider);
        put(metadata, "session", &self.session);
        put(metadata, "agent_context", &self.agent_context);
        put(metadata, "execution_stats", &self.execution_stats);
    }

    /// Reads the whole report back from a result's metadata.
    pub fn read(metadata: &Metadata) -> Result<Self, ReportError> {
        Ok(Self {
            timing: Self::timing(metadata)?,
            token_usage: part(metadata, "token_usage")?,
            cost_usd: part(metadata, "cost_usd")?,
            provider: Self::provider(metadata)?,
            session: part(metadata, "session")?,
            agent_context: part(metadata, "agent_context")?,
            execution_stats: part(metadata, "execution_stats")?,
        })
    }

    /// The measurements alone ([`TurnFigures`]).
    pub fn figures(metadata: &Metadata) -> Result<TurnFigures, ReportError> {
        #[derive(Deserialize)]
        struct Created {
            created: bool,
        }
        Ok(TurnFigures {
            timing: Self::timing(metadata)?,
            token_usage: part(metadata, "token_usage")?,
            cost_usd: part(metadata, "cost_usd")?,
            provider: Self::provider(metadata)?,
            session_created: part::<Created>(metadata, "session")?.created,
        })
    }

    /// Only the timing.
    pub fn timing(metadata: &Metadata) -> Result<TurnTiming, ReportError> {
        part(metadata, "timing")
    }

    /// Only who answered.
    pub fn provider(metadata: &Metadata) -> Result<ProviderReport, ReportError> {
        part(metadata, "provider")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TurnReport {
        TurnReport {
            timing: TurnTiming {
                total_us: 120.5,
                model_us: 100.0,
                tool_us: 10.0,
                approval_us: 0.0,
                media_us: 0.5,
                overhead_us: 10.5,
                model_calls: 2,
                tool_calls: 1,
            },
            token_usage: TokenUsage {
                prompt_tokens: 3,
                completion_tokens: 4,
                total_tokens: 7,
            },
            cost_usd: 0.25,
            provider: ProviderReport {
                name: "simulated".into(),
                model: "gpt-4o-mini".into(),
                simulated: true,
                profile: None,
            },
            session: SessionReport {
                created: true,
                turn: 1,
                events: 4,
                window_events: 4,
                ..SessionReport::default()
            },
            agent_context: AgentContext {
                session_id: "s".into(),
                internal_session_id: "ses-1".into(),
                user_id: None,
                agent_id: "agent-1".into(),
                runner_id: "run-1".into(),
                execution_id: "t".into(),
            },
            execution_stats: ExecutionStats {
                started_at: DateTime::UNIX_EPOCH,
                finished_at: DateTime::UNIX_EPOCH,
                duration_ms: 0.12,
                status: TaskStatus::Success,
            },
        }
    }

    #[test]
    fn a_report_reads_back_what_was_written() {
        let mut m = Metadata::new();
        sample().write_into(&mut m);
        assert_eq!(TurnReport::read(&m).unwrap(), sample());
        let f = TurnReport::figures(&m).unwrap();
        assert_eq!((f.timing, f.cost_usd, f.session_created), (sample().timing, 0.25, true));
        assert_eq!(m["timing"]["overhead_us"], 10.5);
        assert_eq!(m["provider"]["simulated"], true);
        assert!(m["provider"].get("profile").is_none(), "absent, not null");
    }

    #[test]
    fn a_renamed_or_missing_key_is_an_error_that_names_it() {
        let mut m = Metadata::new();
        sample().write_into(&mut m);
        let timing = m["timing"].as_object_mut().unwrap();
        let v = timing.remove("model_us").unwrap();
        timing.insert("model_micros".into(), v);
        let e = TurnReport::read(&m).unwrap_err();
        assert_eq!(e.key, "timing");
        assert!(e.message.contains("model_us"), "{e}");

        let figures = TurnReport::figures(&m).unwrap_err();
        assert_eq!(figures.key, "timing", "the figures need the timing too");

        m.remove("provider");
        assert_eq!(
            TurnReport::provider(&m).unwrap_err().to_string(),
            "turn report: metadata.provider: missing"
        );
    }
}
