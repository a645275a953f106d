//! The PostgreSQL store: sessions shared by several runtime instances.
//!
//! An append is one statement (one round trip): a conditional `UPDATE` of the session's event
//! count (which takes the row lock, so appends to one session are ordered and a writer that lost a
//! race gets a sequence-gap error instead of interleaving) feeding an `INSERT ... UNNEST` of the
//! events. Different sessions touch different rows and never wait on each other.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::lease::PgLeases;
use crate::migrations::{migrator, Dialect};
use crate::record::{
    Durability, EventPage, HistoryWindow, Page, PageRequest, SessionFilter, SessionRecord, SessionState, StoreInfo,
};
use crate::rows::{
    append_conflict, backend, encode_event, event_page, record, session_page, state_str, window, SessionRow,
    SESSION_COLUMNS,
};
use crate::{SessionEvent, SessionLeases, SessionStore, StoreError};

/// A PostgreSQL database holding sessions and events.
pub struct PostgresStore {
    pool: PgPool,
    leases: Arc<PgLeases>,
    /// `host:port/database`, never the credentials.
    location: String,
}

impl PostgresStore {
    /// Connects (pool of `max_connections`), and applies pending migrations.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let (pool, location) = connect(url, max_connections, None).await?;
        let leases = Arc::new(PgLeases { pool: pool.clone() });
        Ok(Self { pool, leases, location })
    }
}

/// How long a request waits for a connection before failing with [`StoreError::Unavailable`]:
/// while the database is down or restarting, the pool retries its connection until then, so this
/// bounds how long a request hangs before it answers 503 `store.unavailable`. A healthy pool hands
/// out connections in microseconds, so this only ever bites when the database is unreachable or
/// every connection stays busy this long.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// A pool on `url` with every migration applied, and the `host:port/database` it names (never the
/// credentials), for the session store and the cluster directory alike. Its connections carry
/// `application_name` when given (visible in `pg_stat_activity`).
pub(crate) async fn connect(
    url: &str,
    max_connections: u32,
    application_name: Option<&str>,
) -> Result<(PgPool, String), StoreError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StoreError::Open {
            target: "PostgreSQL".into(),
            message: "invalid URL: expected postgres://user@host:port/database".into(),
        });
    }
    let mut options: PgConnectOptions = url.parse().map_err(|e| StoreError::Open {
        target: "PostgreSQL".into(),
        message: format!("invalid URL (expected postgres://user@host:port/database): {e}"),
    })?;
    if let Some(name) = application_name {
        options = options.application_name(name);
    }
    let location = format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("(default database)")
    );
    let open_err = |e: &dyn std::fmt::Display| StoreError::Open {
        target: format!("PostgreSQL at {location}"),
        message: e.to_string(),
    };
    let pool = PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|e| open_err(&e))?;
    let migrations = migrator(Dialect::Postgres).await.map_err(|e| open_err(&e))?;
    migrations.run(&pool).await.map_err(|e| open_err(&e))?;
    Ok((pool, location))
}

