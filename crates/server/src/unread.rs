//! A request body left unread closes its connection.
//!
//! A refusal that comes before the body is read (an unknown key, a rate limit, a full admission
//! queue, a body over the limit) leaves the rest of that body in the connection. hyper then drops
//! the connection after the answer, but the answer did not say so, so a client that reuses it for
//! its next request writes into a closed socket and fails (`Broken pipe`), through no fault of its
//! own. [`track`] marks the body when it is read to its end; [`close_if_unread`] answers
//! `Connection: close` when it was not, so the client opens a new connection instead. Requests
//! without a body are not wrapped (no allocation).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::Response;

/// Whether a tracked body was read to its end.
pub(crate) struct ReadToEnd(Arc<AtomicBool>);

struct Tracked {
    inner: Body,
    done: Arc<AtomicBool>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.done.store(true, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps the request's body, when it has one, so that its end is noticed.
pub(crate) fn track(req: Request) -> (Request, Option<ReadToEnd>) {
    if req.body().is_end_stream() || req.body().size_hint().exact() == Some(0) {
        return (req, None);
    }
    let done = Arc::new(AtomicBool::new(false));
    let (parts, inner) = req.into_parts();
    let body = Body::new(Tracked {
        inner,
        done: Arc::clone(&done),
    });
    (Request::from_parts(parts, body), Some(ReadToEnd(done)))
}

/// Says `Connection: close` when the request's body was not read to its end.
pub(crate) fn close_if_unread(read: Option<ReadToEnd>, response: &mut Response) {
    if read.is_some_and(|r| !r.0.load(Ordering::Relaxed)) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}
