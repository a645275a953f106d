//! HDR histograms of durations (recorded in nanoseconds), their summaries in the unit a field
//! names (`latency_ms`, `overhead_us`), and a serialised form that runs can be merged from.
//!
//! Histograms grow as values arrive (auto-resizing), so an empty one costs a few kilobytes and
//! one of microsecond turns does not carry the buckets of an hour. A run's histograms keep 3
//! significant figures; the per-interval ones of a time series keep 2 ([`DurationHist::coarse`]).
//!
//! **Serialised form.** Schema 2 writes a histogram as HDR's V2 format, DEFLATE-compressed and
//! base64-encoded (the encoding of HdrHistogram's interval logs, readable by its Java, Go and
//! Python ports): `{unit, significant_figures, encoding: "hdr-v2-deflate-base64", data}`.
//! Schema 1's `counts: [[value, count], …]` still loads.
//!
//! **Memory.** Every histogram alive in the process counts the bytes of its buckets into
//! [`histograms_held_bytes`] (made, widened, cloned, dropped): in process, a soak's heap holds the
//! harness's histograms beside the runtime, and they widen as the run meets slower requests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest recordable value: one hour, in nanoseconds.
const MAX_NS: u64 = 3_600_000_000_000;
const SIGFIG: u8 = 3;
/// Significant figures of a time series' per-interval histograms.
const COARSE_SIGFIG: u8 = 2;
/// The `encoding` of a schema-2 histogram.
pub const HDR_ENCODING: &str = "hdr-v2-deflate-base64";

/// A histogram of durations, in nanoseconds, 3 significant figures.
pub struct DurationHist(Histogram<u64>);

/// The bytes of the buckets of every [`DurationHist`] alive in this process.
static HELD: AtomicI64 = AtomicI64::new(0);

/// The heap bytes the buckets of this process's histograms hold now: the harness's own (a
/// run's recorders, one per worker stripe, and the time series' open intervals). A soak's heap
/// slope less this and the time series' ([`crate::resources::series_held_bytes`]) is what the
/// run under test kept.
pub fn histograms_held_bytes() -> u64 {
    HELD.load(Ordering::Relaxed).max(0) as u64
}

fn bucket_bytes(h: &Histogram<u64>) -> i64 {
    (h.distinct_values() * std::mem::size_of::<u64>()) as i64
}

impl Clone for DurationHist {
    fn clone(&self) -> Self {
        Self::held(self.0.clone())
    }
}

impl Drop for DurationHist {
    fn drop(&mut self) {
        HELD.fetch_sub(bucket_bytes(&self.0), Ordering::Relaxed);
    }
}

impl Default for DurationHist {
    fn default() -> Self {
        Self::with_sigfig(SIGFIG)
    }
}

impl std::fmt::Debug for DurationHist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurationHist")
            .field("count", &self.0.len())
            .field("significant_figures", &self.0.sigfig())
            .finish()
    }
}

impl PartialEq for DurationHist {
    /// Same recorded values and counts (the layout of the buckets may differ).
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .eq(other
                    .0
                    .iter_recorded()
                    .map(|v| (v.value_iterated_to(), v.count_at_value())))
    }
}

impl DurationHist {
    /// Wraps `h`, counting its buckets as held.
    fn held(h: Histogram<u64>) -> Self {
        HELD.fetch_add(bucket_bytes(&h), Ordering::Relaxed);
        Self(h)
    }

