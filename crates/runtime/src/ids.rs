//! Cheap unique ids: a per-process random prefix and a counter, no syscall per id.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub(crate) struct IdGen {
    prefix: u32,
    next: AtomicU64,
}

impl IdGen {
    pub(crate) fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mixed = crate::model::sim::splitmix64(nanos ^ (u64::from(std::process::id()) << 32));
        Self {
            prefix: mixed as u32,
            next: AtomicU64::new(1),
        }
    }

    /// `kind-<prefix>-<n>`, e.g. `agent-9f2c01aa-1`.
    pub(crate) fn next(&self, kind: &str) -> Arc<str> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Arc::from(format!("{kind}-{:08x}-{n:x}", self.prefix))
    }
}
