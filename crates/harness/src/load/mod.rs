//! The load generator: `concurrency` workers issue requests, each the two-step protocol (create
//! or reuse the agent, then one turn), until the iterations are done or the duration is up.
//!
//! **When latency starts.** Every request has a due time: in a closed loop, the moment its worker
//! became free; in an open loop (`rate`), its slot in the arrival schedule. Latency runs from the
//! due time to the end of the turn, so time a request spends waiting (for a worker, for the
//! harness, for a stalled runtime) is counted, never hidden.
//!
//! A request yields a small sample; its worker applies it to one of a few striped recorders (as
//! many stripes as workers, up to 2 per core: each holds a dozen histograms, ~1 MB at a soak's
//! latencies, and the locks are contended by threads, not by tasks), merged at the end. A
//! stripe's lock is held for the few hundred nanoseconds of recording, never across a request,
//! and is shared only by the workers of that stripe. The time series ([`crate::timeline`]) is
//! recorded the same way: into the stripe's open interval, handed to the shared series when the
//! stripe moves on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{
    InteractionResponse, InteractionType, TaskChunkType, TaskRequest, TaskResult, TurnFigures, TurnReport,
    UniversalMessage,
};
use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::call::{Call, PhaseParts, Turn};
use crate::progress::Progress;
use crate::scenario::{tagged_id, Mode, ScenarioConfig, SessionMode};
use crate::target::{Measured, Target};
use crate::timeline::Series;

mod recorder;
pub use recorder::{Recorder, HISTOGRAMS, MAX_ERRORS};

/// One phase of load: which agent config, how many requests, how fast.
pub struct Phase {
    pub config: Arc<ScenarioConfig>,
    /// The agent's config, the turn's messages and metadata: encoded once for the phase.
    pub parts: PhaseParts,
    /// Give each iteration its own agent config (a fresh agent per iteration).
    pub unique_agent_per_iteration: bool,
    /// Prefix of ids, unique per phase.
    pub tag: String,
    pub iterations: Option<u64>,
    pub duration: Option<Duration>,
    pub warmup: u64,
    /// The message every turn sends (multimodal_echo), with the acknowledgement each
    /// attachment must get.
    pub payload: Option<Arc<Payload>>,
}

/// A message with attachments and what an intact acknowledgement of each looks like.
pub struct Payload {
    pub message: UniversalMessage,
    pub expected: Vec<String>,
}

/// What a phase measured.
pub struct PhaseOutcome {
    pub recorder: Recorder,
    /// From the first measured request's due time to the last measured completion.
    pub measured: Duration,
    /// Seconds after the phase start at which the measured part began.
    pub measured_from_s: f64,
    /// The first measured request's due time and the last measured completion, in UTC.
    pub measured_start: Option<chrono::DateTime<chrono::Utc>>,
    pub measured_end: Option<chrono::DateTime<chrono::Utc>>,
    pub issued: u64,
}

fn ns(us: f64) -> u64 {
    (us * 1000.0) as u64
}

/// Why a request failed: the error code (the runtime's, or the harness's own for what it could
/// not read) and the message.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    code: String,
    message: String,
    /// The step that failed, when it was not the turn ("agent creation").
    step: Option<&'static str>,
}

