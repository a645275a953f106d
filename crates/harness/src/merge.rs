//! `aether perf merge`: several summaries of one scenario (the segments of a distributed run, or
//! runs on several machines) added up exactly.
//!
//! Nothing is averaged. The counters add, the HDR histograms add (every distribution of the
//! summary, by name), the time series add interval by interval (their intervals are aligned on
//! UTC), and every percentile, rate and KPI verdict is computed again from the sums by the same
//! code a single run uses (`figures`, `assemble`). Throughput is the requests over the union of
//! the measured windows (first due time to last completion, in UTC).
//!
//! What is per process cannot be added: memory. The merged summary keeps the highest RSS (start,
//! end, peak) and the steepest drift of its inputs, and sums their CPU time.

use std::collections::BTreeMap;

use aether_runtime::model::ProviderInfo;
use serde_json::Value;

use crate::assemble::{self, Context};
use crate::figures::{self, Drift, Measured, Window, ERROR_PREFIX, TOOL_PREFIX};
use crate::kpi::KpiTargets;
use crate::load::{Recorder, HISTOGRAMS};
use crate::scenario::{ScenarioConfig, Stop};
use crate::stored::StoredSummary;
use crate::summary::{MeasuredWindow, RunnersSummary, Summary};
use crate::target::TargetInfo;
use crate::timeline::{count_code, Timeline};

/// Why summaries cannot be merged (the message names the file).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MergeError(pub String);

fn u(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr).and_then(Value::as_u64).unwrap_or(0)
}

fn f(v: &Value, ptr: &str) -> Option<f64> {
    v.pointer(ptr).and_then(Value::as_f64)
}

/// A summary's measurements as a recorder (counters and histograms).
fn recorder(s: &StoredSummary) -> Result<Recorder, MergeError> {
    let v = &s.value;
    let err = |e: String| MergeError(format!("`{}`: {e}", s.path.display()));
    let mut r = Recorder::default();
    for (name, slot) in HISTOGRAMS.iter().zip(r.histograms_mut()) {
        if let Some(h) = s.histogram(name).map_err(err)? {
            *slot = h;
        }
    }
    for name in s.histogram_names() {
        if let Some(tool) = name.strip_prefix(TOOL_PREFIX) {
            if let Some(h) = s.histogram(&name).map_err(err)? {
                r.by_tool.insert(tool.to_owned(), h);
            }
        } else if let Some(code) = name.strip_prefix(ERROR_PREFIX) {
            if let Some(h) = s.histogram(&name).map_err(err)? {
                r.by_error.insert(code.to_owned(), h);
            }
        }
    }
    r.succeeded = u(v, "/requests/succeeded");
    r.failed = u(v, "/requests/failed");
    r.prompt_tokens = u(v, "/tokens/prompt");
    r.completion_tokens = u(v, "/tokens/completion");
    r.cost_usd = f(v, "/cost_usd").unwrap_or(0.0);
    r.sessions_created = u(v, "/sessions/created");
    r.sessions_reused = u(v, "/sessions/reused");
    r.agents_created = u(v, "/agents/created");
    r.agents_reused = u(v, "/agents/reused");
    r.agents_cleaned_up = u(v, "/agents/cleaned_up");
    r.tool_calls = u(v, "/tools/calls");
    r.streamed_turns = u(v, "/stream/turns");
    r.chunks = u(v, "/stream/chunks");
    r.drops = u(v, "/stream/drops");
    r.attachments = u(v, "/multimodal/attachments");
    r.attachments_intact = u(v, "/multimodal/intact");
    r.simulated_turns = if s.simulated() { r.succeeded } else { 0 };
    r.errors = v
        .get("errors")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    if let Some(codes) = v.pointer("/breakdowns/errors_by_code").and_then(Value::as_object) {
        for (code, n) in codes {
            count_code(&mut r.errors_by_code, code, n.as_u64().unwrap_or(0));
        }
    }
    Ok(r)
}

