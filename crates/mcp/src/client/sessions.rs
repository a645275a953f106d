//! The session path: rmcp's client sessions, for stdio servers, HTTP servers without the
//! stateless protocol, and `per_call`. A pool slot holds one session, reopened (with retries and
//! doubling backoff) after its server died; a call sends one request on it, forwards its
//! progress, and tells the server to cancel when it is dropped.

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use aether_contracts::Metadata;
use aether_tools::{ToolContext, ToolError};
use futures::{FutureExt, StreamExt};
use parking_lot::RwLock;
use rmcp::handler::client::progress::ProgressDispatcher;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CancelledNotificationParam, ClientCapabilities, ClientConfig,
    ClientRequest, Implementation, ProgressNotificationParam, RequestId, RequestMetaObject, ServerResult,
};
use rmcp::service::{NotificationContext, Peer, PeerRequestOptions, RunningService, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::sync::Notify;

use super::{Inner, Stats};
use crate::config::McpTransport;
use crate::http_client::{ensure_tls_provider, HeaderClient};
use crate::{McpError, META_CALL_ID, META_SESSION_ID, META_TASK_ID, META_USER_ID};
/// Longest wait, after a call's answer, for its last progress notifications (only when the
/// ones seen fell short of the announced total).
const PROGRESS_STRAGGLER_WAIT: Duration = Duration::from_millis(25);

/// Receives the server's notifications for one session.
pub(super) struct Handler {
    info: ClientConfig,
    progress: ProgressDispatcher,
    tools_changed: Arc<Notify>,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    async fn on_progress(&self, params: ProgressNotificationParam, _ctx: NotificationContext<RoleClient>) {
        self.progress.handle_notification(params).await;
    }

    async fn on_tool_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        self.tools_changed.notify_one();
    }
}

/// One open session.
pub(super) struct Session {
    pub(super) service: RunningService<RoleClient, Handler>,
    progress: ProgressDispatcher,
    /// The process of a stdio server.
    pub(super) pid: Option<u32>,
}

impl Session {
    fn peer(&self) -> &Peer<RoleClient> {
        self.service.peer()
    }
}

/// A pool slot: the session (if open) and a lock that lets one call at a time reopen it.
#[derive(Default)]
pub(super) struct Slot {
    pub(super) session: RwLock<Option<Arc<Session>>>,
    opening: tokio::sync::Mutex<()>,
    /// A session was open here before: opening another is a restart.
    was_open: std::sync::atomic::AtomicBool,
}

/// Tells the server to cancel a request that was dropped before its answer. Borrows, so a call
/// that gets its answer copies nothing.
struct CancelOnDrop<'a> {
    peer: &'a Peer<RoleClient>,
    id: Option<RequestId>,
    stats: &'a Stats,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
        let peer = self.peer.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let reason = Some("cancelled by the caller (turn cancelled or timed out)".to_owned());
                let _ = peer
                    .notify_cancelled(CancelledNotificationParam::new(Some(id), reason))
                    .await;
            });
        }
    }
}

