//! The GenAI metrics over OTLP: a [`GenAiMeter`] on OpenTelemetry instruments, exported by the
//! SDK's periodic reader (its own thread, the blocking HTTP client; every 60 s by default,
//! `OTEL_METRIC_EXPORT_INTERVAL`). Names, units, attributes and bucket boundaries are the GenAI
//! conventions' (see `aether_runtime::meter`). The SDK bounds each instrument's attribute sets
//! (2,000; the overflow goes to one `otel.metric.overflow` set).

use opentelemetry::metrics::{Histogram, Meter};
use opentelemetry::KeyValue;

use aether_runtime::meter::{GenAiMeter, ModelCall, ToolCall, TurnDone, TOKEN_BUCKETS};

/// Duration buckets of the conventions: 0.01 s … 81.92 s, with finer ones below for a runtime
/// whose own cost is microseconds.
const SECONDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12,
    10.24, 20.48, 40.96, 81.92,
];

pub struct OtlpMeter {
    duration: Histogram<f64>,
    tokens: Histogram<u64>,
    first_chunk: Histogram<f64>,
    per_chunk: Histogram<f64>,
    tool: Histogram<f64>,
    turn: Histogram<f64>,
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

impl GenAiMeter for OtlpMeter {
    fn model_call(&self, c: &ModelCall<'_>) {
        let mut a = model_attributes("chat", c.provider, c.model, c.error);
        self.duration.record(c.duration.as_secs_f64(), &a);
        if let Some(t) = c.stream {
            self.first_chunk.record(t.first_chunk.as_secs_f64(), &a);
            if let Some(p) = t.per_chunk {
                self.per_chunk.record(p.as_secs_f64(), &a);
            }
        }
        if let Some(u) = c.usage {
            a.push(KeyValue::new("gen_ai.token.type", "input"));
            self.tokens.record(u.prompt_tokens, &a);
            if let Some(last) = a.last_mut() {
                *last = KeyValue::new("gen_ai.token.type", "output");
            }
            self.tokens.record(u.completion_tokens, &a);
        }
    }

    fn tool_call(&self, c: &ToolCall<'_>) {
        let mut a = vec![
            KeyValue::new("gen_ai.operation.name", "execute_tool"),
            KeyValue::new("gen_ai.tool.name", c.name.to_owned()),
        ];
        if let Some(e) = c.error {
            a.push(KeyValue::new("error.type", e.to_owned()));
        }
        self.tool.record(c.duration.as_secs_f64(), &a);
    }

    fn turn(&self, t: &TurnDone<'_>) {
        let a = model_attributes("invoke_agent", t.provider, t.model, t.error);
        self.turn.record(t.duration.as_secs_f64(), &a);
    }
}
