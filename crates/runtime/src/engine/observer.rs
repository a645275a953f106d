//! What a turn reports while it runs, and who decides about tool calls that need approval.
//! A synchronous turn is [`Unattended`]: nobody watches, and nobody can approve. A live turn
//! streams chunks and asks a person (see `live`).

use std::sync::Arc;

use aether_contracts::{ToolCall, ToolResult};
use async_trait::async_trait;

use crate::approvals::{ApprovalConfig, Decision};
use crate::model::DeltaSink;
use crate::tools::{resolve_among, RegisteredTool, ToolProgress};

#[async_trait]
pub trait TurnObserver: Send {
    /// Where streamed model text goes; `None` asks the model for whole answers.
    fn sink(&mut self) -> Option<&mut dyn DeltaSink> {
        None
    }

    /// The model asked for these tool calls.
    async fn planned(&mut self, _calls: &[ToolCall]) {}

    /// One decision per call, in call order.
    async fn decide(
        &mut self,
        tools: &[Arc<RegisteredTool>],
        calls: &[ToolCall],
        cfg: &ApprovalConfig,
    ) -> Vec<Decision>;

    /// Whether this observer wants tools' progress updates ([`Self::tool_progress`]).
    fn wants_tool_progress(&self) -> bool {
        false
    }

    /// A running call reported progress.
    async fn tool_progress(&mut self, _update: ToolProgress) {}

    /// The calls' results, in call order.
    async fn tool_results(&mut self, _results: &[ToolResult]) {}
}

/// The tool a call names, when the agent has it.
pub(crate) fn tool_of<'t>(tools: &'t [Arc<RegisteredTool>], call: &ToolCall) -> Option<&'t Arc<RegisteredTool>> {
    resolve_among(tools.iter(), &call.qualified_name()).ok()
}

/// A synchronous turn: calls that need approval do not run, since nobody can be asked.
pub struct Unattended;

#[async_trait]
impl TurnObserver for Unattended {
    async fn decide(
        &mut self,
        tools: &[Arc<RegisteredTool>],
        calls: &[ToolCall],
        cfg: &ApprovalConfig,
    ) -> Vec<Decision> {
        calls
            .iter()
            .map(|c| match tool_of(tools, c) {
                Some(t) if cfg.requires(t) => Decision::Denied(
                    "needs a person's approval, and a synchronous turn has nobody to ask: run it in a live session"
                        .into(),
                ),
                _ => Decision::Approved,
            })
            .collect()
    }
}
