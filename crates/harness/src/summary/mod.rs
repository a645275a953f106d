//! The summary of a run: JSON (schema version 2) and a readable table.
//!
//! **Schema 2** adds the time series (`timeline`), the breakdowns (`breakdowns`), the measured
//! window (`measured`) and compact histograms (HDR V2 + DEFLATE, base64) of every distribution a
//! summary reports, so summaries merge exactly (`perf merge`). Every schema-1 field keeps its
//! name and meaning (`requests.total`, `latency_ms.p99`, `throughput_rps`, …); readers load
//! either version ([`crate::stored::read_summary`]).
//!
//! The readable table is `render` (its own module).

mod render;

use std::collections::BTreeMap;

use aether_runtime::StatsSnapshot;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::kpi::Kpi;
use crate::scenario::ScenarioConfig;
use crate::stats::{DurationHist, SerialisedHist, Stats, Unit};
use crate::target::TargetInfo;
use crate::timeline::Timeline;

pub const SCHEMA_VERSION: u32 = 2;
/// The schema versions readers accept.
pub const READABLE_VERSIONS: [u32; 2] = [1, 2];

/// How the figures were measured, written into every summary.
pub const MEASUREMENT_NOTES: &str = "latency_ms runs from when each request was due (closed loop: when its worker became free; \
open loop: its slot in the arrival schedule) to the end of its turn, and covers both steps of the protocol (create or reuse \
the agent, then the turn); overhead_us, model_ms and tool_ms are the runtime's own per-turn breakdown (overhead = total - model - tools); \
percentiles come from HDR histograms (3 significant figures); throughput = measured requests / time from the first measured \
request's due time to the last measured completion; warm-up requests are excluded from every statistic; the time series counts each request in the UTC-aligned interval in which it completed.";

