//! The GenAI metrics over OTLP: a [`GenAiMeter`] on OpenTelemetry instruments, exported by the
//! SDK's periodic reader (its own thread, the blocking HTTP client; every 60 s by default,
//! `OTEL_METRIC_EXPORT_INTERVAL`). Names, units, attributes and bucket boundaries are the GenAI
//! conventions' (see `aether_runtime::meter`). The SDK bounds each instrument's attribute sets
//! (2,000; the overflow goes to one `otel.metric.overflow` set).
//!
//! **Bound attribute sets.** A plain `record` makes the SDK find the point of its attribute set:
//! a SipHash of every key and value; with the attribute vector, ~2.5 k instructions a record,
//! eight records a turn with a tool (callgrind on `perf run --scenario burst_load --tools
//! crm_lookup` with export on). The
//! sets of calls that succeeded are few (one per provider and model, one per tool), so each is
//! bound once to its instruments (the SDK's bound instruments) and found again by a short scan
//! that compares the names; a failed call's set (with `error.type`) is recorded the plain way.
//! At most [`MAX_BOUND`] sets are bound per kind; past that, records take the plain way too.

use std::sync::Arc;

use opentelemetry::metrics::{BoundHistogram, Histogram, Meter};
use opentelemetry::KeyValue;
use parking_lot::RwLock;

use aether_runtime::meter::{GenAiMeter, ModelCall, ToolCall, TurnDone, TOKEN_BUCKETS};

/// Duration buckets of the conventions: 0.01 s … 81.92 s, with finer ones below for a runtime
/// whose own cost is microseconds.
const SECONDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12,
    10.24, 20.48, 40.96, 81.92,
];

/// The most attribute sets bound per kind (model calls, tools, turns).
const MAX_BOUND: usize = 64;

pub struct OtlpMeter {
    duration: Histogram<f64>,
    tokens: Histogram<u64>,
    first_chunk: Histogram<f64>,
    per_chunk: Histogram<f64>,
    tool: Histogram<f64>,
    turn: Histogram<f64>,
    model_sets: BoundSets<ModelBound>,
    tool_sets: BoundSets<BoundHistogram<f64>>,
    turn_sets: BoundSets<BoundHistogram<f64>>,
}

/// A successful model call's instruments, bound to its provider and model.
struct ModelBound {
    duration: BoundHistogram<f64>,
    first_chunk: BoundHistogram<f64>,
    per_chunk: BoundHistogram<f64>,
    input: BoundHistogram<u64>,
    output: BoundHistogram<u64>,
}

/// Instruments bound per attribute set, found by the names that make the set.
struct BoundSets<V> {
    sets: RwLock<Vec<BoundSet<V>>>,
}

/// The names that make an attribute set (provider and model, or a tool's name), and what is
/// bound to it.
type BoundSet<V> = (Box<[Box<str>]>, Arc<V>);

impl<V> BoundSets<V> {
    fn new() -> Self {
        Self {
            sets: RwLock::new(Vec::new()),
        }
    }

    /// The instruments bound to `names` (bound by `bind` the first time); `None` once
    /// [`MAX_BOUND`] sets are bound and `names` is not one of them.
    fn get(&self, names: &[&str], bind: impl FnOnce() -> V) -> Option<Arc<V>> {
        let find = |sets: &[BoundSet<V>]| {
            sets.iter()
                .find(|(k, _)| k.iter().map(|n| &**n).eq(names.iter().copied()))
                .map(|(_, v)| Arc::clone(v))
        };
        {
            let sets = self.sets.read();
            if let Some(v) = find(&sets) {
                return Some(v);
            }
            // Full: no write lock for a set that will never be bound.
            if sets.len() >= MAX_BOUND {
                return None;
            }
        }
        let mut sets = self.sets.write();
        if let Some(v) = find(&sets) {
            return Some(v);
        }
        if sets.len() >= MAX_BOUND {
            return None;
        }
        let v = Arc::new(bind());
        sets.push((names.iter().map(|n| Box::from(*n)).collect(), Arc::clone(&v)));
        Some(v)
    }
}

impl OtlpMeter {
    pub fn new(meter: &Meter) -> Self {
        let seconds = |name: &'static str, what: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(what)
                .with_boundaries(SECONDS.to_vec())
                .build()
        };
        Self {
            duration: seconds("gen_ai.client.operation.duration", "GenAI operation duration"),
            tokens: meter
                .u64_histogram("gen_ai.client.token.usage")
                .with_unit("{token}")
                .with_description("Number of input and output tokens used")
                .with_boundaries(TOKEN_BUCKETS.to_vec())
                .build(),
            first_chunk: seconds(
                "gen_ai.client.operation.time_to_first_chunk",
                "Time to receive the first chunk of a streamed answer",
            ),
            per_chunk: seconds(
                "gen_ai.client.operation.time_per_output_chunk",
                "Mean time between the chunks of a streamed answer, one value per call",
            ),
            tool: seconds("gen_ai.execute_tool.duration", "Duration of a tool call"),
            turn: seconds("gen_ai.invoke_agent.duration", "Duration of an agent turn"),
            model_sets: BoundSets::new(),
            tool_sets: BoundSets::new(),
            turn_sets: BoundSets::new(),
        }
    }
}

