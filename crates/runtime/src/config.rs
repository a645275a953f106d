//! Runtime configuration: limits, time-to-live values and defaults.

use std::time::Duration;

use crate::approvals::ApprovalConfig;
use crate::multimodal::MediaLimits;

/// Knobs of the runtime. `Default` gives production-sane values.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Live chat sessions one agent may serve before equal configs get a new agent.
    pub max_sessions_per_agent: usize,
    /// Events a turn keeps in memory and shows the model; older ones stay in the store only.
    pub history_window: usize,
    /// Model calls one turn may make (tool round-trips + the answer) before it stops.
    pub max_model_calls_per_turn: usize,
    /// Default per-call tool timeout (a tool's own timeout or the request's wins).
    pub tool_timeout: Duration,
    /// A chat session idle this long is archived by the sweeper.
    pub session_idle_ttl: Duration,
    /// A runner with no sessions and no active task is reclaimed once idle this long.
    pub runner_idle_ttl: Duration,
    /// An agent with no runner is reclaimed once idle this long.
    pub agent_idle_ttl: Duration,
    /// Archived sessions are purged from the store after this long.
    pub archive_ttl: Duration,
    /// How often the background sweeper runs; `None` disables it (call `sweep_at` yourself).
    pub sweep_interval: Option<Duration>,
    /// Active chat sessions kept in memory; past it the sweeper archives the least recently used.
    pub max_active_sessions: usize,
    /// Framework adapter used when a request names none.
    pub default_framework: String,
    /// Which tool calls need a human's approval. Outside a live session nobody can be asked, so
    /// such calls do not run (their result says why).
    pub approvals: ApprovalConfig,
    /// Size and count limits of images in messages.
    pub media: MediaLimits,
    /// Other processes write to the same store (several servers on one PostgreSQL): every turn
    /// re-reads the session's record and reloads its window when another instance has appended
    /// since. Costs one store read per turn; off for a store this runtime owns alone.
    pub shared_store: bool,
    /// How long a turn may wait for its session: behind the turns before it on this instance and,
    /// with a shared store, for another instance's turn to give the session's lease back. Past
    /// it the turn fails with `session.busy` (HTTP 503 with Retry-After).
    pub session_wait: Duration,
    /// A session lease's time to live (shared store only): renewed every third of it while a
    /// turn runs; the lease of an instance that died lapses after it.
    pub session_lease_ttl: Duration,
    /// The name this instance's connections to the shared store carry (`aether/<id>`, set by
    /// `aether serve` in a cluster), under which it holds its session leases: a lease whose
    /// holder has no connection left (the process died) is taken over at once instead of after
    /// its TTL. `None`: a generated name, and only the TTL frees a dead holder's lease.
    pub instance_name: Option<String>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_sessions_per_agent: 100,
            history_window: 64,
            max_model_calls_per_turn: 8,
            tool_timeout: Duration::from_secs(30),
            session_idle_ttl: Duration::from_secs(30 * 60),
            runner_idle_ttl: Duration::ZERO,
            agent_idle_ttl: Duration::from_secs(10 * 60),
            archive_ttl: Duration::from_secs(24 * 3600),
            sweep_interval: Some(Duration::from_secs(30)),
            max_active_sessions: 100_000,
            shared_store: false,
            session_wait: Duration::from_secs(30),
            session_lease_ttl: Duration::from_secs(5),
            instance_name: None,
            default_framework: "native".to_owned(),
            approvals: ApprovalConfig::default(),
            media: MediaLimits::default(),
        }
    }
}
