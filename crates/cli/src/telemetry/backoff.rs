//! The span export's back-off after a failed export. While a window runs, the export gate
//! (`queue`) drops finished spans at once, counted as lost to failing exports, instead of queueing
//! them for an exporter that cannot deliver them: with the collector down, the exporting process
//! then holds no full queue and encodes only one probe batch per window; its other spans are
//! made and freed in the turn, as with export off.
//!
//! The first failure opens a window of `first`. Failures within it (the spans queued before it,
//! drained by the exporter) extend it by the same length from their time. The first batch after
//! it is the probe: if that fails too the window doubles, up to `max`; a delivered batch ends
//! the back-off. So after the collector returns, spans flow again within `max` and one batch.
//!
//! One writer (the exporter's thread: `failed`, `succeeded`); readers (`refusing`, on every
//! finished span) pay one atomic load, and a clock read from a failed export until an export
//! delivers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The back-off state, shared by the gate and the exporter.
#[derive(Debug)]
pub struct Backoff {
    epoch: Instant,
    /// Milliseconds after `epoch` (+1) until which spans are refused; 0: no window has run since
    /// the last delivered batch.
    until_ms: AtomicU64,
    /// The current window's length, ms.
    window_ms: AtomicU64,
    first_ms: u64,
    max_ms: u64,
}

impl Backoff {
    /// Windows of `first`, doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        let first_ms = (first.as_millis() as u64).max(1);
        Self {
            epoch: Instant::now(),
            until_ms: AtomicU64::new(0),
            window_ms: AtomicU64::new(0),
            first_ms,
            max_ms: (max.as_millis() as u64).max(first_ms),
        }
    }

    /// Now, in ms after the epoch, never 0 (0 marks "no window").
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Whether a span finishing now is to be dropped rather than queued.
    pub fn refusing(&self) -> bool {
        self.refusing_at(|| self.now_ms())
    }

    fn refusing_at(&self, now: impl FnOnce() -> u64) -> bool {
        let until = self.until_ms.load(Ordering::Relaxed);
        until != 0 && now() < until
    }

    /// An export failed.
    pub fn failed(&self) {
        self.failed_at(self.now_ms());
    }

    /// An export delivered its batch: the back-off ends.
    pub fn succeeded(&self) {
        self.until_ms.store(0, Ordering::Relaxed);
        self.window_ms.store(0, Ordering::Relaxed);
    }

    fn failed_at(&self, now: u64) {
        let until = self.until_ms.load(Ordering::Relaxed);
        let window = self.window_ms.load(Ordering::Relaxed);
        let window = if until == 0 {
            self.first_ms
        } else if now >= until {
            // The probe after a window failed.
            (window * 2).min(self.max_ms)
        } else {
            // Spans queued before the window, failing as they drain.
            window
        };
        self.window_ms.store(window, Ordering::Relaxed);
        self.until_ms.store(now + window, Ordering::Relaxed);
    }

    /// The window now in force, if one is: how long spans are refused after the last failure.
    #[cfg(test)]
    fn window(&self) -> Option<u64> {
        (self.until_ms.load(Ordering::Relaxed) != 0).then(|| self.window_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff::new(Duration::from_millis(1000), Duration::from_millis(8000))
    }

    #[test]
    fn nothing_is_refused_until_an_export_fails() {
        let b = backoff();
        assert!(!b.refusing() && !b.refusing_at(|| u64::MAX - 1));
        assert_eq!(b.window(), None);
    }

    #[test]
    fn a_failure_refuses_for_the_first_window_then_lets_a_probe_through() {
        let b = backoff();
        b.failed_at(100);
        assert!(b.refusing_at(|| 100) && b.refusing_at(|| 1099));
        assert!(!b.refusing_at(|| 1100), "the window ends: the next spans are the probe");
        assert_eq!(b.window(), Some(1000));
    }

    #[test]
    fn failures_while_the_queue_drains_extend_the_window_without_doubling_it() {
        let b = backoff();
        b.failed_at(100);
        b.failed_at(150);
        b.failed_at(200);
        assert_eq!(b.window(), Some(1000));
        assert!(b.refusing_at(|| 1199) && !b.refusing_at(|| 1200));
    }

    #[test]
    fn a_failed_probe_doubles_the_window_up_to_the_bound() {
        let b = backoff();
        let mut now = 100;
        let mut windows = Vec::new();
        for _ in 0..6 {
            b.failed_at(now);
            let w = b.window().unwrap();
            windows.push(w);
            now += w; // the probe goes out as the window ends, and fails
        }
        assert_eq!(windows, [1000, 2000, 4000, 8000, 8000, 8000]);
    }

    #[test]
    fn a_delivered_batch_ends_the_back_off_and_the_next_failure_starts_small() {
        let b = backoff();
        b.failed_at(100);
        b.failed_at(1100);
        assert_eq!(b.window(), Some(2000));
        b.succeeded();
        assert_eq!(b.window(), None);
        assert!(!b.refusing_at(|| 1200));
        b.failed_at(5000);
        assert_eq!(b.window(), Some(1000));
    }
}
