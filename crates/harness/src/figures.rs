//! Stage three of a run: the figures derived from what the phases recorded and what the
//! resource sampler saw — merged histograms, throughput, the fan-out ratio, memory drift,
//! Little's law, and the KPI verdicts. Pure arithmetic on measurements; nothing here runs load.

use std::collections::BTreeMap;
use std::time::Duration;

use aether_runtime::StatsSnapshot;
use chrono::{DateTime, Utc};

use crate::kpi::{self, Kpi, KpiInputs, KpiTargets};
use crate::load::{PhaseOutcome, Recorder, HISTOGRAMS};
use crate::resources::{self, Sample};
use crate::scenario::{ScenarioConfig, ScenarioKind};
use crate::stats::{DurationHist, SerialisedHist, Stats, Unit};
use crate::summary::{Breakdowns, MeasuredWindow, MultimodalSummary, RunnersSummary};
use crate::timeline::Timeline;

/// One phase as it ran: what it measured, and when it began (seconds into the run).
pub(crate) struct PhaseRun {
    pub outcome: PhaseOutcome,
    pub started_s: f64,
}

/// What was measured around the phases: the run's window and the process's resources.
pub(crate) struct Window {
    pub started_at: DateTime<Utc>,
    pub duration_s: f64,
    /// RSS and CPU samples, the last taken at the end.
    pub samples: Vec<Sample>,
    pub rss_start: Option<u64>,
    pub rss_end: Option<u64>,
    pub cpu_seconds: f64,
    /// Runners created and reclaimed in the run (an in-process runtime only).
    pub runners: Option<RunnersSummary>,
    /// The runtime's counters at the end (an in-process runtime only).
    pub runtime_stats: Option<StatsSnapshot>,
    /// The highest resident memory of the process(es).
    pub rss_peak: Option<u64>,
    /// What each interval recorded.
    pub timeline: Timeline,
}

/// tool_regression: one tool against all of them at once (latency P50s, ms).
pub(crate) struct Fanout {
    pub ratio: f64,
    pub baseline_p50_ms: f64,
    pub fanout_p50_ms: f64,
}

