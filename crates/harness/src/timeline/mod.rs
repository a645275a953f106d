//! The time series of a run: what happened in each interval (1 s by default).
//!
//! **Alignment.** An interval is `[k·Δ, (k+1)·Δ)` in UTC (Unix time), so runs from several machines
//! line up interval by interval and `perf merge` adds them row by row. A request counts in the
//! interval in which it completed (as k6 and Locust count).
//!
//! **What a row holds.** Requests, successes and failures, failures by error code, and HDR
//! histograms (2 significant figures) of latency, and for live turns of time to first chunk
//! (`ttft`) and the gaps between chunks (`itl`); from the sampler, the requests in flight at the
//! interval's end, the harness process's RSS and CPU %, and, when the target is a server that
//! lets the harness read its stats, the server's.
//!
//! **How it is recorded without a global lock.** A worker records into its stripe's open
//! intervals ([`Intervals`]); when its stripe moves on to a newer interval, the older ones go to
//! the shared [`Series`] (once per stripe per interval). The series keeps intervals older than
//! the last two compressed (HDR V2 + DEFLATE), so memory stays flat over a long soak; a late
//! piece of a compressed interval is added exactly (decoded, merged, compressed again).
//!
//! **What it holds is counted**, so that a soak can tell the harness's growth from the run's
//! ([`crate::resources::series_held_bytes`]): the rows' buffers to the byte (`rows`: one slot
//! per interval, side by side) and each compressed interval's bytes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::stats::{DurationHist, HDR_ENCODING};
use rows::Rows;

mod rows;
mod sampler;
pub use sampler::Sampler;

/// The most distinct error codes a row (and a run's breakdown) keeps; the rest count under
/// [`OTHER_CODE`].
pub const MAX_CODES: usize = 32;
pub const OTHER_CODE: &str = "other";

/// The entry of `key` in a map of at most `cap` keys (the rest share [`OTHER_CODE`]); the key
/// is copied only when it is new.
pub fn bounded_entry<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str, cap: usize) -> &'m mut V {
    let key = if map.contains_key(key) || map.len() < cap {
        key
    } else {
        OTHER_CODE
    };
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).unwrap_or_else(|| unreachable!("inserted above"))
}

/// Adds `n` under `code` in a map of at most [`MAX_CODES`] codes.
pub fn count_code(map: &mut BTreeMap<String, u64>, code: &str, n: u64) {
    *bounded_entry(map, code, MAX_CODES) += n;
}

/// Maps the run's monotonic clock onto UTC interval numbers.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    start_unix_ns: u64,
    interval_ns: u64,
}

impl Clock {
    /// A clock whose `Instant::now()` is `Utc::now()`, cutting time into `interval`s.
    pub fn start(interval: Duration) -> Self {
        let now = Utc::now();
        Self {
            start: Instant::now(),
            start_unix_ns: now.timestamp_nanos_opt().unwrap_or(0).max(0) as u64,
            interval_ns: (interval.as_nanos() as u64).max(1_000_000),
        }
    }

    /// The number of the interval `t` falls in (Unix time / interval).
    pub fn bucket(&self, t: Instant) -> u64 {
        (self.start_unix_ns + t.saturating_duration_since(self.start).as_nanos() as u64) / self.interval_ns
    }

    /// The UTC time of `t`.
    pub fn utc(&self, t: Instant) -> DateTime<Utc> {
        let ns = self.start_unix_ns + t.saturating_duration_since(self.start).as_nanos() as u64;
        DateTime::from_timestamp_nanos(ns as i64)
    }

    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns)
    }

    /// The monotonic instant at which interval `bucket + 1` begins.
    fn end_of(&self, bucket: u64) -> Instant {
        let end_ns = (bucket + 1) * self.interval_ns;
        self.start + Duration::from_nanos(end_ns.saturating_sub(self.start_unix_ns))
    }

    fn start_s(&self, bucket: u64) -> f64 {
        (bucket * self.interval_ns) as f64 / 1e9
    }
}

/// A histogram that is empty, being recorded into, or compressed. Empty costs nothing (an
/// interval without live turns has no `ttft` or `itl`; an allocated empty HDR there was 4 KB a
/// second, most of a soak's growth), and both others are boxed, so a sealed interval holds its
/// compressed bytes and little else.
#[derive(Clone, Default)]
enum Hist {
    #[default]
    Empty,
    Live(Box<DurationHist>),
    Sealed(Box<[u8]>),
}

