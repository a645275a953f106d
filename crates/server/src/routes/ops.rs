//! `/healthz`, `/readyz`, `/metrics` (Prometheus) and `/openapi.json`. No API key needed; none of
//! them shows a tenant's data.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::state::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the store answers a read.
pub async fn readyz(State(s): State<AppState>) -> Response {
    let store = s.rt.store();
    match store.get_session("aether:readyz-probe").await {
        Ok(_) => Json(json!({"status": "ready", "store": store.info()})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "store_error": e.to_string()})),
        )
            .into_response(),
    }
}

pub async fn metrics(State(s): State<AppState>) -> Response {
    // /proc reads are file I/O: off the async threads.
    let process = s.clone();
    let heap = tokio::task::spawn_blocking(move || {
        process.metrics.collect_process();
        aether_runtime::stats::heap_allocated_bytes()
    })
    .await
    .ok()
    .flatten();
    let m = &s.metrics;
    if let Some(bytes) = heap {
        // The allocators' allocated bytes (jemalloc's and glibc's: `heap_allocated_bytes`), beside process_resident_memory_bytes.
        m.gauge("process_heap_allocated_bytes", bytes as f64);
    }
    let stats = s.rt.stats();
    m.gauge("aether_active_sessions", stats.active_sessions as f64);
    m.gauge("aether_active_agents", stats.active_agents as f64);
    m.gauge("aether_active_runners", stats.active_runners as f64);
    m.gauge("aether_admission_queue_depth", s.admission.queued() as f64);
    m.gauge("aether_turns_in_flight", s.admission.in_flight() as f64);
    m.gauge("aether_live_turns", s.live.len() as f64);
    m.counter_total(
        "aether_rate_limit_fail_open_total".into(),
        crate::limits::fail_open_total(),
    );
    // The lean HTTP client's connections (plain-HTTP model endpoints): idle now, and opened.
    m.gauge(
        "aether_model_http_idle_connections",
        aether_runtime::model::http_pool::idle_connections() as f64,
    );
    m.counter_total(
        "aether_model_http_connections_opened_total".into(),
        aether_runtime::model::http_pool::connections_opened(),
    );
    // The HTTP model providers' retries and circuit breaker (zero with the simulated model).
    let r = aether_runtime::model::resilience::snapshot();
    for (name, v) in [
        ("aether_model_calls_total", r.calls),
        ("aether_model_retries_total", r.retries),
        ("aether_model_retry_wait_microseconds_total", r.retry_wait_us),
        ("aether_model_breaker_opened_total", r.breaker_opened),
        ("aether_model_breaker_closed_total", r.breaker_closed),
        ("aether_model_breaker_refused_total", r.refused_while_open),
    ] {
        m.counter_total(name.into(), v);
    }
    if let Ok(Value::Object(fields)) = serde_json::to_value(&stats) {
        for (name, v) in fields {
            if name.starts_with("active_") {
                continue;
            }
            if let Some(v) = v.as_u64() {
                m.counter_total(format!("aether_runtime_{name}_total"), v);
            }
        }
    }
    for c in &s.mcp {
        let st = c.stats();
        let server = ("server", c.name());
        m.labeled_total("aether_mcp_calls_total", server, st.calls);
        m.labeled_total("aether_mcp_calls_failed_total", server, st.failed);
        m.labeled_total("aether_mcp_calls_cancelled_total", server, st.cancelled);
        m.labeled_total("aether_mcp_sessions_opened_total", server, st.sessions_opened);
        m.labeled_total("aether_mcp_restarts_total", server, st.restarts);
        m.labeled_total("aether_mcp_connections_opened_total", server, st.connections_opened);
        m.labeled_total("aether_mcp_rediscovered_total", server, st.rediscovered);
    }
    // The OTLP span export, when on (process-wide): what it delivered and what it dropped.
    if let Some(e) = aether_runtime::telemetry::SPAN_EXPORT.read() {
        m.labeled_total(
            "aether_otel_spans_dropped_total",
            ("reason", "queue_full"),
            e.dropped_queue_full,
        );
        m.labeled_total(
            "aether_otel_spans_dropped_total",
            ("reason", "export_failed"),
            e.dropped_export_failed,
        );
        m.counter_total("aether_otel_spans_exported_total".into(), e.exported);
        m.gauge("aether_otel_queue_capacity", e.queue_capacity as f64);
        m.gauge("aether_otel_queue_high_water", e.queue_high_water as f64);
    }
    let mut text = m.render();
    if let Some(t) = &s.store_timings {
        text.push_str(&t.render());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The API's routes, with the JSON Schemas of the contract types (derived from the types
/// themselves) and examples serialised from them.
pub async fn openapi() -> Json<Value> {
    Json(document())
}

pub use super::openapi::document;
