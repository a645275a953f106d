//! Idle reclamation, in dependency order: chat sessions first (archived, recoverable), then
//! runners left with no session and no active task, then agents left with no runner; finally
//! archived sessions past their retention are purged from the store.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::runtime::Core;
use crate::stats::Stats;

/// What one sweep reclaimed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub sessions: u64,
    pub runners: u64,
    pub agents: u64,
    pub purged: u64,
}

pub(crate) async fn sweep(core: &Core, now: Instant) -> SweepReport {
    let now_ms = core.clock.ms(now);
    let mut report = SweepReport::default();

    let ttl_ms = core.config.session_idle_ttl.as_millis() as u64;
    for (i, chat) in core
        .sessions
        .eviction_candidates(now_ms, ttl_ms)
        .into_iter()
        .enumerate()
    {
        // A big sweep must not hold a worker thread: with a store that never awaits, nothing
        // else would yield.
        if i % 64 == 63 {
            tokio::task::yield_now().await;
        }
        // A session in the middle of a turn is busy, not idle: skip it this time.
        let Some(mut st) = chat.try_lock() else {
            continue;
        };
        match core.sessions.close(&chat, &mut st).await {
            Ok(true) => {
                report.sessions += 1;
                Stats::incr(&core.stats.reclaimed_sessions);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(session_id = %chat.id, error = %e, "archiving an idle session failed")
            }
        }
    }

    report.runners = core.agents.reclaim_runners(now_ms, core.config.runner_idle_ttl);
    report.agents = core.agents.reclaim_agents(now_ms, core.config.agent_idle_ttl);

    let wall_now = chrono::Utc::now() + now.saturating_duration_since(Instant::now());
    if let Ok(retention) = chrono::Duration::from_std(core.config.archive_ttl) {
        match core.sessions.store.purge_archived(wall_now - retention).await {
            Ok(n) => {
                report.purged = n;
                Stats::add(&core.stats.purged_sessions, n);
            }
            Err(e) => tracing::warn!(error = %e, "purging archived sessions failed"),
        }
    }
    if report != SweepReport::default() {
        tracing::debug!(?report, "idle sweep");
    }
    report
}

/// Runs [`sweep`] every `interval`, and at once when the session map goes over its cap.
/// Holds only a weak reference: the task ends when the runtime is dropped.
pub(crate) fn spawn(core: &Arc<Core>, interval: Duration) -> tokio::task::JoinHandle<()> {
    let weak: Weak<Core> = Arc::downgrade(core);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            let Some(core) = weak.upgrade() else { return };
            tokio::select! {
                _ = ticker.tick() => {}
                _ = core.sessions.pressure.notified() => {}
            }
            sweep(&core, Instant::now()).await;
        }
    })
}
