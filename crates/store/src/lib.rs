//! Session stores of Aether Frame.
//!
//! A chat session is keyed by its business `session_id`. Its history is an append-only log of
//! [`SessionEvent`]s; a turn reads only a bounded [`HistoryWindow`] of the latest events, never the
//! whole log. [`SessionStore`] is the trait every backend implements: [`MemoryStore`] (tests, the
//! harness), [`SqliteStore`] (the embedded default: one file) and [`PostgresStore`] (sessions
//! shared by several instances, with per-session [`SessionLeases`] that order their turns).
//! [`BackgroundWrites`] gives any of them `async` durability.
//! [`open`] builds one from a [`StoreConfig`]; [`sqlite_memory()`] reads what SQLite holds.

mod background;
mod by_id;
pub mod cluster;
mod error;
mod lease;
mod memory;
mod migrations;
mod postgres;
mod record;
mod rows;
mod sqlite;
mod sqlite_memory;

pub use aether_contracts::SessionEvent;
pub use background::BackgroundWrites;
pub use by_id::{reserved_map, shrink_if_sparse, table_slots, ById, HasId, MAX_RESERVED};
pub use cluster::{ClusterDirectory, ClusterError, LiveOwner, PgClusterDirectory};
pub use error::StoreError;
pub use lease::{LeaseHolder, SessionLeases};
pub use memory::MemoryStore;
#[doc(hidden)]
pub use migrations::migrate_postgres_up_to;
pub use postgres::PostgresStore;
pub use record::{
    Durability, EventPage, HistoryWindow, Page, PageRequest, SessionFilter, SessionRecord, SessionState, StoreInfo,
};
pub use sqlite::{SqliteOptions, SqliteStore, DEFAULT_READ_CACHE_KIB};
pub use sqlite_memory::{sqlite_memory, SqliteMemory};

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A place where chat sessions and their events live.
///
/// Implementations must order appends per session and must not make different sessions wait on
/// each other.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// What this store is, for summaries and logs.
    fn info(&self) -> StoreInfo;

    /// Creates the session or replaces its record (agent switch, archive, recovery).
    async fn put_session(&self, record: SessionRecord) -> Result<(), StoreError>;

    async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError>;

    /// Appends events in order. Their `seq` must continue the session's log without a gap.
    async fn append_events(&self, session_id: &str, events: &[Arc<SessionEvent>]) -> Result<(), StoreError>;

    /// The latest `max_events` events, oldest first, and how many came before them.
    async fn load_window(&self, session_id: &str, max_events: usize) -> Result<HistoryWindow, StoreError>;

    /// Events with `seq > after_seq` (all when `None`), oldest first, at most `limit`.
    async fn events_page(
        &self,
        session_id: &str,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<EventPage, StoreError>;

    /// Sessions matching `filter`, ordered by session id, paged by id.
    async fn list_sessions(&self, filter: &SessionFilter, page: &PageRequest) -> Result<Page, StoreError>;

    /// Sets the session's state; `false` when the session does not exist.
    async fn set_state(&self, session_id: &str, state: SessionState) -> Result<bool, StoreError>;

    /// Archives many sessions at once (the idle sweeper's batch): one transaction where the
    /// backend has them. Returns how many of them exist. Unknown ids are skipped, not errors.
    async fn archive_sessions(&self, session_ids: &[Arc<str>]) -> Result<u64, StoreError> {
        let mut archived = 0;
        for id in session_ids {
            archived += u64::from(self.set_state(id, SessionState::Archived).await?);
        }
        Ok(archived)
    }

    /// Removes the session, its events and its archive for good; `false` when absent.
    async fn delete_session(&self, session_id: &str) -> Result<bool, StoreError>;

    /// Deletes archived sessions last updated before `cutoff`; returns how many.
    async fn purge_archived(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Number of sessions held (a gauge for metrics).
    async fn session_count(&self) -> Result<u64, StoreError>;

    /// The per-session leases of a store that several instances share (PostgreSQL); `None` for a
    /// store one runtime owns alone.
    fn leases(&self) -> Option<Arc<dyn SessionLeases>> {
        None
    }

    /// Waits until every write accepted so far is durable (a no-op for synchronous stores).
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Which store to open.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreConfig {
    Memory,
    Sqlite {
        path: PathBuf,
        durability: Durability,
    },
    Postgres {
        url: String,
        durability: Durability,
        max_connections: u32,
    },
}

/// Writes a background queue may hold in `async` mode before writers wait.
pub const ASYNC_QUEUE_CAPACITY: usize = 8192;

/// Opens the configured store (creating files and applying migrations as needed).
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn SessionStore>, StoreError> {
    let (store, durability): (Arc<dyn SessionStore>, Durability) = match config {
        StoreConfig::Memory => return Ok(Arc::new(MemoryStore::new())),
        StoreConfig::Sqlite { path, durability } => (Arc::new(SqliteStore::open(path).await?), *durability),
        StoreConfig::Postgres {
            url,
            durability,
            max_connections,
        } => (Arc::new(PostgresStore::open(url, *max_connections).await?), *durability),
    };
    Ok(match durability {
        Durability::Async => Arc::new(BackgroundWrites::new(store, ASYNC_QUEUE_CAPACITY)),
        _ => store,
    })
}
