//! The direct client of MCP's stateless protocol (revision 2026-07-28) over streamable HTTP.
//!
//! No session and no handshake: one `server/discover` when the client starts, then every
//! request is one POST that carries the client's context (protocol version, client info and
//! capabilities) in its `_meta`, written and read in the caller's own task. rmcp's client passes
//! each request through its service and transport worker tasks; on a loopback call those
//! cross-thread hand-offs cost more than the server's own answer.
//!
//! * **Answers.** A plain JSON answer, or an SSE stream when the server reports progress before
//!   its result; both are read with rmcp's message types, the result typed for the request.
//! * **Progress.** The call's request id is its progress token; the stream's
//!   `notifications/progress` reach the caller before the result, in order.
//! * **Cancel.** Dropping a call drops its response, which closes its connection; the server
//!   cancels the request when its client disconnects (there is no session to send
//!   `notifications/cancelled` to).
//! * **`tools/list_changed`.** When the server advertises it, a `subscriptions/listen` request is
//!   held open by a background task (reopened with backoff when it ends; each reopening counts
//!   as a change, since one may have been missed).
//! * **Headers.** `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` and the tool's annotated
//!   arguments as `Mcp-Param-*` (SEP-2243, `param_headers`), the configured
//!   headers, and the call's `aether/*` ids and `traceparent` (as for rmcp's client, see
//!   `http_client`).
//!
//! A server that does not speak this revision refuses `server/discover`; [`discover`] says so,
//! and the caller falls back to rmcp's sessions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{error_chain, Metadata};
use aether_tools::ToolContext;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use http_body_util::{BodyExt, Full};
use rmcp::model::{
    CallToolResult, ClientCapabilities, ClientJsonRpcMessage, ClientRequest, DiscoverRequest, DiscoverRequestParams,
    DiscoverResult, ErrorData, GetMeta, Implementation, ListToolsRequest, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ProtocolVersion, RequestId, RequestMetaObject, ServerNotification, SubscriptionFilter,
    SubscriptionsListenRequest, SubscriptionsListenRequestParams, Tool,
};
use serde::de::DeserializeOwned;
use tokio::task::AbortHandle;

use answer::read_answer;
use call_body::CallBody;
use connections::Connections;

mod answer;
mod call_body;
mod connections;
mod param_headers;

use crate::config::McpServerConfig;
use crate::http_client::ID_HEADERS;

/// The protocol revision this client speaks.
const REVISION: ProtocolVersion = ProtocolVersion::V_2026_07_28;
/// Most of a failed answer's body quoted in an error.
const BODY_QUOTE: usize = 300;
/// The largest answer read (a JSON body, or all of a call's event stream), as rmcp's client
/// bounds an event; a `subscriptions/listen` stream is unbounded in total.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// Longest wait between two `subscriptions/listen` attempts.
const MAX_LISTEN_BACKOFF: Duration = Duration::from_secs(30);

/// Why a request got no result.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Nothing reached the server (the connection could not be made): resending is safe.
    NotSent(String),
    /// The connection broke after the request went out.
    Lost(String),
    /// The server answered with a JSON-RPC error.
    Rejected(ErrorData),
    /// An HTTP error status, with the start of the answer's body.
    Status(u16, String),
    /// An answer that could not be read.
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotSent(e) => write!(f, "cannot reach the server: {e}"),
            Self::Lost(e) => write!(f, "the connection closed before the answer: {e}"),
            Self::Rejected(e) => write!(f, "{} (code {})", e.message, e.code.0),
            Self::Status(status, body) => write!(f, "HTTP {status}: {body}"),
            Self::Other(e) => f.write_str(e),
        }
    }
}

/// What `server/discover` found.
pub(crate) enum Discovered {
    /// The server speaks the stateless revision: use the direct client.
    Stateless(Direct),
    /// It does not (the reason, for the log): use sessions.
    Legacy(String),
}

/// What every request shares: the HTTP client, the URL, the headers and the client context.
struct Endpoint {
    transport: Transport,
    /// Accept, Content-Type, MCP-Protocol-Version and the configured headers.
    headers: HeaderMap,
    /// protocolVersion, clientInfo and clientCapabilities, sent in every request's `_meta`.
    context: RequestMetaObject,
    next_id: AtomicI64,
}

/// How requests travel.
enum Transport {
    /// `http://`: the client's own connections, each driven by the call using it.
    Plain(Connections),
    /// `https://` (or a URL with credentials): reqwest, for TLS.
    Reqwest {
        http: reqwest_mcp::Client,
        url: reqwest_mcp::Url,
    },
}

