//! How long the session store takes, per operation: [`TimedStore`] wraps the store the runtime
//! uses and records every call into [`StoreTimings`], which `/metrics` renders as the histogram
//! `aether_store_duration_seconds{op, outcome}` (the dashboard's store-latency panel).
//!
//! The histogram is lock-free (one atomic per bucket, per operation and outcome, fixed at
//! construction): recording is a few relaxed atomic adds, with no key built or map searched, so
//! it never slows the turn it measures. Every series exists at zero from the start.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_contracts::SessionEvent;
use aether_store::{
    EventPage, HistoryWindow, Page, PageRequest, SessionFilter, SessionRecord, SessionState, SessionStore, StoreError,
    StoreInfo,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Bucket bounds in seconds: 10 µs to 10 s.
const BOUNDS: [f64; 14] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 10.0,
];

/// The store's operations, as the `op` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    PutSession,
    GetSession,
    AppendEvents,
    LoadWindow,
    EventsPage,
    ListSessions,
    SetState,
    ArchiveSessions,
    DeleteSession,
    PurgeArchived,
    SessionCount,
    Flush,
}

impl StoreOp {
    pub const ALL: [StoreOp; 12] = [
        StoreOp::PutSession,
        StoreOp::GetSession,
        StoreOp::AppendEvents,
        StoreOp::LoadWindow,
        StoreOp::EventsPage,
        StoreOp::ListSessions,
        StoreOp::SetState,
        StoreOp::ArchiveSessions,
        StoreOp::DeleteSession,
        StoreOp::PurgeArchived,
        StoreOp::SessionCount,
        StoreOp::Flush,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StoreOp::PutSession => "put_session",
            StoreOp::GetSession => "get_session",
            StoreOp::AppendEvents => "append_events",
            StoreOp::LoadWindow => "load_window",
            StoreOp::EventsPage => "events_page",
            StoreOp::ListSessions => "list_sessions",
            StoreOp::SetState => "set_state",
            StoreOp::ArchiveSessions => "archive_sessions",
            StoreOp::DeleteSession => "delete_session",
            StoreOp::PurgeArchived => "purge_archived",
            StoreOp::SessionCount => "session_count",
            StoreOp::Flush => "flush",
        }
    }
}