impl Failure {
    fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            step: None,
        }
    }

    /// The failure of a result that did not succeed.
    fn of(r: &TaskResult) -> Self {
        match &r.error {
            Some(e) => Self::new(e.code.to_string(), e.message.clone()),
            None => Self::new(format!("status.{}", r.status), format!("status {}", r.status)),
        }
    }

    fn step(mut self, step: &'static str) -> Self {
        self.step = Some(step);
        self
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(step) = self.step {
            write!(f, "{step}: ")?;
        }
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// The code of what the harness could not read in an answer.
const REPORT_CODE: &str = "harness.report";

/// How a turn ended, whether it ran synchronously or streamed.
enum TurnOutcome {
    Done {
        /// The turn's trace (its result's `metadata.trace_id`), when it was traced.
        trace_id: Option<String>,
        report: TurnFigures,
        tool_calls: u64,
        /// Each tool's name and execution time.
        tool_times: Vec<(String, Duration)>,
        /// The answer's text, when the phase checks it (a payload's acknowledgements); empty
        /// otherwise.
        text: String,
    },
    Failed(Failure),
}

/// A tool's name and execution time (seconds), when the time is a real duration.
fn tool_time(name: &str, secs: Option<f64>) -> Option<(String, Duration)> {
    let s = secs.filter(|s| s.is_finite() && *s >= 0.0)?;
    Some((name.to_owned(), Duration::from_secs_f64(s)))
}

impl TurnOutcome {
    /// The outcome of a synchronous turn; its text copied out only when `want_text`.
    fn from_measured(mut m: Measured, want_text: bool) -> Self {
        if !m.result.is_success() {
            return TurnOutcome::Failed(Failure::of(&m.result));
        }
        let figures = m.figures();
        let trace_id = match m.read.take() {
            Some(read) => read.trace_id,
            None => m.trace_id().map(str::to_owned),
        };
        let r = m.result;
        match figures {
            Ok(report) => TurnOutcome::Done {
                trace_id,
                tool_calls: r.tool_results.len() as u64,
                tool_times: r
                    .tool_results
                    .iter()
                    .filter_map(|t| tool_time(&t.tool_name, t.execution_time))
                    .collect(),
                text: match want_text {
                    true => r.response_text().unwrap_or_default().into_owned(),
                    false => String::new(),
                },
                report,
            },
            Err(e) => TurnOutcome::Failed(Failure::new(REPORT_CODE, e.to_string())),
        }
    }
}

/// Chunk timing of one streamed turn.
pub(crate) struct StreamSample {
    ttft: Duration,
    gaps: Vec<Duration>,
    chunks: u64,
    approvals: Vec<Duration>,
    drops: u64,
}

/// Attachment fidelity of one turn.
pub(crate) struct MediaSample {
    attachments: u64,
    intact: u64,
    conversion_ns: u64,
}

/// Runs one live turn to its final chunk, answering approval requests after `think`.
async fn live_turn(target: &dyn Target, req: TaskRequest, think: Duration) -> (TurnOutcome, StreamSample) {
    let sent = Instant::now();
    let mut s = StreamSample {
        ttft: Duration::ZERO,
        gaps: Vec::new(),
        chunks: 0,
        approvals: Vec::new(),
        drops: 0,
    };
    let mut live = match target.start_live(req).await {
        Ok(l) => l,
        Err(e) => {
            return (
                TurnOutcome::Failed(Failure::new("stream.start", format!("live turn: {e}"))),
                s,
            )
        }
    };
    let (mut last, mut expected, mut tool_calls, mut text) = (None::<Instant>, 0u64, 0u64, String::new());
    let mut tool_times = Vec::new();
    let mut outcome = TurnOutcome::Failed(Failure::new(
        "stream.interrupted",
        "the stream ended without a final chunk",
    ));
    while let Some(c) = live.next_chunk().await {
        let now = Instant::now();
        match last {
            None => s.ttft = now - sent,
            Some(prev) => s.gaps.push(now - prev),
        }
        last = Some(now);
        s.chunks += 1;
        s.drops += c.sequence_id.saturating_sub(expected);
        expected = c.sequence_id + 1;
        match c.chunk_type {
            TaskChunkType::ToolApprovalRequest => {
                if !think.is_zero() {
                    tokio::time::sleep(think).await;
                }
                let answer = InteractionResponse {
                    interaction_id: c.interaction_id.clone().unwrap_or_default(),
                    interaction_type: InteractionType::ToolApproval,
                    approved: true,
                    response_data: None,
                    user_message: None,
                    metadata: Map::new(),
                    timestamp: chrono::Utc::now(),
                };
                if let Err(e) = live.respond(&answer) {
                    outcome = TurnOutcome::Failed(Failure::new("stream.approval", format!("approval: {e}")));
                    break;
                }
                s.approvals.push(now.elapsed());
            }
            TaskChunkType::ToolResult => {
                tool_calls += 1;
                // Read in place: the chunk's result data is not copied.
                let name = c.content.get("tool_name").and_then(Value::as_str);
                let secs = c.content.get("execution_time").and_then(Value::as_f64);
                if let Some(t) = name.and_then(|n| tool_time(n, secs)) {
                    tool_times.push(t);
                }
            }
            TaskChunkType::Response if c.chunk_kind == Some(aether_contracts::ChunkKind::ResponseFinal) => {
                text = c.content.as_str().unwrap_or_default().to_owned();
            }
            TaskChunkType::Complete => {
                let report = match c.content.get("metadata").and_then(Value::as_object) {
                    Some(metadata) => TurnReport::figures(metadata).map_err(|e| e.to_string()),
                    None => Err("turn.complete chunk without metadata".to_owned()),
                };
                outcome = match report {
                    Ok(report) => TurnOutcome::Done {
                        trace_id: c
                            .content
                            .get("metadata")
                            .and_then(|m| m.get("trace_id"))
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        report,
                        tool_calls,
                        tool_times: std::mem::take(&mut tool_times),
                        text: std::mem::take(&mut text),
                    },
                    Err(e) => TurnOutcome::Failed(Failure::new(REPORT_CODE, e)),
                };
                break;
            }
            TaskChunkType::Error | TaskChunkType::Cancelled => {
                let code = c
                    .content
                    .get("code")
                    .and_then(Value::as_str)
                    .unwrap_or("stream.interrupted");
                let msg = c
                    .content
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("the turn ended early");
                outcome = TurnOutcome::Failed(Failure::new(code, msg));
                break;
            }
            _ => {}
        }
    }
    live.close().await;
    (outcome, s)
}

struct Shared {
    next: AtomicU64,
    first_measured_ns: AtomicU64,
    last_done_ns: AtomicU64,
    stripes: Vec<Mutex<Recorder>>,
    start: Instant,
}

impl Shared {
    fn offset_ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_nanos() as u64
    }
}

