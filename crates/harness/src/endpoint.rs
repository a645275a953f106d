//! `endpoint_load`: drives a model endpoint directly (no agent, no session), the way serving
//! benchmarks do, and reports what a model server is judged by.
//!
//! Arrivals are open loop at `rate` requests/s — Poisson (`burstiness` 1) or gamma-distributed
//! gaps (burstiness < 1 is burstier, > 1 more regular), seeded — or closed loop with
//! `concurrency` workers. Every request is streamed.
//!
//! Definitions (all per request, from the moment the request was actually sent):
//! * TTFT: until the first streamed text;
//! * TPOT: (E2E − TTFT) / (output tokens − 1), output tokens from the answer's usage (requests
//!   with one token have no TPOT);
//! * ITL: each gap between consecutive streamed pieces (a piece may hold several tokens);
//! * E2E: until the stream's end;
//! * schedule lag: actual send − scheduled arrival (how far the generator fell behind);
//! * output tokens/s and request throughput: totals over the run's duration (first scheduled
//!   arrival to last completion); goodput: requests meeting every SLO given, per second.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{ModelConfig, SessionEvent, UniversalMessage};
use aether_runtime::model::{
    DeltaSink, HistoryView, ModelError, ModelProvider, ModelRequest, NamedProvider, SystemPrompt,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use rand::SeedableRng;
use rand_distr::{Distribution, Gamma};
use serde::Serialize;
use tokio::time::Instant;

use crate::error::HarnessError;
use crate::progress::Progress;
use crate::scenario::{ScenarioConfig, Stop};
use crate::stats::{DurationHist, SerialisedHist, Stats, Unit};

/// How requests arrive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    /// Open loop: `rate` requests per second, gamma gaps with shape `burstiness` (1 = Poisson).
    Rate { rate: f64, burstiness: f64 },
    /// Closed loop: `concurrency` requests always in flight.
    Closed { concurrency: usize },
}

/// Service-level objectives for goodput (milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Slo {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
}

/// One prompt of a dataset file (JSONL: `{"prompt": "...", "output_tokens": 128}`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct DatasetRow {
    pub prompt: String,
    #[serde(default)]
    pub output_tokens: Option<u32>,
}

/// An endpoint_load run.
pub struct EndpointOptions {
    pub provider: Arc<dyn ModelProvider>,
    pub model: String,
    pub requests: Option<u64>,
    pub duration: Option<Duration>,
    pub arrival: Arrival,
    pub prompts: Vec<DatasetRow>,
    pub slo: Slo,
    pub seed: u64,
    /// Requests sent one by one before the measured run and left out of every figure (loads
    /// weights, fills caches, opens connections).
    pub warmup: u64,
}

/// What endpoint_load sends, beyond what every scenario resolves (requests, duration, warm-up,
/// concurrency, rate, model, seed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointShape {
    /// Shape of the gamma arrival gaps with a rate: 1 is Poisson, below 1 burstier, above 1 more
    /// regular.
    pub burstiness: f64,
    /// Prompt length in tokens of the synthetic prompt (when no dataset is given).
    pub prompt_tokens: u32,
    /// Output tokens to ask for (max_tokens).
    pub output_tokens: Option<u32>,
    /// JSONL of prompts: `{"prompt": "...", "output_tokens": 128}` per line.
    pub dataset: Option<PathBuf>,
    pub slo: Slo,
}

impl Default for EndpointShape {
    fn default() -> Self {
        Self {
            burstiness: 1.0,
            prompt_tokens: 128,
            output_tokens: None,
            dataset: None,
            slo: Slo::default(),
        }
    }
}

/// The endpoint_load run that `cfg` and `shape` describe, against `provider` (a model endpoint:
/// the simulated provider in this process is refused, it would measure nothing but itself).
pub fn options(
    cfg: &ScenarioConfig,
    shape: &EndpointShape,
    provider: Option<NamedProvider>,
) -> Result<EndpointOptions, HarnessError> {
    let invalid = |m: String| Err(HarnessError::InvalidInput(m));
    let Some((_, provider)) = provider else {
        return invalid(
            "endpoint_load drives a model endpoint: give --provider openai|gemini --base-url URL (e.g. an \
             `aether sim-llm`), or --provider local --model-path FILE"
                .into(),
        );
    };
    if !(shape.burstiness.is_finite() && shape.burstiness > 0.0) {
        return invalid(format!("--burstiness must be positive, got {}", shape.burstiness));
    }
    if shape.prompt_tokens == 0 {
        return invalid("--prompt-tokens must be at least 1".into());
    }
    let prompts = match &shape.dataset {
        Some(p) => read_dataset(p).map_err(HarnessError::InvalidInput)?,
        None => synthetic_prompts(shape.prompt_tokens, shape.output_tokens),
    };
    let (requests, duration) = match cfg.stop {
        Stop::Iterations(n) => (Some(n), None),
        Stop::DurationSecs(s) => (None, Some(Duration::from_secs_f64(s))),
    };
    Ok(EndpointOptions {
        provider,
        model: cfg.model.clone(),
        requests,
        duration,
        arrival: match cfg.rate {
            Some(rate) => Arrival::Rate {
                rate,
                burstiness: shape.burstiness,
            },
            None => Arrival::Closed {
                concurrency: cfg.concurrency,
            },
        },
        prompts,
        slo: shape.slo,
        seed: cfg.seed,
        warmup: cfg.warmup,
    })
}

