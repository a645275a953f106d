//! CPU profiles of this process, for `aether perf run --cpu-profile` and the admin route
//! `GET /debug/pprof/profile?seconds=N`.
//!
//! The profiler samples every thread's stack 99 times a second (SIGPROF, through `pprof`), and
//! gives both a **pprof protobuf** (`go tool pprof`, Grafana Pyroscope, speedscope) and a
//! **flame graph** (SVG). It is process-wide, so one profile runs at a time: a second request is
//! refused with [`ProfileError::Busy`] (409 on the route). A profile of a `perf run` in process
//! covers the load generator as well as the runtime: both live in the process.
//!
//! Symbolising the samples takes a moment of CPU: [`Profiling::finish`] is blocking work (run it
//! on the blocking pool from async code).

use std::sync::atomic::{AtomicBool, Ordering};

/// Samples per second: 99, not 100, so that sampling does not run in lockstep with timers.
pub const FREQUENCY_HZ: i32 = 99;
/// The longest profile the route takes.
pub const MAX_SECONDS: u64 = 60;

/// Whether a profile is running in this process.
static BUSY: AtomicBool = AtomicBool::new(false);

/// A finished profile.
pub struct CpuProfile {
    /// The pprof protobuf (uncompressed `perftools.profiles.Profile`).
    pub pprof: Vec<u8>,
    /// The flame graph.
    pub flamegraph_svg: Vec<u8>,
    /// Stacks sampled.
    pub samples: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("a CPU profile is already running in this process (one at a time)")]
    Busy,
    #[error("cannot start the CPU profiler: {0}")]
    Start(String),
    #[error("cannot build the CPU profile: {0}")]
    Report(String),
}

/// A profile being taken; [`finish`](Self::finish) it for the result. Dropping it stops it.
pub struct Profiling {
    guard: pprof::ProfilerGuard<'static>,
}

impl Profiling {
    /// Starts profiling the whole process.
    pub fn start() -> Result<Self, ProfileError> {
        if BUSY
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(ProfileError::Busy);
        }
        // Stacks that begin in these libraries are skipped: unwinding through them from a
        // signal handler can deadlock, and vdso's unwind tables are wrong on some systems.
        match pprof::ProfilerGuardBuilder::default()
            .frequency(FREQUENCY_HZ)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
        {
            Ok(guard) => Ok(Self { guard }),
            Err(e) => {
                BUSY.store(false, Ordering::Release);
                Err(ProfileError::Start(e.to_string()))
            }
        }
    }

    /// Stops and builds the profile (blocking: symbolises every sampled stack). `title` heads
    /// the flame graph.
    pub fn finish(self, title: &str) -> Result<CpuProfile, ProfileError> {
        use pprof::protos::Message as _;
        let report = self
            .guard
            .report()
            .build()
            .map_err(|e| ProfileError::Report(e.to_string()))?;
        let samples = report.data.values().map(|n| *n as u64).sum();
        let pprof = report
            .pprof()
            .map_err(|e| ProfileError::Report(e.to_string()))?
            .encode_to_vec();
        let mut flamegraph_svg = Vec::new();
        let mut options = pprof::flamegraph::Options::default();
        options.title = title.to_owned();
        options.count_name = "samples".to_owned();
        if samples > 0 {
            report
                .flamegraph_with_options(&mut flamegraph_svg, &mut options)
                .map_err(|e| ProfileError::Report(e.to_string()))?;
        } else {
            // inferno refuses an empty profile; an idle process still gets a readable file.
            flamegraph_svg = format!(
                r#"<?xml version="1.0" standalone="no"?><svg xmlns="http://www.w3.org/2000/svg" width="600" height="60"><text x="10" y="30">{}: no CPU samples (the process was idle)</text></svg>"#,
                title.replace('&', "&amp;").replace('<', "&lt;")
            )
            .into_bytes();
        }
        Ok(CpuProfile {
            pprof,
            flamegraph_svg,
            samples,
        })
    }
}

impl Drop for Profiling {
    fn drop(&mut self) {
        BUSY.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_profile_at_a_time_and_a_busy_loop_shows_in_it() {
        let p = Profiling::start().unwrap();
        assert!(matches!(Profiling::start(), Err(ProfileError::Busy)));
        // Burn CPU for a while (a fixed amount of work, not a sleep) so that samples land here.
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(300) {
            for i in 0..10_000u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
            }
        }
        std::hint::black_box(x);
        let profile = p.finish("test").unwrap();
        assert!(profile.samples > 0, "samples were taken");
        assert!(!profile.pprof.is_empty());
        let svg = String::from_utf8(profile.flamegraph_svg).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("test"),
            "{}",
            &svg[..200.min(svg.len())]
        );
        // Finished: the next one may start.
        drop(Profiling::start().unwrap());
    }
}
