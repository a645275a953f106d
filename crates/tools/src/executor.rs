//! Runs the tool calls of one model response, all at once.
//!
//! Every call is resolved among the agent's tools and validated first; failures there become
//! `ToolResult`s (`not_found` / `tool.not_declared`, `error` / `tool.invalid_parameters`). Valid
//! calls run concurrently, each under its own timeout; a panic, an error or a timeout becomes a
//! `ToolResult` too. Results come back in the order of the calls.
//!
//! Each call runs in an `execute_tool {tool}` span (OpenTelemetry GenAI conventions, target
//! `aether::gen_ai`, DEBUG: free unless a subscriber asks for it), a child of the span the calls
//! were made in; spans of calls that fan out overlap in time.

use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{ErrorCode, ErrorPayload, Metadata, ToolCall, ToolResult, ToolStatus};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::field::Empty;
use tracing::Instrument as _;

use super::{resolve_among, Decision, ProgressSink, RegisteredTool, ToolContext};

fn failed(name: &str, call_id: &Option<String>, status: ToolStatus, code: ErrorCode, msg: String) -> ToolResult {
    ToolResult {
        tool_name: name.to_owned(),
        status,
        result_data: Value::Null,
        error_message: Some(msg.clone()),
        error: Some(ErrorPayload::new(code, msg).with_source("tools")),
        execution_time: Some(0.0),
        call_id: call_id.clone(),
    }
}

/// One call, ready to run.
struct Prepared {
    index: usize,
    tool: Arc<RegisteredTool>,
    params: Metadata,
    ctx: ToolContext,
    timeout: Duration,
}

/// Whether a subscriber records the GenAI spans (target `aether::gen_ai`).
fn traced() -> bool {
    tracing::enabled!(target: "aether::gen_ai", tracing::Level::DEBUG)
}

/// `execute_tool {tool}` (see `aether_runtime::telemetry` for the conventions followed).
fn execute_tool_span(tool: &RegisteredTool, call_id: &str) -> tracing::Span {
    tracing::debug_span!(
        target: "aether::gen_ai",
        "execute_tool",
        otel.name = %format_args!("execute_tool {}", tool.full_name),
        otel.kind = "internal",
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = &*tool.full_name,
        gen_ai.tool.call.id = call_id,
        gen_ai.tool.type = "function",
        error.type = Empty,
    )
}

/// Runs one validated call under its timeout; never panics.
async fn run_one(p: Prepared) -> (usize, ToolResult) {
    let started = Instant::now();
    let name = p.tool.full_name.to_string();
    let call_id = Some(p.ctx.call_id.to_string());
    let outcome = tokio::time::timeout(p.timeout, p.tool.invoke(p.params, p.ctx)).await;
    let secs = started.elapsed().as_secs_f64();
    let result = match outcome {
        Ok(Ok(data)) => ToolResult {
            tool_name: name,
            status: ToolStatus::Success,
            result_data: data,
            error_message: None,
            error: None,
            execution_time: Some(secs),
            call_id,
        },
        Ok(Err(e)) => {
            let mut r = failed(&name, &call_id, ToolStatus::Error, ErrorCode::ToolExecution, e.0);
            r.execution_time = Some(secs);
            r
        }
        Err(_) => {
            let msg = format!("tool `{name}` timed out after {:?}", p.timeout);
            let mut r = failed(&name, &call_id, ToolStatus::Timeout, ErrorCode::ToolExecution, msg);
            r.execution_time = Some(secs);
            r
        }
    };
    if let Some(e) = &result.error {
        let span = tracing::Span::current();
        if !span.is_disabled() {
            span.record("error.type", e.code.as_str());
        }
    }
    (p.index, result)
}

/// The result of a call that was not allowed to run.
fn refused(call: &ToolCall, decision: &Decision) -> ToolResult {
    let (message, error) = match decision {
        Decision::TimedOut(after) => {
            let msg = format!("not approved within {after:?}; cancelled by the auto_cancel policy");
            (
                msg.clone(),
                Some(ErrorPayload::new(ErrorCode::ApprovalTimeout, msg).with_source("approvals")),
            )
        }
        Decision::Denied(reason) => (format!("not run: {reason}"), None),
        Decision::Approved => (String::new(), None),
    };
    ToolResult {
        tool_name: call.qualified_name().into_owned(),
        status: ToolStatus::Cancelled,
        result_data: Value::Null,
        error_message: Some(message),
        error,
        execution_time: Some(0.0),
        call_id: call.call_id.clone(),
    }
}

