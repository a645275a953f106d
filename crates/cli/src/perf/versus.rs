//! `aether perf versus`: one scenario on several frameworks, interleaved in rounds, each run in
//! its own process (`aether perf run`, this binary), then the table of ratios
//! (`aether_harness::versus`) printed and written as JSON, Markdown and HTML.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use aether_harness::versus::{self, Run};
use clap::Args;

use crate::exit::CliError;
use crate::framework_args::FrameworkArgs;

#[derive(Args)]
#[command(after_help = "\
Each run is `aether perf run --scenario S --framework F --quiet` in a child process (so that
resident memory belongs to one framework), in rounds: A B A B … so that drift on a shared machine
hits both alike. Flags after `--` go to every run.

Examples:
  aether perf versus --scenario burst_load -- --model-latency-ms 100 --concurrency 1000 --iterations 20000
  aether perf versus --scenario tool_regression --rounds 5 -- --model-latency-ms 0 --tool-latency-ms 20
  aether perf versus --scenario stream_probe --frameworks native,adk")]
pub struct VersusArgs {
    /// The scenario (see `aether perf list`).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(aether_harness::scenario::names()))]
    scenario: String,

    /// Comma list of frameworks; the first is the baseline of the ratios.
    #[arg(long, value_delimiter = ',', default_value = "native,adk")]
    frameworks: Vec<String>,

    /// Rounds: each runs every framework once.
    #[arg(long, default_value_t = 3)]
    rounds: usize,

    /// Directory for the runs' summaries, the table (versus.json, versus.md, versus.html) and the
    /// runs' HTML report, overlaid (report.html).
    /// Default: `logs/perf/versus-<scenario>-<time>`.
    #[arg(short, long, value_name = "DIR")]
    output: Option<PathBuf>,

    /// Print only the table.
    #[arg(short, long)]
    quiet: bool,

    /// Flags for every `aether perf run` (after `--`).
    #[arg(last = true, value_name = "RUN FLAGS")]
    run_flags: Vec<String>,
}

fn check(a: &VersusArgs) -> Result<(), CliError> {
    if a.frameworks.len() < 2 {
        return Err(CliError::usage("--frameworks: name at least two, e.g. native,adk"));
    }
    for (i, f) in a.frameworks.iter().enumerate() {
        FrameworkArgs {
            framework: Some(f.clone()),
        }
        .chosen()?;
        if a.frameworks[..i].contains(f) {
            return Err(CliError::usage(format!("--frameworks: `{f}` is named twice")));
        }
    }
    if !(1..=50).contains(&a.rounds) {
        return Err(CliError::usage("--rounds: must be 1 to 50"));
    }
    for f in &a.run_flags {
        if ["--scenario", "--framework", "--output", "-o", "--all"].contains(&f.as_str()) {
            return Err(CliError::usage(format!(
                "`{f}` after `--`: versus sets it for each run; give the scenario with --scenario"
            )));
        }
    }
    Ok(())
}

pub async fn versus(a: VersusArgs) -> Result<(), CliError> {
    check(&a)?;
    let dir = a.output.clone().unwrap_or_else(|| {
        Path::new("logs/perf").join(format!(
            "versus-{}-{}",
            a.scenario,
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ))
    });
    std::fs::create_dir_all(&dir).map_err(|e| CliError::usage(format!("--output {}: {e}", dir.display())))?;
    let exe = std::env::current_exe().map_err(|e| CliError::failed(format!("cannot find this binary: {e}")))?;
    let mut runs = Vec::with_capacity(a.rounds * a.frameworks.len());
    let mut stored = Vec::with_capacity(a.rounds * a.frameworks.len());
    for round in 0..a.rounds {
        for f in &a.frameworks {
            let out = dir.join(format!("{f}-r{}.json", round + 1));
            if !a.quiet {
                eprintln!("round {}/{}: {} on {f} …", round + 1, a.rounds, a.scenario);
            }
            let mut command = std::process::Command::new(&exe);
            command
                .args([
                    "perf",
                    "run",
                    "--quiet",
                    "--scenario",
                    &a.scenario,
                    "--framework",
                    f,
                    "--output",
                ])
                .arg(&out)
                .args(&a.run_flags)
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            // The run takes the machine; this process only waits for it (off the async workers).
            let child = tokio::task::spawn_blocking(move || command.output())
                .await
                .map_err(|e| CliError::failed(e.to_string()))?
                .map_err(|e| CliError::failed(format!("cannot start `aether perf run`: {e}")))?;
            let stderr = String::from_utf8_lossy(&child.stderr);
            if child.status.code() == Some(2) {
                return Err(CliError::usage(format!(
                    "the run on {f} refused its flags: {}",
                    stderr.trim()
                )));
            }
            let text = std::fs::read_to_string(&out).map_err(|e| {
                CliError::failed(format!(
                    "the run on {f} (round {}) wrote no summary ({e}); it said: {}",
                    round + 1,
                    stderr.trim()
                ))
            })?;
            let summary = serde_json::from_str(&text)
                .map_err(|e| CliError::failed(format!("{}: not a summary: {e}", out.display())))?;
            stored.push(
                aether_harness::stored::parse_summary(&out, &text)
                    .map_err(|e| CliError::failed(format!("{}: {e}", out.display())))?,
            );
            runs.push(Run {
                framework: f.clone(),
                round,
                summary,
            });
        }
    }
    let table = versus::table(&a.scenario, &a.frameworks, &runs);
    let md = table.markdown();
    let json = serde_json::to_string_pretty(&table).map_err(|e| CliError::failed(e.to_string()))?;
    // Part 10's report of every run, overlaid (each labelled by its file: `adk-r2`, …).
    let report = aether_harness::html::render(&stored, None, &aether_harness::html::DEFAULT_PERCENTILES);
    for (name, body) in [
        ("versus.md", md.as_str()),
        ("versus.json", json.as_str()),
        ("versus.html", &table.html()),
        ("report.html", &report),
    ] {
        std::fs::write(dir.join(name), body)
            .map_err(|e| CliError::failed(format!("cannot write {}: {e}", dir.join(name).display())))?;
    }
    println!("{md}");
    if !a.quiet {
        eprintln!(
            "wrote {0}/versus.{{md,json,html}}, {0}/report.html (every run's report, overlaid) and each run's summary",
            dir.display()
        );
    }
    Ok(())
}
