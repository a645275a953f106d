//! Several `aether serve` instances on one PostgreSQL, with no sticky load balancer:
//!
//! * **Agents** are recorded in `aether_agents` (id, tenant, config) when created; an instance
//!   that meets an id it does not know adopts the agent from there under the same id. A deletion
//!   is broadcast so every instance drops its copy.
//! * **Sessions** live in the shared store. Each turn re-reads the session's record first
//!   (`RuntimeConfig::shared_store`) and catches up with turns other instances appended; the
//!   store's append is guarded by the event count, so two instances can never interleave a
//!   session's events: of two truly concurrent turns on one session, the second to commit fails
//!   (nothing of it is written) instead of reordering the history.
//! * **Live turns** run on the instance that accepted the stream, which records itself as the
//!   owner in `aether_live_turns`. A message, approval, cancel or pending request that lands on
//!   another instance is forwarded to the owner over `NOTIFY` on the owner's channel, and the
//!   answer comes back the same way (5 s deadline). Instances beat every 2 s in `aether_instances`;
//!   the live turns of one silent for 10 s (it crashed) are dropped, and requests for them get 404.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aether_contracts::AgentConfig;
use aether_runtime::Runtime;
use async_trait::async_trait;
use axum::http::StatusCode;
use dashmap::DashMap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::oneshot;

use crate::control::{perform_local, Forward, LiveAction, LiveTurns};
use crate::error::ApiError;

const BROADCAST: &str = "aether_broadcast";
/// PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7900;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
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
    pool: PgPool,
    instance: String,
    waiting: DashMap<u64, oneshot::Sender<(u16, Value)>>,
    next_id: AtomicU64,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

fn db(e: sqlx::Error) -> ApiError {
    ApiError::unavailable(format!("the shared database failed: {e}"), 1)
}

#[async_trait]
impl Forward for Cluster {
    async fn forward(&self, key: &str, action: LiveAction) -> Result<Option<(u16, Value)>, ApiError> {
        Cluster::forward(self, key, action).await
    }
}

impl Cluster {
    /// Connects and creates the cluster's tables when missing.
    pub async fn connect(url: &str) -> Result<Arc<Self>, String> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| format!("cluster: cannot connect to PostgreSQL: {e}"))?;
        let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
        // Two instances starting at once must not race on CREATE TABLE.
        for sql in [
            "SELECT pg_advisory_xact_lock(7412390021)",
            "CREATE TABLE IF NOT EXISTS aether_agents (agent_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, \
             config JSONB NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            "CREATE TABLE IF NOT EXISTS aether_live_turns (task_key TEXT PRIMARY KEY, instance TEXT NOT NULL, \
             started_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            "CREATE TABLE IF NOT EXISTS aether_instances (instance TEXT PRIMARY KEY, seen_at TIMESTAMPTZ NOT NULL)",
        ] {
            sqlx::query(sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| format!("cluster: cannot create its tables: {e}"))?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        let instance = format!("i{:016x}", rand::random::<u64>());
        Ok(Arc::new(Self {
            pool,
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

    /// Starts listening for forwarded requests, replies and broadcasts.
    pub async fn start(self: &Arc<Self>, live: Arc<LiveTurns>, rt: Arc<Runtime>) -> Result<(), String> {
        let mut listener = PgListener::connect_with(&self.pool)
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
        sqlx::query(
            "INSERT INTO aether_instances (instance, seen_at) VALUES ($1, now()) \
             ON CONFLICT (instance) DO UPDATE SET seen_at = now()",
        )
        .bind(&self.instance)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
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
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Sends `action` to the instance that runs live turn `key`; `Ok(None)` when no instance does.
    pub async fn forward(&self, key: &str, action: LiveAction) -> Result<Option<(u16, Value)>, ApiError> {
        let owner: Option<(String, bool)> = sqlx::query_as(
            "SELECT t.instance, COALESCE(i.seen_at > now() - make_interval(secs => $2), false) \
             FROM aether_live_turns t LEFT JOIN aether_instances i ON i.instance = t.instance WHERE t.task_key = $1",
        )
        .bind(key)
        .bind(OWNER_TIMEOUT.as_secs_f64())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some((owner, alive)) = owner.filter(|(o, _)| *o != self.instance) else {
            return Ok(None);
        };
        if !alive {
            // Its instance stopped beating: the turn died with it.
            let _ = sqlx::query("DELETE FROM aether_live_turns WHERE task_key = $1 AND instance = $2")
                .bind(key)
                .bind(&owner)
                .execute(&self.pool)
                .await;
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
        match tokio::time::timeout(FORWARD_TIMEOUT, rx).await {
            Ok(Ok(reply)) => Ok(Some(reply)),
            _ => {
                self.waiting.remove(&id);
                Err(ApiError::unavailable(
                    format!("the instance running this live turn ({owner}) did not answer"),
                    1,
                ))
            }
        }
    }

    pub async fn claim_live(&self, key: &str) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO aether_live_turns (task_key, instance) VALUES ($1, $2) \
             ON CONFLICT (task_key) DO UPDATE SET instance = EXCLUDED.instance, started_at = now()",
        )
        .bind(key)
        .bind(&self.instance)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    pub async fn release_live(&self, key: &str) {
        let r = sqlx::query("DELETE FROM aether_live_turns WHERE task_key = $1 AND instance = $2")
            .bind(key)
            .bind(&self.instance)
            .execute(&self.pool)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "cluster: cannot release a live turn");
        }
    }

    pub async fn put_agent(&self, agent_id: &str, tenant: &str, config: &AgentConfig) -> Result<(), ApiError> {
        let config = serde_json::to_value(config).map_err(|e| ApiError::internal(e.to_string()))?;
        sqlx::query(
            "INSERT INTO aether_agents (agent_id, tenant, config) VALUES ($1, $2, $3::jsonb) ON CONFLICT DO NOTHING",
        )
        .bind(agent_id)
        .bind(tenant)
        .bind(config.to_string())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// The tenant's agent `agent_id` as recorded by whichever instance created it.
    pub async fn get_agent(&self, agent_id: &str, tenant: &str) -> Result<Option<AgentConfig>, ApiError> {
        let row: Option<String> =
            sqlx::query_scalar("SELECT config::text FROM aether_agents WHERE agent_id = $1 AND tenant = $2")
                .bind(agent_id)
                .bind(tenant)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        row.map(|text| serde_json::from_str(&text).map_err(|e| ApiError::internal(format!("stored agent config: {e}"))))
            .transpose()
    }

    /// Every agent id of the tenant.
    pub async fn agent_ids(&self, tenant: &str) -> Result<Vec<String>, ApiError> {
        sqlx::query_scalar("SELECT agent_id FROM aether_agents WHERE tenant = $1 ORDER BY agent_id")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await
            .map_err(db)
    }

    /// Removes the agent from the directory and tells every instance to drop it.
    pub async fn delete_agent(&self, agent_id: &str, tenant: &str) -> Result<bool, ApiError> {
        let gone = sqlx::query("DELETE FROM aether_agents WHERE agent_id = $1 AND tenant = $2")
            .bind(agent_id)
            .bind(tenant)
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected()
            > 0;
        let wire = Wire::AgentDeleted {
            agent_id: agent_id.to_owned(),
            from: self.instance.clone(),
        };
        self.notify(BROADCAST, &wire).await?;
        Ok(gone)
    }
}
