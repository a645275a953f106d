//! The cross-instance half of a chat session's turn lock, for runtimes that share a store with
//! other instances (several `aether serve` on one PostgreSQL).
//!
//! A turn first takes its chat's local FIFO lock (so the turns sent to one instance keep their
//! order of arrival), then the session's lease in the store ([`aether_store::SessionLeases`]):
//! a row with a holder and an expiry, taken in one statement and given back at the end of the
//! turn. A turn that finds the lease held by another instance waits for it, polling with a short
//! backoff; no connection is held while it waits or while its turn calls the model.
//!
//! * **Bounded wait.** The lock and the lease together are waited for until the turn's deadline
//!   (`RuntimeConfig::session_wait`); past it the turn fails with `session.busy`, which the server
//!   answers with 503 and Retry-After.
//! * **Heartbeat.** While a turn runs, its lease is renewed every third of its TTL. An instance
//!   that died stops renewing; its lease lapses after the TTL and the next turn proceeds (at
//!   once when the instance holds its leases under its connections' name: `instance_name`).
//! * **Fence.** The lease orders turns; the history is kept whole by the append's event-count
//!   guard (see `aether_store::SessionLeases`), so a holder that lost its lease cannot interleave.
//! * **Release** happens when the turn's [`HeldLease`] drops: the heartbeat stops and the row is
//!   deleted by a spawned task (after a flush when the store writes in the background, so the next
//!   holder reads every event). The next turn of the same instance need not wait for that delete:
//!   a lease of its own instance is taken over.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aether_store::{Durability, LeaseHolder, SessionLeases, SessionStore, StoreError};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::stats::Stats;

/// Shortest and longest pause between two attempts to take a held lease.
const FIRST_BACKOFF: Duration = Duration::from_millis(1);
const MAX_BACKOFF: Duration = Duration::from_millis(20);

/// Why a lease was not taken.
#[derive(Debug)]
pub(crate) enum LeaseError {
    /// Another instance held it until the deadline.
    Busy,
    Store(StoreError),
}

/// This runtime's side of the store's leases.
pub(crate) struct Leases {
    store: Arc<dyn SessionLeases>,
    /// The session store, flushed before a release when it writes in the background.
    flush_first: Option<Arc<dyn SessionStore>>,
    instance: Arc<str>,
    next_token: AtomicI64,
    ttl: Duration,
    stats: Arc<Stats>,
}

impl Leases {
    /// Leases of `store` when it offers them (a store shared by instances), else `None`.
    pub(crate) fn of(
        store: &Arc<dyn SessionStore>,
        instance: Arc<str>,
        ttl: Duration,
        stats: Arc<Stats>,
    ) -> Option<Arc<Self>> {
        let leases = store.leases()?;
        let flush_first = (store.info().durability == Durability::Async).then(|| Arc::clone(store));
        Some(Arc::new(Self {
            store: leases,
            flush_first,
            instance,
            next_token: AtomicI64::new(1),
            ttl: ttl.max(Duration::from_millis(30)),
            stats,
        }))
    }

    /// Takes the lease of `session_id`, waiting for another instance's turn until `deadline`.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        session_id: &Arc<str>,
        deadline: Instant,
    ) -> Result<HeldLease, LeaseError> {
        let holder = LeaseHolder {
            instance: Arc::clone(&self.instance),
            token: self.next_token.fetch_add(1, Ordering::Relaxed),
        };
        let mut backoff = FIRST_BACKOFF;
        let mut waited = false;
        loop {
            if self
                .store
                .try_acquire(session_id, &holder, self.ttl)
                .await
                .map_err(LeaseError::Store)?
            {
                break;
            }
            if !waited {
                waited = true;
                Stats::incr(&self.stats.lease_waits);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(LeaseError::Busy);
            }
            tokio::time::sleep_until((now + backoff).min(deadline)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        let heartbeat = tokio::spawn(heartbeat(Arc::clone(self), Arc::clone(session_id), holder.clone()));
        Ok(HeldLease {
            leases: Arc::clone(self),
            session_id: Arc::clone(session_id),
            holder,
            heartbeat,
        })
    }
}

/// Renews the lease every third of its TTL until it is released (the task is aborted) or lost.
async fn heartbeat(leases: Arc<Leases>, session_id: Arc<str>, holder: LeaseHolder) {
    let every = leases.ttl / 3;
    loop {
        tokio::time::sleep(every).await;
        match leases.store.renew(&session_id, &holder, leases.ttl).await {
            Ok(true) => {}
            Ok(false) => {
                Stats::incr(&leases.stats.leases_lost);
                tracing::warn!(
                    session_id = &*session_id,
                    "lost the session's lease while its turn ran (paused past the lease's TTL?); \
                     the turn's events are written only if no other turn wrote first"
                );
                return;
            }
            // A failed renewal is retried at the next beat; the lease lapses only after its TTL.
            Err(e) => tracing::warn!(session_id = &*session_id, error = %e, "could not renew the session's lease"),
        }
    }
}

/// A held lease; dropping it stops the heartbeat and gives the lease back.
pub(crate) struct HeldLease {
    leases: Arc<Leases>,
    session_id: Arc<str>,
    holder: LeaseHolder,
    heartbeat: JoinHandle<()>,
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.heartbeat.abort();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return; // No runtime left: the lease lapses after its TTL.
        };
        let leases = Arc::clone(&self.leases);
        let session_id = Arc::clone(&self.session_id);
        let holder = self.holder.clone();
        rt.spawn(async move {
            if let Some(store) = &leases.flush_first {
                if let Err(e) = store.flush().await {
                    tracing::warn!(error = %e, "could not flush before giving a session's lease back");
                }
            }
            if let Err(e) = leases.store.release(&session_id, &holder).await {
                tracing::warn!(session_id = &*session_id, error = %e, "could not give a session's lease back; it lapses after its TTL");
            }
        });
    }
}
