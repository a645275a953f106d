//! One MCP server's connection.
//!
//! An HTTP server that speaks the stateless protocol (MCP 2026-07-28, found with one
//! `server/discover` on first use) gets the direct client of `direct`: a call is one
//! POST, read in the caller's task; nothing to open, pool or restart. The answer is not kept
//! for ever: when a direct call is refused the way a server refuses a protocol it does not speak
//! (HTTP 400, 404, 405, 406 or 415 before reading the call, or JSON-RPC `-32022`, unsupported
//! protocol version), the server may have been replaced by another version, so the client asks
//! again (at most once per `REASK_EVERY`), resends the call (it was not run) over what the
//! server now speaks, and tells the hub to list the tools again.
//!
//! Otherwise, sessions. Pooled (the default): `pool_size` sessions are opened on first use and
//! reused by every call; JSON-RPC multiplexes concurrent calls over each, so a call costs one
//! request and its response, never a spawn or a handshake. A session whose server died is
//! reopened by the next call, with the configured retries and doubling backoff; calls that were
//! in flight fail at once with a clear error. `per_call` opens, handshakes and closes a session
//! for every call (stateless servers included): the original's design, kept to measure what
//! pooling saves.
//!
//! A call carries the turn's ids in its request `_meta` (and, over HTTP, as headers), asks for
//! progress when the turn watches, and tells the server to cancel when it is dropped (a
//! cancelled turn, a timeout).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_contracts::Metadata;
use aether_tools::{ToolContext, ToolError};
use rmcp::model::{CallToolResult, Tool};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::config::{McpServerConfig, McpTransport, SessionMode};
use crate::direct::{self, Direct, Discovered, Failure};
use crate::{McpError, META_EXECUTION_US};

use sessions::{CallError, Slot};

mod sessions;

/// Counters of one server.
#[derive(Default)]
struct Stats {
    calls: AtomicU64,
    failed: AtomicU64,
    sessions_opened: AtomicU64,
    restarts: AtomicU64,
    cancelled: AtomicU64,
    rediscovered: AtomicU64,
}

/// The least time between two re-asks of `server/discover` (a server that refuses every call
/// with 400 is asked once per period, not once per call).
pub(crate) const REASK_EVERY: Duration = Duration::from_secs(5);

/// What `server/discover` said of a pooled HTTP server.
enum Protocol {
    /// The stateless protocol: one POST per call.
    Stateless(Direct),
    /// Not the stateless protocol: the pooled sessions.
    Sessions,
}

/// A snapshot of one server's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct McpStatsSnapshot {
    pub calls: u64,
    pub failed: u64,
    /// Sessions opened (handshakes), first ones and reopenings.
    pub sessions_opened: u64,
    /// Sessions reopened after their server died.
    pub restarts: u64,
    /// Calls dropped before their answer (the server was told to cancel).
    pub cancelled: u64,
    /// Times `server/discover` was asked again after a direct call was refused as the wrong
    /// protocol (see the module header).
    pub rediscovered: u64,
    /// HTTP connections the stateless client opened (steady while they are reused; rmcp's
    /// sessions keep their own).
    pub connections_opened: u64,
}

/// What a call returned, with its timing (for the harness).
#[derive(Debug, Clone)]
pub struct CallOutcome {
    pub result: Result<Value, ToolError>,
    /// Time from sending the call to its answer, as the client saw it.
    pub elapsed: Duration,
    /// The tool's own run time, when the server reports it (`aether mcp-serve` does).
    pub server_time: Option<Duration>,
}

/// A configured MCP server: its direct client or session pool, and counters. Cheap to clone.
#[derive(Clone)]
pub struct McpClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: McpServerConfig,
    /// What `server/discover` last said of a pooled HTTP server (`None` until asked); replaced
    /// whole when it is asked again. Read with one atomic load per call.
    protocol: arc_swap::ArcSwapOption<Protocol>,
    /// Held while `server/discover` is asked, so that concurrent calls ask once; holds when it
    /// was last asked again.
    asking: tokio::sync::Mutex<Option<Instant>>,
    slots: Vec<Slot>,
    next: AtomicUsize,
    tools_changed: Arc<Notify>,
    /// Counts the tool-list refreshes the hub completed (the first listing is 1).
    tools_generation: tokio::sync::watch::Sender<u64>,
    stats: Stats,
}

