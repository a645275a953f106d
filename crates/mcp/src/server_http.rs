//! `aether mcp-serve --http`: [`serve_http`] (bearer keys, `TCP_NODELAY`) and its service,
//! [`McpHttpService`]: rmcp's streamable HTTP server, with its commonest request, a plain
//! stateless `tools/call`, answered in the connection's own task.
//!
//! rmcp serves a stateless request by buffering its JSON into an untagged message enum (each
//! variant tried in turn), encoding it again to check the SEP-2243 headers, and running it
//! through a one-shot service whose loop and handler are tasks of their own, the answer coming
//! back over a channel. For a tool that answers in microseconds that is most of the call's
//! cost: measured on the 2-core development machine (`aether --worker-threads 1 mcp-serve
//! --http … --tool-latency-ms 0`, `wrk -t1 -c1` posting `builtin.echo`), 124–137 µs of the
//! server's CPU per call, ~188 k instructions (callgrind), of which rmcp's POST handling ~100 k;
//! answered here, 63–67 µs and ~67 k (`scripts/mcp-serve-cost.sh`).
//!
//! Here a request is answered in line only when nothing about it needs rmcp's judgement:
//!
//! * `POST`, `Content-Type: application/json`, one `Accept` header naming both
//!   `application/json` and `text/event-stream` without parameters, a `Content-Length` of at
//!   most [`MAX_INLINE_BODY`] (rmcp's own limit is higher), a `Host` the allowed hosts name as
//!   they are written, no `Origin`, no `Mcp-Session-Id` and no `Mcp-Param-*` header;
//! * `MCP-Protocol-Version: 2026-07-28`, `Mcp-Method: tools/call` and a plain (not base64)
//!   `Mcp-Name` equal to the body's tool name, each given once;
//! * a body that reads as exactly `{jsonrpc: "2.0", id, method: "tools/call", params}` with
//!   rmcp's [`CallToolRequestParams`], whose `_meta` carries the protocol version (the same
//!   revision) and the client's capabilities and no progress token (progress would turn the
//!   answer into an event stream), and no `inputResponses` or `requestState`;
//! * a served tool whose schema declares no `x-mcp-header` parameter.
//!
//! Anything else — another method, progress, a header rmcp would decode or check against the
//! schema, an unknown tool, a body that does not read as such a call — goes to rmcp unchanged
//! (its body handed back whole), which answers or refuses it as it always did. So this path
//! never accepts what rmcp would refuse, and its answer is rmcp's, byte for byte (tested: the
//! same call, once made to take rmcp's path, answers the same bytes).
//!
//! The tool runs as under rmcp (`ToolServer::run`: schema check, the server span continuing the
//! caller's trace, the tool's own time in `_meta`). A client that goes away drops the call:
//! the tool is dropped with it and the call counts as cancelled, as rmcp cancels a stateless
//! request whose client disconnected.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use futures::future::BoxFuture;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use rmcp::model::{
    CallToolRequestParams, JsonRpcError, JsonRpcResponse, JsonRpcVersion2_0, ProtocolVersion, RequestId, ServerResult,
};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use serde::Deserialize;
use serde_json::json;

use aether_tools::RegisteredTool;

use crate::server::ToolServer;

/// The largest body answered in line; a larger (or chunked) one goes to rmcp.
pub const MAX_INLINE_BODY: u64 = 1024 * 1024;

/// An answer of [`McpHttpService`] (rmcp's body type).
pub type McpResponse = Response<BoxBody<Bytes, Infallible>>;

/// `aether mcp-serve`'s streamable HTTP service; mount it (e.g. at `/mcp`) in an axum router.
/// Built by [`streamable_http_service`].
#[derive(Clone)]
pub struct McpHttpService {
    server: ToolServer,
    rmcp: StreamableHttpService<ToolServer, LocalSessionManager>,
    /// The `Host` values answered in line (lower case; rmcp checks every other).
    allowed_hosts: Arc<[String]>,
    /// Tools whose schema declares `Mcp-Param-*` headers: always through rmcp, which checks them.
    header_params: Arc<HashSet<String>>,
}

/// The body of a plain `tools/call` (an unknown field sends the request to rmcp).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainCall<'a> {
    #[allow(dead_code)] // checked by its type: "2.0"
    jsonrpc: JsonRpcVersion2_0,
    id: RequestId,
    #[serde(borrow)]
    method: &'a str,
    params: CallToolRequestParams,
}