impl Hist {
    fn live(&mut self) -> &mut DurationHist {
        match self {
            Hist::Empty => *self = Hist::Live(Box::new(DurationHist::coarse())),
            Hist::Sealed(data) => {
                let h = DurationHist::from_bytes(data).unwrap_or_else(|_| DurationHist::coarse());
                *self = Hist::Live(Box::new(h));
            }
            Hist::Live(_) => {}
        }
        match self {
            Hist::Live(h) => h,
            Hist::Empty | Hist::Sealed(_) => unreachable!("made live above"),
        }
    }

    fn merge(&mut self, other: &Hist) {
        match other {
            Hist::Empty => {}
            Hist::Live(h) if h.is_empty() => {}
            Hist::Live(h) => self.live().merge(h),
            Hist::Sealed(data) => {
                if let Ok(h) = DurationHist::from_bytes(data) {
                    self.live().merge(&h);
                }
            }
        }
    }

    fn seal(&mut self) {
        if let Hist::Live(h) = self {
            *self = if h.is_empty() {
                Hist::Empty
            } else {
                Hist::Sealed(h.to_bytes().into_boxed_slice())
            };
        }
    }

    /// Heap bytes a sealed histogram holds (a live one is one of the newest intervals' and
    /// is not counted).
    fn held(&self) -> usize {
        match self {
            Hist::Sealed(data) => data.len(),
            Hist::Empty | Hist::Live(_) => 0,
        }
    }

    fn encoded(&self) -> Option<String> {
        match self {
            Hist::Empty => None,
            Hist::Live(h) if h.is_empty() => None,
            Hist::Live(h) => Some(h.encode()),
            Hist::Sealed(data) => Some(DurationHist::text_of(data)),
        }
    }

    fn quantile_ms(&self, q: f64) -> Option<f64> {
        match self {
            Hist::Empty => None,
            Hist::Live(h) if h.is_empty() => None,
            Hist::Live(h) => Some(h.quantile_ns(q) as f64 / 1e6),
            Hist::Sealed(d) => DurationHist::from_bytes(d).ok().map(|h| h.quantile_ns(q) as f64 / 1e6),
        }
    }

    #[cfg(test)]
    fn count(&self) -> u64 {
        match self {
            Hist::Empty => 0,
            Hist::Live(h) => h.len(),
            Hist::Sealed(data) => DurationHist::from_bytes(data).map_or(0, |h| h.len()),
        }
    }
}

/// What one interval recorded from the requests that completed in it.
#[derive(Clone, Default)]
pub struct IntervalRec {
    pub succeeded: u64,
    pub failed: u64,
    errors: BTreeMap<String, u64>,
    latency: Hist,
    ttft: Hist,
    itl: Hist,
}

impl IntervalRec {
    pub fn success(&mut self, latency: Duration) {
        self.succeeded += 1;
        self.latency.live().record(latency);
    }

    pub fn failure(&mut self, code: &str, latency: Duration) {
        self.failed += 1;
        count_code(&mut self.errors, code, 1);
        self.latency.live().record(latency);
    }

    pub fn stream(&mut self, ttft: Duration, gaps: &[Duration]) {
        self.ttft.live().record(ttft);
        if !gaps.is_empty() {
            let itl = self.itl.live();
            gaps.iter().for_each(|g| itl.record(*g));
        }
    }

    fn merge(&mut self, o: &IntervalRec) {
        self.succeeded += o.succeeded;
        self.failed += o.failed;
        for (code, n) in &o.errors {
            count_code(&mut self.errors, code, *n);
        }
        self.latency.merge(&o.latency);
        self.ttft.merge(&o.ttft);
        self.itl.merge(&o.itl);
    }

    fn seal(&mut self) {
        self.latency.seal();
        self.ttft.seal();
        self.itl.seal();
    }

    /// Heap bytes its sealed histograms hold.
    fn held(&self) -> usize {
        self.latency.held() + self.ttft.held() + self.itl.held()
    }
}

