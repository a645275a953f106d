//! The GenAI metrics' one recording point: the turn path reports each model call, tool call and
//! turn to a [`GenAiMeter`] once, and the meter's owner turns that into its histograms (the
//! server's Prometheus series in `/metrics`, the CLI's OTLP export, or both through [`FanOut`]).
//! Nothing else records turn histograms, so no figure is counted twice.
//!
//! The measurements follow the OpenTelemetry GenAI metrics (the conventions named in
//! [`crate::telemetry`]):
//!
//! | measurement | metric | unit |
//! |---|---|---|
//! | [`ModelCall::duration`] | `gen_ai.client.operation.duration` (`gen_ai.operation.name` = `chat`) | s |
//! | [`ModelCall::usage`] | `gen_ai.client.token.usage` (`gen_ai.token.type` = `input` / `output`) | {token} |
//! | [`StreamTiming::first_chunk`] | `gen_ai.client.operation.time_to_first_chunk` | s |
//! | [`StreamTiming::per_chunk`] | `gen_ai.client.operation.time_per_output_chunk` | s |
//! | [`ToolCall`] | `gen_ai.execute_tool.duration` | s |
//! | [`TurnDone`] | `gen_ai.invoke_agent.duration` | s |
//!
//! `time_per_output_chunk` is recorded once per streamed call, as the mean interval between its
//! chunks (not once per chunk): a chunk's own cost is the streaming benchmark's business.
//!
//! **Cost.** With no meter installed the turn path pays one atomic load per model call, tool
//! batch and turn. A meter must not block: it is called on the turn's task.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aether_contracts::TokenUsage;
use async_trait::async_trait;
use tokio::time::Instant;

use crate::model::{DeltaSink, ModelError};

/// `gen_ai.client.token.usage`'s bucket boundaries in the conventions: 1, 4, 16, … 67108864.
pub const TOKEN_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

/// One model call, finished.
#[derive(Debug, Clone, Copy)]
pub struct ModelCall<'a> {
    /// `gen_ai.provider.name`.
    pub provider: &'a str,
    /// `gen_ai.request.model`.
    pub model: &'a str,
    pub duration: Duration,
    /// `error.type` ([`ModelError::kind`]); `None` when it answered.
    pub error: Option<&'static str>,
    /// The tokens of an answer (none for a failure).
    pub usage: Option<TokenUsage>,
    /// Set for a streamed call that produced at least one chunk.
    pub stream: Option<StreamTiming>,
}

/// When a streamed call's chunks came.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamTiming {
    /// From the call's start to its first chunk.
    pub first_chunk: Duration,
    /// The mean interval between its chunks after the first; `None` with one chunk.
    pub per_chunk: Option<Duration>,
}

/// One tool call, finished.
#[derive(Debug, Clone, Copy)]
pub struct ToolCall<'a> {
    /// `gen_ai.tool.name`.
    pub name: &'a str,
    pub duration: Duration,
    /// `error.type`: the error code of a failed call.
    pub error: Option<&'a str>,
}

/// One turn (`invoke_agent`), finished.
#[derive(Debug, Clone, Copy)]
pub struct TurnDone<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    pub duration: Duration,
    /// `error.type`: the error code of a failed turn.
    pub error: Option<&'a str>,
}

/// Where the turn path's measurements go. Called on the turn's task: it must be quick and never
/// block (update histograms, nothing more). Label values it derives from these (provider, model,
/// tool names) come from configuration; a meter bounds how many it keeps.
pub trait GenAiMeter: Send + Sync + 'static {
    fn model_call(&self, call: &ModelCall<'_>);
    fn tool_call(&self, call: &ToolCall<'_>);
    fn turn(&self, turn: &TurnDone<'_>);
}

/// Several meters as one.
pub struct FanOut(pub Vec<Arc<dyn GenAiMeter>>);

impl GenAiMeter for FanOut {
    fn model_call(&self, call: &ModelCall<'_>) {
        self.0.iter().for_each(|m| m.model_call(call));
    }
    fn tool_call(&self, call: &ToolCall<'_>) {
        self.0.iter().for_each(|m| m.tool_call(call));
    }
    fn turn(&self, turn: &TurnDone<'_>) {
        self.0.iter().for_each(|m| m.turn(turn));
    }
}

/// The runtime's meter, installed at most once (`Runtime::install_meter`).
#[derive(Default)]
pub(crate) struct MeterSlot(OnceLock<Arc<dyn GenAiMeter>>);

impl MeterSlot {
    #[inline]
    pub fn get(&self) -> Option<&Arc<dyn GenAiMeter>> {
        self.0.get()
    }

    pub fn install(&self, meter: Arc<dyn GenAiMeter>) -> Result<(), MeterAlreadyInstalled> {
        self.0.set(meter).map_err(|_| MeterAlreadyInstalled)
    }
}

/// A runtime takes one meter; combine several with [`FanOut`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this runtime already has a GenAI meter: install one FanOut of all of them")]
pub struct MeterAlreadyInstalled;

/// A stream sink that notes when chunks pass (for a metered streamed call), then hands them on.
pub(crate) struct TimedSink<'a> {
    inner: &'a mut dyn DeltaSink,
    started: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    chunks: u32,
}

impl<'a> TimedSink<'a> {
    pub fn new(inner: &'a mut dyn DeltaSink, started: Instant) -> Self {
        Self {
            inner,
            started,
            first: None,
            last: None,
            chunks: 0,
        }
    }

    /// Notes that a chunk passed now.
    fn passed(&mut self) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.chunks += 1;
    }

    /// The call's chunk timing; `None` when nothing was streamed.
    pub fn timing(&self) -> Option<StreamTiming> {
        stream_timing(self.started, self.first?, self.last?, self.chunks)
    }
}