/// What one request produced, applied to a recorder afterwards (so no lock is held while it runs).
#[derive(Default)]
struct RequestSample {
    create: Option<Duration>,
    agent_reused: Option<bool>,
    turn: Option<Result<TurnSample, Failure>>,
    cleanup: Option<Result<Duration, String>>,
    create_error: Option<Failure>,
    /// From the due time to the end of the request's last step that counts (its latency, or how
    /// long it took to fail).
    elapsed: Duration,
    /// The turn's trace id, when the runtime traced it (its result's `metadata.trace_id`).
    trace_id: Option<String>,
}

impl RequestSample {
    fn failed(&self) -> bool {
        self.create_error.is_some() || matches!(self.turn, Some(Err(_))) || matches!(self.cleanup, Some(Err(_)))
    }
}

struct TurnSample {
    latency: Duration,
    /// The turn step alone.
    turn: Duration,
    tool_times: Vec<(String, Duration)>,
    model_ns: u64,
    tool_ns: u64,
    overhead_ns: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost_usd: f64,
    tool_calls: u64,
    session_created: bool,
    stream: Option<StreamSample>,
    media: Option<MediaSample>,
    simulated: bool,
}

async fn one_request(target: &dyn Target, phase: &Phase, i: u64, due: Instant) -> RequestSample {
    let cfg = &phase.config;
    let mut sample = RequestSample::default();
    let create_id = tagged_id(&phase.tag, "-c", i);
    let create = if phase.unique_agent_per_iteration {
        let mut agent = phase.parts.agent().clone();
        agent.name = Some(format!("{}-{i}", phase.tag));
        Call::create_own_agent(create_id, agent)
    } else {
        Call::create_shared_agent(create_id, &phase.parts)
    };
    let t = Instant::now();
    let created = target.call(create).await;
    sample.create = Some(t.elapsed());
    let Some(agent_id) = created.result.agent_id.clone().filter(|_| created.result.is_success()) else {
        sample.create_error = Some(Failure::of(&created.result));
        sample.elapsed = due.elapsed();
        return sample;
    };
    sample.agent_reused = match created.agent_reused() {
        Ok(reused) => Some(reused),
        Err(e) => {
            sample.create_error = Some(Failure::new(REPORT_CODE, e.to_string()));
            sample.elapsed = due.elapsed();
            return sample;
        }
    };

    let session_id = cfg.session_mode.session_id(&phase.tag, i);
    let turn_call = Call::Turn(Turn {
        task_id: tagged_id(&phase.tag, "-t", i),
        agent_id: &agent_id,
        user_id: (cfg.session_mode == SessionMode::FixedPerIteration).then(|| session_id.clone()),
        session_id,
        iteration: i,
        parts: &phase.parts,
    });
    // The latency ends when the answer is in; reading its report is the harness's own work.
    let turn_start = Instant::now();
    let (outcome, stream, latency) = match cfg.mode {
        Mode::Sync => {
            let measured = target.call(turn_call).await;
            let latency = due.elapsed();
            (
                TurnOutcome::from_measured(measured, phase.payload.is_some()),
                None,
                latency,
            )
        }
        Mode::Streaming => {
            let think = Duration::from_millis(cfg.approval_think_ms);
            let (o, s) = live_turn(target, turn_call.into_request(), think).await;
            (o, Some(s), due.elapsed())
        }
    };

    let turn = turn_start.elapsed().min(latency);
    sample.elapsed = latency;
    sample.turn = Some(match outcome {
        TurnOutcome::Done {
            trace_id,
            report,
            tool_calls,
            tool_times,
            text,
        } => {
            sample.trace_id = trace_id;
            let timing = &report.timing;
            let media = phase.payload.as_ref().map(|p| MediaSample {
                attachments: p.expected.len() as u64,
                intact: p.expected.iter().filter(|sig| text.contains(sig.as_str())).count() as u64,
                conversion_ns: ns(timing.media_us),
            });
            Ok(TurnSample {
                latency,
                turn,
                tool_times,
                model_ns: ns(timing.model_us),
                tool_ns: ns(timing.tool_us),
                overhead_ns: ns(timing.overhead_us),
                prompt_tokens: report.token_usage.prompt_tokens,
                completion_tokens: report.token_usage.completion_tokens,
                cost_usd: report.cost_usd,
                tool_calls,
                session_created: report.session_created,
                stream,
                media,
                simulated: report.simulated,
            })
        }
        TurnOutcome::Failed(e) => Err(e),
    });

    if cfg.cleanup_agent {
        let t = Instant::now();
        sample.cleanup = match target.cleanup_agent(&agent_id).await {
            Ok(true) => Some(Ok(t.elapsed())),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        };
    }
    sample
}