/// What one interval's gauges hold beyond their row: the server's sample.
fn gauge_bytes(g: &Gauges) -> i64 {
    g.server
        .as_ref()
        .map_or(0, |_| std::mem::size_of::<ServerSample>() as i64)
}

/// A stripe's open intervals (usually one).
#[derive(Clone, Default)]
pub struct Intervals(BTreeMap<u64, IntervalRec>);

impl Intervals {
    pub fn at(&mut self, bucket: u64) -> &mut IntervalRec {
        self.0.entry(bucket).or_default()
    }

    /// The intervals before `bucket`, taken out (none, without allocating, in the usual case).
    pub fn take_before(&mut self, bucket: u64) -> Intervals {
        match self.0.first_key_value() {
            Some((first, _)) if *first < bucket => {
                let newer = self.0.split_off(&bucket);
                Intervals(std::mem::replace(&mut self.0, newer))
            }
            _ => Intervals::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the sampler read at the end of an interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Gauges {
    /// Requests in flight (issued, not yet complete), warm-up included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// The allocators' allocated bytes (`heap_allocated_bytes`: jemalloc's and glibc's), beside RSS: the drift fit's input,
    /// interval by interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_bytes: Option<u64>,
    /// Of `heap_bytes`, the harness's own data: its time series and samples
    /// ([`crate::resources::series_held_bytes`]) and its histograms' buckets
    /// ([`crate::stats::histograms_held_bytes`]), which the summary's net fits subtract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness_bytes: Option<u64>,
    /// Of `rss_bytes`, the pages that map files or shared memory (SQLite's WAL index, the
    /// binary's own), not the heap ([`crate::resources::rss_file_bytes`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_file_bytes: Option<u64>,
    /// Of `heap_bytes`, glibc `malloc`'s: in the `aether` binary, whose heap is jemalloc's (SQLite's
    /// included), what other C code holds (llama.cpp, libc itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malloc_bytes: Option<u64>,
    /// Of `heap_bytes`, what SQLite's C library holds ([`aether_store::sqlite_memory`]), and of
    /// that its page caches' pages: bounded by the connections' `cache_size`, so a soak on
    /// SQLite can tell the caches filling from growth elsewhere. Absent before SQLite allocates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite_cache_bytes: Option<u64>,
    /// CPU time over wall time in the interval, in percent of one core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_pct: Option<f64>,
    /// Chat sessions the runtime holds in memory at the end of the interval (in-process runs:
    /// [`aether_runtime::stats::StatsSnapshot::active_sessions`]), so that a soak's memory can be
    /// read against its live set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_live: Option<u64>,
    /// The server's own figures (`--target` with an admin key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Boxed: most runs have none, and a soak keeps a row per second.
    pub server: Option<Box<ServerSample>>,
}

/// What a target says of itself at the end of an interval (the sampler's `target` reading).
#[derive(Debug, Default)]
pub struct TargetReading {
    /// A server's figures, over HTTP (`--target` with an admin key).
    pub server: Option<ServerSample>,
    /// Chat sessions the runtime holds in memory (in-process runs).
    pub sessions_live: Option<u64>,
}

/// A server's figures at one moment, from its stats route (`GET /v1/admin/stats`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerSample {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
    /// CPU % over the interval (from two readings of `cpu_seconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_pct: Option<f64>,
    /// Turns the server ran so far, all tenants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turns: Option<u64>,
    /// The server's runtime counters and gauges, as it reports them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, serde_json::Value>,
}

/// The series a run's workers and sampler feed.
pub struct Series {
    pub clock: Clock,
    /// Requests issued and not yet complete.
    pub in_flight: AtomicU64,
    slots: Mutex<Rows<IntervalRec>>,
    /// Every interval before this one is sealed (read and written only under `slots`' lock).
    sealed_below: AtomicU64,
    gauges: Mutex<Rows<Gauges>>,
    /// The bytes this series counts as held (added to the process's
    /// [`crate::resources::series_held_bytes`], taken back when it is dropped).
    held: AtomicI64,
}

impl Series {
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            in_flight: AtomicU64::new(0),
            slots: Mutex::new(Rows::default()),
            sealed_below: AtomicU64::new(0),
            gauges: Mutex::new(Rows::default()),
            held: AtomicI64::new(0),
        }
    }

