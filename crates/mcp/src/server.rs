//! The registry's tools as an MCP server (`aether mcp-serve`): [`ToolServer`], rmcp's handler,
//! served over stdio here and over streamable HTTP by `server_http`.
//!
//! Tools keep their full names (`builtin.echo`, `demo.crm_lookup`). Arguments are checked
//! against the tool's schema; a failed check or a failed tool is an `isError` result (the model
//! can read it and retry), an unknown tool a JSON-RPC error. A request with a progress token
//! gets the tool's progress as `notifications/progress`; `notifications/cancelled` stops the
//! tool. Each result's `_meta` carries the tool's own run time (`aether/execution_us`), so a
//! client can tell protocol overhead from tool time. Each call runs in a server span that
//! continues the caller's trace (`server_span`). `ToolServer::run` is the one path of a call,
//! whichever transport brought it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use aether_tools::{no_id, ProgressSink, RegisteredTool, ToolContext};
use opentelemetry::context::FutureExt as _;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode, ErrorData, Implementation,
    InitializeResult, JsonObject, ListToolsResult, MetaObject, PaginatedRequestParams, ProgressNotificationParam,
    RequestId, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
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
    /// Calls stopped by the client: its `notifications/cancelled`, or (stateless HTTP) its
    /// connection closed before the answer.
    pub cancelled: AtomicU64,
    pub progress_sent: AtomicU64,
    /// Calls answered in the HTTP connection's own task (a plain stateless `tools/call`,
    /// see [`McpHttpService`](crate::McpHttpService)) rather than by rmcp.
    pub answered_inline: AtomicU64,
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

    /// The served tools' MCP declarations, sorted by name.
    pub(crate) fn declared(&self) -> &[Tool] {
        &self.tools
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
        let Some(tool) = self.tool(&request.name) else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool `{}`", request.name),
                None,
            ));
        };
        let headers = context.extensions.get::<http::request::Parts>().map(|p| &p.headers);
        let span = crate::server_span::start(&tool, &context.meta, &context.id, headers);
        let (progress, forwarder) = match context.meta.get_progress_token() {
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
        let ctx = Self::context(&context.meta, &context.id, progress);
        let params = request.arguments.unwrap_or_default();
        let outcome = self.run(&tool, params, ctx, &span, context.ct.cancelled()).await;
        // The tool (and its progress sink) is gone: send its last updates before the result.
        if let Some(f) = forwarder {
            let _ = f.await;
        }
        Self::answer(&tool, span, outcome)
    }
}

/// How one call ended: the tool's value or error and its own run time (µs), or `None` when
/// it was cancelled.
pub(crate) type Ran = Option<(Result<Value, String>, u64)>;

impl ToolServer {
    /// The served tool named `name`.
    pub(crate) fn tool(&self, name: &str) -> Option<Arc<RegisteredTool>> {
        self.by_name.get(name).map(|(t, _)| Arc::clone(t))
    }

    /// The tool's context: who the call is for, from the request's `_meta` (the call id falls
    /// back to the JSON-RPC request id).
    pub(crate) fn context(meta: &MetaObject, request: &RequestId, progress: Option<ProgressSink>) -> ToolContext {
        let id = |key: &str| meta.get(key).and_then(Value::as_str).map(Arc::<str>::from);
        ToolContext {
            task_id: id(META_TASK_ID).unwrap_or_else(no_id),
            session_id: id(META_SESSION_ID).unwrap_or_else(no_id),
            call_id: id(META_CALL_ID).unwrap_or_else(|| Arc::from(request.to_string())),
            user_id: id(META_USER_ID),
            progress,
        }
    }

    /// Checks `params` against the tool's schema and runs it in `span` until it ends or `stop`
    /// resolves (the client cancelled). A call dropped before either (its HTTP client went
    /// away) counts as cancelled too.
    pub(crate) async fn run(
        &self,
        tool: &RegisteredTool,
        params: JsonObject,
        ctx: ToolContext,
        span: &Option<opentelemetry::Context>,
        stop: impl std::future::Future<Output = ()>,
    ) -> Ran {
        if let Err(msg) = tool.validate(&params) {
            return Some((Err(format!("invalid parameters for `{}`: {msg}", tool.full_name)), 0));
        }
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        // The tool runs in the call's span, so whatever it traces is its child.
        let invoke = match span {
            Some(cx) => futures::future::Either::Left(tool.invoke(params, ctx).with_context(cx.clone())),
            None => futures::future::Either::Right(tool.invoke(params, ctx)),
        };
        tokio::pin!(invoke);
        // Declared after `invoke`, so dropped before it: the count is there before the tool
        // stops, for whoever watches it stop.
        let mut pending = CancelledOnDrop(Some(&self.stats.cancelled));
        let r = tokio::select! {
            r = &mut invoke => Some(r),
            _ = stop => None,
        };
        if r.is_some() {
            pending.0 = None;
        }
        drop(pending);
        r.map(|r| (r.map_err(|e| e.0), started.elapsed().as_micros() as u64))
    }

    /// Ends the call's span and makes its answer: an `isError` result for a failed tool, a
    /// JSON-RPC error for a cancelled call.
    pub(crate) fn answer(
        tool: &RegisteredTool,
        span: Option<opentelemetry::Context>,
        outcome: Ran,
    ) -> Result<CallToolResponse, ErrorData> {
        let error = match &outcome {
            Some((Ok(_), _)) => None,
            Some((Err(_), _)) => Some("tool_error"),
            None => Some("-32603"),
        };
        crate::server_span::end(span, error);
        match outcome {
            Some((r, micros)) => Ok(Self::result(r, micros).into()),
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

/// Counts a call as cancelled when dropped still armed.
struct CancelledOnDrop<'a>(Option<&'a AtomicU64>);

impl Drop for CancelledOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0 {
            c.fetch_add(1, Ordering::Relaxed);
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
