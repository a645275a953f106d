//! Several `aether serve` instances on one PostgreSQL, with no sticky load balancer:
//!
//! * **Agents** are recorded in `aether_agents` (id, tenant, config) when created; an instance
//!   that meets an id it does not know adopts the agent from there under the same id. A deletion
//!   is broadcast so every instance drops its copy.
//! * **Sessions** live in the shared store. A turn takes its session's lease in the store after
//!   the instance's own FIFO lock (`aether_runtime`'s `lease` module): turns on one session sent
//!   to several instances at once wait for each other (at most `--session-wait-s`, then 503
//!   `session.busy` with Retry-After) instead of failing; a dead holder's lease lapses after its
//!   TTL (5 s). Each turn then re-reads the session's record (`RuntimeConfig::shared_store`) and
//!   catches up with turns other instances appended; the store's append is guarded by the event
//!   count, so even a holder that lost its lease can never interleave a session's events.
//! * **Live turns** run on the instance that accepted the stream, which records itself as the
//!   owner in `aether_live_turns`. A message, approval, cancel or pending request that lands on
//!   another instance is forwarded to the owner over `NOTIFY` on the owner's channel, and the
//!   answer comes back the same way (5 s deadline). Instances beat every 2 s in `aether_instances`;
//!   the live turns of one that is gone are dropped, and requests for them get 404: gone means no
//!   connection of its own left in `pg_stat_activity` (its connections carry the application name
//!   `aether/<instance>`, and a killed process's are closed by the kernel at once), or silent for
//!   10 s (a process that hangs, or is cut off from the database).
//!
//! The shared state itself (tables in the store's versioned migrations, their queries and their
//! errors) is `aether_store::cluster`; this module is the protocol between instances over it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aether_contracts::AgentConfig;
use aether_runtime::Runtime;
use aether_store::{ClusterDirectory, ClusterError, LiveOwner, PgClusterDirectory};
use async_trait::async_trait;
use axum::http::StatusCode;
use dashmap::DashMap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::PgListener;
use tokio::sync::oneshot;

use crate::control::{perform_local, Forward, LiveAction, LiveTurns};
use crate::error::ApiError;

const BROADCAST: &str = "aether_broadcast";
/// PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7900;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// While a forwarded request waits, how often the owner's connections are looked for again.
const OWNER_CHECK: Duration = Duration::from_millis(250);
const HEARTBEAT: Duration = Duration::from_secs(2);
/// An instance not heard from for this long is taken for dead.
const OWNER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Wire {
    Request {
        id: u64,
        reply_to: String,
        key: String,
        action: LiveAction,
    },
    Reply {
        id: u64,
        status: u16,
        body: Value,
    },
    AgentDeleted {
        agent_id: String,
        from: String,
    },
}