/// What the GPU sampler found: NVIDIA GPUs through NVML (loaded at run time), sampled every
/// 500 ms on its own thread during the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GpuReport {
    pub found: bool,
    pub note: String,
    pub devices: u32,
    pub samples: usize,
    /// GPU utilisation averaged over devices, per sample: mean and max over the run.
    pub utilization_mean_pct: Option<f64>,
    pub utilization_max_pct: Option<f64>,
    /// Memory used, summed over devices: the most seen, and the total there is.
    pub memory_used_max_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
}

/// Samples NVML until stopped.
struct GpuSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<GpuReport>,
}

impl GpuSampler {
    fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let nvml = match nvml_wrapper::Nvml::init() {
                Ok(n) => n,
                Err(e) => {
                    return GpuReport {
                        note: format!("no NVIDIA GPU found (NVML: {e})"),
                        ..GpuReport::default()
                    }
                }
            };
            let devices = nvml.device_count().unwrap_or(0);
            if devices == 0 {
                return GpuReport {
                    note: "NVML loaded, but no NVIDIA GPU found".into(),
                    ..GpuReport::default()
                };
            }
            let (mut utils, mut mem_max) = (Vec::new(), 0u64);
            let total;
            loop {
                let (mut util, mut used, mut tot) = (0.0, 0u64, 0u64);
                for i in 0..devices {
                    if let Ok(d) = nvml.device_by_index(i) {
                        util += d.utilization_rates().map_or(0.0, |u| f64::from(u.gpu));
                        if let Ok(m) = d.memory_info() {
                            used += m.used;
                            tot += m.total;
                        }
                    }
                }
                utils.push(util / f64::from(devices));
                mem_max = mem_max.max(used);
                if flag.load(std::sync::atomic::Ordering::Acquire) {
                    total = tot;
                    break;
                }
                std::thread::park_timeout(Duration::from_millis(500));
            }
            GpuReport {
                found: true,
                note: format!("{devices} NVIDIA GPU(s), sampled every 500 ms through NVML"),
                devices,
                samples: utils.len(),
                utilization_mean_pct: Some(utils.iter().sum::<f64>() / utils.len().max(1) as f64),
                utilization_max_pct: utils.iter().copied().reduce(f64::max),
                memory_used_max_bytes: Some(mem_max),
                memory_total_bytes: Some(total),
            }
        });
        Self { stop, thread }
    }

    fn finish(self) -> GpuReport {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.thread.thread().unpark();
        self.thread.join().unwrap_or_else(|_| GpuReport {
            note: "the GPU sampler failed".into(),
            ..GpuReport::default()
        })
    }
}

