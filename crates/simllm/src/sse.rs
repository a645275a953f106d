//! One streaming path for both wire formats: the model's text as server-sent event frames through
//! a bounded channel, with the mid-stream faults.

use aether_providers::{DeltaSink, ModelError, ModelProvider};
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::json;
use tokio::sync::mpsc;

use crate::faults::Fault;
use crate::request::Converted;
use crate::{error, simulated, Shared};

/// Where a streaming handler sends its SSE frames (an `Err` cuts the connection).
pub(crate) type Frames = mpsc::Sender<Result<String, std::io::Error>>;

/// Sends each streamed piece of text as one frame; with `drop_after`, cuts the connection after
/// that many pieces (an injected drop).
pub(crate) struct FrameSink<'a> {
    tx: &'a Frames,
    frame: &'a (dyn Fn(&str) -> String + Send + Sync),
    sent: usize,
    drop_after: Option<usize>,
}

#[async_trait::async_trait]
impl DeltaSink for FrameSink<'_> {
    async fn delta(&mut self, text: &str) -> Result<(), ModelError> {
        if self.drop_after.is_some_and(|n| self.sent >= n) {
            let _ = self
                .tx
                .send(Err(std::io::Error::other("simulated connection drop")))
                .await;
            return Err(ModelError::Other("dropped".into()));
        }
        self.sent += 1;
        self.tx
            .send(Ok((self.frame)(text)))
            .await
            .map_err(|_| ModelError::Other("client gone".into()))
    }
}

/// Streams the simulated answer's text as frames made by `frame`. `None` when the stream ended
/// early: an injected drop, a model error (sent as an error event), or the client gone.
pub(crate) async fn stream_text(
    shared: &Shared,
    c: &Converted,
    fault: Option<Fault>,
    tx: &Frames,
    frame: &(dyn Fn(&str) -> String + Send + Sync),
) -> Option<aether_providers::ModelResponse> {
    let drop_after = (fault == Some(Fault::DropMidStream)).then_some(3);
    let mut sink = FrameSink {
        tx,
        frame,
        sent: 0,
        drop_after,
    };
    let r = match shared.model.generate_stream(c.request(), &mut sink).await {
        Ok(r) => r,
        Err(_) if drop_after.is_some() => return None,
        Err(e) => {
            let _ = tx
                .send(Ok(format!(
                    "data: {}\n\n",
                    json!({"error": {"message": e.to_string()}})
                )))
                .await;
            return None;
        }
    };
    if drop_after.is_some() && r.text.is_empty() {
        let _ = tx.send(Err(std::io::Error::other("simulated connection drop"))).await;
        return None;
    }
    Some(r)
}

/// A server-sent-events response fed by `rx`.
pub(crate) fn sse_response(rx: mpsc::Receiver<Result<String, std::io::Error>>) -> Response {
    let body = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/event-stream"));
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    simulated(r)
}

pub(crate) fn model_error(e: ModelError) -> Response {
    match e {
        ModelError::RateLimited { .. } => error(StatusCode::TOO_MANY_REQUESTS, e.to_string(), "rate_limit_error"),
        ModelError::Timeout(_) => error(StatusCode::GATEWAY_TIMEOUT, e.to_string(), "timeout"),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), "server_error"),
    }
}