impl McpClient {
    /// A client for `config`; nothing is opened until [`Self::connect`] or the first call.
    pub fn new(config: McpServerConfig) -> Result<Self, McpError> {
        config.validate()?;
        let pool = match config.session {
            SessionMode::Pooled => config.pool_size,
            SessionMode::PerCall => 0,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                slots: (0..pool).map(|_| Slot::default()).collect(),
                protocol: arc_swap::ArcSwapOption::empty(),
                asking: tokio::sync::Mutex::new(None),
                config,
                next: AtomicUsize::new(0),
                tools_changed: Arc::new(Notify::new()),
                tools_generation: tokio::sync::watch::Sender::new(0),
                stats: Stats::default(),
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    pub fn config(&self) -> &McpServerConfig {
        &self.inner.config
    }

    /// Connects now, so a bad command or URL fails at start-up, not on the first call: asks an
    /// HTTP server whether it speaks the stateless protocol (and subscribes to its tool-list
    /// changes when it does), else opens the pooled sessions; per-call mode opens and closes
    /// one to check the server.
    pub async fn connect(&self) -> Result<(), McpError> {
        let protocol = self.inner.protocol().await.map_err(|e| McpError::Connect {
            server: self.name().to_owned(),
            reason: e.0,
        })?;
        if protocol.as_deref().is_some_and(|p| matches!(p, Protocol::Stateless(_))) {
            return Ok(());
        }
        if self.inner.slots.is_empty() {
            let mut s = self.inner.open().await?;
            let _ = s.service.close().await;
            return Ok(());
        }
        for slot in &self.inner.slots {
            self.inner.session_in(slot).await.map_err(|e| McpError::Connect {
                server: self.name().to_owned(),
                reason: e.0,
            })?;
        }
        Ok(())
    }

    /// Every tool of the server, all pages.
    pub async fn list_tools(&self) -> Result<Vec<Tool>, McpError> {
        let err = |reason: String| McpError::Tools {
            server: self.name().to_owned(),
            reason,
        };
        if let Some(p) = self.inner.protocol().await.map_err(|e| err(e.0))? {
            if let Protocol::Stateless(direct) = &*p {
                return direct.list_tools().await.map_err(|e| err(e.to_string()));
            }
        }
        match self.inner.slots.first() {
            Some(slot) => {
                let s = self.inner.session_in(slot).await.map_err(|e| err(e.0))?;
                s.service.list_all_tools().await.map_err(|e| err(e.to_string()))
            }
            None => {
                let mut s = self.inner.open().await?;
                let tools = s.service.list_all_tools().await.map_err(|e| err(e.to_string()));
                let _ = s.service.close().await;
                tools
            }
        }
    }

    /// Watches the number of completed tool-list refreshes (see [`crate::McpHub`]).
    pub fn tools_generation(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.tools_generation.subscribe()
    }

    pub(crate) fn tools_refreshed(&self) {
        self.inner.tools_generation.send_modify(|g| *g += 1);
    }

    /// Resolves when the server says its tool list changed (at most one wake-up is stored).
    pub async fn tools_changed(&self) {
        self.inner.tools_changed.notified().await;
    }

    /// Calls `tool` (the server's own name for it) with `arguments`.
    pub async fn call(&self, tool: &str, arguments: Metadata, ctx: &ToolContext) -> Result<Value, ToolError> {
        self.call_timed(tool, arguments, ctx).await.result
    }

    /// [`Self::call`], with the time the call took and the server's own time for it.
    pub async fn call_timed(&self, tool: &str, arguments: Metadata, ctx: &ToolContext) -> CallOutcome {
        self.call_within(tool, arguments, ctx, Some(self.inner.config.timeout))
            .await
    }

    /// A call under `timeout` (`None`: the caller enforces one, as the tool executor does).
    pub(crate) async fn call_within(
        &self,
        tool: &str,
        arguments: Metadata,
        ctx: &ToolContext,
        timeout: Option<Duration>,
    ) -> CallOutcome {
        let inner = &self.inner;
        inner.stats.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let call = async {
            match inner.config.session {
                SessionMode::PerCall => match inner.open().await {
                    Ok(mut session) => {
                        let r = inner.call_on(&session, tool, &arguments, ctx).await;
                        let _ = session.service.close().await;
                        r.map_err(|e| match e {
                            CallError::NotSent | CallError::Lost => {
                                inner.server_error(format!("the connection closed while `{tool}` was running"))
                            }
                            CallError::Failed(e) => e,
                        })
                    }
                    Err(e) => Err(ToolError::new(e.to_string())),
                },
                SessionMode::Pooled => match inner.protocol().await {
                    Ok(Some(p)) => match inner.call_direct(p, tool, &arguments, ctx).await {
                        Some(answer) => answer,
                        None => inner.call_pooled(tool, arguments, ctx).await,
                    },
                    Ok(None) => inner.call_pooled(tool, arguments, ctx).await,
                    Err(e) => Err(e),
                },
            }
        };
        // Dropping the call on timeout tells the server to cancel it.
        let outcome = match timeout {
            None => call.await,
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(r) => r,
                Err(_) => Err(inner.server_error(format!(
                    "`{tool}` timed out after {limit:?} (the server was told to cancel it)"
                ))),
            },
        };
        let elapsed = started.elapsed();
        let (result, server_time) = match outcome {
            Ok((value, server_time)) => (Ok(value), server_time),
            Err(e) => {
                inner.stats.failed.fetch_add(1, Ordering::Relaxed);
                (Err(e), None)
            }
        };
        CallOutcome {
            result,
            elapsed,
            server_time,
        }
    }

    /// The process ids of the stdio server's live sessions (to watch or, in tests, to kill).
    pub fn pids(&self) -> Vec<u32> {
        self.inner
            .slots
            .iter()
            .filter_map(|s| s.session.read().as_ref().and_then(|s| s.pid))
            .collect()
    }

    pub fn stats(&self) -> McpStatsSnapshot {
        let s = &self.inner.stats;
        McpStatsSnapshot {
            calls: s.calls.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            sessions_opened: s.sessions_opened.load(Ordering::Relaxed),
            restarts: s.restarts.load(Ordering::Relaxed),
            cancelled: s.cancelled.load(Ordering::Relaxed),
            rediscovered: s.rediscovered.load(Ordering::Relaxed),
            connections_opened: match self.inner.protocol.load().as_deref() {
                Some(Protocol::Stateless(direct)) => direct.connections_opened(),
                _ => 0,
            },
        }
    }

    /// Whether calls go to the server's stateless protocol, one POST each (known once the
    /// client has connected or made its first call).
    pub fn is_stateless(&self) -> bool {
        matches!(self.inner.protocol.load().as_deref(), Some(Protocol::Stateless(_)))
    }

    /// Closes every pooled session (stdio servers exit) and stops listening for changes.
    pub async fn shutdown(&self) {
        if let Some(Protocol::Stateless(direct)) = self.inner.protocol.load().as_deref() {
            direct.close();
        }
        for slot in &self.inner.slots {
            let taken = slot.session.write().take();
            if let Some(s) = taken {
                if let Ok(mut s) = Arc::try_unwrap(s) {
                    let _ = s.service.close().await;
                }
            }
        }
    }
}

/// Whether a direct call's refusal is how a server refuses a protocol it does not speak (before
/// reading the call, so the call did not run): HTTP 400, 404, 405, 406 or 415, or JSON-RPC
/// `-32022` (unsupported protocol version).
fn refused_as_protocol(f: &Failure) -> bool {
    match f {
        Failure::Status(status, _) => matches!(status, 400 | 404 | 405 | 406 | 415),
        Failure::Rejected(e) => e.code == rmcp::model::ErrorCode::UNSUPPORTED_PROTOCOL_VERSION,
        _ => false,
    }
}

/// Counts a direct call dropped before its answer (its connection closes, so the server
/// cancels it).
struct CountIfDropped<'a> {
    stats: &'a Stats,
    answered: bool,
}

