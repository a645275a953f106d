//! [`Progress`]: where a run reports how far it is (a progress bar in the CLI; nothing in tests).
//! A leaf: the load generator and the runs report through it without knowing each other.

/// Where progress goes.
pub trait Progress: Send + Sync {
    fn begin(&self, _label: &str, _total: Option<u64>) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}