fn config(s: &StoredSummary) -> Result<ScenarioConfig, MergeError> {
    let c = s
        .value
        .get("config")
        .ok_or_else(|| MergeError(format!("`{}` has no config", s.path.display())))?;
    serde_json::from_value(c.clone()).map_err(|e| MergeError(format!("`{}`: config: {e}", s.path.display())))
}

/// Merges `inputs` (at least one, all of one scenario, schema 2) into one summary, judged again
/// by `targets`.
pub fn merge(inputs: &[StoredSummary], targets: &KpiTargets) -> Result<Summary, MergeError> {
    let first = inputs
        .first()
        .ok_or_else(|| MergeError("nothing to merge: give at least one summary".into()))?;
    for s in inputs {
        if s.is_endpoint() {
            return Err(MergeError(format!(
                "`{}` is an endpoint_load summary: merging those is not supported yet (they hold no time series)",
                s.path.display()
            )));
        }
        if s.version < 2 {
            return Err(MergeError(format!(
                "`{}` has schema_version {}: it holds no histograms of every distribution, so it cannot be merged exactly; re-run it with this version",
                s.path.display(),
                s.version
            )));
        }
        if s.scenario() != first.scenario() {
            return Err(MergeError(format!(
                "`{}` is of scenario `{}`, `{}` of `{}`: only runs of one scenario merge",
                s.path.display(),
                s.scenario(),
                first.path.display(),
                first.scenario()
            )));
        }
    }

    let mut cfg = config(first)?;
    let mut rec = Recorder::default();
    let (mut issued, mut cpu, mut timeline) = (0u64, 0.0f64, Timeline::default());
    let (mut base, mut fan) = (None, None);
    let (mut drift, mut drift_window) = (None::<f64>, f64::INFINITY);
    let mut windows = Vec::new();
    let (mut runners, mut started, mut ended) = (None::<RunnersSummary>, None, None);
    let mut rss = [None::<u64>; 3];
    for (i, s) in inputs.iter().enumerate() {
        let v = &s.value;
        let c = config(s)?;
        if i > 0 {
            cfg.concurrency += c.concurrency;
            cfg.warmup += c.warmup;
            cfg.rate = match (cfg.rate, c.rate) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            cfg.stop = match (cfg.stop, c.stop) {
                (Stop::Iterations(a), Stop::Iterations(b)) => Stop::Iterations(a + b),
                (Stop::DurationSecs(a), Stop::DurationSecs(b)) => Stop::DurationSecs(a.max(b)),
                (a, _) => a,
            };
        }
        rec.merge(&recorder(s)?);
        issued += u(v, "/requests/issued");
        cpu += f(v, "/resources/cpu_seconds").unwrap_or(0.0);
        for (k, ptr) in [
            "/resources/rss_start_bytes",
            "/resources/rss_end_bytes",
            "/resources/rss_peak_bytes",
        ]
        .iter()
        .enumerate()
        {
            if let Some(b) = v.pointer(ptr).and_then(Value::as_u64) {
                rss[k] = Some(rss[k].map_or(b, |a: u64| a.max(b)));
            }
        }
        if let Some(d) = f(v, "/resources/rss_drift_bytes_per_hour") {
            drift = Some(drift.map_or(d, |a: f64| a.max(d)));
            drift_window = drift_window.min(f(v, "/resources/drift_window_s").unwrap_or(0.0));
        }
        if let Some(t) = s.timeline() {
            timeline
                .merge(&t)
                .map_err(|e| MergeError(format!("`{}`: {e}", s.path.display())))?;
        }
        let err = |e: String| MergeError(format!("`{}`: {e}", s.path.display()));
        if let Some(h) = s.histogram("latency_baseline").map_err(err)? {
            base.get_or_insert_with(crate::stats::DurationHist::default).merge(&h);
        }
        if let Some(h) = s.histogram("latency_fanout").map_err(err)? {
            fan.get_or_insert_with(crate::stats::DurationHist::default).merge(&h);
        }
        if let Some(w) = v
            .get("measured")
            .and_then(|m| serde_json::from_value::<MeasuredWindow>(m.clone()).ok())
        {
            windows.push((w.start, w.end));
        }
        if let Some(r) = v.get("runners").filter(|r| !r.is_null()) {
            let prev = runners.unwrap_or(RunnersSummary {
                created: 0,
                reclaimed: 0,
            });
            runners = Some(RunnersSummary {
                created: prev.created + u(r, "/created"),
                reclaimed: prev.reclaimed + u(r, "/reclaimed"),
            });
        }
        if let Some(start) = s.started_at() {
            let end = start + chrono::Duration::milliseconds((f(v, "/duration_s").unwrap_or(0.0) * 1e3) as i64);
            started = Some(started.map_or(start, |a: chrono::DateTime<chrono::Utc>| a.min(start)));
            ended = Some(ended.map_or(end, |a: chrono::DateTime<chrono::Utc>| a.max(end)));
        }
    }
    cfg.segment = None;
    let window = MeasuredWindow::envelope(windows);
    let measured = window.map_or(std::time::Duration::ZERO, |w| {
        std::time::Duration::from_nanos((w.end - w.start).num_nanoseconds().unwrap_or(0).max(0) as u64)
    });
    let fanout_phases = base.zip(fan);
    let started_at = started.unwrap_or_else(chrono::Utc::now);
    let w = Window {
        started_at,
        duration_s: ended.map_or(0.0, |e| (e - started_at).num_milliseconds() as f64 / 1e3),
        samples: Vec::new(),
        rss_start: rss[0],
        rss_end: rss[1],
        cpu_seconds: cpu,
        runners,
        runtime_stats: None,
        rss_peak: rss[2],
        timeline,
    };
    let figures = figures::derive(
        &cfg,
        targets,
        Measured {
            rec,
            issued,
            measured,
            fanout_phases,
            window,
            drift: Drift::Given(drift, if drift_window.is_finite() { drift_window } else { 0.0 }),
        },
        &w,
    );
    let v = &first.value;
    // The slowest of all the segments.
    let mut slowest: Vec<crate::slowest::SlowRequest> = inputs
        .iter()
        .filter_map(|i| i.value.get("slowest").cloned())
        .filter_map(|v| serde_json::from_value::<Vec<crate::slowest::SlowRequest>>(v).ok())
        .flatten()
        .collect();
    slowest.sort_by(|a, b| b.latency_ms.total_cmp(&a.latency_ms));
    slowest.truncate(crate::slowest::KEEP);
    let context = Context {
        resilience: resilience(inputs),
        slowest,
        provider: ProviderInfo {
            name: v
                .pointer("/provider/name")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned(),
            simulated: inputs.iter().any(StoredSummary::simulated),
        },
        target: TargetInfo {
            kind: v
                .pointer("/target/kind")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned(),
            store: None,
        },
        call_costs: None,
        resolution: None,
        forced_expire: None,
        provenance: v
            .get("provenance")
            .and_then(|p| serde_json::from_value(p.clone()).ok())
            .unwrap_or_default(),
    };
    let mut summary = assemble::summary(&cfg, figures, w, context);
    summary.merged_from = inputs.iter().map(|s| s.path.display().to_string()).collect();
    Ok(summary)
}

