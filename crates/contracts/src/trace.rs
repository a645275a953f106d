//! The process's OpenTelemetry tracing, in one place for every crate that makes spans (the
//! runtime's GenAI spans, the tool executor's, the server's HTTP span) and for every outgoing
//! call that carries the trace on (`traceparent`: model requests over HTTP, MCP tool calls in
//! their `_meta` and as an HTTP header).
//!
//! **Off unless enabled.** [`enable`] (the CLI calls it when it exports spans) takes the global
//! tracer provider's `aether` tracer; until then [`on`] is one atomic load and nothing is made.
//!
//! **Spans are OpenTelemetry spans, made directly** with the API crate (not `tracing` spans
//! bridged by `tracing-opentelemetry`): measured on the turn path (`scripts/otel-overhead.sh`),
//! the bridge cost ~1.8 µs per span (a registry entry, its extensions, every attribute formatted
//! into a `String`), where a direct span shares the ids it is given as `Arc<str>`. A span's
//! context travels with the future that runs inside it (`opentelemetry::context::FutureExt`), so
//! its children, and [`traceparent`], find it as the current context.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{SpanContext, SpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue, Value};

/// The header (and MCP `_meta` key) of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

static TRACER: OnceLock<BoxedTracer> = OnceLock::new();

/// Makes spans from now on, with the global tracer provider's `aether` tracer (set the provider
/// first). Once per process.
pub fn enable() {
    let _ = TRACER.set(opentelemetry::global::tracer("aether"));
}

/// Whether spans are made.
#[inline]
pub fn on() -> bool {
    TRACER.get().is_some()
}

/// Starts `name` as a child of the current context; the returned context holds it (run the work
/// `.with_context(cx)`, then [`end`] it). `None` when spans are off.
pub fn start(name: impl Into<Cow<'static, str>>, kind: SpanKind, attributes: Vec<KeyValue>) -> Option<Context> {
    let tracer = TRACER.get()?;
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attributes)
        .start(tracer);
    Some(Context::current_with_span(span))
}

/// Starts `name` as a child of `parent` (an incoming request's extracted context).
pub fn start_with_parent(
    name: impl Into<Cow<'static, str>>,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
    parent: &Context,
) -> Option<Context> {
    start_linked(name, kind, attributes, parent, None)
}

/// As [`start_with_parent`], with a link to `link` when given: another context the work is
/// related to but not a child of (an MCP request's transport context, beside its `_meta` parent).
pub fn start_linked(
    name: impl Into<Cow<'static, str>>,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
    parent: &Context,
    link: Option<SpanContext>,
) -> Option<Context> {
    let tracer = TRACER.get()?;
    let mut builder = tracer.span_builder(name).with_kind(kind).with_attributes(attributes);
    if let Some(sc) = link {
        builder = builder.with_links(vec![opentelemetry::trace::Link::with_context(sc)]);
    }
    let span = builder.start_with_context(tracer, parent);
    Some(parent.with_span(span))
}

/// Sets an attribute on the span of `cx`.
pub fn set(cx: &Context, key: &'static str, value: impl Into<Value>) {
    cx.span().set_attribute(KeyValue::new(key, value));
}

/// Sets several attributes on the span of `cx` at once (one lock of the span, where one
/// [`set`] each would take it each time).
pub fn set_all(cx: &Context, attributes: impl IntoIterator<Item = KeyValue>) {
    cx.span().set_attributes(attributes);
}

