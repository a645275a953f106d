//! `aether perf report`, `merge` and `history`: the commands that read stored summaries.

use std::path::{Path, PathBuf};
use std::time::Instant;

use aether_harness::kpi::KpiTargets;
use aether_harness::stored::StoredSummary;
use aether_harness::{html, Report};
use clap::Args;

use super::{read_summary, write_text};
use crate::exit::CliError;

#[derive(Args)]
#[command(after_long_help = "\
One self-contained HTML file: no script, no font, no network request (the charts are inline SVG), \
so it opens offline and attached to a ticket. Summaries of different scenarios get a section each; \
runs of one scenario are overlaid, with deltas against the first (the --baseline when given).

Examples:
  aether perf report logs/perf/burst_load-20261130T101500Z.json
  aether perf report new.json --baseline main.json -o pr-report.html
  aether perf report logs/perf/*.json --percentiles 50,99,99.9,99.99")]
pub struct ReportArgs {
    /// Summary JSON files (of `perf run`, `perf merge` or `perf gate`).
    #[arg(required = true, value_name = "SUMMARY.json")]
    summaries: Vec<PathBuf>,
    /// A summary to compare against (drawn first; deltas are against it). It must be of a
    /// scenario among the summaries.
    #[arg(long, value_name = "B.json")]
    baseline: Option<PathBuf>,
    /// Where to write the HTML (default: the first summary's path with .html).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Percentiles of the tables, comma-separated (each above 0 and below 100).
    #[arg(long, value_name = "LIST", default_value = "50,90,95,99,99.9", value_parser = parse_percentiles)]
    percentiles: Percentiles,
    /// Print nothing (the file is still written).
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Clone)]
pub struct Percentiles(Vec<f64>);

fn parse_percentiles(s: &str) -> Result<Percentiles, String> {
    let v = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.trim_start_matches(['p', 'P']).parse::<f64>() {
            Ok(x) if x > 0.0 && x < 100.0 => Ok(x),
            _ => Err(format!(
                "`{p}`: each percentile must be a number above 0 and below 100 (e.g. 50,99,99.9)"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if v.is_empty() {
        return Err("give at least one percentile (e.g. 50,99)".into());
    }
    Ok(Percentiles(v))
}

fn html_path(summary: &Path) -> PathBuf {
    summary.with_extension("html")
}

/// `perf run --report`: the report of one summary, beside it.
pub(super) fn write_report_beside(summary: &Path) -> Result<PathBuf, CliError> {
    let s = read_summary(summary)?;
    let path = html_path(summary);
    write_text(&path, &html::render(&[s], None, &html::DEFAULT_PERCENTILES))?;
    Ok(path)
}

pub(super) fn report(a: ReportArgs) -> Result<(), CliError> {
    let started = Instant::now();
    let summaries = a
        .summaries
        .iter()
        .map(|p| read_summary(p))
        .collect::<Result<Vec<_>, _>>()?;
    let baseline = a.baseline.as_deref().map(read_summary).transpose()?;
    if let Some(b) = &baseline {
        if !summaries.iter().any(|s| s.scenario() == b.scenario()) {
            return Err(CliError::usage(format!(
                "--baseline `{}` is of scenario `{}`, which none of the summaries is (they are: {})",
                b.path.display(),
                b.scenario(),
                scenarios(&summaries)
            )));
        }
    }
    let out = a.output.clone().unwrap_or_else(|| html_path(&a.summaries[0]));
    let text = html::render(&summaries, baseline.as_ref(), &a.percentiles.0);
    write_text(&out, &text)?;
    if !a.quiet {
        println!(
            "report: {} ({} KB, {} summar{}, {:.0} ms)",
            out.display(),
            text.len() / 1024,
            summaries.len(),
            if summaries.len() == 1 { "y" } else { "ies" },
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    Ok(())
}

fn scenarios(s: &[StoredSummary]) -> String {
    let mut names: Vec<&str> = s.iter().map(StoredSummary::scenario).collect();
    names.dedup();
    names.join(", ")
}

#[derive(Args)]
#[command(after_long_help = "\
Adds summaries of one scenario exactly: counters and HDR histograms add (percentiles are computed \
from the sums, never averaged), the time series add interval by interval (aligned on UTC), \
throughput is over the union of the measured windows, and the KPIs are judged again. Memory is per \
process: the merge keeps the highest RSS and the steepest drift, and sums CPU time.

Examples (four machines, one segment each):
  aether perf run --scenario burst_load --segment 2/4 --target http://api:8080 -o seg2.json
  aether perf merge seg1.json seg2.json seg3.json seg4.json -o merged.json")]
pub struct MergeArgs {
    /// Summaries (schema 2) of one scenario.
    #[arg(required = true, value_name = "SUMMARY.json")]
    summaries: Vec<PathBuf>,
    /// Where to write the merged summary.
    #[arg(short, long, value_name = "FILE", required = true)]
    output: PathBuf,
    /// Judge the merged run with these KPI targets (TOML, as `perf run --kpi-file`).
    #[arg(long, value_name = "FILE")]
    kpi_file: Option<PathBuf>,
    /// Exit with code 1 when a KPI of the merged run fails.
    #[arg(long)]
    gate: bool,
    /// Print nothing (the file is still written).
    #[arg(short, long)]
    quiet: bool,
}

pub(super) fn merge(a: MergeArgs) -> Result<(), CliError> {
    let summaries = a
        .summaries
        .iter()
        .map(|p| read_summary(p))
        .collect::<Result<Vec<_>, _>>()?;
    let targets = match &a.kpi_file {
        Some(p) => KpiTargets::from_file(p).map_err(CliError::usage)?,
        None => KpiTargets::default(),
    };
    let merged = aether_harness::merge::merge(&summaries, &targets).map_err(|e| CliError::usage(e.to_string()))?;
    let report = Report::from(merged);
    super::write_report(&report, &a.output)?;
    if !a.quiet {
        println!("{}", report.render());
        println!("   merged {} summaries into {}", summaries.len(), a.output.display());
    }
    if a.gate {
        report.verdict().map_err(CliError::failed)?;
    }
    Ok(())
}

#[derive(Args)]
#[command(after_long_help = "\
Groups the stored runs by what makes them comparable (scenario, provider, concurrency, rate, \
iterations or duration, kind of target) and shows each figure's trend: a Markdown table per group \
on stdout, and with --output an HTML file with a chart per figure.

Example (baselines twice daily into one directory):
  aether perf history logs/perf/ -o history.html")]
pub struct HistoryArgs {
    /// A directory of summary JSON files (read recursively), or summary files.
    #[arg(required = true, value_name = "DIR|FILE")]
    paths: Vec<PathBuf>,
    /// Also write the history as HTML (charts and tables) to this file.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print nothing (with --output: only write the file).
    #[arg(short, long)]
    quiet: bool,
}

/// The summary files under `paths` (directories read recursively, `*.json` only). Files that are
/// not summaries are skipped with a note on stderr unless `strict`.
pub(super) fn collect(paths: &[PathBuf], strict: bool, quiet: bool) -> Result<Vec<StoredSummary>, CliError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut files).map_err(|e| CliError::usage(format!("cannot read `{}`: {e}", p.display())))?;
        } else if p.exists() || strict {
            files.push(p.clone());
        } else {
            return Err(CliError::usage(format!("`{}` does not exist", p.display())));
        }
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        match read_summary(&f) {
            Ok(s) => out.push(s),
            Err(e) if strict => return Err(e),
            Err(e) => {
                if !quiet {
                    eprintln!("skipped: {e}");
                }
            }
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
    Ok(())
}

pub(super) fn history(a: HistoryArgs) -> Result<(), CliError> {
    let stored = collect(&a.paths, false, a.quiet)?;
    if stored.is_empty() {
        return Err(CliError::usage(format!(
            "no perf summaries under {}",
            a.paths
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if let Some(out) = &a.output {
        write_text(out, &html::history(&stored))?;
    }
    if !a.quiet {
        print!("{}", aether_harness::gate::history_markdown(&stored));
        if let Some(out) = &a.output {
            println!("history: {}", out.display());
        }
    }
    Ok(())
}
