//! The entry point: takes any request and always answers with a `TaskResult`, never a panic.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use aether_contracts::{ErrorCode, ErrorPayload, TaskRequest, TaskResult, TaskStatus};
use futures::FutureExt;
use serde_json::json;

use super::ExecutionEngine;

/// Wraps the execution engine: every failure, including a panic, becomes a `TaskResult` with
/// status `error` (or `timeout`) and an `ErrorPayload`.
#[derive(Clone)]
pub struct Assistant {
    engine: Arc<ExecutionEngine>,
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

impl Assistant {
    pub fn new(engine: Arc<ExecutionEngine>) -> Self {
        Self { engine }
    }

    pub async fn process_request(&self, request: TaskRequest) -> TaskResult {
        let task_id = request.task_id.clone();
        let session_id = request.session_id.clone();
        let agent_id = request.agent_id.clone();
        let outcome = AssertUnwindSafe(self.engine.execute(request)).catch_unwind().await;
        let mut result = match outcome {
            Ok(Ok(r)) => return r,
            Ok(Err(e)) => TaskResult::failure(task_id, e.status(), e.payload()),
            Err(panic) => {
                let msg = panic_message(panic.as_ref());
                tracing::error!(task_id = %task_id, panic = %msg, "request panicked; answered with internal.error");
                TaskResult::failure(
                    task_id,
                    TaskStatus::Error,
                    ErrorPayload::new(ErrorCode::InternalError, format!("internal error: {msg}")).with_source("engine"),
                )
            }
        };
        result.session_id = session_id;
        result.agent_id = agent_id;
        result
    }

    /// Parses a JSON `TaskRequest` and processes it. A body that is not a valid request gets
    /// a `request.validation` result naming the field.
    pub async fn process_json(&self, body: &str) -> TaskResult {
        match aether_contracts::from_json_str::<TaskRequest>(body) {
            Ok(req) => self.process_request(req).await,
            Err(e) => {
                let task_id = serde_json::from_str::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v.get("task_id").and_then(|t| t.as_str()).map(str::to_owned))
                    .unwrap_or_default();
                let payload = ErrorPayload::new(ErrorCode::RequestValidation, e.to_string())
                    .with_source("contracts")
                    .with_details(json!({ "field": e.path, "line": e.line, "column": e.column }));
                TaskResult::failure(task_id, TaskStatus::Error, payload)
            }
        }
    }
}
