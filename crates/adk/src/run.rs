//! The `adk` framework's turn: adk-rust's `Runner` and `LlmAgent` run the model↔tool loop.
//!
//! The runtime's frame (session, runner, spans, commit, report) calls [`AdkLoop::run`]. It
//! takes the ADK runner of the Aether runner that serves the session (built on the runner's
//! first turn, kept in [`Runner::framework_state`], so it is reused, and recycled with it when
//! idle), then starts an adk invocation with the turn's last message and drains its event
//! stream inside the turn's scope (`turn`):
//!
//! - partial events are streamed text: they go to the observer's sink (a live turn);
//! - each event adk's runner appended to the session (`session`) becomes a pending Aether event,
//!   stamped with adk's invocation and event ids: the model's calls (the observer hears they
//!   are planned), their results (and the observer hears those), the answer;
//! - adk's tool-confirmation handler asks the observer about each call, one at a time (adk holds
//!   one prompt at a time): a live turn announces it and waits for a person when it needs one; a
//!   synchronous turn refuses a call that needs approval, as on the native framework;
//! - cancelling the turn drops the stream, which stops adk's invocation.
//!
//! What adk-rust 2.3 does not offer here: tool progress updates (its tools return one value), so
//! a live turn on `adk` sends no `tool.progress` chunks.

use std::sync::Arc;
use std::time::Duration;

use adk_agent::LlmAgentBuilder;
use adk_core::{
    AdkError, Part, RunConfig, SessionId, StreamingMode, ToolConfirmationDecision, ToolConfirmationHandler,
    ToolConfirmationPolicy, ToolConfirmationRequest, ToolExecutionStrategy, UserId,
};
use adk_runner::Runner as AdkRunner;
use aether_contracts::{Metadata, Role, ToolCall, UniversalMessage};
use aether_runtime::agents::{Agent, Runner};
use aether_runtime::engine::{LoopInput, LoopOutcome, TurnKit, TurnLoop, TurnObserver};
use aether_runtime::tools::executor::{execute_calls, CallScope};
use aether_runtime::tools::Decision;
use aether_runtime::EngineError;
use async_trait::async_trait;
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::convert::{content_of, event_of, message_of, tool_summary, EVENT_KEY, INVOCATION_KEY};
use crate::model::AetherModel;
use crate::session::AetherSessions;
use crate::tools::AetherTool;
use crate::turn::{Tally, Turn, TURN};
use crate::NAME;

/// adk's app name for Aether's agents.
const APP_NAME: &str = "aether";

/// adk's error when its loop ran out of model calls (`max_iterations`): on Aether, a partial
/// result, as on the native framework.
const OUT_OF_ITERATIONS: &str = "Max iterations (";

/// The `adk` framework's loop.
pub struct AdkLoop {
    kit: TurnKit,
}

impl AdkLoop {
    pub fn new(kit: TurnKit) -> Self {
        Self { kit }
    }

    /// The ADK runner of `runner` (built on its first turn).
    fn adk_runner(&self, agent: &Arc<Agent>, runner: &Runner) -> Result<Arc<AdkRunner>, EngineError> {
        runner
            .framework_state(|| build_runner(agent, &self.kit))
            .map_err(|e| failed(format!("could not build the ADK agent and runner: {e}")))?
            .ok_or_else(|| failed(format!("runner `{}` holds another framework's state", runner.id)))
    }
}

fn failed(message: impl Into<String>) -> EngineError {
    EngineError::Framework {
        framework: NAME.to_owned(),
        message: message.into(),
    }
}

/// An `LlmAgent` over the agent's model and tools, and its `Runner` over Aether's sessions.
fn build_runner(agent: &Agent, kit: &TurnKit) -> Result<AdkRunner, AdkError> {
    let model = AetherModel {
        name: agent.config.model_config.model.clone(),
    };
    // Every call asks adk's confirmation handler, which asks the turn's observer, as the native
    // framework asks it about every call: a live turn announces each proposal and waits only for
    // the ones that need a person (by the session's approval settings, which can differ from the
    // runtime's); a synchronous turn refuses those.
    let policy = ToolConfirmationPolicy::Always;
    // adk's own tool timeout stays out of the way: Aether's executor times each call out first.
    let mut longest = kit.tool_timeout(agent);
    let mut builder = LlmAgentBuilder::new(agent_name(agent))
        .model(Arc::new(model))
        .max_iterations(kit.limits().max_model_calls.max(1) as u32)
        .tool_execution_strategy(ToolExecutionStrategy::Parallel);
    for tool in agent.tools.iter() {
        longest = longest.max(tool.timeout.unwrap_or_default());
        builder = builder.tool(Arc::new(AetherTool::new(Arc::clone(tool))));
    }
    let agent = builder
        .tool_confirmation_policy(policy)
        .tool_timeout(longest * 2 + Duration::from_secs(1))
        .build()?;
    AdkRunner::builder()
        .app_name(APP_NAME)
        .agent(Arc::new(agent))
        .session_service(Arc::new(AetherSessions))
        .build()
}