fn model_attributes(operation: &'static str, provider: &str, model: &str, error: Option<&str>) -> Vec<KeyValue> {
    let mut a = vec![
        KeyValue::new("gen_ai.operation.name", operation),
        KeyValue::new("gen_ai.provider.name", provider.to_owned()),
        KeyValue::new("gen_ai.request.model", model.to_owned()),
    ];
    if let Some(e) = error {
        a.push(KeyValue::new("error.type", e.to_owned()));
    }
    a
}

fn tool_attributes(name: &str, error: Option<&str>) -> Vec<KeyValue> {
    let mut a = vec![
        KeyValue::new("gen_ai.operation.name", "execute_tool"),
        KeyValue::new("gen_ai.tool.name", name.to_owned()),
    ];
    if let Some(e) = error {
        a.push(KeyValue::new("error.type", e.to_owned()));
    }
    a
}

/// The token type's attribute, after a model call's own.
fn with_token_type(mut a: Vec<KeyValue>, token_type: &'static str) -> Vec<KeyValue> {
    a.push(KeyValue::new("gen_ai.token.type", token_type));
    a
}

impl OtlpMeter {
    /// A model call whose attribute set carries `error.type`: recorded the plain way.
    fn model_call_unbound(&self, c: &ModelCall<'_>) {
        let a = model_attributes("chat", c.provider, c.model, c.error);
        self.duration.record(c.duration.as_secs_f64(), &a);
        if let Some(t) = c.stream {
            self.first_chunk.record(t.first_chunk.as_secs_f64(), &a);
            if let Some(p) = t.per_chunk {
                self.per_chunk.record(p.as_secs_f64(), &a);
            }
        }
        if let Some(u) = c.usage {
            self.tokens
                .record(u.prompt_tokens, &with_token_type(a.clone(), "input"));
            self.tokens.record(u.completion_tokens, &with_token_type(a, "output"));
        }
    }

    fn bind_model(&self, provider: &str, model: &str) -> ModelBound {
        let a = model_attributes("chat", provider, model, None);
        ModelBound {
            duration: self.duration.bind(&a),
            first_chunk: self.first_chunk.bind(&a),
            per_chunk: self.per_chunk.bind(&a),
            input: self.tokens.bind(&with_token_type(a.clone(), "input")),
            output: self.tokens.bind(&with_token_type(a, "output")),
        }
    }
}

impl GenAiMeter for OtlpMeter {
    fn model_call(&self, c: &ModelCall<'_>) {
        let bound = match c.error {
            None => self
                .model_sets
                .get(&[c.provider, c.model], || self.bind_model(c.provider, c.model)),
            Some(_) => None,
        };
        let Some(b) = bound else {
            return self.model_call_unbound(c);
        };
        b.duration.record(c.duration.as_secs_f64());
        if let Some(t) = c.stream {
            b.first_chunk.record(t.first_chunk.as_secs_f64());
            if let Some(p) = t.per_chunk {
                b.per_chunk.record(p.as_secs_f64());
            }
        }
        if let Some(u) = c.usage {
            b.input.record(u.prompt_tokens);
            b.output.record(u.completion_tokens);
        }
    }

    fn tool_call(&self, c: &ToolCall<'_>) {
        let seconds = c.duration.as_secs_f64();
        let bound = match c.error {
            None => self
                .tool_sets
                .get(&[c.name], || self.tool.bind(&tool_attributes(c.name, None))),
            Some(_) => None,
        };
        match bound {
            Some(b) => b.record(seconds),
            None => self.tool.record(seconds, &tool_attributes(c.name, c.error)),
        }
    }

    fn turn(&self, t: &TurnDone<'_>) {
        let seconds = t.duration.as_secs_f64();
        let bound = match t.error {
            None => self.turn_sets.get(&[t.provider, t.model], || {
                self.turn
                    .bind(&model_attributes("invoke_agent", t.provider, t.model, None))
            }),
            Some(_) => None,
        };
        match bound {
            Some(b) => b.record(seconds),
            None => self
                .turn
                .record(seconds, &model_attributes("invoke_agent", t.provider, t.model, t.error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_bound_once_and_the_number_of_sets_is_bounded() {
        let sets = BoundSets::new();
        let mut binds = 0;
        let a = sets.get(&["simulated", "gpt-4o"], || {
            binds += 1;
            1
        });
        let again = sets.get(&["simulated", "gpt-4o"], || {
            binds += 1;
            2
        });
        assert!(Arc::ptr_eq(a.as_ref().unwrap(), again.as_ref().unwrap()));
        assert_eq!(binds, 1);
        // The names are compared one by one, not joined.
        assert_eq!(sets.get(&["simulatedgpt", "-4o"], || 3).as_deref(), Some(&3));
        assert_eq!(sets.get(&["simulated"], || 4).as_deref(), Some(&4));
        for i in 3..MAX_BOUND {
            assert!(sets.get(&[&i.to_string()], || i as i32).is_some());
        }
        assert_eq!(sets.get(&["one too many"], || 0), None);
        // Sets bound before the bound was reached are still found.
        assert_eq!(sets.get(&["simulated", "gpt-4o"], || 9).as_deref(), Some(&1));
    }
}
