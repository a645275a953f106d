//! The SQLite store: one file in WAL mode, the embedded default.
//!
//! All writes go through one writer task that owns the only writing connection: SQLite allows one
//! writer at a time, so queuing them in process avoids lock convoys and "database is locked"
//! errors. The writer takes whatever jobs are waiting (up to 256) and commits them in one
//! transaction — group commit: under load many turns share one commit. Each job runs under its
//! own savepoint, so one failing job (a sequence gap) does not fail its neighbours. A job's
//! answer is sent after the commit: a turn in `sync` mode returns only once its events are in the
//! database file (WAL, `synchronous=NORMAL`: durable across a process crash). Reads use a small
//! pool of read-only connections, which WAL lets run beside the writer. Busy errors (another
//! process holding the lock) are retried with exponential backoff on top of SQLite's own busy
//! timeout.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Executor};
use tokio::sync::{mpsc, oneshot};

use crate::migrations::{migrator, Dialect};
use crate::record::{
    Durability, EventPage, HistoryWindow, Page, PageRequest, SessionFilter, SessionRecord, SessionState, StoreInfo,
};
use crate::rows::{
    append_conflict, backend, backend_ref, encode_event, event_page, record, session_page, state_str, window,
    SessionRow, SESSION_COLUMNS,
};
use crate::{SessionEvent, SessionStore, StoreError};

const MAX_BATCH: usize = 256;
const QUEUE: usize = 4096;
const RETRIES: u32 = 8;

enum Op {
    Put(SessionRecord),
    Append {
        session_id: String,
        events: Vec<Arc<SessionEvent>>,
    },
    SetState {
        session_id: String,
        state: SessionState,
        at: DateTime<Utc>,
    },
    /// Many sessions archived by one statement (the ids as a JSON array).
    Archive {
        ids_json: String,
        at: DateTime<Utc>,
    },
    Delete(String),
    Purge(DateTime<Utc>),
}

enum Done {
    Unit,
    Flag(bool),
    Count(u64),
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Done, StoreError>>,
}

/// A SQLite database file holding sessions and events.
pub struct SqliteStore {
    path: PathBuf,
    reads: SqlitePool,
    jobs: mpsc::Sender<Job>,
}

fn open_error(path: &Path, what: impl std::fmt::Display) -> StoreError {
    StoreError::Open {
        target: format!("SQLite file `{}`", path.display()),
        message: what.to_string(),
    }
}

/// Why opening failed: the connection or the migration.
#[derive(Debug)]
enum OpenFailure {
    Sql(sqlx::Error),
    Migrate(sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for OpenFailure {
    fn from(e: sqlx::Error) -> Self {
        OpenFailure::Sql(e)
    }
}

impl From<sqlx::migrate::MigrateError> for OpenFailure {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        OpenFailure::Migrate(e)
    }
}

impl std::fmt::Display for OpenFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenFailure::Sql(e) => e.fmt(f),
            OpenFailure::Migrate(e) => e.fmt(f),
        }
    }
}

/// A failure another opener's race explains: a lock, or a migration someone else applied.
fn is_transient(e: &OpenFailure) -> bool {
    match e {
        OpenFailure::Sql(e) => is_busy(e),
        OpenFailure::Migrate(sqlx::migrate::MigrateError::Execute(e)) => {
            is_busy(e) || e.to_string().contains("UNIQUE constraint failed")
        }
        OpenFailure::Migrate(_) => false,
    }
}

fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            matches!(db.code().as_deref(), Some("5" | "6" | "261" | "517"))
                || db.message().contains("database is locked")
                || db.message().contains("database table is locked")
        }
        _ => false,
    }
}