/// A histogram's encoded form as its `[value, count]` pairs (two encodings of one histogram may
/// differ in layout, never in content).
fn decoded(data: &Value) -> Value {
    match data.as_str().map(crate::stats::DurationHist::decode) {
        Some(Ok(h)) => Value::from(h.recorded().map(|(v, c)| vec![v, c]).collect::<Vec<_>>()),
        _ => data.clone(),
    }
}

/// The fields `perf merge` recomputes, with histograms decoded: what a merge and the run over
/// the union of its inputs' samples must agree on.
pub fn comparable(v: &Value) -> BTreeMap<&'static str, Value> {
    [
        "requests",
        "throughput_rps",
        "latency_ms",
        "overhead_us",
        "model_ms",
        "tool_ms",
        "tokens",
        "cost_usd",
        "sessions",
        "agents",
        "stream",
        "breakdowns",
        "kpis",
        "passed",
        "histograms",
        "timeline",
        "measured",
        "littles_law",
    ]
    .into_iter()
    .map(|k| {
        let mut x = v.get(k).cloned().unwrap_or(Value::Null);
        if let Some(hists) = x.as_object_mut().filter(|_| k == "histograms") {
            for h in hists.values_mut() {
                if let Some(data) = h.get_mut("data") {
                    *data = decoded(data);
                }
            }
        }
        if let Some(rows) = x
            .get_mut("rows")
            .and_then(Value::as_array_mut)
            .filter(|_| k == "timeline")
        {
            for row in rows {
                for name in ["latency", "ttft", "itl"] {
                    if let Some(data) = row.get_mut(name) {
                        *data = decoded(data);
                    }
                }
            }
        }
        (k, x)
    })
    .collect()
}

