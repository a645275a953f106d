//! `--log-format json` lines that name their trace: a line logged inside an exported span (an
//! API request, a turn) carries `trace_id` and `span_id`, so Loki, Elasticsearch or Grafana
//! can jump from a log line to its trace in Jaeger or Tempo. The ids are the current
//! OpenTelemetry context's (`aether_contracts::trace::current_ids`).

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The JSON format, plus `trace_id` and `span_id` when a traced span is current.
pub struct JsonWithTrace(pub Format<Json>);

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    Format<Json>: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let Some((trace, span)) = aether_contracts::trace::current_ids() else {
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