/// Runs `f` again on busy errors, backing off exponentially (10 ms, 20 ms, ... about 2.5 s in all).
async fn retry<T, F, Fut>(mut f: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let mut delay = Duration::from_millis(10);
    for attempt in 0.. {
        match f().await {
            Err(e) if is_busy(&e) && attempt < RETRIES => {
                tracing::debug!(attempt, "SQLite busy; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
    unreachable!("the loop returns")
}

/// How a [`SqliteStore`] is tuned; [`Default`] is what [`SqliteStore::open`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// The page cache of each of the read connections, in KiB (SQLite's `cache_size`). The one
    /// writing connection keeps SQLite's default (2,000 KiB).
    pub read_cache_kib: u32,
}

/// Each read connection's page cache. Measured (README, part 13): under the soak's steady
/// writes, with each of the four readers at SQLite's default of 2,000 KiB, SQLite's page-cache
/// memory rose from 4.4 to 12.4 MB over eight minutes; with 64 KiB a reader it held 2.8-3.0 MB
/// from the first minute, at the same throughput. And `cargo bench -p aether-store --bench
/// read_cache` read 0.97-1.08x as fast at 256 KiB as at 2,000 KiB, with reads alone, over a hot
/// set and beside a writer. A miss reads the OS's file cache, not the disk.
pub const DEFAULT_READ_CACHE_KIB: u32 = 256;

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            read_cache_kib: DEFAULT_READ_CACHE_KIB,
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// [`Self::open`] with `options`.
    pub async fn open_with(path: &Path, options: SqliteOptions) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_error(path, format!("cannot create its directory: {e}")))?;
        }
        // Processes opening one new file at once race: to switch it to WAL, and to migrate it
        // (sqlx cannot lock SQLite while migrating). The loser of such a race fails with a
        // transient error and succeeds when it tries again; any other error is final at once.
        let mut delay = Duration::from_millis(20);
        for attempt in 0.. {
            match Self::try_open(path, options).await {
                Err(e) if attempt < 6 && is_transient(&e) => {
                    tracing::debug!(error = %e, attempt, "opening SQLite raced another opener; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other.map_err(|e| open_error(path, e)),
            }
        }
        unreachable!("the loop returns")
    }

    /// Opens the session store at `path` only if it is one already, creating nothing: for commands
    /// that read or manage stored sessions, where a mistyped path must be an error rather than
    /// a new, empty store.
    pub async fn open_existing(path: &Path) -> Result<Self, StoreError> {
        if !path.is_file() {
            let why = if path.exists() {
                "it is not a file"
            } else {
                "the file does not exist"
            };
            return Err(open_error(path, format!("there is no session store here: {why}")));
        }
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| open_error(path, e))?
            .filename(path)
            .read_only(true);
        let mut probe = SqliteConnection::connect_with(&options)
            .await
            .map_err(|e| open_error(path, e))?;
        let tables: Result<i64, sqlx::Error> =
            sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'aether_sessions'")
                .fetch_one(&mut probe)
                .await;
        let _ = probe.close().await;
        match tables {
            Ok(1) => Self::open(path).await,
            Ok(_) => Err(open_error(
                path,
                "there is no session store here: the file is not an Aether session store (no aether_sessions table)",
            )),
            Err(e) => Err(open_error(
                path,
                format!("there is no session store here: the file is not a readable SQLite database ({e})"),
            )),
        }
    }

    async fn try_open(path: &Path, tuning: SqliteOptions) -> Result<Self, OpenFailure> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let mut writer = SqliteConnection::connect_with(&options).await?;
        migrator(Dialect::Sqlite).await?.run_direct(&mut writer).await?;
        // A read connection lives until it has been idle for 10 minutes (sqlx's default), not for
        // a set lifetime: recycling a local file's connection gains nothing and drops what SQLite
        // held for it, which the next minutes refill. (With sqlx's default of 30 minutes and
        // 2,000 KiB caches, a soak's heap fell by ~5 MB at minute 30 and climbed back over 6
        // minutes.)
        let reads = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .max_lifetime(None)
            .connect_with(
                options
                    .read_only(true)
                    .pragma("cache_size", format!("-{}", tuning.read_cache_kib)),
            )
            .await?;
        let (jobs, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer_loop(writer, rx));
        Ok(Self {
            path: path.to_owned(),
            reads,
            jobs,
        })
    }

    async fn submit(&self, op: Op) -> Result<Done, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { op, reply })
            .await
            .map_err(|_| StoreError::Backend("the SQLite writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("the SQLite writer dropped a job".into()))?
    }
}

async fn writer_loop(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut delay = Duration::from_millis(10);
        let mut attempt = 0;
        let outcome = loop {
            match run_batch(&mut conn, &batch).await {
                Err(e) if is_busy(&e) && attempt < RETRIES => {
                    tracing::debug!(attempt, "SQLite busy; retrying the write batch in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                other => break other,
            }
        };
        match outcome {
            Ok(results) => {
                for (job, r) in batch.drain(..).zip(results) {
                    let _ = job.reply.send(r);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "SQLite write batch failed");
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(backend_ref(&e)));
                }
            }
        }
    }
    let _ = conn.close().await;
}

enum JobError {
    Store(StoreError),
    Sql(sqlx::Error),
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        JobError::Sql(e)
    }
}

