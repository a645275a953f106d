//! [`Progress`]: where a run reports how far it is (a progress bar in the CLI; nothing in tests).
//! A leaf: the load generator and the runs report through it without knowing each other.

/// Where progress goes.
pub trait Progress: Send + Sync {
    fn begin(&self, _label: &str, _total: Option<u64>) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
    /// The figures of the last complete interval of the time series, once per interval.
    fn recent(&self, _r: &Recent) {}
}

/// What the last complete interval saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recent {
    pub requests_per_s: f64,
    pub p99_ms: Option<f64>,
    pub errors: u64,
    pub in_flight: u64,
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}
