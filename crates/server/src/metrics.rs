//! Prometheus metrics of one server: its own recorder (not the process-global one, so that several
//! servers can live in one process), label sets bounded by construction (route template, method,
//! status class and code; never an agent, session or tenant id).

use std::sync::Arc;
use std::time::Duration;

use aether_runtime::meter::GenAiMeter;

use aether_contracts::{ErrorCode, TaskChunkType, TaskResult, TaskStreamChunk, TurnReport};
use metrics::{Counter, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use serde_json::Value;

use crate::gen_ai_metrics::GenAiSeries;

const META: Metadata<'static> = Metadata::new("aether_server", Level::INFO, None);

/// Latency buckets in seconds: 50 µs to 60 s.
const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0,
];

pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    process: metrics_process::Collector,
    turns: TurnSeries,
    gen_ai: Arc<GenAiSeries>,
}

/// The series every turn moves, registered once (so they exist at zero before the first turn)
/// and kept as handles: recording one is an atomic update, with no key built or looked up.
/// The turn's own duration, its model calls, tools and tokens are the GenAI series
/// ([`crate::gen_ai_metrics`]); these are the turn report's breakdown.
struct TurnSeries {
    /// A turn's model, tool and framework-overhead time (seconds).
    model: Histogram,
    tool: Histogram,
    overhead: Histogram,
    /// A summary: its `_sum` is the spend (cost is a float; counters here are integers).
    cost: Histogram,
    /// `aether_turn_errors_total`, one per code of `ErrorCode::ALL`, in its order.
    errors: Vec<Counter>,
}