/// The endpoint_load summary (schema version 1).
#[derive(Debug, Clone, Serialize)]
pub struct EndpointSummary {
    pub schema_version: u32,
    pub scenario: &'static str,
    pub started_at: DateTime<Utc>,
    pub provider: String,
    pub model: String,
    /// The endpoint said its answers were simulated (`aether sim-llm`).
    pub simulated: bool,
    pub arrival: Arrival,
    pub slo: Slo,
    pub requests: EndpointRequests,
    pub duration_s: f64,
    pub offered_rate_rps: Option<f64>,
    /// The rate of the arrival schedule actually drawn (random gaps vary around the offered rate).
    pub scheduled_rate_rps: Option<f64>,
    /// Sends per second actually achieved, over first to last send.
    pub achieved_rate_rps: f64,
    pub request_throughput_rps: f64,
    /// Same as request_throughput_rps, for `perf compare`.
    pub throughput_rps: f64,
    pub output_tokens: u64,
    pub output_tokens_per_s: f64,
    pub goodput_rps: Option<f64>,
    /// Requests sent before the run and left out of every figure.
    pub warmup_requests: u64,
    pub ttft_ms: Stats,
    pub tpot_ms: Stats,
    pub itl_ms: Stats,
    pub e2e_ms: Stats,
    /// E2E again under the common name, for `perf compare`.
    pub latency_ms: Stats,
    pub schedule_lag_ms: Stats,
    pub gpu: GpuReport,
    pub errors: Vec<String>,
    pub histograms: std::collections::BTreeMap<String, SerialisedHist>,
    pub definitions: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointRequests {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub error_rate: f64,
    pub met_slo: u64,
}

const DEFINITIONS: &str = "from the actual send: TTFT to the first streamed text; TPOT = (E2E - TTFT) / (output tokens - 1); \
ITL = gaps between streamed pieces; E2E to the end of the stream; schedule lag = actual send - scheduled arrival; \
throughput and output tokens/s over first scheduled arrival to last completion; goodput = requests meeting every SLO per second.";

#[derive(Default)]
struct Rec {
    ttft: DurationHist,
    tpot: DurationHist,
    itl: DurationHist,
    e2e: DurationHist,
    lag: DurationHist,
    ok: u64,
    failed: u64,
    met: u64,
    output_tokens: u64,
    simulated: bool,
    errors: Vec<String>,
    last_done: Option<Instant>,
    first_sent: Option<Instant>,
    last_sent: Option<Instant>,
}

struct Timing {
    sent: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    gaps: Vec<Duration>,
}

#[async_trait]
impl DeltaSink for Timing {
    async fn delta(&mut self, _text: &str) -> Result<(), ModelError> {
        let now = Instant::now();
        match self.last {
            None => self.first = Some(now),
            Some(prev) => self.gaps.push(now - prev),
        }
        self.last = Some(now);
        Ok(())
    }
}

async fn one(opts: &EndpointOptions, i: u64, due: Instant, rec: &Mutex<Rec>) {
    let row = &opts.prompts[(i as usize) % opts.prompts.len()];
    let mut model = ModelConfig::new(opts.model.as_str());
    model.max_tokens = row.output_tokens;
    let system = SystemPrompt::new("");
    let event = Arc::new(SessionEvent::new(
        0,
        Arc::from("bench"),
        Arc::from("bench"),
        UniversalMessage::user(row.prompt.as_str()),
        vec![],
    ));
    let history = [event];
    let metadata = aether_contracts::Metadata::new();
    let req = ModelRequest {
        model: &model,
        system: &system,
        history: HistoryView {
            committed: &history,
            pending: &[],
        },
        tools: &[],
        metadata: &metadata,
    };
    let sent = Instant::now();
    let mut timing = Timing {
        sent,
        first: None,
        last: None,
        gaps: Vec::new(),
    };
    let result = opts.provider.generate_stream(req, &mut timing).await;
    let done = Instant::now();
    let mut r = rec.lock();
    r.lag.record(sent.saturating_duration_since(due));
    r.first_sent = Some(r.first_sent.map_or(sent, |f| f.min(sent)));
    r.last_sent = Some(r.last_sent.map_or(sent, |l| l.max(sent)));
    r.last_done = Some(r.last_done.map_or(done, |d| d.max(done)));
    match result {
        Ok(resp) => {
            r.ok += 1;
            r.simulated |= resp.served_by.contains(aether_contracts::SIMULATED_PROFILE_MARK);
            let e2e = done - timing.sent;
            let ttft = timing.first.map_or(e2e, |f| f - timing.sent);
            let out = resp
                .usage
                .completion_tokens
                .max(timing.gaps.len() as u64 + u64::from(timing.first.is_some()));
            r.output_tokens += out;
            r.e2e.record(e2e);
            r.ttft.record(ttft);
            let tpot = (out > 1).then(|| (e2e - ttft) / (out as u32 - 1));
            if let Some(t) = tpot {
                r.tpot.record(t);
            }
            timing.gaps.iter().for_each(|g| r.itl.record(*g));
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let met = opts.slo.ttft_ms.is_none_or(|s| ms(ttft) <= s)
                && opts.slo.e2e_ms.is_none_or(|s| ms(e2e) <= s)
                && opts.slo.tpot_ms.is_none_or(|s| tpot.is_none_or(|t| ms(t) <= s));
            r.met += u64::from(met);
        }
        Err(e) => {
            r.failed += 1;
            if r.errors.len() < 5 {
                r.errors.push(format!("model.upstream: {e}"));
            }
        }
    }
}

/// Arrival offsets from the start: cumulative gamma gaps with mean 1/rate.
fn schedule(rate: f64, burstiness: f64, seed: u64, n: u64) -> Vec<Duration> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let gamma = Gamma::new(burstiness, 1.0 / (rate * burstiness)).ok();
    let mut t = 0.0f64;
    (0..n)
        .map(|_| {
            let at = Duration::from_secs_f64(t);
            t += gamma.as_ref().map_or(1.0 / rate, |g| g.sample(&mut rng));
            at
        })
        .collect()
}

