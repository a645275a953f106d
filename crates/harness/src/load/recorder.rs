//! [`Recorder`]: everything recorded about a run's measured requests (latency and its parts,
//! failures by code, per-tool times, the slowest requests), and how one request's sample is
//! applied to it. A worker applies its samples to its stripe's recorder; the stripes are merged
//! at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::slowest::Slowest;
use crate::stats::DurationHist;
use crate::timeline::{bounded_entry, count_code, Intervals, MAX_CODES};

use super::{Failure, RequestSample};

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
    /// This stripe's open intervals of the time series (moved to the
    /// [`Series`](crate::timeline::Series) as they close; never merged here).
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

impl Recorder {
    /// Applies a request's sample; it completed in interval `bucket` of the time series.
    pub(super) fn apply(&mut self, s: RequestSample, bucket: u64) {
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