#[async_trait]
impl SessionStore for PostgresStore {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            kind: "postgres",
            durability: Durability::Sync,
            location: Some(self.location.clone()),
        }
    }

    fn leases(&self) -> Option<Arc<dyn SessionLeases>> {
        Some(Arc::clone(&self.leases) as Arc<dyn SessionLeases>)
    }

    async fn put_session(&self, r: SessionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO aether_sessions (session_id, user_id, agent_id, internal_session_id, state, created_at, updated_at, event_count)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0)
             ON CONFLICT (session_id) DO UPDATE SET user_id = EXCLUDED.user_id, agent_id = EXCLUDED.agent_id,
               internal_session_id = EXCLUDED.internal_session_id, state = EXCLUDED.state, updated_at = EXCLUDED.updated_at",
        )
        .bind(&*r.session_id)
        .bind(r.user_id.as_deref())
        .bind(&r.agent_id)
        .bind(&r.internal_session_id)
        .bind(state_str(r.state))
        .bind(r.created_at)
        .bind(r.updated_at)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM aether_sessions WHERE session_id = $1");
        let row: Option<SessionRow> = sqlx::query_as(&sql)
            .bind(session_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(record).transpose()
    }

    async fn append_events(&self, session_id: &str, events: &[Arc<SessionEvent>]) -> Result<(), StoreError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let mut seqs = Vec::with_capacity(events.len());
        let mut bodies = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            if e.seq != first.seq + i as u64 {
                return Err(StoreError::SequenceGap {
                    session_id: session_id.to_owned(),
                    expected: first.seq + i as u64,
                    got: e.seq,
                });
            }
            seqs.push(e.seq as i64);
            bodies.push(encode_event(e)?);
        }
        // One statement, so one round trip and its own transaction: the conditional update takes
        // the session's row lock and checks the count; the insert only happens if it matched.
        let inserted = sqlx::query(
            "WITH counted AS (
                 UPDATE aether_sessions SET event_count = event_count + $1, updated_at = $2
                 WHERE session_id = $3 AND event_count = $4
                 RETURNING session_id)
             INSERT INTO aether_events (session_id, seq, body)
             SELECT counted.session_id, t.s, t.b FROM counted, UNNEST($5::bigint[], $6::text[]) AS t(s, b)",
        )
        .bind(events.len() as i64)
        .bind(Utc::now())
        .bind(session_id)
        .bind(first.seq as i64)
        .bind(&seqs)
        .bind(&bodies)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if inserted.rows_affected() == 0 {
            let count: Option<i64> =
                sqlx::query_scalar("SELECT event_count FROM aether_sessions WHERE session_id = $1")
                    .bind(session_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(backend)?;
            return Err(append_conflict(session_id, count, first.seq));
        }
        Ok(())
    }

    async fn load_window(&self, session_id: &str, max_events: usize) -> Result<HistoryWindow, StoreError> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, body FROM aether_events WHERE session_id = $1 ORDER BY seq DESC LIMIT $2")
                .bind(session_id)
                .bind(max_events as i64)
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
        window(rows)
    }

    async fn events_page(
        &self,
        session_id: &str,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        if self.get_session(session_id).await?.is_none() {
            return Err(StoreError::SessionNotFound(session_id.to_owned()));
        }
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, body FROM aether_events WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(session_id)
        .bind(after_seq.map_or(-1, |s| s as i64))
        .bind(limit as i64 + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        event_page(rows, limit)
    }

    async fn list_sessions(&self, filter: &SessionFilter, page: &PageRequest) -> Result<Page, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM aether_sessions
             WHERE ($1::text IS NULL OR user_id = $1) AND ($2::text IS NULL OR agent_id = $2) AND ($3::text IS NULL OR state = $3)
               AND ($4::text IS NULL OR session_id > $4)
             ORDER BY session_id LIMIT $5"
        );
        let rows: Vec<SessionRow> = sqlx::query_as(&sql)
            .bind(&filter.user_id)
            .bind(&filter.agent_id)
            .bind(filter.state.map(state_str))
            .bind(&page.after)
            .bind(page.limit as i64 + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        session_page(rows, page.limit)
    }

    async fn set_state(&self, session_id: &str, state: SessionState) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE aether_sessions SET state = $1, updated_at = $2 WHERE session_id = $3")
            .bind(state_str(state))
            .bind(Utc::now())
            .bind(session_id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn archive_sessions(&self, session_ids: &[Arc<str>]) -> Result<u64, StoreError> {
        if session_ids.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&str> = session_ids.iter().map(|id| &**id).collect();
        let r =
            sqlx::query("UPDATE aether_sessions SET state = 'archived', updated_at = $1 WHERE session_id = ANY($2)")
                .bind(Utc::now())
                .bind(&ids)
                .execute(&self.pool)
                .await
                .map_err(backend)?;
        Ok(r.rows_affected())
    }

    async fn delete_session(&self, session_id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM aether_sessions WHERE session_id = $1")
            .bind(session_id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn purge_archived(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM aether_sessions WHERE state = 'archived' AND updated_at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected())
    }

    async fn session_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM aether_sessions")
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(n as u64)
    }
}
