//! HDR histograms of durations (recorded in nanoseconds), their summaries in the unit a field
//! names (`latency_ms`, `overhead_us`), and a serialised form that runs can be merged from.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest recordable value: one hour, in nanoseconds.
const MAX_NS: u64 = 3_600_000_000_000;
const SIGFIG: u8 = 3;

/// A histogram of durations, in nanoseconds, 3 significant figures.
#[derive(Clone)]
pub struct DurationHist(Histogram<u64>);

impl Default for DurationHist {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, MAX_NS, SIGFIG).unwrap_or_else(|_| unreachable!("static bounds are valid")))
    }
}

impl DurationHist {
    pub fn record(&mut self, d: Duration) {
        self.record_ns(d.as_nanos().min(u128::from(MAX_NS)) as u64);
    }

    pub fn record_ns(&mut self, ns: u64) {
        self.0.saturating_record(ns.clamp(1, MAX_NS));
    }

    pub fn merge(&mut self, other: &DurationHist) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Value at quantile `q` (0..=1), in nanoseconds.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        self.0.value_at_quantile(q)
    }

    /// The summary in `unit`.
    pub fn stats(&self, unit: Unit) -> Stats {
        let d = unit.divisor();
        if self.0.is_empty() {
            return Stats::default();
        }
        let q = |x: f64| self.0.value_at_quantile(x) as f64 / d;
        Stats {
            count: self.0.len(),
            mean: self.0.mean() / d,
            min: self.0.min() as f64 / d,
            max: self.0.max() as f64 / d,
            p50: q(0.50),
            p90: q(0.90),
            p95: q(0.95),
            p99: q(0.99),
            std: self.0.stdev() / d,
        }
    }

    /// The histogram as `[value_ns, count]` pairs.
    pub fn serialise(&self) -> SerialisedHist {
        let counts = self
            .0
            .iter_recorded()
            .map(|v| [v.value_iterated_to(), v.count_at_value()])
            .collect();
        SerialisedHist {
            unit: "ns".to_owned(),
            significant_figures: SIGFIG,
            counts,
        }
    }

    /// Rebuilds a histogram from its serialised form (to merge runs).
    pub fn deserialise(s: &SerialisedHist) -> Self {
        let mut h = Self::default();
        for [v, c] in &s.counts {
            let _ = h.0.record_n((*v).clamp(1, MAX_NS), *c);
        }
        h
    }
}

/// Unit of a summary.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    Ms,
    Us,
}

impl Unit {
    fn divisor(self) -> f64 {
        match self {
            Unit::Ms => 1_000_000.0,
            Unit::Us => 1_000.0,
        }
    }
}

/// `{count, mean, min, max, p50, p90, p95, p99, std}` in the unit the field's name gives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub count: u64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub std: f64,
}

/// A histogram in JSON: `{unit, significant_figures, counts: [[value, count], ...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SerialisedHist {
    pub unit: String,
    pub significant_figures: u8,
    pub counts: Vec<[u64; 2]>,
}
