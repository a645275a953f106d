//! The HTTP side shared by the real model providers: one endpoint with its client (connection
//! reuse: [`http_pool`] for a plain-HTTP endpoint when no HTTP proxy is configured (`http_proxy`,
//! `all_proxy` and their capitals), reqwest for https and through a proxy), timeouts, retries with
//! exponential backoff and jitter honouring `Retry-After`, and a circuit breaker (after
//! `breaker_threshold` failed calls in a row it fails fast for `breaker_cooldown`, then lets one
//! call try: [`breaker`]). A streamed answer is read event by event with [`SseReader`] ([`sse`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::StatusCode;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::time::Instant;

use super::ModelError;
use crate::http_pool::{self, HttpPool};

mod breaker;
mod sse;

use breaker::Breaker;
pub(crate) use sse::{bad_event, event_text, SseReader};

/// How the API key travels.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Auth {
    /// `Authorization: Bearer KEY` (OpenAI-compatible).
    Bearer,
    /// A named header (`x-goog-api-key` for Gemini).
    Header(&'static str),
}

/// Settings of one HTTP model endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Provider name in results (`openai`, `vllm`, ...).
    pub name: String,
    /// Base URL up to `/v1`, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    pub api_key: Option<String>,
    pub connect_timeout: Duration,
    /// Longest wait for the response headers, and for the next piece of a stream.
    pub first_byte_timeout: Duration,
    pub total_timeout: Duration,
    pub max_retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    /// USD per 1,000 prompt and completion tokens, for cost (0 when unknown).
    pub prompt_price_per_1k: f64,
    pub completion_price_per_1k: f64,
}

impl EndpointConfig {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            name: "openai".into(),
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            api_key: None,
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(60),
            total_timeout: Duration::from_secs(300),
            max_retries: 3,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            prompt_price_per_1k: 0.0,
            completion_price_per_1k: 0.0,
        }
    }
}

/// One endpoint: client, policy and breaker.
pub(crate) struct Endpoint {
    client: reqwest::Client,
    /// A plain-HTTP endpoint not reached through a proxy: the lean client (`http_pool`), which
    /// saves reqwest's per-request work (two URL parses, redirect policy, pool keyed by host).
    pool: Option<HttpPool>,
    /// The key's header, built once (marked sensitive); the pool holds its own copy.
    auth: Option<(HeaderName, HeaderValue)>,
    pub(crate) cfg: EndpointConfig,
    breaker: Breaker,
    calls: AtomicU64,
}

/// A successful answer whose head has arrived, from either client; its body is read as it
/// comes ([`SseReader`]) or whole ([`Answer::json`]).
pub(crate) enum Answer {
    Pooled(http_pool::Answer),
    General(reqwest::Response),
}

impl Answer {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Pooled(a) => a.status,
            Self::General(r) => r.status(),
        }
    }

    pub(crate) fn headers(&self) -> &HeaderMap {
        match self {
            Self::Pooled(a) => &a.headers,
            Self::General(r) => r.headers(),
        }
    }

    /// The body's next piece, or `None` at its end; an error says why the body broke off.
    async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, String> {
        match self {
            Self::Pooled(a) => a.chunk().await.map_err(|e| error_chain(&e)),
            Self::General(r) => r.chunk().await.map_err(|e| error_chain(&e)),
        }
    }

    /// Done with the body (read up to its last event): the rest is read so that the connection
    /// can be reused at once (bounded: `http_pool::Answer::finish`).
    async fn finish(self) {
        match self {
            Self::Pooled(a) => a.finish().await,
            // hyper's pool takes the connection back once the body's end has been read.
            Self::General(r) => drop(r),
        }
    }

    async fn bytes(self) -> Result<bytes::Bytes, String> {
        match self {
            Self::Pooled(a) => a.bytes().await.map_err(|e| error_chain(&e)),
            Self::General(r) => r.bytes().await.map_err(|e| error_chain(&e)),
        }
    }

    /// The whole body as JSON, read within `limit`; errors name `base_url`.
    pub(crate) async fn json(self, limit: Duration, base_url: &str) -> Result<Value, ModelError> {
        let body = tokio::time::timeout(limit, self.bytes())
            .await
            .map_err(|_| ModelError::Timeout(limit))?
            .map_err(|e| ModelError::Other(format!("unreadable answer from {base_url}: {e}")))?;
        serde_json::from_slice(&body).map_err(|e| ModelError::Other(format!("unreadable answer from {base_url}: {e}")))
    }
}

/// A failed attempt and whether another may follow.
struct Attempt {
    error: ModelError,
    retryable: bool,
    retry_after: Option<Duration>,
}

/// Whether calls to a plain-HTTP endpoint may go through an HTTP proxy (reqwest honours the
/// standard variables and `NO_PROXY`; the lean client does not speak to proxies).
fn proxy_configured() -> bool {
    ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
}