/// The direct client of one server.
pub(crate) struct Direct {
    endpoint: Arc<Endpoint>,
    /// The `subscriptions/listen` task, when the server announces tool-list changes.
    listener: Option<AbortHandle>,
    /// SEP-2243 `Mcp-Param-*` annotations of the tools that have any, from the last tool list
    /// read (replaced whole by each; as many entries as the server has tools).
    param_headers: parking_lot::RwLock<HashMap<String, Vec<param_headers::ParamHeader>>>,
}

impl Direct {
    /// Connections opened so far (plain `http://`; reqwest's are its own).
    pub(crate) fn connections_opened(&self) -> u64 {
        match &self.endpoint.transport {
            Transport::Plain(c) => c.opened(),
            Transport::Reqwest { .. } => 0,
        }
    }

    /// Stops listening for tool-list changes.
    pub(crate) fn close(&self) {
        if let Some(l) = &self.listener {
            l.abort();
        }
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        self.close();
    }
}

/// Asks the server whether it speaks the stateless revision; when it does, and it announces
/// tool-list changes, subscribes to them (waiting for the acknowledgment, so that no change
/// after this returns is missed) and wakes `tools_changed` on each.
pub(crate) async fn discover(
    config: &McpServerConfig,
    url: &str,
    tools_changed: Arc<tokio::sync::Notify>,
) -> Result<Discovered, Failure> {
    let endpoint = Arc::new(Endpoint::new(config, url).map_err(Failure::Other)?);
    let request = ClientRequest::DiscoverRequest(DiscoverRequest::new(DiscoverRequestParams::default()));
    let discovered: DiscoverResult = match endpoint.request(request, HeaderMap::new(), |_| {}).await {
        Ok(d) => d,
        Err(Failure::Rejected(e)) => return Ok(Discovered::Legacy(format!("server/discover: {}", e.message))),
        // A server that knows no `server/discover` refuses it as a request without a session;
        // a refused key or a failing server is an error either way.
        Err(Failure::Status(status, body)) if !matches!(status, 401 | 403 | 500..) => {
            return Ok(Discovered::Legacy(format!("server/discover: HTTP {status}: {body}")))
        }
        Err(Failure::Other(e)) => return Ok(Discovered::Legacy(e)),
        Err(e) => return Err(e),
    };
    if !discovered.supported_versions.contains(&REVISION) {
        return Ok(Discovered::Legacy(format!(
            "the server speaks {:?}",
            discovered
                .supported_versions
                .iter()
                .map(|v| v.as_str())
                .collect::<Vec<_>>()
        )));
    }
    let announces_changes = discovered
        .capabilities
        .tools
        .as_ref()
        .is_some_and(|t| t.list_changed == Some(true));
    let mut listener = None;
    if announces_changes {
        let (ack, acked) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(listen(Arc::clone(&endpoint), tools_changed, ack, config.backoff));
        listener = Some(task.abort_handle());
        // A server slow to acknowledge does not hold up start-up for long.
        match tokio::time::timeout(config.timeout.min(Duration::from_secs(10)), acked).await {
            Ok(Ok(())) => {}
            // The task ended (the server refused the subscription) or did not acknowledge in time.
            _ => tracing::warn!(
                server = %config.name,
                "the MCP server announces tool-list changes but did not acknowledge `subscriptions/listen`; \
                 its tool list is read once"
            ),
        }
    }
    Ok(Discovered::Stateless(Direct {
        endpoint,
        listener,
        param_headers: Default::default(),
    }))
}

impl Endpoint {
    fn new(config: &McpServerConfig, url: &str) -> Result<Self, String> {
        let connect_timeout = config.timeout.min(Duration::from_secs(10));
        let transport = match Connections::for_url(url, connect_timeout)? {
            Some(plain) => Transport::Plain(plain),
            None => {
                let url = reqwest_mcp::Url::parse(url).map_err(|e| format!("bad URL `{url}`: {e}"))?;
                crate::http_client::ensure_tls_provider();
                let http = reqwest_mcp::Client::builder()
                    .connect_timeout(connect_timeout)
                    .tcp_nodelay(true)
                    .pool_idle_timeout(Duration::from_secs(90))
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
                Transport::Reqwest { http, url }
            }
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &config.headers {
            // Validated with the config.
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                headers.insert(k, v);
            }
        }
        headers.insert(ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            HeaderName::from_static("mcp-protocol-version"),
            HeaderValue::from_static("2026-07-28"),
        );
        let context = RequestMetaObject::with_client_context(
            REVISION,
            Implementation::new("aether-frame", env!("CARGO_PKG_VERSION")),
            ClientCapabilities::default(),
        );
        Ok(Self {
            transport,
            headers,
            context,
            next_id: AtomicI64::new(1),
        })
    }