/// The workers' retries and breaker events, added up; `None` when no worker reported any.
fn resilience(inputs: &[StoredSummary]) -> Option<aether_runtime::model::resilience::ResilienceSummary> {
    inputs
        .iter()
        .filter_map(|s| s.value.pointer("/provider/resilience"))
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .reduce(aether_runtime::model::resilience::ResilienceSummary::combined)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::figures::PhaseRun;
    use crate::load::PhaseOutcome;
    use crate::scenario::{Overrides, Segment, CATALOG};
    use crate::stored::parse_summary;
    use crate::timeline::{Clock, Intervals, Series};

    /// A seeded generator (xorshift), so the samples are the same on every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// One request's measurements.
    struct Sample {
        bucket: u64,
        latency_us: u64,
        ok: bool,
        tool: &'static str,
    }

    fn record(rec: &mut Recorder, intervals: &mut Intervals, s: &Sample) {
        let lat = Duration::from_micros(s.latency_us);
        rec.create.record(lat / 10);
        rec.turn.record(lat - lat / 10);
        if s.ok {
            rec.succeeded += 1;
            rec.latency.record(lat);
            rec.model.record(lat / 2);
            rec.tool.record(lat / 4);
            rec.overhead.record_ns(2_000 + s.latency_us % 1_000);
            rec.prompt_tokens += 10;
            rec.completion_tokens += 5;
            rec.cost_usd += 0.25;
            rec.sessions_created += 1;
            rec.cold.record(lat);
            rec.agents_created += 1;
            rec.tool_calls += 1;
            rec.by_tool.entry(s.tool.to_owned()).or_default().record(lat / 4);
            intervals.at(s.bucket).success(lat);
        } else {
            rec.failed += 1;
            rec.errors_by_code.insert(
                "model.timeout".into(),
                rec.errors_by_code.get("model.timeout").copied().unwrap_or(0) + 1,
            );
            rec.by_error.entry("model.timeout".into()).or_default().record(lat);
            intervals.at(s.bucket).failure("model.timeout", lat);
        }
    }

    /// The summary JSON of `samples` measured over `[start, end]`, as a run writes it.
    fn summary_of(cfg: &ScenarioConfig, samples: &[&Sample], start: i64, end: i64) -> Value {
        let mut rec = Recorder::default();
        let mut intervals = Intervals::default();
        samples.iter().for_each(|s| record(&mut rec, &mut intervals, s));
        let series = Series::new(Clock::start(Duration::from_secs(1)));
        series.absorb(intervals);
        let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap();
        let outcome = PhaseOutcome {
            recorder: rec,
            measured: Duration::from_millis((end - start) as u64),
            measured_from_s: 0.0,
            measured_start: Some(at(start)),
            measured_end: Some(at(end)),
            issued: samples.len() as u64,
        };
        let w = Window {
            started_at: at(start),
            duration_s: (end - start) as f64 / 1e3,
            samples: Vec::new(),
            rss_start: None,
            rss_end: None,
            cpu_seconds: 0.0,
            runners: None,
            runtime_stats: None,
            rss_peak: None,
            timeline: series.timeline(),
        };
        let phases = [PhaseRun {
            outcome,
            started_s: 0.0,
        }];
        let mut m = Measured::of_phases(&phases);
        m.drift = Drift::Given(None, 0.0);
        let figures = figures::derive(cfg, &KpiTargets::default(), m, &w);
        let ctx = Context {
            resilience: None,
            slowest: Vec::new(),
            provider: ProviderInfo {
                name: "simulated".into(),
                simulated: true,
            },
            target: TargetInfo {
                kind: "in_process".into(),
                store: None,
            },
            call_costs: None,
            resolution: None,
            forced_expire: None,
            provenance: Default::default(),
        };
        serde_json::to_value(assemble::summary(cfg, figures, w, ctx)).unwrap()
    }

    #[test]
    fn the_merge_of_segment_summaries_equals_the_summary_of_the_union_of_their_samples() {
        let spec = CATALOG.iter().find(|s| s.name == "burst_load").unwrap();
        let whole = ScenarioConfig::resolve(spec, &Overrides::default()).unwrap();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let samples: Vec<Sample> = (0..3_000)
            .map(|_| Sample {
                bucket: 1_796_000_000 + rng.next() % 8,
                latency_us: 200 + rng.next() % 250_000,
                ok: !rng.next().is_multiple_of(50),
                tool: ["calculator", "lookup", "weather"][(rng.next() % 3) as usize],
            })
            .collect();
        let n = 3u32;
        // Segment i gets every n-th sample and its own measured window inside the union's.
        let base_ms = 1_796_000_000_000i64;
        let windows = [
            (base_ms + 5, base_ms + 7_000),
            (base_ms, base_ms + 7_900),
            (base_ms + 40, base_ms + 8_000),
        ];
        let mut parts = Vec::new();
        for i in 0..n {
            let seg = Segment { index: i + 1, count: n };
            let cfg = whole.clone().segment(seg).unwrap();
            let mine: Vec<&Sample> = samples.iter().skip(i as usize).step_by(n as usize).collect();
            let (a, b) = windows[i as usize];
            let v = summary_of(&cfg, &mine, a, b);
            parts.push(parse_summary(std::path::Path::new(&format!("seg{}.json", i + 1)), &v.to_string()).unwrap());
        }
        let merged = serde_json::to_value(merge(&parts, &KpiTargets::default()).unwrap()).unwrap();
        let all: Vec<&Sample> = samples.iter().collect();
        let union = summary_of(&whole, &all, base_ms, base_ms + 8_000);
        let (m, u) = (comparable(&merged), comparable(&union));
        for (k, want) in &u {
            assert_eq!(&m[k], want, "`{k}` of the merge differs from the union's");
        }
        assert_eq!(merged["requests"]["total"], 3_000);
        assert!(
            merged["requests"]["failed"].as_u64().unwrap() > 0,
            "the errors are merged too"
        );
        assert_eq!(merged["config"]["concurrency"], union["config"]["concurrency"]);
        assert_eq!(merged["merged_from"].as_array().unwrap().len(), 3);
        // The bits that make up the comparison are real: the series has 8 rows, the tools 3.
        assert_eq!(merged["timeline"]["rows"].as_array().unwrap().len(), 8);
        assert_eq!(merged["breakdowns"]["latency_by_tool_ms"].as_object().unwrap().len(), 3);
    }

    #[test]
    fn only_one_scenario_of_schema_two_merges() {
        let p = |name: &str, text: &str| parse_summary(std::path::Path::new(name), text).unwrap();
        let a = p(
            "a.json",
            r#"{"schema_version": 2, "scenario": "burst_load", "requests": {"total": 1}, "config": {}}"#,
        );
        let b = p(
            "b.json",
            r#"{"schema_version": 2, "scenario": "chat_smoke", "requests": {"total": 1}}"#,
        );
        let e = merge(&[a.clone(), b], &KpiTargets::default()).unwrap_err();
        assert!(e.to_string().contains("`b.json` is of scenario `chat_smoke`"), "{e}");
        let old = p(
            "old.json",
            r#"{"schema_version": 1, "scenario": "burst_load", "requests": {"total": 1}}"#,
        );
        let e = merge(&[a, old], &KpiTargets::default()).unwrap_err();
        assert!(e.to_string().contains("`old.json` has schema_version 1"), "{e}");
        assert!(merge(&[], &KpiTargets::default()).is_err());
    }
}