impl Inner {
    /// Opens one session: spawn or connect, then the MCP handshake.
    pub(super) async fn open(&self) -> Result<Session, McpError> {
        let name = &self.config.name;
        let fail = |reason: String| McpError::Connect {
            server: name.clone(),
            reason,
        };
        let progress = ProgressDispatcher::new();
        let handler = Handler {
            info: ClientConfig::new(
                ClientCapabilities::default(),
                Implementation::new("aether-frame", env!("CARGO_PKG_VERSION")),
            ),
            progress: progress.clone(),
            tools_changed: Arc::clone(&self.tools_changed),
        };
        let (service, pid) = match &self.config.transport {
            McpTransport::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(args).envs(env).kill_on_drop(true);
                if let Some(dir) = cwd {
                    cmd.current_dir(dir);
                }
                let (proc, stderr) = TokioChildProcess::builder(cmd)
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| fail(format!("cannot start `{command}`: {e}")))?;
                let pid = proc.id();
                if let Some(stderr) = stderr {
                    let server = name.clone();
                    tokio::spawn(async move {
                        let mut lines = tokio::io::BufReader::new(stderr).lines();
                        while let Ok(Some(line)) = lines.next_line().await {
                            tracing::debug!(target: "aether_mcp::server_stderr", server = %server, "{line}");
                        }
                    });
                }
                let service = handler
                    .serve(proc)
                    .await
                    .map_err(|e| fail(format!("handshake with `{command}` failed: {e}")))?;
                (service, pid)
            }
            McpTransport::Http { url } => {
                ensure_tls_provider();
                let inner = reqwest_mcp::Client::builder()
                    .connect_timeout(self.config.timeout.min(Duration::from_secs(10)))
                    .tcp_nodelay(true)
                    .pool_idle_timeout(Duration::from_secs(90))
                    .build()
                    .map_err(|e| fail(format!("cannot build the HTTP client: {e}")))?;
                let mut cfg = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                for (k, v) in &self.config.headers {
                    // Validated with the config.
                    if let (Ok(k), Ok(v)) = (
                        http::HeaderName::from_bytes(k.as_bytes()),
                        http::HeaderValue::from_str(v),
                    ) {
                        cfg.custom_headers.insert(k, v);
                    }
                }
                let transport = StreamableHttpClientTransport::with_client(HeaderClient { inner }, cfg);
                let service = handler
                    .serve(transport)
                    .await
                    .map_err(|e| fail(format!("handshake with {url} failed: {e}")))?;
                (service, None)
            }
        };
        self.stats.sessions_opened.fetch_add(1, Ordering::Relaxed);
        Ok(Session { service, progress, pid })
    }

    /// The slot's session, opened (with retries and backoff) when it has none or it died.
    pub(super) async fn session_in(&self, slot: &Slot) -> Result<Arc<Session>, ToolError> {
        if let Some(s) = slot.session.read().as_ref().filter(|s| !s.service.is_closed()) {
            return Ok(Arc::clone(s));
        }
        let _opening = slot.opening.lock().await;
        // Another call may have reopened it while this one waited.
        let previous = slot.session.read().clone();
        if let Some(s) = previous.as_ref().filter(|s| !s.service.is_closed()) {
            return Ok(Arc::clone(s));
        }
        let mut last = String::new();
        for attempt in 0..=self.config.retries {
            if attempt > 0 {
                tokio::time::sleep(self.config.backoff_for(attempt)).await;
            }
            match self.open().await {
                Ok(s) => {
                    let s = Arc::new(s);
                    if slot.was_open.swap(true, Ordering::Relaxed) {
                        self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(server = %self.config.name, attempt, "MCP session reopened");
                    }
                    *slot.session.write() = Some(Arc::clone(&s));
                    return Ok(s);
                }
                Err(e) => {
                    tracing::warn!(server = %self.config.name, attempt, error = %e, "MCP connect failed");
                    last = e.to_string();
                }
            }
        }
        Err(ToolError::new(format!(
            "{last} (gave up after {} attempts)",
            self.config.retries + 1
        )))
    }

    /// Forgets `dead` if the slot still holds it, so the next call reopens.
    pub(super) fn discard(&self, slot: &Slot, dead: &Arc<Session>) {
        let mut held = slot.session.write();
        if held.as_ref().is_some_and(|s| Arc::ptr_eq(s, dead)) {
            *held = None;
        }
    }

    pub(super) async fn call_pooled(
        &self,
        tool: &str,
        arguments: Metadata,
        ctx: &ToolContext,
    ) -> Result<(Value, Option<Duration>), ToolError> {
        let n = self.slots.len();
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % n];
        // One more try when the request could not even be sent (the session was already dead):
        // nothing reached the server, so resending is safe.
        for _ in 0..2 {
            let session = self.session_in(slot).await?;
            match self.call_on(&session, tool, &arguments, ctx).await {
                Err(CallError::NotSent) => self.discard(slot, &session),
                Err(CallError::Lost) => {
                    self.discard(slot, &session);
                    return Err(self.server_error(format!(
                        "the connection closed while `{tool}` was running (did the server crash?); \
                         the session is reopened on the next call"
                    )));
                }
                Err(CallError::Failed(e)) => return Err(e),
                Ok(v) => return Ok(v),
            }
        }
        Err(self.server_error("the session closed before the call could be sent"))
    }

    /// Sends one `tools/call` on `session` and waits for its answer, forwarding progress.
    pub(super) async fn call_on(
        &self,
        session: &Session,
        tool: &str,
        arguments: &Metadata,
        ctx: &ToolContext,
    ) -> Result<(Value, Option<Duration>), CallError> {
        let mut meta = RequestMetaObject::new();
        let ids = [
            (META_TASK_ID, Some(&ctx.task_id)),
            (META_SESSION_ID, Some(&ctx.session_id)),
            (META_CALL_ID, Some(&ctx.call_id)),
            (META_USER_ID, ctx.user_id.as_ref()),
        ];
        for (key, value) in ids {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                meta.0 .0.insert(key.to_owned(), Value::from(&**v));
            }
        }
        // The caller's trace (the `execute_tool` span is current) continues at the server.
        if let Some(tp) = aether_contracts::trace::traceparent() {
            meta.0
                 .0
                .insert(aether_contracts::trace::TRACEPARENT.to_owned(), Value::from(tp));
        }
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments.clone());
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let mut options = PeerRequestOptions::no_options();
        options.meta = Some(meta);
        let peer = session.peer();
        let handle = match peer.send_request_with_option(request, options).await {
            Ok(h) => h,
            Err(ServiceError::TransportClosed) => return Err(CallError::NotSent),
            Err(e) => return Err(CallError::Failed(self.server_error(e))),
        };
        let mut guard = CancelOnDrop {
            peer,
            id: Some(handle.id.clone()),
            stats: &self.stats,
        };
        let mut progress = match &ctx.progress {
            Some(_) => Some(session.progress.subscribe(handle.progress_token.clone()).await),
            None => None,
        };
        let answer = handle.await_response();
        tokio::pin!(answer);
        let mut last: Option<(f64, Option<f64>)> = None;
        let forward = |p: ProgressNotificationParam, last: &mut Option<(f64, Option<f64>)>| {
            *last = Some((p.progress, p.total));
            ctx.report_progress(p.progress, p.total, p.message);
        };
        let answer = loop {
            tokio::select! {
                r = &mut answer => break r,
                Some(p) = async { match progress.as_mut() { Some(s) => s.next().await, None => None } } => {
                    forward(p, &mut last);
                }
            }
        };
        guard.id = None;

        // rmcp hands notifications to spawned tasks, so the last updates can trail the answer
        // (by about a millisecond). Take what has arrived; when the server said how much work
        // there is and the last update fell short, wait a little for the rest.
        if let Some(sub) = progress.as_mut() {
            let deadline = tokio::time::Instant::now() + PROGRESS_STRAGGLER_WAIT;
            loop {
                let short = matches!(last, Some((done, Some(total))) if done < total);
                let next = if short {
                    tokio::time::timeout_at(deadline, sub.next()).await.ok().flatten()
                } else {
                    sub.next().now_or_never().flatten()
                };
                match next {
                    Some(p) => forward(p, &mut last),
                    None => break,
                }
            }
        }
        match answer {
            Ok(ServerResult::CallToolResult(r)) => self.result_value(tool, r).map_err(CallError::Failed),
            Ok(other) => Err(CallError::Failed(self.server_error(format!(
                "`{tool}` answered with an unsupported result ({}); Aether supports complete results only",
                result_kind(&other)
            )))),
            Err(ServiceError::TransportClosed) => Err(CallError::Lost),
            Err(ServiceError::McpError(e)) => Err(CallError::Failed(
                self.server_error(format!("`{tool}` was rejected: {} (code {})", e.message, e.code.0)),
            )),
            Err(e) => Err(CallError::Failed(self.server_error(format!("`{tool}` failed: {e}")))),
        }
    }
}

fn result_kind(r: &ServerResult) -> &'static str {
    match r {
        ServerResult::InputRequiredResult(_) => "input required",
        ServerResult::CreateTaskResult(_) => "a task",
        _ => "another result type",
    }
}

pub(super) enum CallError {
    /// The session was closed before the request went out.
    NotSent,
    /// The session closed while the request was out.
    Lost,
    Failed(ToolError),
}
