//! `async` durability for any store: writes go through a bounded queue to one background task
//! that applies them in order; the caller goes on at once. The queue's bound is backpressure: a
//! writer waits when it is full, memory never grows without bound. `flush` waits until everything
//! queued so far is written. A read of one session waits only if that session has writes queued
//! (counted per session); reads across sessions wait for the whole queue. Either way a read sees
//! every earlier write. Failed background writes are logged and counted
//! ([`BackgroundWrites::failed_writes`]).
//!
//! A sequence conflict cannot be reported to the writer in this mode (it happens later): per
//! session order comes from the runtime's per-session turn lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot};

use crate::record::{
    Durability, EventPage, HistoryWindow, Page, PageRequest, SessionFilter, SessionRecord, SessionState, StoreInfo,
};
use crate::{SessionEvent, SessionStore, StoreError};

enum Write {
    Put(SessionRecord),
    Append(String, Vec<Arc<SessionEvent>>),
    Flush(oneshot::Sender<()>),
}

/// Wraps a store so that its appends and record writes happen in the background.
pub struct BackgroundWrites {
    inner: Arc<dyn SessionStore>,
    queue: mpsc::Sender<Write>,
    queued: Arc<AtomicU64>,
    /// Writes queued per session; an entry is removed when its count drops to zero.
    pending: Arc<DashMap<String, u64>>,
    failed: Arc<AtomicU64>,
}

/// Writes taken from the queue at once.
const BATCH: usize = 512;

fn session_of(w: &Write) -> &str {
    match w {
        Write::Put(r) => &r.session_id,
        Write::Append(id, _) => id,
        Write::Flush(_) => "",
    }
}

/// Applies a batch: each session's writes in order, different sessions concurrently (so a store
/// that batches, like SQLite's writer, commits them together).
async fn apply_all(
    store: &Arc<dyn SessionStore>,
    writes: Vec<Write>,
    pending: &DashMap<String, u64>,
    queued: &AtomicU64,
    failed: &AtomicU64,
) {
    if writes.is_empty() {
        return;
    }
    let mut by_session: Vec<(String, Vec<Write>)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for w in writes {
        let id = session_of(&w).to_owned();
        match index.get(&id) {
            Some(&i) => by_session[i].1.push(w),
            None => {
                index.insert(id.clone(), by_session.len());
                by_session.push((id, vec![w]));
            }
        }
    }
    let chains = by_session.into_iter().map(|(id, writes)| async move {
        for w in writes {
            let result = match w {
                Write::Put(r) => store.put_session(r).await,
                Write::Append(id, events) => store.append_events(&id, &events).await,
                Write::Flush(_) => Ok(()),
            };
            done_one(pending, &id);
            queued.fetch_sub(1, Ordering::AcqRel);
            if let Err(e) = result {
                failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(session_id = %id, error = %e, "background session write failed");
            }
        }
    });
    futures::future::join_all(chains).await;
}

fn done_one(pending: &DashMap<String, u64>, session_id: &str) {
    if let Some(mut n) = pending.get_mut(session_id) {
        *n -= 1;
    }
    pending.remove_if(session_id, |_, n| *n == 0);
}

