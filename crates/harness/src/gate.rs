//! The readiness gate (`aether perf gate`) and the history (`aether perf history`): which stored
//! runs are comparable, and when a difference is a regression rather than noise.
//!
//! **Comparable runs** share a [`RunKey`]: scenario, provider (and whether it is simulated),
//! concurrency, rate, iterations or duration, and the kind of target. The model's and the tools'
//! latency settings are *not* part of it: they belong to the system under test, so a slower model
//! against the same baseline is exactly what the gate must catch (the checklist shows them).
//!
//! **A regression** of a figure is called only when both hold:
//! * the median of the new runs is worse than the median of the baseline runs by more than the
//!   figure's threshold (10 % by default), and
//! * every new run lies beyond the baseline runs' range (all worse than the worst baseline).
//!
//! With `--repeat 3` on both sides, a single noisy run cannot fail the gate, and a real shift
//! (every run slower) cannot hide.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::compare::Better;
use crate::stored::StoredSummary;

/// What makes two runs comparable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RunKey {
    pub scenario: String,
    pub provider: String,
    pub simulated: bool,
    pub concurrency: String,
    pub rate: String,
    pub stop: String,
    pub target: String,
}

impl RunKey {
    pub fn of(s: &StoredSummary) -> Self {
        let v = &s.value;
        let text = |p: &str| match v.pointer(p) {
            None | Some(Value::Null) => "-".to_owned(),
            Some(Value::String(x)) => x.clone(),
            Some(x) => x.to_string(),
        };
        let provider = match v.get("provider") {
            Some(Value::Object(_)) => text("/provider/name"),
            _ => text("/provider"),
        };
        // "http http://127.0.0.1:8080" → "http": the kind of target, not its address.
        let target = text("/target/kind").split_whitespace().next().unwrap_or("-").to_owned();
        Self {
            scenario: s.scenario().to_owned(),
            provider,
            simulated: s.simulated(),
            concurrency: text("/config/concurrency"),
            rate: text("/config/rate"),
            stop: text("/config/stop"),
            target,
        }
    }

    /// A one-line label.
    pub fn label(&self) -> String {
        format!(
            "{} · {}{} · concurrency {} · rate {} · {} · {}",
            self.scenario,
            self.provider,
            if self.simulated { " (SIMULATED)" } else { "" },
            self.concurrency,
            self.rate,
            self.stop.replace(['{', '}', '"'], ""),
            self.target
        )
    }
}

/// Which of `perf compare`'s figures ([`crate::compare::METRICS`]) the gate judges, by JSON
/// pointer. Tail figures of tiny values (overhead P99), tokens, memory and CPU are compared by
/// `perf compare` but not gated: they vary with the machine and the run more than with the code.
const GATED_POINTERS: [&str; 9] = [
    "/latency_ms/p50",
    "/latency_ms/p95",
    "/latency_ms/p99",
    "/throughput_rps",
    "/requests/error_rate",
    "/overhead_us/p50",
    "/agents/create_ms/p50",
    "/tools/fanout_ratio",
    "/stream/ttft_ms/p50",
];

/// The figures the gate compares: label, JSON pointer, direction.
pub fn gated() -> impl Iterator<Item = &'static (&'static str, &'static str, Better)> {
    crate::compare::METRICS
        .iter()
        .filter(|(_, p, _)| GATED_POINTERS.contains(p))
}