/// Runs endpoint_load and returns its summary.
pub async fn run(opts: EndpointOptions, progress: Arc<dyn Progress>) -> EndpointSummary {
    let opts = Arc::new(opts);
    let discarded = Mutex::new(Rec::default());
    for i in 0..opts.warmup {
        one(&opts, i, Instant::now(), &discarded).await;
    }
    let gpu = GpuSampler::start();
    let rec = Arc::new(Mutex::new(Rec::default()));
    let started_at = Utc::now();
    let start = Instant::now() + Duration::from_millis(5);
    let cap = opts.requests.unwrap_or(u64::MAX);
    let deadline = opts.duration.map(|d| start + d);
    progress.begin("endpoint_load", opts.requests);
    let mut issued = 0u64;
    let mut scheduled_rate = None;
    match opts.arrival {
        Arrival::Rate { rate, burstiness } => {
            let n = opts
                .requests
                .unwrap_or_else(|| (rate * opts.duration.map_or(60.0, |d| d.as_secs_f64())).ceil() as u64);
            let mut tasks = tokio::task::JoinSet::new();
            let plan = schedule(rate, burstiness, opts.seed, n);
            let planned: Vec<Duration> = plan
                .iter()
                .copied()
                .filter(|o| opts.duration.is_none_or(|d| *o < d))
                .collect();
            if let (Some(last), true) = (planned.last(), planned.len() > 1) {
                scheduled_rate = Some((planned.len() - 1) as f64 / last.as_secs_f64().max(1e-9));
            }
            for (i, offset) in plan.into_iter().enumerate() {
                let due = start + offset;
                if deadline.is_some_and(|d| due >= d) {
                    break;
                }
                tokio::time::sleep_until(due).await;
                let (opts, rec, progress) = (Arc::clone(&opts), Arc::clone(&rec), Arc::clone(&progress));
                tasks.spawn(async move {
                    one(&opts, i as u64, due, &rec).await;
                    progress.advance(1);
                });
                issued += 1;
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        }
        Arrival::Closed { concurrency } => {
            let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let mut workers = tokio::task::JoinSet::new();
            for _ in 0..concurrency.max(1) {
                let (opts, rec, progress, next) = (
                    Arc::clone(&opts),
                    Arc::clone(&rec),
                    Arc::clone(&progress),
                    Arc::clone(&next),
                );
                workers.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let due = Instant::now();
                        if i >= cap || deadline.is_some_and(|d| due >= d) {
                            return;
                        }
                        one(&opts, i, due, &rec).await;
                        progress.advance(1);
                    }
                });
            }
            while workers.join_next().await.is_some() {}
            issued = next.load(std::sync::atomic::Ordering::Relaxed).min(cap);
        }
    }
    progress.finish();
    let r = rec.lock();
    let duration = r
        .last_done
        .map_or(Duration::ZERO, |d| d.saturating_duration_since(start));
    let secs = duration.as_secs_f64().max(1e-9);
    let total = r.ok + r.failed;
    let histograms = DurationHist::serialise_named([
        ("ttft", &r.ttft),
        ("tpot", &r.tpot),
        ("itl", &r.itl),
        ("e2e", &r.e2e),
        ("schedule_lag", &r.lag),
    ]);
    let any_slo = opts.slo != Slo::default();
    EndpointSummary {
        schema_version: 1,
        scenario: "endpoint_load",
        started_at,
        provider: opts.provider.info().name.clone(),
        model: opts.model.clone(),
        simulated: r.simulated || opts.provider.info().simulated,
        arrival: opts.arrival,
        slo: opts.slo,
        requests: EndpointRequests {
            total,
            succeeded: r.ok,
            failed: r.failed,
            error_rate: if total == 0 {
                0.0
            } else {
                r.failed as f64 / total as f64
            },
            met_slo: r.met,
        },
        duration_s: secs,
        offered_rate_rps: match opts.arrival {
            Arrival::Rate { rate, .. } => Some(rate),
            Arrival::Closed { .. } => None,
        },
        scheduled_rate_rps: scheduled_rate,
        achieved_rate_rps: match (r.first_sent, r.last_sent) {
            (Some(f), Some(l)) if l > f && issued > 1 => (issued - 1) as f64 / (l - f).as_secs_f64(),
            _ => issued as f64 / secs,
        },
        request_throughput_rps: r.ok as f64 / secs,
        throughput_rps: r.ok as f64 / secs,
        output_tokens: r.output_tokens,
        output_tokens_per_s: r.output_tokens as f64 / secs,
        warmup_requests: opts.warmup,

        goodput_rps: any_slo.then(|| r.met as f64 / secs),
        ttft_ms: r.ttft.stats(Unit::Ms),
        tpot_ms: r.tpot.stats(Unit::Ms),
        itl_ms: r.itl.stats(Unit::Ms),
        e2e_ms: r.e2e.stats(Unit::Ms),
        latency_ms: r.e2e.stats(Unit::Ms),
        schedule_lag_ms: r.lag.stats(Unit::Ms),
        gpu: gpu.finish(),
        errors: r.errors.clone(),
        histograms,
        definitions: DEFINITIONS,
    }
}

