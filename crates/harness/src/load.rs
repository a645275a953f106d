//! The load generator: `concurrency` workers issue requests, each the two-step protocol (create
//! or reuse the agent, then one turn), until the iterations are done or the duration is up.
//!
//! **When latency starts.** Every request has a due time: in a closed loop, the moment its worker
//! became free; in an open loop (`rate`), its slot in the arrival schedule. Latency runs from the
//! due time to the end of the turn, so time a request spends waiting (for a worker, for the
//! harness, for a stalled runtime) is counted, never hidden.
//!
//! A request yields a small sample; its worker applies it to one of a few striped recorders (as
//! many stripes as workers, up to 8 per core), merged at the end. A stripe's lock is held for the
//! few hundred nanoseconds of recording, never across a request, and is shared only by the workers
//! of that stripe. The time series ([`crate::timeline`]) is recorded the same way: into the
//! stripe's open interval, handed to the shared series when the stripe moves on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{
    AgentReport, InteractionResponse, InteractionType, TaskChunkType, TaskRequest, TaskResult, TurnFigures, TurnReport,
    UniversalMessage,
};
use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::call::{Call, PhaseParts, Turn};
use crate::progress::Progress;
use crate::scenario::{Mode, ScenarioConfig, SessionMode};
use crate::slowest::Slowest;
use crate::stats::DurationHist;
use crate::target::{Measured, Target};
use crate::timeline::{bounded_entry, count_code, Intervals, Series, MAX_CODES};

/// The most tool names the per-tool breakdown keeps; the rest count under `other`.
const MAX_TOOLS: usize = 64;

/// Everything recorded about measured requests.
#[derive(Clone, Default)]
pub struct Recorder {
    pub latency: DurationHist,
    pub overhead: DurationHist,
    pub model: DurationHist,
    pub tool: DurationHist,
    pub create: DurationHist,
    pub cleanup: DurationHist,
    /// Turns that started a new chat session, and turns on an existing one.
    pub cold: DurationHist,
    pub warm: DurationHist,
    pub succeeded: u64,
    pub failed: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    pub sessions_created: u64,
    pub sessions_reused: u64,
    pub agents_created: u64,
    pub agents_reused: u64,
    pub agents_cleaned_up: u64,
    pub tool_calls: u64,
    pub errors: Vec<String>,
    /// Streaming: time to first chunk, gaps between chunks, approval answer latency.
    pub ttft: DurationHist,
    pub chunk_gap: DurationHist,
    pub approval: DurationHist,
    pub streamed_turns: u64,
    pub chunks: u64,
    pub drops: u64,
    /// Multimodal: attachments sent, acknowledged intact, conversion time.
    pub attachments: u64,
    pub attachments_intact: u64,
    pub conversion: DurationHist,
    /// Turns whose answer came from a simulation (in process, or `aether sim-llm` over HTTP).
    pub simulated_turns: u64,
    /// The turn step alone (the second step of a request), for the breakdown by phase.
    pub turn: DurationHist,
    /// Each tool's execution time, as the runtime reports it (at most `MAX_TOOLS` names).
    pub by_tool: BTreeMap<String, DurationHist>,
    /// Failed requests by error code, with their latency (at most `timeline::MAX_CODES` codes).
    pub errors_by_code: BTreeMap<String, u64>,
    pub by_error: BTreeMap<String, DurationHist>,
    /// This stripe's open intervals of the time series (moved to the [`Series`] as they close;
    /// never merged here).
    pub intervals: Intervals,
    /// The slowest requests, by task id.
    pub slowest: Slowest,
}

pub const MAX_ERRORS: usize = 5;

/// The recorder's distributions under the names a summary's `histograms` gives them, in the
/// order of [`Recorder::histograms`].
pub const HISTOGRAMS: [&str; 13] = [
    "latency",
    "overhead",
    "model",
    "tool",
    "agent_create",
    "agent_cleanup",
    "turn",
    "session_cold",
    "session_warm",
    "ttft",
    "chunk_gap",
    "approval",
    "conversion",
];

impl Recorder {
    /// The distributions, in the order of [`HISTOGRAMS`].
    pub fn histograms(&self) -> [&DurationHist; 13] {
        [
            &self.latency,
            &self.overhead,
            &self.model,
            &self.tool,
            &self.create,
            &self.cleanup,
            &self.turn,
            &self.cold,
            &self.warm,
            &self.ttft,
            &self.chunk_gap,
            &self.approval,
            &self.conversion,
        ]
    }

    /// The distributions, in the order of [`HISTOGRAMS`], to fill.
    pub fn histograms_mut(&mut self) -> [&mut DurationHist; 13] {
        [
            &mut self.latency,
            &mut self.overhead,
            &mut self.model,
            &mut self.tool,
            &mut self.create,
            &mut self.cleanup,
            &mut self.turn,
            &mut self.cold,
            &mut self.warm,
            &mut self.ttft,
            &mut self.chunk_gap,
            &mut self.approval,
            &mut self.conversion,
        ]
    }

