//! What the instances of a cluster share besides sessions: the agent directory (an agent created on
//! one instance can be adopted under the same id by any other), the owners of live turns, the
//! instances' heartbeats, and notifications between instances.
//!
//! [`ClusterDirectory`] is the trait the server's cluster works through; [`PgClusterDirectory`]
//! keeps it in PostgreSQL, in tables created by the store's versioned migrations (version 2, which
//! adopts the tables that earlier versions created outside the migrations). Errors are
//! [`ClusterError`]s; what they mean for an HTTP client is the server's business.

use std::time::Duration;

use aether_contracts::AgentConfig;
use async_trait::async_trait;
use sqlx::postgres::PgPool;

use crate::postgres::connect;

/// Why the cluster's shared state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The database could not be reached or opened (also: its migrations failed).
    #[error("cannot open the cluster's PostgreSQL: {0}")]
    Open(String),
    /// A statement failed (the database went away, a timeout).
    #[error("the cluster's database failed: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored agent config no longer parses.
    #[error("the stored config of agent `{agent_id}` is unreadable: {message}")]
    Corrupt { agent_id: String, message: String },
}

/// Who runs a live turn, and whether that instance still beats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveOwner {
    pub instance: String,
    pub alive: bool,
}

/// The cluster's shared state.
#[async_trait]
pub trait ClusterDirectory: Send + Sync {
    /// Marks `instance` alive now.
    async fn beat(&self, instance: &str) -> Result<(), ClusterError>;

    /// The instance that runs live turn `key`; `alive` is false when it has not beaten within
    /// `timeout` (it crashed).
    async fn live_owner(&self, key: &str, timeout: Duration) -> Result<Option<LiveOwner>, ClusterError>;

    /// Records that `instance` runs live turn `key`.
    async fn claim_live(&self, key: &str, instance: &str) -> Result<(), ClusterError>;

    /// Forgets live turn `key` if `instance` runs it.
    async fn release_live(&self, key: &str, instance: &str) -> Result<(), ClusterError>;

    /// Records an agent (the first record of an id wins).
    async fn put_agent(&self, agent_id: &str, tenant: &str, config: &AgentConfig) -> Result<(), ClusterError>;

    /// The tenant's agent `agent_id`, as recorded by whichever instance created it.
    async fn get_agent(&self, agent_id: &str, tenant: &str) -> Result<Option<AgentConfig>, ClusterError>;

    /// Every agent id of the tenant, in order.
    async fn agent_ids(&self, tenant: &str) -> Result<Vec<String>, ClusterError>;

    /// Removes an agent from the directory; `false` when it was not there.
    async fn delete_agent(&self, agent_id: &str, tenant: &str) -> Result<bool, ClusterError>;

    /// Sends `payload` to the instances listening on `channel`.
    async fn notify(&self, channel: &str, payload: &str) -> Result<(), ClusterError>;
}

/// The cluster's shared state in PostgreSQL.
pub struct PgClusterDirectory {
    pool: PgPool,
}

impl PgClusterDirectory {
    /// Connects and applies the store's migrations (creating, or adopting, the cluster's tables).
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, ClusterError> {
        Self::open_named(url, max_connections, None).await
    }

    /// [`open`](Self::open), with every connection named `application_name`, so that
    /// [`connected`](Self::connected) tells whether the process behind the name is still there.
    pub async fn open_named(
        url: &str,
        max_connections: u32,
        application_name: Option<&str>,
    ) -> Result<Self, ClusterError> {
        let (pool, _) = connect(url, max_connections, application_name)
            .await
            .map_err(|e| ClusterError::Open(e.to_string()))?;
        Ok(Self { pool })
    }

    /// Whether any connection named `application_name` is open. A process that dies (even by
    /// SIGKILL) has its connections closed by the kernel, and the database forgets them at once:
    /// a crash is seen in milliseconds, where a heartbeat would take its timeout.
    pub async fn connected(&self, application_name: &str) -> Result<bool, ClusterError> {
        let (connected,): (bool,) =
            sqlx::query_as("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $1)")
                .bind(application_name)
                .fetch_one(&self.pool)
                .await?;
        Ok(connected)
    }

    /// The pool, for listening to notifications (`PgListener::connect_with`).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl ClusterDirectory for PgClusterDirectory {
    async fn beat(&self, instance: &str) -> Result<(), ClusterError> {
        sqlx::query(
            "INSERT INTO aether_instances (instance, seen_at) VALUES ($1, now()) \
             ON CONFLICT (instance) DO UPDATE SET seen_at = now()",
        )
        .bind(instance)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn live_owner(&self, key: &str, timeout: Duration) -> Result<Option<LiveOwner>, ClusterError> {
        let owner: Option<(String, bool)> = sqlx::query_as(
            "SELECT t.instance, COALESCE(i.seen_at > now() - make_interval(secs => $2), false) \
             FROM aether_live_turns t LEFT JOIN aether_instances i ON i.instance = t.instance WHERE t.task_key = $1",
        )
        .bind(key)
        .bind(timeout.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        Ok(owner.map(|(instance, alive)| LiveOwner { instance, alive }))
    }

    async fn claim_live(&self, key: &str, instance: &str) -> Result<(), ClusterError> {
        sqlx::query(
            "INSERT INTO aether_live_turns (task_key, instance) VALUES ($1, $2) \
             ON CONFLICT (task_key) DO UPDATE SET instance = EXCLUDED.instance, started_at = now()",
        )
        .bind(key)
        .bind(instance)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release_live(&self, key: &str, instance: &str) -> Result<(), ClusterError> {
        sqlx::query("DELETE FROM aether_live_turns WHERE task_key = $1 AND instance = $2")
            .bind(key)
            .bind(instance)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn put_agent(&self, agent_id: &str, tenant: &str, config: &AgentConfig) -> Result<(), ClusterError> {
        let config = serde_json::to_string(config).map_err(|e| ClusterError::Corrupt {
            agent_id: agent_id.to_owned(),
            message: e.to_string(),
        })?;
        sqlx::query(
            "INSERT INTO aether_agents (agent_id, tenant, config) VALUES ($1, $2, $3::jsonb) ON CONFLICT DO NOTHING",
        )
        .bind(agent_id)
        .bind(tenant)
        .bind(config)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_agent(&self, agent_id: &str, tenant: &str) -> Result<Option<AgentConfig>, ClusterError> {
        let row: Option<String> =
            sqlx::query_scalar("SELECT config::text FROM aether_agents WHERE agent_id = $1 AND tenant = $2")
                .bind(agent_id)
                .bind(tenant)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|text| {
            serde_json::from_str(&text).map_err(|e| ClusterError::Corrupt {
                agent_id: agent_id.to_owned(),
                message: e.to_string(),
            })
        })
        .transpose()
    }

    async fn agent_ids(&self, tenant: &str) -> Result<Vec<String>, ClusterError> {
        Ok(
            sqlx::query_scalar("SELECT agent_id FROM aether_agents WHERE tenant = $1 ORDER BY agent_id")
                .bind(tenant)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn delete_agent(&self, agent_id: &str, tenant: &str) -> Result<bool, ClusterError> {
        let done = sqlx::query("DELETE FROM aether_agents WHERE agent_id = $1 AND tenant = $2")
            .bind(agent_id)
            .bind(tenant)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn notify(&self, channel: &str, payload: &str) -> Result<(), ClusterError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
