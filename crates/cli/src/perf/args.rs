//! The flags of `aether perf` (clap's derive): its subcommands and their arguments, and the
//! parsers of their durations. What they mean is resolved in the parent module.

use std::path::PathBuf;
use std::time::Duration;

use aether_harness::scenario;
use clap::{Args, Subcommand};

use super::{analyse, gate, versus};
use crate::framework_args::FrameworkArgs;
use crate::mcp_args::McpArgs;
use crate::provider_args::ProviderArgs;
use crate::sim_args::SimArgs;
use crate::store_args::StoreArgs;

#[derive(Subcommand)]
pub enum PerfCommand {
    /// Run a scenario (or --all of them) and write its summary JSON.
    Run(Box<RunArgs>),
    /// List the scenarios with their defaults.
    List(ListArgs),
    /// Compare two summary files as a Markdown table of deltas.
    Compare(CompareArgs),
    /// One self-contained HTML report (charts, KPI tiles, percentiles) of one or more summaries.
    Report(analyse::ReportArgs),
    /// Add up summaries of one scenario (the segments of a distributed run) exactly.
    Merge(analyse::MergeArgs),
    /// The readiness checklist: run the scenarios (N times each) and judge every KPI and every
    /// figure against the newest comparable baselines.
    Gate(Box<gate::GateArgs>),
    /// The trend of each KPI over the stored runs of a directory, grouped by comparable runs.
    History(analyse::HistoryArgs),
    /// One scenario on several frameworks (native, adk), interleaved in rounds, each run in its
    /// own process: a table of ratios with their spread (Markdown, JSON, HTML).
    Versus(versus::VersusArgs),
}

#[derive(Args)]
pub struct ListArgs {
    /// Also write the catalog as JSON to this file.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Print nothing (with --output: only write the file).
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

#[derive(Args)]
#[command(after_long_help = "\
Latency is measured from when each request was due (closed loop: when its worker became free; \
with --rate, its slot in the arrival schedule) to the end of its turn, so a stalled runtime \
cannot hide its stalls. Each request is the two-step protocol: create (or reuse) the agent, then \
one turn.

Examples:
  aether perf run --scenario latency_smoke
  aether perf run --scenario tool_regression --model-latency-ms 0 --tool-latency-ms 100
  aether perf run --scenario burst_load --model-latency-ms 100 --concurrency 1000 --iterations 20000
  aether perf run --scenario burst_load --duration 10m --gate
  aether perf run --all --time-scale 0")]
pub struct RunArgs {
    /// Scenario to run (see `aether perf list`).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(scenario::names()), conflicts_with = "all")]
    pub(crate) scenario: Option<String>,

    /// Run every scenario in turn and write one summary each.
    #[arg(long)]
    pub(crate) all: bool,

    /// Requests to measure (default: the scenario's).
    #[arg(long, conflicts_with = "duration")]
    pub(crate) iterations: Option<u64>,

    /// Run for this long instead of a number of iterations: `30s`, `10m`, `1h`, `500ms`.
    #[arg(long, value_parser = parse_duration)]
    pub(crate) duration: Option<Duration>,

    /// Requests at the start excluded from every statistic (endpoint_load: sent one by one
    /// before the run, on top of --iterations).
    #[arg(long)]
    pub(crate) warmup: Option<u64>,

    /// Requests in flight at once (default: the scenario's).
    #[arg(long)]
    pub(crate) concurrency: Option<usize>,

    /// Open loop: start requests at this rate (per second) instead of as workers free up.
    #[arg(long)]
    pub(crate) rate: Option<f64>,

    /// Model name (default: the scenario's).
    #[arg(long)]
    pub(crate) model: Option<String>,

    /// Comma list of tools, e.g. `crm_lookup,doc_indexer,aml_checker`. With --all it applies to
    /// tool_regression only.
    #[arg(long)]
    pub(crate) tools: Option<String>,

    /// The user message of every turn.
    #[arg(long)]
    pub(crate) prompt: Option<String>,

    /// The agent's system prompt.
    #[arg(long)]
    pub(crate) system_prompt: Option<String>,

    /// Where to write the summary JSON (with --all: a directory). Default:
    /// `logs/perf/<scenario>-<UTC timestamp>.json`.
    #[arg(short, long)]
    pub(crate) output: Option<PathBuf>,

    /// No progress bar, no table, no summary path: only errors (and the exit code) say how it
    /// went. The summary JSON is written as always.
    #[arg(short, long)]
    pub(crate) quiet: bool,

    /// Print the resolved scenario and agent config, and run nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,

    /// Exit with code 1 when a KPI fails (endpoint_load: when a request fails).
    #[arg(long)]
    pub(crate) gate: bool,

    /// TOML file with a `[kpis]` table overriding the plan's targets.
    #[arg(long)]
    pub(crate) kpi_file: Option<PathBuf>,

    /// Seconds before an idle chat session is archived (runtime setting).
    #[arg(long, value_name = "SECS")]
    pub(crate) session_idle_ttl: Option<f64>,

    /// Seconds an archived session is kept (runtime setting).
    #[arg(long, value_name = "SECS")]
    pub(crate) archive_ttl: Option<f64>,

    /// Run each turn synchronously, or as a live session that streams chunks (default: the
    /// scenario's; stream_probe streams).
    #[arg(long, value_enum)]
    pub(crate) mode: Option<ModeArg>,

    /// The automatic approver answers approval requests after this many milliseconds.
    #[arg(long, value_name = "MS")]
    pub(crate) approval_think_ms: Option<u64>,