impl Drop for CountIfDropped<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Inner {
    fn server_error(&self, reason: impl std::fmt::Display) -> ToolError {
        ToolError::new(format!("MCP server `{}`: {reason}", self.config.name))
    }

    /// What a pooled HTTP server speaks, asked with `server/discover` on first use; `None` when
    /// calls use sessions without asking (a stdio server, `per_call`, `stateless = false`).
    async fn protocol(&self) -> Result<Option<Arc<Protocol>>, ToolError> {
        let McpTransport::Http { url } = &self.config.transport else {
            return Ok(None);
        };
        if self.config.session != SessionMode::Pooled || !self.config.stateless {
            return Ok(None);
        }
        if let Some(p) = self.protocol.load_full() {
            return Ok(Some(p));
        }
        let _asking = self.asking.lock().await;
        if let Some(p) = self.protocol.load_full() {
            return Ok(Some(p));
        }
        let p = Arc::new(self.discover(url).await?);
        self.protocol.store(Some(Arc::clone(&p)));
        Ok(Some(p))
    }

    /// Asks `server/discover` again because `stale` was refused as the wrong protocol; what the
    /// server speaks now, or `None` when it was asked again less than [`REASK_EVERY`] ago or
    /// cannot say. A caller that finds another call already asked gets that answer.
    async fn reask(&self, stale: &Arc<Protocol>) -> Option<Arc<Protocol>> {
        let McpTransport::Http { url } = &self.config.transport else {
            return None;
        };
        let mut last = self.asking.lock().await;
        if let Some(current) = self.protocol.load_full().filter(|c| !Arc::ptr_eq(c, stale)) {
            return Some(current);
        }
        if last.is_some_and(|t| t.elapsed() < REASK_EVERY) {
            return None;
        }
        *last = Some(Instant::now());
        match self.discover(url).await {
            Ok(p) => {
                let p = Arc::new(p);
                tracing::warn!(
                    server = %self.config.name,
                    stateless = matches!(*p, Protocol::Stateless(_)),
                    "MCP server refused a call as the wrong protocol; asked server/discover again"
                );
                self.protocol.store(Some(Arc::clone(&p)));
                self.stats.rediscovered.fetch_add(1, Ordering::Relaxed);
                // A replaced server may serve other tools: the hub lists them again.
                self.tools_changed.notify_one();
                Some(p)
            }
            Err(e) => {
                tracing::warn!(server = %self.config.name, error = %e.0, "MCP server/discover failed");
                None
            }
        }
    }