    pub fn merge(&mut self, o: &Recorder) {
        for (a, b) in self.histograms_mut().into_iter().zip(o.histograms()) {
            a.merge(b);
        }
        for (name, h) in &o.by_tool {
            self.by_tool.entry(name.clone()).or_default().merge(h);
        }
        for (code, h) in &o.by_error {
            self.by_error.entry(code.clone()).or_default().merge(h);
        }
        for (code, n) in &o.errors_by_code {
            count_code(&mut self.errors_by_code, code, *n);
        }
        self.succeeded += o.succeeded;
        self.failed += o.failed;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.cost_usd += o.cost_usd;
        self.sessions_created += o.sessions_created;
        self.sessions_reused += o.sessions_reused;
        self.agents_created += o.agents_created;
        self.agents_reused += o.agents_reused;
        self.agents_cleaned_up += o.agents_cleaned_up;
        self.tool_calls += o.tool_calls;
        self.streamed_turns += o.streamed_turns;
        self.chunks += o.chunks;
        self.drops += o.drops;
        self.attachments += o.attachments;
        self.attachments_intact += o.attachments_intact;
        self.simulated_turns += o.simulated_turns;
        self.slowest.merge(&o.slowest);
        for e in &o.errors {
            if self.errors.len() < MAX_ERRORS {
                self.errors.push(e.clone());
            }
        }
    }

    /// A failed request (its latency counts in the breakdown by error code).
    fn error(&mut self, f: Failure, latency: Duration) {
        self.failed += 1;
        count_code(&mut self.errors_by_code, &f.code, 1);
        bounded_entry(&mut self.by_error, &f.code, MAX_CODES).record(latency);
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(f.to_string());
        }
    }

    fn tool_time(&mut self, name: &str, d: Duration) {
        bounded_entry(&mut self.by_tool, name, MAX_TOOLS).record(d);
    }

    pub fn total(&self) -> u64 {
        self.succeeded + self.failed
    }
}

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
        let r = m.result;
        match figures {
            Ok(report) => TurnOutcome::Done {
                trace_id: r.metadata.get("trace_id").and_then(Value::as_str).map(str::to_owned),
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

impl Recorder {
    /// Applies a request's sample; it completed in interval `bucket` of the time series.
    fn apply(&mut self, s: RequestSample, bucket: u64) {
        if let Some(d) = s.create {
            self.create.record(d);
        }
        if let Some(e) = s.create_error {
            self.intervals.at(bucket).failure(&e.code, s.elapsed);
            self.error(e.step("agent creation"), s.elapsed);
        }
        match s.agent_reused {
            Some(true) => self.agents_reused += 1,
            Some(false) => self.agents_created += 1,
            None => {}
        }
        match s.turn {
            Some(Ok(t)) => {
                self.succeeded += 1;
                self.latency.record(t.latency);
                self.turn.record(t.turn);
                for (name, d) in &t.tool_times {
                    self.tool_time(name, *d);
                }
                let interval = self.intervals.at(bucket);
                interval.success(t.latency);
                if let Some(st) = &t.stream {
                    interval.stream(st.ttft, &st.gaps);
                }
                self.model.record_ns(t.model_ns);
                self.tool.record_ns(t.tool_ns);
                self.overhead.record_ns(t.overhead_ns);
                self.prompt_tokens += t.prompt_tokens;
                self.completion_tokens += t.completion_tokens;
                self.cost_usd += t.cost_usd;
                self.tool_calls += t.tool_calls;
                if t.session_created {
                    self.sessions_created += 1;
                    self.cold.record(t.latency);
                } else {
                    self.sessions_reused += 1;
                    self.warm.record(t.latency);
                }
                if let Some(st) = t.stream {
                    self.streamed_turns += 1;
                    self.ttft.record(st.ttft);
                    st.gaps.iter().for_each(|g| self.chunk_gap.record(*g));
                    st.approvals.iter().for_each(|a| self.approval.record(*a));
                    self.chunks += st.chunks;
                    self.drops += st.drops;
                }
                if t.simulated {
                    self.simulated_turns += 1;
                }
                if let Some(m) = t.media {
                    self.attachments += m.attachments;
                    self.attachments_intact += m.intact;
                    self.conversion.record_ns(m.conversion_ns);
                }
            }
            Some(Err(e)) => {
                self.intervals.at(bucket).failure(&e.code, s.elapsed);
                self.error(e, s.elapsed);
            }
            None => {}
        }
        match s.cleanup {
            Some(Ok(d)) => {
                self.cleanup.record(d);
                self.agents_cleaned_up += 1;
            }
            Some(Err(e)) => {
                let f = Failure::new("agent.cleanup", e).step("agent cleanup");
                self.intervals.at(bucket).failure(&f.code, s.elapsed);
                self.error(f, s.elapsed);
            }
            None => {}
        }
    }
}

async fn one_request(target: &dyn Target, phase: &Phase, i: u64, due: Instant) -> RequestSample {
    let cfg = &phase.config;
    let mut sample = RequestSample::default();
    let create_id = format!("{}-c{i}", phase.tag);
    let create = if phase.unique_agent_per_iteration {
        let mut agent = phase.parts.agent().clone();
        agent.name = Some(format!("{}-{i}", phase.tag));
        Call::create_own_agent(create_id, agent)
    } else {
        Call::create_shared_agent(create_id, &phase.parts)
    };
    let t = Instant::now();
    let created = target.call(create).await.result;
    sample.create = Some(t.elapsed());
    let Some(agent_id) = created.agent_id.clone().filter(|_| created.is_success()) else {
        sample.create_error = Some(Failure::of(&created));
        sample.elapsed = due.elapsed();
        return sample;
    };
    sample.agent_reused = match AgentReport::reused(&created.metadata) {
        Ok(reused) => Some(reused),
        Err(e) => {
            sample.create_error = Some(Failure::new(REPORT_CODE, e.to_string()));
            sample.elapsed = due.elapsed();
            return sample;
        }
    };

    let session_id = cfg.session_mode.session_id(&phase.tag, i);
    let turn_call = Call::Turn(Turn {
        task_id: format!("{}-t{i}", phase.tag),
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
        .min(8 * std::thread::available_parallelism().map_or(2, |n| n.get()))
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