/// This instance's membership of the cluster.
pub struct Cluster {
    dir: PgClusterDirectory,
    instance: String,
    waiting: DashMap<u64, oneshot::Sender<(u16, Value)>>,
    next_id: AtomicU64,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// A failure of the shared database, as an HTTP client sees it: retry later, or a server fault.
fn db(e: ClusterError) -> ApiError {
    match e {
        ClusterError::Corrupt { .. } => ApiError::internal(e.to_string()),
        ClusterError::Open(_) | ClusterError::Database(_) => {
            ApiError::unavailable(format!("the shared database failed: {e}"), 1)
        }
    }
}

#[async_trait]
impl Forward for Cluster {
    async fn forward(&self, key: &str, action: LiveAction) -> Result<Option<(u16, Value)>, ApiError> {
        Cluster::forward(self, key, action).await
    }
}

impl Cluster {
    /// Connects; the store's migrations create (or adopt) the cluster's tables.
    pub async fn connect(url: &str) -> Result<Arc<Self>, String> {
        let instance = format!("i{:016x}", rand::random::<u64>());
        let dir = PgClusterDirectory::open_named(url, 8, Some(&Self::application_name(&instance)))
            .await
            .map_err(|e| format!("cluster: {e}"))?;
        Ok(Arc::new(Self {
            dir,
            instance,
            waiting: DashMap::new(),
            next_id: AtomicU64::new(1),
            tasks: Mutex::new(Vec::new()),
        }))
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    fn channel(instance: &str) -> String {
        format!("aether_live_{instance}")
    }

    /// The name this instance's connections to the shared database carry: the runtime holds its
    /// session leases under it (`RuntimeConfig::instance_name`), so that they free at once when
    /// the process dies.
    pub fn connection_name(&self) -> String {
        Self::application_name(&self.instance)
    }

    /// The `application_name` of an instance's connections to the shared database (its pool and
    /// its listener): while the process lives, at least the listener's is open.
    fn application_name(instance: &str) -> String {
        format!("aether/{instance}")
    }

    /// Starts listening for forwarded requests, replies and broadcasts.
    pub async fn start(self: &Arc<Self>, live: Arc<LiveTurns>, rt: Arc<Runtime>) -> Result<(), String> {
        let mut listener = PgListener::connect_with(self.dir.pool())
            .await
            .map_err(|e| format!("cluster: cannot listen: {e}"))?;
        listener
            .listen_all([Self::channel(&self.instance).as_str(), BROADCAST])
            .await
            .map_err(|e| format!("cluster: cannot listen: {e}"))?;
        let me = Arc::clone(self);
        let task = tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(n) => match serde_json::from_str::<Wire>(n.payload()) {
                        Ok(wire) => me.handle(wire, &live, &rt).await,
                        Err(e) => tracing::warn!(error = %e, "cluster: unreadable notification"),
                    },
                    // PgListener reconnects on the next recv.
                    Err(e) => tracing::warn!(error = %e, "cluster: listener error"),
                }
            }
        });
        self.beat()
            .await
            .map_err(|e| format!("cluster: cannot register this instance: {}", e.message))?;
        let me = Arc::clone(self);
        let heartbeat = tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            loop {
                tick.tick().await;
                if let Err(e) = me.beat().await {
                    tracing::warn!(error = %e.message, "cluster: heartbeat failed");
                }
            }
        });
        self.tasks.lock().extend([task, heartbeat]);
        Ok(())
    }

    /// Marks this instance alive; live turns of an instance silent for `OWNER_TIMEOUT` are
    /// considered gone (it crashed), so control requests for them answer 404 at once.
    async fn beat(&self) -> Result<(), ApiError> {
        self.dir.beat(&self.instance).await.map_err(db)
    }

    pub fn stop(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }

    async fn handle(self: &Arc<Self>, wire: Wire, live: &Arc<LiveTurns>, rt: &Runtime) {
        match wire {
            Wire::Request {
                id,
                reply_to,
                key,
                action,
            } => {
                let me = Arc::clone(self);
                let live = Arc::clone(live);
                tokio::spawn(async move {
                    let (status, body) = match perform_local(&live, &key, action).await {
                        Ok(body) => (StatusCode::OK.as_u16(), body),
                        Err(e) => (
                            e.status.as_u16(),
                            serde_json::json!({"code": e.code, "message": e.message}),
                        ),
                    };
                    let reply = Wire::Reply { id, status, body };
                    if let Err(e) = me.notify(&Self::channel(&reply_to), &reply).await {
                        tracing::warn!(error = %e.message, "cluster: cannot reply");
                    }
                });
            }
            Wire::Reply { id, status, body } => {
                if let Some((_, tx)) = self.waiting.remove(&id) {
                    let _ = tx.send((status, body));
                }
            }
            Wire::AgentDeleted { agent_id, from } => {
                if from != self.instance {
                    let _ = rt.cleanup_agent(&agent_id).await;
                }
            }
        }
    }

    async fn notify(&self, channel: &str, wire: &Wire) -> Result<(), ApiError> {
        let payload = serde_json::to_string(wire).map_err(|e| ApiError::internal(e.to_string()))?;
        if payload.len() > MAX_PAYLOAD {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request.too_large",
                format!(
                    "this request must be forwarded to the instance running the live turn, and is too large for that ({} bytes; at most {MAX_PAYLOAD})",
                    payload.len()
                ),
            ));
        }
        self.dir.notify(channel, &payload).await.map_err(db)
    }

    /// Sends `action` to the instance that runs live turn `key`; `Ok(None)` when no instance does.
    pub async fn forward(&self, key: &str, action: LiveAction) -> Result<Option<(u16, Value)>, ApiError> {
        let Some(LiveOwner { instance: owner, alive }) = self.dir.live_owner(key, OWNER_TIMEOUT).await.map_err(db)?
        else {
            return Ok(None);
        };
        // Its instance stopped beating, or has no connection left (it crashed: the kernel closed
        // them): the turn died with it.
        if !alive || !self.dir.connected(&Self::application_name(&owner)).await.map_err(db)? {
            let _ = self.dir.release_live(key, &owner).await;
            return Ok(None);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting.insert(id, tx);
        let request = Wire::Request {
            id,
            reply_to: self.instance.clone(),
            key: key.to_owned(),
            action,
        };
        if let Err(e) = self.notify(&Self::channel(&owner), &request).await {
            self.waiting.remove(&id);
            return Err(e);
        }
        // The answer, or the owner found gone meanwhile (it died as the request was sent:
        // checked again every OWNER_CHECK), or the deadline.
        let deadline = tokio::time::Instant::now() + FORWARD_TIMEOUT;
        let mut rx = rx;
        loop {
            match tokio::time::timeout(OWNER_CHECK, &mut rx).await {
                Ok(Ok(reply)) => return Ok(Some(reply)),
                Ok(Err(_)) => break,
                Err(_) if tokio::time::Instant::now() >= deadline => break,
                Err(_) => {
                    if let Ok(false) = self.dir.connected(&Self::application_name(&owner)).await {
                        self.waiting.remove(&id);
                        let _ = self.dir.release_live(key, &owner).await;
                        return Ok(None);
                    }
                }
            }
        }
        self.waiting.remove(&id);
        Err(ApiError::unavailable(
            format!("the instance running this live turn ({owner}) did not answer"),
            1,
        ))
    }

    pub async fn claim_live(&self, key: &str) -> Result<(), ApiError> {
        self.dir.claim_live(key, &self.instance).await.map_err(db)
    }

    pub async fn release_live(&self, key: &str) {
        if let Err(e) = self.dir.release_live(key, &self.instance).await {
            tracing::warn!(error = %e, "cluster: cannot release a live turn");
        }
    }

    pub async fn put_agent(&self, agent_id: &str, tenant: &str, config: &AgentConfig) -> Result<(), ApiError> {
        self.dir.put_agent(agent_id, tenant, config).await.map_err(db)
    }

    /// The tenant's agent `agent_id` as recorded by whichever instance created it.
    pub async fn get_agent(&self, agent_id: &str, tenant: &str) -> Result<Option<AgentConfig>, ApiError> {
        self.dir.get_agent(agent_id, tenant).await.map_err(db)
    }

    /// Every agent id of the tenant.
    pub async fn agent_ids(&self, tenant: &str) -> Result<Vec<String>, ApiError> {
        self.dir.agent_ids(tenant).await.map_err(db)
    }

    /// Removes the agent from the directory and tells every instance to drop it.
    pub async fn delete_agent(&self, agent_id: &str, tenant: &str) -> Result<bool, ApiError> {
        let gone = self.dir.delete_agent(agent_id, tenant).await.map_err(db)?;
        let wire = Wire::AgentDeleted {
            agent_id: agent_id.to_owned(),
            from: self.instance.clone(),
        };
        self.notify(BROADCAST, &wire).await?;
        Ok(gone)
    }
}
