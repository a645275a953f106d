//! `aether perf versus`: one scenario on several frameworks, side by side, as ratios.
//!
//! The runs are interleaved in rounds (A B A B …), so that drift on a shared machine hits every
//! framework alike, and each runs in its own process (the CLI starts one per run), so that
//! resident memory tells the frameworks apart. This module turns the runs' summaries into the
//! table: per metric and framework, the median over the rounds with its range; and per other
//! framework, the median of the per-round ratios to the first (the baseline) with their range.
//! A ratio above 1 on a lower-is-better metric means slower, bigger or costlier than the
//! baseline.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::compare::Better;

/// How a metric is read off a summary.
enum Read {
    /// A number at a JSON pointer.
    At(&'static str),
    /// `(end - start) / per` of three pointers: growth per unit (memory per session).
    PerUnit {
        start: &'static str,
        end: &'static str,
        per: &'static str,
    },
    /// `num / den`.
    Ratio(&'static str, &'static str),
}

/// The metrics of the table: label, how to read it, direction.
const METRICS: &[(&str, Read, Better)] = &[
    (
        "framework overhead p50 (µs)",
        Read::At("/overhead_us/p50"),
        Better::Lower,
    ),
    (
        "framework overhead p99 (µs)",
        Read::At("/overhead_us/p99"),
        Better::Lower,
    ),
    ("latency p50 (ms)", Read::At("/latency_ms/p50"), Better::Lower),
    ("latency p99 (ms)", Read::At("/latency_ms/p99"), Better::Lower),
    ("throughput (req/s)", Read::At("/throughput_rps"), Better::Higher),
    ("tools p50 (ms)", Read::At("/tool_ms/p50"), Better::Lower),
    ("tool fan-out ratio", Read::At("/tools/fanout_ratio"), Better::Lower),
    (
        "time to first chunk p50 (ms)",
        Read::At("/stream/ttft_ms/p50"),
        Better::Lower,
    ),
    (
        "per-chunk gap p50 (ms)",
        Read::At("/stream/chunk_gap_ms/p50"),
        Better::Lower,
    ),
    (
        "CPU per request (ms)",
        Read::Ratio("/resources/cpu_seconds", "/requests/total"),
        Better::Lower,
    ),
    (
        "heap per session (bytes)",
        Read::PerUnit {
            start: "/resources/heap_start_bytes",
            end: "/resources/heap_end_bytes",
            per: "/sessions/created",
        },
        Better::Lower,
    ),
    (
        "RSS per session (bytes)",
        Read::PerUnit {
            start: "/resources/rss_start_bytes",
            end: "/resources/rss_end_bytes",
            per: "/sessions/created",
        },
        Better::Lower,
    ),
    ("peak RSS (bytes)", Read::At("/resources/rss_peak_bytes"), Better::Lower),
    ("errors", Read::At("/requests/failed"), Better::Lower),
];

fn read(summary: &Value, how: &Read) -> Option<f64> {
    let at = |p: &str| summary.pointer(p).and_then(Value::as_f64);
    match how {
        Read::At(p) => at(p),
        Read::PerUnit { start, end, per } => {
            let n = at(per).filter(|n| *n > 0.0)?;
            Some((at(end)? - at(start)?) / n)
        }
        // CPU seconds per request, in milliseconds.
        Read::Ratio(num, den) => Some(at(num)? * 1000.0 / at(den).filter(|d| *d > 0.0)?),
    }
}

/// One run: a framework's summary in one round.
pub struct Run {
    pub framework: String,
    pub round: usize,
    pub summary: Value,
}

/// A median and the range around it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    fn of(mut v: Vec<f64>) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = match n % 2 {
            1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub metric: &'static str,
    pub lower_is_better: bool,
    /// Per framework, in the order given: its values over the rounds.
    pub values: Vec<Option<Spread>>,
    /// Per framework after the first: its per-round ratios to the first.
    pub ratios: Vec<Option<Spread>>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Versus {
    pub scenario: String,
    pub frameworks: Vec<String>,
    pub rounds: usize,
    pub simulated: bool,
    pub rows: Vec<Row>,
}

/// The table of `runs` (every framework in every round), frameworks in the order given.
pub fn table(scenario: &str, frameworks: &[String], runs: &[Run]) -> Versus {
    let rounds = runs.iter().map(|r| r.round).max().map_or(0, |r| r + 1);
    let simulated = runs
        .iter()
        .all(|r| r.summary.get("simulated").and_then(Value::as_bool).unwrap_or(false));
    let of = |f: &str, round: usize| runs.iter().find(|r| r.framework == f && r.round == round);
    let rows = METRICS
        .iter()
        .filter_map(|(metric, how, better)| {
            let values: Vec<Option<Spread>> = frameworks
                .iter()
                .map(|f| {
                    Spread::of(
                        runs.iter()
                            .filter(|r| &r.framework == f)
                            .filter_map(|r| read(&r.summary, how))
                            .collect(),
                    )
                })
                .collect();
            // A metric the scenario does not exercise (zero everywhere) says nothing.
            let exercised = values.iter().flatten().any(|v| v.min != 0.0 || v.max != 0.0);
            exercised.then(|| {
                let base = &frameworks[0];
                let ratios = frameworks[1..]
                    .iter()
                    .map(|f| {
                        let per_round = (0..rounds).filter_map(|round| {
                            let b = read(&of(base, round)?.summary, how)?;
                            let o = read(&of(f, round)?.summary, how)?;
                            (b != 0.0).then(|| o / b)
                        });
                        Spread::of(per_round.collect())
                    })
                    .collect();
                Row {
                    metric,
                    lower_is_better: *better == Better::Lower,
                    values,
                    ratios,
                }
            })
        })
        .collect();
    Versus {
        scenario: scenario.to_owned(),
        frameworks: frameworks.to_vec(),
        rounds,
        simulated,
        rows,
    }
}

fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 || a == 0.0 {
        format!("{v:.3}")
    } else {
        // Four significant digits: a per-chunk gap is a few microseconds in milliseconds.
        let decimals = (3 - a.log10().floor() as i32).clamp(3, 12) as usize;
        format!("{v:.decimals$}")
    }
}

