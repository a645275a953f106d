//! The span of each `tools/call` that `aether mcp-serve` answers, following OpenTelemetry's MCP
//! conventions: `tools/call {tool}`, kind server, with `mcp.method.name`, `gen_ai.tool.name`,
//! `gen_ai.operation.name = execute_tool`, `jsonrpc.request.id` and `network.transport`.
//!
//! **It continues the caller's trace.** The conventions carry the context in the request's
//! `params._meta` (`traceparent`, `tracestate`): that is the parent. A request without a valid one
//! falls back to the HTTP request's own `traceparent` header, so a caller that only sets the header
//! (a gateway, a plain HTTP client) is joined too. Aether's MCP client sends both, so a turn's
//! `execute_tool` span is the parent of the server's span, across processes. When the header
//! names another span than `_meta` (a proxy or gateway that traces the HTTP hop itself), the
//! server span links to it: the conventions' "use `_meta` as the parent and link the transport
//! context", so the hop's trace leads to the call too.
//!
//! Made only when spans are on (`mcp-serve` with an OTLP endpoint); otherwise a call pays one
//! atomic load.

use aether_contracts::trace::{self as otel, TRACEPARENT};
use aether_tools::RegisteredTool;
use opentelemetry::trace::{SpanContext, SpanKind, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};
use rmcp::model::{MetaObject, RequestId};
use serde_json::Value;

const TRACESTATE: &str = "tracestate";

/// The span of a call to `tool`, request `id` with `meta` (its `_meta`), received over HTTP
/// with `headers` or over stdio (`None`); `None` when spans are off.
pub(crate) fn start(
    tool: &RegisteredTool,
    meta: &MetaObject,
    id: &RequestId,
    headers: Option<&http::HeaderMap>,
) -> Option<Context> {
    if !otel::on() {
        return None;
    }
    let header = |name: &str| headers.and_then(|h| h.get(name)).and_then(|v| v.to_str().ok());
    let from_meta = meta
        .get(TRACEPARENT)
        .and_then(Value::as_str)
        .and_then(|tp| otel::remote_span_context(tp, meta.get(TRACESTATE).and_then(Value::as_str)));
    let from_header = header(TRACEPARENT).and_then(|tp| otel::remote_span_context(tp, header(TRACESTATE)));
    let same = |a: &SpanContext, b: &SpanContext| (a.trace_id(), a.span_id()) == (b.trace_id(), b.span_id());
    let (parent, link) = match (from_meta, from_header) {
        (Some(m), Some(h)) if !same(&m, &h) => (Some(m), Some(h)),
        (Some(m), _) => (Some(m), None),
        (None, h) => (h, None),
    };
    // No (valid) context from the caller: a new trace (W3C), never the ambient one.
    let parent = parent.map_or_else(Context::new, |sc| Context::new().with_remote_span_context(sc));
    otel::start_linked(
        format!("tools/call {}", tool.full_name),
        SpanKind::Server,
        vec![
            KeyValue::new("mcp.method.name", "tools/call"),
            KeyValue::new("gen_ai.operation.name", "execute_tool"),
            KeyValue::new("gen_ai.tool.name", otel::shared(&tool.full_name)),
            KeyValue::new("jsonrpc.request.id", id.to_string()),
            KeyValue::new("network.transport", if headers.is_some() { "tcp" } else { "pipe" }),
        ],
        &parent,
        link,
    )
}

/// Ends the span of a call: `error.type` is `tool_error` for an `isError` result and the
/// JSON-RPC code for an error answer, as the conventions say.
pub(crate) fn end(cx: Option<Context>, error: Option<&'static str>) {
    if let Some(cx) = cx {
        if let Some(e) = error {
            otel::set(&cx, "error.type", e);
        }
        otel::end(&cx);
    }
}
