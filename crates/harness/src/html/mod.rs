//! `aether perf report`: one self-contained HTML file from one or more summaries.
//!
//! No script, no font, no request of any kind: the charts are inline SVG (`svg`) and a
//! Content-Security-Policy of `default-src 'none'` makes the browser refuse anything else, so the
//! file reads the same offline, attached to a ticket, or years later.
//!
//! Summaries are grouped by scenario, a section each; runs of one scenario are overlaid, and
//! deltas are against the first of the group (the `--baseline` when given). A section holds:
//! provenance (with **SIMULATED** when the model was), KPI tiles (target, value, pass/fail) of the
//! newest run, percentile tables (any percentiles, from the HDR histograms) with a
//! percentile-spectrum chart on a log axis, the time series (throughput, latency percentiles,
//! errors, in-flight, RSS and CPU of the client, and of the server when it was read), the time
//! breakdown of a turn, the breakdowns by phase, tool and error code, and what is particular to
//! the scenario (TTFT/ITL/TPOT and goodput for endpoint_load, chunk gaps and approvals for
//! stream_probe, fan-out and per-call costs for tool_regression).

mod breakdowns;
mod history;
mod svg;

use std::fmt::Write as _;

use serde_json::Value;

use crate::stats::DurationHist;
use crate::stored::StoredSummary;
use crate::timeline::Timeline;
use svg::escape;
use svg::{chart, Line, XAxis};

pub use history::history;

/// The percentiles of the tables by default.
pub const DEFAULT_PERCENTILES: [f64; 5] = [50.0, 90.0, 95.0, 99.0, 99.9];

/// One run in the report.
struct Run<'a> {
    label: String,
    s: &'a StoredSummary,
}

/// The distributions a report tables and charts: (histogram name, label, divisor to the unit).
const METRICS: &[(&str, &str, f64)] = &[
    ("latency", "latency (ms)", 1e6),
    ("turn", "turn step (ms)", 1e6),
    ("agent_create", "agent create (ms)", 1e6),
    ("model", "model (ms)", 1e6),
    ("tool", "tools (ms)", 1e6),
    ("overhead", "framework overhead (µs)", 1e3),
    ("ttft", "time to first chunk / token (ms)", 1e6),
    ("chunk_gap", "chunk gap (ms)", 1e6),
    ("itl", "inter-token latency (ms)", 1e6),
    ("tpot", "time per output token (ms)", 1e6),
    ("e2e", "end to end (ms)", 1e6),
    ("approval", "approval latency (ms)", 1e6),
];

