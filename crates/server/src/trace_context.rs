//! The HTTP server span of each API request (`{method} {route}`, kind server), continuing the
//! caller's trace when the request carries a W3C `traceparent` (and `tracestate`). The turn's
//! GenAI spans (`invoke_agent`, `chat`, `execute_tool`) are its children, so a client's trace
//! runs through the server.
//!
//! Like the runtime's spans these are `tracing` spans at DEBUG, on target [`TARGET`], made only
//! when a subscriber asks for them (`aether serve` with an OTLP endpoint): otherwise a request
//! pays one cached check.

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The target of the HTTP server spans (the CLI's exporter listens to it).
pub const TARGET: &str = "aether::http";

/// Whether a subscriber records the HTTP server spans.
#[inline]
pub fn on() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::DEBUG)
}

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
/// a valid `traceparent` (an invalid one starts a new trace, as the W3C spec says).
pub fn server_span(method: &str, route: &str, headers: &HeaderMap) -> Span {
    let span = tracing::debug_span!(
        target: TARGET,
        "http",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        http.response.status_code = Empty,
    );
    if headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&Headers(headers));
        // Fails only when no OpenTelemetry layer is installed; the span then has no parent.
        let _ = span.set_parent(parent);
    }
    span
}