/// The threshold of a figure: `overrides` by label or pointer, else `default_pct`.
pub fn threshold(label: &str, pointer: &str, overrides: &BTreeMap<String, f64>, default_pct: f64) -> f64 {
    overrides
        .get(label)
        .or_else(|| overrides.get(pointer))
        .or_else(|| overrides.get(pointer.trim_start_matches('/').replace('/', ".").as_str()))
        .copied()
        .unwrap_or(default_pct)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// One figure of one scenario, judged.
#[derive(Debug, Clone, Serialize)]
pub struct FigureCheck {
    pub label: &'static str,
    pub pointer: &'static str,
    pub new: Vec<f64>,
    pub baseline: Vec<f64>,
    pub new_median: f64,
    pub baseline_median: Option<f64>,
    /// Positive: worse by that many percent.
    pub regression_pct: Option<f64>,
    pub threshold_pct: f64,
    /// Every new run beyond the baseline's range (in the worse direction).
    pub beyond_range: bool,
    pub regressed: bool,
}

/// Judges one figure: `new` runs against `baseline` runs.
pub fn check_figure(
    label: &'static str,
    pointer: &'static str,
    better: Better,
    new: Vec<f64>,
    baseline: Vec<f64>,
    threshold_pct: f64,
) -> FigureCheck {
    let new_median = median(&new);
    let baseline_median = (!baseline.is_empty()).then(|| median(&baseline));
    let worse = |a: f64, b: f64| match better {
        Better::Lower => a > b,
        Better::Higher => a < b,
    };
    let beyond_range = !baseline.is_empty() && new.iter().all(|n| baseline.iter().all(|b| worse(*n, *b)));
    let regression_pct = baseline_median.map(|b| {
        if b == 0.0 {
            // From nothing to something (errors where there were none): worse by "infinitely"
            // much, shown as 100 %.
            if worse(new_median, b) {
                100.0
            } else {
                0.0
            }
        } else {
            let change = (new_median - b) / b.abs() * 100.0;
            match better {
                Better::Lower => change,
                Better::Higher => -change,
            }
        }
    });
    let regressed = beyond_range && regression_pct.is_some_and(|r| r > threshold_pct);
    FigureCheck {
        label,
        pointer,
        new,
        baseline,
        new_median,
        baseline_median,
        regression_pct,
        threshold_pct,
        beyond_range,
        regressed,
    }
}

/// One KPI of one scenario over the N runs.
#[derive(Debug, Clone, Serialize)]
pub struct KpiCheck {
    pub name: String,
    pub target: String,
    pub unit: String,
    pub values: Vec<Option<f64>>,
    pub failed_runs: usize,
    pub judged_runs: usize,
    /// Passes unless more than half of the runs failed it; `None` when no run could judge it.
    pub pass: Option<bool>,
}

/// Every KPI of `runs` (the same scenario, repeated).
pub fn check_kpis(runs: &[StoredSummary]) -> Vec<KpiCheck> {
    let mut out: Vec<KpiCheck> = Vec::new();
    for r in runs {
        for k in r.kpis() {
            let c = match out.iter_mut().find(|c| c.name == k.name) {
                Some(c) => c,
                None => {
                    out.push(KpiCheck {
                        name: k.name.clone(),
                        target: k.target.clone(),
                        unit: k.unit.clone(),
                        values: Vec::new(),
                        failed_runs: 0,
                        judged_runs: 0,
                        pass: None,
                    });
                    out.last_mut().expect("just pushed")
                }
            };
            c.values.push(k.value);
            if let Some(p) = k.pass {
                c.judged_runs += 1;
                c.failed_runs += usize::from(!p);
            }
        }
    }
    for c in &mut out {
        c.pass = (c.judged_runs > 0).then(|| c.failed_runs * 2 <= c.judged_runs);
    }
    out
}

/// One scenario of the checklist.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioCheck {
    pub scenario: String,
    pub key: RunKey,
    pub runs: Vec<String>,
    pub baselines: Vec<String>,
    /// The system under test's latency settings (not part of the match): (model, tool) ms.
    pub settings: String,
    pub kpis: Vec<KpiCheck>,
    pub figures: Vec<FigureCheck>,
}

impl ScenarioCheck {
    pub fn passed(&self) -> bool {
        self.kpis.iter().all(|k| k.pass != Some(false)) && self.figures.iter().all(|f| !f.regressed)
    }
}

/// The newest comparable runs in `stored` for `key`: up to `n` (at least one) of the newest
/// ones, newest first.
pub fn baselines_for<'a>(key: &RunKey, stored: &'a [StoredSummary], n: usize) -> Vec<&'a StoredSummary> {
    let mut same: Vec<&StoredSummary> = stored.iter().filter(|s| &RunKey::of(s) == key).collect();
    same.sort_by_key(|s| std::cmp::Reverse(s.started_at()));
    same.truncate(n.max(1));
    same
}

fn settings(s: &StoredSummary) -> String {
    let v = |p: &str| match s.value.pointer(p) {
        None | Some(Value::Null) => "default".to_owned(),
        Some(x) => format!("{x} ms"),
    };
    format!(
        "model {} · tools {} · time scale {}",
        v("/config/model_latency_ms"),
        v("/config/tool_latency_ms"),
        s.value
            .pointer("/config/time_scale")
            .map_or("-".into(), |x| x.to_string())
    )
}