    /// Runs `change`, counting the buckets it adds (an auto-resizing histogram widens to take a
    /// larger value than it has room for).
    ///
    /// A widened histogram is copied once into buckets of its new size: hdrhistogram grows its
    /// bucket list with `Vec::resize`, which doubles the list's capacity once it is past its
    /// first size, so a histogram widened by one bucket held about twice the bytes it counted.
    /// A heap profile of a 30-minute soak found exactly that: a one-time step of ~2.3 MB in the
    /// load generator's recorders, which the counted bytes (and so the soak's "net" heap fit)
    /// left in. Widening is rare (a new slowest value past a power of two), the copy is cheap.
    fn widening<R>(&mut self, change: impl FnOnce(&mut Histogram<u64>) -> R) -> R {
        let before = self.0.distinct_values();
        let r = change(&mut self.0);
        let after = self.0.distinct_values();
        if after != before {
            // `Clone` allocates exactly the buckets held.
            self.0 = self.0.clone();
            HELD.fetch_add(
                (after as i64 - before as i64) * std::mem::size_of::<u64>() as i64,
                Ordering::Relaxed,
            );
        }
        r
    }

    fn with_sigfig(sigfig: u8) -> Self {
        // 2 and 3 significant figures are valid for an auto-resizing histogram.
        Self::held(Histogram::new(sigfig).unwrap_or_else(|_| unreachable!("a valid precision")))
    }

    /// A histogram of 2 significant figures: the per-interval histograms of a time series
    /// (charts need the shape, and a 10-minute run keeps hundreds of them).
    pub fn coarse() -> Self {
        Self::with_sigfig(COARSE_SIGFIG)
    }

    pub fn record(&mut self, d: Duration) {
        self.record_ns(d.as_nanos().min(u128::from(MAX_NS)) as u64);
    }

    pub fn record_ns(&mut self, ns: u64) {
        // Clamped to the range, so an auto-resizing histogram always takes it.
        let _ = self.widening(|h| h.record(ns.clamp(1, MAX_NS)));
    }

