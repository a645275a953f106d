//! The operators' routes (an `[admin]` key): `/v1/admin/stats`, what the whole server is doing, all
//! tenants together (`aether perf --target URL --admin-key KEY` reads it at each interval to put
//! the server's side beside the client's), and `/debug/pprof/profile`, a CPU profile of the
//! server.

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

/// `?seconds=N&format=pprof|flamegraph` of [`profile`].
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileQuery {
    pub seconds: Option<u64>,
    pub format: Option<String>,
}

/// `GET /debug/pprof/profile?seconds=N`: a CPU profile of the server over the next N seconds
/// (default 30, at most [`crate::profiling::MAX_SECONDS`]), as pprof protobuf or, with
/// `format=flamegraph`, an SVG flame graph. One at a time: another request meanwhile gets 409.
pub async fn profile(
    query: Result<axum::extract::Query<ProfileQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, crate::error::ApiError> {
    let q = crate::error::parse_query(query)?;
    use crate::error::ApiError;
    use crate::profiling::{ProfileError, Profiling, MAX_SECONDS};
    let seconds = q.seconds.unwrap_or(30);
    if !(1..=MAX_SECONDS).contains(&seconds) {
        return Err(ApiError::bad_request(
            format!("seconds must be between 1 and {MAX_SECONDS}"),
            Some("seconds".into()),
        ));
    }
    let flamegraph = match q.format.as_deref().unwrap_or("pprof") {
        "pprof" => false,
        "flamegraph" => true,
        other => {
            return Err(ApiError::bad_request(
                format!("format `{other}`: expected pprof or flamegraph"),
                Some("format".into()),
            ))
        }
    };
    let p = match Profiling::start() {
        Ok(p) => p,
        Err(ProfileError::Busy) => {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "profile.busy",
                "a CPU profile is already running on this server; try again when it ends",
            ))
        }
        Err(e) => return Err(ApiError::internal(e.to_string())),
    };
    // The profile's window: the server keeps serving meanwhile.
    tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
    let title = format!("aether serve: {seconds} s of CPU");
    let profile = tokio::task::spawn_blocking(move || p.finish(&title))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let response = if flamegraph {
        ([(header::CONTENT_TYPE, "image/svg+xml")], profile.flamegraph_svg).into_response()
    } else {
        (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"aether-serve.pb\""),
            ],
            profile.pprof,
        )
            .into_response()
    };
    Ok(response)
}