#[derive(Debug, Clone, Serialize)]
pub struct ProviderSummary {
    pub name: String,
    pub model: String,
    pub simulated: bool,
    /// In process with an HTTP model provider: its retries (their count, wait and the retried
    /// calls' mean duration, apart from the latencies they are part of) and its circuit breaker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resilience: Option<aether_runtime::model::resilience::ResilienceSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Requests {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub error_rate: f64,
    /// Requests issued, warm-up included.
    pub issued: u64,
    pub warmup_excluded: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ForcedExpire {
    /// Time to archive the session (cleanup).
    pub cleanup_ms: f64,
    /// The next turn on the same id, which recovers the history.
    pub next_turn_ms: f64,
    pub recovered: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionsSummary {
    pub created: u64,
    pub reused: u64,
    pub reuse_ratio: f64,
    /// Turns that started a new session (cold) and turns on an existing one (warm).
    pub cold_ms: Stats,
    pub warm_ms: Stats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forced_expire: Option<ForcedExpire>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentsSummary {
    pub created: u64,
    pub reused: u64,
    /// Share of requests served by an agent (and its runner) that already existed.
    pub reuse_ratio: f64,
    pub cleaned_up: u64,
    pub create_ms: Stats,
    pub cleanup_ms: Stats,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunnersSummary {
    pub created: u64,
    pub reclaimed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ToolsSummary {
    pub calls: u64,
    pub names: Vec<String>,
    /// P50(all tools) / P50(one tool); tool_regression only.
    pub fanout_ratio: Option<f64>,
    pub baseline_p50_ms: Option<f64>,
    pub fanout_p50_ms: Option<f64>,
    /// Time to resolve a tool name through the registry.
    pub resolution_us: Option<Stats>,
    /// tool_regression: per-call cost in process and over MCP (pooled and per-call sessions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_costs: Option<Vec<crate::tool_calls::ToolCallCost>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Resources {
    pub rss_start_bytes: Option<u64>,
    pub rss_end_bytes: Option<u64>,
    pub rss_peak_bytes: Option<u64>,
    pub cpu_seconds: f64,
    /// Least-squares slope of the RSS samples taken after warm-up, and its standard error. Every
    /// fit's error here allows for readings correlated with their neighbours up to a minute
    /// apart (Newey and West's, [`crate::resources::CORRELATION_SPAN_S`]): a soak's live set
    /// wanders with its rate, and least squares' own error, which takes every reading as
    /// independent, can be several times too small where readings move together.
    pub rss_drift_bytes_per_hour: Option<f64>,
    #[serde(default)]
    pub rss_drift_error_bytes_per_hour: Option<f64>,
    /// RSS's slope and error over the second half of the window alone (see the heap's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_drift_late_bytes_per_hour: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_drift_late_error_bytes_per_hour: Option<f64>,
    /// The allocators' allocated bytes (`heap_allocated_bytes`) at the start and end, and their
    /// slope (with its standard error) over the same window as the RSS drift: growth that RSS
    /// hides (freed pages kept) or shows falsely (allocator caches) is told apart here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_start_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_end_bytes: Option<u64>,
    #[serde(default)]
    pub heap_drift_bytes_per_hour: Option<f64>,
    #[serde(default)]
    pub heap_drift_error_bytes_per_hour: Option<f64>,
    /// The heap's slope and error over the second half of the window alone: near zero when
    /// the whole-window slope is a ramp that levelled off, the same slope when memory leaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_drift_late_bytes_per_hour: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_drift_late_error_bytes_per_hour: Option<f64>,
    /// What the harness's own time series held at the end (a row per interval, kept for the
    /// report; counted as rows are made), what its histograms' buckets held (a
    /// run's recorders, one per worker stripe; they widen as slower requests arrive), and both
    /// heap fits less the two: the growth of what the run under test kept, which is what a soak
    /// judges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_end_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histograms_end_bytes: Option<u64>,
    #[serde(default)]
    pub heap_drift_net_bytes_per_hour: Option<f64>,
    #[serde(default)]
    pub heap_drift_net_error_bytes_per_hour: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_drift_late_net_bytes_per_hour: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_drift_late_net_error_bytes_per_hour: Option<f64>,
    /// Where SQLite allocated: its page caches' bytes at the end, and both net fits less those
    /// caches too. The caches, bounded by the connections' `cache_size` (3.7-3.8 MB in all with
    /// the store's default read caches, 12.4 MB with SQLite's own default for every connection),
    /// fill over a soak's first minutes and then hold: a bounded fill that the whole window's net
    /// slope counts as growth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite_cache_end_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_drift_net_less_cache_bytes_per_hour: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_drift_net_less_cache_error_bytes_per_hour: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_drift_late_net_less_cache_bytes_per_hour: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_drift_late_net_less_cache_error_bytes_per_hour: Option<f64>,
    /// In-process runs: the net heap less SQLite's page caches (where it has them), fitted on
    /// time and the runtime's live sessions together over the drift window (the time series'
    /// rows: `heap_bytes`, `harness_bytes`, `sqlite_cache_bytes`, `sessions_live`). The slope
    /// at a constant live set, with its error, and the bytes per live session, with theirs: a
    /// soak whose rate drifts (a store whose one writer sets the pace) holds more sessions live
    /// as it speeds up and fewer as it slows, which the plain fits count as growth or a fall.
    /// Absent where the window is shorter than the drift KPI judges (60 s by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_drift_at_live_set_bytes_per_hour: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_drift_at_live_set_error_bytes_per_hour: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_bytes_per_live_session: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_bytes_per_live_session_error: Option<f64>,
    pub drift_window_s: f64,
    /// (end − start) / requests: memory kept per cycle (runner_lifecycle).
    pub rss_delta_per_cycle_bytes: Option<f64>,
    pub samples: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LittlesLaw {
    pub concurrency: usize,
    pub mean_latency_ms: f64,
    /// concurrency / mean latency: the most a closed loop can do at that latency.
    pub bound_rps: f64,
    pub efficiency: f64,
    /// concurrency / configured model latency, when a fixed model latency and no tools are set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ideal_rps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub efficiency_vs_ideal: Option<f64>,
}

/// Live-turn figures (streaming mode).
#[derive(Debug, Clone, Serialize)]
pub struct StreamSummary {
    pub turns: u64,
    /// From starting the live turn to its first chunk.
    pub ttft_ms: Stats,
    /// Between consecutive chunks of a turn.
    pub chunk_gap_ms: Stats,
    /// Chunks received in all.
    #[serde(default)]
    pub chunks: u64,
    pub chunks_per_turn: f64,
    /// From an approval request's arrival to the runtime accepting the answer (think time included).
    pub approval_latency_ms: Stats,
    pub approval_think_ms: u64,
    /// Sequence ids skipped (chunks lost).
    pub drops: u64,
    /// Live turns are not retried by the harness: always 0.
    pub retries: u64,
}

/// Attachment figures (multimodal_echo).
#[derive(Debug, Clone, Serialize)]
pub struct MultimodalSummary {
    pub attachments: u64,
    pub intact: u64,
    /// Share of attachments acknowledged with the right type, size and hash (0..1).
    pub fidelity: f64,
    /// Time the runtime spent checking and converting the attachments of a turn.
    pub conversion_ms: Stats,
}

/// The breakdowns of a run: failures by error code, latency by phase (agent create, turn), by
/// tool (each tool's execution time, as the runtime reports it) and by error code (how long the
/// failed requests took).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakdowns {
    pub errors_by_code: BTreeMap<String, u64>,
    pub latency_by_phase_ms: BTreeMap<String, Stats>,
    pub latency_by_tool_ms: BTreeMap<String, Stats>,
    pub latency_by_error_code_ms: BTreeMap<String, Stats>,
}

impl Breakdowns {
    pub fn of(
        errors_by_code: BTreeMap<String, u64>,
        create: &DurationHist,
        turn: &DurationHist,
        by_tool: &BTreeMap<String, DurationHist>,
        by_error: &BTreeMap<String, DurationHist>,
    ) -> Self {
        let ms = |m: &BTreeMap<String, DurationHist>| m.iter().map(|(k, h)| (k.clone(), h.stats(Unit::Ms))).collect();
        Self {
            errors_by_code,
            latency_by_phase_ms: [("agent_create", create), ("turn", turn)]
                .into_iter()
                .filter(|(_, h)| !h.is_empty())
                .map(|(k, h)| (k.to_owned(), h.stats(Unit::Ms)))
                .collect(),
            latency_by_tool_ms: ms(by_tool),
            latency_by_error_code_ms: ms(by_error),
        }
    }
}

/// From the first measured request's due time to the last measured completion, in UTC: the
/// window throughput is computed over (and the union of windows when summaries merge).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeasuredWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl MeasuredWindow {
    /// The smallest window holding every `(start, end)`.
    pub fn envelope(windows: impl IntoIterator<Item = (DateTime<Utc>, DateTime<Utc>)>) -> Option<Self> {
        windows.into_iter().fold(None, |acc, (a, b)| {
            Some(match acc {
                None => Self { start: a, end: b },
                Some(w) => Self {
                    start: w.start.min(a),
                    end: w.end.max(b),
                },
            })
        })
    }

    pub fn seconds(&self) -> f64 {
        (self.end - self.start).num_nanoseconds().unwrap_or(0) as f64 / 1e9
    }
}

/// The CPU profile taken during the run (`perf run --cpu-profile`): files beside the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuProfileLinks {
    /// The flame graph (SVG), relative to the summary's directory.
    pub flamegraph: String,
    /// The pprof protobuf, relative to the summary's directory.
    pub pprof: String,
    pub samples: u64,
    pub frequency_hz: u32,
    /// What the profile covers.
    pub note: String,
}

/// Where and from what a run came: the build, the machine, the command.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub aether_version: String,
    /// The commit the binary was built from (empty when unknown).
    #[serde(default)]
    pub git_commit: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub cpus: usize,
    /// The command line that ran it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command: String,
    /// Agent frameworks linked into the build besides the native one, with their versions
    /// (`adk-rust` → `2.3.0`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub frameworks: BTreeMap<String, String>,
}

impl Provenance {
    /// This process: the harness's version, the host name, the OS and the CPUs (the caller adds
    /// the commit and the command).
    pub fn current() -> Self {
        Self {
            aether_version: env!("CARGO_PKG_VERSION").to_owned(),
            git_commit: String::new(),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_default(),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            command: String::new(),
            frameworks: BTreeMap::new(),
        }
    }
}

/// The summary JSON of one scenario run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub schema_version: u32,
    pub scenario: String,
    pub started_at: DateTime<Utc>,
    pub duration_s: f64,
    /// True when every figure comes from the simulated model.
    pub simulated: bool,
    pub provenance: Provenance,
    pub provider: ProviderSummary,
    pub target: TargetInfo,
    pub config: ScenarioConfig,
    pub requests: Requests,
    pub throughput_rps: f64,
    pub latency_ms: Stats,
    pub overhead_us: Stats,
    pub model_ms: Stats,
    pub tool_ms: Stats,
    pub tokens: Tokens,
    pub cost_usd: f64,
    pub sessions: SessionsSummary,
    pub agents: AgentsSummary,
    pub runners: Option<RunnersSummary>,
    pub tools: ToolsSummary,
    pub resources: Resources,
    pub littles_law: LittlesLaw,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multimodal: Option<MultimodalSummary>,
    pub kpis: Vec<Kpi>,
    /// No KPI failed.
    pub passed: bool,
    pub alert: Option<String>,
    pub errors: Vec<String>,
    pub runtime_stats: Option<StatsSnapshot>,
    pub histograms: BTreeMap<String, SerialisedHist>,
    pub breakdowns: Breakdowns,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<MeasuredWindow>,
    pub timeline: Timeline,
    /// `perf merge`: the summaries this one adds up.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_profile: Option<CpuProfileLinks>,
    /// The OTLP span export of this process, when on: delivered, dropped at a full queue, lost
    /// in failed exports (counted since the process started), and the queue's bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_export: Option<aether_runtime::telemetry::SpanExportStats>,
    /// The slowest requests, slowest first, with their task ids and trace ids (see
    /// [`crate::slowest::SlowRequest`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slowest: Vec<crate::slowest::SlowRequest>,
    pub measurement: &'static str,
    // The original harness's fields, for continuity.
    pub iterations: u64,
    pub concurrency: usize,
    pub duration_sec: f64,
    pub latency_avg_sec: f64,
    pub latency_p50_sec: f64,
    pub latency_p95_sec: f64,
    pub success_count: u64,
    pub error_count: u64,
}
