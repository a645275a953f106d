//! The scenario catalog of the performance plan and the resolution of flags against it.

use serde::{Deserialize, Serialize};

/// How a scenario picks chat-session ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionMode {
    /// A new session for every request.
    PerRequest,
    /// One session for the whole run.
    ReuseSingle,
    /// A deterministic session per iteration (`user-0001`, ...): each user has their own.
    FixedPerIteration,
}

impl SessionMode {
    pub fn session_id(self, run_tag: &str, iteration: u64) -> String {
        match self {
            SessionMode::PerRequest => tagged_id(run_tag, "-req-", iteration),
            SessionMode::ReuseSingle => format!("{run_tag}-single"),
            SessionMode::FixedPerIteration => format!("user-{iteration:04}"),
        }
    }
}

/// `{tag}{sep}{i}` in one allocation: the load loop builds three such ids a request, and
/// `format!` grows its buffer twice for each (~1.1 k instructions an id, callgrind).
pub(crate) fn tagged_id(tag: &str, sep: &str, i: u64) -> String {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(i);
    let mut id = String::with_capacity(tag.len() + sep.len() + digits.len());
    id.push_str(tag);
    id.push_str(sep);
    id.push_str(digits);
    id
}

/// What a scenario measures beyond the common figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScenarioKind {
    Standard,
    /// A single-tool baseline, then all tools at once; reports the fan-out ratio.
    ToolRegression,
    /// Cold versus warm turns on one session, then a forced expiry.
    SessionWarmSwitch,
    /// Many short-lived users; reports controlled-reuse ratios.
    MultiUserHandoff,
    /// A fresh agent per iteration, cleaned up after its request.
    RunnerLifecycle,
    /// Live turns with a tool that needs approval, answered by an automatic approver.
    StreamProbe,
    /// Messages with image and file attachments; checks every attachment is acknowledged intact.
    MultimodalEcho,
    /// A model endpoint driven directly (no agent, no session), as serving benchmarks do.
    EndpointLoad,
}

impl ScenarioKind {
    /// Whether the scenario drives a model endpoint (`--provider`) rather than the runtime.
    pub fn drives_endpoint(self) -> bool {
        self == ScenarioKind::EndpointLoad
    }
}

/// How each turn is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One request, one result.
    Sync,
    /// A live session: the turn streams chunks.
    Streaming,
}

/// One entry of the catalog, with the original harness's defaults.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ScenarioSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub iterations: u64,
    pub concurrency: usize,
    pub session_mode: SessionMode,
    pub cleanup_agent: bool,
    pub max_expected_latency_s: f64,
    pub model: &'static str,
    pub tools: &'static [&'static str],
    pub metadata: &'static [(&'static str, &'static str)],
    pub kind: ScenarioKind,
    pub mode: Mode,
    /// Tools whose calls need approval (answered by the automatic approver in streaming mode).
    pub approval_tools: &'static [&'static str],
}

/// Tools of `tool_regression` unless `--tools` says otherwise (5+, as the fan-out KPI says).
pub const DEFAULT_FANOUT_TOOLS: &[&str] = &["crm_lookup", "doc_indexer", "aml_checker", "kyc_screen", "fx_quote"];

