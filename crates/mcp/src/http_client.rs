//! The streamable-HTTP client: rmcp's reqwest client, plus per-request headers. A call's
//! `aether/*` request `_meta` entries (task, session, call and user ids) also travel as
//! `x-aether-*` HTTP headers, and its `traceparent` as the W3C header, so gateways and servers
//! can route and trace without parsing the body, and without a new session or handshake per
//! call.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, GetMeta, JsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use sse_stream::Sse;

use crate::{META_CALL_ID, META_SESSION_ID, META_TASK_ID, META_USER_ID};

/// Request-meta keys and the headers they become (the W3C `traceparent` as itself); the direct
/// client sends the same.
pub(crate) const ID_HEADERS: [(&str, &str); 5] = [
    (META_TASK_ID, "x-aether-task-id"),
    (META_SESSION_ID, "x-aether-session-id"),
    (META_CALL_ID, "x-aether-call-id"),
    (META_USER_ID, "x-aether-user-id"),
    (aether_contracts::trace::TRACEPARENT, "traceparent"),
];

/// Installs the ring crypto provider for rustls once per process (reqwest 0.13 is built
/// without a provider of its own, to avoid a C build): for rmcp's client here, and for any other
/// reqwest 0.13 client of the process (the CLI's OTLP exporter). Harmless when one is installed.
pub fn ensure_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// rmcp's reqwest client with the call's ids as headers.
#[derive(Clone)]
pub(crate) struct HeaderClient {
    pub inner: reqwest_mcp::Client,
}

fn call_headers(message: &ClientJsonRpcMessage, headers: &mut HashMap<HeaderName, HeaderValue>) {
    let JsonRpcMessage::Request(req) = message else {
        return;
    };
    if !matches!(req.request, ClientRequest::CallToolRequest(_)) {
        return;
    }
    let meta = req.request.get_meta();
    for (key, header) in ID_HEADERS {
        if let Some(v) = meta.get(key).and_then(|v| v.as_str()) {
            if let Ok(value) = HeaderValue::from_str(v) {
                headers.insert(HeaderName::from_static(header), value);
            }
        }
    }
}

type Error = StreamableHttpError<reqwest_mcp::Error>;

impl StreamableHttpClient for HeaderClient {
    type Error = reqwest_mcp::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        mut custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        call_headers(&message, &mut custom_headers);
        self.inner
            .post_message(uri, message, session_id, auth_header, custom_headers)
            .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        mut custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, Error> {
        call_headers(&message, &mut custom_headers);
        self.inner
            .post_message_with_response_limits(uri, message, session_id, auth_header, custom_headers, limits)
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Error> {
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        self.inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        self.inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}
