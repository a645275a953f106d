//! Admission and faults: the concurrency-dependent slowdown and the seeded or scripted faults
//! (429 with `Retry-After`, 500, 503, a slow first byte, a connection dropped mid-stream) that a
//! request meets before the model answers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::{bad, error, simulated, Shared};

/// A failure the server can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 429 with `Retry-After`.
    RateLimit,
    /// HTTP 500.
    ServerError,
    /// HTTP 503.
    Unavailable,
    /// The answer starts only after `slow_first_byte`.
    SlowFirstByte,
    /// A streamed answer stops after a few pieces without `[DONE]` (a plain one, before its body).
    DropMidStream,
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "429" | "rate_limit" => Ok(Self::RateLimit),
            "500" | "server_error" => Ok(Self::ServerError),
            "503" | "unavailable" => Ok(Self::Unavailable),
            "slow" | "slow_first_byte" => Ok(Self::SlowFirstByte),
            "drop" | "drop_mid_stream" => Ok(Self::DropMidStream),
            other => Err(format!("unknown fault `{other}`: expected 429, 500, 503, slow or drop")),
        }
    }
}

pub(crate) fn pick_fault(s: &Shared, n: u64) -> Option<Fault> {
    if let Some(f) = s.script.lock().ok().and_then(|mut q| q.pop_front()) {
        return f;
    }
    if s.cfg.fault_rate <= 0.0 || s.cfg.faults.is_empty() {
        return None;
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(s.cfg.sim.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (rng.random::<f64>() < s.cfg.fault_rate).then(|| s.cfg.faults[rng.random_range(0..s.cfg.faults.len())])
}

pub(crate) fn scaled(s: &Shared, d: Duration) -> Duration {
    let f = s.cfg.sim.time_scale;
    if f > 0.0 && f.is_finite() {
        d.mul_f64(f)
    } else {
        Duration::ZERO
    }
}

/// Counts a request as in flight for as long as it lives (moved into a streaming task).
pub(crate) struct InFlight(Arc<Shared>);

impl InFlight {
    /// Enters, returning how many were in flight before.
    fn enter(s: &Arc<Shared>) -> (Self, usize) {
        let before = s.inflight.fetch_add(1, Ordering::AcqRel);
        (Self(Arc::clone(s)), before)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where a client puts its key.
#[derive(Clone, Copy)]
pub(crate) enum KeyHeader {
    Bearer,
    Goog,
}

/// What every request goes through first: the key, the JSON body, the in-flight count, the
/// injected fault (answered here when it is an error) and the slowdown under load.
pub(crate) async fn admit(
    s: &Arc<Shared>,
    headers: &axum::http::HeaderMap,
    body: &axum::body::Bytes,
    key_header: KeyHeader,
) -> Result<(u64, Value, InFlight, Option<Fault>), Response> {
    let n = s.served.fetch_add(1, Ordering::Relaxed);
    if let Some(key) = &s.cfg.api_key {
        let given = match key_header {
            KeyHeader::Bearer => headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer ")),
            KeyHeader::Goog => headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()),
        };
        if given != Some(key.as_str()) {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "invalid API key",
                "invalid_request_error",
            ));
        }
    }
    let body: Value = serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    let (guard, inflight) = InFlight::enter(s);
    let fault = pick_fault(s, n);
    match fault {
        Some(Fault::RateLimit) => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "simulated rate limit",
                "rate_limit_error",
            );
            let after = format!(
                "{:.3}",
                scaled(s, Duration::from_secs_f64(s.cfg.retry_after_s)).as_secs_f64()
            );
            if let Ok(v) = HeaderValue::from_str(&after) {
                r.headers_mut().insert("retry-after", v);
            }
            return Err(simulated(r));
        }
        Some(Fault::ServerError) => {
            return Err(simulated(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "simulated server error",
                "server_error",
            )))
        }
        Some(Fault::Unavailable) => {
            return Err(simulated(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "simulated overload",
                "server_error",
            )))
        }
        Some(Fault::SlowFirstByte) => tokio::time::sleep(scaled(s, s.cfg.slow_first_byte)).await,
        _ => {}
    }
    if inflight > 0 && !s.cfg.slowdown_per_inflight.is_zero() {
        tokio::time::sleep(scaled(s, s.cfg.slowdown_per_inflight * inflight as u32)).await;
    }
    Ok((n, body, guard, fault))
}
