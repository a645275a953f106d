//! Idle reclamation, in dependency order: chat sessions first (archived, recoverable), then
//! runners left with no session and no active task, then agents left with no runner; finally
//! archived sessions past their retention are purged from the store. A sweep that leaves the
//! session map's table sparse after a burst shrinks it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::agents::AgentManager;
use crate::clock::Clock;
use crate::sessions::ChatSessions;
use crate::stats::Stats;

/// Idle sessions archived by one store write.
const ARCHIVE_BATCH: usize = 1024;

/// What one sweep reclaimed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub sessions: u64,
    pub runners: u64,
    pub agents: u64,
    pub purged: u64,
}

/// How long things may stay idle, and archived sessions kept.
pub(crate) struct Ttls {
    pub session_idle: Duration,
    pub runner_idle: Duration,
    pub agent_idle: Duration,
    pub archive: Duration,
}

/// What the sweeper reclaims from, and by which rules.
pub(crate) struct Sweeper {
    pub sessions: Arc<ChatSessions>,
    pub agents: Arc<AgentManager>,
    pub stats: Arc<Stats>,
    pub clock: Clock,
    pub ttls: Ttls,
}

impl Sweeper {
    pub(crate) async fn sweep(&self, now: Instant) -> SweepReport {
        let now_ms = self.clock.ms(now);
        let mut report = SweepReport::default();

        let ttl_ms = self.ttls.session_idle.as_millis() as u64;
        let candidates = self.sessions.eviction_candidates(now_ms, ttl_ms);
        // Batches: one store write archives a whole batch (with SQLite, one statement in one
        // commit, where one write per session fell behind a busy writer), and the worker thread
        // is yielded between batches.
        for batch in candidates.chunks(ARCHIVE_BATCH) {
            // A session in the middle of a turn is busy, not idle: skip it this time.
            let mut held: Vec<_> = batch
                .iter()
                .filter_map(|chat| chat.try_lock().map(|st| (Arc::clone(chat), st)))
                .collect();
            let (closed, archived) = self.sessions.close_batch(&mut held).await;
            drop(held);
            report.sessions += closed;
            Stats::add(&self.stats.reclaimed_sessions, closed);
            if let Err(e) = archived {
                tracing::warn!(sessions = closed, error = %e, "archiving idle sessions failed");
            }
            tokio::task::yield_now().await;
        }
        // Sessions also leave by cleanup and deletion: every sweep looks (two reads per shard).
        if self.sessions.shrink_if_sparse() {
            Stats::incr(&self.stats.session_table_shrinks);
        }

        report.runners = self.agents.reclaim_runners(now_ms, self.ttls.runner_idle);
        report.agents = self.agents.reclaim_agents(now_ms, self.ttls.agent_idle);

        let wall_now = chrono::Utc::now() + now.saturating_duration_since(Instant::now());
        if let Ok(retention) = chrono::Duration::from_std(self.ttls.archive) {
            match self.sessions.store.purge_archived(wall_now - retention).await {
                Ok(n) => {
                    report.purged = n;
                    Stats::add(&self.stats.purged_sessions, n);
                }
                Err(e) => tracing::warn!(error = %e, "purging archived sessions failed"),
            }
        }
        if report != SweepReport::default() {
            tracing::debug!(?report, "idle sweep");
        }
        report
    }

    /// Runs [`Self::sweep`] every `interval`, and at once when the session map goes over its
    /// cap. Holds only a weak reference: the task ends when the runtime is dropped.
    pub(crate) fn spawn(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                let Some(sweeper) = weak.upgrade() else { return };
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = sweeper.sessions.pressure.notified() => {}
                }
                sweeper.sweep(Instant::now()).await;
            }
        })
    }
}