impl McpHttpService {
    pub(crate) fn new(
        server: ToolServer,
        rmcp: StreamableHttpService<ToolServer, LocalSessionManager>,
        allowed_hosts: &[String],
    ) -> Self {
        let header_params = server
            .declared()
            .iter()
            .filter(|t| serde_json::to_string(&*t.input_schema).is_ok_and(|s| s.contains("x-mcp-header")))
            .map(|t| t.name.to_string())
            .collect();
        Self {
            server,
            rmcp,
            allowed_hosts: allowed_hosts
                .iter()
                .map(|h| h.trim().trim_matches(['[', ']']).to_ascii_lowercase())
                .collect(),
            header_params: Arc::new(header_params),
        }
    }

    /// Answers one HTTP request.
    pub async fn handle(&self, request: Request<Body>) -> McpResponse {
        if !self.plain_headers(request.method(), request.headers()) {
            return self.rmcp.handle(request).await;
        }
        let (parts, body) = request.into_parts();
        let bytes = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return plain_text(
                    StatusCode::BAD_REQUEST,
                    format!("Bad Request: cannot read the body: {e}"),
                )
            }
        };
        match self.plain_call(&parts.headers, &bytes) {
            Some((tool, id, params)) => self.call(&tool, id, params, &parts.headers).await,
            None => self.rmcp.handle(Request::from_parts(parts, Body::from(bytes))).await,
        }
    }

    /// Whether the request's method and headers allow the in-line path.
    fn plain_headers(&self, method: &Method, headers: &HeaderMap) -> bool {
        method == Method::POST
            && single(headers, "mcp-protocol-version") == Some(ProtocolVersion::V_2026_07_28.as_str())
            && single(headers, "mcp-method") == Some("tools/call")
            && single(headers, "mcp-name").is_some_and(|n| !n.starts_with("=?base64?"))
            && !headers.contains_key(ORIGIN)
            && !headers.contains_key("mcp-session-id")
            && headers.keys().all(|k| !k.as_str().starts_with("mcp-param-"))
            && single(headers, CONTENT_TYPE.as_str()).is_some_and(|c| c.eq_ignore_ascii_case("application/json"))
            && accepts_json_and_sse(headers)
            && single(headers, CONTENT_LENGTH.as_str())
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n <= MAX_INLINE_BODY)
            && self.host_allowed(headers)
    }

    /// A `Host` that an allowed host names as written (its name alone, or name and port).
    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        if self.allowed_hosts.is_empty() {
            return true;
        }
        let Some(authority) = single(headers, HOST.as_str()).and_then(|h| http::uri::Authority::try_from(h).ok())
        else {
            return false;
        };
        let host = authority.host().trim_matches(['[', ']']);
        // The allowed list is lower case: compared without allocating per request.
        self.allowed_hosts
            .iter()
            .any(|a| a.eq_ignore_ascii_case(host) || a.eq_ignore_ascii_case(authority.as_str()))
    }

    /// The tool, request id and parameters of a plain `tools/call` body, or `None` (rmcp's case).
    fn plain_call(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<(Arc<RegisteredTool>, RequestId, CallToolRequestParams)> {
        let call: PlainCall<'_> = serde_json::from_slice(body).ok()?;
        let p = &call.params;
        let meta = p.meta.as_ref()?;
        let plain = call.method == "tools/call"
            && single(headers, "mcp-name") == Some(p.name.as_ref())
            && p.input_responses.is_none()
            && p.request_state.is_none()
            && meta
                .protocol_version()
                .is_some_and(|v| v == ProtocolVersion::V_2026_07_28)
            && meta.missing_required_keys(&ProtocolVersion::V_2026_07_28).is_empty()
            && meta.get_progress_token().is_none()
            && !self.header_params.contains(p.name.as_ref());
        let tool = self.server.tool(&p.name).filter(|_| plain)?;
        Some((tool, call.id, call.params))
    }

    /// Runs the call and answers it as rmcp would.
    async fn call(
        &self,
        tool: &RegisteredTool,
        id: RequestId,
        mut params: CallToolRequestParams,
        headers: &HeaderMap,
    ) -> McpResponse {
        self.server.stats().answered_inline.fetch_add(1, Ordering::Relaxed);
        let meta = params.meta.take().unwrap_or_default();
        let span = crate::server_span::start(tool, &meta, &id, Some(headers));
        let ctx = ToolServer::context(&meta, &id, None);
        let arguments = params.arguments.take().unwrap_or_default();
        let outcome = self
            .server
            .run(tool, arguments, ctx, &span, std::future::pending())
            .await;
        let body = match ToolServer::answer(tool, span, outcome) {
            Ok(result) => serde_json::to_vec(&JsonRpcResponse {
                jsonrpc: JsonRpcVersion2_0,
                id,
                result: ServerResult::from(result),
            }),
            Err(error) => serde_json::to_vec(&JsonRpcError::new(Some(id), error)),
        };
        match body {
            Ok(body) => Response::builder()
                .status(StatusCode::OK)
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(Full::new(Bytes::from(body)).boxed())
                .expect("valid response"),
            Err(e) => plain_text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode the answer: {e}"),
            ),
        }
    }
}

