//! `aether perf compare`: the deltas between two summaries as a Markdown table, with the
//! direction of each change, fit for a pull-request comment.

use std::fmt::Write as _;

use serde_json::Value;

/// Whether a bigger number is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// The metrics compared: label, JSON pointer, direction.
pub const METRICS: &[(&str, &str, Better)] = &[
    ("latency p50 (ms)", "/latency_ms/p50", Better::Lower),
    ("latency p95 (ms)", "/latency_ms/p95", Better::Lower),
    ("latency p99 (ms)", "/latency_ms/p99", Better::Lower),
    ("throughput (req/s)", "/throughput_rps", Better::Higher),
    ("error rate", "/requests/error_rate", Better::Lower),
    ("framework overhead p50 (µs)", "/overhead_us/p50", Better::Lower),
    ("framework overhead p99 (µs)", "/overhead_us/p99", Better::Lower),
    ("model p50 (ms)", "/model_ms/p50", Better::Lower),
    ("tools p50 (ms)", "/tool_ms/p50", Better::Lower),
    ("agent create p50 (ms)", "/agents/create_ms/p50", Better::Lower),
    ("time to first chunk p50 (ms)", "/stream/ttft_ms/p50", Better::Lower),
    ("tool fan-out ratio", "/tools/fanout_ratio", Better::Lower),
    ("session reuse ratio", "/sessions/reuse_ratio", Better::Higher),
    ("agent reuse ratio", "/agents/reuse_ratio", Better::Higher),
    ("tokens total", "/tokens/total", Better::Lower),
    ("cost (USD)", "/cost_usd", Better::Lower),
    ("peak RSS (bytes)", "/resources/rss_peak_bytes", Better::Lower),
    ("RSS drift (bytes/h)", RSS_DRIFT, Better::Lower),
    ("CPU (s)", "/resources/cpu_seconds", Better::Lower),
];

/// One compared metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    pub label: &'static str,
    pub base: f64,
    pub new: f64,
    /// Relative change in percent (`None` when the base is zero).
    pub change_pct: Option<f64>,
    /// Positive: worse by that many percent; negative: better.
    pub regression_pct: Option<f64>,
}

/// The RSS drift's pointer: compared only where both runs' drift KPI was judged.
const RSS_DRIFT: &str = "/resources/rss_drift_bytes_per_hour";

/// Whether the run's `rss_drift` KPI was judged (a window long enough: a per-hour slope over
/// seconds of start-up is noise, and two such slopes differ by chance). A summary without that
/// KPI (an older one) is taken as judged.
fn drift_judged(summary: &Value) -> bool {
    summary
        .get("kpis")
        .and_then(Value::as_array)
        .and_then(|kpis| kpis.iter().find(|k| k["name"] == "rss_drift"))
        .is_none_or(|k| !k["value"].is_null())
}

pub fn deltas(base: &Value, new: &Value) -> Vec<Delta> {
    METRICS
        .iter()
        .filter(|(_, ptr, _)| *ptr != RSS_DRIFT || (drift_judged(base) && drift_judged(new)))
        .filter_map(|(label, ptr, better)| {
            let b = base.pointer(ptr)?.as_f64()?;
            let n = new.pointer(ptr)?.as_f64()?;
            let change_pct = (b != 0.0).then(|| (n - b) / b.abs() * 100.0);
            let regression_pct = change_pct.map(|c| if *better == Better::Lower { c } else { -c });
            Some(Delta {
                label,
                base: b,
                new: n,
                change_pct,
                regression_pct,
            })
        })
        .collect()
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.6}")
    }
}

/// The Markdown report; `threshold_pct` marks regressions beyond it.
pub fn markdown(base: &Value, new: &Value, base_name: &str, new_name: &str, threshold_pct: Option<f64>) -> String {
    let mut s = String::new();
    let scenario = |v: &Value| v.get("scenario").and_then(Value::as_str).unwrap_or("?").to_owned();
    let _ = writeln!(s, "### Performance comparison: `{}`\n", scenario(new));
    let _ = writeln!(s, "Base: `{base_name}` · New: `{new_name}`\n");
    let sim = |v: &Value| v.get("simulated").and_then(Value::as_bool).unwrap_or(false);
    if sim(base) || sim(new) {
        let _ = writeln!(s, "_Figures from the simulated model (no real model was called)._\n");
    }
    if scenario(base) != scenario(new) {
        let _ = writeln!(
            s,
            "**Warning:** the summaries are of different scenarios (`{}` vs `{}`).\n",
            scenario(base),
            scenario(new)
        );
    }
    let _ = writeln!(s, "| metric | base | new | change | |");
    let _ = writeln!(s, "|---|---:|---:|---:|---|");
    for d in deltas(base, new) {
        let change = d.change_pct.map_or("n/a".to_owned(), |c| format!("{c:+.1} %"));
        let verdict = match d.regression_pct {
            Some(r) if threshold_pct.is_some_and(|t| r > t) => "❌ regression",
            Some(r) if r > 0.5 => "worse",
            Some(r) if r < -0.5 => "better",
            Some(_) => "same",
            None if d.new == d.base => "same",
            None => "changed",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {change} | {verdict} |",
            d.label,
            fmt_num(d.base),
            fmt_num(d.new)
        );
    }
    s
}

/// Metrics worse by more than `threshold_pct`.
pub fn regressions(base: &Value, new: &Value, threshold_pct: f64) -> Vec<Delta> {
    deltas(base, new)
        .into_iter()
        .filter(|d| d.regression_pct.is_some_and(|r| r > threshold_pct))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary(drift: f64, judged: bool) -> Value {
        json!({
            "latency_ms": {"p50": 100.0},
            "resources": {"rss_drift_bytes_per_hour": drift},
            "kpis": [{"name": "rss_drift", "value": if judged { json!(drift / 1e6) } else { Value::Null }}],
        })
    }

    fn labels(base: &Value, new: &Value) -> Vec<&'static str> {
        deltas(base, new).into_iter().map(|d| d.label).collect()
    }

    #[test]
    fn the_rss_drift_is_compared_only_where_both_runs_judged_it() {
        let judged = (summary(1e6, true), summary(3e6, true));
        assert_eq!(
            labels(&judged.0, &judged.1),
            ["latency p50 (ms)", "RSS drift (bytes/h)"]
        );
        let regressed = regressions(&judged.0, &judged.1, 10.0);
        assert_eq!(regressed.len(), 1, "a judged drift that tripled is a regression");
        // A 10-s run's slope of start-up noise: neither shown nor a regression.
        let short = summary(3e9, false);
        assert_eq!(labels(&judged.0, &short), ["latency p50 (ms)"]);
        assert_eq!(labels(&short, &judged.1), ["latency p50 (ms)"]);
        assert!(regressions(&judged.0, &short, 10.0).is_empty());
        // An older summary without the KPI still compares its drift.
        let old = json!({"resources": {"rss_drift_bytes_per_hour": 2e6}});
        assert_eq!(labels(&old, &judged.1), ["RSS drift (bytes/h)"]);
    }
}
