//! Process-wide counters of the HTTP model providers' resilience: attempts retried and the time
//! spent waiting between attempts, the calls that needed a retry and how long they took in all,
//! and the circuit breaker's openings, closings and refusals. Counted where they happen
//! (`http.rs`), by every endpoint of the process; read as a [`Snapshot`], and over a run as the
//! difference of two ([`Snapshot::since`]): `aether perf` puts it in its summary, `aether serve`
//! in `/metrics`. Relaxed atomic adds: nothing waits on them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

struct Counters {
    calls: AtomicU64,
    retries: AtomicU64,
    retry_wait_us: AtomicU64,
    retried_calls: AtomicU64,
    retried_call_us: AtomicU64,
    breaker_opened: AtomicU64,
    breaker_closed: AtomicU64,
    refused_while_open: AtomicU64,
}

static COUNTERS: Counters = Counters {
    calls: AtomicU64::new(0),
    retries: AtomicU64::new(0),
    retry_wait_us: AtomicU64::new(0),
    retried_calls: AtomicU64::new(0),
    retried_call_us: AtomicU64::new(0),
    breaker_opened: AtomicU64::new(0),
    breaker_closed: AtomicU64::new(0),
    refused_while_open: AtomicU64::new(0),
};

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn call() {
    add(&COUNTERS.calls, 1);
}

/// An attempt failed and another follows after `wait`.
pub(crate) fn retry(wait: Duration) {
    add(&COUNTERS.retries, 1);
    add(&COUNTERS.retry_wait_us, wait.as_micros() as u64);
}

/// A call that needed a retry ended (answered or failed) after `took`, retries included.
pub(crate) fn retried_call(took: Duration) {
    add(&COUNTERS.retried_calls, 1);
    add(&COUNTERS.retried_call_us, took.as_micros() as u64);
}

pub(crate) fn breaker_opened() {
    add(&COUNTERS.breaker_opened, 1);
}

pub(crate) fn breaker_closed() {
    add(&COUNTERS.breaker_closed, 1);
}

pub(crate) fn refused_while_open() {
    add(&COUNTERS.refused_while_open, 1);
}

/// The counters at one moment, since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub calls: u64,
    pub retries: u64,
    pub retry_wait_us: u64,
    pub retried_calls: u64,
    pub retried_call_us: u64,
    pub breaker_opened: u64,
    pub breaker_closed: u64,
    pub refused_while_open: u64,
}

/// The counters now.
pub fn snapshot() -> Snapshot {
    let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
    Snapshot {
        calls: r(&COUNTERS.calls),
        retries: r(&COUNTERS.retries),
        retry_wait_us: r(&COUNTERS.retry_wait_us),
        retried_calls: r(&COUNTERS.retried_calls),
        retried_call_us: r(&COUNTERS.retried_call_us),
        breaker_opened: r(&COUNTERS.breaker_opened),
        breaker_closed: r(&COUNTERS.breaker_closed),
        refused_while_open: r(&COUNTERS.refused_while_open),
    }
}

/// What the model endpoints went through over a run: the retries (bounded by `max_retries` per
/// call) and their cost, apart from the latencies they are also part of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ResilienceSummary {
    /// Calls made to the endpoints (each with its retries).
    pub calls: u64,
    /// Attempts retried (429, 5xx, a connection that failed or dropped before the answer).
    pub retries: u64,
    /// Time spent waiting between attempts (backoff, or the server's Retry-After).
    pub retry_wait_ms: f64,
    /// Calls that needed at least one retry, and their mean duration, retries included.
    pub retried_calls: u64,
    pub retried_call_mean_ms: f64,
    /// The circuit breaker opened (too many failed calls in a row), closed again (a trial call
    /// succeeded), and calls it refused while open.
    pub breaker_opened: u64,
    pub breaker_closed: u64,
    pub refused_while_open: u64,
}

impl ResilienceSummary {
    /// Two runs' figures as one (workers of a distributed run): counts added, the mean weighted
    /// by retried calls.
    pub fn combined(self, b: Self) -> Self {
        let retried_calls = self.retried_calls + b.retried_calls;
        let weighted =
            self.retried_call_mean_ms * self.retried_calls as f64 + b.retried_call_mean_ms * b.retried_calls as f64;
        Self {
            calls: self.calls + b.calls,
            retries: self.retries + b.retries,
            retry_wait_ms: self.retry_wait_ms + b.retry_wait_ms,
            retried_calls,
            retried_call_mean_ms: if retried_calls == 0 {
                0.0
            } else {
                weighted / retried_calls as f64
            },
            breaker_opened: self.breaker_opened + b.breaker_opened,
            breaker_closed: self.breaker_closed + b.breaker_closed,
            refused_while_open: self.refused_while_open + b.refused_while_open,
        }
    }
}

impl Snapshot {
    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &Snapshot) -> ResilienceSummary {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let retried_calls = d(self.retried_calls, earlier.retried_calls);
        let retried_us = d(self.retried_call_us, earlier.retried_call_us);
        ResilienceSummary {
            calls: d(self.calls, earlier.calls),
            retries: d(self.retries, earlier.retries),
            retry_wait_ms: d(self.retry_wait_us, earlier.retry_wait_us) as f64 / 1e3,
            retried_calls,
            retried_call_mean_ms: if retried_calls == 0 {
                0.0
            } else {
                retried_us as f64 / 1e3 / retried_calls as f64
            },
            breaker_opened: d(self.breaker_opened, earlier.breaker_opened),
            breaker_closed: d(self.breaker_closed, earlier.breaker_closed),
            refused_while_open: d(self.refused_while_open, earlier.refused_while_open),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_sees_only_its_own_counts_and_a_mean_per_retried_call() {
        let before = Snapshot {
            retried_calls: 3,
            retried_call_us: 9_000,
            ..Snapshot::default()
        };
        let after = Snapshot {
            calls: 10,
            retries: 4,
            retry_wait_us: 2_500,
            retried_calls: 5,
            retried_call_us: 19_000,
            breaker_opened: 1,
            breaker_closed: 1,
            refused_while_open: 2,
        };
        let s = after.since(&before);
        assert_eq!((s.calls, s.retries, s.retried_calls), (10, 4, 2));
        assert_eq!(s.retry_wait_ms, 2.5);
        assert_eq!(s.retried_call_mean_ms, 5.0);
        assert_eq!((s.breaker_opened, s.breaker_closed, s.refused_while_open), (1, 1, 2));
        assert_eq!(before.since(&before).retried_call_mean_ms, 0.0);
        let both = s.combined(ResilienceSummary {
            retried_calls: 2,
            retried_call_mean_ms: 10.0,
            ..ResilienceSummary::default()
        });
        assert_eq!((both.retried_calls, both.retried_call_mean_ms), (4, 7.5));
    }
}