    /// `server/discover`, with the configured retries and backoff while the server cannot be
    /// reached.
    async fn discover(&self, url: &str) -> Result<Protocol, ToolError> {
        let name = &self.config.name;
        let mut last = String::new();
        for attempt in 0..=self.config.retries {
            if attempt > 0 {
                tokio::time::sleep(self.config.backoff_for(attempt)).await;
            }
            match direct::discover(&self.config, url, Arc::clone(&self.tools_changed)).await {
                Ok(Discovered::Stateless(d)) => {
                    tracing::info!(server = %name, "MCP server speaks the stateless protocol: one POST per call");
                    return Ok(Protocol::Stateless(d));
                }
                Ok(Discovered::Legacy(reason)) => {
                    tracing::info!(server = %name, %reason, "MCP server without the stateless protocol: pooled sessions");
                    return Ok(Protocol::Sessions);
                }
                Err(e @ (Failure::NotSent(_) | Failure::Lost(_))) => {
                    tracing::warn!(server = %name, attempt, error = %e, "MCP connect failed");
                    last = e.to_string();
                }
                Err(e) => return Err(self.server_error(e)),
            }
        }
        Err(self.server_error(format!("{last} (gave up after {} attempts)", self.config.retries + 1)))
    }

    /// One call over the direct client of `p`; resent (with the configured retries and
    /// backoff) only while nothing reached the server, and once more after the server, asked
    /// again, still speaks the stateless protocol (see the module header). `None`: it no longer
    /// does, and the call (not run) goes to the sessions.
    async fn call_direct(
        &self,
        mut p: Arc<Protocol>,
        tool: &str,
        arguments: &Metadata,
        ctx: &ToolContext,
    ) -> Option<Result<(Value, Option<Duration>), ToolError>> {
        let mut pending = CountIfDropped {
            stats: &self.stats,
            answered: false,
        };
        let mut attempt = 0;
        let mut reasked = false;
        let answer = loop {
            let Protocol::Stateless(direct) = &*p else {
                pending.answered = true;
                return None;
            };
            match direct.call(tool, arguments, ctx).await {
                Err(Failure::NotSent(e)) if attempt < self.config.retries => {
                    tracing::warn!(server = %self.config.name, attempt, error = %e, "MCP call not sent; retrying");
                    attempt += 1;
                    tokio::time::sleep(self.config.backoff_for(attempt)).await;
                }
                Err(f) if !reasked && refused_as_protocol(&f) => {
                    reasked = true;
                    match self.reask(&p).await {
                        Some(now) => p = now,
                        None => break Err(f),
                    }
                }
                other => break other,
            }
        };
        pending.answered = true;
        Some(match answer {
            Ok(r) => self.result_value(tool, r),
            Err(Failure::NotSent(e)) => Err(self.server_error(format!(
                "cannot reach the server: {e} (gave up after {} attempts)",
                attempt + 1
            ))),
            Err(Failure::Lost(e)) => Err(self.server_error(format!(
                "the connection closed while `{tool}` was running (did the server crash?): {e}"
            ))),
            Err(Failure::Rejected(e)) => {
                Err(self.server_error(format!("`{tool}` was rejected: {} (code {})", e.message, e.code.0)))
            }
            Err(e) => Err(self.server_error(format!("`{tool}` failed: {e}"))),
        })
    }