    fn hold(&self, delta: i64) {
        if delta != 0 {
            self.held.fetch_add(delta, Ordering::Relaxed);
            crate::resources::series_held(delta);
        }
    }

    /// The heap bytes this series holds, at least (see [`crate::resources::series_held_bytes`]).
    pub fn held_bytes(&self) -> u64 {
        self.held.load(Ordering::Relaxed).max(0) as u64
    }

    /// Adds a stripe's closed intervals; compresses those two intervals older than the newest.
    pub fn absorb(&self, closed: Intervals) {
        if closed.is_empty() {
            return;
        }
        let mut slots = self.slots.lock();
        let mut oldest_touched = u64::MAX;
        let mut delta = -(slots.held_bytes() as i64);
        for (bucket, rec) in closed.0 {
            oldest_touched = oldest_touched.min(bucket);
            let slot = slots.entry(bucket);
            let before = slot.held() as i64;
            slot.merge(&rec);
            delta += slot.held() as i64 - before;
        }
        // Only what can be live is visited: the intervals newer than the oldest one touched now
        // (a late piece unseals its interval) or than those already sealed, not the whole run.
        if let Some((_, newest)) = slots.span() {
            let cutoff = newest.saturating_sub(1);
            let from = oldest_touched.min(self.sealed_below.load(Ordering::Relaxed));
            if from < cutoff {
                for rec in slots.range_mut(from, cutoff) {
                    let before = rec.held() as i64;
                    rec.seal();
                    delta += rec.held() as i64 - before;
                }
            }
            self.sealed_below.fetch_max(cutoff, Ordering::Relaxed);
        }
        delta += slots.held_bytes() as i64;
        drop(slots);
        self.hold(delta);
    }

    /// The figures of interval `bucket` as far as they have arrived (the progress bar's).
    pub fn recent(&self, bucket: u64) -> crate::progress::Recent {
        let slots = self.slots.lock();
        let rec = slots.get(bucket);
        let secs = self.clock.interval().as_secs_f64();
        crate::progress::Recent {
            requests_per_s: rec.map_or(0.0, |r| (r.succeeded + r.failed) as f64 / secs),
            p99_ms: rec.and_then(|r| r.latency.quantile_ms(0.99)),
            errors: rec.map_or(0, |r| r.failed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }

    /// Records what the sampler read at the end of `bucket`.
    pub fn gauge(&self, bucket: u64, g: Gauges) {
        let mut gauges = self.gauges.lock();
        let before = gauges.held_bytes() as i64;
        let now = gauge_bytes(&g);
        let replaced = gauges.insert(bucket, g);
        let delta = gauges.held_bytes() as i64 - before + now - replaced.as_ref().map_or(0, gauge_bytes);
        drop(gauges);
        self.hold(delta);
    }

    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn request_done(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// The rows, from the first interval with anything in it to the last.
    pub fn timeline(&self) -> Timeline {
        let slots = self.slots.lock();
        let gauges = self.gauges.lock();
        let span = match (slots.span(), gauges.span()) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (one, other) => one.or(other),
        };
        let rows = match span {
            Some((a, b)) => (a..=b)
                .map(|k| {
                    let rec = slots.get(k);
                    let g = gauges.get(k).cloned().unwrap_or_default();
                    IntervalRow {
                        t: self.clock.start_s(k),
                        requests: rec.map_or(0, |r| r.succeeded + r.failed),
                        succeeded: rec.map_or(0, |r| r.succeeded),
                        failed: rec.map_or(0, |r| r.failed),
                        errors: rec.map(|r| r.errors.clone()).unwrap_or_default(),
                        latency: rec.and_then(|r| r.latency.encoded()),
                        ttft: rec.and_then(|r| r.ttft.encoded()),
                        itl: rec.and_then(|r| r.itl.encoded()),
                        gauges: g,
                    }
                })
                .collect(),
            None => Vec::new(),
        };
        Timeline {
            interval_s: self.clock.interval().as_secs_f64(),
            encoding: HDR_ENCODING.to_owned(),
            significant_figures: 2,
            rows,
        }
    }
}

impl Drop for Series {
    fn drop(&mut self) {
        crate::resources::series_held(-self.held.load(Ordering::Relaxed));
    }
}

/// One interval of the series, as a summary holds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalRow {
    /// Start of the interval, Unix seconds (UTC).
    pub t: f64,
    pub requests: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Failures by error code.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, u64>,
    /// Latency of the requests completed in the interval (HDR, see [`Timeline::encoding`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<String>,
    /// Live turns: time to the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft: Option<String>,
    /// Live turns: gaps between chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl: Option<String>,
    #[serde(flatten)]
    pub gauges: Gauges,
}

/// A run's time series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub interval_s: f64,
    /// How the rows' histograms are encoded: HDR V2 + DEFLATE, base64, nanoseconds.
    pub encoding: String,
    pub significant_figures: u8,
    pub rows: Vec<IntervalRow>,
}