/// Writes `bytes` into `out` as lowercase hex, two digits a byte (as many bytes as `out` has
/// room for). For ids on hot paths: `Display` and `{:x}` go through the formatting machinery.
pub fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (b, o) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        o[0] = DIGITS[usize::from(b >> 4)];
        o[1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// The trace id of `cx`'s span as 32 lowercase hex digits, written directly (the id's `Display`
/// goes through the formatting machinery: ~700 instructions a turn, callgrind).
pub fn trace_id_hex(cx: &Context) -> String {
    let mut digits = [0u8; 32];
    hex_into(&cx.span().span_context().trace_id().to_bytes(), &mut digits);
    digits.iter().map(|&d| char::from(d)).collect()
}

/// Ends the span of `cx`.
pub fn end(cx: &Context) {
    cx.span().end();
}

/// An attribute value sharing `s` (no copy).
pub fn shared(s: &Arc<str>) -> Value {
    Value::String(Arc::clone(s).into())
}

/// The current span's context, when spans are made and a valid one is current.
fn current() -> Option<SpanContext> {
    if !on() {
        return None;
    }
    Context::map_current(|cx| Some(cx.span().span_context().clone())).filter(SpanContext::is_valid)
}

/// The current span's `traceparent` (`00-{trace id}-{span id}-{flags}`), when spans are made
/// and one is current.
pub fn traceparent() -> Option<String> {
    current().map(|sc| format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
}

/// The current span's trace and span ids (hex), for log lines.
pub fn current_ids() -> Option<(String, String)> {
    current().map(|sc| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// A valid `traceparent`: version `00`, 32 and 16 lowercase hex digits (not all zero), 2 of
/// flags. Used by tests and by whoever checks one from outside.
pub fn is_traceparent(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
}

/// The caller's context from a received `traceparent` (and `tracestate`), as the parent of the
/// receiver's span (a remote parent); `None` for a `traceparent` that is not valid (W3C: the
/// receiver then starts a new trace). Used where no HTTP propagator applies: an MCP request's
/// `params._meta`, which is where OpenTelemetry's MCP conventions carry the context.
pub fn remote_parent(traceparent: &str, tracestate: Option<&str>) -> Option<Context> {
    remote_span_context(traceparent, tracestate).map(|sc| Context::new().with_remote_span_context(sc))
}

/// The span context a received `traceparent` (and `tracestate`) names; `None` when it is not valid.
pub fn remote_span_context(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};
    if !is_traceparent(traceparent) {
        return None;
    }
    let mut parts = traceparent.split('-').skip(1);
    let trace_id = TraceId::from_hex(parts.next()?).ok()?;
    let span_id = SpanId::from_hex(parts.next()?).ok()?;
    let flags = u8::from_str_radix(parts.next()?, 16).ok()?;
    let state = tracestate
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    Some(SpanContext::new(trace_id, span_id, TraceFlags::new(flags), true, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct hex writer says what the id's `Display` says (leading zeros kept).
    #[test]
    fn trace_id_hex_matches_the_ids_display() {
        for traceparent in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-000000000000000000000000000000a1-00f067aa0ba902b7-01",
            "00-f0e1d2c3b4a5968778695a4b3c2d1e0f-00f067aa0ba902b7-00",
        ] {
            let cx = remote_parent(traceparent, None).unwrap();
            let id = cx.span().span_context().trace_id();
            assert_eq!(trace_id_hex(&cx), id.to_string());
            assert_eq!(trace_id_hex(&cx), traceparent[3..35]);
        }
    }

    #[test]
    fn a_received_traceparent_becomes_a_remote_parent() {
        let cx = remote_parent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("rojo=00f067aa0ba902b7"),
        )
        .unwrap();
        let span = cx.span();
        let sc = span.span_context();
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_state().get("rojo"), Some("00f067aa0ba902b7"));
        // Not sampled by the caller, a bad tracestate ignored.
        let cx = remote_parent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", Some("==")).unwrap();
        assert!(!cx.span().span_context().is_sampled());
        for bad in ["", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "garbage"] {
            assert!(remote_parent(bad, None).is_none(), "{bad}");
        }
    }

    #[test]
    fn traceparents_are_checked() {
        assert!(is_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!is_traceparent(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!is_traceparent(
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"
        ));
        assert!(!is_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"));
    }

    #[test]
    fn nothing_is_made_or_sent_while_off() {
        assert!(!on());
        assert!(start("x", SpanKind::Internal, Vec::new()).is_none());
        assert_eq!(traceparent(), None);
    }
}
