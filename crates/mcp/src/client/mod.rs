//! One MCP server's connection.
//!
//! An HTTP server that speaks the stateless protocol (MCP 2026-07-28, found with one
//! `server/discover` on first use) gets the direct client of [`crate::direct`]: a call is one
//! POST, read in the caller's task; nothing to open, pool or restart.
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
    /// A pooled HTTP server's direct client, once `server/discover` said it speaks the
    /// stateless protocol (`None` inside: it does not, use the slots).
    stateless: tokio::sync::OnceCell<Option<Direct>>,
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
                stateless: tokio::sync::OnceCell::new(),
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
        let direct = self.inner.direct().await.map_err(|e| McpError::Connect {
            server: self.name().to_owned(),
            reason: e.0,
        })?;
        if direct.is_some() {
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
        if let Some(direct) = self.inner.direct().await.map_err(|e| err(e.0))? {
            return direct.list_tools().await.map_err(|e| err(e.to_string()));
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
                SessionMode::Pooled => match inner.direct().await {
                    Ok(Some(direct)) => inner.call_direct(direct, tool, &arguments, ctx).await,
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
            connections_opened: match self.inner.stateless.get() {
                Some(Some(direct)) => direct.connections_opened(),
                _ => 0,
            },
        }
    }

    /// Whether calls go to the server's stateless protocol, one POST each (known once the
    /// client has connected or made its first call).
    pub fn is_stateless(&self) -> bool {
        matches!(self.inner.stateless.get(), Some(Some(_)))
    }

    /// Closes every pooled session (stdio servers exit) and stops listening for changes.
    pub async fn shutdown(&self) {
        if let Some(Some(direct)) = self.inner.stateless.get() {
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

    /// A pooled HTTP server's direct client, or `None` when calls use sessions (a stdio
    /// server, `per_call`, or a server without the stateless protocol). Asked once; while the
    /// server cannot be reached, with the configured retries and backoff.
    async fn direct(&self) -> Result<Option<&Direct>, ToolError> {
        let McpTransport::Http { url } = &self.config.transport else {
            return Ok(None);
        };
        if self.config.session != SessionMode::Pooled || !self.config.stateless {
            return Ok(None);
        }
        let found = self.stateless.get_or_try_init(|| async {
            let name = &self.config.name;
            let mut last = String::new();
            for attempt in 0..=self.config.retries {
                if attempt > 0 {
                    tokio::time::sleep(self.config.backoff_for(attempt)).await;
                }
                match direct::discover(&self.config, url, Arc::clone(&self.tools_changed)).await {
                    Ok(Discovered::Stateless(d)) => {
                        tracing::info!(server = %name, "MCP server speaks the stateless protocol: one POST per call");
                        return Ok(Some(d));
                    }
                    Ok(Discovered::Legacy(reason)) => {
                        tracing::info!(server = %name, %reason, "MCP server without the stateless protocol: pooled sessions");
                        return Ok(None);
                    }
                    Err(e @ (Failure::NotSent(_) | Failure::Lost(_))) => {
                        tracing::warn!(server = %name, attempt, error = %e, "MCP connect failed");
                        last = e.to_string();
                    }
                    Err(e) => return Err(self.server_error(e)),
                }
            }
            Err(self.server_error(format!("{last} (gave up after {} attempts)", self.config.retries + 1)))
        });
        Ok(found.await?.as_ref())
    }

    /// One call over the direct client; resent (with the configured retries and backoff) only
    /// while nothing reached the server.
    async fn call_direct(
        &self,
        direct: &Direct,
        tool: &str,
        arguments: &Metadata,
        ctx: &ToolContext,
    ) -> Result<(Value, Option<Duration>), ToolError> {
        let mut pending = CountIfDropped {
            stats: &self.stats,
            answered: false,
        };
        let mut attempt = 0;
        let answer = loop {
            match direct.call(tool, arguments, ctx).await {
                Err(Failure::NotSent(e)) if attempt < self.config.retries => {
                    tracing::warn!(server = %self.config.name, attempt, error = %e, "MCP call not sent; retrying");
                    attempt += 1;
                    tokio::time::sleep(self.config.backoff_for(attempt)).await;
                }
                other => break other,
            }
        };
        pending.answered = true;
        match answer {
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
        }
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