    /// An image file (jpeg, png, gif, webp or bmp) for multimodal_echo to send instead of the
    /// built-in samples.
    #[arg(long, value_name = "PATH")]
    pub(crate) multimodal_payload: Option<PathBuf>,

    /// Run the scenario through the HTTP API of `aether serve` at this URL (`http://HOST:PORT`)
    /// instead of a runtime in this process. The server's own flags then decide the store, the
    /// model and its latency; this run's --store, --provider and simulation flags do not apply.
    #[arg(long, value_name = "URL")]
    pub(crate) target: Option<String>,

    /// API key for --target (sent as a bearer token; never printed).
    #[arg(long, value_name = "KEY", env = "AETHER_API_KEY", hide_env_values = true)]
    pub(crate) api_key: Option<String>,

    /// An admin key of the --target server (`[admin]` / AETHER_ADMIN_KEYS there): the harness
    /// reads the server's stats route at each interval, so the time series holds the server's
    /// RSS, CPU and counters beside the client's.
    #[arg(
        long,
        value_name = "KEY",
        env = "AETHER_ADMIN_KEY",
        hide_env_values = true,
        requires = "target"
    )]
    pub(crate) admin_key: Option<String>,

    /// Run one share of the work (1-based `i/n`, like k6's execution segments): segment i runs
    /// its share of the iterations, of the --rate and of the workers, and tags its ids so that
    /// segments sharing one --target never collide. `aether perf merge` adds the n summaries up.
    #[arg(long, value_name = "I/N", value_parser = scenario::Segment::parse)]
    pub(crate) segment: Option<scenario::Segment>,

    /// Also write the HTML report beside each summary (`<summary>.html`).
    #[arg(long)]
    pub(crate) report: bool,

    /// Profile this process's CPU during each run (99 Hz): a flame graph (`<summary>.cpu.svg`)
    /// and a pprof protobuf (`<summary>.cpu.pb`) beside the summary, which links to them. In
    /// process the profile holds the load generator as well as the runtime; with --target it is
    /// the harness alone (the server's: GET /debug/pprof/profile with an admin key).
    #[arg(long)]
    pub(crate) cpu_profile: bool,

    /// The time series' interval, in seconds (aligned on UTC, so runs from several machines line
    /// up): counts, in-flight, latency histograms, errors, RSS and CPU per interval.
    #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = parse_interval)]
    pub(crate) interval: f64,

    #[command(flatten)]
    pub(crate) sim: SimArgs,

    #[command(flatten)]
    pub(crate) framework: FrameworkArgs,

    #[command(flatten)]
    pub(crate) store: StoreArgs,

    #[command(flatten)]
    pub(crate) provider: ProviderArgs,

    #[command(flatten)]
    pub(crate) endpoint: EndpointArgs,

    #[command(flatten)]
    pub(crate) mcp: McpArgs,

    /// tool_regression: calls per series of the one-call-at-a-time cost table (in process and
    /// each MCP tool over its pooled session).
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub(crate) tool_call_samples: u32,

    /// tool_regression: calls of each MCP tool over a new session per call (the original's
    /// design; each call spawns or connects and handshakes).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub(crate) per_call_session_samples: u32,
}

/// Flags of `--scenario endpoint_load`.
#[derive(Args)]
#[command(next_help_heading = "endpoint_load")]
pub(crate) struct EndpointArgs {
    /// Open-loop arrivals per second (same as --rate).
    #[arg(long, value_name = "R")]
    pub(crate) request_rate: Option<f64>,
    /// Shape of the gamma arrival gaps: 1 is Poisson, below 1 burstier, above 1 more regular.
    #[arg(long, default_value_t = 1.0, value_name = "K")]
    pub(crate) burstiness: f64,
    /// Prompt length in tokens (synthetic prompt) when no --dataset is given.
    #[arg(long, default_value_t = 128)]
    pub(crate) prompt_tokens: u32,
    /// Output tokens to ask for (max_tokens).
    #[arg(long)]
    pub(crate) output_tokens: Option<u32>,
    /// JSONL of prompts: `{"prompt": "...", "output_tokens": 128}` per line.
    #[arg(long, value_name = "FILE")]
    pub(crate) dataset: Option<PathBuf>,
    /// SLO on time to first token, for goodput.
    #[arg(long, value_name = "MS")]
    pub(crate) slo_ttft_ms: Option<f64>,
    /// SLO on time per output token, for goodput.
    #[arg(long, value_name = "MS")]
    pub(crate) slo_tpot_ms: Option<f64>,
    /// SLO on end-to-end latency, for goodput.
    #[arg(long, value_name = "MS")]
    pub(crate) slo_e2e_ms: Option<f64>,
}

#[derive(Args)]
pub struct CompareArgs {
    /// The baseline summary JSON.
    pub(crate) base: PathBuf,
    /// The new summary JSON.
    pub(crate) new: PathBuf,
    /// Exit with code 1 when a metric is worse by more than this many percent.
    #[arg(long, value_name = "PCT")]
    pub(crate) fail_on_regression: Option<f64>,
    /// Also write the Markdown to this file (e.g. for a PR comment).
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Print nothing: the exit code (and --output) say it.
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

/// `30s`, `10m`, `1h`, `500ms`, or plain seconds.
pub(crate) fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "`{s}`: expected seconds between 0.1 and 3600 (e.g. 1, 0.5, 10)"
        )),
    }
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; use e.g. 30s, 10m, 1h or 500ms"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit `{unit}` in `{s}`; use ms, s, m or h")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("`{s}` must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum ModeArg {
    Sync,
    Streaming,
}