fn spread(s: &Option<Spread>, unit: &str) -> String {
    match s {
        Some(s) if s.min == s.max => format!("{}{unit}", num(s.median)),
        Some(s) => format!("{}{unit} ({}–{})", num(s.median), num(s.min), num(s.max)),
        None => "–".to_owned(),
    }
}

impl Versus {
    /// The table in Markdown: values as median (range), ratios to the first framework as
    /// median× (range).
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let base = &self.frameworks[0];
        let _ = writeln!(
            s,
            "### `{}`: {} · {} round{}, interleaved{}\n",
            self.scenario,
            self.frameworks.join(" vs "),
            self.rounds,
            if self.rounds == 1 { "" } else { "s" },
            if self.simulated {
                " · SIMULATED model (no real model was called)"
            } else {
                ""
            }
        );
        let mut header = String::from("| metric |");
        let mut rule = String::from("|---|");
        for f in &self.frameworks {
            let _ = write!(header, " {f} |");
            rule.push_str("---:|");
        }
        for f in &self.frameworks[1..] {
            let _ = write!(header, " {f} / {base} |");
            rule.push_str("---:|");
        }
        let _ = writeln!(s, "{header}\n{rule}");
        for row in &self.rows {
            let arrow = if row.lower_is_better { "↓" } else { "↑" };
            let _ = write!(s, "| {} {arrow} |", row.metric);
            for v in &row.values {
                let _ = write!(s, " {} |", spread(v, ""));
            }
            for r in &row.ratios {
                let _ = write!(s, " {} |", spread(r, "×"));
            }
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "\nValues: median over the rounds (range). Ratios: median of each round's ratio to `{base}` (range); \
             ↓ lower is better, ↑ higher is better. Each run is its own process."
        );
        s
    }

    /// The table as a self-contained HTML page (no script, no external resource).
    pub fn html(&self) -> String {
        let esc = |t: &str| t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let base = &self.frameworks[0];
        let mut s = String::new();
        let _ = write!(
            s,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>perf versus: {}</title>\
             <style>body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}\
             td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}\
             .worse{{background:#fde2e1}}.better{{background:#e2f5e1}}.sim{{color:#a40;font-weight:bold}}</style></head><body>",
            esc(&self.scenario)
        );
        let _ = write!(
            s,
            "<h1>{} on {}</h1><p>{} round(s), interleaved; each run its own process.</p>",
            esc(&self.scenario),
            esc(&self.frameworks.join(" vs ")),
            self.rounds
        );
        if self.simulated {
            s.push_str("<p class=\"sim\">SIMULATED model: no real model was called.</p>");
        }
        s.push_str("<table><thead><tr><th>metric</th>");
        for f in &self.frameworks {
            let _ = write!(s, "<th>{}</th>", esc(f));
        }
        for f in &self.frameworks[1..] {
            let _ = write!(s, "<th>{} / {}</th>", esc(f), esc(base));
        }
        s.push_str("</tr></thead><tbody>");
        for row in &self.rows {
            let arrow = if row.lower_is_better { "↓" } else { "↑" };
            let _ = write!(s, "<tr><td>{} {arrow}</td>", esc(row.metric));
            for v in &row.values {
                let _ = write!(s, "<td>{}</td>", esc(&spread(v, "")));
            }
            for r in &row.ratios {
                let class = match r {
                    Some(r) if (r.median > 1.05) == row.lower_is_better && (r.median - 1.0).abs() > 0.05 => "worse",
                    Some(r) if (r.median - 1.0).abs() > 0.05 => "better",
                    _ => "",
                };
                let _ = write!(s, "<td class=\"{class}\">{}</td>", esc(&spread(r, "×")));
            }
            s.push_str("</tr>");
        }
        s.push_str("</tbody></table></body></html>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(framework: &str, round: usize, overhead: f64, rps: f64) -> Run {
        Run {
            framework: framework.into(),
            round,
            summary: json!({
                "simulated": true,
                "overhead_us": {"p50": overhead, "p99": overhead * 2.0},
                "throughput_rps": rps,
                "requests": {"total": 100, "failed": 0},
                "resources": {"cpu_seconds": 0.5, "heap_start_bytes": 1000, "heap_end_bytes": 11000},
                "sessions": {"created": 10},
            }),
        }
    }

    #[test]
    fn ratios_are_per_round_and_values_are_medians() {
        let fw = vec!["native".to_owned(), "adk".to_owned()];
        let runs = vec![
            run("native", 0, 2.0, 1000.0),
            run("adk", 0, 20.0, 500.0),
            run("native", 1, 4.0, 1000.0),
            run("adk", 1, 20.0, 250.0),
            run("native", 2, 2.0, 1000.0),
            run("adk", 2, 30.0, 500.0),
        ];
        let t = table("burst_load", &fw, &runs);
        assert_eq!(t.rounds, 3);
        assert!(t.simulated);
        let row = |m: &str| t.rows.iter().find(|r| r.metric == m).unwrap();
        let o = row("framework overhead p50 (µs)");
        assert_eq!(o.values[0].unwrap().median, 2.0);
        assert_eq!(o.values[1].unwrap().median, 20.0);
        // Per-round ratios 10, 5, 15: median 10, range 5–15.
        assert_eq!(
            o.ratios[0],
            Some(Spread {
                median: 10.0,
                min: 5.0,
                max: 15.0
            })
        );
        let rps = row("throughput (req/s)");
        assert!(!rps.lower_is_better);
        assert_eq!(rps.ratios[0].unwrap().median, 0.5);
        assert_eq!(row("heap per session (bytes)").values[0].unwrap().median, 1000.0);
        assert_eq!(row("CPU per request (ms)").values[0].unwrap().median, 5.0);
        assert!(
            t.rows.iter().all(|r| r.metric != "per-chunk gap p50 (ms)"),
            "absent metrics are left out"
        );
        assert!(
            t.rows.iter().all(|r| r.metric != "errors"),
            "as are those zero everywhere"
        );
        assert_eq!(num(0.0004123), "0.0004123");
        assert_eq!(num(0.5), "0.5000");
        let md = t.markdown();
        assert!(md.contains("| adk / native |"), "{md}");
        assert!(md.contains("10.0× (5.000–15.0)"), "{md}");
        assert!(md.contains("SIMULATED"));
        let html = t.html();
        assert!(html.contains("<td class=\"worse\">10.0× (5.000–15.0)</td>"), "{html}");
    }
}