/// Judges one scenario's new runs against the baselines (already chosen by [`baselines_for`]).
pub fn check_scenario(
    runs: &[StoredSummary],
    baselines: &[&StoredSummary],
    overrides: &BTreeMap<String, f64>,
    default_pct: f64,
) -> ScenarioCheck {
    let first = &runs[0];
    let figures = gated()
        .filter_map(|(label, ptr, better)| {
            let new: Vec<f64> = runs.iter().filter_map(|r| r.number(ptr)).collect();
            if new.is_empty() {
                return None;
            }
            let base: Vec<f64> = baselines.iter().filter_map(|b| b.number(ptr)).collect();
            Some(check_figure(
                label,
                ptr,
                *better,
                new,
                base,
                threshold(label, ptr, overrides, default_pct),
            ))
        })
        .collect();
    ScenarioCheck {
        scenario: first.scenario().to_owned(),
        key: RunKey::of(first),
        runs: runs.iter().map(|r| r.path.display().to_string()).collect(),
        baselines: baselines.iter().map(|b| b.path.display().to_string()).collect(),
        settings: settings(first),
        kpis: check_kpis(runs),
        figures,
    }
}

/// The checklist as Markdown (for a pull-request comment).
pub fn markdown(checks: &[ScenarioCheck], simulated: bool) -> String {
    let mut s = String::new();
    let passed = checks.iter().all(ScenarioCheck::passed);
    let _ = writeln!(
        s,
        "## Performance readiness checklist: {}\n",
        if passed { "✅ PASS" } else { "❌ FAIL" }
    );
    if simulated {
        let _ = writeln!(
            s,
            "_SIMULATED: figures from the simulated model; no real model was called._\n"
        );
    }
    let _ = writeln!(s, "| scenario | check | target / baseline | value | verdict |");
    let _ = writeln!(s, "|---|---|---|---:|---|");
    for c in checks {
        for k in &c.kpis {
            let values: Vec<String> = k
                .values
                .iter()
                .map(|v| v.map_or("–".into(), |v| format!("{v:.4}")))
                .collect();
            let verdict = match k.pass {
                Some(true) => "✅ pass".to_owned(),
                Some(false) => format!("❌ fail ({} of {} runs)", k.failed_runs, k.judged_runs),
                None => "n/a (not judged)".to_owned(),
            };
            let _ = writeln!(
                s,
                "| {} | KPI {} | {} | {} {} | {verdict} |",
                c.scenario,
                k.name,
                k.target,
                values.join(", "),
                k.unit
            );
        }
        for f in &c.figures {
            let base = f.baseline_median.map_or("no baseline".to_owned(), |b| {
                format!(
                    "median {} (n={}), threshold {} %",
                    fmt(b),
                    f.baseline.len(),
                    f.threshold_pct
                )
            });
            let verdict = match (f.regressed, f.regression_pct) {
                (true, Some(r)) => format!("❌ regression {r:+.1} %"),
                (false, Some(r)) if r > f.threshold_pct => format!("⚠️ {r:+.1} % (within the baseline's range: noise)"),
                (false, Some(r)) => format!("✅ {r:+.1} %"),
                (_, None) => "✅ (first run)".to_owned(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {base} | median {} (n={}) | {verdict} |",
                c.scenario,
                f.label,
                fmt(f.new_median),
                f.new.len()
            );
        }
    }
    let _ = writeln!(s);
    for c in checks {
        let _ = writeln!(
            s,
            "- `{}`: {} · {} · baselines: {}",
            c.scenario,
            c.key.label(),
            c.settings,
            if c.baselines.is_empty() {
                "none (this run becomes the baseline)".to_owned()
            } else {
                c.baselines.join(", ")
            }
        );
    }
    s
}

fn fmt(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.5}")
    }
}

/// Stored runs grouped by [`RunKey`], oldest first in each group (the history).
pub fn group(stored: &[StoredSummary]) -> BTreeMap<RunKey, Vec<&StoredSummary>> {
    let mut g: BTreeMap<RunKey, Vec<&StoredSummary>> = BTreeMap::new();
    for s in stored {
        g.entry(RunKey::of(s)).or_default().push(s);
    }
    for runs in g.values_mut() {
        runs.sort_by_key(|s| s.started_at());
    }
    g
}