    pub fn merge(&mut self, other: &DurationHist) {
        // Auto-resizing, and values are clamped to MAX_NS on the way in: adding cannot fail.
        let _ = self.widening(|h| h.add(&other.0));
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

    /// The histogram in the summary's form: HDR V2 + DEFLATE, base64.
    pub fn serialise(&self) -> SerialisedHist {
        SerialisedHist {
            unit: "ns".to_owned(),
            significant_figures: self.0.sigfig(),
            counts: Vec::new(),
            encoding: Some(HDR_ENCODING.to_owned()),
            data: Some(self.encode()),
        }
    }

    /// HDR V2 + DEFLATE, base64: the compact form of the summaries and their time series.
    pub fn encode(&self) -> String {
        Self::text_of(&self.to_bytes())
    }

    /// [`to_bytes`](Self::to_bytes)'s form as [`encode`](Self::encode) writes it (base64).
    pub fn text_of(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// HDR V2 + DEFLATE bytes ([`encode`](Self::encode) before base64).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        // Writing into a Vec fails only on a histogram too large for the format's i32 lengths.
        if V2DeflateSerializer::new().serialize(&self.0, &mut bytes).is_err() {
            bytes.clear();
        }
        bytes
    }

    /// Reads [`encode`](Self::encode)'s form; the error says what is wrong with it.
    pub fn decode(data: &str) -> Result<Self, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("not base64: {e}"))?;
        Self::from_bytes(&bytes)
    }

    /// Reads [`to_bytes`](Self::to_bytes)'s form.
    pub fn from_bytes(mut bytes: &[u8]) -> Result<Self, String> {
        let mut h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes)
            .map_err(|e| format!("not an HDR V2 histogram: {e:?}"))?;
        h.auto(true);
        Ok(Self::held(h))
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

    /// Rebuilds a histogram from its serialised form, either schema's (to merge runs).
    pub fn deserialise(s: &SerialisedHist) -> Result<Self, String> {
        match (s.encoding.as_deref(), &s.data) {
            (Some(HDR_ENCODING), Some(data)) => Self::decode(data),
            (Some(other), _) => Err(format!(
                "unknown histogram encoding `{other}` (expected `{HDR_ENCODING}`)"
            )),
            (None, _) => {
                let mut h = Self::with_sigfig(s.significant_figures.clamp(1, 5));
                for [v, c] in &s.counts {
                    let _ = h.widening(|h| h.record_n((*v).clamp(1, MAX_NS), *c));
                }
                Ok(h)
            }
        }
    }

    /// Each recorded value (ns) with its count, lowest first.
    pub fn recorded(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
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

/// A histogram in JSON. Schema 2: `{unit, significant_figures, encoding, data}`; schema 1:
/// `{unit, significant_figures, counts: [[value, count], ...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SerialisedHist {
    pub unit: String,
    pub significant_figures: u8,
    /// Schema 1's `[value, count]` pairs (empty in schema 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<[u64; 2]>,
    /// `hdr-v2-deflate-base64` (schema 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
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

    /// Each widening copies the histogram into buckets of its new size: nothing recorded before
    /// is lost, and the counted bytes follow the buckets.
    #[test]
    fn widening_keeps_every_count_and_counts_its_buckets() {
        let mut h = DurationHist::default();
        let mut widths = Vec::new();
        // Up to 3 × 2^39 ns (~27 minutes), under the clamp of an hour.
        for shift in 0..40 {
            h.record_ns(1 << shift);
            h.record_ns(3 << shift);
            widths.push(bucket_bytes(&h.0));
        }
        assert_eq!(h.len(), 80);
        assert!(
            widths.windows(2).all(|w| w[0] <= w[1]) && widths[0] < widths[39],
            "{widths:?}"
        );
        assert_eq!(h.quantile_ns(0.0), 1);
        let max = h.quantile_ns(1.0) as f64;
        assert!(close(max, (3u64 << 39) as f64), "{max}");
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
        let back = DurationHist::deserialise(&a.serialise()).unwrap();
        assert_eq!(back, a, "the V2 + DEFLATE round trip keeps every value and count");
        assert_eq!(back.stats(Unit::Us), a.stats(Unit::Us));
        assert_eq!(a.serialise().unit, "ns");
    }

    #[test]
    fn schema_one_counts_still_load_and_bad_data_is_named() {
        let v1 = SerialisedHist {
            unit: "ns".into(),
            significant_figures: 3,
            counts: vec![[1_000, 2], [5_000, 1]],
            encoding: None,
            data: None,
        };
        let h = DurationHist::deserialise(&v1).unwrap();
        let got: Vec<(u64, u64)> = h.recorded().collect();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].1, got[1].1), (2, 1));
        assert!(
            got[0].0.abs_diff(1_000) <= 1 && got[1].0.abs_diff(5_000) <= 5,
            "{got:?}"
        );
        let err = DurationHist::decode("%%%").unwrap_err();
        assert!(err.contains("base64"), "{err}");
        let err = DurationHist::decode("aGVsbG8=").unwrap_err();
        assert!(err.contains("HDR"), "{err}");
        let unknown = SerialisedHist {
            encoding: Some("zstd".into()),
            ..v1
        };
        assert!(DurationHist::deserialise(&unknown).unwrap_err().contains("zstd"));
    }

    #[test]
    fn a_coarse_histogram_is_compact_and_within_one_percent() {
        let mut h = DurationHist::coarse();
        // 2,000 turns of 1 to 200 ms.
        (0..2000u64).for_each(|i| h.record(Duration::from_micros(1_000 + (i * 7919) % 199_000)));
        let p99 = h.quantile_ns(0.99) as f64;
        let mut exact: Vec<u64> = (0..2000u64).map(|i| (1_000 + (i * 7919) % 199_000) * 1000).collect();
        exact.sort_unstable();
        let want = exact[(0.99 * 2000.0) as usize - 1] as f64;
        assert!((p99 - want).abs() / want < 0.01, "{p99} vs {want}");
        let encoded = h.encode();
        assert!(
            encoded.len() < 1500,
            "one interval's histogram stays small: {} bytes",
            encoded.len()
        );
    }
}