/// The plan's scenarios.
pub const CATALOG: &[ScenarioSpec] = &[
    ScenarioSpec {
        name: "latency_smoke",
        description: "Baseline turn latency: a few serial requests, a fresh session each",
        iterations: 5,
        concurrency: 1,
        session_mode: SessionMode::PerRequest,
        cleanup_agent: false,
        max_expected_latency_s: 3.0,
        model: "gemini-1.5-pro",
        tools: &[],
        metadata: &[],
        kind: ScenarioKind::Standard,
        mode: Mode::Sync,
        approval_tools: &[],
    },
    ScenarioSpec {
        name: "burst_load",
        description: "Throughput sweep: concurrent requests, a fresh session each",
        iterations: 25,
        concurrency: 5,
        session_mode: SessionMode::PerRequest,
        cleanup_agent: false,
        max_expected_latency_s: 6.0,
        model: "gemini-1.5-flash",
        tools: &[],
        metadata: &[],
        kind: ScenarioKind::Standard,
        mode: Mode::Sync,
        approval_tools: &[],
    },
    ScenarioSpec {
        name: "tool_regression",
        description: "Tool fan-out: a single-tool baseline, then all tools fired together",
        iterations: 10,
        concurrency: 3,
        session_mode: SessionMode::PerRequest,
        cleanup_agent: false,
        max_expected_latency_s: 8.0,
        model: "gemini-1.5-pro",
        tools: DEFAULT_FANOUT_TOOLS,
        metadata: &[],
        kind: ScenarioKind::ToolRegression,
        mode: Mode::Sync,
        approval_tools: &[],
    },
    ScenarioSpec {
        name: "session_warm_switch",
        description: "Session lifecycle: cold first turn, warm reuse, forced expiry",
        iterations: 6,
        concurrency: 1,
        session_mode: SessionMode::ReuseSingle,
        cleanup_agent: false,
        max_expected_latency_s: 3.5,
        model: "gemini-1.5-pro",
        tools: &[],
        metadata: &[],
        kind: ScenarioKind::SessionWarmSwitch,
        mode: Mode::Sync,
        approval_tools: &[],
    },
    ScenarioSpec {
        name: "multi_user_handoff",
        description: "Many short-lived users, each with their own session, sharing pooled agents",
        iterations: 40,
        concurrency: 8,
        session_mode: SessionMode::FixedPerIteration,
        cleanup_agent: false,
        max_expected_latency_s: 6.5,
        model: "gemini-1.5-flash",
        tools: &[],
        metadata: &[("tenant", "enterprise_pool")],
        kind: ScenarioKind::MultiUserHandoff,
        mode: Mode::Sync,
        approval_tools: &[],
    },
    ScenarioSpec {
        name: "runner_lifecycle",
        description: "Agent and runner churn: a fresh agent per iteration, cleaned up after",
        iterations: 12,
        concurrency: 2,
        session_mode: SessionMode::PerRequest,
        cleanup_agent: true,
        max_expected_latency_s: 7.0,
        model: "gemini-1.5-pro",
        tools: &[],
        metadata: &[],
        kind: ScenarioKind::RunnerLifecycle,
        mode: Mode::Sync,
        approval_tools: &[],
    },
    ScenarioSpec {
        name: "stream_probe",
        description: "Live turns: chunk timing, a tool that needs approval, an automatic approver",
        iterations: 10,
        concurrency: 2,
        session_mode: SessionMode::PerRequest,
        cleanup_agent: false,
        max_expected_latency_s: 6.0,
        model: "gemini-1.5-flash",
        tools: &["crm_lookup", "aml_checker"],
        metadata: &[],
        kind: ScenarioKind::StreamProbe,
        mode: Mode::Streaming,
        approval_tools: &["aml_checker"],
    },
    ScenarioSpec {
        name: "multimodal_echo",
        description: "Images of several formats and sizes plus a file reference; every attachment acknowledged intact",
        iterations: 10,
        concurrency: 2,
        session_mode: SessionMode::PerRequest,
        cleanup_agent: false,
        max_expected_latency_s: 6.0,
        model: "gemini-1.5-flash",
        tools: &[],
        metadata: &[],
        kind: ScenarioKind::MultimodalEcho,
        mode: Mode::Sync,
        approval_tools: &[],
    },
    ScenarioSpec {
        name: "endpoint_load",
        description: "A model endpoint driven directly, as serving benchmarks do: TTFT, TPOT, ITL, goodput \
                      (needs --provider openai|gemini|local)",
        iterations: 100,
        concurrency: 8,
        session_mode: SessionMode::PerRequest,
        cleanup_agent: false,
        max_expected_latency_s: 30.0,
        model: "gpt-4o-mini",
        tools: &[],
        metadata: &[],
        kind: ScenarioKind::EndpointLoad,
        mode: Mode::Streaming,
        approval_tools: &[],
    },
];

