//! Per-tenant rate limits (token buckets, soft and hard) and the instance's admission queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::RateLimit;

/// What the limiter says about one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateDecision {
    Allow,
    /// Above the soft limit: served, but flagged.
    AllowOverSoft,
    /// Above the hard limit: refuse; a token is due in this many seconds.
    Deny {
        retry_after_s: f64,
    },
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    rate: f64,
    capacity: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, capacity: f64, now: Instant) -> Self {
        Self {
            tokens: capacity,
            rate,
            capacity,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.at = now;
    }
}

/// A tenant's two buckets. One small lock per tenant, never a global one.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: Mutex<(Bucket, Bucket)>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        let now = Instant::now();
        Self {
            // The soft bucket's burst is in proportion, so that bursts cross the soft limit first.
            buckets: Mutex::new((
                Bucket::new(
                    limit.soft_rps,
                    (limit.burst * limit.soft_rps / limit.hard_rps).max(1.0),
                    now,
                ),
                Bucket::new(limit.hard_rps, limit.burst, now),
            )),
        }
    }

    pub fn check(&self, now: Instant) -> RateDecision {
        let mut b = self.buckets.lock();
        let (soft, hard) = &mut *b;
        hard.refill(now);
        soft.refill(now);
        if hard.tokens < 1.0 {
            return RateDecision::Deny {
                retry_after_s: (1.0 - hard.tokens) / hard.rate,
            };
        }
        hard.tokens -= 1.0;
        if soft.tokens < 1.0 {
            return RateDecision::AllowOverSoft;
        }
        soft.tokens -= 1.0;
        RateDecision::Allow
    }
}

/// Bounded admission: `max_in_flight` turns run, up to `queue` wait, the rest are refused at once.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    max_in_flight: usize,
}

/// A running turn's slot; dropping it lets the next one in.
pub struct Admitted(#[allow(dead_code)] OwnedSemaphorePermit);

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    pub fn new(max_in_flight: usize, queue: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_in_flight)),
            waiting: AtomicUsize::new(0),
            queue,
            max_in_flight,
        }
    }

    /// A slot, after waiting in the queue if need be; `None` when the queue is full.
    pub async fn enter(&self) -> Option<Admitted> {
        if let Ok(p) = Arc::clone(&self.slots).try_acquire_owned() {
            return Some(Admitted(p));
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let _waiting = Waiting(&self.waiting);
        Arc::clone(&self.slots).acquire_owned().await.ok().map(Admitted)
    }

    /// Turns waiting for a slot.
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Turns running now.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.slots.available_permits()
    }
}
