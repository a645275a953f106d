//! Runs the tool calls of one model response, all at once.
//!
//! Every call is resolved among the agent's tools and validated first; failures there become
//! `ToolResult`s (`not_found` / `tool.not_declared`, `error` / `tool.invalid_parameters`). Valid
//! calls run concurrently, each under its own timeout; a panic, an error or a timeout becomes a
//! `ToolResult` too. Results come back in the order of the calls.
//!
//! Each call runs in an `execute_tool {tool}` span (OpenTelemetry GenAI conventions; made only
//! when spans are on, see `aether_contracts::trace`), a child of the span the calls were made in;
//! spans of calls that fan out overlap in time.

use std::sync::Arc;
use std::time::Duration;

use aether_contracts::trace as otel;
use aether_contracts::{ErrorCode, ErrorPayload, Metadata, ToolCall, ToolResult, ToolStatus};
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::SpanKind;
use opentelemetry::{Context, KeyValue};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;

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

/// `execute_tool {tool}`, a child of the current context (see `aether_runtime::telemetry` for
/// the conventions followed); `None`, and nothing made, when spans are off.
fn execute_tool_span(tool: &RegisteredTool, call_id: &Arc<str>) -> Option<Context> {
    if !otel::on() {
        return None;
    }
    // Room for `error.type`, so a failure does not grow the span's list.
    let mut a = Vec::with_capacity(5);
    a.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
    a.push(KeyValue::new("gen_ai.tool.name", otel::shared(&tool.full_name)));
    a.push(KeyValue::new("gen_ai.tool.call.id", otel::shared(call_id)));
    a.push(KeyValue::new("gen_ai.tool.type", "function"));
    otel::start(format!("execute_tool {}", tool.full_name), SpanKind::Internal, a)
}

/// Runs a call in its span (made before, in the caller's context) and ends it.
async fn traced(p: Prepared, cx: Context) -> (usize, ToolResult) {
    let (i, r) = run_one(p).with_context(cx.clone()).await;
    if let Some(e) = &r.error {
        otel::set(&cx, "error.type", e.code.as_str());
    }
    otel::end(&cx);
    (i, r)
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
                let (i, r) = match execute_tool_span(&p.tool, &p.ctx.call_id) {
                    Some(cx) => Box::pin(traced(p, cx)).await,
                    None => run_one(p).await,
                };
                results[i] = Some(r);
            }
        }
        _ => {
            // Spawned, so CPU-bound async tools also run in parallel on the worker threads.
            // Dropping the set (a cancelled turn) aborts every call still running.
            let mut set = JoinSet::new();
            for p in runnable {
                // Made here, in the caller's context, so that the spawned call is its child.
                match execute_tool_span(&p.tool, &p.ctx.call_id) {
                    Some(cx) => set.spawn(traced(p, cx)),
                    None => set.spawn(run_one(p)),
                };
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