/// The timing of `chunks` chunks, the first at `first` and the last at `last`.
fn stream_timing(started: Instant, first: Instant, last: Instant, chunks: u32) -> Option<StreamTiming> {
    Some(StreamTiming {
        first_chunk: first.saturating_duration_since(started),
        per_chunk: (chunks > 1).then(|| last.saturating_duration_since(first) / (chunks - 1)),
    })
}

#[async_trait]
impl DeltaSink for TimedSink<'_> {
    async fn delta(&mut self, text: &str) -> Result<(), ModelError> {
        self.passed();
        self.inner.delta(text).await
    }

    /// At once when the sink it wraps takes the piece at once.
    fn take_now(&mut self, text: &str) -> Option<Result<(), ModelError>> {
        let taken = self.inner.take_now(text)?;
        self.passed();
        Some(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_timing_is_first_chunk_and_mean_interval() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let t = stream_timing(t0, t0 + ms(100), t0 + ms(130), 4).unwrap();
        assert_eq!(t.first_chunk, ms(100));
        assert_eq!(t.per_chunk, Some(ms(10)), "3 intervals over 30 ms");
        let one = stream_timing(t0, t0 + ms(5), t0 + ms(5), 1).unwrap();
        assert_eq!(one.per_chunk, None, "one chunk has no interval");
    }

    /// A sink that awaits each piece (`waits`) or takes it at once, noting how it got each.
    struct Kept {
        waits: bool,
        got: Vec<(String, &'static str)>,
    }

    #[async_trait]
    impl DeltaSink for Kept {
        async fn delta(&mut self, text: &str) -> Result<(), ModelError> {
            self.got.push((text.to_owned(), "delta"));
            Ok(())
        }

        fn take_now(&mut self, text: &str) -> Option<Result<(), ModelError>> {
            if self.waits {
                return None;
            }
            self.got.push((text.to_owned(), "now"));
            Some(Ok(()))
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_timed_sink_counts_each_piece_and_hands_it_on_the_way_its_sink_takes_it() {
        for (waits, way) in [(true, "delta"), (false, "now")] {
            let mut inner = Kept { waits, got: Vec::new() };
            let mut timed = TimedSink::new(&mut inner, Instant::now());
            for piece in ["a", "b", "c"] {
                let sink: &mut dyn DeltaSink = &mut timed;
                sink.deliver(piece).await.unwrap();
            }
            let timing = timed.timing().expect("three pieces passed");
            assert_eq!(timed.chunks, 3);
            assert!(timing.per_chunk.is_some());
            let expected: Vec<_> = ["a", "b", "c"].iter().map(|p| (p.to_string(), way)).collect();
            assert_eq!(inner.got, expected, "sink that waits: {waits}");
        }
    }

    #[test]
    fn a_slot_takes_one_meter() {
        struct Nothing;
        impl GenAiMeter for Nothing {
            fn model_call(&self, _: &ModelCall<'_>) {}
            fn tool_call(&self, _: &ToolCall<'_>) {}
            fn turn(&self, _: &TurnDone<'_>) {}
        }
        let slot = MeterSlot::default();
        assert!(slot.get().is_none());
        slot.install(Arc::new(Nothing)).unwrap();
        assert_eq!(slot.install(Arc::new(Nothing)), Err(MeterAlreadyInstalled));
        assert!(slot.get().is_some());
    }
}