    /// Sends `request` (its `_meta` gains the client context) and reads its answer as `R`,
    /// passing each notification that comes before it to `on_notification`.
    async fn request<R: DeserializeOwned>(
        &self,
        request: ClientRequest,
        headers: HeaderMap,
        on_notification: impl FnMut(ServerNotification),
    ) -> Result<R, Failure> {
        self.request_as(
            self.next_id(),
            request,
            headers,
            Some(MAX_ANSWER_BYTES),
            on_notification,
        )
        .await
    }

    fn next_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// [`Self::request`] with the request id chosen by the caller.
    async fn request_as<R: DeserializeOwned>(
        &self,
        id: i64,
        mut request: ClientRequest,
        mut headers: HeaderMap,
        limit: Option<usize>,
        on_notification: impl FnMut(ServerNotification),
    ) -> Result<R, Failure> {
        let meta = request.get_meta_mut();
        meta.0
             .0
            .extend(self.context.0 .0.iter().map(|(k, v)| (k.clone(), v.clone())));
        let method = request.method().to_owned();
        let mut body = Vec::with_capacity(512);
        serde_json::to_writer(
            &mut body,
            &ClientJsonRpcMessage::request(request, RequestId::Number(id)),
        )
        .map_err(|e| Failure::Other(format!("cannot encode `{method}`: {e}")))?;
        headers.insert(
            HeaderName::from_static("mcp-method"),
            HeaderValue::from_str(&method).map_err(|e| Failure::Other(e.to_string()))?,
        );
        self.exchange(body, headers, limit, on_notification).await
    }

    /// POSTs `body` with the shared headers and the request's own (which win over a shared one of
    /// the same name) and reads the answer.
    async fn exchange<R: DeserializeOwned>(
        &self,
        body: Vec<u8>,
        own: HeaderMap,
        limit: Option<usize>,
        on_notification: impl FnMut(ServerNotification),
    ) -> Result<R, Failure> {
        // One map, sized once: the shared values are reference-counted, so this copies no text.
        let mut all = HeaderMap::with_capacity(self.headers.len() + own.len() + 1);
        for (name, value) in &self.headers {
            all.append(name, value.clone());
        }
        all.extend(own);
        match &self.transport {
            Transport::Plain(connections) => {
                all.insert(http::header::HOST, connections.host().clone());
                let mut request = http::Request::new(Full::new(Bytes::from(body)));
                *request.method_mut() = http::Method::POST;
                *request.uri_mut() = connections.path().clone();
                *request.headers_mut() = all;
                connections
                    .exchange(request, |response| async move {
                        let (parts, body) = response.into_parts();
                        read_answer(
                            parts.status,
                            parts.headers.get(CONTENT_TYPE),
                            body.into_data_stream(),
                            limit,
                            on_notification,
                        )
                        .await
                    })
                    .await
            }
            Transport::Reqwest { http, url } => {
                let response = http
                    .post(url.clone())
                    .headers(all)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| match e.is_connect() {
                        true => Failure::NotSent(error_chain(&e)),
                        false => Failure::Lost(error_chain(&e)),
                    })?;
                let (status, kind) = (response.status(), response.headers().get(CONTENT_TYPE).cloned());
                read_answer(status, kind.as_ref(), response.bytes_stream(), limit, on_notification)
                    .await
                    .0
            }
        }
    }
}

impl Direct {
    /// Every tool of the server, all pages.
    pub(crate) async fn list_tools(&self) -> Result<Vec<Tool>, Failure> {
        let mut tools = Vec::new();
        let mut cursor = None;
        loop {
            let params = PaginatedRequestParams::default().with_cursor(cursor);
            let request = ClientRequest::ListToolsRequest(ListToolsRequest::with_param(params));
            let page: ListToolsResult = self.endpoint.request(request, HeaderMap::new(), |_| {}).await?;
            tools.extend(page.tools);
            match page.next_cursor {
                Some(next) if !next.is_empty() => cursor = Some(next),
                _ => {
                    *self.param_headers.write() = param_headers::of_tools(&tools);
                    return Ok(tools);
                }
            }
        }
    }