/// The adk agent's name: the Aether agent's configured name, else its id.
fn agent_name(agent: &Agent) -> String {
    agent
        .config
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| agent.id.to_string())
}

/// A person's decision asked for by adk's confirmation step.
struct Ask {
    request: ToolConfirmationRequest,
    reply: oneshot::Sender<ToolConfirmationDecision>,
}

/// adk's confirmation handler: hands each question to the loop, which asks the observer.
struct Confirmer(mpsc::Sender<Ask>);

// adk requires its handler to be `Debug`; an `Ask` (a oneshot sender) is not.
impl std::fmt::Debug for Confirmer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Confirmer")
    }
}

#[async_trait]
impl ToolConfirmationHandler for Confirmer {
    async fn decide(&self, request: &ToolConfirmationRequest) -> adk_core::Result<ToolConfirmationDecision> {
        let (reply, answer) = oneshot::channel();
        let ask = Ask {
            request: request.clone(),
            reply,
        };
        self.0
            .send(ask)
            .await
            .map_err(|_| AdkError::tool("the Aether turn stopped before the approval was asked"))?;
        answer
            .await
            .map_err(|_| AdkError::tool("the Aether turn stopped before the approval was answered"))
    }
}

#[async_trait]
impl TurnLoop for AdkLoop {
    async fn run(&self, input: LoopInput<'_>) -> Result<LoopOutcome, EngineError> {
        let LoopInput {
            agent,
            runner,
            committed,
            pending,
            scope,
            observer,
            kit,
        } = input;
        let adk = self.adk_runner(agent, runner)?;
        let Some((last, earlier)) = pending.events().split_last() else {
            return Err(EngineError::Validation {
                field: "messages".into(),
                message: "a turn needs at least one message".into(),
            });
        };
        let user_content = content_of(&last.message, &last.tool_results);
        let name = agent_name(agent);
        let history: Arc<[adk_core::Event]> = committed.iter().chain(earlier).map(|e| event_of(e, &name)).collect();
        let streaming = observer.sink().is_some();
        let turn = Arc::new(Turn {
            agent: Arc::clone(agent),
            kit: kit.clone(),
            task_id: Arc::clone(scope.task_id),
            session_id: Arc::clone(scope.session_id),
            user_id: scope.user_id.clone(),
            metadata: scope.metadata.clone(),
            streaming,
            history,
            staged: Mutex::new(Vec::new()),
            tally: Mutex::new(Tally::default()),
        });
        let (ask_tx, mut asks) = mpsc::channel::<Ask>(4);
        let mut config: RunConfig = adk.run_config().clone();
        config.streaming_mode = match streaming {
            true => StreamingMode::SSE,
            false => StreamingMode::None,
        };
        config.tool_confirmation_handler = Some(Arc::new(Confirmer(ask_tx)));
        let user = UserId::try_from(scope.user_id.as_deref().unwrap_or("anonymous"))
            .map_err(|e| EngineError::validation("user_id", e.to_string()))?;
        let session = SessionId::try_from(&**scope.session_id)
            .map_err(|e| EngineError::validation("session_id", e.to_string()))?;

        let drain = async {
            let invocation = adk
                .start_with_config(user, session, user_content, Some(config))
                .await
                .map_err(|e| failed(e.to_string()))?;
            let mut events = invocation.into_events();
            let mut out = Drained::default();
            loop {
                tokio::select! {
                    event = events.next() => match event {
                        None => break,
                        Some(Err(e)) if e.message.starts_with(OUT_OF_ITERATIONS) => break,
                        Some(Err(e)) => {
                            return Err(match turn.tally.lock().model_error.take() {
                                Some(model) => EngineError::Model(model),
                                None => failed(e.to_string()),
                            })
                        }
                        Some(Ok(event)) if event.llm_response.partial => {
                            // Streamed model text (adk also streams other partial events, such
                            // as a tool's start: nothing here reads those).
                            let parts = event.llm_response.content.as_ref().map_or(&[][..], |c| &c.parts[..]);
                            if parts.iter().any(|p| matches!(p, Part::Text { .. })) {
                                out.flush(pending, observer).await;
                                if let Some(sink) = observer.sink() {
                                    for part in parts {
                                        if let Part::Text { text } = part {
                                            sink.delta(text).await?;
                                        }
                                    }
                                }
                            }
                        }
                        Some(Ok(_)) => {
                            let staged = std::mem::take(&mut *turn.staged.lock());
                            for event in staged.iter().filter(|e| e.author != "user") {
                                let Some(content) = event.llm_response.content.as_ref() else { continue };
                                let (mut message, results) = message_of(content);
                                message.update_metadata(|m| {
                                    m.insert(INVOCATION_KEY.into(), event.invocation_id.clone().into());
                                    m.insert(EVENT_KEY.into(), event.id.clone().into());
                                });
                                if message.role == Role::Tool {
                                    // adk answers each call of a batch in its own event; Aether
                                    // keeps one tool message per batch, as the native loop does.
                                    let batch = out.batch.get_or_insert_with(|| Batch::new(0, Instant::now()));
                                    batch.results.extend(turn.with_refusals(results));
                                    batch.metadata.get_or_insert_with(|| message.take_metadata());
                                    if batch.results.len() >= batch.expected {
                                        out.flush(pending, observer).await;
                                    }
                                    continue;
                                }
                                out.flush(pending, observer).await;
                                message.author = Some(Arc::clone(&agent.id));
                                let answers = message.tool_calls().is_none();
                                pending.push(message, Vec::new());
                                if answers {
                                    out.answer = Some(pending.len() - 1);
                                    continue;
                                }
                                // The calls, borrowed from the event just pushed (not copied).
                                let calls = pending
                                    .events()
                                    .last()
                                    .and_then(|e| e.message.tool_calls())
                                    .unwrap_or_default();
                                observer.planned(calls).await;
                                out.batch = Some(Batch::new(calls.len(), Instant::now()));
                                out.answer = None;
                            }
                        }
                    },
                    Some(ask) = asks.recv() => {
                        let t = Instant::now();
                        let call = ToolCall {
                            tool_name: ask.request.tool_name.clone(),
                            parameters: match &ask.request.args {
                                Value::Object(m) => m.clone(),
                                _ => Metadata::new(),
                            },
                            tool_namespace: None,
                            call_id: ask.request.function_call_id.clone(),
                        };
                        let calls = std::slice::from_ref(&call);
                        let decision = observer
                            .decide(&agent.tools, calls, &kit.limits().approvals)
                            .await
                            .pop()
                            .unwrap_or(Decision::Denied("no decision".into()));
                        out.approval_time += t.elapsed();
                        let answer = match decision {
                            Decision::Approved => ToolConfirmationDecision::Approve,
                            refusal => {
                                // The result the native framework gives a refused call.
                                let scope = CallScope {
                                    task_id: &turn.task_id,
                                    session_id: &turn.session_id,
                                    user_id: turn.user_id.clone(),
                                    progress: None,
                                    default_timeout: kit.tool_timeout(agent),
                                };
                                let refused = execute_calls(&agent.tools, calls, &[refusal], scope).await;
                                kit.tools_done(&refused);
                                turn.tally.lock().refused.extend(refused);
                                ToolConfirmationDecision::Deny
                            }
                        };
                        let _ = ask.reply.send(answer);
                    }
                }
            }
            out.flush(pending, observer).await;
            Ok::<_, EngineError>(out)
        };
        let out = TURN.scope(Arc::clone(&turn), drain).await?;

        let mut tally = std::mem::take(&mut *turn.tally.lock());
        let mut outcome = std::mem::take(&mut tally.outcome);
        outcome.tool_time = out.tool_time.saturating_sub(out.approval_time);
        outcome.approval_time = out.approval_time;
        outcome.tool_calls = out.tool_calls;
        outcome.answer = out.answer;
        Ok(outcome)
    }
}