/// The v1 Stats field of a histogram, for summaries without histograms.
fn stats_field(hist: &str) -> &str {
    match hist {
        "latency" => "latency_ms",
        "overhead" => "overhead_us",
        "model" => "model_ms",
        "tool" => "tool_ms",
        "ttft" => "ttft_ms",
        "itl" => "itl_ms",
        "tpot" => "tpot_ms",
        "e2e" => "e2e_ms",
        _ => "",
    }
}

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:16px 24px}header h1{margin:0 0 4px;font-size:20px}
main{padding:8px 24px 40px}section.scenario{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:16px 0;padding:8px 18px 18px}
h2{font-size:18px;margin:10px 0}h3{font-size:15px;margin:18px 0 6px;color:#394150}
table{border-collapse:collapse;margin:6px 0;font-variant-numeric:tabular-nums}th,td{border-bottom:1px solid #e6e9ee;padding:3px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f0f2f5;font-weight:600}
.sim{display:inline-block;background:#b00020;color:#fff;font-weight:700;padding:2px 8px;border-radius:3px;letter-spacing:.04em}
.tiles{display:flex;flex-wrap:wrap;gap:8px}.tile{border:1px solid #dde1e7;border-left:6px solid #999;border-radius:4px;padding:6px 10px;min-width:170px}
.tile.pass{border-left-color:#2e7d32}.tile.fail{border-left-color:#c62828;background:#fff5f5}.tile .v{font-size:20px;font-weight:600}.tile .n{font-weight:600}
.tile .t,.tile .d{color:#5b6472;font-size:12px}.verdict{font-weight:700}.pass .verdict{color:#2e7d32}.fail .verdict{color:#c62828}
.charts{display:flex;flex-wrap:wrap;gap:10px}svg.chart{background:#fff;border:1px solid #e6e9ee;border-radius:4px;font-size:10px}
svg .grid{stroke:#eceff3}svg .ct{font-size:12px;font-weight:600}svg .legend{font-size:10px}svg .nodata{fill:#999}
.worse{color:#c62828}.better{color:#2e7d32}code{background:#f0f2f5;padding:0 3px;border-radius:2px}.note{color:#5b6472}
"#;

/// Renders the report of `summaries` (and `baseline`, drawn first in its scenario's section).
pub fn render(summaries: &[StoredSummary], baseline: Option<&StoredSummary>, percentiles: &[f64]) -> String {
    let mut groups: Vec<(String, Vec<Run>)> = Vec::new();
    let all = baseline
        .map(|b| (format!("baseline: {}", b.label()), b))
        .into_iter()
        .chain(summaries.iter().map(|s| (s.label(), s)));
    for (label, s) in all {
        let run = Run { label, s };
        match groups.iter_mut().find(|(name, _)| name == s.scenario()) {
            Some((_, runs)) => runs.push(run),
            None => groups.push((s.scenario().to_owned(), vec![run])),
        }
    }
    let simulated = summaries.iter().chain(baseline).any(StoredSummary::simulated);
    let mut h = String::with_capacity(256 * 1024);
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Aether Frame performance report</title><style>{STYLE}</style></head><body>
<header><h1>Aether Frame performance report</h1><div>{} summar{} · {} scenario{} · generated {} by aether {}{}</div></header><main>"#,
        summaries.len() + usize::from(baseline.is_some()),
        if summaries.len() + usize::from(baseline.is_some()) == 1 {
            "y"
        } else {
            "ies"
        },
        groups.len(),
        if groups.len() == 1 { "" } else { "s" },
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC"),
        env!("CARGO_PKG_VERSION"),
        if simulated {
            r#" · <span class="sim" id="simulated-banner">SIMULATED</span> figures from the simulated model: no real model was called"#
        } else {
            ""
        }
    );
    if groups.len() > 1 {
        h.push_str("<nav><p>");
        let links: Vec<String> = groups
            .iter()
            .map(|(name, _)| format!(r##"<a href="#scenario-{0}">{0}</a>"##, escape(name)))
            .collect();
        let _ = write!(h, "{}</p></nav>", links.join(" · "));
    }
    for (name, runs) in &groups {
        section(&mut h, name, runs, percentiles);
    }
    h.push_str("</main></body></html>\n");
    h
}

fn section(h: &mut String, name: &str, runs: &[Run], percentiles: &[f64]) {
    let _ = write!(
        h,
        r#"<section class="scenario" id="scenario-{0}"><h2>{0}</h2>"#,
        escape(name)
    );
    provenance(h, runs);
    profiles(h, runs);
    if let Some(newest) = runs.last() {
        tiles(h, newest, runs.first().filter(|_| runs.len() > 1));
    }
    percentile_tables(h, runs, percentiles);
    over_time(h, runs);
    breakdowns::turn_breakdown(h, runs);
    breakdowns::breakdowns(h, runs);
    breakdowns::particular(h, name, runs);
    h.push_str("</section>");
}

/// Links to the CPU profiles taken with the runs (files beside their summaries).
fn profiles(h: &mut String, runs: &[Run]) {
    let links: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            let p = r.s.value.get("cpu_profile")?;
            let s = |k: &str| escape(p.get(k).and_then(Value::as_str).unwrap_or(""));
            Some(format!(
                r#"<li>{}: <a class="cpu-profile" href="{}">flame graph</a> · <a href="{}">pprof</a> ({} samples; {})</li>"#,
                escape(&r.label),
                s("flamegraph"),
                s("pprof"),
                p.get("samples").and_then(Value::as_u64).unwrap_or(0),
                s("note")
            ))
        })
        .collect();
    if !links.is_empty() {
        let _ = write!(h, "<h3>CPU profiles</h3><ul class=\"profiles\">{}</ul>", links.concat());
    }
}

fn provenance(h: &mut String, runs: &[Run]) {
    h.push_str("<h3>Provenance</h3><table class=\"provenance\"><tr><th>run</th><th>model</th><th>started (UTC)</th><th>duration</th><th>target</th><th>concurrency</th><th>stop</th><th>rate</th><th>model / tool latency</th><th>commit</th><th>machine</th><th>command</th></tr>");
    for r in runs {
        let v = &r.s.value;
        let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("").to_owned();
        let n = |p: &str| v.pointer(p).map(|x| x.to_string()).unwrap_or_else(|| "–".into());
        // A runtime summary has provider {name, model}; endpoint_load has provider and model.
        let either = |a: &str, b: &str| if s(a).is_empty() { s(b) } else { s(a) };
        let model = format!(
            "{}{} ({})",
            if r.s.simulated() {
                r#"<span class="sim">SIMULATED</span> "#
            } else {
                ""
            },
            escape(&either("/provider/model", "/model")),
            escape(&either("/provider/name", "/provider"))
        );
        let stop = v
            .pointer("/config/stop")
            .map(|x| x.to_string().replace(['{', '}', '"'], ""))
            .unwrap_or_else(|| n("/requests/total"));
        let lat = format!(
            "{} / {} ms",
            v.pointer("/config/model_latency_ms")
                .filter(|x| !x.is_null())
                .map_or("default".into(), |x| x.to_string()),
            v.pointer("/config/tool_latency_ms")
                .filter(|x| !x.is_null())
                .map_or("default".into(), |x| x.to_string())
        );
        let machine = format!(
            "{} {} · {} cpus",
            s("/provenance/host"),
            s("/provenance/os"),
            n("/provenance/cpus")
        );
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{model}</td><td>{}</td><td>{:.1} s</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td></tr>",
            escape(&r.label),
            r.s.started_at().map_or_else(|| escape(&s("/started_at")), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
            v.get("duration_s").and_then(Value::as_f64).unwrap_or(0.0),
            escape(&s("/target/kind")),
            n("/config/concurrency"),
            escape(&stop),
            v.pointer("/config/rate").filter(|x| !x.is_null()).map_or("closed loop".into(), |x| format!("{x} /s")),
            lat,
            escape(&s("/provenance/git_commit")),
            escape(&machine),
            escape(&s("/provenance/command")),
        );
    }
    h.push_str("</table>");
}

fn fmt_value(v: f64) -> String {
    // Whole numbers (counts) and large ones without decimals.
    if (v.fract() == 0.0 && v.abs() < 1e15) || v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

fn tiles(h: &mut String, r: &Run, base: Option<&Run>) {
    let kpis = r.s.kpis();
    if kpis.is_empty() {
        return;
    }
    let base_kpis = base.map(|b| b.s.kpis()).unwrap_or_default();
    let _ = write!(h, "<h3>KPIs of {}</h3><div class=\"tiles\">", escape(&r.label));
    for k in &kpis {
        let (class, verdict) = match k.pass {
            Some(true) => ("pass", "PASS"),
            Some(false) => ("fail", "FAIL"),
            None => ("na", "not judged"),
        };
        let value = k.value.map_or("–".to_owned(), fmt_value);
        let delta = k
            .value
            .zip(base_kpis.iter().find(|b| b.name == k.name).and_then(|b| b.value))
            .filter(|(_, b)| *b != 0.0)
            .map(|(v, b)| {
                format!(
                    "<div class=\"d\">{:+.1} % vs first run</div>",
                    (v - b) / b.abs() * 100.0
                )
            })
            .unwrap_or_default();
        let _ = write!(
            h,
            r#"<div class="tile {class}" data-kpi="{}" data-value="{}"><div class="n">{}</div><div class="v">{value} <small>{}</small></div><div class="t">target {}</div><div class="verdict">{verdict}</div>{}{delta}</div>"#,
            escape(&k.name),
            k.value.map_or(String::new(), |v| v.to_string()),
            escape(&k.name),
            escape(&k.unit),
            escape(&k.target),
            k.note
                .as_deref()
                .map(|n| format!("<div class=\"t\">{}</div>", escape(n)))
                .unwrap_or_default()
        );
    }
    h.push_str("</div>");
}

/// Percentile `p` (0..100) of a histogram, in the metric's unit.
fn pct(hist: &DurationHist, p: f64, div: f64) -> f64 {
    hist.quantile_ns(p / 100.0) as f64 / div
}

fn delta_cell(v: f64, base: Option<f64>) -> String {
    match base {
        Some(b) if b > 0.0 => {
            let d = (v - b) / b * 100.0;
            let class = if d > 1.0 {
                "worse"
            } else if d < -1.0 {
                "better"
            } else {
                ""
            };
            format!(r#"{} <small class="{class}">{d:+.1} %</small>"#, fmt_value(v))
        }
        _ => fmt_value(v),
    }
}

fn percentile_tables(h: &mut String, runs: &[Run], percentiles: &[f64]) {
    h.push_str("<h3>Percentiles</h3>");
    let mut spectrum = Vec::new();
    // endpoint_load's latency is its end-to-end time, tabled as `e2e`.
    let all_endpoint = runs.iter().all(|r| r.s.is_endpoint());
    for (hist_name, label, div) in METRICS {
        if *hist_name == "latency" && all_endpoint {
            continue;
        }
        let rows: Vec<(&Run, Option<DurationHist>)> = runs
            .iter()
            .map(|r| (r, r.s.histogram(hist_name).ok().flatten()))
            .collect();
        let any_hist = rows.iter().any(|(_, x)| x.as_ref().is_some_and(|x| !x.is_empty()));
        let field = stats_field(hist_name);
        let any_stats = !field.is_empty()
            && runs
                .iter()
                .any(|r| r.s.number(&format!("/{field}/count")).unwrap_or(0.0) > 0.0);
        if !any_hist && !any_stats {
            continue;
        }
        let _ = write!(
            h,
            r#"<table class="percentiles" data-metric="{hist_name}"><tr><th>{}</th>"#,
            escape(label)
        );
        for p in percentiles {
            let _ = write!(h, "<th>P{p}</th>");
        }
        h.push_str("<th>max</th><th>count</th></tr>");
        let mut first: Option<Vec<f64>> = None;
        for (r, hist) in &rows {
            let vals: Option<Vec<f64>> = match hist {
                Some(x) if !x.is_empty() => Some(
                    percentiles
                        .iter()
                        .map(|p| pct(x, *p, *div))
                        .chain([x.quantile_ns(1.0) as f64 / div, x.len() as f64])
                        .collect(),
                ),
                _ => {
                    // Schema 1: only the fixed percentiles it stored.
                    let st = |k: &str| r.s.number(&format!("/{field}/{k}"));
                    st("count").filter(|c| *c > 0.0).map(|count| {
                        percentiles
                            .iter()
                            .map(|p| {
                                [(50.0, "p50"), (90.0, "p90"), (95.0, "p95"), (99.0, "p99")]
                                    .iter()
                                    .find(|(q, _)| q == p)
                                    .and_then(|(_, k)| st(k))
                            })
                            .map(|v| v.unwrap_or(f64::NAN))
                            .chain([st("max").unwrap_or(f64::NAN), count])
                            .collect()
                    })
                }
            };
            let Some(vals) = vals else { continue };
            let _ = write!(h, "<tr><td>{}</td>", escape(&r.label));
            let n = vals.len();
            for (i, v) in vals.iter().enumerate() {
                if v.is_nan() {
                    h.push_str("<td>–</td>");
                } else if i + 1 == n {
                    let _ = write!(h, "<td>{v}</td>");
                } else {
                    let _ = write!(h, "<td>{}</td>", delta_cell(*v, first.as_ref().map(|f| f[i])));
                }
            }
            h.push_str("</tr>");
            first.get_or_insert(vals);
        }
        h.push_str("</table>");
        if *hist_name == "latency" || (*hist_name == "e2e" && spectrum.is_empty()) {
            for (run, (r, hist)) in rows.iter().enumerate() {
                if let Some(x) = hist.as_ref().filter(|x| !x.is_empty()) {
                    spectrum.push(Line {
                        name: r.label.clone(),
                        points: spectrum_points(x, *div),
                        dashed: false,
                        run,
                    });
                }
            }
        }
    }
    if !spectrum.is_empty() {
        h.push_str(r#"<div class="charts">"#);
        h.push_str(&chart(
            "Latency by percentile (HDR spectrum, log axis)",
            "percentile",
            "ms",
            XAxis::Percentile,
            &spectrum,
        ));
        h.push_str("</div>");
    }
}

/// (quantile, value) from P0 to the highest percentile the count supports, spaced evenly on
/// the log axis (ten points per decade of 1 / (1 − q)).
fn spectrum_points(x: &DurationHist, div: f64) -> Vec<(f64, f64)> {
    let max_q = 1.0 - 1.0 / x.len().max(2) as f64;
    let mut pts: Vec<(f64, f64)> = (0..=60)
        .map(|k| 1.0 - 10f64.powf(-(k as f64) / 10.0))
        .take_while(|q| *q <= max_q)
        .map(|q| (q, x.quantile_ns(q) as f64 / div))
        .collect();
    pts.push((max_q, x.quantile_ns(1.0) as f64 / div));
    pts
}

fn over_time(h: &mut String, runs: &[Run]) {
    let series: Vec<(usize, &Run, Timeline)> = runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r, r.s.timeline()?)))
        .collect();
    if series.is_empty() {
        let _ = write!(
            h,
            r#"<h3>Over time</h3><p class="note">No time series in these summaries (schema 1, or endpoint_load).</p>"#
        );
        return;
    }
    let mut tput = Vec::new();
    let mut lat = Vec::new();
    let mut errs = Vec::new();
    let mut inflight = Vec::new();
    let mut rss = Vec::new();
    let mut cpu = Vec::new();
    let mut ttft = Vec::new();
    for (run, r, t) in &series {
        let t0 = t.rows.first().map_or(0.0, |row| row.t);
        let x = |row: &crate::timeline::IntervalRow| row.t - t0;
        let line = |name: String, points: Vec<(f64, f64)>, dashed: bool| Line {
            name,
            points,
            dashed,
            run: *run,
        };
        tput.push(line(
            r.label.clone(),
            t.rows
                .iter()
                .map(|row| (x(row), row.requests as f64 / t.interval_s))
                .collect(),
            false,
        ));
        errs.push(line(
            r.label.clone(),
            t.rows
                .iter()
                .map(|row| (x(row), row.failed as f64 / t.interval_s))
                .collect(),
            false,
        ));
        let mut p50 = Vec::new();
        let mut p99 = Vec::new();
        let mut first = Vec::new();
        for row in &t.rows {
            if let Some(hist) = Timeline::hist(row.latency.as_deref()) {
                p50.push((x(row), hist.quantile_ns(0.5) as f64 / 1e6));
                p99.push((x(row), hist.quantile_ns(0.99) as f64 / 1e6));
            }
            if let Some(hist) = Timeline::hist(row.ttft.as_deref()) {
                first.push((x(row), hist.quantile_ns(0.5) as f64 / 1e6));
            }
        }
        lat.push(line(format!("{} p50", r.label), p50, false));
        lat.push(line(format!("{} p99", r.label), p99, true));
        if !first.is_empty() {
            ttft.push(line(format!("{} ttft p50", r.label), first, false));
        }
        inflight.push(line(
            r.label.clone(),
            t.rows
                .iter()
                .filter_map(|row| Some((x(row), row.gauges.in_flight? as f64)))
                .collect(),
            false,
        ));
        rss.push(line(
            format!("{} client", r.label),
            t.rows
                .iter()
                .filter_map(|row| Some((x(row), row.gauges.rss_bytes? as f64 / 1e6)))
                .collect(),
            false,
        ));
        cpu.push(line(
            format!("{} client", r.label),
            t.rows
                .iter()
                .filter_map(|row| Some((x(row), row.gauges.cpu_pct?)))
                .collect(),
            false,
        ));
        let server_rss: Vec<(f64, f64)> = t
            .rows
            .iter()
            .filter_map(|row| Some((x(row), row.gauges.server.as_ref()?.rss_bytes? as f64 / 1e6)))
            .collect();
        if !server_rss.is_empty() {
            rss.push(line(format!("{} server", r.label), server_rss, true));
            cpu.push(line(
                format!("{} server", r.label),
                t.rows
                    .iter()
                    .filter_map(|row| Some((x(row), row.gauges.server.as_ref()?.cpu_pct?)))
                    .collect(),
                true,
            ));
        }
    }
    let interval = series[0].2.interval_s;
    let _ = write!(
        h,
        r#"<h3>Over time</h3><p class="note">Per interval of {interval} s (aligned on UTC), from each run's first interval. Dashed: p99, or the server's side.</p><div class="charts">"#
    );
    let secs = "seconds into the run";
    for (title, unit, lines) in [
        ("Throughput", "req/s", &tput),
        ("Latency percentiles", "ms", &lat),
        ("Errors", "errors/s", &errs),
        ("In flight", "requests", &inflight),
        ("Resident memory", "MB", &rss),
        ("CPU", "% of one core", &cpu),
    ] {
        h.push_str(&chart(title, secs, unit, XAxis::Linear, lines));
    }
    if !ttft.is_empty() {
        h.push_str(&chart("Time to first chunk", secs, "ms", XAxis::Linear, &ttft));
    }
    h.push_str("</div>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stored::parse_summary;

    #[test]
    fn a_report_shows_the_kpis_the_simulated_mark_and_one_section_per_scenario() {
        let a = serde_json::json!({"schema_version": 1, "scenario": "latency_smoke", "simulated": true,
            "requests": {"total": 10}, "latency_ms": {"count": 10, "p50": 1.5, "p90": 2.0, "p95": 2.5, "p99": 3.0, "max": 4.0},
            "kpis": [{"name": "p95_latency", "target": "<= 2 s", "value": 0.0025, "unit": "s", "pass": true}]});
        let b = serde_json::json!({"schema_version": 1, "scenario": "burst_load", "requests": {"total": 5},
            "kpis": [{"name": "error_rate", "target": "<= 0.01", "value": 0.5, "unit": "", "pass": false}]});
        let p = |n: &str, v: &Value| parse_summary(std::path::Path::new(n), &v.to_string()).unwrap();
        let html = render(&[p("a.json", &a), p("b.json", &b)], None, &DEFAULT_PERCENTILES);
        assert!(html.contains(r#"id="simulated-banner""#));
        assert!(html.contains(r#"data-kpi="p95_latency" data-value="0.0025""#));
        assert!(html.contains(r#"<div class="tile fail" data-kpi="error_rate""#));
        assert_eq!(html.matches(r#"<section class="scenario""#).count(), 2);
        assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn an_endpoint_load_report_tables_its_own_figures() {
        let mut e2e = DurationHist::default();
        (1..=100u64).for_each(|ms| e2e.record(std::time::Duration::from_millis(ms)));
        let v = serde_json::json!({"schema_version": 2, "scenario": "endpoint_load", "simulated": false,
            "arrival": {"rate": {"rate": 5.0}}, "requests": {"total": 100}, "request_throughput_rps": 4.9,
            "output_tokens_per_s": 310.0, "goodput_rps": 4.5, "ttft_ms": {"count": 100, "p50": 40.0},
            "latency_ms": {"count": 100, "p50": 50.0},
            "histograms": {"e2e": e2e.serialise()}});
        let s = parse_summary(std::path::Path::new("ep.json"), &v.to_string()).unwrap();
        let html = render(&[s], None, &[50.0, 99.9]);
        assert!(html.contains("endpoint_load figures") && html.contains("goodput (req/s within SLO)"));
        assert!(html.contains(r#"data-metric="e2e""#) && !html.contains(r#"data-metric="latency""#));
        assert!(html.contains("<th>P99.9</th>") && !html.contains("id=\"simulated-banner\""));
        assert!(html.contains("HDR spectrum"), "the spectrum of its end-to-end time");
    }
}
