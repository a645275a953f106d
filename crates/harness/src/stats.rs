//! HDR histograms of durations (recorded in nanoseconds), their summaries in the unit a field
//! names (`latency_ms`, `overhead_us`), and a serialised form that runs can be merged from.

use std::collections::BTreeMap;
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

    /// The non-empty histograms among `named`, serialised under their names (a summary's
    /// `histograms`).
    pub fn serialise_named<'a>(
        named: impl IntoIterator<Item = (&'a str, &'a DurationHist)>,
    ) -> BTreeMap<String, SerialisedHist> {
        named
            .into_iter()
            .filter(|(_, h)| !h.is_empty())
            .map(|(name, h)| (name.to_owned(), h.serialise()))
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 1..=1000 µs, one of each.
    fn uniform() -> DurationHist {
        let mut h = DurationHist::default();
        (1..=1000u64).for_each(|us| h.record(Duration::from_micros(us)));
        h
    }

    /// Within HDR's 3 significant figures.
    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() <= want * 1e-3 + 1e-9
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let s = uniform().stats(Unit::Us);
        assert_eq!(s.count, 1000);
        for (got, want) in [
            (s.p50, 500.0),
            (s.p90, 900.0),
            (s.p95, 950.0),
            (s.p99, 990.0),
            (s.min, 1.0),
        ] {
            assert!(close(got, want), "{got} vs {want}");
        }
        assert!(close(s.max, 1000.0), "{}", s.max);
        assert!(close(s.mean, 500.5), "{}", s.mean);
        // Standard deviation of 1..=1000: sqrt((n²−1)/12).
        assert!(close(s.std, ((1000.0f64 * 1000.0 - 1.0) / 12.0).sqrt()), "{}", s.std);
        let ms = uniform().stats(Unit::Ms);
        assert!(close(ms.p50, 0.5), "the unit divides: {}", ms.p50);
    }

    #[test]
    fn empty_is_all_zero_and_extremes_are_clamped() {
        assert_eq!(DurationHist::default().stats(Unit::Ms), Stats::default());
        let mut h = DurationHist::default();
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(7200));
        assert_eq!(h.len(), 2);
        assert_eq!(h.quantile_ns(0.0), 1, "zero is recorded as the lowest value");
        assert!(
            close(h.quantile_ns(1.0) as f64, MAX_NS as f64),
            "beyond an hour is clamped"
        );
    }

    #[test]
    fn merging_and_a_serialised_round_trip_keep_every_count() {
        let mut a = DurationHist::default();
        let mut b = DurationHist::default();
        (1..=500u64).for_each(|us| a.record(Duration::from_micros(us)));
        (501..=1000u64).for_each(|us| b.record(Duration::from_micros(us)));
        a.merge(&b);
        assert_eq!(a.stats(Unit::Us), uniform().stats(Unit::Us));
        let back = DurationHist::deserialise(&a.serialise());
        assert_eq!(back.stats(Unit::Us), a.stats(Unit::Us));
        assert_eq!(a.serialise().unit, "ns");
    }
}