/// What draining one invocation's events measured.
#[derive(Default)]
struct Drained {
    /// The tool calls of the model's last response, until all their results are in.
    batch: Option<Batch>,
    tool_time: Duration,
    approval_time: Duration,
    tool_calls: u64,
    answer: Option<usize>,
}

/// One model response's tool calls, answered.
struct Batch {
    expected: usize,
    started: Instant,
    results: Vec<aether_contracts::ToolResult>,
    /// adk's ids of the first answer.
    metadata: Option<Metadata>,
}

impl Batch {
    fn new(expected: usize, started: Instant) -> Self {
        Self {
            expected,
            started,
            results: Vec::with_capacity(expected),
            metadata: None,
        }
    }
}

impl Drained {
    /// Adds the batch's results as one tool message (once any are in), and tells the observer.
    async fn flush(&mut self, pending: &mut aether_runtime::engine::Pending, observer: &mut dyn TurnObserver) {
        let Some(batch) = self.batch.take_if(|b| !b.results.is_empty()) else {
            return;
        };
        self.tool_time += batch.started.elapsed();
        self.tool_calls += batch.results.len() as u64;
        observer.tool_results(&batch.results).await;
        let mut message = UniversalMessage::text(Role::Tool, tool_summary(&batch.results));
        message.set_metadata(batch.metadata.unwrap_or_default());
        pending.push(message, batch.results);
    }
}
