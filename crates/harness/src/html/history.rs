//! `aether perf history` as HTML: the trend of each figure over the stored runs, per group of
//! comparable runs.

use std::fmt::Write as _;

use super::svg::{chart, escape, Line, XAxis};
use super::{fmt_value, STYLE};
use crate::stored::StoredSummary;

/// `aether perf history` as HTML: per group of comparable runs, the trend of each figure as a
/// chart (x: the run's start, hours since the group's first run) and the table.
pub fn history(stored: &[StoredSummary]) -> String {
    let groups = crate::gate::group(stored);
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>Aether Frame performance history</title><style>{STYLE}</style></head><body>
<header><h1>Aether Frame performance history</h1><div>{} runs in {} groups of comparable runs · generated {}</div></header><main>"#,
        stored.len(),
        groups.len(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    );
    for (key, runs) in &groups {
        let t0 = runs.first().and_then(|r| r.started_at());
        let x = |r: &StoredSummary| match (r.started_at(), t0) {
            (Some(t), Some(t0)) => (t - t0).num_seconds() as f64 / 3600.0,
            _ => 0.0,
        };
        let _ = write!(
            h,
            r#"<section class="scenario"><h2>{}</h2>{}<div class="charts">"#,
            escape(&key.label()),
            if key.simulated {
                r#"<p><span class="sim">SIMULATED</span></p>"#
            } else {
                ""
            }
        );
        for (label, ptr) in crate::gate::HISTORY {
            let points: Vec<(f64, f64)> = runs.iter().filter_map(|r| Some((x(r), r.number(ptr)?))).collect();
            h.push_str(&chart(
                label,
                "hours since the first run",
                label,
                XAxis::Linear,
                &[Line {
                    name: (*label).to_owned(),
                    points,
                    dashed: false,
                    run: 0,
                }],
            ));
        }
        h.push_str("</div><table><tr><th>started (UTC)</th><th>commit</th><th>run</th>");
        for (label, _) in crate::gate::HISTORY {
            let _ = write!(h, "<th>{label}</th>");
        }
        h.push_str("<th>KPIs failed</th></tr>");
        for r in runs {
            let _ = write!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td>",
                r.started_at()
                    .map_or("?".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
                escape(r.str_at("/provenance/git_commit").unwrap_or("")),
                escape(&r.label())
            );
            for (_, ptr) in crate::gate::HISTORY {
                let _ = write!(h, "<td>{}</td>", r.number(ptr).map_or("–".into(), fmt_value));
            }
            let _ = write!(
                h,
                "<td>{}</td></tr>",
                r.kpis().iter().filter(|k| k.pass == Some(false)).count()
            );
        }
        h.push_str("</table></section>");
    }
    h.push_str("</main></body></html>\n");
    h
}
