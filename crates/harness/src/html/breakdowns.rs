//! The report's breakdowns: where a turn's time went (model, tools, the framework), the
//! breakdowns by phase, tool and error code, and what is particular to each scenario
//! (TTFT/ITL/TPOT and goodput for endpoint_load, chunk gaps and approvals for stream_probe,
//! fan-out and per-call costs for tool_regression).

use std::fmt::Write as _;

use serde_json::Value;

use super::svg::{escape, num};
use super::{fmt_value, Run};

pub(super) fn turn_breakdown(h: &mut String, runs: &[Run]) {
    let rows: Vec<(&Run, f64, f64, f64)> = runs
        .iter()
        .filter_map(|r| {
            let model = r.s.number("/model_ms/mean")?;
            let tools = r.s.number("/tool_ms/mean")?;
            let overhead = r.s.number("/overhead_us/mean")? / 1000.0;
            Some((r, model, tools, overhead))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    h.push_str("<h3>Where a turn's time goes (means)</h3><table class=\"breakdown\"><tr><th>run</th><th>model ms</th><th>tools ms</th><th>framework overhead ms</th><th>share</th></tr>");
    for (r, m, t, o) in rows {
        let total = (m + t + o).max(1e-12);
        let bar = |v: f64, c: &str| format!(r#"<rect width="{:.1}" height="12" fill="{c}"/>"#, v / total * 240.0);
        let _ = write!(
            h,
            r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><svg width="240" height="12" class="bar"><g>{}</g><g transform="translate({:.1})">{}</g><g transform="translate({:.1})">{}</g></svg></td></tr>"#,
            escape(&r.label),
            fmt_value(m),
            fmt_value(t),
            fmt_value(o),
            bar(m, "#1f77b4"),
            m / total * 240.0,
            bar(t, "#2ca02c"),
            (m + t) / total * 240.0,
            bar(o, "#d62728"),
        );
    }
    h.push_str("</table><p class=\"note\">Blue: model · green: tools · red: the framework's own time.</p>");
}

pub(super) fn breakdowns(h: &mut String, runs: &[Run]) {
    for (key, title) in [
        ("latency_by_phase_ms", "Latency by phase (ms)"),
        ("latency_by_tool_ms", "Tool execution time by tool (ms)"),
        (
            "latency_by_error_code_ms",
            "Latency of failed requests by error code (ms)",
        ),
    ] {
        let mut body = String::new();
        for r in runs {
            let Some(m) =
                r.s.value
                    .pointer(&format!("/breakdowns/{key}"))
                    .and_then(Value::as_object)
            else {
                continue;
            };
            for (name, st) in m {
                let g = |k: &str| st.get(k).and_then(Value::as_f64).unwrap_or(0.0);
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&r.label),
                    escape(name),
                    g("count"),
                    fmt_value(g("p50")),
                    fmt_value(g("p95")),
                    fmt_value(g("p99"))
                );
            }
        }
        if !body.is_empty() {
            let _ = write!(
                h,
                "<h3>{title}</h3><table class=\"{key}\"><tr><th>run</th><th>name</th><th>count</th><th>P50</th><th>P95</th><th>P99</th></tr>{body}</table>"
            );
        }
    }
    let mut body = String::new();
    for r in runs {
        if let Some(m) =
            r.s.value
                .pointer("/breakdowns/errors_by_code")
                .and_then(Value::as_object)
        {
            for (code, n) in m {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td>{n}</td></tr>",
                    escape(&r.label),
                    escape(code)
                );
            }
        }
    }
    if !body.is_empty() {
        let _ = write!(
            h,
            "<h3>Errors by code</h3><table class=\"errors_by_code\"><tr><th>run</th><th>code</th><th>count</th></tr>{body}</table>"
        );
    }
}

pub(super) fn particular(h: &mut String, scenario: &str, runs: &[Run]) {
    let figures: &[(&str, &str)] = match scenario {
        "endpoint_load" => &[
            ("request throughput (req/s)", "/request_throughput_rps"),
            ("output tokens/s", "/output_tokens_per_s"),
            ("goodput (req/s within SLO)", "/goodput_rps"),
            ("requests within SLO", "/requests/met_slo"),
            ("TTFT p50 (ms)", "/ttft_ms/p50"),
            ("TPOT p50 (ms)", "/tpot_ms/p50"),
            ("ITL p50 (ms)", "/itl_ms/p50"),
            ("E2E p99 (ms)", "/e2e_ms/p99"),
        ],
        "stream_probe" => &[
            ("time to first chunk p50 (ms)", "/stream/ttft_ms/p50"),
            ("chunk gap p50 (ms)", "/stream/chunk_gap_ms/p50"),
            ("chunk gap p95 (ms)", "/stream/chunk_gap_ms/p95"),
            ("chunks per turn", "/stream/chunks_per_turn"),
            ("dropped chunks", "/stream/drops"),
            ("approvals answered", "/stream/approval_latency_ms/count"),
            ("approval latency p50 (ms)", "/stream/approval_latency_ms/p50"),
            ("approval think time (ms)", "/stream/approval_think_ms"),
        ],
        "tool_regression" => &[
            ("fan-out ratio (P50 all tools / one tool)", "/tools/fanout_ratio"),
            ("P50 with one tool (ms)", "/tools/baseline_p50_ms"),
            ("P50 with every tool (ms)", "/tools/fanout_p50_ms"),
            ("tool calls", "/tools/calls"),
            ("tool resolution p50 (µs)", "/tools/resolution_us/p50"),
        ],
        _ => &[],
    };
    if !figures.is_empty() {
        let _ = write!(
            h,
            "<h3>{} figures</h3><table class=\"particular\"><tr><th>figure</th>",
            escape(scenario)
        );
        for r in runs {
            let _ = write!(h, "<th>{}</th>", escape(&r.label));
        }
        h.push_str("</tr>");
        for (label, ptr) in figures {
            let _ = write!(h, "<tr><td>{label}</td>");
            for r in runs {
                let _ = write!(h, "<td>{}</td>", r.s.number(ptr).map_or("–".into(), fmt_value));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    }
    if scenario == "tool_regression" {
        for r in runs {
            let Some(rows) = r.s.value.pointer("/tools/call_costs").and_then(Value::as_array) else {
                continue;
            };
            let _ = write!(
                h,
                "<h3>One tool call, one at a time: {} (µs)</h3><table class=\"call_costs\"><tr><th>tool</th><th>path</th><th>calls</th><th>call P50</th><th>call P99</th><th>overhead P50</th><th>overhead P99</th><th>errors</th></tr>",
                escape(&r.label)
            );
            for c in rows {
                let g = |p: &str| c.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
                let path = format!(
                    "{} {}",
                    c.get("transport").and_then(Value::as_str).unwrap_or(""),
                    c.get("session").and_then(Value::as_str).unwrap_or("")
                );
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(c.get("tool").and_then(Value::as_str).unwrap_or("")),
                    escape(path.trim()),
                    g("/calls"),
                    num(g("/call_us/p50")),
                    num(g("/call_us/p99")),
                    num(g("/overhead_us/p50")),
                    num(g("/overhead_us/p99")),
                    g("/errors")
                );
            }
            h.push_str("</table>");
        }
    }
}
