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

mod gpu;
mod options;
mod prompts;
mod summary;

use std::sync::Arc;
use std::time::Duration;

use aether_contracts::ModelConfig;
use aether_runtime::model::{DeltaSink, ModelError, PromptRequest};
use async_trait::async_trait;
use chrono::Utc;
use parking_lot::Mutex;
use rand::SeedableRng;
use rand_distr::{Distribution, Gamma};
use tokio::time::Instant;

use crate::progress::Progress;
use crate::stats::{DurationHist, Unit};
use crate::timeline::{Clock, Intervals, Sampler, Series};
pub use gpu::GpuReport;
use gpu::GpuSampler;
pub use options::{options, Arrival, EndpointOptions, EndpointShape, Slo};
pub use prompts::{read_dataset, synthetic_prompts, DatasetRow};
use summary::DEFINITIONS;
pub use summary::{EndpointRequests, EndpointSummary};

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
    /// The open intervals of the time series (moved to the [`Series`] as they close).
    intervals: Intervals,
}

struct Timing {
    sent: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    gaps: Vec<Duration>,
}

#[async_trait]
impl DeltaSink for Timing {
    async fn delta(&mut self, text: &str) -> Result<(), ModelError> {
        self.take_now(text).unwrap_or(Ok(()))
    }

    /// Always at once: noting a time never waits (and a piece costs no boxed future).
    fn take_now(&mut self, _text: &str) -> Option<Result<(), ModelError>> {
        let now = Instant::now();
        match self.last {
            None => self.first = Some(now),
            Some(prev) => self.gaps.push(now - prev),
        }
        self.last = Some(now);
        Some(Ok(()))
    }
}

/// Each prompt of the run as the request it is sent as, built once (not per request).
fn requests(opts: &EndpointOptions) -> Arc<[PromptRequest]> {
    opts.prompts
        .iter()
        .map(|row| {
            let mut model = ModelConfig::new(opts.model.as_str());
            model.max_tokens = row.output_tokens;
            PromptRequest::new(model, "", &row.prompt)
        })
        .collect()
}

async fn one(
    opts: &EndpointOptions,
    prompts: &[PromptRequest],
    i: u64,
    due: Instant,
    rec: &Mutex<Rec>,
    series: &Series,
) {
    let prompt = &prompts[(i as usize) % prompts.len()];
    let sent = Instant::now();
    let mut timing = Timing {
        sent,
        first: None,
        last: None,
        // One gap a token at most (a piece may hold several), room for 2,048 made at once.
        gaps: Vec::with_capacity(prompt.model.max_tokens.map_or(0, |n| n as usize).min(2_048)),
    };
    series.request_started();
    let result = opts.provider.generate_stream(prompt.request(), &mut timing).await;
    series.request_done();
    let done = Instant::now();
    let bucket = series.clock.bucket(done);
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
            let interval = r.intervals.at(bucket);
            interval.success(e2e);
            interval.stream(ttft, &timing.gaps);
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let met = opts.slo.ttft_ms.is_none_or(|s| ms(ttft) <= s)
                && opts.slo.e2e_ms.is_none_or(|s| ms(e2e) <= s)
                && opts.slo.tpot_ms.is_none_or(|s| tpot.is_none_or(|t| ms(t) <= s));
            r.met += u64::from(met);
        }
        Err(e) => {
            r.failed += 1;
            r.intervals.at(bucket).failure("model.upstream", done - timing.sent);
            if r.errors.len() < 5 {
                r.errors.push(format!("model.upstream: {e}"));
            }
        }
    }
    let closed = r.intervals.take_before(bucket);
    drop(r);
    series.absorb(closed);
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
    let prompts = requests(&opts);
    let opts = Arc::new(opts);
    let discarded = Mutex::new(Rec::default());
    let clock = Clock::start(opts.interval);
    let unseen = Series::new(clock);
    for i in 0..opts.warmup {
        one(&opts, &prompts, i, Instant::now(), &discarded, &unseen).await;
    }
    let series = Arc::new(Series::new(clock));
    let sampler = Sampler::start(
        Arc::clone(&series),
        || async { crate::timeline::TargetReading::default() },
        Arc::clone(&progress),
    );
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
                let (opts, prompts, rec, progress, series) = (
                    Arc::clone(&opts),
                    Arc::clone(&prompts),
                    Arc::clone(&rec),
                    Arc::clone(&progress),
                    Arc::clone(&series),
                );
                tasks.spawn(async move {
                    one(&opts, &prompts, i as u64, due, &rec, &series).await;
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
                let (opts, prompts, rec, progress, next, series) = (
                    Arc::clone(&opts),
                    Arc::clone(&prompts),
                    Arc::clone(&rec),
                    Arc::clone(&progress),
                    Arc::clone(&next),
                    Arc::clone(&series),
                );
                workers.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let due = Instant::now();
                        if i >= cap || deadline.is_some_and(|d| due >= d) {
                            return;
                        }
                        one(&opts, &prompts, i, due, &rec, &series).await;
                        progress.advance(1);
                    }
                });
            }
            while workers.join_next().await.is_some() {}
            issued = next.load(std::sync::atomic::Ordering::Relaxed).min(cap);
        }
    }
    progress.finish();
    series.absorb(std::mem::take(&mut rec.lock().intervals));
    sampler.finish().await;
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
        schema_version: crate::summary::SCHEMA_VERSION,
        scenario: "endpoint_load",
        started_at,
        provenance: crate::summary::Provenance::current(),
        config: None,
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
        timeline: series.timeline(),
        cpu_profile: None,
        definitions: DEFINITIONS,
    }
}
