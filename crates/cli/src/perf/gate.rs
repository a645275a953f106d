//! `aether perf gate`: the performance readiness checklist. Runs the scenarios N times each,
//! judges every KPI, compares each figure with the newest comparable baselines (see
//! `aether_harness::gate` for what is comparable and what counts as a regression), and writes the
//! checklist as Markdown, JSON and HTML. Exit code 1 on any failure.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aether_harness::gate::{self, ScenarioCheck};
use aether_harness::html;
use aether_harness::stored::StoredSummary;
use clap::Args;

use super::analyse::collect;
use super::{read_summary, resolve, write_report, write_text, RunArgs, Runner};
use crate::exit::CliError;

#[derive(Args)]
#[command(after_long_help = "\
Baselines are summaries in DIR (written by `perf run --output DIR/…` or by an earlier gate). A \
figure regresses when the median of the N new runs is worse than the baselines' median by more \
than its threshold AND every new run is worse than every baseline run: one noisy run cannot fail \
the gate, a real shift cannot hide. When the gate passes, its runs are added to DIR as the next \
baselines (unless --no-update-baseline).

The model's and tools' latency settings belong to the system under test, not to the match: a run \
with a slower model is compared with the same baselines (and fails).

Outputs, in --output DIR (default logs/perf/gate-<UTC time>): checklist.md (for a PR comment), \
checklist.json, report.html, and runs/ with every summary.

Examples:
  aether perf gate --baseline perf-baselines --scenarios latency_smoke,burst_load --repeat 3
  aether perf gate --baseline perf-baselines --all --repeat 3 --time-scale 0.1 --threshold latency_ms.p99=25")]
pub struct GateArgs {
    /// The directory of baseline summaries (read recursively; created when missing).
    #[arg(long, value_name = "DIR")]
    baseline: PathBuf,
    /// The scenarios to gate, comma-separated (default: --scenario, else every scenario that
    /// applies).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Runs per scenario; figures are compared by their median over the runs.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=50))]
    repeat: u32,
    /// A figure worse than its baseline by more than this many percent regresses (default for
    /// every figure).
    #[arg(long, value_name = "PCT", default_value_t = 10.0)]
    fail_on_regression: f64,
    /// One figure's threshold, e.g. `latency_ms.p99=25` (repeatable).
    #[arg(long = "threshold", value_name = "FIGURE=PCT")]
    thresholds: Vec<String>,
    /// Do not add this gate's runs to the baseline directory when it passes.
    #[arg(long)]
    no_update_baseline: bool,
    #[command(flatten)]
    run: RunArgs,
}

fn thresholds(list: &[String]) -> Result<BTreeMap<String, f64>, CliError> {
    list.iter()
        .map(|t| {
            let (k, v) = t.split_once('=').ok_or_else(|| {
                CliError::usage(format!(
                    "--threshold `{t}`: expected FIGURE=PCT, e.g. latency_ms.p99=25"
                ))
            })?;
            let pct: f64 = v
                .trim()
                .parse()
                .ok()
                .filter(|p: &f64| p.is_finite() && *p >= 0.0)
                .ok_or_else(|| CliError::usage(format!("--threshold `{t}`: PCT must be a number >= 0")))?;
            let known =
                gate::gated().any(|(label, ptr, _)| *label == k || ptr.trim_start_matches('/').replace('/', ".") == k);
            if !known {
                let names: Vec<String> = gate::gated()
                    .map(|(_, p, _)| p.trim_start_matches('/').replace('/', "."))
                    .collect();
                return Err(CliError::usage(format!(
                    "--threshold `{t}`: unknown figure `{k}` (one of: {})",
                    names.join(", ")
                )));
            }
            Ok((k.to_owned(), pct))
        })
        .collect()
}

pub(super) async fn gate(
    a: GateArgs,
    meter: Option<std::sync::Arc<dyn aether_runtime::meter::GenAiMeter>>,
) -> Result<(), CliError> {
    if !a.fail_on_regression.is_finite() || a.fail_on_regression < 0.0 {
        return Err(CliError::usage(
            "--fail-on-regression: must be a number of percent >= 0",
        ));
    }
    let overrides = thresholds(&a.thresholds)?;
    let names = (!a.scenarios.is_empty()).then_some(&a.scenarios[..]);
    let configs = resolve(&a.run, names)?;
    let quiet = a.run.quiet;
    let stored = match a.baseline.exists() {
        true => collect(std::slice::from_ref(&a.baseline), false, quiet)?,
        false => Vec::new(),
    };
    let Some(runner) = Runner::new(&a.run, &configs, meter).await? else {
        return Ok(());
    };
    let out = a.run.output.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "logs/perf/gate-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ))
    });
    let mut checks: Vec<ScenarioCheck> = Vec::new();
    let mut shown: Vec<StoredSummary> = Vec::new();
    let mut written: Vec<PathBuf> = Vec::new();
    for cfg in &configs {
        let mut runs = Vec::new();
        for k in 1..=a.repeat {
            let report = runner.run(cfg.clone()).await?;
            // Milliseconds in the name: gates a second apart must not overwrite each other's
            // baselines.
            let name = format!(
                "{}-{}-r{k}.json",
                report.scenario(),
                report.started_at().format("%Y%m%dT%H%M%S%3fZ")
            );
            let path = out.join("runs").join(name);
            write_report(&report, &path)?;
            runs.push(read_summary(&path)?);
            written.push(path);
        }
        let key = gate::RunKey::of(&runs[0]);
        let baselines = gate::baselines_for(&key, &stored, a.repeat as usize);
        checks.push(gate::check_scenario(
            &runs,
            &baselines,
            &overrides,
            a.fail_on_regression,
        ));
        shown.extend(baselines.into_iter().cloned());
        shown.extend(runs);
    }
    let simulated = shown.iter().any(StoredSummary::simulated);
    let md = gate::markdown(&checks, simulated);
    write_text(&out.join("checklist.md"), &md)?;
    let json = serde_json::json!({
        "passed": checks.iter().all(ScenarioCheck::passed),
        "simulated": simulated,
        "repeat": a.repeat,
        "default_threshold_pct": a.fail_on_regression,
        "scenarios": checks,
    });
    write_text(
        &out.join("checklist.json"),
        &serde_json::to_string_pretty(&json).unwrap_or_default(),
    )?;
    write_text(
        &out.join("report.html"),
        &html::render(&shown, None, &html::DEFAULT_PERCENTILES),
    )?;
    if !quiet {
        println!("{md}");
        println!(
            "checklist: {}/checklist.md (also checklist.json, report.html)",
            out.display()
        );
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passed())
        .map(|c| c.scenario.as_str())
        .collect();
    if failed.is_empty() && !a.no_update_baseline {
        for p in &written {
            let dest = a.baseline.join(p.file_name().unwrap_or_default());
            let bytes =
                std::fs::read(p).map_err(|e| CliError::failed(format!("cannot read `{}`: {e}", p.display())))?;
            aether_harness::report::write_atomic(&dest, &bytes)
                .map_err(|e| CliError::failed(format!("cannot write the baseline `{}`: {e}", dest.display())))?;
        }
        if !quiet {
            println!("baselines: {} runs added to {}", written.len(), a.baseline.display());
        }
    }
    if !failed.is_empty() {
        return Err(CliError::failed(format!(
            "readiness gate failed for: {} (see {}/checklist.md)",
            failed.join(", "),
            out.display()
        )));
    }
    Ok(())
}
