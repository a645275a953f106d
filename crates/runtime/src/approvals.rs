//! Human approval of tool calls: which calls need it (a policy per tool), and the broker of one
//! live turn that holds the questions asked and matches answers by `interaction_id` only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aether_contracts::{InteractionResponse, InteractionType, Metadata};
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::oneshot;

pub use aether_tools::Decision;
use aether_tools::RegisteredTool;

/// What happens when nobody answers in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutPolicy {
    /// The call does not run (the default: an unattended risky tool never runs).
    AutoCancel,
    /// The call runs.
    AutoApprove,
}

/// Which tool calls need a human's approval, and how long to wait for one.
#[derive(Debug, Clone)]
pub struct ApprovalConfig {
    /// For tools that neither this config nor their own metadata decide.
    pub default_requires_approval: bool,
    /// Per tool, by full (`demo.aml_checker`) or short (`aml_checker`) name; wins over the tool's
    /// own `metadata.requires_approval`.
    pub tools: HashMap<String, bool>,
    pub timeout: Duration,
    pub on_timeout: TimeoutPolicy,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        Self {
            default_requires_approval: false,
            tools: HashMap::new(),
            timeout: Duration::from_secs(90),
            on_timeout: TimeoutPolicy::AutoCancel,
        }
    }
}

impl ApprovalConfig {
    pub fn requires(&self, tool: &RegisteredTool) -> bool {
        self.tools
            .get(&*tool.full_name)
            .or_else(|| self.tools.get(&*tool.short_name))
            .copied()
            .or_else(|| tool.spec.metadata.get("requires_approval").and_then(|v| v.as_bool()))
            .unwrap_or(self.default_requires_approval)
    }
}

/// A question waiting for an answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingApproval {
    pub interaction_id: String,
    pub tool_name: String,
    pub call_id: Option<String>,
    pub parameters: Metadata,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// An answer that matched nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error("no pending approval has interaction_id `{id}` (pending: {})", if pending.is_empty() { "none".to_owned() } else { pending.join(", ") })]
    Unknown { id: String, pending: Vec<String> },
    #[error("interaction `{0}` is a tool approval; the answer has another interaction_type")]
    WrongType(String),
}

struct Waiting {
    info: PendingApproval,
    answer: oneshot::Sender<bool>,
}

/// The approvals of one live session. Never shared between sessions.
pub struct ApprovalBroker {
    prefix: String,
    next: AtomicU64,
    waiting: Mutex<HashMap<String, Waiting>>,
}

impl ApprovalBroker {
    pub fn new(task_id: &str) -> Self {
        Self {
            prefix: format!("ix-{task_id}"),
            next: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Registers a question; the receiver gets `true` (approved) or `false` (denied).
    pub(crate) fn ask(
        &self,
        tool_name: &str,
        call_id: Option<String>,
        parameters: Metadata,
        timeout: Duration,
    ) -> (PendingApproval, oneshot::Receiver<bool>) {
        let id = format!("{}-{}", self.prefix, self.next.fetch_add(1, Ordering::Relaxed));
        let now = Utc::now();
        let info = PendingApproval {
            interaction_id: id.clone(),
            tool_name: tool_name.to_owned(),
            call_id,
            parameters,
            requested_at: now,
            expires_at: now + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX),
        };
        let (answer, rx) = oneshot::channel();
        self.waiting.lock().insert(
            id,
            Waiting {
                info: info.clone(),
                answer,
            },
        );
        (info, rx)
    }

    /// Answers a question by its exact `interaction_id`.
    pub fn respond(&self, response: &InteractionResponse) -> Result<(), ApprovalError> {
        if response.interaction_type != InteractionType::ToolApproval {
            return Err(ApprovalError::WrongType(response.interaction_id.clone()));
        }
        let mut waiting = self.waiting.lock();
        match waiting.remove(&response.interaction_id) {
            Some(w) => {
                let _ = w.answer.send(response.approved);
                Ok(())
            }
            None => {
                let mut pending: Vec<String> = waiting.keys().cloned().collect();
                pending.sort();
                Err(ApprovalError::Unknown {
                    id: response.interaction_id.clone(),
                    pending,
                })
            }
        }
    }

    /// Questions still open, oldest first.
    pub fn pending(&self) -> Vec<PendingApproval> {
        let mut v: Vec<_> = self.waiting.lock().values().map(|w| w.info.clone()).collect();
        v.sort_by(|a, b| {
            a.requested_at
                .cmp(&b.requested_at)
                .then(a.interaction_id.cmp(&b.interaction_id))
        });
        v
    }

    /// Forgets a question (it timed out).
    pub(crate) fn forget(&self, interaction_id: &str) {
        self.waiting.lock().remove(interaction_id);
    }

    /// Drops every open question; their waiters see a denial.
    pub(crate) fn clear(&self) {
        self.waiting.lock().clear();
    }
}
