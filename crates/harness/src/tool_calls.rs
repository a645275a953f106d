//! What one tool call costs, for `tool_regression`: the in-process baseline (`builtin.echo`
//! through the registry: validation and the call) and every MCP tool of `--tools` the way turns
//! call it (over the stateless protocol, one POST per call, when an HTTP server speaks it; else
//! over its pooled session) and, for comparison, over a new session per call (the original's
//! design) and, for a stateless server, over a pooled session too.
//! Each row has the call time the client saw, the tool's own time when the server reports it
//! (`aether mcp-serve` does, in the result's `_meta`), and their difference: the overhead.
//! Calls run one at a time, before the load phases, so nothing else competes with them.

use std::time::{Duration, Instant};

use aether_mcp::{McpClient, McpHub, McpTransport, SessionMode};
use aether_runtime::tools::{RegisteredTool, ToolContext};
use aether_runtime::Runtime;
use serde::Serialize;

use crate::error::HarnessError;
use crate::stats::{DurationHist, Stats, Unit};

/// Calls not recorded before each measured series (connections, caches, JIT of a node server).
const WARMUP_CALLS: u32 = 10;

/// The cost of one tool's calls over one path.
#[derive(Debug, Clone, Serialize)]
pub struct ToolCallCost {
    pub tool: String,
    /// `in_process`, `stdio` or `http`.
    pub transport: &'static str,
    /// `stateless` (one POST per call), `pooled` (a shared session) or `per_call` (MCP only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<&'static str>,
    pub calls: u64,
    pub errors: u64,
    /// The first failed call's error, when any failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    pub call_us: Stats,
    /// The tool's own time as the server reported it; `None` when it does not report it (the
    /// overhead then includes the tool's own work).
    pub own_us: Option<Stats>,
    /// Call time minus own time, per call.
    pub overhead_us: Stats,
    /// Comparison rows: this row's overhead over that of the row turns use (the first of the
    /// tool's rows: stateless or pooled), at P50 and P99.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_pooled: Option<Ratio>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ratio {
    pub p50: f64,
    pub p99: f64,
}

#[derive(Default)]
struct Series {
    calls: u64,
    errors: u64,
    first_error: Option<String>,
    call: DurationHist,
    own: DurationHist,
    overhead: DurationHist,
}

impl Series {
    fn record(&mut self, call: Duration, own: Option<Duration>, outcome: Result<(), String>) {
        self.calls += 1;
        if let Err(e) = outcome {
            self.errors += 1;
            self.first_error.get_or_insert(e);
        }
        self.call.record(call);
        if let Some(own) = own {
            self.own.record(own);
        }
        self.overhead.record(call.saturating_sub(own.unwrap_or_default()));
    }

    fn row(self, tool: &str, transport: &'static str, session: Option<&'static str>) -> ToolCallCost {
        ToolCallCost {
            tool: tool.to_owned(),
            transport,
            session,
            calls: self.calls,
            errors: self.errors,
            first_error: self.first_error,
            call_us: self.call.stats(Unit::Us),
            own_us: (!self.own.is_empty()).then(|| self.own.stats(Unit::Us)),
            overhead_us: self.overhead.stats(Unit::Us),
            vs_pooled: None,
        }
    }
}

async fn in_process(tool: &RegisteredTool, calls: u32) -> Series {
    let args = tool.sample_arguments().clone();
    let mut s = Series::default();
    for i in 0..WARMUP_CALLS + calls {
        let ctx = ToolContext::detached("bench");
        let started = Instant::now();
        let outcome = match tool.validate(&args) {
            Ok(()) => tool.invoke(args.clone(), ctx).await.map(drop).map_err(|e| e.0),
            Err(e) => Err(e),
        };
        if i >= WARMUP_CALLS {
            s.record(started.elapsed(), None, outcome);
        }
    }
    s
}

async fn over_mcp(client: &McpClient, remote: &str, tool: &RegisteredTool, calls: u32, warmup: u32) -> Series {
    let args = tool.sample_arguments();
    let ctx = ToolContext::detached("bench");
    let mut s = Series::default();
    for i in 0..warmup + calls {
        let out = client.call_timed(remote, args.clone(), &ctx).await;
        if i >= warmup {
            s.record(out.elapsed, out.server_time, out.result.map(drop).map_err(|e| e.0));
        }
    }
    s
}

/// Measures the baseline and each MCP tool of `tools`; `calls` per pooled series,
/// `per_call_calls` per new-session-per-call series (each spawns or connects anew).
pub async fn measure(
    runtime: &Runtime,
    hub: Option<&McpHub>,
    tools: &[String],
    calls: u32,
    per_call_calls: u32,
) -> Result<Vec<ToolCallCost>, HarnessError> {
    let registry = runtime.tools();
    let echo = registry
        .resolve("builtin.echo")
        .map_err(|e| HarnessError::Runtime(e.to_string()))?;
    let mut rows = vec![in_process(&echo, calls).await.row("builtin.echo", "in_process", None)];
    for name in tools {
        let tool = registry
            .resolve(name)
            .map_err(|e| HarnessError::InvalidInput(format!("--tools: {e}")))?;
        let (Some(server), Some(remote)) = (
            tool.spec.metadata.get("mcp_server").and_then(|v| v.as_str()),
            tool.spec.metadata.get("mcp_tool").and_then(|v| v.as_str()),
        ) else {
            continue;
        };
        let Some(client) = hub.and_then(|h| h.client(server)) else {
            continue;
        };
        let transport = match client.config().transport {
            McpTransport::Stdio { .. } => "stdio",
            McpTransport::Http { .. } => "http",
        };
        let used = if client.is_stateless() { "stateless" } else { "pooled" };
        let main =
            over_mcp(client, remote, &tool, calls, WARMUP_CALLS)
                .await
                .row(&tool.full_name, transport, Some(used));
        let mut compared = Vec::new();
        if client.is_stateless() {
            let session = other_client(client, |c| c.with_stateless(false))?;
            let row = over_mcp(&session, remote, &tool, calls, WARMUP_CALLS).await;
            session.shutdown().await;
            compared.push(row.row(&tool.full_name, transport, Some("pooled")));
        }
        let fresh = other_client(client, |c| c.with_session(SessionMode::PerCall))?;
        compared.push(over_mcp(&fresh, remote, &tool, per_call_calls, 1).await.row(
            &tool.full_name,
            transport,
            Some("per_call"),
        ));
        for row in &mut compared {
            row.vs_pooled = Some(Ratio {
                p50: ratio(row.overhead_us.p50, main.overhead_us.p50),
                p99: ratio(row.overhead_us.p99, main.overhead_us.p99),
            });
        }
        rows.push(main);
        rows.extend(compared);
    }
    Ok(rows)
}

/// A client of the same server, configured otherwise.
fn other_client(
    client: &McpClient,
    configure: impl FnOnce(aether_mcp::McpServerConfig) -> aether_mcp::McpServerConfig,
) -> Result<McpClient, HarnessError> {
    McpClient::new(configure(client.config().clone())).map_err(|e| HarnessError::InvalidInput(e.to_string()))
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}
