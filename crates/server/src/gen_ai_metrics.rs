//! The OpenTelemetry GenAI metrics in `/metrics`: the server's [`GenAiMeter`], fed by the
//! runtime's one recording point ([`aether_runtime::meter`]) for every turn, sync or live.
//!
//! | series (Prometheus) | labels |
//! |---|---|
//! | `gen_ai_client_operation_duration_seconds` | `gen_ai_operation_name="chat"`, `gen_ai_provider_name`, `gen_ai_request_model`, `error_type` on failures |
//! | `gen_ai_client_token_usage` | the same, with `gen_ai_token_type` = `input` / `output` |
//! | `gen_ai_client_operation_time_to_first_chunk_seconds` | as the duration (streamed calls) |
//! | `gen_ai_client_operation_time_per_output_chunk_seconds` | as the duration (streamed calls; the call's mean interval) |
//! | `gen_ai_execute_tool_duration_seconds` | `gen_ai_operation_name="execute_tool"`, `gen_ai_tool_name`, `error_type` |
//! | `gen_ai_invoke_agent_duration_seconds` | `gen_ai_operation_name="invoke_agent"`, `gen_ai_provider_name`, `gen_ai_request_model`, `error_type` |
//!
//! **Bounded.** Models and tools come from configuration, but agents name their own models: at
//! most [`MAX_LABEL_SETS`] label sets are kept; past that a new model or tool is recorded as
//! `_other` and counted in `aether_gen_ai_label_overflow_total`. Series are never evicted (a
//! Prometheus series that vanishes breaks its rates). Recording a known label set is a shared
//! read of the set's map and atomic updates of its histograms.

use std::collections::HashMap;
use std::sync::Arc;

use aether_runtime::meter::{GenAiMeter, ModelCall, ToolCall, TurnDone};
use metrics::{Counter, Histogram, Key, Label, Level, Metadata, Recorder as _};
use metrics_exporter_prometheus::PrometheusRecorder;
use parking_lot::RwLock;

/// The series' metadata (as the server's other series').
const META: Metadata<'static> = Metadata::new("aether_server", Level::INFO, None);

/// The most label sets kept across the GenAI series.
pub const MAX_LABEL_SETS: usize = 256;

/// The value a label takes once [`MAX_LABEL_SETS`] is reached.
const OTHER: &str = "_other";

/// The series of one model-call label set.
struct ModelSeries {
    duration: Histogram,
    input_tokens: Histogram,
    output_tokens: Histogram,
    first_chunk: Histogram,
    per_chunk: Histogram,
}

pub(crate) struct GenAiSeries {
    recorder: Arc<PrometheusRecorder>,
    models: RwLock<HashMap<String, Arc<ModelSeries>>>,
    /// Tools and turns, by series name and labels.
    single: RwLock<HashMap<String, Histogram>>,
    overflow: Counter,
}