impl EndpointSummary {
    /// A readable table.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let src = if self.simulated {
            " — SIMULATED (aether sim-llm answered; no real model was called)"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "\n== endpoint_load — provider {} model `{}`{src}",
            self.provider, self.model
        );
        let _ = writeln!(
            s,
            "   {} requests ({} ok, {} failed) in {:.2} s · offered {} req/s (schedule {}) · sent {:.1} req/s · completed {:.1} req/s",
            self.requests.total,
            self.requests.succeeded,
            self.requests.failed,
            self.duration_s,
            self.offered_rate_rps.map_or("closed-loop".to_owned(), |r| format!("{r:.1}")),
            self.scheduled_rate_rps.map_or("-".to_owned(), |r| format!("{r:.1}")),
            self.achieved_rate_rps,
            self.request_throughput_rps
        );
        let _ = writeln!(
            s,
            "   output {} tokens · {:.1} tokens/s{}",
            self.output_tokens,
            self.output_tokens_per_s,
            if self.warmup_requests > 0 {
                format!(" · {} warm-up requests left out", self.warmup_requests)
            } else {
                String::new()
            }
        );
        if let Some(g) = self.goodput_rps {
            let _ = writeln!(s, "   goodput {g:.1} req/s ({} met every SLO)", self.requests.met_slo);
        }
        let _ = writeln!(
            s,
            "\n   {:<18} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "ms", "mean", "p50", "p90", "p99", "max"
        );
        for (name, st) in [
            ("TTFT", &self.ttft_ms),
            ("TPOT", &self.tpot_ms),
            ("ITL", &self.itl_ms),
            ("E2E", &self.e2e_ms),
            ("schedule lag", &self.schedule_lag_ms),
        ] {
            let _ = writeln!(
                s,
                "   {:<18} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
                name, st.mean, st.p50, st.p90, st.p99, st.max
            );
        }
        let _ = writeln!(s, "   GPU: {}", self.gpu.note);
        for e in &self.errors {
            let _ = writeln!(s, "   error: {e}");
        }
        s
    }
}

/// `n` prompts of about `tokens` tokens each, asking for `output_tokens`.
pub fn synthetic_prompts(tokens: u32, output_tokens: Option<u32>) -> Vec<DatasetRow> {
    // Real prose, not one word repeated: a real model answers a repeated word with an empty reply.
    // Common English words are about one token each in the usual tokenizers.
    const PASSAGE: &str = "the keeper of the old lighthouse climbed the stairs every evening to light the lamp \
        while the sea below grew dark and the wind carried rain across the rocks where ships had broken \
        long ago so he wrote each night in a small book what he saw and heard and who passed by";
    let mut prompt = String::from("Continue this story:");
    for word in PASSAGE
        .split_whitespace()
        .cycle()
        .take(tokens.saturating_sub(4).max(1) as usize)
    {
        prompt.push(' ');
        prompt.push_str(word);
    }
    vec![DatasetRow { prompt, output_tokens }]
}

/// Reads a JSONL dataset; the error names the line.
pub fn read_dataset(path: &std::path::Path) -> Result<Vec<DatasetRow>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--dataset: cannot read `{}`: {e}", path.display()))?;
    let rows = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            aether_contracts::from_json_str::<DatasetRow>(l)
                .map_err(|e| format!("--dataset `{}` line {}: {e}", path.display(), i + 1))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if rows.is_empty() {
        return Err(format!("--dataset `{}` has no prompts", path.display()));
    }
    Ok(rows)
}