/// Everything derived from a run's measurements.
pub(crate) struct Figures {
    /// The phases merged.
    pub rec: Recorder,
    pub issued: u64,
    pub total: u64,
    pub throughput_rps: f64,
    pub latency: Stats,
    pub error_rate: f64,
    pub agents_reuse_ratio: f64,
    pub sessions_reuse_ratio: f64,
    pub fanout: Option<Fanout>,
    pub multimodal: Option<MultimodalSummary>,
    pub drift_bytes_per_hour: Option<f64>,
    pub drift_window_s: f64,
    /// The allocator's allocated bytes over the same window as the RSS drift: their fit, and
    /// the RSS fit's standard error (runs of one process; merged runs have neither).
    pub heap_drift: Option<resources::Fit>,
    /// The same fit over the window's second half alone: a ramp that levels off (allocator
    /// caches, maps reaching their working size) shows a whole-window slope but a flat second
    /// half; a leak shows the same slope in both.
    pub heap_drift_late: Option<resources::Fit>,
    /// Both fits of the heap less what the harness's own time series and histograms held at
    /// each sample ([`resources::series_held_bytes`], [`crate::stats::histograms_held_bytes`]):
    /// the growth of what the run under test kept.
    pub heap_drift_net: Option<resources::Fit>,
    pub heap_drift_late_net: Option<resources::Fit>,
    /// Both net fits less SQLite's page caches too, where SQLite allocated: what is left when
    /// the caches' bounded fill (to `cache_size` a connection) is set apart.
    pub heap_drift_net_less_cache: Option<resources::Fit>,
    pub heap_drift_late_net_less_cache: Option<resources::Fit>,
    /// The net heap less SQLite's page caches (where it has them), fitted on time and the
    /// runtime's live sessions together over the same window, from the time series' rows (an
    /// in-process run's rows carry `sessions_live`): the growth at a constant live set, and the
    /// bytes each live session holds. Only over a window the drift KPI would judge
    /// (`min_drift_window_s`).
    pub heap_drift_at_live_set: Option<resources::JointFit>,
    pub rss_drift_error: Option<f64>,
    /// RSS fitted over the window's second half alone, as `heap_drift_late` (a level step in the
    /// middle of a soak, a bounded queue filling when its collector stops, shows in the whole
    /// window's slope but not in the second half's).
    pub rss_drift_late: Option<resources::Fit>,
    pub rss_delta_per_cycle: Option<f64>,
    /// Little's law: the throughput `concurrency` workers at the mean latency allow.
    pub bound_rps: f64,
    /// The throughput a zero-cost runtime would reach (closed loop, fixed model latency, no tools).
    pub ideal_rps: Option<f64>,
    pub kpis: Vec<Kpi>,
    pub passed: bool,
    pub alert: Option<String>,
    pub histograms: BTreeMap<String, SerialisedHist>,
    pub breakdowns: Breakdowns,
    /// From the first measured request's due time to the last measured completion (UTC).
    pub measured: Option<MeasuredWindow>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// What the measured requests of a run (or of several merged runs) add up to: the input of
/// [`derive()`].
pub(crate) struct Measured {
    /// Every measured request, the phases merged.
    pub rec: Recorder,
    pub issued: u64,
    /// The time throughput is computed over.
    pub measured: Duration,
    /// tool_regression: the latency of the one-tool phase and of the all-tools phase.
    pub fanout_phases: Option<(DurationHist, DurationHist)>,
    pub window: Option<MeasuredWindow>,
    /// Memory drift: fitted over the samples, or given (merged runs: the worst process's).
    pub drift: Drift,
}

/// Where the memory drift comes from.
pub(crate) enum Drift {
    /// Fit the window's samples taken between these seconds into the run: from the warm-up's
    /// end to the last measured completion. The sample read after the run (its store flushed,
    /// its load gone) is left out: a level change there would read as a slope.
    Fit { from_s: f64, to_s: f64 },
    /// Already known (bytes per hour, over a window of seconds).
    Given(Option<f64>, f64),
}

impl Measured {
    /// A run's phases.
    pub fn of_phases(phases: &[PhaseRun]) -> Self {
        let mut rec = Recorder::default();
        let mut measured = Duration::ZERO;
        let mut issued = 0;
        for p in phases {
            rec.merge(&p.outcome.recorder);
            measured += p.outcome.measured;
            issued += p.outcome.issued;
        }
        let fanout_phases = match phases {
            [base, fan] => Some((
                base.outcome.recorder.latency.clone(),
                fan.outcome.recorder.latency.clone(),
            )),
            _ => None,
        };
        Self {
            rec,
            issued,
            measured,
            fanout_phases,
            window: MeasuredWindow::envelope(
                phases
                    .iter()
                    .filter_map(|p| Some((p.outcome.measured_start?, p.outcome.measured_end?))),
            ),
            // Memory drift counts from the end of the warm-up to the load's last completion.
            drift: Drift::Fit {
                from_s: phases.first().map_or(0.0, |p| p.started_s + p.outcome.measured_from_s),
                to_s: phases.last().map_or(f64::MAX, |p| {
                    p.started_s + p.outcome.measured_from_s + p.outcome.measured.as_secs_f64()
                }),
            },
        }
    }
}

/// The memory fits of a run: RSS over the samples from `from_s` (the warm-up's end) to `to_s`
/// (the load's end), and over their second half; the heap, and the heap less the harness's own
/// data (its time series and histograms), likewise.
#[derive(Debug, Default)]
struct DriftFits {
    rss: Option<resources::Fit>,
    rss_late: Option<resources::Fit>,
    window_s: f64,
    heap: Option<resources::Fit>,
    heap_late: Option<resources::Fit>,
    heap_net: Option<resources::Fit>,
    heap_late_net: Option<resources::Fit>,
    heap_net_less_cache: Option<resources::Fit>,
    heap_late_net_less_cache: Option<resources::Fit>,
}

/// The net heap (less the harness's own data and SQLite's page caches) of the rows gauged from
/// `from_s` to `to_s` seconds into a run that began at `started_at`, fitted on time and live
/// sessions together; `None` where the rows lack either (runs against a target, merged runs).
fn live_set_fit(timeline: &Timeline, started_at: DateTime<Utc>, from_s: f64, to_s: f64) -> Option<resources::JointFit> {
    let start = started_at.timestamp_micros() as f64 / 1e6;
    resources::fit_on_time_and(timeline.rows.iter().filter_map(|r| {
        // The gauges are read as the interval ends.
        let t_s = r.t + timeline.interval_s - start;
        let g = &r.gauges;
        let net = g.heap_bytes? as f64 - g.harness_bytes? as f64 - g.sqlite_cache_bytes.unwrap_or(0) as f64;
        (from_s..=to_s)
            .contains(&t_s)
            .then_some((t_s, g.sessions_live? as f64, net))
    }))
}

fn drift_fits(samples: &[resources::Sample], from_s: f64, to_s: f64) -> DriftFits {
    type Reading = fn(&resources::Sample) -> Option<f64>;
    let drift_samples: Vec<_> = samples
        .iter()
        .copied()
        .filter(|s| (from_s..=to_s).contains(&s.t_s))
        .collect();
    let window_s = match (drift_samples.first(), drift_samples.last()) {
        (Some(a), Some(b)) => b.t_s - a.t_s,
        _ => 0.0,
    };
    // `reading` fitted over the samples from `from` on that have it.
    let fit = |from: f64, reading: Reading| {
        resources::fit_per_hour(
            drift_samples
                .iter()
                .filter(|s| s.t_s >= from)
                .filter_map(|s| Some((s.t_s, reading(s)?))),
        )
    };
    let half = drift_samples.first().map_or(f64::MAX, |a| a.t_s + window_s / 2.0);
    let rss: Reading = |s| Some(s.rss_bytes as f64);
    let heap: Reading = |s| Some(s.heap_bytes? as f64);
    fn net(s: &resources::Sample) -> Option<f64> {
        Some(s.heap_bytes? as f64 - s.series_bytes? as f64 - s.histogram_bytes? as f64)
    }
    let heap_net: Reading = net;
    let less_cache: Reading = |s| Some(net(s)? - s.sqlite_cache_bytes? as f64);
    DriftFits {
        rss: fit(f64::MIN, rss),
        rss_late: fit(half, rss),
        window_s,
        heap: fit(f64::MIN, heap),
        heap_late: fit(half, heap),
        heap_net: fit(f64::MIN, heap_net),
        heap_late_net: fit(half, heap_net),
        heap_net_less_cache: fit(f64::MIN, less_cache),
        heap_late_net_less_cache: fit(half, less_cache),
    }
}

/// Derives the figures of a run of `cfg` from what it measured and its window, judged by
/// `targets`.
pub(crate) fn derive(cfg: &ScenarioConfig, targets: &KpiTargets, m: Measured, w: &Window) -> Figures {
    let Measured {
        rec,
        issued,
        measured,
        fanout_phases,
        window,
        drift,
    } = m;
    let (fits, drift, heap_drift_at_live_set) = match drift {
        Drift::Fit { from_s, to_s } => {
            let fits = drift_fits(&w.samples, from_s, to_s);
            let slope = fits.rss.map(|f| f.slope);
            // Like the drift KPI, judged only over a long enough window: over seconds, a live
            // set of a few sessions gives a fit of noise.
            let at_live_set = (fits.window_s >= targets.min_drift_window_s)
                .then(|| live_set_fit(&w.timeline, w.started_at, from_s, to_s))
                .flatten();
            (fits, slope, at_live_set)
        }
        Drift::Given(d, window_s) => (
            DriftFits {
                window_s,
                ..DriftFits::default()
            },
            d,
            None,
        ),
    };
    let DriftFits {
        rss,
        rss_late: rss_drift_late,
        window_s: drift_window_s,
        heap: heap_drift,
        heap_late: heap_drift_late,
        heap_net: heap_drift_net,
        heap_late_net: heap_drift_late_net,
        heap_net_less_cache: heap_drift_net_less_cache,
        heap_late_net_less_cache: heap_drift_late_net_less_cache,
    } = fits;
    let rss_drift_error = rss.map(|f| f.stderr);

    let total = rec.total();
    let throughput = if measured.is_zero() {
        0.0
    } else {
        total as f64 / measured.as_secs_f64()
    };
    let latency = rec.latency.stats(Unit::Ms);
    let fanout = match &fanout_phases {
        Some((base, fan)) if !base.is_empty() && !fan.is_empty() => {
            let b = base.quantile_ns(0.5) as f64 / 1e6;
            let f = fan.quantile_ns(0.5) as f64 / 1e6;
            Some(Fanout {
                ratio: f / b,
                baseline_p50_ms: b,
                fanout_p50_ms: f,
            })
        }
        _ => None,
    };
    let error_rate = ratio(rec.failed, total);
    let agents_reuse_ratio = ratio(rec.agents_reused, rec.agents_reused + rec.agents_created);
    let multimodal = (rec.attachments > 0).then(|| MultimodalSummary {
        attachments: rec.attachments,
        intact: rec.attachments_intact,
        fidelity: ratio(rec.attachments_intact, rec.attachments),
        conversion_ms: rec.conversion.stats(Unit::Ms),
    });
    let kpis = kpi::evaluate(
        targets,
        &KpiInputs {
            scenario: cfg.scenario.clone(),
            kind: cfg.kind,
            succeeded: rec.succeeded,
            latency_p50_s: latency.p50 / 1000.0,
            latency_p95_s: latency.p95 / 1000.0,
            error_rate,
            fanout_ratio: fanout.as_ref().map(|f| f.ratio),
            throughput_rps: throughput,
            drift_bytes_per_hour: drift,
            drift_window_s,
            agents_reuse_ratio,
            fidelity: multimodal.as_ref().map(|m| m.fidelity),
        },
    );
    let passed = kpis.iter().all(|k| k.pass != Some(false));
    let alert = alert(cfg, &latency, &kpis, passed);

    let ideal_rps = match (cfg.model_latency_ms, cfg.tools.is_empty(), cfg.rate) {
        (Some(ms), true, None) if ms > 0 && cfg.time_scale > 0.0 => {
            Some(cfg.concurrency as f64 / (ms as f64 * cfg.time_scale / 1000.0))
        }
        _ => None,
    };
    let bound_rps = if latency.mean > 0.0 {
        cfg.concurrency as f64 / (latency.mean / 1000.0)
    } else {
        0.0
    };

    let mut named: Vec<(String, &DurationHist)> = HISTOGRAMS
        .iter()
        .zip(rec.histograms())
        .map(|(n, h)| ((*n).to_owned(), h))
        .collect();
    if let Some((base, fan)) = &fanout_phases {
        named.push(("latency_baseline".into(), base));
        named.push(("latency_fanout".into(), fan));
    }
    named.extend(rec.by_tool.iter().map(|(t, h)| (format!("{TOOL_PREFIX}{t}"), h)));
    named.extend(rec.by_error.iter().map(|(c, h)| (format!("{ERROR_PREFIX}{c}"), h)));
    let histograms = DurationHist::serialise_named(named.iter().map(|(n, h)| (n.as_str(), *h)));
    let breakdowns = Breakdowns::of(
        rec.errors_by_code.clone(),
        &rec.create,
        &rec.turn,
        &rec.by_tool,
        &rec.by_error,
    );
    let measured = window;
    let rss_delta_per_cycle = match (w.rss_start, w.rss_end, cfg.kind) {
        (Some(a), Some(b), ScenarioKind::RunnerLifecycle) if total > 0 => Some((b as f64 - a as f64) / total as f64),
        _ => None,
    };
    Figures {
        sessions_reuse_ratio: ratio(rec.sessions_reused, rec.sessions_created + rec.sessions_reused),
        rec,
        issued,
        total,
        throughput_rps: throughput,
        latency,
        error_rate,
        agents_reuse_ratio,
        fanout,
        multimodal,
        drift_bytes_per_hour: drift,
        drift_window_s,
        heap_drift,
        heap_drift_late,
        heap_drift_net,
        heap_drift_late_net,
        heap_drift_net_less_cache,
        heap_drift_late_net_less_cache,
        heap_drift_at_live_set,
        rss_drift_late,
        rss_drift_error,
        rss_delta_per_cycle,
        bound_rps,
        ideal_rps,
        kpis,
        passed,
        alert,
        histograms,
        breakdowns,
        measured,
    }
}

/// The name prefix of a tool's histogram in a summary's `histograms` (`tool.NAME`).
pub(crate) const TOOL_PREFIX: &str = "tool.";
/// The name prefix of an error code's latency histogram (`error.CODE`).
pub(crate) const ERROR_PREFIX: &str = "error.";

/// The line a reader must not miss: latency over the scenario's expectation, or failed KPIs.
fn alert(cfg: &ScenarioConfig, latency: &Stats, kpis: &[Kpi], passed: bool) -> Option<String> {
    if latency.count > 0 && latency.p95 / 1000.0 > cfg.max_expected_latency_s {
        Some(format!(
            "latency p95 {:.3} s exceeds the scenario's max_expected_latency {:.1} s",
            latency.p95 / 1000.0,
            cfg.max_expected_latency_s
        ))
    } else if !passed {
        let failed: Vec<&str> = kpis
            .iter()
            .filter(|k| k.pass == Some(false))
            .map(|k| k.name.as_str())
            .collect();
        Some(format!("KPI failed: {}", failed.join(", ")))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_s: f64, rss_mb: f64) -> resources::Sample {
        resources::Sample {
            t_s,
            rss_bytes: (rss_mb * 1e6) as u64,
            cpu_seconds: 0.0,
            heap_bytes: Some((rss_mb * 1e6) as u64 / 2),
            series_bytes: Some(0),
            histogram_bytes: Some(0),
            sqlite_cache_bytes: None,
        }
    }

    /// SQLite's page caches filling to their bound are set apart from the net slope; growth
    /// anywhere else is not, and without SQLite there is no such fit.
    #[test]
    fn the_page_caches_fill_is_set_apart_and_nothing_else() {
        let soak = |leak_mb_per_s: f64| -> Vec<resources::Sample> {
            (0..=600)
                .map(|t| {
                    let t = f64::from(t);
                    // The caches fill at 20 kB/s for 300 s (6 MB), then hold.
                    let cache = (t.min(300.0) * 20e3) as u64;
                    let mut s = sample(t, 100.0);
                    s.heap_bytes = Some(40_000_000 + cache + (t * leak_mb_per_s * 1e6) as u64);
                    s.sqlite_cache_bytes = Some(cache);
                    s
                })
                .collect()
        };
        let f = drift_fits(&soak(0.0), 60.0, 600.0);
        assert!(f.heap_net.unwrap().slope > 30e6, "{:?}", f.heap_net);
        let less = f.heap_net_less_cache.unwrap();
        assert!(less.slope.abs() < 1e3, "{less:?}");
        let f = drift_fits(&soak(0.001), 60.0, 600.0);
        for fit in [f.heap_net_less_cache, f.heap_late_net_less_cache] {
            assert!((fit.unwrap().slope - 3.6e6).abs() < 1e3, "{fit:?}");
        }
        let f = drift_fits(
            &[sample(0.0, 100.0), sample(10.0, 100.0), sample(20.0, 100.0)],
            0.0,
            20.0,
        );
        assert!(f.heap_net.is_some() && f.heap_net_less_cache.is_none());
    }

    /// A level step early in the window (a bounded queue filling when its collector stops)
    /// shows in the whole window's slope, not in the second half's; a leak shows in both.
    #[test]
    fn the_second_half_tells_a_step_from_a_leak() {
        // Warm-up until 100 s (left out), a 2 MB step at 150 s, flat after.
        let step: Vec<_> = (0..=500)
            .map(|t| sample(f64::from(t), if t < 150 { 100.0 } else { 102.0 }))
            .collect();
        let f = drift_fits(&step, 100.0, 500.0);
        assert_eq!(f.window_s, 400.0);
        assert!(f.rss.unwrap().slope > 10e6, "whole window: {:?}", f.rss);
        let late = f.rss_late.unwrap();
        assert!(late.slope.abs() < 1.0, "second half: {late:?}");
        assert!(f.heap.unwrap().slope > 5e6 && f.heap_late.unwrap().slope.abs() < 1.0);

        // 36 MB/h, steadily.
        let leak: Vec<_> = (0..=500)
            .map(|t| sample(f64::from(t), 100.0 + f64::from(t) * 0.01))
            .collect();
        let f = drift_fits(&leak, 100.0, 500.0);
        for slope in [f.rss.unwrap().slope, f.rss_late.unwrap().slope] {
            assert!((slope - 36e6).abs() < 1e3, "{slope}");
        }
        assert!((f.heap_late.unwrap().slope - 18e6).abs() < 1e3);
        // Less the series (none here), the same.
        assert_eq!(f.heap_late.unwrap().slope, f.heap_late_net.unwrap().slope);
    }

    /// The rows' net heap is fitted on time and live sessions over the drift window alone, less
    /// the harness's data and the page caches; rows without live sessions give no fit.
    #[test]
    fn the_live_set_fit_reads_the_rows_of_the_window() {
        use crate::timeline::{Gauges, IntervalRow};
        let started_at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let row = |i: u32| {
            let live = 17_000 + 2 * u64::from(i) + u64::from(i % 30) * 100;
            let harness = 1_000 * u64::from(i);
            let cache = u64::from(i.min(100)) * 20_000;
            // The warm-up's rows (gauged before 60 s) hold 20 MB more, which the window leaves out.
            let warm_up = if i < 59 { 20_000_000 } else { 0 };
            IntervalRow {
                t: 1_800_000_000.0 + f64::from(i),
                gauges: Gauges {
                    // 500 B a live session, and the harness's and the caches' bytes.
                    heap_bytes: Some(40_000_000 + 500 * live + harness + cache + warm_up),
                    harness_bytes: Some(harness),
                    sqlite_cache_bytes: Some(cache),
                    sessions_live: Some(live),
                    ..Gauges::default()
                },
                ..IntervalRow::default()
            }
        };
        let mut timeline = Timeline {
            interval_s: 1.0,
            rows: (0..600).map(row).collect(),
            ..Timeline::default()
        };
        let fit = live_set_fit(&timeline, started_at, 60.0, 600.0).unwrap();
        assert!(fit.per_hour.slope.abs() < 1.0, "{fit:?}");
        assert!((fit.per_unit.slope - 500.0).abs() < 1e-6, "{fit:?}");
        // With the warm-up's rows in, their level reads as a fall (the check can fail).
        assert!(live_set_fit(&timeline, started_at, 0.0, 600.0).unwrap().per_hour.slope < -1e6);
        for r in &mut timeline.rows {
            r.gauges.sessions_live = None;
        }
        assert!(live_set_fit(&timeline, started_at, 60.0, 600.0).is_none());
    }

    /// The sample read after the load (the store flushed: RSS up a step) is not fitted.
    #[test]
    fn the_sample_after_the_load_is_left_out() {
        let mut flat: Vec<_> = (0..=500).map(|t| sample(f64::from(t), 100.0)).collect();
        flat.push(sample(502.0, 104.0));
        let f = drift_fits(&flat, 100.0, 500.0);
        assert_eq!(f.window_s, 400.0);
        assert!(f.rss.unwrap().slope.abs() < 1.0 && f.rss_late.unwrap().slope.abs() < 1.0);
        // Fitted to the end, it would read as a slope (the check can fail).
        let f = drift_fits(&flat, 100.0, f64::MAX);
        assert!(f.rss_late.unwrap().slope > 1e5, "{:?}", f.rss_late);
    }
}
