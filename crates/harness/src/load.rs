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
//! of that stripe.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{
    AgentConfig, AgentReport, InteractionResponse, InteractionType, TaskChunkType, TaskRequest, TaskResult,
    TurnFigures, TurnReport, UniversalMessage, UserContext,
};
use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::progress::Progress;
use crate::scenario::{Mode, ScenarioConfig, SessionMode};
use crate::stats::DurationHist;
use crate::target::Target;

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
}

pub const MAX_ERRORS: usize = 5;

impl Recorder {
    pub fn merge(&mut self, o: &Recorder) {
        for (a, b) in [
            (&mut self.latency, &o.latency),
            (&mut self.overhead, &o.overhead),
            (&mut self.model, &o.model),
            (&mut self.tool, &o.tool),
            (&mut self.create, &o.create),
            (&mut self.cleanup, &o.cleanup),
            (&mut self.cold, &o.cold),
            (&mut self.warm, &o.warm),
            (&mut self.ttft, &o.ttft),
            (&mut self.chunk_gap, &o.chunk_gap),
            (&mut self.approval, &o.approval),
            (&mut self.conversion, &o.conversion),
        ] {
            a.merge(b);
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
        for e in &o.errors {
            if self.errors.len() < MAX_ERRORS {
                self.errors.push(e.clone());
            }
        }
    }

    fn error(&mut self, e: String) {
        self.failed += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(e);
        }
    }

    pub fn total(&self) -> u64 {
        self.succeeded + self.failed
    }
}

/// One phase of load: which agent config, how many requests, how fast.
pub struct Phase {
    pub config: Arc<ScenarioConfig>,
    pub agent: AgentConfig,
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
    pub issued: u64,
}

fn ns(us: f64) -> u64 {
    (us * 1000.0) as u64
}

/// How a turn ended, whether it ran synchronously or streamed.
enum TurnOutcome {
    Done {
        report: TurnFigures,
        tool_calls: u64,
        text: String,
    },
    Failed(String),
}

impl TurnOutcome {
    fn from_result(r: TaskResult) -> Self {
        if !r.is_success() {
            return TurnOutcome::Failed(error_text(&r));
        }
        match TurnReport::figures(&r.metadata) {
            Ok(report) => TurnOutcome::Done {
                tool_calls: r.tool_results.len() as u64,
                text: r.response_text().unwrap_or_default().into_owned(),
                report,
            },
            Err(e) => TurnOutcome::Failed(e.to_string()),
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
        Err(e) => return (TurnOutcome::Failed(format!("live turn: {e}")), s),
    };
    let (mut last, mut expected, mut tool_calls, mut text) = (None::<Instant>, 0u64, 0u64, String::new());
    let mut outcome = TurnOutcome::Failed("the stream ended without a final chunk".into());
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
                    outcome = TurnOutcome::Failed(format!("approval: {e}"));
                    break;
                }
                s.approvals.push(now.elapsed());
            }
            TaskChunkType::ToolResult => tool_calls += 1,
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
                        report,
                        tool_calls,
                        text: std::mem::take(&mut text),
                    },
                    Err(e) => TurnOutcome::Failed(e),
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
                outcome = TurnOutcome::Failed(format!("{code}: {msg}"));
                break;
            }
            _ => {}
        }
    }
    live.close().await;
    (outcome, s)
}

fn error_text(r: &TaskResult) -> String {
    match &r.error {
        Some(e) => format!("{}: {}", e.code, e.message),
        None => format!("status {}", r.status),
    }
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
    turn: Option<Result<TurnSample, String>>,
    cleanup: Option<Result<Duration, String>>,
    create_error: Option<String>,
}

