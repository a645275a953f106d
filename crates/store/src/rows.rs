//! Mapping between store records and SQL rows, shared by the SQL stores.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::{SessionEvent, SessionRecord, SessionState, StoreError};

pub(crate) fn state_str(s: SessionState) -> &'static str {
    match s {
        SessionState::Active => "active",
        SessionState::Archived => "archived",
    }
}

pub(crate) fn parse_state(s: &str) -> Result<SessionState, StoreError> {
    match s {
        "active" => Ok(SessionState::Active),
        "archived" => Ok(SessionState::Archived),
        other => Err(StoreError::Backend(format!(
            "unknown session state `{other}` in the store"
        ))),
    }
}

/// The columns of `aether_sessions`, in `SELECT` order.
pub(crate) const SESSION_COLUMNS: &str =
    "session_id, user_id, agent_id, internal_session_id, state, created_at, updated_at, event_count";

pub(crate) type SessionRow = (
    String,
    Option<String>,
    String,
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    i64,
);

pub(crate) fn record(row: SessionRow) -> Result<SessionRecord, StoreError> {
    let (session_id, user_id, agent_id, internal_session_id, state, created_at, updated_at, event_count) = row;
    Ok(SessionRecord {
        session_id: session_id.into(),
        user_id: user_id.map(Into::into),
        agent_id,
        internal_session_id,
        state: parse_state(&state)?,
        created_at,
        updated_at,
        event_count: u64::try_from(event_count).unwrap_or(0),
    })
}

pub(crate) fn encode_event(e: &SessionEvent) -> Result<String, StoreError> {
    serde_json::to_string(e).map_err(|e| StoreError::Backend(format!("cannot encode an event: {e}")))
}

pub(crate) fn decode_event(body: &str) -> Result<Arc<SessionEvent>, StoreError> {
    serde_json::from_str(body)
        .map(Arc::new)
        .map_err(|e| StoreError::Backend(format!("corrupt event in the store: {e}")))
}

/// A database error as a store error: [`StoreError::Unavailable`], saying what is wrong, when the
/// database could not be reached or could not take the write (retrying later may work), else
/// [`StoreError::Backend`].
pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    backend_ref(&e)
}

/// [`backend`] of a borrowed error.
pub(crate) fn backend_ref(e: &sqlx::Error) -> StoreError {
    match unavailable(e) {
        Some(why) => StoreError::Unavailable(format!("{why}: {e}")),
        None => StoreError::Backend(e.to_string()),
    }
}

/// Why the database cannot serve now, for lost or refused connections, an exhausted or closed
/// pool, and the database's own "not now" answers: PostgreSQL's SQLSTATE classes 08 (connection
/// exception), 53 (insufficient resources) and 57P (shutting down, starting up); SQLite's FULL,
/// IOERR, BUSY and LOCKED (primary result codes 13, 10, 5 and 6). `None` for any other error.
fn unavailable(e: &sqlx::Error) -> Option<&'static str> {
    use sqlx::Error as E;
    match e {
        E::PoolTimedOut => Some("no database connection within the pool's timeout (is the database down?)"),
        E::PoolClosed | E::WorkerCrashed => Some("the database connection pool has stopped"),
        E::Io(_) | E::Tls(_) => Some("the database cannot be reached"),
        E::Database(d) => {
            if let Some(pg) = d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                let code = pg.code();
                if code.starts_with("08") || code.starts_with("57P") {
                    Some("the database is down or restarting")
                } else if code.starts_with("53") {
                    Some("the database is out of resources (disk, memory or connections)")
                } else {
                    None
                }
            } else if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                match d.code().and_then(|c| c.parse::<u32>().ok()).map(|c| c & 0xff) {
                    Some(13) => Some("the disk is full"),
                    Some(10) => Some("writing to the disk failed (a full disk, the file size limit, or an I/O fault)"),
                    Some(5 | 6) => Some("the database file is locked by another writer"),
                    _ => None,
                }
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Rows of `(seq, body)` newest first → the window, oldest first.
pub(crate) fn window(rows_newest_first: Vec<(i64, String)>) -> Result<crate::HistoryWindow, StoreError> {
    let events_before = rows_newest_first.last().map_or(0, |(seq, _)| *seq as u64);
    let events = rows_newest_first
        .iter()
        .rev()
        .map(|(_, b)| decode_event(b))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(crate::HistoryWindow { events, events_before })
}

/// Up to `limit + 1` rows of `(seq, body)` → a page of `limit` and where the next one starts.
pub(crate) fn event_page(rows: Vec<(i64, String)>, limit: usize) -> Result<crate::EventPage, StoreError> {
    let more = rows.len() > limit;
    let events = rows
        .iter()
        .take(limit)
        .map(|(_, b)| decode_event(b))
        .collect::<Result<Vec<_>, _>>()?;
    let next_after_seq = if more { events.last().map(|e| e.seq) } else { None };
    Ok(crate::EventPage { events, next_after_seq })
}

/// Up to `limit + 1` session rows → a page of `limit` and where the next one starts.
pub(crate) fn session_page(rows: Vec<SessionRow>, limit: usize) -> Result<crate::Page, StoreError> {
    let more = rows.len() > limit;
    let sessions = rows
        .into_iter()
        .take(limit)
        .map(record)
        .collect::<Result<Vec<_>, _>>()?;
    let next_after = if more {
        sessions.last().map(|s| s.session_id.to_string())
    } else {
        None
    };
    Ok(crate::Page { sessions, next_after })
}

/// Why a guarded append matched no row: the session is missing, or its count moved on.
pub(crate) fn append_conflict(session_id: &str, count: Option<i64>, got: u64) -> StoreError {
    match count {
        None => StoreError::SessionNotFound(session_id.to_owned()),
        Some(c) => StoreError::SequenceGap {
            session_id: session_id.to_owned(),
            expected: c as u64,
            got,
        },
    }
}
