//! What every handler shares: the runtime, tenants, admission, the live-turn registry, metrics.

use std::ops::Deref;
use std::sync::Arc;

use aether_runtime::Runtime;

use crate::cluster::Cluster;
use crate::config::{Limits, ServerConfig};
use crate::control::LiveTurns;
use crate::limits::Admission;
use crate::metrics::Metrics;
use crate::tenants::Tenants;
use aether_runtime::meter::{FanOut, GenAiMeter};

/// The services outside the process an instance uses: what it shares with other instances, and
/// the MCP servers behind its tools.
#[derive(Default)]
pub struct Shared {
    /// Agents, sessions and live-turn control on one PostgreSQL (see [`crate::cluster`]); the
    /// runtime must then have `shared_store` on.
    pub cluster: Option<Arc<Cluster>>,
    /// Per-tenant rate limits in Redis (see [`crate::limits`]).
    pub redis: Option<redis::aio::ConnectionManager>,
    /// MCP servers whose tools are in the runtime's registry; their counters go to `/metrics`.
    pub mcp: Vec<aether_mcp::McpClient>,
    /// The runtime's store timings (see [`crate::store_timing::timed`]); `/metrics` renders them.
    pub store_timings: Option<Arc<crate::store_timing::StoreTimings>>,
    /// Another GenAI meter to feed beside `/metrics` (the CLI's OTLP metrics export).
    pub meter: Option<Arc<dyn GenAiMeter>>,
}

/// Shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub rt: Arc<Runtime>,
    pub tenants: Tenants,
    pub admission: Admission,
    /// Live turns running on this instance, by `TENANT:task_id`. Bounded by
    /// `limits.max_live_sessions`; an entry leaves when its stream ends or its client goes away.
    pub live: Arc<LiveTurns>,
    pub metrics: Metrics,
    pub limits: Limits,
    /// Membership of a cluster of instances on one PostgreSQL, when configured.
    pub cluster: Option<Arc<Cluster>>,
    pub mcp: Vec<aether_mcp::McpClient>,
    pub store_timings: Option<Arc<crate::store_timing::StoreTimings>>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(rt: Arc<Runtime>, cfg: &ServerConfig) -> Self {
        Self::with(rt, cfg, Shared::default())
    }

    /// A state that shares what `shared` holds with other instances.
    pub fn with(rt: Arc<Runtime>, cfg: &ServerConfig, shared: Shared) -> Self {
        let Shared {
            cluster,
            redis,
            mcp,
            store_timings,
            meter,
        } = shared;
        // The runtime's GenAI measurements feed /metrics (and `meter`, when given). A runtime
        // serves one AppState: a second one keeps its own HTTP series but not these.
        let metrics = Metrics::new();
        let gen_ai = match meter {
            Some(other) => Arc::new(FanOut(vec![metrics.gen_ai_meter(), other])) as Arc<dyn GenAiMeter>,
            None => metrics.gen_ai_meter(),
        };
        if rt.install_meter(gen_ai).is_err() {
            tracing::warn!("this runtime already reports GenAI metrics elsewhere: /metrics will not have them");
        }
        Self(Arc::new(Inner {
            rt,
            tenants: Tenants::new(cfg, redis.as_ref()),
            admission: Admission::new(cfg.limits.max_in_flight, cfg.limits.admission_queue),
            live: Arc::new(LiveTurns::new()),
            metrics,
            limits: cfg.limits.clone(),
            cluster,
            mcp,
            store_timings,
        }))
    }
}
