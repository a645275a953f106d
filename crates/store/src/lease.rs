//! Per-session leases: which turn, on which of several instances sharing one store, may run a
//! session's next turn.
//!
//! A lease has a holder (an instance and a token naming one turn), and an expiry in the
//! database's own clock, so that instances never compare their clocks. The holder renews it while
//! its turn runs (a heartbeat) and deletes it at the end; a holder that died stops renewing and
//! its lease lapses after its TTL, so the next turn proceeds without it. A holder named
//! `aether/<instance>` (an `aether serve` in a cluster) names its database connections the same:
//! when none of them is left in `pg_stat_activity`, the process is gone and its leases are taken
//! over at once.
//!
//! The lease orders turns; it is not what keeps a history whole. That is the append's fence, the
//! session's event count: a turn's events are written only if the count is the one the turn read
//! after taking the lease, so even a holder that lost its lease (paused past its TTL) can never
//! interleave its events with the next holder's.
//!
//! No connection is held between calls: taking, renewing and releasing a lease are one short
//! statement each.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgPool;

use crate::rows::backend;
use crate::StoreError;

/// One turn's claim on a session: the instance it runs on and a token unique to the turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The runtime instance (unique per process and runtime), shared by its turns' holders.
    pub instance: Arc<str>,
    /// The turn, unique within the instance.
    pub token: i64,
}

/// Leases on sessions, shared by the instances of a cluster.
#[async_trait]
pub trait SessionLeases: Send + Sync {
    /// Takes the lease of `session_id` for `holder` for `ttl`, when it is free, lapsed, or held
    /// by another turn of the same instance (which has finished: an instance runs one turn of a
    /// session at a time, so a lease of its own that it meets again is left over from the
    /// previous turn's release still in flight). `false` when another instance holds it.
    async fn try_acquire(&self, session_id: &str, holder: &LeaseHolder, ttl: Duration) -> Result<bool, StoreError>;

    /// Extends the lease by `ttl` from now; `false` when `holder` no longer holds it.
    async fn renew(&self, session_id: &str, holder: &LeaseHolder, ttl: Duration) -> Result<bool, StoreError>;

    /// Gives the lease up (nothing happens when `holder` no longer holds it).
    async fn release(&self, session_id: &str, holder: &LeaseHolder) -> Result<(), StoreError>;
}

/// Leases in PostgreSQL's `aether_session_leases` (migration 3).
pub(crate) struct PgLeases {
    pub(crate) pool: PgPool,
}

#[async_trait]
impl SessionLeases for PgLeases {
    async fn try_acquire(&self, session_id: &str, holder: &LeaseHolder, ttl: Duration) -> Result<bool, StoreError> {
        // One statement: insert, or take over a lapsed lease, one of this instance's, or one
        // whose holder is dead (a holder named `aether/…` names its connections so: when none
        // is left in pg_stat_activity, the process is gone); a row comes back only when the
        // lease is now ours.
        let taken: Option<i64> = sqlx::query_scalar(
            "INSERT INTO aether_session_leases (session_id, instance, token, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4))
             ON CONFLICT (session_id) DO UPDATE
               SET instance = EXCLUDED.instance, token = EXCLUDED.token, expires_at = EXCLUDED.expires_at
               WHERE aether_session_leases.expires_at <= now()
                  OR aether_session_leases.instance = EXCLUDED.instance
                  OR (aether_session_leases.instance LIKE 'aether/%' AND NOT EXISTS
                        (SELECT 1 FROM pg_stat_activity WHERE application_name = aether_session_leases.instance))
             RETURNING token",
        )
        .bind(session_id)
        .bind(&*holder.instance)
        .bind(holder.token)
        .bind(ttl.as_secs_f64())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(taken.is_some())
    }

    async fn renew(&self, session_id: &str, holder: &LeaseHolder, ttl: Duration) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE aether_session_leases SET expires_at = now() + make_interval(secs => $4)
             WHERE session_id = $1 AND instance = $2 AND token = $3",
        )
        .bind(session_id)
        .bind(&*holder.instance)
        .bind(holder.token)
        .bind(ttl.as_secs_f64())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn release(&self, session_id: &str, holder: &LeaseHolder) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM aether_session_leases WHERE session_id = $1 AND instance = $2 AND token = $3")
            .bind(session_id)
            .bind(&*holder.instance)
            .bind(holder.token)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
}
