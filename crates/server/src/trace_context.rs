//! The HTTP server span of each API request (`{method} {route}`, kind server), continuing the
//! caller's trace when the request carries a W3C `traceparent` (and `tracestate`). The turn's
//! GenAI spans (`invoke_agent`, `chat`, `execute_tool`) are its children, so a client's trace
//! runs through the server.
//!
//! Like the runtime's spans these are OpenTelemetry spans made only when spans are on
//! (`aether_contracts::trace`: `aether serve` with an OTLP endpoint); otherwise a request pays
//! one atomic load.

use aether_contracts::trace as otel;
use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::SpanKind;
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// Reads the propagation headers out of a request's headers.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The server span of a request to `route`, a child of the caller's span when `headers` carry
/// a valid `traceparent` (an invalid one starts a new trace, as the W3C spec says); `None` when
/// spans are off.
pub fn server_span(method: &str, route: &str, headers: &HeaderMap) -> Option<Context> {
    let parent = match headers.contains_key("traceparent") {
        true => TraceContextPropagator::new().extract(&Headers(headers)),
        false => Context::new(),
    };
    otel::start_with_parent(
        format!("{method} {route}"),
        SpanKind::Server,
        vec![
            KeyValue::new("http.request.method", method.to_owned()),
            KeyValue::new("http.route", route.to_owned()),
        ],
        &parent,
    )
}