    /// One `tools/call`: its ids and trace in `_meta` and as headers, its progress (when the
    /// turn watches) forwarded to `ctx`.
    pub(crate) async fn call(
        &self,
        tool: &str,
        arguments: &Metadata,
        ctx: &ToolContext,
    ) -> Result<CallToolResult, Failure> {
        let mut headers = HeaderMap::new();
        let traceparent = aether_contracts::trace::traceparent();
        // In ID_HEADERS' order.
        let values = [
            Some(&*ctx.task_id),
            Some(&*ctx.session_id),
            Some(&*ctx.call_id),
            ctx.user_id.as_deref(),
            traceparent.as_deref(),
        ];
        let mut entries = [("", ""); ID_HEADERS.len()];
        let mut n = 0;
        for ((key, header), value) in ID_HEADERS.into_iter().zip(values) {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                entries[n] = (key, v);
                n += 1;
                if let Ok(h) = HeaderValue::from_str(v) {
                    headers.insert(HeaderName::from_static(header), h);
                }
            }
        }
        let id = self.endpoint.next_id();
        // The request id is unique among this client's requests: the progress token.
        let progress_token = ctx.progress.is_some().then_some(id);
        let mut body = Vec::with_capacity(512);
        let call = CallBody::new(
            id,
            tool,
            arguments,
            &entries[..n],
            progress_token,
            &self.endpoint.context.0 .0,
        );
        serde_json::to_writer(&mut body, &call).map_err(|e| Failure::Other(format!("cannot encode `{tool}`: {e}")))?;
        headers.insert(
            HeaderName::from_static("mcp-method"),
            HeaderValue::from_static("tools/call"),
        );
        headers.insert(HeaderName::from_static("mcp-name"), header_value(tool));
        if let Some(params) = self.param_headers.read().get(tool) {
            param_headers::add(params, arguments, &mut headers);
        }
        let forward = |n: ServerNotification| {
            if let ServerNotification::ProgressNotification(p) = n {
                let ProgressNotificationParam {
                    progress,
                    total,
                    message,
                    ..
                } = p.params;
                ctx.report_progress(progress, total, message);
            }
        };
        self.endpoint
            .exchange(body, headers, Some(MAX_ANSWER_BYTES), forward)
            .await
    }
}

/// A header value; one that cannot travel bare (non-ASCII, control characters, edge spaces)
/// goes as SEP-2243's `=?base64?…?=`.
fn header_value(value: &str) -> HeaderValue {
    use base64::Engine;
    let edge_space = value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']);
    let printable = value.chars().all(|c| (' '..='~').contains(&c));
    let looks_encoded = value.starts_with("=?base64?") && value.ends_with("?=");
    let bare = printable && !edge_space && !looks_encoded;
    let encoded;
    let text = if bare {
        value
    } else {
        encoded = format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(value));
        &encoded
    };
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Holds a `subscriptions/listen` request open and wakes `changed` on each tool-list change.
/// `ack` fires on the first acknowledgment; a reopening counts as a change. Ends when the
/// server refuses the subscription.
async fn listen(
    endpoint: Arc<Endpoint>,
    changed: Arc<tokio::sync::Notify>,
    ack: tokio::sync::oneshot::Sender<()>,
    backoff: Duration,
) {
    let mut ack = Some(ack);
    let mut wait = backoff;
    loop {
        let filter = SubscriptionFilter::builder().tools_list_changed().build();
        let request = ClientRequest::SubscriptionsListenRequest(SubscriptionsListenRequest::new(
            SubscriptionsListenRequestParams::new(filter),
        ));
        let on_notification = |n: ServerNotification| match n {
            ServerNotification::SubscriptionsAcknowledgedNotification(_) => {
                wait = backoff;
                match ack.take() {
                    Some(first) => {
                        let _ = first.send(());
                    }
                    None => changed.notify_one(),
                }
            }
            ServerNotification::ToolListChangedNotification(_) => changed.notify_one(),
            _ => {}
        };
        let ended: Result<serde_json::Value, Failure> = endpoint
            .request_as(endpoint.next_id(), request, HeaderMap::new(), None, on_notification)
            .await;
        match ended {
            Err(Failure::Rejected(e)) => {
                tracing::warn!(error = %e.message, "the MCP server refused `subscriptions/listen`");
                return;
            }
            Ok(_) => tracing::debug!("the MCP server closed `subscriptions/listen`; reopening"),
            Err(e) => tracing::debug!(error = %e, "`subscriptions/listen` ended; reopening"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_LISTEN_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_that_cannot_travel_bare_are_base64() {
        assert_eq!(header_value("builtin.echo"), "builtin.echo");
        assert_eq!(header_value("naïve"), "=?base64?bmHDr3Zl?=");
        assert_eq!(header_value(" x"), "=?base64?IHg=?=");
        assert_eq!(header_value("=?base64?eA==?="), "=?base64?PT9iYXNlNjQ/ZUE9PT89?=");
    }

    #[test]
    fn failures_say_what_happened() {
        assert!(Failure::NotSent("refused".into()).to_string().contains("cannot reach"));
        let rejected = Failure::Rejected(ErrorData::invalid_params("no such tool", None));
        assert_eq!(rejected.to_string(), "no such tool (code -32602)");
    }
}