impl Endpoint {
    /// Runs one provider call under the total timeout and tells the breaker how it went; while
    /// the breaker is open the call is refused at once, and a refusal is not an outcome (counted
    /// as one, a steady stream of refused calls would keep the breaker open for ever).
    pub(crate) async fn guarded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, ModelError>>,
    ) -> Result<T, ModelError> {
        self.check_breaker()?;
        let limit = self.cfg.total_timeout;
        let r = tokio::time::timeout(limit, call)
            .await
            .unwrap_or(Err(ModelError::Timeout(limit)));
        self.record(r.is_ok());
        r
    }

    /// An endpoint whose key (if any) travels as `auth` says.
    pub(crate) fn new(cfg: EndpointConfig, auth: Auth) -> Result<Self, ModelError> {
        let client = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .pool_idle_timeout(http_pool::IDLE_TIMEOUT)
            .build()
            .map_err(|e| ModelError::Other(format!("cannot build the HTTP client: {e}")))?;
        let auth = cfg
            .api_key
            .as_deref()
            .map(|key| match auth {
                Auth::Bearer => http_pool::bearer(key),
                Auth::Header(name) => http_pool::key_header(HeaderName::from_static(name), key),
            })
            .transpose()
            .map_err(|e| ModelError::Other(format!("{} ({})", e, cfg.base_url)))?;
        let pool = if proxy_configured() {
            None
        } else {
            HttpPool::for_base(&cfg.base_url, auth.clone())
                .map_err(|e| ModelError::Other(format!("base_url `{}`: {e}", cfg.base_url)))?
                .map(|p| p.with_connect_timeout(cfg.connect_timeout))
        };
        Ok(Self {
            client,
            pool,
            auth,
            breaker: Breaker::new(cfg.breaker_threshold, cfg.breaker_cooldown),
            calls: AtomicU64::new(0),
            cfg,
        })
    }

    fn check_breaker(&self) -> Result<(), ModelError> {
        self.breaker.check_at(self.breaker.now_ms()).map_err(|left| {
            crate::resilience::refused_while_open();
            ModelError::Other(format!(
                "circuit open for {}: {} failed calls in a row; next try in {left} ms",
                self.cfg.base_url,
                self.breaker.failures_in_a_row(),
            ))
        })
    }

    pub(crate) fn record(&self, ok: bool) {
        if let Some(n) = self.breaker.record_at(ok, self.breaker.now_ms()) {
            tracing::warn!(endpoint = %self.cfg.base_url, failures = n, "circuit opened");
        }
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>, rng: &mut rand::rngs::SmallRng) -> Duration {
        if let Some(d) = retry_after {
            return d.min(self.cfg.backoff_max);
        }
        let base = self
            .cfg
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cfg.backoff_max);
        base.mul_f64(rng.random_range(0.5..1.5))
    }

    /// One attempt: POSTs the JSON `body` to `url` with the key and the current trace's
    /// `traceparent` (the `chat` span is current, so the trace continues at the model server).
    async fn send(&self, url: &RequestUrl, body: &bytes::Bytes) -> Result<Answer, Attempt> {
        let traceparent = aether_contracts::trace::traceparent().and_then(|tp| HeaderValue::try_from(tp).ok());
        let failed = |what: &str, detail: String| Attempt {
            error: ModelError::Other(format!("{what} {url}: {detail}")),
            retryable: true,
            retry_after: None,
        };
        let timed_out = || Attempt {
            error: ModelError::Timeout(self.cfg.first_byte_timeout),
            retryable: true,
            retry_after: None,
        };
        let response = match &self.pool {
            Some(pool) => {
                let uri = url.target.clone().ok_or_else(|| Attempt {
                    retryable: false,
                    ..failed("not a request path:", url.url.path().to_owned())
                })?;
                // The pool sends the key itself: the trace is the one header of this request.
                let traceparent =
                    traceparent.map(|tp| (HeaderName::from_static(aether_contracts::trace::TRACEPARENT), tp));
                let sent = pool.send(uri, "application/json", body.clone(), traceparent.as_slice());
                match tokio::time::timeout(self.cfg.first_byte_timeout, sent).await {
                    Err(_) => return Err(timed_out()),
                    Ok(Err(e)) if e.is_connect() => {
                        // The pool's own "cannot connect to ADDR" would repeat the URL's address.
                        let cause = match &e {
                            http_pool::PoolError::Connect { source, .. } => error_chain(source),
                            _ => error_chain(&e),
                        };
                        return Err(failed("cannot connect to", cause));
                    }
                    Ok(Err(e)) => return Err(failed("request failed at", error_chain(&e))),
                    Ok(Ok(a)) => Answer::Pooled(a),
                }
            }
            None => {
                let mut rb = self
                    .client
                    .post(url.url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
                if let Some(tp) = traceparent {
                    rb = rb.header(aether_contracts::trace::TRACEPARENT, tp);
                }
                if let Some((name, value)) = &self.auth {
                    rb = rb.header(name, value.clone());
                }
                match tokio::time::timeout(self.cfg.first_byte_timeout, rb.send()).await {
                    Err(_) => return Err(timed_out()),
                    Ok(Err(e)) if e.is_connect() => return Err(failed("cannot connect to", error_chain(&e))),
                    Ok(Err(e)) => return Err(failed("request failed at", error_chain(&e))),
                    Ok(Ok(r)) => Answer::General(r),
                }
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(Duration::from_secs_f64);
        let text = response
            .bytes()
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or(text);
        let error = match status.as_u16() {
            429 => ModelError::RateLimited {
                retry_after_ms: retry_after.map(|d| d.as_millis() as u64),
            },
            code => ModelError::Server { status: code, message },
        };
        Err(Attempt {
            error,
            retryable: status.as_u16() == 429 || status.is_server_error(),
            retry_after,
        })
    }

    /// POSTs `body` to `url` with retries (inside [`guarded`](Self::guarded), which refuses it
    /// while the breaker is open).
    pub(crate) async fn send_with_retries(&self, url: &RequestUrl, body: &Value) -> Result<Answer, ModelError> {
        crate::resilience::call();
        // Encoded once: a retry sends the same bytes.
        let body = bytes::Bytes::from(
            serde_json::to_vec(body).map_err(|e| ModelError::Other(format!("cannot encode the request: {e}")))?,
        );
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(super::sim::splitmix64(call));
        let started = Instant::now();
        for attempt in 0.. {
            let outcome = match self.send(url, &body).await {
                Ok(r) => Ok(r),
                Err(a) if a.retryable && attempt < self.cfg.max_retries => {
                    let wait = self.backoff(attempt, a.retry_after, &mut rng);
                    tracing::debug!(attempt, error = %a.error, "model call failed; retrying in {wait:?}");
                    crate::resilience::retry(wait);
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(a) => Err(a.error),
            };
            if attempt > 0 {
                crate::resilience::retried_call(started.elapsed());
            }
            return outcome;
        }
        unreachable!("the loop returns")
    }
}

/// `Err` naming what is wrong when `base_url` (an [`EndpointConfig::base_url`]) is not a URL the
/// HTTP providers can call; for checking user input before a provider is made.
pub fn check_base_url(base_url: &str) -> Result<(), String> {
    reqwest::Url::parse(base_url).map(drop).map_err(|e| e.to_string())
}

/// `url` parsed, or an error naming the endpoint's `base_url` (a typo there is a configuration
/// error, not a failed call to retry).
pub(crate) fn parse_url(url: &str, base_url: &str) -> Result<RequestUrl, ModelError> {
    let url = reqwest::Url::parse(url)
        .map_err(|e| ModelError::Other(format!("base_url `{base_url}` is not a valid URL: {e}")))?;
    let target = match url.query() {
        None => hyper::Uri::try_from(url.path()),
        Some(q) => hyper::Uri::try_from(format!("{}?{q}", url.path())),
    }
    .ok();
    Ok(RequestUrl { url, target })
}

/// A request's URL, and its path and query as the lean client's request target: both parsed
/// where the URL is made (once per provider for a fixed URL), not per request. `target` is
/// `None` when hyper does not take the path (the pool then refuses the call, see `send`).
pub(crate) struct RequestUrl {
    pub(crate) url: reqwest::Url,
    target: Option<hyper::Uri>,
}

impl std::fmt::Display for RequestUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.url.fmt(f)
    }
}

/// `aether sim-llm` marks its answers; results then say the numbers are simulated.
pub(crate) fn is_simulated(r: &Answer) -> bool {
    r.headers()
        .get("x-aether-simulated")
        .is_some_and(|v| v.as_bytes() == b"true")
}

pub(crate) fn served_by(model: &str, simulated: bool) -> std::sync::Arc<str> {
    if simulated {
        format!("{model} {}", aether_contracts::SIMULATED_PROFILE_MARK).into()
    } else {
        model.into()
    }
}

pub(crate) use aether_contracts::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_its_bounds_and_honours_retry_after() {
        use rand::SeedableRng;
        let mut cfg = EndpointConfig::new("http://127.0.0.1:1/v1");
        cfg.backoff_base = Duration::from_millis(100);
        cfg.backoff_max = Duration::from_millis(1000);
        let e = Endpoint::new(cfg, Auth::Bearer).unwrap();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        for attempt in 0..8u32 {
            let nominal = Duration::from_millis(100 * (1u64 << attempt)).min(Duration::from_millis(1000));
            let d = e.backoff(attempt, None, &mut rng);
            assert!(
                d >= nominal.mul_f64(0.5) && d <= nominal.mul_f64(1.5),
                "attempt {attempt}: {d:?}"
            );
        }
        let told = e.backoff(0, Some(Duration::from_millis(250)), &mut rng);
        assert_eq!(told, Duration::from_millis(250));
        let capped = e.backoff(0, Some(Duration::from_secs(60)), &mut rng);
        assert_eq!(
            capped,
            Duration::from_millis(1000),
            "Retry-After is capped by backoff_max"
        );
    }
}