impl TurnSeries {
    fn register(r: &PrometheusRecorder) -> Self {
        let histogram = |name: &'static str| r.register_histogram(&Key::from_name(name), &META);
        let labelled = |name: &'static str, label: &'static str, value: &'static str| {
            r.register_counter(&Key::from_parts(name, vec![Label::new(label, value)]), &META)
        };
        Self {
            model: histogram("aether_model_duration_seconds"),
            tool: histogram("aether_tool_duration_seconds"),
            overhead: histogram("aether_framework_overhead_seconds"),
            cost: histogram("aether_turn_cost_usd"),
            errors: ErrorCode::ALL
                .iter()
                .map(|c| labelled("aether_turn_errors_total", "code", c.as_str()))
                .collect(),
        }
    }

    fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[i].increment(1);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("static, non-empty buckets")
            .set_buckets_for_metric(
                Matcher::Full("gen_ai_client_token_usage".into()),
                aether_runtime::meter::TOKEN_BUCKETS,
            )
            .expect("static, non-empty buckets")
            .build_recorder();
        let recorder = Arc::new(recorder);
        let handle = recorder.handle();
        let process = metrics_process::Collector::default();
        metrics::with_local_recorder(&*recorder, || process.describe());
        let turns = TurnSeries::register(&recorder);
        let gen_ai = Arc::new(GenAiSeries::new(Arc::clone(&recorder)));
        let m = Self {
            recorder,
            handle,
            process,
            turns,
            gen_ai,
        };
        m.register_zeros();
        m
    }

    /// The GenAI series' meter, for the runtime's recording point
    /// ([`aether_runtime::Runtime::install_meter`]).
    pub fn gen_ai_meter(&self) -> Arc<dyn GenAiMeter> {
        Arc::clone(&self.gen_ai) as Arc<dyn GenAiMeter>
    }

    /// One finished HTTP request.
    pub fn request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let labels = vec![
            Label::new("route", route.to_owned()),
            Label::new("method", method.to_owned()),
            Label::new("status", status.to_string()),
        ];
        self.recorder
            .register_counter(&Key::from_parts("aether_http_requests_total", labels.clone()), &META)
            .increment(1);
        self.recorder
            .register_histogram(&Key::from_parts("aether_http_request_duration_seconds", labels), &META)
            .record(elapsed.as_secs_f64());
    }

    /// A request over a tenant's soft or hard rate limit.
    pub fn rate_limited(&self, limit: &'static str) {
        self.recorder
            .register_counter(
                &Key::from_parts("aether_rate_limited_total", vec![Label::new("limit", limit)]),
                &META,
            )
            .increment(1);
    }

    /// A request refused by admission control (queue full, too many live turns).
    pub fn rejected(&self, reason: &'static str) {
        self.recorder
            .register_counter(
                &Key::from_parts("aether_admission_rejected_total", vec![Label::new("reason", reason)]),
                &META,
            )
            .increment(1);
    }

    /// Registers, at zero, the series that only move on rare events (rate limits, refusals), so
    /// that dashboards and alerts see them before the first event (the turn series are
    /// registered with their handles).
    fn register_zeros(&self) {
        let zero = |name: &'static str, label: &'static str, value: &'static str| {
            self.recorder
                .register_counter(&Key::from_parts(name, vec![Label::new(label, value)]), &META)
                .increment(0);
        };
        for limit in ["soft", "hard"] {
            zero("aether_rate_limited_total", "limit", limit);
        }
        for reason in ["queue_full", "live_full"] {
            zero("aether_admission_rejected_total", "reason", reason);
        }
    }

    /// One finished request of `/v1/tasks`: a failure counts under its error code; a completed
    /// turn records its time breakdown (model, tools, framework overhead) and cost.
    pub fn task(&self, result: &TaskResult) {
        if let Some(e) = &result.error {
            self.turns.error(e.code);
        }
        self.turn(&result.metadata);
    }

    /// One chunk of a live turn: its `error` chunk counts under its code, its `turn.complete`
    /// records the turn's figures, as [`task`](Self::task) does for a sync turn.
    pub fn live_chunk(&self, chunk: &TaskStreamChunk) {
        match chunk.chunk_type {
            TaskChunkType::Error => {
                let code = chunk.content.get("code").and_then(Value::as_str);
                // Only the known codes: a label's values stay a fixed set.
                if let Some(code) = ErrorCode::ALL.iter().find(|c| Some(c.as_str()) == code) {
                    self.turns.error(*code);
                }
            }
            TaskChunkType::Complete => {
                if let Some(metadata) = chunk.content.get("metadata").and_then(Value::as_object) {
                    self.turn(metadata);
                }
            }
            _ => {}
        }
    }

    /// A completed turn's figures, from its report (agent creation and failures carry none).
    fn turn(&self, metadata: &aether_contracts::Metadata) {
        let Ok(f) = TurnReport::figures(metadata) else {
            return;
        };
        let (t, s) = (&f.timing, &self.turns);
        s.model.record(t.model_us / 1e6);
        s.tool.record(t.tool_us / 1e6);
        s.overhead.record(t.overhead_us / 1e6);
        s.cost.record(f.cost_usd);
    }

    /// The process's own series (`process_resident_memory_bytes`, `process_cpu_seconds_total`,
    /// open files, threads), read from the OS. File I/O: call it off the async threads.
    pub fn collect_process(&self) {
        metrics::with_local_recorder(&*self.recorder, || self.process.collect());
    }

    pub fn gauge(&self, name: &'static str, value: f64) {
        self.recorder.register_gauge(&Key::from_name(name), &META).set(value);
    }

    /// A counter kept elsewhere, set to its current `value`, with one label.
    pub fn labeled_total(&self, name: &'static str, label: (&'static str, &str), value: u64) {
        self.recorder
            .register_counter(
                &Key::from_parts(name, vec![Label::new(label.0, label.1.to_owned())]),
                &META,
            )
            .absolute(value);
    }

    pub fn counter_total(&self, name: String, value: u64) {
        self.recorder
            .register_counter(&Key::from_name(name), &META)
            .absolute(value);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram samples into their buckets; run periodically so that memory stays flat
    /// between scrapes.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}
