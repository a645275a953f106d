//! [`Breaker`]: an endpoint's circuit breaker, pure logic on atomics (no lock, no I/O): after
//! `threshold` failed calls in a row it fails fast for `cooldown`, then lets one call try.
//! Opening and closing are counted (`crate::resilience`); the clock is passed in, so the unit
//! tests below drive it without waiting.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Fails fast after repeated failures: `threshold` failures in a row open it for `cooldown`;
/// then one call may try (half-open): a success closes it, a failure opens it again at once.
pub(super) struct Breaker {
    failures: AtomicU32,
    open_until_ms: AtomicU64,
    epoch: Instant,
    threshold: u32,
    cooldown_ms: u64,
}

impl Breaker {
    pub(super) fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            threshold: threshold.max(1),
            cooldown_ms: cooldown.as_millis() as u64,
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Failed calls since the last success.
    pub(super) fn failures_in_a_row(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// `Err(ms)` while open: the milliseconds until a call may try again.
    pub(super) fn check_at(&self, now_ms: u64) -> Result<(), u64> {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if now_ms < until {
            return Err(until - now_ms);
        }
        Ok(())
    }

    /// Counts a call's outcome; returns the failures in a row when this one opened the breaker.
    pub(super) fn record_at(&self, ok: bool, now_ms: u64) -> Option<u32> {
        if ok {
            self.failures.store(0, Ordering::Release);
            // Closed again: a trial call after the cooldown succeeded.
            if self.open_until_ms.swap(0, Ordering::AcqRel) != 0 {
                crate::resilience::breaker_closed();
            }
            return None;
        }
        let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n < self.threshold {
            return None;
        }
        let was = self.open_until_ms.swap(now_ms + self.cooldown_ms, Ordering::AcqRel);
        // Opened: from closed, or again from half-open (not while it is still open).
        if was <= now_ms {
            crate::resilience::breaker_opened();
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_the_threshold_and_half_opens_after_the_cooldown() {
        let b = Breaker::new(3, Duration::from_millis(1000));
        assert_eq!(b.record_at(false, 0), None);
        assert_eq!(b.record_at(false, 10), None);
        assert_eq!(b.check_at(10), Ok(()), "two failures: still closed");
        assert_eq!(b.record_at(false, 20), Some(3), "the third opens it");
        assert_eq!(b.check_at(520), Err(500));
        assert_eq!(b.check_at(1020), Ok(()), "cooldown over: one call may try");
        // Half-open: one more failure opens it again at once.
        assert_eq!(b.record_at(false, 1020), Some(4));
        assert_eq!(b.check_at(1021), Err(999));
        // A success closes it: the count starts again.
        assert_eq!(b.record_at(true, 2100), None);
        assert_eq!(b.record_at(false, 2100), None);
        assert_eq!(b.check_at(2100), Ok(()));
    }

    #[test]
    fn a_success_between_failures_keeps_it_closed() {
        let b = Breaker::new(2, Duration::from_secs(30));
        for t in 0..10 {
            b.record_at(false, t);
            b.record_at(true, t);
        }
        assert_eq!(b.check_at(10), Ok(()));
    }
}
