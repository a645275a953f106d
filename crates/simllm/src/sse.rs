//! One streaming path for both wire formats: the model's text as server-sent event frames through
//! a bounded channel, with the mid-stream faults.
//!
//! Cheap per chunk: a stream's constant JSON is encoded once into a [`Template`] (only the piece
//! of text is escaped per chunk), and the body takes every frame that is ready in one write, so a
//! fast answer costs a few writes, not one per word.

use aether_providers::{DeltaSink, ModelError, ModelProvider};
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::faults::Fault;
use crate::request::Converted;
use crate::{error, simulated, Shared};

/// Where a streaming handler sends its SSE frames (an `Err` cuts the connection).
pub(crate) type Frames = mpsc::Sender<Result<String, std::io::Error>>;

/// A frame's JSON encoded once, around the one place the streamed text goes: a chunk is the head,
/// the text as a JSON string, and the tail.
pub(crate) struct Template {
    head: String,
    tail: String,
}

impl Template {
    /// The marker standing for the text in the value given to [`Template::new`].
    pub(crate) const TEXT: &'static str = "\u{1}aether-sim-llm-text\u{1}";

    /// Encodes `frame` (which holds [`Template::TEXT`] once, as a string value) as
    /// `data: JSON` + `end`.
    pub(crate) fn new(frame: &Value, end: &str) -> Self {
        let json = frame.to_string();
        let marker = Value::from(Self::TEXT).to_string();
        let (head, tail) = json
            .split_once(&marker)
            .expect("a frame template holds the text marker once");
        Self {
            head: format!("data: {head}"),
            tail: format!("{tail}{end}"),
        }
    }

    /// The frame carrying `text`.
    pub(crate) fn frame(&self, text: &str) -> String {
        let mut out = Vec::with_capacity(self.head.len() + self.tail.len() + text.len() + 8);
        out.extend_from_slice(self.head.as_bytes());
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, text);
        out.extend_from_slice(self.tail.as_bytes());
        // Valid UTF-8: the head and tail are JSON text, and serde_json writes valid UTF-8.
        String::from_utf8(out).unwrap_or_default()
    }
}

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

/// A server-sent-events response fed by `rx`. Each body write takes every frame already waiting
/// (up to 64 KiB), so a burst of small frames goes out in one write; an error (an injected drop)
/// cuts the connection after the frames before it.
pub(crate) fn sse_response(rx: mpsc::Receiver<Result<String, std::io::Error>>) -> Response {
    const BATCH: usize = 64 * 1024;
    let body = futures::stream::unfold((rx, None), |(mut rx, cut)| async move {
        if let Some(e) = cut {
            return Some((Err(e), (rx, None)));
        }
        let mut out = match rx.recv().await? {
            Ok(frame) => frame,
            Err(e) => return Some((Err(e), (rx, None))),
        };
        let mut cut = None;
        while out.len() < BATCH {
            match rx.try_recv() {
                Ok(Ok(frame)) => out.push_str(&frame),
                Ok(Err(e)) => {
                    cut = Some(e);
                    break;
                }
                Err(_) => break,
            }
        }
        Some((Ok(out), (rx, cut)))
    });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_frame_is_the_frame_encoded_whole() {
        let template = Template::new(
            &json!({"id": "x", "choices": [{"delta": {"content": Template::TEXT}, "finish_reason": null}]}),
            "\n\n",
        );
        for text in ["plain ", "quote \" and \\ and\nnewline ", "ünï 😀 ", "\u{1}"] {
            let frame = template.frame(text);
            let json = frame
                .strip_prefix("data: ")
                .and_then(|f| f.strip_suffix("\n\n"))
                .unwrap();
            let parsed: Value = serde_json::from_str(json).unwrap();
            assert_eq!(
                parsed,
                json!({"id": "x", "choices": [{"delta": {"content": text}, "finish_reason": null}]})
            );
        }
    }
}