/// The figures a history shows for each run.
pub const HISTORY: &[(&str, &str)] = &[
    ("p50 ms", "/latency_ms/p50"),
    ("p95 ms", "/latency_ms/p95"),
    ("p99 ms", "/latency_ms/p99"),
    ("req/s", "/throughput_rps"),
    ("errors", "/requests/error_rate"),
    ("overhead p50 µs", "/overhead_us/p50"),
];

/// The history as Markdown: a table per group of comparable runs.
pub fn history_markdown(stored: &[StoredSummary]) -> String {
    let mut s = String::new();
    for (key, runs) in group(stored) {
        let _ = writeln!(s, "### {}\n", key.label());
        let _ = write!(s, "| started (UTC) | commit | run |");
        for (label, _) in HISTORY {
            let _ = write!(s, " {label} |");
        }
        let _ = writeln!(s, " KPIs |");
        let _ = writeln!(s, "|---|---|---|{}---|", "---:|".repeat(HISTORY.len()));
        for r in runs {
            let kpis = r.kpis();
            let failed = kpis.iter().filter(|k| k.pass == Some(false)).count();
            let _ = write!(
                s,
                "| {} | {} | {} |",
                r.started_at()
                    .map_or("?".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
                r.str_at("/provenance/git_commit")
                    .filter(|c| !c.is_empty())
                    .unwrap_or("–"),
                r.label()
            );
            for (_, ptr) in HISTORY {
                let _ = write!(s, " {} |", r.number(ptr).map_or("–".into(), fmt));
            }
            let _ = writeln!(
                s,
                " {} |",
                if failed == 0 {
                    format!("✅ {}", kpis.len())
                } else {
                    format!("❌ {failed} of {}", kpis.len())
                }
            );
        }
        let _ = writeln!(s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regression_needs_the_median_beyond_the_threshold_and_every_run_beyond_the_range() {
        let judge = |better: Better, new: &[f64], base: &[f64]| {
            check_figure("f", "/f", better, new.to_vec(), base.to_vec(), 10.0)
        };
        let lower = |new: &[f64], base: &[f64]| judge(Better::Lower, new, base);
        // Unchanged: medians equal.
        assert!(!lower(&[10.0, 10.4, 9.8], &[10.1, 9.9, 10.2]).regressed);
        // Median 20 % worse, but one new run inside the baseline's range: noise.
        let c = lower(&[12.0, 12.1, 10.0], &[10.0, 9.9, 10.1]);
        assert!(!c.beyond_range && !c.regressed, "{c:?}");
        // Every run slower and the median 100 % worse: a regression.
        let c = lower(&[20.0, 20.5, 19.9], &[10.0, 9.9, 10.1]);
        assert!(c.regressed && (c.regression_pct.unwrap() - 100.0).abs() < 1.0, "{c:?}");
        // Beyond the range, but within the threshold.
        let c = lower(&[10.5, 10.6, 10.7], &[10.0, 10.1, 10.2]);
        assert!(c.beyond_range && !c.regressed);
        // Higher is better: throughput halved.
        assert!(judge(Better::Higher, &[50.0, 51.0, 49.0], &[100.0, 99.0, 101.0]).regressed);
        // No baseline: nothing to regress against.
        let c = lower(&[10.0], &[]);
        assert!(!c.regressed && c.regression_pct.is_none());
        // Errors where there were none.
        assert!(lower(&[0.1, 0.2, 0.1], &[0.0, 0.0]).regressed);
    }

    #[test]
    fn thresholds_can_be_set_per_figure() {
        let mut o = BTreeMap::new();
        o.insert("latency_ms.p99".to_owned(), 25.0);
        assert_eq!(threshold("latency p99 (ms)", "/latency_ms/p99", &o, 10.0), 25.0);
        assert_eq!(threshold("latency p50 (ms)", "/latency_ms/p50", &o, 10.0), 10.0);
    }

    #[test]
    fn a_kpi_fails_when_most_runs_fail_it() {
        let run = |pass: bool| {
            let v = serde_json::json!({"schema_version": 2, "scenario": "s", "requests": {"total": 1},
                "kpis": [{"name": "p95", "target": "< 1 s", "value": 0.5, "unit": "s", "pass": pass}]});
            crate::stored::parse_summary(std::path::Path::new("r.json"), &v.to_string()).unwrap()
        };
        assert_eq!(check_kpis(&[run(true), run(false), run(true)])[0].pass, Some(true));
        assert_eq!(check_kpis(&[run(false), run(false), run(true)])[0].pass, Some(false));
    }
}