/// `name="value"` pairs → a label list.
fn labels(pairs: &[(&'static str, &str)]) -> Vec<Label> {
    pairs.iter().map(|(k, v)| Label::new(*k, (*v).to_owned())).collect()
}

impl GenAiSeries {
    pub fn new(recorder: Arc<PrometheusRecorder>) -> Self {
        let overflow = recorder.register_counter(&Key::from_name("aether_gen_ai_label_overflow_total"), &META);
        overflow.increment(0);
        Self {
            recorder,
            models: RwLock::default(),
            single: RwLock::default(),
            overflow,
        }
    }

    fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.recorder.register_histogram(&Key::from_parts(name, labels), &META)
    }

    fn used(&self) -> usize {
        self.models.read().len() + self.single.read().len()
    }

    /// The series of a model call's label set, made on first use.
    fn model(&self, provider: &str, model: &str, error: Option<&str>) -> Arc<ModelSeries> {
        let error_part = error.unwrap_or_default();
        if let Some(s) = with_key([provider, model, error_part], |k| self.models.read().get(k).cloned()) {
            return s;
        }
        let model = match self.used() < MAX_LABEL_SETS {
            true => model,
            false => {
                self.overflow.increment(1);
                OTHER
            }
        };
        let key = with_key([provider, model, error_part], str::to_owned);
        let mut map = self.models.write();
        let series = map.entry(key).or_insert_with(|| {
            let mut base = vec![
                ("gen_ai_operation_name", "chat"),
                ("gen_ai_provider_name", provider),
                ("gen_ai_request_model", model),
            ];
            if let Some(e) = error {
                base.push(("error_type", e));
            }
            let tokens = |kind: &'static str| {
                let mut l = base.clone();
                l.push(("gen_ai_token_type", kind));
                self.histogram("gen_ai_client_token_usage", labels(&l))
            };
            Arc::new(ModelSeries {
                duration: self.histogram("gen_ai_client_operation_duration_seconds", labels(&base)),
                input_tokens: tokens("input"),
                output_tokens: tokens("output"),
                first_chunk: self.histogram("gen_ai_client_operation_time_to_first_chunk_seconds", labels(&base)),
                per_chunk: self.histogram("gen_ai_client_operation_time_per_output_chunk_seconds", labels(&base)),
            })
        });
        Arc::clone(series)
    }

    /// A single histogram of `name` with `pairs` (the last pair's value is the one that overflows
    /// to `_other`), then `error_type` when set.
    fn single(&self, name: &'static str, pairs: &[(&'static str, &str)], error: Option<&str>, seconds: f64) {
        let error_part = error.unwrap_or_default();
        if let Some(h) = with_key(single_parts(name, pairs, error_part), |k| {
            self.single.read().get(k).cloned()
        }) {
            h.record(seconds);
            return;
        }
        let mut pairs = pairs.to_vec();
        if self.used() >= MAX_LABEL_SETS {
            self.overflow.increment(1);
            if let Some(last) = pairs.last_mut() {
                last.1 = OTHER;
            }
        }
        let key = with_key(single_parts(name, &pairs, error_part), str::to_owned);
        if let Some(e) = error {
            pairs.push(("error_type", e));
        }
        let mut map = self.single.write();
        map.entry(key)
            .or_insert_with(|| self.histogram(name, labels(&pairs)))
            .record(seconds);
    }
}

/// The parts of a single histogram's key: its name, its label values, its error.
fn single_parts<'a>(
    name: &'a str,
    pairs: &'a [(&'static str, &'a str)],
    error: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    std::iter::once(name)
        .chain(pairs.iter().map(|p| p.1))
        .chain(std::iter::once(error))
}

thread_local! {
    /// The lookup key of a label set, built here rather than in a new `String` per record.
    static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Runs `f` on the key of `parts` (joined by U+001F, which no label value holds).
fn with_key<'a, R>(parts: impl IntoIterator<Item = &'a str>, f: impl FnOnce(&str) -> R) -> R {
    KEY.with_borrow_mut(|k| {
        k.clear();
        for (i, p) in parts.into_iter().enumerate() {
            if i > 0 {
                k.push('\u{1f}');
            }
            k.push_str(p);
        }
        f(k)
    })
}

impl GenAiMeter for GenAiSeries {
    fn model_call(&self, c: &ModelCall<'_>) {
        let s = self.model(c.provider, c.model, c.error);
        s.duration.record(c.duration.as_secs_f64());
        if let Some(u) = c.usage {
            s.input_tokens.record(u.prompt_tokens as f64);
            s.output_tokens.record(u.completion_tokens as f64);
        }
        if let Some(t) = c.stream {
            s.first_chunk.record(t.first_chunk.as_secs_f64());
            if let Some(p) = t.per_chunk {
                s.per_chunk.record(p.as_secs_f64());
            }
        }
    }

    fn tool_call(&self, c: &ToolCall<'_>) {
        self.single(
            "gen_ai_execute_tool_duration_seconds",
            &[("gen_ai_operation_name", "execute_tool"), ("gen_ai_tool_name", c.name)],
            c.error,
            c.duration.as_secs_f64(),
        );
    }

    fn turn(&self, t: &TurnDone<'_>) {
        self.single(
            "gen_ai_invoke_agent_duration_seconds",
            &[
                ("gen_ai_operation_name", "invoke_agent"),
                ("gen_ai_provider_name", t.provider),
                ("gen_ai_request_model", t.model),
            ],
            t.error,
            t.duration.as_secs_f64(),
        );
    }
}