pub fn find(name: &str) -> Option<&'static ScenarioSpec> {
    CATALOG.iter().find(|s| s.name == name)
}

pub fn names() -> Vec<&'static str> {
    CATALOG.iter().map(|s| s.name).collect()
}

pub const DEFAULT_PROMPT: &str = "Summarise the account status for customer C-1001.";
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are an enterprise banking assistant. Use tools when they help.";

/// How long the run lasts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    Iterations(u64),
    DurationSecs(f64),
}

/// One share of a run split over several harness processes (`--segment i/n`, 1-based), like
/// k6's execution segments: segment `i` of `n` runs iterations `⌊N·(i−1)/n⌋ .. ⌊N·i/n⌋` of the
/// run's `N` (so the shares add up to `N` exactly), `rate / n` of an open-loop rate, and its share
/// of the workers (at least one). Its ids carry `s{i}of{n}`, so segments sharing one server never
/// collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub index: u32,
    pub count: u32,
}

impl Segment {
    /// `i/n` with 1 <= i <= n.
    pub fn parse(s: &str) -> Result<Self, String> {
        let err = || format!("`{s}`: expected i/n with 1 <= i <= n, e.g. 2/4 (1-based, like JOB_COMPLETION_INDEX + 1)");
        let (i, n) = s.split_once('/').ok_or_else(err)?;
        let (index, count) = (
            i.trim().parse::<u32>().map_err(|_| err())?,
            n.trim().parse::<u32>().map_err(|_| err())?,
        );
        if index == 0 || count == 0 || index > count {
            return Err(err());
        }
        Ok(Self { index, count })
    }

    /// This segment's share of `total` (the shares of all segments add up to `total`).
    pub fn share(&self, total: u64) -> u64 {
        let (i, n) = (u128::from(self.index), u128::from(self.count));
        let t = u128::from(total);
        (t * i / n - t * (i - 1) / n) as u64
    }

    /// The id prefix of this segment's requests.
    pub fn tag(&self) -> String {
        format!("s{}of{}", self.index, self.count)
    }
}

/// A scenario with every value resolved: what the run actually does. Written into the summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioConfig {
    pub scenario: String,
    pub kind: ScenarioKind,
    pub description: String,
    pub stop: Stop,
    pub warmup: u64,
    pub concurrency: usize,
    /// Open-loop arrival rate in requests/s; `None` is closed loop.
    pub rate: Option<f64>,
    pub session_mode: SessionMode,
    pub cleanup_agent: bool,
    pub max_expected_latency_s: f64,
    pub model: String,
    pub tools: Vec<String>,
    pub prompt: String,
    pub system_prompt: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub time_scale: f64,
    pub model_latency_ms: Option<u64>,
    pub tool_latency_ms: Option<u64>,
    pub seed: u64,
    pub error_rate: f64,
    pub session_idle_ttl_s: f64,
    pub archive_ttl_s: f64,
    pub mode: Mode,
    pub approval_tools: Vec<String>,
    /// The automatic approver waits this long before answering.
    pub approval_think_ms: u64,
    /// A file to attach (multimodal_echo); the built-in samples when `None`.
    pub multimodal_payload: Option<std::path::PathBuf>,
    /// This run's share of a run split over several processes (`--segment i/n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<Segment>,
    /// The agent framework the scenario's agent runs on (`native`, `adk`); `None`: the target's
    /// default (`native` in process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework: Option<String>,
}

impl ScenarioConfig {
    /// The prefix of the ids of a phase's requests: `<scenario>[-s<i>of<n>]-<phase>`.
    pub fn tag(&self, phase: &str) -> String {
        match self.segment {
            Some(s) => format!("{}-{}-{phase}", self.scenario, s.tag()),
            None => format!("{}-{phase}", self.scenario),
        }
    }

