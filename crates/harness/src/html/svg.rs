//! Line charts as inline SVG: no script, no font, no network. Each chart is an `<svg
//! class="chart">` with `data-points` (how many points it draws), axes with ticks, a legend, and a
//! `<title>` on every point (the browser shows it on hover).

use std::fmt::Write as _;

/// The colours of the series, in order (baseline first).
pub const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];

/// One line of a chart.
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Dashed (e.g. the server's side beside the client's, or p99 beside p50).
    pub dashed: bool,
    /// Which run it belongs to: one colour per run across every chart.
    pub run: usize,
}

/// How the x axis is drawn.
#[derive(Clone, Copy, PartialEq)]
pub enum XAxis {
    /// Linear, in the unit given.
    Linear,
    /// Percentiles: x is the quantile q (0..1), drawn at log10(1 / (1 − q)) like HdrHistogram's
    /// percentile distribution.
    Percentile,
}

const W: f64 = 640.0;
const H: f64 = 260.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 46.0;
const BOTTOM: f64 = 40.0;

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Short number for a tick or tooltip.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// About five round ticks from 0 (or `lo`) to `hi`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    if hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(t);
        t += step;
    }
    out
}

fn px(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// A line chart of `lines`; an empty chart says "no data" (and has `data-points="0"`).
pub fn chart(title: &str, x_label: &str, y_label: &str, x_axis: XAxis, lines: &[Line]) -> String {
    let tx = |x: f64| match x_axis {
        XAxis::Linear => x,
        XAxis::Percentile => (1.0 / (1.0 - x.min(0.999_999))).log10(),
    };
    let pts = || {
        lines
            .iter()
            .flat_map(|l| l.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let n: usize = pts().count();
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" data-points="{n}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{t}"><title>{t}</title><text x="{LEFT}" y="16" class="ct">{t}</text>"#,
        t = escape(title)
    );
    if n == 0 {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" class="nodata">no data</text></svg>"#,
            W / 2.0 - 24.0,
            H / 2.0
        );
        return s;
    }
    // Time starts at 0 on every chart, so the charts of one section line up.
    let (mut x0, mut x1) = match x_axis {
        XAxis::Linear => (0.0f64, f64::MIN),
        XAxis::Percentile => (f64::MAX, f64::MIN),
    };
    let mut y1 = f64::MIN;
    for (x, y) in pts() {
        x0 = x0.min(tx(*x));
        x1 = x1.max(tx(*x));
        y1 = y1.max(*y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let y1 = if y1 <= 0.0 { 1.0 } else { y1 * 1.05 };
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |x: f64| LEFT + (tx(x) - x0) / (x1 - x0) * pw;
    let sy = |y: f64| TOP + ph - (y / y1) * ph;
    // Axes and grid.
    let _ = write!(s, r#"<g class="axis">"#);
    for t in ticks(0.0, y1) {
        let y = px(sy(t));
        let _ = write!(
            s,
            r#"<line x1="{LEFT}" x2="{}" y1="{y}" y2="{y}" class="grid"/><text x="{}" y="{}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            num(t)
        );
    }
    let xticks: Vec<(f64, String)> = match x_axis {
        XAxis::Linear => ticks(x0, x1).into_iter().map(|t| (t, num(t))).collect(),
        XAxis::Percentile => [0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999]
            .into_iter()
            .filter(|q| tx(*q) <= x1 + 1e-9)
            .map(|q| (q, format!("{}", q * 100.0)))
            .collect(),
    };
    for (t, label) in xticks {
        let x = px(sx(t));
        let _ = write!(
            s,
            r#"<line x1="{x}" x2="{x}" y1="{TOP}" y2="{}" class="grid"/><text x="{x}" y="{}" text-anchor="middle">{label}</text>"#,
            TOP + ph,
            TOP + ph + 14.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text transform="translate(12 {}) rotate(-90)" text-anchor="middle">{}</text></g>"#,
        LEFT + pw / 2.0,
        H - 6.0,
        escape(x_label),
        TOP + ph / 2.0,
        escape(y_label)
    );
    // Lines, with a tooltip per point.
    for l in lines {
        let colour = PALETTE[l.run % PALETTE.len()];
        let path: Vec<String> = l
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| format!("{},{}", px(sx(*x)), px(sy(*y))))
            .collect();
        if path.is_empty() {
            continue;
        }
        let dash = if l.dashed { r#" stroke-dasharray="5 3""# } else { "" };
        let _ = write!(
            s,
            r#"<polyline class="line" data-series="{}" fill="none" stroke="{colour}" stroke-width="1.6"{dash} points="{}"/>"#,
            escape(&l.name),
            path.join(" ")
        );
        if l.points.len() <= 400 {
            for (x, y) in l.points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()) {
                let _ = write!(
                    s,
                    r#"<circle cx="{}" cy="{}" r="2" fill="{colour}"><title>{}: {} at {}</title></circle>"#,
                    px(sx(*x)),
                    px(sy(*y)),
                    escape(&l.name),
                    num(*y),
                    match x_axis {
                        XAxis::Linear => num(*x),
                        XAxis::Percentile => format!("p{}", x * 100.0),
                    }
                );
            }
        }
    }
    // Legend, above the plot: up to four entries a row, two rows.
    for (i, l) in lines.iter().enumerate().take(8) {
        let x = LEFT + (i % 4) as f64 * 140.0;
        let y = 27.0 + (i / 4) as f64 * 12.0;
        let dash = if l.dashed { r#" stroke-dasharray="4 2""# } else { "" };
        let _ = write!(
            s,
            r#"<line x1="{x}" x2="{}" y1="{y}" y2="{y}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}" class="legend">{}</text>"#,
            x + 14.0,
            PALETTE[l.run % PALETTE.len()],
            x + 18.0,
            y + 3.5,
            escape(&l.name)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_every_point_and_says_when_it_has_none() {
        let line = Line {
            name: "run <a>".into(),
            points: vec![(0.0, 1.0), (1.0, 3.0), (2.0, f64::NAN)],
            dashed: false,
            run: 0,
        };
        let svg = chart("latency", "s", "ms", XAxis::Linear, &[line]);
        assert!(svg.contains(r#"data-points="2""#), "{svg}");
        assert!(svg.contains("run &lt;a&gt;"), "names are escaped");
        assert_eq!(svg.matches("<circle").count(), 2);
        let empty = chart("x", "s", "ms", XAxis::Linear, &[]);
        assert!(empty.contains(r#"data-points="0""#) && empty.contains("no data"));
        assert_eq!(ticks(0.0, 10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
    }
}
