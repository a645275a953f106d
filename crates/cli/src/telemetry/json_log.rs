//! `--log-format json` lines that name their trace: a line logged inside an exported span (an
//! API request, a turn) carries `trace_id` and `span_id`, so Loki, Elasticsearch or Grafana
//! can jump from a log line to its trace in Jaeger or Tempo.
//!
//! The ids come from the OpenTelemetry layer through the process's dispatcher (set after the
//! subscriber is installed); the log layer's own view of spans is filtered to its level, so it
//! asks the registry for the current span instead.

use std::fmt;
use std::sync::OnceLock;

use opentelemetry::trace::TraceContextExt as _;
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::{LookupSpan, Registry};

/// The installed dispatcher (the registry and the OpenTelemetry layer within it).
static DISPATCH: OnceLock<Dispatch> = OnceLock::new();

/// Call once the subscriber is installed.
pub fn installed() {
    tracing::dispatcher::get_default(|d| {
        let _ = DISPATCH.set(d.clone());
    });
}

/// The JSON format, plus `trace_id` and `span_id` when a traced span is current.
pub struct JsonWithTrace(pub Format<Json>);

/// The current span's trace and span ids, when it is part of an exported trace.
fn current_ids() -> Option<(String, String)> {
    let d = DISPATCH.get()?;
    let current = d.downcast_ref::<Registry>()?.current_span();
    let id = current.id()?;
    let cx = tracing_opentelemetry::get_otel_context(id, d)?;
    let sc = cx.span().span_context().clone();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    Format<Json>: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let Some((trace, span)) = current_ids() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        // One JSON object per line: the ids go in before its closing brace.
        match line.trim_end().strip_suffix('}') {
            Some(body) => writeln!(writer, "{body},\"trace_id\":\"{trace}\",\"span_id\":\"{span}\"}}"),
            None => writer.write_str(&line),
        }
    }
}

/// The field formatter of JSON lines.
pub fn fields() -> JsonFields {
    JsonFields::new()
}
