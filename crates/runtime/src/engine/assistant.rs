//! The entry point: takes any request, sync or live, and always answers with a `TaskResult`,
//! never a panic.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use aether_contracts::{ErrorCode, ErrorPayload, TaskRequest, TaskResult, TaskStatus};
use futures::FutureExt;
use serde_json::json;

use super::{ExecutionEngine, TurnObserver, Unattended, ValidRequest};
use crate::error::EngineError;

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

/// The ids a failed result still carries.
struct Ids {
    task_id: String,
    session_id: Option<String>,
    agent_id: Option<String>,
}

impl Ids {
    fn of(request: &TaskRequest) -> Self {
        Self {
            task_id: request.task_id.clone(),
            session_id: request.session_id.clone(),
            agent_id: request.agent_id.clone(),
        }
    }
}

/// Every failure of `run`, a timeout and a panic included, becomes a result with status `error`
/// (or `timeout`) and an `ErrorPayload`.
///
/// A plain function over combinators, not an `async fn`: an `async fn` keeps its argument's slot
/// beside the future it moves it into, and the turn's future would be laid out twice.
fn guarded(ids: Ids, run: impl Future<Output = Result<TaskResult, EngineError>>) -> impl Future<Output = TaskResult> {
    AssertUnwindSafe(run).catch_unwind().map(move |outcome| {
        let mut result = match outcome {
            Ok(Ok(r)) => return r,
            Ok(Err(e)) => TaskResult::failure(ids.task_id, e.status(), e.payload()),
            Err(panic) => {
                let msg = panic_message(panic.as_ref());
                tracing::error!(task_id = %ids.task_id, panic = %msg, "request panicked; answered with internal.error");
                TaskResult::failure(
                    ids.task_id,
                    TaskStatus::Error,
                    ErrorPayload::new(ErrorCode::InternalError, format!("internal error: {msg}")).with_source("engine"),
                )
            }
        };
        result.session_id = ids.session_id;
        result.agent_id = ids.agent_id;
        result
    })
}

impl Assistant {
    pub fn new(engine: Arc<ExecutionEngine>) -> Self {
        Self { engine }
    }

    /// The engine, for validating a request before it runs (a live session does, so that a bad
    /// first request is refused before any stream opens).
    pub fn engine(&self) -> &ExecutionEngine {
        &self.engine
    }

    /// Validates and runs a request with nobody watching.
    ///
    /// The request is boxed in this call, so that the returned future holds a pointer, not the
    /// request (a future that holds it is copied whole wherever it moves). Validation runs when
    /// the future is first polled: it is the turn's own time.
    pub fn process_request(&self, request: TaskRequest) -> impl Future<Output = TaskResult> + Send + '_ {
        let ids = Ids::of(&request);
        let request = Box::new(request);
        let engine = &self.engine;
        guarded(ids, async move {
            let request = engine.validate(request)?;
            engine.run(request, &mut Unattended).await
        })
    }

    /// Runs a validated request, reporting to `observer` (a live turn streams through it).
    pub async fn process_stream(&self, request: ValidRequest, observer: &mut dyn TurnObserver) -> TaskResult {
        let ids = Ids::of(request.request());
        guarded(ids, self.engine.run(request, observer)).await
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