    /// Cuts this run down to segment `seg`'s share; the error names what cannot be shared.
    pub fn segment(mut self, seg: Segment) -> Result<Self, InvalidOption> {
        if seg.count == 1 {
            return Ok(self);
        }
        if let Stop::Iterations(n) = self.stop {
            let share = seg.share(n);
            if share == 0 {
                return Err(invalid(
                    "--segment",
                    format!(
                        "segment {}/{} of {n} iterations gets none: use fewer segments",
                        seg.index, seg.count
                    ),
                ));
            }
            self.stop = Stop::Iterations(share);
            self.warmup = seg.share(self.warmup).min(share - 1);
        }
        self.concurrency = (seg.share(self.concurrency as u64) as usize).max(1);
        self.rate = self.rate.map(|r| r / f64::from(seg.count));
        self.segment = Some(seg);
        Ok(self)
    }
}

/// Flags that override a scenario's defaults (`None`: keep the default).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub iterations: Option<u64>,
    pub duration_s: Option<f64>,
    pub warmup: Option<u64>,
    pub concurrency: Option<usize>,
    pub rate: Option<f64>,
    pub model: Option<String>,
    pub tools: Option<Vec<String>>,
    pub prompt: Option<String>,
    pub system_prompt: Option<String>,
    pub time_scale: Option<f64>,
    pub model_latency_ms: Option<u64>,
    pub tool_latency_ms: Option<u64>,
    pub seed: Option<u64>,
    pub error_rate: Option<f64>,
    pub session_idle_ttl_s: Option<f64>,
    pub archive_ttl_s: Option<f64>,
    pub mode: Option<Mode>,
    pub approval_think_ms: Option<u64>,
    pub multimodal_payload: Option<std::path::PathBuf>,
    /// `--framework`: `native` when `None`.
    pub framework: Option<String>,
}

/// A flag value that makes no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{flag}: {message}")]
pub struct InvalidOption {
    pub flag: &'static str,
    pub message: String,
}

fn invalid(flag: &'static str, message: impl Into<String>) -> InvalidOption {
    InvalidOption {
        flag,
        message: message.into(),
    }
}

