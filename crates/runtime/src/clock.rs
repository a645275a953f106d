//! The runtime's monotonic clock: milliseconds since the runtime started, as plain integers
//! that fit in atomics. Uses tokio's clock, so tests can pause and advance time.

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self { epoch: Instant::now() }
    }

    pub(crate) fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.ms(Instant::now())
    }
}