/// Who the calls of one model response run for, and where their progress goes.
pub struct CallScope<'a> {
    pub task_id: &'a Arc<str>,
    pub session_id: &'a Arc<str>,
    pub user_id: Option<Arc<str>>,
    pub progress: Option<ProgressSink>,
    pub default_timeout: Duration,
}

/// Runs the approved `calls` against `tools` concurrently and returns one result per call, in
/// call order; a call not approved gets a `cancelled` result and never runs.
pub async fn execute_calls(
    tools: &[Arc<RegisteredTool>],
    calls: &[ToolCall],
    decisions: &[Decision],
    scope: CallScope<'_>,
) -> Vec<ToolResult> {
    let mut results: Vec<Option<ToolResult>> = vec![None; calls.len()];
    let mut runnable = Vec::with_capacity(calls.len());
    for (index, call) in calls.iter().enumerate() {
        if let Some(d) = decisions.get(index).filter(|d| **d != Decision::Approved) {
            results[index] = Some(refused(call, d));
            continue;
        }
        let name = call.qualified_name();
        let tool = match resolve_among(tools.iter(), &name) {
            Ok(t) => Arc::clone(t),
            Err(e) => {
                let r = failed(
                    &name,
                    &call.call_id,
                    ToolStatus::NotFound,
                    ErrorCode::ToolNotDeclared,
                    e.to_string(),
                );
                results[index] = Some(r);
                continue;
            }
        };
        if let Err(msg) = tool.validate(&call.parameters) {
            let msg = format!("invalid parameters for `{}`: {msg}", tool.full_name);
            results[index] = Some(failed(
                &tool.full_name,
                &call.call_id,
                ToolStatus::Error,
                ErrorCode::ToolInvalidParameters,
                msg,
            ));
            continue;
        }
        let call_id: Arc<str> = match &call.call_id {
            Some(id) => Arc::from(id.as_str()),
            None => Arc::from(format!("call-{index}")),
        };
        runnable.push(Prepared {
            index,
            timeout: tool.timeout.unwrap_or(scope.default_timeout),
            params: call.parameters.clone(),
            ctx: ToolContext {
                task_id: Arc::clone(scope.task_id),
                session_id: Arc::clone(scope.session_id),
                call_id,
                user_id: scope.user_id.clone(),
                progress: scope.progress.clone(),
            },
            tool,
        });
    }

    match runnable.len() {
        0 => {}
        1 => {
            if let Some(p) = runnable.pop() {
                // Traced: boxed, so that the caller's future does not grow for the untraced path.
                let (i, r) = match traced() {
                    true => {
                        let span = execute_tool_span(&p.tool, &p.ctx.call_id);
                        Box::pin(run_one(p).instrument(span)).await
                    }
                    false => run_one(p).await,
                };
                results[i] = Some(r);
            }
        }
        _ => {
            // Spawned, so CPU-bound async tools also run in parallel on the worker threads.
            // Dropping the set (a cancelled turn) aborts every call still running.
            let mut set = JoinSet::new();
            let traced = traced();
            for p in runnable {
                if traced {
                    // Made here, in the caller's span, so that the spawned call is its child.
                    let span = execute_tool_span(&p.tool, &p.ctx.call_id);
                    set.spawn(run_one(p).instrument(span));
                } else {
                    set.spawn(run_one(p));
                }
            }
            while let Some(joined) = set.join_next().await {
                if let Ok((i, r)) = joined {
                    results[i] = Some(r);
                }
            }
        }
    }

    results
        .into_iter()
        .zip(calls)
        .map(|(r, call)| {
            r.unwrap_or_else(|| {
                failed(
                    &call.tool_name,
                    &call.call_id,
                    ToolStatus::Error,
                    ErrorCode::ToolExecution,
                    "tool task was aborted".into(),
                )
            })
        })
        .collect()
}