impl BackgroundWrites {
    /// `capacity`: writes that may wait in the queue before writers are made to wait.
    pub fn new(inner: Arc<dyn SessionStore>, capacity: usize) -> Self {
        let (queue, mut rx) = mpsc::channel::<Write>(capacity.max(1));
        let queued = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let pending: Arc<DashMap<String, u64>> = Arc::new(DashMap::new());
        let (store, q, f, p) = (
            Arc::clone(&inner),
            Arc::clone(&queued),
            Arc::clone(&failed),
            Arc::clone(&pending),
        );
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                // Writes before a flush are applied before the flush is answered.
                let mut writes = Vec::with_capacity(batch.len());
                for w in batch.drain(..) {
                    match w {
                        Write::Flush(done) => {
                            apply_all(&store, std::mem::take(&mut writes), &p, &q, &f).await;
                            let _ = done.send(());
                        }
                        w => writes.push(w),
                    }
                }
                apply_all(&store, writes, &p, &q, &f).await;
            }
        });
        Self {
            inner,
            queue,
            queued,
            pending,
            failed,
        }
    }

    /// Writes waiting in the queue now (a gauge).
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Acquire)
    }

    /// Background writes that failed since start.
    pub fn failed_writes(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    async fn enqueue(&self, session_id: &str, w: Write) -> Result<(), StoreError> {
        self.queued.fetch_add(1, Ordering::AcqRel);
        *self.pending.entry(session_id.to_owned()).or_insert(0) += 1;
        self.queue.send(w).await.map_err(|_| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            done_one(&self.pending, session_id);
            StoreError::Backend("the background writer has stopped".into())
        })
    }

    /// Waits for every queued write.
    async fn settle(&self) -> Result<(), StoreError> {
        if self.queued() > 0 {
            self.flush().await?;
        }
        Ok(())
    }

    /// Waits for queued writes only when `session_id` has some.
    async fn settle_session(&self, session_id: &str) -> Result<(), StoreError> {
        if self.pending.contains_key(session_id) {
            self.flush().await?;
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for BackgroundWrites {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            durability: Durability::Async,
            ..self.inner.info()
        }
    }

    /// The inner store's leases. A holder must flush before it releases one (the runtime does), or
    /// the next holder could read the session before its queued writes land.
    fn leases(&self) -> Option<Arc<dyn crate::SessionLeases>> {
        self.inner.leases()
    }

    async fn put_session(&self, record: SessionRecord) -> Result<(), StoreError> {
        let id = record.session_id.clone();
        self.enqueue(&id, Write::Put(record)).await
    }

    async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.settle_session(session_id).await?;
        self.inner.get_session(session_id).await
    }

    async fn append_events(&self, session_id: &str, events: &[Arc<SessionEvent>]) -> Result<(), StoreError> {
        self.enqueue(session_id, Write::Append(session_id.to_owned(), events.to_vec()))
            .await
    }

    async fn load_window(&self, session_id: &str, max_events: usize) -> Result<HistoryWindow, StoreError> {
        self.settle_session(session_id).await?;
        self.inner.load_window(session_id, max_events).await
    }

    async fn events_page(
        &self,
        session_id: &str,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        self.settle_session(session_id).await?;
        self.inner.events_page(session_id, after_seq, limit).await
    }

    async fn list_sessions(&self, filter: &SessionFilter, page: &PageRequest) -> Result<Page, StoreError> {
        self.settle().await?;
        self.inner.list_sessions(filter, page).await
    }

    async fn set_state(&self, session_id: &str, state: SessionState) -> Result<bool, StoreError> {
        self.settle_session(session_id).await?;
        self.inner.set_state(session_id, state).await
    }

    async fn archive_sessions(&self, session_ids: &[Arc<str>]) -> Result<u64, StoreError> {
        // One wait for the whole queue, not one per session: the batch then commits together.
        self.settle().await?;
        self.inner.archive_sessions(session_ids).await
    }

    async fn delete_session(&self, session_id: &str) -> Result<bool, StoreError> {
        self.settle_session(session_id).await?;
        self.inner.delete_session(session_id).await
    }

    async fn purge_archived(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.settle().await?;
        self.inner.purge_archived(cutoff).await
    }

    async fn session_count(&self) -> Result<u64, StoreError> {
        self.settle().await?;
        self.inner.session_count().await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.queue
            .send(Write::Flush(done))
            .await
            .map_err(|_| StoreError::Backend("the background writer has stopped".into()))?;
        wait.await
            .map_err(|_| StoreError::Backend("the background writer stopped while flushing".into()))?;
        self.inner.flush().await
    }
}