    /// An MCP result as a tool's value: `isError` is a tool error; the structured content if
    /// any, else `{content: [...], text}` with the text parts joined.
    fn result_value(&self, tool: &str, r: CallToolResult) -> Result<(Value, Option<Duration>), ToolError> {
        let server_time = r
            .meta
            .as_ref()
            .and_then(|m| m.get(META_EXECUTION_US))
            .and_then(Value::as_u64)
            .map(Duration::from_micros);
        // The text parts joined; built only where it is used (an error, or no structured content).
        let text = |r: &CallToolResult| {
            r.content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
                .collect::<Vec<_>>()
                .join("\n")
        };
        if r.is_error == Some(true) {
            let mut detail = text(&r);
            if detail.is_empty() {
                detail = r.structured_content.as_ref().map(Value::to_string).unwrap_or_default();
            }
            return Err(self.server_error(format!("`{tool}` returned an error: {detail}")));
        }
        let value = match r.structured_content {
            Some(v) => v,
            None => {
                let text = text(&r);
                json!({ "content": r.content, "text": text })
            }
        };
        Ok((value, server_time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{ErrorCode, ErrorData};

    #[test]
    fn only_a_refusal_before_the_call_is_read_means_the_wrong_protocol() {
        for status in [400, 404, 405, 406, 415] {
            assert!(refused_as_protocol(&Failure::Status(status, String::new())), "{status}");
        }
        // Not the protocol: a refused key, a failing server, a timeout; a call that ran.
        for status in [401, 403, 408, 429, 500, 503] {
            assert!(
                !refused_as_protocol(&Failure::Status(status, String::new())),
                "{status}"
            );
        }
        let unsupported = ErrorData::new(ErrorCode::UNSUPPORTED_PROTOCOL_VERSION, "unsupported", None);
        assert!(refused_as_protocol(&Failure::Rejected(unsupported)));
        let unknown_tool = ErrorData::invalid_params("unknown tool `x`", None);
        assert!(!refused_as_protocol(&Failure::Rejected(unknown_tool)));
        assert!(!refused_as_protocol(&Failure::Lost("reset".into())));
        assert!(!refused_as_protocol(&Failure::NotSent("refused".into())));
    }
}
