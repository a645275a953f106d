//! The turn that adk is running now, as its model, tools and session service see it.
//!
//! adk's traits are called by its `LlmAgent` and `Runner` with adk's own arguments: a model gets
//! an `LlmRequest`, a tool a `ToolContext`, the session service an app, user and session id.
//! None of them carries the Aether turn (its agent, request metadata, task and session ids, or
//! its tally). The loop runs adk's whole event stream inside [`TURN`]'s scope, and adk polls its
//! model and tools in that same task (it spawns none), so each finds the turn there.

use std::sync::Arc;

use adk_core::Event;
use aether_contracts::{Metadata, ToolResult};
use aether_runtime::agents::Agent;
use aether_runtime::engine::{LoopOutcome, TurnKit};
use aether_runtime::model::ModelError;
use parking_lot::Mutex;

tokio::task_local! {
    /// The Aether turn that adk is running in this task.
    pub(crate) static TURN: Arc<Turn>;
}

/// One Aether turn, shared by the adk pieces that serve it.
pub(crate) struct Turn {
    pub agent: Arc<Agent>,
    pub kit: TurnKit,
    pub task_id: Arc<str>,
    pub session_id: Arc<str>,
    pub user_id: Option<Arc<str>>,
    /// The request's metadata (the simulated model's controls live there).
    pub metadata: Metadata,
    /// Whether the model's text streams to someone (a live turn).
    pub streaming: bool,
    /// The session's events before this turn's message, as adk reads them.
    pub history: Arc<[Event]>,
    /// Events adk's runner appended to the session in this turn, until the loop takes them.
    pub staged: Mutex<Vec<Event>>,
    pub tally: Mutex<Tally>,
}

/// What the turn's model and tool calls measured, for the turn report.
#[derive(Default)]
pub(crate) struct Tally {
    pub outcome: LoopOutcome,
    /// The failure of the last model call, to report as the model's error (not adk's wrapping).
    pub model_error: Option<ModelError>,
    /// Results of calls a person refused, by call id: adk answers those itself, and the model
    /// must see what the native framework shows it.
    pub refused: Vec<ToolResult>,
}

impl Turn {
    /// The turn adk is running in this task, if any.
    pub fn current() -> Option<Arc<Turn>> {
        TURN.try_with(Arc::clone).ok()
    }

    /// Tool results as the native framework gives them: a result adk made itself for a call a
    /// person refused is replaced by Aether's result for that refusal.
    pub fn with_refusals(&self, mut results: Vec<ToolResult>) -> Vec<ToolResult> {
        let tally = self.tally.lock();
        if tally.refused.is_empty() {
            return results;
        }
        for r in results.iter_mut() {
            if let Some(mine) = tally
                .refused
                .iter()
                .find(|x| x.call_id.is_some() && x.call_id == r.call_id)
            {
                *r = mine.clone();
            }
        }
        results
    }
}