struct TurnSample {
    latency: Duration,
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
    fn apply(&mut self, s: RequestSample) {
        if let Some(d) = s.create {
            self.create.record(d);
        }
        if let Some(e) = s.create_error {
            self.error(format!("agent creation: {e}"));
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
            Some(Err(e)) => self.error(e),
            None => {}
        }
        match s.cleanup {
            Some(Ok(d)) => {
                self.cleanup.record(d);
                self.agents_cleaned_up += 1;
            }
            Some(Err(e)) => self.error(format!("agent cleanup: {e}")),
            None => {}
        }
    }
}

async fn one_request(target: &dyn Target, phase: &Phase, i: u64, due: Instant) -> RequestSample {
    let cfg = &phase.config;
    let mut sample = RequestSample::default();
    let mut agent = phase.agent.clone();
    if phase.unique_agent_per_iteration {
        agent.name = Some(format!("{}-{i}", phase.tag));
    }
    let t = Instant::now();
    let created = target
        .process(TaskRequest::create_agent(format!("{}-c{i}", phase.tag), agent))
        .await;
    sample.create = Some(t.elapsed());
    let Some(agent_id) = created.agent_id.clone().filter(|_| created.is_success()) else {
        sample.create_error = Some(error_text(&created));
        return sample;
    };
    sample.agent_reused = match AgentReport::reused(&created.metadata) {
        Ok(reused) => Some(reused),
        Err(e) => {
            sample.create_error = Some(e.to_string());
            return sample;
        }
    };

    let session_id = cfg.session_mode.session_id(&phase.tag, i);
    let message = match &phase.payload {
        Some(p) => p.message.clone(),
        None => UniversalMessage::user(cfg.prompt.as_str()),
    };
    let mut req = TaskRequest::converse(
        format!("{}-t{i}", phase.tag),
        agent_id.as_str(),
        session_id.as_str(),
        vec![message],
    );
    req.metadata = cfg.metadata.clone();
    req.metadata
        .insert("scenario".into(), Value::from(cfg.scenario.as_str()));
    req.metadata.insert("iteration".into(), Value::from(i));
    if cfg.session_mode == SessionMode::FixedPerIteration {
        req.user_context = Some(UserContext {
            user_id: Some(session_id),
            ..UserContext::default()
        });
    }
    // The latency ends when the answer is in; reading its report is the harness's own work.
    let (outcome, stream, latency) = match cfg.mode {
        Mode::Sync => {
            let result = target.process(req).await;
            let latency = due.elapsed();
            (TurnOutcome::from_result(result), None, latency)
        }
        Mode::Streaming => {
            let (o, s) = live_turn(target, req, Duration::from_millis(cfg.approval_think_ms)).await;
            (o, Some(s), due.elapsed())
        }
    };

    sample.turn = Some(match outcome {
        TurnOutcome::Done {
            report,
            tool_calls,
            text,
        } => {
            let timing = &report.timing;
            let media = phase.payload.as_ref().map(|p| MediaSample {
                attachments: p.expected.len() as u64,
                intact: p.expected.iter().filter(|sig| text.contains(sig.as_str())).count() as u64,
                conversion_ns: ns(timing.media_us),
            });
            Ok(TurnSample {
                latency,
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

/// Runs one phase to completion.
pub async fn drive(target: Arc<dyn Target>, phase: Arc<Phase>, progress: Arc<dyn Progress>) -> PhaseOutcome {
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
        let (target, phase, shared, progress) = (
            Arc::clone(&target),
            Arc::clone(&phase),
            Arc::clone(&shared),
            Arc::clone(&progress),
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
                let sample = one_request(target.as_ref(), &phase, i, due).await;
                if i >= phase.warmup {
                    shared
                        .first_measured_ns
                        .fetch_min(shared.offset_ns(due), Ordering::Relaxed);
                    shared
                        .last_done_ns
                        .fetch_max(shared.offset_ns(Instant::now()), Ordering::Relaxed);
                    stripe.lock().apply(sample);
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
        recorder.merge(&s.lock());
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
        issued: shared
            .next
            .load(Ordering::Relaxed)
            .min(phase.iterations.unwrap_or(u64::MAX)),
    }
}