impl ScenarioConfig {
    /// Resolves `spec` with `o`, checking every value.
    pub fn resolve(spec: &ScenarioSpec, o: &Overrides) -> Result<Self, InvalidOption> {
        let stop = match (o.iterations, o.duration_s) {
            (Some(_), Some(_)) => return Err(invalid("--duration", "use either --iterations or --duration, not both")),
            (Some(0), _) => return Err(invalid("--iterations", "must be at least 1")),
            (Some(n), None) => Stop::Iterations(n),
            (None, Some(d)) if !(d.is_finite() && d > 0.0) => return Err(invalid("--duration", "must be positive")),
            (None, Some(d)) => Stop::DurationSecs(d),
            (None, None) => Stop::Iterations(spec.iterations),
        };
        let concurrency = o.concurrency.unwrap_or(spec.concurrency);
        if concurrency == 0 {
            return Err(invalid("--concurrency", "must be at least 1"));
        }
        if concurrency > 100_000 {
            return Err(invalid("--concurrency", "must be at most 100000"));
        }
        if let Some(r) = o.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err(invalid("--rate", "must be a positive number of requests per second"));
            }
        }
        let time_scale = o.time_scale.unwrap_or(1.0);
        if !(time_scale.is_finite() && time_scale >= 0.0) {
            return Err(invalid("--time-scale", "must be a number >= 0"));
        }
        let error_rate = o.error_rate.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&error_rate) {
            return Err(invalid("--error-rate", "must be between 0 and 1"));
        }
        let warmup = o.warmup.unwrap_or(0);
        // endpoint_load's warm-up requests come before the run, on top of its iterations.
        if let (Stop::Iterations(n), false) = (stop, spec.kind.drives_endpoint()) {
            if warmup >= n {
                return Err(invalid(
                    "--warmup",
                    format!("must be less than the {n} iterations, or nothing is measured"),
                ));
            }
        }
        for (flag, v) in [
            ("--session-idle-ttl", o.session_idle_ttl_s),
            ("--archive-ttl", o.archive_ttl_s),
        ] {
            if v.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                return Err(invalid(flag, "must be a number of seconds >= 0"));
            }
        }
        let tools = o
            .tools
            .clone()
            .unwrap_or_else(|| spec.tools.iter().map(|t| (*t).to_owned()).collect());
        if spec.kind == ScenarioKind::ToolRegression && tools.is_empty() {
            return Err(invalid("--tools", "tool_regression needs at least one tool"));
        }
        let metadata = spec
            .metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        Ok(Self {
            scenario: spec.name.to_owned(),
            kind: spec.kind,
            description: spec.description.to_owned(),
            stop,
            warmup,
            concurrency,
            rate: o.rate,
            session_mode: spec.session_mode,
            cleanup_agent: spec.cleanup_agent,
            max_expected_latency_s: spec.max_expected_latency_s,
            model: o.model.clone().unwrap_or_else(|| spec.model.to_owned()),
            tools,
            prompt: o.prompt.clone().unwrap_or_else(|| DEFAULT_PROMPT.to_owned()),
            system_prompt: o
                .system_prompt
                .clone()
                .unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.to_owned()),
            metadata,
            time_scale,
            model_latency_ms: o.model_latency_ms,
            tool_latency_ms: o.tool_latency_ms,
            seed: o.seed.unwrap_or(42),
            error_rate,
            session_idle_ttl_s: o.session_idle_ttl_s.unwrap_or(60.0),
            archive_ttl_s: o.archive_ttl_s.unwrap_or(300.0),
            mode: o.mode.unwrap_or(spec.mode),
            approval_tools: spec.approval_tools.iter().map(|t| (*t).to_owned()).collect(),
            approval_think_ms: o.approval_think_ms.unwrap_or(50),
            multimodal_payload: o.multimodal_payload.clone(),
            segment: None,
            framework: match &o.framework {
                Some(f) if f.is_empty() || !f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => {
                    return Err(invalid(
                        "--framework",
                        format!("`{f}` is not a framework name (letters, digits, `_`, `-`)"),
                    ))
                }
                f => f.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_as_format_writes_them() {
        for i in [0u64, 7, 10, 999, u64::MAX] {
            assert_eq!(tagged_id("burst", "-t", i), format!("burst-t{i}"));
            assert_eq!(SessionMode::PerRequest.session_id("run", i), format!("run-req-{i}"));
        }
        assert_eq!(SessionMode::FixedPerIteration.session_id("run", 7), "user-0007");
    }

    #[test]
    fn segments_share_the_work_exactly_and_tag_their_ids() {
        for n in 1..=7u32 {
            for total in [0u64, 1, 10, 999, 1_000_003] {
                let sum: u64 = (1..=n).map(|i| Segment { index: i, count: n }.share(total)).sum();
                assert_eq!(sum, total, "{n} segments of {total}");
            }
        }
        assert_eq!(Segment::parse("2/4").unwrap(), Segment { index: 2, count: 4 });
        for bad in ["0/4", "5/4", "2", "a/b", "1/0"] {
            assert!(Segment::parse(bad).unwrap_err().contains("1 <= i <= n"), "{bad}");
        }
        let spec = CATALOG.iter().find(|s| s.name == "burst_load").unwrap();
        let o = Overrides {
            iterations: Some(10),
            concurrency: Some(5),
            rate: Some(100.0),
            ..Overrides::default()
        };
        let cfg = ScenarioConfig::resolve(spec, &o).unwrap();
        let seg = cfg.clone().segment(Segment { index: 2, count: 3 }).unwrap();
        assert_eq!(
            (seg.stop, seg.concurrency, seg.rate),
            (Stop::Iterations(3), 2, Some(100.0 / 3.0))
        );
        assert_eq!(seg.tag("main"), "burst_load-s2of3-main");
        assert_eq!(cfg.tag("main"), "burst_load-main");
        let err = cfg.segment(Segment { index: 1, count: 20 }).unwrap_err();
        assert!(err.to_string().contains("gets none"), "{err}");
    }
}