/// Runs one phase to completion, feeding `series` (its in-flight gauge and its intervals).
pub async fn drive(
    target: Arc<dyn Target>,
    phase: Arc<Phase>,
    progress: Arc<dyn Progress>,
    series: Arc<Series>,
) -> PhaseOutcome {
    let cfg = Arc::clone(&phase.config);
    let workers = cfg.concurrency;
    let stripe_count = workers
        .min(2 * std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        first_measured_ns: AtomicU64::new(u64::MAX),
        last_done_ns: AtomicU64::new(0),
        stripes: (0..stripe_count).map(|_| Mutex::new(Recorder::default())).collect(),
        start: Instant::now(),
    });
    let deadline = phase.duration.map(|d| shared.start + d);
    let rate = cfg.rate;

    let mut handles = Vec::with_capacity(workers);
    for w in 0..workers {
        let (target, phase, shared, progress, series) = (
            Arc::clone(&target),
            Arc::clone(&phase),
            Arc::clone(&shared),
            Arc::clone(&progress),
            Arc::clone(&series),
        );
        handles.push(tokio::spawn(async move {
            let stripe = &shared.stripes[w % shared.stripes.len()];
            loop {
                let i = shared.next.fetch_add(1, Ordering::Relaxed);
                if phase.iterations.is_some_and(|n| i >= n) {
                    break;
                }
                let due = match rate {
                    Some(r) => {
                        let due = shared.start + Duration::from_secs_f64(i as f64 / r);
                        tokio::time::sleep_until(due).await;
                        due
                    }
                    None => Instant::now(),
                };
                if deadline.is_some_and(|d| due >= d) {
                    break;
                }
                series.request_started();
                let mut sample = one_request(target.as_ref(), &phase, i, due).await;
                series.request_done();
                if i >= phase.warmup {
                    let done = Instant::now();
                    shared
                        .first_measured_ns
                        .fetch_min(shared.offset_ns(due), Ordering::Relaxed);
                    shared.last_done_ns.fetch_max(shared.offset_ns(done), Ordering::Relaxed);
                    let bucket = series.clock.bucket(done);
                    let (elapsed, failed, trace) = (sample.elapsed, sample.failed(), sample.trace_id.take());
                    let step = if sample.turn.is_some() { 't' } else { 'c' };
                    let closed = {
                        let mut r = stripe.lock();
                        r.apply(sample, bucket);
                        r.slowest
                            .offer(elapsed, failed, trace, || format!("{}-{step}{i}", phase.tag));
                        r.intervals.take_before(bucket)
                    };
                    series.absorb(closed);
                }
                progress.advance(1);
            }
        }));
    }
    for h in handles {
        if let Err(e) = h.await {
            tracing::error!(error = %e, "a load worker died");
        }
    }

    let mut recorder = Recorder::default();
    for s in &shared.stripes {
        let mut stripe = s.lock();
        series.absorb(std::mem::take(&mut stripe.intervals));
        recorder.merge(&stripe);
    }
    let first = shared.first_measured_ns.load(Ordering::Relaxed);
    let last = shared.last_done_ns.load(Ordering::Relaxed);
    let (measured, from) = if first == u64::MAX || last <= first {
        (Duration::ZERO, 0.0)
    } else {
        (Duration::from_nanos(last - first), first as f64 / 1e9)
    };
    PhaseOutcome {
        recorder,
        measured,
        measured_from_s: from,
        measured_start: (first != u64::MAX).then(|| series.clock.utc(shared.start + Duration::from_nanos(first))),
        measured_end: (last > 0).then(|| series.clock.utc(shared.start + Duration::from_nanos(last))),
        issued: shared
            .next
            .load(Ordering::Relaxed)
            .min(phase.iterations.unwrap_or(u64::MAX)),
    }
}
