//! The authentication middleware: an API key to its tenant (see [`crate::tenants`]), then the
//! tenant's rate limits.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::limits::RateDecision;
use crate::state::AppState;

/// Middleware: finds the tenant (401 without a valid key), applies its rate limit (429 with
/// Retry-After above the hard limit; `x-ratelimit-soft: exceeded` above the soft one).
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let tenant = match state.tenants.find(req.headers().get(header::AUTHORIZATION)) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let mut over_soft = false;
    if let Some(limiter) = &tenant.limiter {
        match limiter.check().await {
            RateDecision::Allow => {}
            RateDecision::AllowOverSoft => {
                over_soft = true;
                state.metrics.rate_limited("soft");
            }
            RateDecision::Deny { retry_after_s } => {
                state.metrics.rate_limited("hard");
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("tenant `{}` is over its request rate", tenant.name),
                );
                e.retry_after_s = Some(retry_after_s.ceil().max(1.0) as u64);
                return e.into_response();
            }
        }
    }
    req.extensions_mut().insert(tenant);
    let mut response = next.run(req).await;
    if over_soft {
        response
            .headers_mut()
            .insert("x-ratelimit-soft", HeaderValue::from_static("exceeded"));
    }
    response
}
