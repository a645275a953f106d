//! `aether sim-llm`: the simulated model over HTTP, speaking the OpenAI-compatible chat
//! completions format (plain and server-sent events, tool calls, usage, images as data URLs),
//! with the same profiles and time scale as in process, and seeded fault injection (429 with
//! `Retry-After`, 500, 503, a slow first byte, a connection dropped mid-stream) plus a
//! concurrency-dependent slowdown, like a real server under load. Every answer says it is
//! simulated (`x-aether-simulated: true`, and `system_fingerprint: "aether-sim-llm"`).
//!
//! Routes: `POST /v1/chat/completions` (OpenAI), `POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse` (Gemini), `GET /v1/models`, `GET /healthz`.
//!
//! By concern: this file holds the server and what every route shares; `faults` admits a request
//! and picks its fault; `openai` and `gemini` convert each wire format to the simulated model's
//! request (`request`) and its answer back; `sse` is the one streaming path both formats use.

mod faults;
mod gemini;
mod openai;
mod request;
mod sse;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_providers::{SimConfig, SimulatedModel};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde_json::{json, Value};

pub use faults::Fault;
use gemini::gemini;
use openai::chat;

/// Settings of the server.
#[derive(Debug, Clone)]
pub struct SimLlmConfig {
    pub sim: SimConfig,
    /// Share of requests (0..=1) that get one of `faults`, drawn with `sim.seed`.
    pub fault_rate: f64,
    pub faults: Vec<Fault>,
    /// Faults for the first requests, in order (`None`: serve normally), before random ones.
    pub fault_sequence: Vec<Option<Fault>>,
    /// `Retry-After` of a 429, in seconds (scaled by the time scale).
    pub retry_after_s: f64,
    pub slow_first_byte: Duration,
    /// Extra latency per request already in flight (scaled): a server slowing down under load.
    pub slowdown_per_inflight: Duration,
    /// When set, requests must carry `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
}

impl Default for SimLlmConfig {
    fn default() -> Self {
        Self {
            sim: SimConfig::default(),
            fault_rate: 0.0,
            faults: vec![
                Fault::RateLimit,
                Fault::ServerError,
                Fault::Unavailable,
                Fault::SlowFirstByte,
                Fault::DropMidStream,
            ],
            fault_sequence: Vec::new(),
            retry_after_s: 1.0,
            slow_first_byte: Duration::from_secs(2),
            slowdown_per_inflight: Duration::ZERO,
            api_key: None,
        }
    }
}

struct Shared {
    model: SimulatedModel,
    cfg: SimLlmConfig,
    script: Mutex<VecDeque<Option<Fault>>>,
    served: AtomicU64,
    inflight: AtomicUsize,
}

/// A handle to read what the server did.
#[derive(Clone)]
pub struct SimLlm {
    shared: Arc<Shared>,
}

impl SimLlm {
    pub fn new(cfg: SimLlmConfig) -> Self {
        let script = Mutex::new(cfg.fault_sequence.iter().copied().collect());
        Self {
            shared: Arc::new(Shared {
                model: SimulatedModel::new(cfg.sim.clone()),
                cfg,
                script,
                served: AtomicU64::new(0),
                inflight: AtomicUsize::new(0),
            }),
        }
    }

    /// Requests received so far (including refused ones).
    pub fn requests(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .route("/v1beta/models/{target}", post(gemini))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(Arc::clone(&self.shared))
    }

    /// Serves on `listener` until the future is dropped. Each connection has `TCP_NODELAY`: a
    /// streamed answer is many small writes, and without it Nagle's algorithm holds each one back
    /// until the client's delayed ACK (~40 ms), which made every stream take 44 ms at time scale 0.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        axum::serve(listener, self.router()).await
    }
}

fn error(status: StatusCode, message: impl Into<String>, kind: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message.into(), "type": kind}})),
    )
        .into_response()
}

fn simulated(mut r: Response) -> Response {
    r.headers_mut()
        .insert("x-aether-simulated", HeaderValue::from_static("true"));
    r
}

async fn models(State(s): State<Arc<Shared>>) -> Response {
    let data: Vec<Value> = s
        .cfg
        .sim
        .profiles
        .names()
        .into_iter()
        .map(|m| json!({"id": m, "object": "model", "owned_by": "aether-sim-llm"}))
        .collect();
    simulated(Json(json!({"object": "list", "data": data})).into_response())
}

fn bad(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, message, "invalid_request_error")
}
