//! The registry's tools as an MCP server (`aether mcp-serve`), over stdio or streamable HTTP.
//!
//! Tools keep their full names (`builtin.echo`, `demo.crm_lookup`). Arguments are checked
//! against the tool's schema; a failed check or a failed tool is an `isError` result (the model
//! can read it and retry), an unknown tool a JSON-RPC error. A request with a progress token
//! gets the tool's progress as `notifications/progress`; `notifications/cancelled` stops the
//! tool. Each result's `_meta` carries the tool's own run time (`aether/execution_us`), so a
//! client can tell protocol overhead from tool time. Each call runs in a server span that
//! continues the caller's trace (`server_span`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use aether_tools::{no_id, ProgressSink, RegisteredTool, ToolContext};
use opentelemetry::context::FutureExt as _;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode, ErrorData, Implementation,
    InitializeResult, ListToolsResult, MetaObject, PaginatedRequestParams, ProgressNotificationParam,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use serde_json::{json, Value};

use crate::{McpError, META_CALL_ID, META_EXECUTION_US, META_SESSION_ID, META_TASK_ID, META_USER_ID};

/// Progress updates of one call that may wait to be sent.
const PROGRESS_BUFFER: usize = 64;

/// A served tool and its MCP declaration.
type Served = (Arc<RegisteredTool>, Tool);

/// Serves a fixed set of tools. Cheap to clone (one per HTTP session).
#[derive(Clone)]
pub struct ToolServer {
    /// The MCP declarations, sorted by name, built once.
    tools: Arc<Vec<Tool>>,
    by_name: Arc<HashMap<Arc<str>, Served>>,
    page_size: usize,
    stats: Arc<ServerStats>,
}

/// Counters of a [`ToolServer`] (shared by its clones).
#[derive(Debug, Default)]
pub struct ServerStats {
    pub calls: AtomicU64,
    /// Calls stopped by the client's `notifications/cancelled`.
    pub cancelled: AtomicU64,
    pub progress_sent: AtomicU64,
}

