//! Samples the process's resident memory and CPU time on its own interval task, and fits the
//! memory drift per hour (the private `fit`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::time::Instant;

pub use crate::fit::{fit_on_time_and, fit_per_hour, Fit, JointFit, CORRELATION_SPAN_S};

/// One reading.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub t_s: f64,
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
    /// The allocator's allocated bytes ([`aether_runtime::stats::heap_allocated_bytes`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heap_bytes: Option<u64>,
    /// Of those, what the harness's own time series held ([`series_held_bytes`]) and what its
    /// histograms' buckets held ([`crate::stats::histograms_held_bytes`]): a soak's heap slope
    /// less both is the slope of what the run under test kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series_bytes: Option<u64>,
    /// See `series_bytes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histogram_bytes: Option<u64>,
    /// Of the heap, SQLite's page caches' pages ([`aether_store::sqlite_memory`]), where SQLite
    /// has allocated: bounded by the connections' `cache_size`, they fill over a soak's first
    /// minutes and then hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlite_cache_bytes: Option<u64>,
}

impl Sample {
    /// A reading now, `t_s` seconds into the run; `None` where the RSS cannot be read. Reads
    /// `/proc`: file I/O, for a blocking thread (or once, at the end of a run).
    pub fn read(t_s: f64) -> Option<Self> {
        let heap = aether_runtime::stats::heap_allocated_bytes();
        Some(Self {
            t_s,
            rss_bytes: rss_bytes()?,
            cpu_seconds: cpu_seconds(),
            heap_bytes: heap,
            series_bytes: heap.map(|_| series_held_bytes()),
            histogram_bytes: heap.map(|_| crate::stats::histograms_held_bytes()),
            sqlite_cache_bytes: heap.and(aether_store::sqlite_memory()).map(|m| m.page_cache),
        })
    }
}

/// Bytes the harness's time series hold in this process (see [`series_held_bytes`]).
static SERIES_HELD: AtomicI64 = AtomicI64::new(0);

/// Counts `delta` bytes more (or fewer) held by a time series.
pub(crate) fn series_held(delta: i64) {
    SERIES_HELD.fetch_add(delta, Ordering::Relaxed);
}

/// The heap bytes the harness's time series hold in this process, counted as their rows are
/// made and sealed (a row per interval, kept for the report: the rows' buffers by capacity and
/// each sealed histogram's bytes; the allocator's rounding of those is not counted), and the
/// buffer of a running [`Sampler`]'s samples.
/// A soak grows it by a row per interval; the runtime's growth is the heap's less this.
pub fn series_held_bytes() -> u64 {
    SERIES_HELD.load(Ordering::Relaxed).max(0) as u64
}

/// Resident set size now, from `/proc/self/statm` (Linux); `None` elsewhere.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// User plus system CPU time of the process so far.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Peak resident set size of the process, from `/proc/self/status` (VmHWM).
pub fn peak_rss_bytes() -> Option<u64> {
    status_kb(&std::fs::read_to_string("/proc/self/status").ok()?, "VmHWM:").map(|kb| kb * 1024)
}

/// The part of the resident set that maps files or shared memory (`RssFile` + `RssShmem` of
/// `/proc/self/status`: SQLite's WAL index, the binary's own pages), not the heap; the rest of
/// RSS is anonymous memory (the allocators' and the stacks').
pub fn rss_file_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    Some((status_kb(&status, "RssFile:")? + status_kb(&status, "RssShmem:").unwrap_or(0)) * 1024)
}

/// The value in kB of the `/proc/self/status` line starting with `key`.
fn status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A background sampler; [`Sampler::finish`] it to get the samples (dropped, it stops).
///
/// Its samples are the harness's own data, kept for the report like a time series' rows: the
/// bytes their buffer holds are counted in [`series_held_bytes`] while the sampler has them, so
/// that a soak's heap less the harness's data leaves them out. (A half-hour soak keeps ~3,600,
/// 88 B each; uncounted, the buffer's doublings at ~8.5 and ~17 minutes read as the runtime's
/// growth.)
pub struct Sampler {
    samples: Arc<Mutex<Counted>>,
    task: tokio::task::JoinHandle<()>,
    started: Instant,
}

/// The samples, with the bytes of their buffer counted as held.
#[derive(Default)]
struct Counted {
    samples: Vec<Sample>,
    counted: usize,
}

impl Counted {
    fn push(&mut self, sample: Sample) {
        self.samples.push(sample);
        self.recount();
    }

    fn recount(&mut self) {
        let now = self.samples.capacity() * std::mem::size_of::<Sample>();
        series_held(now as i64 - self.counted as i64);
        self.counted = now;
    }
}

impl Drop for Counted {
    /// Gives back what is still counted (a sampler dropped on an error path).
    fn drop(&mut self) {
        series_held(-(self.counted as i64));
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sampler {
    pub fn start(every: Duration) -> Self {
        let samples = Arc::new(Mutex::new(Counted::default()));
        let started = Instant::now();
        let sink = Arc::clone(&samples);
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticker.tick().await;
                // The sample is read on a blocking thread: /proc reads are file I/O.
                let reading = tokio::task::spawn_blocking(move || Sample::read(started.elapsed().as_secs_f64())).await;
                if let Ok(Some(sample)) = reading {
                    sink.lock().push(sample);
                }
            }
        });
        Self { samples, task, started }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops sampling, takes a last reading `t_s` seconds into the run (while the buffer is
    /// still counted), and hands the samples over, that reading last, no longer counted as held;
    /// the last reading also apart (`None` where it could not be read).
    pub fn finish(self, t_s: f64) -> (Vec<Sample>, Option<Sample>) {
        self.task.abort();
        let mut held = self.samples.lock();
        let end = Sample::read(t_s);
        if let Some(end) = end {
            held.push(end);
        }
        let samples = std::mem::take(&mut held.samples);
        held.recount();
        (samples, end)
    }
}

/// Least-squares slope of RSS over time, in bytes per hour; `None` with fewer than 3 samples.
pub fn drift_bytes_per_hour(samples: &[Sample]) -> Option<f64> {
    fit_per_hour(samples.iter().map(|s| (s.t_s, s.rss_bytes as f64))).map(|f| f.slope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_samples_buffer_is_counted_while_held_and_given_back() {
        let sample = Sample {
            t_s: 0.0,
            rss_bytes: 1,
            cpu_seconds: 0.0,
            heap_bytes: None,
            series_bytes: None,
            histogram_bytes: None,
            sqlite_cache_bytes: None,
        };
        let mut held = Counted::default();
        let mut grew = 0;
        for _ in 0..1000 {
            let before = held.counted;
            held.push(sample);
            grew += usize::from(held.counted != before);
            assert_eq!(held.counted, held.samples.capacity() * std::mem::size_of::<Sample>());
        }
        assert!(grew > 1 && grew < 20, "counted again only as the buffer grows: {grew}");
        let samples = std::mem::take(&mut held.samples);
        held.recount();
        assert_eq!((samples.len(), held.counted), (1000, 0));
        held.push(sample);
        assert!(held.counted > 0);
        drop(held); // gives back what it still counted
    }
}
