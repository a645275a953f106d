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
/// `total_us` runs from when the framework adapter takes the turn to its answer, plus the
/// attachment checks (`media_us`); `overhead_us` is the framework's own cost: total − model −
/// tools − approval waits.
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
///
/// Like every report type with text, it is generic over its string type: readers get `String`s
/// (the default); the engine writes one that borrows `&str`s from the turn, so its strings are
/// copied once, into the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderReport<S = String> {
    /// The provider's name (`simulated`, `openai`, `gemini`, `local`, or a registered name).
    pub name: S,
    /// The model the agent asked for.
    pub model: S,
    /// True when the answer came from the simulated model: no real model was called.
    pub simulated: bool,
    /// The profile or deployment that served the last call, when the provider says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<S>,
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
pub struct AgentContext<S = String> {
    pub session_id: S,
    pub internal_session_id: S,
    pub user_id: Option<S>,
    pub agent_id: S,
    pub runner_id: S,
    pub execution_id: S,
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
pub struct ProviderName<S = String> {
    pub name: S,
    /// True for the simulated model.
    pub simulated: bool,
}

/// What an agent-creation answer reports (metadata key `agent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentReport<S = String> {
    pub agent_id: S,
    /// An existing agent with an equal config was reused.
    pub reused: bool,
    pub created_at: DateTime<Utc>,
    pub model: S,
    pub provider: ProviderName<S>,
    /// The tools it resolved, by full name.
    pub tools: Vec<S>,
    /// Chat sessions bound to it now.
    pub sessions: u64,
}

impl<S: Serialize> AgentReport<S> {
    pub fn write_into(&self, metadata: &mut Metadata) {
        put(metadata, "agent", self);
    }
}

impl AgentReport {
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
///
/// Generic over its string type like [`ProviderReport`].
#[derive(Debug, Clone, PartialEq)]
pub struct TurnReport<S = String> {
    pub timing: TurnTiming,
    pub token_usage: TokenUsage,
    pub cost_usd: f64,
    pub provider: ProviderReport<S>,
    pub session: SessionReport,
    pub agent_context: AgentContext<S>,
    pub execution_stats: ExecutionStats,
}

/// What a load generator reads of a turn: the report's measurements, without its ids and
/// timestamps. Reading it allocates nothing (the provider's strings are only looked at).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurnFigures {
    pub timing: TurnTiming,
    pub token_usage: TokenUsage,
    pub cost_usd: f64,
    /// The answer came from a simulated model: the provider is the simulator, or the endpoint it
    /// called labelled its profile as simulated (`aether sim-llm`).
    pub simulated: bool,
    /// Whether the turn started its chat session.
    pub session_created: bool,
}

/// The marker an HTTP provider puts in `provider.profile` when `aether sim-llm` answered.
pub const SIMULATED_PROFILE_MARK: &str = "(simulated by aether sim-llm)";

/// Whether a provider report's answer came from a simulated model: the provider is the simulator
/// (`simulated`), or the endpoint it called labelled its `profile` as simulated.
pub fn simulated_provider(simulated: bool, profile: Option<&str>) -> bool {
    simulated || profile.is_some_and(|p| p.contains(SIMULATED_PROFILE_MARK))
}

/// A turn report that could not be read: which metadata key, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("turn report: metadata.{key}: {message}")]
pub struct ReportError {
    pub key: &'static str,
    pub message: String,
}

/// Reads the typed value under `key`, without copying the JSON (strings may be borrowed).
fn part<'a, T: Deserialize<'a>>(metadata: &'a Metadata, key: &'static str) -> Result<T, ReportError> {
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

impl<S: Serialize> TurnReport<S> {
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
}

impl TurnReport {
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
        #[derive(Deserialize)]
        struct Simulated<'a> {
            simulated: bool,
            #[serde(default, borrow)]
            profile: Option<std::borrow::Cow<'a, str>>,
        }
        let provider: Simulated<'_> = part(metadata, "provider")?;
        Ok(TurnFigures {
            timing: Self::timing(metadata)?,
            token_usage: part(metadata, "token_usage")?,
            cost_usd: part(metadata, "cost_usd")?,
            simulated: simulated_provider(provider.simulated, provider.profile.as_deref()),
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
        assert_eq!(
            (f.timing, f.cost_usd, f.simulated, f.session_created),
            (sample().timing, 0.25, true, true)
        );
        assert_eq!(m["timing"]["overhead_us"], 10.5);
        assert_eq!(m["provider"]["simulated"], true);
        assert!(m["provider"].get("profile").is_none(), "absent, not null");

        let mut real = sample();
        real.provider.simulated = false;
        real.provider.profile = Some("gpt-4o-mini".into());
        real.write_into(&mut m);
        assert!(!TurnReport::figures(&m).unwrap().simulated);
        real.provider.profile = Some(format!("gpt-4o-mini {SIMULATED_PROFILE_MARK}"));
        real.write_into(&mut m);
        assert!(
            TurnReport::figures(&m).unwrap().simulated,
            "an endpoint's simulated profile counts"
        );
    }

    #[test]
    fn a_borrowed_report_writes_what_an_owned_one_does() {
        let owned = sample();
        let c = &owned.agent_context;
        let borrowed = TurnReport::<&str> {
            timing: owned.timing,
            token_usage: owned.token_usage,
            cost_usd: owned.cost_usd,
            provider: ProviderReport {
                name: &owned.provider.name,
                model: &owned.provider.model,
                simulated: owned.provider.simulated,
                profile: owned.provider.profile.as_deref(),
            },
            session: owned.session.clone(),
            agent_context: AgentContext {
                session_id: &c.session_id,
                internal_session_id: &c.internal_session_id,
                user_id: c.user_id.as_deref(),
                agent_id: &c.agent_id,
                runner_id: &c.runner_id,
                execution_id: &c.execution_id,
            },
            execution_stats: owned.execution_stats.clone(),
        };
        let (mut a, mut b) = (Metadata::new(), Metadata::new());
        owned.write_into(&mut a);
        borrowed.write_into(&mut b);
        assert_eq!(a, b);
        assert_eq!(TurnReport::read(&b).unwrap(), owned);
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