/// One operation and outcome: cumulative-at-render bucket counts, the sum and the count.
#[derive(Default)]
struct Series {
    buckets: [AtomicU64; BOUNDS.len()],
    /// Sum of the durations, in nanoseconds.
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Series {
    fn record(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BOUNDS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.sum_ns.fetch_add(d.as_nanos() as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }
}

/// Every operation's timings, for successes and errors.
pub struct StoreTimings {
    /// Indexed by `StoreOp` position × 2 + (0 ok, 1 error).
    series: Vec<Series>,
}

impl Default for StoreTimings {
    fn default() -> Self {
        Self {
            series: (0..StoreOp::ALL.len() * 2).map(|_| Series::default()).collect(),
        }
    }
}

impl StoreTimings {
    pub fn record(&self, op: StoreOp, ok: bool, d: Duration) {
        let i = StoreOp::ALL.iter().position(|o| *o == op).unwrap_or(0);
        self.series[i * 2 + usize::from(!ok)].record(d);
    }

    /// The histogram in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(16 * 1024);
        s.push_str("# HELP aether_store_duration_seconds Session store calls by operation and outcome.\n");
        s.push_str("# TYPE aether_store_duration_seconds histogram\n");
        for (i, op) in StoreOp::ALL.iter().enumerate() {
            for (k, outcome) in ["ok", "error"].iter().enumerate() {
                let series = &self.series[i * 2 + k];
                let labels = format!("op=\"{}\",outcome=\"{outcome}\"", op.as_str());
                let mut cumulative = 0;
                for (b, bound) in BOUNDS.iter().enumerate() {
                    cumulative += series.buckets[b].load(Relaxed);
                    let _ = writeln!(
                        s,
                        "aether_store_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                    );
                }
                let count = series.count.load(Relaxed);
                let _ = writeln!(
                    s,
                    "aether_store_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
                );
                let _ = writeln!(
                    s,
                    "aether_store_duration_seconds_sum{{{labels}}} {}",
                    series.sum_ns.load(Relaxed) as f64 / 1e9
                );
                let _ = writeln!(s, "aether_store_duration_seconds_count{{{labels}}} {count}");
            }
        }
        s
    }
}

/// A store whose every call is timed into [`StoreTimings`].
pub struct TimedStore {
    inner: Arc<dyn SessionStore>,
    timings: Arc<StoreTimings>,
}

/// Wraps `store`: the runtime gets the first, `/metrics` renders the second (hand it to the
/// server through [`crate::Shared`]).
pub fn timed(store: Arc<dyn SessionStore>) -> (Arc<dyn SessionStore>, Arc<StoreTimings>) {
    let timings = Arc::new(StoreTimings::default());
    let wrapped = Arc::new(TimedStore {
        inner: store,
        timings: Arc::clone(&timings),
    });
    (wrapped, timings)
}

impl TimedStore {
    async fn time<T>(
        &self,
        op: StoreOp,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let r = f.await;
        self.timings.record(op, r.is_ok(), started.elapsed());
        r
    }
}

#[async_trait]
impl SessionStore for TimedStore {
    fn info(&self) -> StoreInfo {
        self.inner.info()
    }

    fn leases(&self) -> Option<Arc<dyn aether_store::SessionLeases>> {
        self.inner.leases()
    }

    async fn put_session(&self, record: SessionRecord) -> Result<(), StoreError> {
        self.time(StoreOp::PutSession, self.inner.put_session(record)).await
    }

    async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.time(StoreOp::GetSession, self.inner.get_session(session_id)).await
    }

    async fn append_events(&self, session_id: &str, events: &[Arc<SessionEvent>]) -> Result<(), StoreError> {
        self.time(StoreOp::AppendEvents, self.inner.append_events(session_id, events))
            .await
    }

    async fn load_window(&self, session_id: &str, max_events: usize) -> Result<HistoryWindow, StoreError> {
        self.time(StoreOp::LoadWindow, self.inner.load_window(session_id, max_events))
            .await
    }

    async fn events_page(
        &self,
        session_id: &str,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        self.time(
            StoreOp::EventsPage,
            self.inner.events_page(session_id, after_seq, limit),
        )
        .await
    }

    async fn list_sessions(&self, filter: &SessionFilter, page: &PageRequest) -> Result<Page, StoreError> {
        self.time(StoreOp::ListSessions, self.inner.list_sessions(filter, page))
            .await
    }

    async fn set_state(&self, session_id: &str, state: SessionState) -> Result<bool, StoreError> {
        self.time(StoreOp::SetState, self.inner.set_state(session_id, state))
            .await
    }

    async fn archive_sessions(&self, session_ids: &[Arc<str>]) -> Result<u64, StoreError> {
        self.time(StoreOp::ArchiveSessions, self.inner.archive_sessions(session_ids))
            .await
    }

    async fn delete_session(&self, session_id: &str) -> Result<bool, StoreError> {
        self.time(StoreOp::DeleteSession, self.inner.delete_session(session_id))
            .await
    }

    async fn purge_archived(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.time(StoreOp::PurgeArchived, self.inner.purge_archived(cutoff))
            .await
    }

    async fn session_count(&self) -> Result<u64, StoreError> {
        self.time(StoreOp::SessionCount, self.inner.session_count()).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.time(StoreOp::Flush, self.inner.flush()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_every_series_exists_at_zero() {
        let t = StoreTimings::default();
        let empty = t.render();
        assert_eq!(
            empty.matches("aether_store_duration_seconds_count{").count(),
            StoreOp::ALL.len() * 2
        );
        t.record(StoreOp::GetSession, true, Duration::from_micros(30));
        t.record(StoreOp::GetSession, true, Duration::from_millis(2));
        t.record(StoreOp::GetSession, false, Duration::from_secs(20));
        let text = t.render();
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.starts_with(needle))
                .and_then(|l| l.rsplit(' ').next())
                .unwrap_or_else(|| panic!("no {needle}"))
                .to_owned()
        };
        let ok = r#"op="get_session",outcome="ok""#;
        assert_eq!(
            line(&format!("aether_store_duration_seconds_bucket{{{ok},le=\"0.00005\"}}")),
            "1"
        );
        assert_eq!(
            line(&format!("aether_store_duration_seconds_bucket{{{ok},le=\"0.0025\"}}")),
            "2"
        );
        assert_eq!(line(&format!("aether_store_duration_seconds_count{{{ok}}}")), "2");
        let err = r#"op="get_session",outcome="error""#;
        assert_eq!(
            line(&format!("aether_store_duration_seconds_bucket{{{err},le=\"10\"}}")),
            "0",
            "beyond the last bound"
        );
        assert_eq!(
            line(&format!("aether_store_duration_seconds_bucket{{{err},le=\"+Inf\"}}")),
            "1"
        );
    }
}
