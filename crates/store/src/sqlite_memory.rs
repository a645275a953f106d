//! [`sqlite_memory`]: what SQLite's C library holds in this process, from its own counters.
//!
//! SQLite counts every byte it allocates (`SQLITE_STATUS_MEMORY_USED`) and, of those, the page
//! caches' pages taken from the heap (`SQLITE_STATUS_PAGECACHE_OVERFLOW`: every page, since no
//! fixed page-cache buffer is configured, but for each cache's first block of 20 pages, which
//! SQLite allocates at once and counts only in the total). The figures are process-wide, across
//! every connection of every [`SqliteStore`](crate::SqliteStore), and cost two reads of
//! SQLite's status under its mutex. A soak uses them to tell the page caches filling to their
//! bound (each connection's `cache_size`: SQLite's default of 2,000 KiB for a store's writer,
//! [`DEFAULT_READ_CACHE_KIB`](crate::DEFAULT_READ_CACHE_KIB) for each reader) from growth
//! anywhere else.

use libsqlite3_sys as sqlite;

/// SQLite's allocated bytes, now and at their highest, and the page caches' share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqliteMemory {
    /// Every byte SQLite holds (page caches, schemas, prepared statements, lookaside).
    pub used: u64,
    /// The highest `used` has been since the process started.
    pub used_peak: u64,
    /// Of `used`, the page caches' pages.
    pub page_cache: u64,
}

/// Reads SQLite's memory counters; `None` before SQLite has allocated anything (no store opened).
pub fn sqlite_memory() -> Option<SqliteMemory> {
    let read = |op| {
        let (mut now, mut peak) = (0i64, 0i64);
        // SAFETY: two valid out-pointers; SQLite reads its counters under its own mutex.
        let rc = unsafe { sqlite::sqlite3_status64(op, &mut now, &mut peak, 0) };
        (rc == sqlite::SQLITE_OK).then(|| (now.max(0) as u64, peak.max(0) as u64))
    };
    let (used, used_peak) = read(sqlite::SQLITE_STATUS_MEMORY_USED)?;
    let (page_cache, _) = read(sqlite::SQLITE_STATUS_PAGECACHE_OVERFLOW)?;
    (used_peak > 0).then_some(SqliteMemory {
        used,
        used_peak,
        page_cache,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Utc;

    use super::*;
    use crate::{SessionRecord, SessionState, SessionStore};

    /// Enough sessions that the caches take pages past each one's first block (20 pages).
    #[tokio::test]
    async fn counts_what_the_stores_hold_and_their_page_caches() {
        let dir = std::env::temp_dir().join(format!("aether-sqlite-memory-{}", std::process::id()));
        let store = crate::SqliteStore::open(&dir.join("s.db")).await.unwrap();
        let now = Utc::now();
        let puts = (0..3_000).map(|i| {
            store.put_session(SessionRecord {
                session_id: Arc::from(format!("session-{i:05}")),
                user_id: None,
                agent_id: "agent".into(),
                internal_session_id: format!("ses-{i}-{}", "x".repeat(200)),
                state: SessionState::Active,
                created_at: now,
                updated_at: now,
                event_count: 0,
            })
        });
        for put in futures::future::join_all(puts).await {
            put.unwrap();
        }
        for i in (0..3_000).step_by(7) {
            assert!(store.get_session(&format!("session-{i:05}")).await.unwrap().is_some());
        }
        let m = sqlite_memory().expect("SQLite has allocated once a store is open");
        assert!(m.used > 0 && m.used <= m.used_peak, "{m:?}");
        assert!(m.page_cache > 0 && m.page_cache < m.used, "{m:?}");
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
