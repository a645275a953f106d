//! Stage three of a run: the figures derived from what the phases recorded and what the
//! resource sampler saw — merged histograms, throughput, the fan-out ratio, memory drift,
//! Little's law, and the KPI verdicts. Pure arithmetic on measurements; nothing here runs load.

use std::collections::BTreeMap;
use std::time::Duration;

use aether_runtime::StatsSnapshot;
use chrono::{DateTime, Utc};

use crate::kpi::{self, Kpi, KpiInputs, KpiTargets};
use crate::load::{PhaseOutcome, Recorder};
use crate::resources::{self, Sample};
use crate::scenario::{ScenarioConfig, ScenarioKind};
use crate::stats::{DurationHist, SerialisedHist, Stats, Unit};
use crate::summary::{MultimodalSummary, RunnersSummary};

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
    /// The runtime's counters before and after (an in-process runtime only).
    pub before: Option<StatsSnapshot>,
    pub after: Option<StatsSnapshot>,
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
    pub rss_delta_per_cycle: Option<f64>,
    pub runners: Option<RunnersSummary>,
    /// Little's law: the throughput `concurrency` workers at the mean latency allow.
    pub bound_rps: f64,
    /// The throughput a zero-cost runtime would reach (closed loop, fixed model latency, no tools).
    pub ideal_rps: Option<f64>,
    pub kpis: Vec<Kpi>,
    pub passed: bool,
    pub alert: Option<String>,
    pub histograms: BTreeMap<String, SerialisedHist>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Derives the figures of a run of `cfg` from its phases and its window, judged by `targets`.
pub(crate) fn derive(cfg: &ScenarioConfig, targets: &KpiTargets, phases: &[PhaseRun], w: &Window) -> Figures {
    let mut rec = Recorder::default();
    let mut measured = Duration::ZERO;
    let mut issued = 0;
    for p in phases {
        rec.merge(&p.outcome.recorder);
        measured += p.outcome.measured;
        issued += p.outcome.issued;
    }
    // Memory drift counts from the end of the warm-up.
    let warmup_end_s = phases.first().map_or(0.0, |p| p.started_s + p.outcome.measured_from_s);
    let drift_samples: Vec<_> = w.samples.iter().copied().filter(|s| s.t_s >= warmup_end_s).collect();
    let drift = resources::drift_bytes_per_hour(&drift_samples);
    let drift_window_s = match (drift_samples.first(), drift_samples.last()) {
        (Some(a), Some(b)) => b.t_s - a.t_s,
        _ => 0.0,
    };

    let total = rec.total();
    let throughput = if measured.is_zero() {
        0.0
    } else {
        total as f64 / measured.as_secs_f64()
    };
    let latency = rec.latency.stats(Unit::Ms);
    let fanout = match phases {
        [base, fan] if !base.outcome.recorder.latency.is_empty() && !fan.outcome.recorder.latency.is_empty() => {
            let b = base.outcome.recorder.latency.quantile_ns(0.5) as f64 / 1e6;
            let f = fan.outcome.recorder.latency.quantile_ns(0.5) as f64 / 1e6;
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

    let histograms = DurationHist::serialise_named([
        ("latency", &rec.latency),
        ("overhead", &rec.overhead),
        ("model", &rec.model),
        ("tool", &rec.tool),
        ("agent_create", &rec.create),
        ("agent_cleanup", &rec.cleanup),
    ]);
    let runners = match (&w.before, &w.after) {
        (Some(b), Some(a)) => Some(RunnersSummary {
            created: a.runners_created - b.runners_created,
            reclaimed: a.reclaimed_runners - b.reclaimed_runners,
        }),
        _ => None,
    };
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
        rss_delta_per_cycle,
        runners,
        bound_rps,
        ideal_rps,
        kpis,
        passed,
        alert,
        histograms,
    }
}

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