impl Timeline {
    /// Adds `other` row by row (aligned on their start times); counts and histograms add,
    /// gauges of the same interval add (in-flight, RSS, CPU of several processes), the
    /// server's sample is kept from the first summary that has one (all segments read one server).
    pub fn merge(&mut self, other: &Timeline) -> Result<(), String> {
        if self.rows.is_empty() && self.interval_s == 0.0 {
            *self = other.clone();
            return Ok(());
        }
        if (self.interval_s - other.interval_s).abs() > 1e-9 {
            return Err(format!(
                "the time series have different intervals ({} s and {} s)",
                self.interval_s, other.interval_s
            ));
        }
        let key = |t: f64| (t * 1e3).round() as i64;
        let mut rows: BTreeMap<i64, IntervalRow> = std::mem::take(&mut self.rows)
            .into_iter()
            .map(|r| (key(r.t), r))
            .collect();
        for r in &other.rows {
            match rows.get_mut(&key(r.t)) {
                None => {
                    rows.insert(key(r.t), r.clone());
                }
                Some(mine) => {
                    mine.requests += r.requests;
                    mine.succeeded += r.succeeded;
                    mine.failed += r.failed;
                    for (code, n) in &r.errors {
                        count_code(&mut mine.errors, code, *n);
                    }
                    for (a, b) in [
                        (&mut mine.latency, &r.latency),
                        (&mut mine.ttft, &r.ttft),
                        (&mut mine.itl, &r.itl),
                    ] {
                        *a = merge_encoded(a.as_deref(), b.as_deref())?;
                    }
                    let add = |a: Option<u64>, b: Option<u64>| match (a, b) {
                        (None, None) => None,
                        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
                    };
                    let g = &mut mine.gauges;
                    g.in_flight = add(g.in_flight, r.gauges.in_flight);
                    g.rss_bytes = add(g.rss_bytes, r.gauges.rss_bytes);
                    g.heap_bytes = add(g.heap_bytes, r.gauges.heap_bytes);
                    g.harness_bytes = add(g.harness_bytes, r.gauges.harness_bytes);
                    g.rss_file_bytes = add(g.rss_file_bytes, r.gauges.rss_file_bytes);
                    g.malloc_bytes = add(g.malloc_bytes, r.gauges.malloc_bytes);
                    g.sqlite_bytes = add(g.sqlite_bytes, r.gauges.sqlite_bytes);
                    g.sqlite_cache_bytes = add(g.sqlite_cache_bytes, r.gauges.sqlite_cache_bytes);
                    g.sessions_live = add(g.sessions_live, r.gauges.sessions_live);
                    g.cpu_pct = match (g.cpu_pct, r.gauges.cpu_pct) {
                        (None, None) => None,
                        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
                    };
                    if g.server.is_none() {
                        g.server = r.gauges.server.clone();
                    }
                }
            }
        }
        self.rows = rows.into_values().collect();
        Ok(())
    }

    /// Decodes a row's histogram.
    pub fn hist(data: Option<&str>) -> Option<DurationHist> {
        data.and_then(|d| DurationHist::decode(d).ok())
    }
}

fn merge_encoded(a: Option<&str>, b: Option<&str>) -> Result<Option<String>, String> {
    match (a, b) {
        (None, None) => Ok(None),
        (Some(x), None) | (None, Some(x)) => Ok(Some(x.to_owned())),
        (Some(x), Some(y)) => {
            let mut h = DurationHist::decode(x)?;
            h.merge(&DurationHist::decode(y)?);
            Ok(Some(h.encode()))
        }
    }
}

#[cfg(test)]
mod tests;