/// A tower service answering streamable-HTTP MCP requests; mount it (e.g. at `/mcp`) in an
/// axum router. `allowed_hosts` guards against DNS rebinding: the `Host` headers accepted
/// (loopback names by default; add the names clients use when binding elsewhere). A plain
/// stateless `tools/call` is answered in line, everything else by rmcp (see [`McpHttpService`]).
pub fn streamable_http_service(server: ToolServer, allowed_hosts: &[String]) -> McpHttpService {
    // A plain JSON answer when the tool sends nothing before its result (rmcp falls back to
    // SSE as soon as a progress notification comes first): less framing per call.
    let mut config = StreamableHttpServerConfig::default().with_json_response(true);
    if !allowed_hosts.is_empty() {
        let hosts: Vec<String> = config.allowed_hosts.iter().chain(allowed_hosts).cloned().collect();
        config = config.with_allowed_hosts(hosts);
    }
    let hosts = config.allowed_hosts.clone();
    let served = server.clone();
    let rmcp = StreamableHttpService::new(
        move || Ok(served.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    McpHttpService::new(server, rmcp, &hosts)
}

/// Decides whether a request's `Authorization` header may use the server (`None`: no header).
pub type Authorize = Arc<dyn Fn(Option<&http::HeaderValue>) -> bool + Send + Sync>;

/// Serves `server` over streamable HTTP at `/mcp` on `listener` until `shutdown` resolves.
/// With `authorize`, a request it refuses gets 401 (`WWW-Authenticate: Bearer`) and a JSON-RPC
/// error, before any MCP handling; the header itself is never logged.
/// Responses go out at once (`TCP_NODELAY`): an MCP answer is a few small writes, which Nagle's
/// algorithm and delayed ACKs would otherwise hold back by up to 40 ms each.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    server: ToolServer,
    allowed_hosts: &[String],
    authorize: Option<Authorize>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::response::IntoResponse;
    use axum::serve::ListenerExt;
    let mut app = axum::Router::new().nest_service("/mcp", streamable_http_service(server, allowed_hosts));
    if let Some(authorize) = authorize {
        app = app.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let allowed = authorize(req.headers().get(http::header::AUTHORIZATION));
                async move {
                    if allowed {
                        return next.run(req).await;
                    }
                    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32001,
                        "message": "missing or unknown API key: send `Authorization: Bearer KEY`"}});
                    (
                        http::StatusCode::UNAUTHORIZED,
                        [(http::header::WWW_AUTHENTICATE, "Bearer")],
                        axum::Json(body),
                    )
                        .into_response()
                }
            },
        ));
    }
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

impl tower_service::Service<Request<Body>> for McpHttpService {
    type Response = McpResponse;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<McpResponse, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(request).await) })
    }
}

/// The value of a header given exactly once, as text.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// One `Accept` header, without parameters or quotes, naming both JSON and SSE.
fn accepts_json_and_sse(headers: &HeaderMap) -> bool {
    let Some(accept) = single(headers, ACCEPT.as_str()) else {
        return false;
    };
    if accept.contains([';', '"']) {
        return false;
    }
    let mut json = false;
    let mut sse = false;
    for essence in accept.split(',').map(str::trim) {
        json |= essence.eq_ignore_ascii_case("application/json");
        sse |= essence.eq_ignore_ascii_case("text/event-stream");
    }
    json && sse
}

fn plain_text(status: StatusCode, text: String) -> McpResponse {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(text)).boxed())
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn accept_must_name_both_types_plainly() {
        assert!(accepts_json_and_sse(&headers(&[(
            "accept",
            "application/json, text/event-stream"
        )])));
        assert!(accepts_json_and_sse(&headers(&[(
            "accept",
            "Text/Event-Stream,APPLICATION/JSON"
        )])));
        assert!(!accepts_json_and_sse(&headers(&[("accept", "application/json")])));
        // Parameters (a zero weight, say) are rmcp's to judge.
        assert!(!accepts_json_and_sse(&headers(&[(
            "accept",
            "application/json;q=0, text/event-stream"
        )])));
        // Two headers: rmcp's.
        assert!(!accepts_json_and_sse(&headers(&[
            ("accept", "application/json"),
            ("accept", "text/event-stream")
        ])));
    }

    #[test]
    fn a_header_given_twice_is_not_single() {
        let h = headers(&[("mcp-method", "tools/call"), ("mcp-method", "tools/call")]);
        assert_eq!(single(&h, "mcp-method"), None);
        assert_eq!(
            single(&headers(&[("mcp-method", "tools/call")]), "mcp-method"),
            Some("tools/call")
        );
        assert_eq!(single(&h, "mcp-name"), None);
    }
}
