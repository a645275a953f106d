//! `/v1/admin/*`: what an operator (an `[admin]` key) reads about the whole server, all tenants
//! together. `aether perf --target URL --admin-key KEY` reads [`stats`] at each interval to put
//! the server's side beside the client's.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::state::AppState;

/// Middleware: an admin key, or 401/403.
pub async fn authenticate(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match s.tenants.admin(req.headers().get(header::AUTHORIZATION)) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/admin/stats`: the runtime's counters and gauges, admission and live turns (in all
/// and by tenant), and the process's memory and CPU time.
///
/// ```json
/// {"runtime": {"turns": 120, "turns_failed": 0, ..., "active_sessions": 8},
///  "admission": {"in_flight": 3, "queued": 0},
///  "live_turns": {"total": 1, "by_tenant": {"acme": 1}},
///  "tenants": ["acme", "beta"],
///  "process": {"rss_bytes": 41234432, "cpu_seconds": 1.93, "threads": 9}}
/// ```
pub async fn stats(State(s): State<AppState>) -> Json<Value> {
    // /proc reads are file I/O: off the async threads.
    let process = tokio::task::spawn_blocking(metrics_process::collector::collect)
        .await
        .ok();
    let mut by_tenant = serde_json::Map::new();
    for entry in s.live.iter() {
        let tenant = entry.key().split_once(':').map_or("", |(t, _)| t);
        let n = by_tenant.entry(tenant.to_owned()).or_insert(json!(0));
        *n = json!(n.as_u64().unwrap_or(0) + 1);
    }
    Json(json!({
        "runtime": s.rt.stats(),
        "admission": {"in_flight": s.admission.in_flight(), "queued": s.admission.queued()},
        "live_turns": {"total": s.live.len(), "by_tenant": by_tenant},
        "tenants": s.tenants.names().iter().map(|n| &**n).collect::<Vec<_>>(),
        "process": {
            "rss_bytes": process.as_ref().and_then(|p| p.resident_memory_bytes),
            "cpu_seconds": process.as_ref().and_then(|p| p.cpu_seconds_total),
            "threads": process.as_ref().and_then(|p| p.threads),
        },
    }))
}
