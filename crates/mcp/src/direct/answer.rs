//! Reading the direct client's answers: a JSON message (one response or one error, read in one
//! pass), or an SSE stream whose notifications are handed over before the answer; bounded in
//! size, and saying whether the body was read whole (so its connection can serve again).

use aether_contracts::error_chain;
use bytes::Bytes;
use futures::StreamExt;
use http::HeaderValue;
use rmcp::model::{ErrorData, JsonRpcMessage, ServerNotification, ServerRequest};
use serde::de::DeserializeOwned;

use super::{Failure, BODY_QUOTE};

/// Reads an answer (of `content_type`): a JSON message, or the SSE stream's notifications up to
/// the answer, at most `limit` bytes of it. Says too whether the body was read whole.
pub(super) async fn read_answer<R, S, E>(
    status: http::StatusCode,
    content_type: Option<&HeaderValue>,
    body: S,
    limit: Option<usize>,
    mut on_notification: impl FnMut(ServerNotification),
) -> (Result<R, Failure>, bool)
where
    R: DeserializeOwned,
    S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::error::Error,
{
    let mut read = 0usize;
    let mut body = body.map(move |chunk| {
        let chunk = chunk.map_err(|e| std::io::Error::other(error_chain(&e)))?;
        read += chunk.len();
        match limit {
            Some(limit) if read > limit => Err(std::io::Error::other(format!(
                "the answer is larger than the client's limit of {limit} bytes"
            ))),
            _ => Ok(chunk),
        }
    });
    let kind = content_type.and_then(|v| v.to_str().ok()).unwrap_or("");
    // Media types are case-insensitive; compared in place (no lowercase copy per answer).
    let is = |media: &str| kind.get(..media.len()).is_some_and(|k| k.eq_ignore_ascii_case(media));
    if !is("text/event-stream") || !status.is_success() {
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) => bytes.extend_from_slice(&c),
                Err(e) => return (Err(Failure::Lost(error_chain(&e))), false),
            }
        }
        let answer = if is("application/json") {
            // A JSON answer is one response or one error: read in one pass (rmcp's message
            // type first buffers the whole message to find out which kind it is).
            match serde_json::from_slice::<Reply<R>>(&bytes) {
                Ok(Reply {
                    result: Some(result), ..
                }) => Ok(result),
                Ok(Reply { error: Some(e), .. }) => Err(Failure::Rejected(e)),
                Ok(_) => Err(Failure::Other(format!(
                    "the answer (HTTP {status}) has neither `result` nor `error`: {}",
                    quote(&bytes)
                ))),
                Err(e) => Err(Failure::Other(format!(
                    "unreadable answer (HTTP {status}): {e}: {}",
                    quote(&bytes)
                ))),
            }
        } else if !status.is_success() {
            Err(Failure::Status(status.as_u16(), quote(&bytes)))
        } else {
            Err(Failure::Other(format!(
                "unexpected answer type `{kind}` (HTTP {status})"
            )))
        };
        return (answer, true);
    }
    let mut events = sse_stream::SseStream::from_bytes_stream(body);
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => return (Err(Failure::Lost(e.to_string())), false),
        };
        let Some(data) = event.data.filter(|d| !d.is_empty()) else {
            continue; // priming events and keep-alives
        };
        let answer = match serde_json::from_str::<Answer<R>>(&data) {
            Ok(JsonRpcMessage::Response(r)) => Ok(r.result),
            Ok(JsonRpcMessage::Error(e)) => Err(Failure::Rejected(e.error)),
            Ok(JsonRpcMessage::Notification(n)) => {
                on_notification(n.notification);
                continue;
            }
            // The stateless revision asks for input with a result, not with a request.
            Ok(JsonRpcMessage::Request(r)) => {
                tracing::debug!(id = %r.id, "MCP server request ignored by the stateless client");
                continue;
            }
            Err(e) => Err(Failure::Other(format!(
                "unreadable event: {e}: {}",
                quote(data.as_bytes())
            ))),
        };
        // The stream's end is not awaited: the connection is not reused.
        return (answer, false);
    }
    (
        Err(Failure::Lost("the event stream ended without an answer".into())),
        false,
    )
}

/// A server message whose result is read as `R`.
type Answer<R> = JsonRpcMessage<ServerRequest, R, ServerNotification>;

/// A JSON-RPC response or error (its `jsonrpc` and `id` are not needed: one request per POST).
#[derive(serde::Deserialize)]
#[serde(bound = "R: DeserializeOwned")]
struct Reply<R> {
    result: Option<R>,
    error: Option<ErrorData>,
}

pub(super) fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(BODY_QUOTE)]);
    text.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_headers(kind: &'static str) -> Option<HeaderValue> {
        Some(HeaderValue::from_static(kind))
    }

    fn chunks(parts: &[&'static [u8]]) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
        futures::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn answers_are_read_whole_within_the_limit_and_refused_past_it() {
        let json = json_headers("application/json");
        let answer: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":{"a":1}}"#;
        let (r, whole) = read_answer::<serde_json::Value, _, _>(
            http::StatusCode::OK,
            json.as_ref(),
            chunks(&[answer]),
            Some(1000),
            |_| {},
        )
        .await;
        assert_eq!(r.unwrap(), serde_json::json!({"a": 1}));
        assert!(whole, "the connection can be reused");

        let big: &[u8] = &[b' '; 600];
        let (r, whole) = read_answer::<serde_json::Value, _, _>(
            http::StatusCode::OK,
            json.as_ref(),
            chunks(&[big, big]),
            Some(1000),
            |_| {},
        )
        .await;
        assert!(
            matches!(&r, Err(Failure::Lost(e)) if e.contains("limit of 1000 bytes")),
            "{r:?}"
        );
        assert!(!whole);

        let error: &[u8] = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"unknown tool `x`"}}"#;
        let (r, _) = read_answer::<serde_json::Value, _, _>(
            http::StatusCode::BAD_REQUEST,
            json.as_ref(),
            chunks(&[error]),
            None,
            |_| {},
        )
        .await;
        assert!(
            matches!(&r, Err(Failure::Rejected(e)) if e.message.contains("unknown tool")),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn an_event_stream_delivers_progress_before_the_result() {
        let sse = json_headers("text/event-stream");
        let events: [&[u8]; 3] = [
            b"data: \n\n",
            b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":7,\"progress\":1,\"total\":2}}\n\n",
            b"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"done\":true}}\n\n",
        ];
        let mut seen = Vec::new();
        let (r, whole) =
            read_answer::<serde_json::Value, _, _>(http::StatusCode::OK, sse.as_ref(), chunks(&events), None, |n| {
                if let ServerNotification::ProgressNotification(p) = n {
                    seen.push((p.params.progress, p.params.total));
                }
            })
            .await;
        assert_eq!(r.unwrap(), serde_json::json!({"done": true}));
        assert_eq!(seen, vec![(1.0, Some(2.0))]);
        assert!(!whole, "an event stream's end is not awaited");
    }
}
