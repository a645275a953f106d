//! What every handler shares: the runtime, tenants, admission, the live-turn registry, metrics.

use std::ops::Deref;
use std::sync::Arc;

use aether_runtime::live::LiveController;
use aether_runtime::Runtime;
use dashmap::DashMap;

use crate::auth::Tenants;
use crate::cluster::Cluster;
use crate::config::{Limits, ServerConfig};
use crate::limits::Admission;
use crate::metrics::Metrics;

/// Shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub rt: Arc<Runtime>,
    pub tenants: Tenants,
    pub admission: Admission,
    /// Live turns running on this instance, by `TENANT:task_id`. Bounded by
    /// `limits.max_live_sessions`; an entry leaves when its stream ends or its client goes away.
    pub live: DashMap<String, LiveController>,
    pub metrics: Metrics,
    pub limits: Limits,
    /// Membership of a cluster of instances on one PostgreSQL, when configured.
    pub cluster: Option<Arc<Cluster>>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(rt: Arc<Runtime>, cfg: &ServerConfig) -> Self {
        Self::with_cluster(rt, cfg, None)
    }

    /// A state whose instance shares agents, sessions and live-turn control with others
    /// (see [`crate::cluster`]); its runtime must have `shared_store` on.
    pub fn with_cluster(rt: Arc<Runtime>, cfg: &ServerConfig, cluster: Option<Arc<Cluster>>) -> Self {
        Self(Arc::new(Inner {
            rt,
            tenants: Tenants::new(cfg),
            admission: Admission::new(cfg.limits.max_in_flight, cfg.limits.admission_queue),
            live: DashMap::new(),
            metrics: Metrics::new(),
            limits: cfg.limits.clone(),
            cluster,
        }))
    }
}