impl ToolServer {
    /// Serves `tools`, listing them `page_size` per page.
    pub fn new(mut tools: Vec<Arc<RegisteredTool>>, page_size: usize) -> Self {
        tools.sort_by(|a, b| a.full_name.cmp(&b.full_name));
        let declared: Vec<Tool> = tools.iter().map(|t| Self::mcp_tool(t)).collect();
        let by_name = tools
            .iter()
            .zip(&declared)
            .map(|(t, d)| (Arc::clone(&t.full_name), (Arc::clone(t), d.clone())))
            .collect();
        Self {
            tools: Arc::new(declared),
            by_name: Arc::new(by_name),
            page_size: page_size.max(1),
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    fn mcp_tool(t: &RegisteredTool) -> Tool {
        let schema = match &t.spec.parameters_schema {
            Value::Object(o) => o.clone(),
            _ => serde_json::Map::from_iter([("type".to_owned(), Value::from("object"))]),
        };
        Tool::new(t.full_name.to_string(), t.spec.description.clone(), Arc::new(schema))
    }

    fn result(value: Result<Value, String>, micros: u64) -> CallToolResult {
        let mut r = match value {
            Ok(v @ Value::Object(_)) => CallToolResult::structured(v),
            Ok(v) => CallToolResult::structured(json!({ "result": v })),
            Err(message) => CallToolResult::error(vec![ContentBlock::text(message)]),
        };
        let mut meta = MetaObject::default();
        meta.0.insert(META_EXECUTION_US.to_owned(), Value::from(micros));
        r.meta = Some(meta);
        r
    }
}

impl ServerHandler for ToolServer {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("aether-frame", env!("CARGO_PKG_VERSION")))
            .with_instructions("Aether Frame's tools: built-in and demo tools, named namespace.name.")
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let start = match request.and_then(|r| r.cursor) {
            None => 0,
            Some(c) => c
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= self.tools.len())
                .ok_or_else(|| ErrorData::invalid_params(format!("invalid cursor `{c}`"), None))?,
        };
        let end = (start + self.page_size).min(self.tools.len());
        let mut page = ListToolsResult::with_all_items(self.tools[start..end].to_vec());
        if end < self.tools.len() {
            page.next_cursor = Some(end.to_string());
        }
        Ok(page)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        // rmcp asks for every HTTP request, to check headers against the schema.
        self.by_name.get(name).map(|(_, declared)| declared.clone())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(tool) = self.by_name.get(request.name.as_ref()).map(|(t, _)| Arc::clone(t)) else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool `{}`", request.name),
                None,
            ));
        };
        let span = crate::server_span::start(&tool, &context);
        let params = request.arguments.unwrap_or_default();
        if let Err(msg) = tool.validate(&params) {
            let msg = format!("invalid parameters for `{}`: {msg}", tool.full_name);
            crate::server_span::end(span, Some("tool_error"));
            return Ok(Self::result(Err(msg), 0).into());
        }
        let meta = &context.meta;
        let id = |key: &str| meta.get(key).and_then(Value::as_str).map(Arc::<str>::from);
        let (progress, forwarder) = match meta.get_progress_token() {
            Some(token) => {
                let (sink, mut updates) = ProgressSink::channel(PROGRESS_BUFFER);
                let peer = context.peer.clone();
                let stats = Arc::clone(&self.stats);
                let forwarder = tokio::spawn(async move {
                    while let Some(u) = updates.recv().await {
                        let mut p = ProgressNotificationParam::new(token.clone(), u.progress);
                        p.total = u.total;
                        p.message = u.message;
                        if peer.notify_progress(p).await.is_ok() {
                            stats.progress_sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
                (Some(sink), Some(forwarder))
            }
            None => (None, None),
        };
        let ctx = ToolContext {
            task_id: id(META_TASK_ID).unwrap_or_else(no_id),
            session_id: id(META_SESSION_ID).unwrap_or_else(no_id),
            call_id: id(META_CALL_ID).unwrap_or_else(|| Arc::from(context.id.to_string())),
            user_id: id(META_USER_ID),
            progress,
        };
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let outcome = {
            // The tool runs in the call's span, so whatever it traces is its child.
            let invoke = match &span {
                Some(cx) => futures::future::Either::Left(tool.invoke(params, ctx).with_context(cx.clone())),
                None => futures::future::Either::Right(tool.invoke(params, ctx)),
            };
            tokio::pin!(invoke);
            let r = tokio::select! {
                r = &mut invoke => Some(r),
                _ = context.ct.cancelled() => None,
            };
            if r.is_none() {
                // Counted before the tool is dropped, so whoever sees it stop sees the count.
                self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
            }
            r
        };
        let micros = started.elapsed().as_micros() as u64;
        // The tool (and its progress sink) is gone: send its last updates before the result.
        if let Some(f) = forwarder {
            let _ = f.await;
        }
        let error = match &outcome {
            Some(Ok(_)) => None,
            Some(Err(_)) => Some("tool_error"),
            None => Some("-32603"),
        };
        crate::server_span::end(span, error);
        match outcome {
            Some(r) => Ok(Self::result(r.map_err(|e| e.0), micros).into()),
            None => {
                tracing::info!(tool = %tool.full_name, "MCP tool call cancelled by the client");
                Err(ErrorData::new(
                    ErrorCode::INTERNAL_ERROR,
                    format!("`{}` was cancelled by the client", tool.full_name),
                    None,
                ))
            }
        }
    }
}

/// Serves `server` on this process's stdin and stdout until the client closes them.
pub async fn serve_stdio(server: ToolServer) -> Result<(), McpError> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| McpError::Serve(format!("stdio handshake failed: {e}")))?;
    running.waiting().await.map_err(|e| McpError::Serve(e.to_string()))?;
    Ok(())
}

/// A tower service answering streamable-HTTP MCP requests; mount it (e.g. at `/mcp`) in an
/// axum router. `allowed_hosts` guards against DNS rebinding: the `Host` headers accepted
/// (loopback names by default; add the names clients use when binding elsewhere).
pub fn streamable_http_service(
    server: ToolServer,
    allowed_hosts: &[String],
) -> StreamableHttpService<ToolServer, LocalSessionManager> {
    // A plain JSON answer when the tool sends nothing before its result (rmcp falls back to
    // SSE as soon as a progress notification comes first): less framing per call.
    let mut config = StreamableHttpServerConfig::default().with_json_response(true);
    if !allowed_hosts.is_empty() {
        let hosts: Vec<String> = config.allowed_hosts.iter().chain(allowed_hosts).cloned().collect();
        config = config.with_allowed_hosts(hosts);
    }
    StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    )
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
