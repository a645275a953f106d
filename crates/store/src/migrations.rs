//! Versioned schema migrations, embedded in the binary and applied on open through sqlx's
//! migrator (which records them in `_sqlx_migrations` and, on PostgreSQL, holds an advisory lock
//! so that several instances starting at once migrate exactly once).

use std::borrow::Cow;

use futures::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// Which dialect's migrations.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

const SQLITE_V1: &str = r#"
CREATE TABLE IF NOT EXISTS aether_sessions (
    session_id          TEXT PRIMARY KEY NOT NULL,
    user_id             TEXT,
    agent_id            TEXT NOT NULL,
    internal_session_id TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('active', 'archived')),
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    event_count         INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS aether_sessions_by_user ON aether_sessions (user_id, session_id);
CREATE INDEX IF NOT EXISTS aether_sessions_by_agent ON aether_sessions (agent_id, session_id);
CREATE INDEX IF NOT EXISTS aether_sessions_by_state ON aether_sessions (state, updated_at);
CREATE TABLE IF NOT EXISTS aether_events (
    session_id TEXT NOT NULL REFERENCES aether_sessions (session_id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
"#;

const POSTGRES_V1: &str = r#"
CREATE TABLE IF NOT EXISTS aether_sessions (
    session_id          TEXT PRIMARY KEY,
    user_id             TEXT,
    agent_id            TEXT NOT NULL,
    internal_session_id TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('active', 'archived')),
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    event_count         BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS aether_sessions_by_user ON aether_sessions (user_id, session_id);
CREATE INDEX IF NOT EXISTS aether_sessions_by_agent ON aether_sessions (agent_id, session_id);
CREATE INDEX IF NOT EXISTS aether_sessions_by_state ON aether_sessions (state, updated_at);
CREATE TABLE IF NOT EXISTS aether_events (
    session_id TEXT NOT NULL REFERENCES aether_sessions (session_id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
"#;

/// The cluster's shared state (see `cluster`): the agent directory, the owners of live turns,
/// the instances' heartbeats. `IF NOT EXISTS` adopts the tables that versions before this
/// migration created outside the migrations, with their rows.
const POSTGRES_V2: &str = r#"
CREATE TABLE IF NOT EXISTS aether_agents (
    agent_id   TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    config     JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS aether_live_turns (
    task_key   TEXT PRIMARY KEY,
    instance   TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS aether_instances (
    instance TEXT PRIMARY KEY,
    seen_at  TIMESTAMPTZ NOT NULL
);
"#;

/// Per-session leases (see `lease`): which instance's turn may run a session's next turn, until
/// when (in the database's clock).
const POSTGRES_V3: &str = r#"
CREATE TABLE IF NOT EXISTS aether_session_leases (
    session_id TEXT PRIMARY KEY,
    instance   TEXT NOT NULL,
    token      BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
"#;

#[derive(Debug)]
struct Embedded(Dialect);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        let sql = match self.0 {
            Dialect::Sqlite => SQLITE_V1,
            Dialect::Postgres => POSTGRES_V1,
        };
        let migration = |version, description, sql| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                Cow::Borrowed(sql),
                false,
            )
        };
        let mut all = vec![migration(1, "sessions and events", sql)];
        if matches!(self.0, Dialect::Postgres) {
            all.push(migration(2, "cluster directory", POSTGRES_V2));
            all.push(migration(3, "session leases", POSTGRES_V3));
        }
        Box::pin(async move { Ok(all) })
    }
}

pub(crate) async fn migrator(dialect: Dialect) -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Embedded(dialect)).await
}

/// Applies the PostgreSQL migrations up to `version` only, as an earlier release would have left
/// a database. For upgrade tests; not part of the API.
#[doc(hidden)]
pub async fn migrate_postgres_up_to(pool: &sqlx::PgPool, version: i64) -> Result<(), sqlx::migrate::MigrateError> {
    let mut m = migrator(Dialect::Postgres).await?;
    m.migrations = m
        .migrations
        .iter()
        .filter(|x| x.version <= version)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    m.run(pool).await
}