async fn run_batch(conn: &mut SqliteConnection, batch: &[Job]) -> Result<Vec<Result<Done, StoreError>>, sqlx::Error> {
    // IMMEDIATE takes the write lock now, so a busy database fails here, before any work.
    conn.execute("BEGIN IMMEDIATE").await?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        if let Err(e) = conn.execute("SAVEPOINT job").await {
            let _ = conn.execute("ROLLBACK").await;
            return Err(e);
        }
        match apply(conn, &job.op).await {
            Ok(done) => {
                conn.execute("RELEASE job").await?;
                results.push(Ok(done));
            }
            Err(failure) => {
                conn.execute("ROLLBACK TO job").await?;
                conn.execute("RELEASE job").await?;
                match failure {
                    JobError::Store(e) => results.push(Err(e)),
                    JobError::Sql(e) if is_busy(&e) => {
                        let _ = conn.execute("ROLLBACK").await;
                        return Err(e);
                    }
                    JobError::Sql(e) => results.push(Err(backend(e))),
                }
            }
        }
    }
    if let Err(e) = conn.execute("COMMIT").await {
        let _ = conn.execute("ROLLBACK").await;
        return Err(e);
    }
    Ok(results)
}

async fn apply(conn: &mut SqliteConnection, op: &Op) -> Result<Done, JobError> {
    match op {
        Op::Put(r) => {
            sqlx::query(
                "INSERT INTO aether_sessions (session_id, user_id, agent_id, internal_session_id, state, created_at, updated_at, event_count)
                 VALUES (?, ?, ?, ?, ?, ?, ?, 0)
                 ON CONFLICT (session_id) DO UPDATE SET user_id = excluded.user_id, agent_id = excluded.agent_id,
                   internal_session_id = excluded.internal_session_id, state = excluded.state, updated_at = excluded.updated_at",
            )
            .bind(&*r.session_id)
            .bind(r.user_id.as_deref())
            .bind(&r.agent_id)
            .bind(&r.internal_session_id)
            .bind(state_str(r.state))
            .bind(r.created_at)
            .bind(r.updated_at)
            .execute(&mut *conn)
            .await?;
            Ok(Done::Unit)
        }
        Op::Append { session_id, events } => {
            let Some(first) = events.first() else {
                return Ok(Done::Unit);
            };
            if let Some((i, e)) = events.iter().enumerate().find(|(i, e)| e.seq != first.seq + *i as u64) {
                return Err(JobError::Store(StoreError::SequenceGap {
                    session_id: session_id.clone(),
                    expected: first.seq + i as u64,
                    got: e.seq,
                }));
            }
            let n = events.len() as i64;
            let updated = sqlx::query(
                "UPDATE aether_sessions SET event_count = event_count + ?, updated_at = ? WHERE session_id = ? AND event_count = ?",
            )
            .bind(n)
            .bind(Utc::now())
            .bind(session_id)
            .bind(first.seq as i64)
            .execute(&mut *conn)
            .await?;
            if updated.rows_affected() == 0 {
                let count: Option<i64> =
                    sqlx::query_scalar("SELECT event_count FROM aether_sessions WHERE session_id = ?")
                        .bind(session_id)
                        .fetch_optional(&mut *conn)
                        .await?;
                return Err(JobError::Store(append_conflict(session_id, count, first.seq)));
            }
            for e in events {
                sqlx::query("INSERT INTO aether_events (session_id, seq, body) VALUES (?, ?, ?)")
                    .bind(session_id)
                    .bind(e.seq as i64)
                    .bind(encode_event(e).map_err(JobError::Store)?)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(Done::Unit)
        }
        Op::SetState { session_id, state, at } => {
            let r = sqlx::query("UPDATE aether_sessions SET state = ?, updated_at = ? WHERE session_id = ?")
                .bind(state_str(*state))
                .bind(*at)
                .bind(session_id)
                .execute(&mut *conn)
                .await?;
            Ok(Done::Flag(r.rows_affected() > 0))
        }
        Op::Archive { ids_json, at } => {
            let r = sqlx::query(
                "UPDATE aether_sessions SET state = 'archived', updated_at = ?
                 WHERE session_id IN (SELECT value FROM json_each(?))",
            )
            .bind(*at)
            .bind(ids_json)
            .execute(&mut *conn)
            .await?;
            Ok(Done::Count(r.rows_affected()))
        }
        Op::Delete(session_id) => {
            let r = sqlx::query("DELETE FROM aether_sessions WHERE session_id = ?")
                .bind(session_id)
                .execute(&mut *conn)
                .await?;
            Ok(Done::Flag(r.rows_affected() > 0))
        }
        Op::Purge(cutoff) => {
            let r = sqlx::query("DELETE FROM aether_sessions WHERE state = 'archived' AND updated_at < ?")
                .bind(*cutoff)
                .execute(&mut *conn)
                .await?;
            Ok(Done::Count(r.rows_affected()))
        }
    }
}

fn flag(d: Done) -> bool {
    matches!(d, Done::Flag(true))
}

#[async_trait]
impl SessionStore for SqliteStore {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            kind: "sqlite",
            durability: Durability::Sync,
            location: Some(self.path.display().to_string()),
        }
    }

    async fn put_session(&self, record: SessionRecord) -> Result<(), StoreError> {
        self.submit(Op::Put(record)).await.map(drop)
    }

    async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM aether_sessions WHERE session_id = ?");
        let row: Option<SessionRow> = retry(|| sqlx::query_as(&sql).bind(session_id).fetch_optional(&self.reads))
            .await
            .map_err(backend)?;
        row.map(record).transpose()
    }

    async fn append_events(&self, session_id: &str, events: &[Arc<SessionEvent>]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.submit(Op::Append {
            session_id: session_id.to_owned(),
            events: events.to_vec(),
        })
        .await
        .map(drop)
    }

    async fn load_window(&self, session_id: &str, max_events: usize) -> Result<HistoryWindow, StoreError> {
        let bodies: Vec<(i64, String)> = retry(|| {
            sqlx::query_as("SELECT seq, body FROM aether_events WHERE session_id = ? ORDER BY seq DESC LIMIT ?")
                .bind(session_id)
                .bind(max_events as i64)
                .fetch_all(&self.reads)
        })
        .await
        .map_err(backend)?;
        window(bodies)
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
        let after = after_seq.map_or(-1, |s| s as i64);
        let rows: Vec<(i64, String)> = retry(|| {
            sqlx::query_as("SELECT seq, body FROM aether_events WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?")
                .bind(session_id)
                .bind(after)
                .bind(limit as i64 + 1)
                .fetch_all(&self.reads)
        })
        .await
        .map_err(backend)?;
        event_page(rows, limit)
    }

    async fn list_sessions(&self, filter: &SessionFilter, page: &PageRequest) -> Result<Page, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM aether_sessions
             WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR agent_id = ?2) AND (?3 IS NULL OR state = ?3)
               AND (?4 IS NULL OR session_id > ?4)
             ORDER BY session_id LIMIT ?5"
        );
        let rows: Vec<SessionRow> = retry(|| {
            sqlx::query_as(&sql)
                .bind(&filter.user_id)
                .bind(&filter.agent_id)
                .bind(filter.state.map(state_str))
                .bind(&page.after)
                .bind(page.limit as i64 + 1)
                .fetch_all(&self.reads)
        })
        .await
        .map_err(backend)?;
        session_page(rows, page.limit)
    }

    async fn set_state(&self, session_id: &str, state: SessionState) -> Result<bool, StoreError> {
        self.submit(Op::SetState {
            session_id: session_id.to_owned(),
            state,
            at: Utc::now(),
        })
        .await
        .map(flag)
    }

    async fn archive_sessions(&self, session_ids: &[Arc<str>]) -> Result<u64, StoreError> {
        if session_ids.is_empty() {
            return Ok(0);
        }
        let ids_json = serde_json::to_string(session_ids).map_err(|e| StoreError::Backend(e.to_string()))?;
        match self
            .submit(Op::Archive {
                ids_json,
                at: Utc::now(),
            })
            .await?
        {
            Done::Count(n) => Ok(n),
            _ => Ok(0),
        }
    }

    async fn delete_session(&self, session_id: &str) -> Result<bool, StoreError> {
        self.submit(Op::Delete(session_id.to_owned())).await.map(flag)
    }

    async fn purge_archived(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        match self.submit(Op::Purge(cutoff)).await? {
            Done::Count(n) => Ok(n),
            _ => Ok(0),
        }
    }

    async fn session_count(&self) -> Result<u64, StoreError> {
        let n: i64 = retry(|| sqlx::query_scalar("SELECT COUNT(*) FROM aether_sessions").fetch_one(&self.reads))
            .await
            .map_err(backend)?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_connections_are_not_recycled_by_age() {
        let dir = std::env::temp_dir().join(format!("aether-sqlite-lifetime-{}", std::process::id()));
        let store = SqliteStore::open(&dir.join("sessions.db")).await.unwrap();
        assert_eq!(store.reads.options().get_max_lifetime(), None);
        assert!(store.reads.options().get_idle_timeout().is_some());
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The read connections take the configured page cache (a negative `cache_size` is in KiB).
    #[tokio::test]
    async fn read_connections_have_the_configured_page_cache() {
        let dir = std::env::temp_dir().join(format!("aether-sqlite-read-cache-{}", std::process::id()));
        let cache = |store: &SqliteStore| {
            let reads = store.reads.clone();
            async move {
                let mut conn = reads.acquire().await.unwrap();
                sqlx::query_scalar::<_, i64>("PRAGMA cache_size")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap()
            }
        };
        let store = SqliteStore::open(&dir.join("default.db")).await.unwrap();
        assert_eq!(cache(&store).await, -i64::from(DEFAULT_READ_CACHE_KIB));
        let store = SqliteStore::open_with(&dir.join("tuned.db"), SqliteOptions { read_cache_kib: 64 })
            .await
            .unwrap();
        assert_eq!(cache(&store).await, -64);
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
