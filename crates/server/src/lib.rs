//! `aether serve`: the HTTP API over the Aether Frame runtime.
//!
//! [`router`] builds the axum app over an [`AppState`]; [`serve`] runs it on a listener until a
//! shutdown signal, then drains in-flight requests up to the deadline and flushes the store.
//! Tenancy and keys live in [`auth`], limits and admission in [`limits`], metrics in [`metrics`].

pub mod auth;
pub mod cluster;
pub mod config;
pub mod control;
mod directory;
pub mod error;
mod gen_ai_metrics;
pub mod limits;
pub mod metrics;
pub mod profiling;
pub mod routes;
pub mod state;
pub mod store_timing;
pub mod tenants;
pub mod trace_context;
mod unread;

use std::future::{Future, IntoFuture};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub use config::{ConfigError, Limits, RateLimit, ServerConfig, TenantConfig};
pub use state::{AppState, Shared};

use routes::{admin, agents, live, ops, sessions, tasks};

/// The whole API.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/agents", post(agents::create).get(agents::list))
        .route("/v1/agents/{id}", get(agents::show).delete(agents::delete))
        .route("/v1/tasks", post(tasks::run))
        .route("/v1/tasks/stream", post(tasks::stream))
        .route("/v1/live/{task_id}/messages", post(live::message))
        .route("/v1/live/{task_id}/approvals/{interaction_id}", post(live::approve))
        .route("/v1/live/{task_id}/cancel", post(live::cancel))
        .route("/v1/live/{task_id}/pending", get(live::pending))
        .route("/v1/sessions", get(sessions::list))
        .route("/v1/sessions/{id}", get(sessions::show).delete(sessions::delete))
        .route("/v1/sessions/{id}/events", get(sessions::events))
        .route("/v1/sessions/{id}/archive", post(sessions::archive))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    let operators = Router::new()
        .route("/v1/admin/stats", get(admin::stats))
        .route("/debug/pprof/profile", get(admin::profile))
        .route_layer(middleware::from_fn_with_state(state.clone(), admin::authenticate));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .merge(api)
        .merge(operators)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// Request id (the client's `x-request-id` when sane, else a new one), a log line, metrics by
/// route template and status, and (when spans are exported) the HTTP server span.
async fn observe(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    // MatchedPath holds the template as an Arc: cloning it copies no text.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let request_id = match req.headers().get("x-request-id") {
        Some(v) if !v.is_empty() && v.len() <= 64 && v.as_bytes().iter().all(u8::is_ascii_graphic) => v.clone(),
        _ => {
            let id = format!("req-{:x}", REQUEST_IDS.fetch_add(1, Ordering::Relaxed));
            let v = HeaderValue::from_str(&id).expect("ASCII request id");
            req.headers_mut().insert("x-request-id", v.clone());
            v
        }
    };
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let (req, read) = unread::track(req);
    // Traced: boxed, so that the untraced request's future does not grow.
    let traced = match aether_contracts::trace::on() {
        true => trace_context::server_span(method.as_str(), route, req.headers()),
        false => None,
    };
    let mut response = match &traced {
        Some(cx) => {
            use opentelemetry::context::FutureExt as _;
            Box::pin(next.run(req).with_context(cx.clone())).await
        }
        None => next.run(req).await,
    };
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    s.metrics.request(route, method.as_str(), status, elapsed);
    let log = || {
        tracing::info!(
            request_id = request_id.to_str().unwrap_or(""),
            method = %method,
            route,
            status,
            elapsed_us = elapsed.as_micros() as u64,
            "request"
        )
    };
    // Inside the request's span when traced: its log line names the trace.
    match traced {
        Some(cx) => {
            aether_contracts::trace::set(&cx, "http.response.status_code", i64::from(status));
            {
                let _current = cx.clone().attach();
                log();
            }
            aether_contracts::trace::end(&cx);
        }
        None => log(),
    }
    response.headers_mut().insert("x-request-id", request_id);
    unread::close_if_unread(read, &mut response);
    response
}

/// Serves until `shutdown` resolves; then stops accepting, lets in-flight requests finish within
/// `limits.drain_timeout_s`, closes live turns, and flushes the store. Returns what was left
/// unfinished at the deadline (0 when the drain completed).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<usize> {
    let upkeep = {
        let s = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                s.metrics.upkeep();
            }
        })
    };
    if let Some(c) = &state.cluster {
        c.start(Arc::clone(&state.live), Arc::clone(&state.rt))
            .await
            .map_err(std::io::Error::other)?;
    }
    let stop = Arc::new(Notify::new());
    let app = router(state.clone());
    // Small JSON answers: send them at once rather than wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, app).with_graceful_shutdown({
        let stop = Arc::clone(&stop);
        async move { stop.notified().await }
    });
    let server = server.into_future();
    tokio::pin!(server);
    let mut left = 0;
    tokio::select! {
        r = &mut server => r?,
        () = shutdown => {
            tracing::info!("shutting down: no new connections; draining in-flight requests");
            stop.notify_one();
            // Live turns would hold their streams open: end them after their current turn.
            let live: Vec<_> = state.live.iter().map(|e| e.value().clone()).collect();
            for c in live {
                c.close().await;
            }
            match tokio::time::timeout(state.limits.drain_timeout(), &mut server).await {
                Ok(r) => r?,
                Err(_) => {
                    left = state.admission.in_flight() + state.live.len();
                    tracing::warn!(unfinished = left, "drain deadline passed; dropping what is left");
                }
            }
        }
    }
    upkeep.abort();
    if let Some(c) = &state.cluster {
        c.stop();
    }
    if let Err(e) = state.rt.shutdown().await {
        tracing::error!(error = %e, "flushing the store failed");
    }
    Ok(left)
}
